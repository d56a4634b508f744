'use strict'
// Workload 6, write-back without blocking: dirty every page of a MAP_SHARED file mapping (fill
// it with a new byte), then write it back while perf_hooks.monitorEventLoopDelay({ resolution: 1 })
// watches the event loop:
//   ours      await mmap.flush(buf)       msync(MS_SYNC) on the libuv thread pool
//   baseline  mmap.sync(buf, true)        msync(MS_SYNC) on the JS thread: the loop stops
// Reported: the loop's worst delay and its 99th percentile (ms), and how long the write-back took.
// The histogram runs from 5 ms before the write-back to 5 ms after it, so a blocked loop shows.

const path = require('node:path')
const { monitorEventLoopDelay } = require('node:perf_hooks')
const u = require('../lib/util')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function watched(writeBack) {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  await sleep(5)
  const t0 = u.now()
  await writeBack()
  const t1 = u.now()
  await sleep(5)
  histogram.disable()
  return {
    maxMs: histogram.max / 1e6,
    p99Ms: histogram.percentile(99) / 1e6,
    durationMs: (t1 - t0) / 1e6,
  }
}

async function main(config) {
  const mmap = require(config.root)
  const file = path.join(config.dir, 'writeback.bin')
  const size = config.size
  const label = `${(size / u.MiB).toFixed(0)} MiB`
  const buf = mmap.openSync(file, { mode: 'w+', size })
  const variants = {
    flush: () => mmap.flush(buf),
    sync: async () => mmap.sync(buf, true),
  }
  const results = { flush: [], sync: [] }
  u.progress(`write-back ${label}: ${config.reps} runs of flush() and sync(buf, true)`)
  let fill = 0
  for (let rep = -1; rep < config.reps; rep++) {
    for (const name of u.rotate(Object.keys(variants), rep + 1)) {
      buf.fill(++fill & 0xff) // dirty every page
      await u.quiesce()
      const result = await watched(variants[name])
      if (rep >= 0) results[name].push(result) // rep -1 is the warm-up
    }
  }
  mmap.unmap(buf)
  const med = (name, key) => u.median(results[name].map((r) => r[key]))
  const rows = [
    {
      workload: '6. write-back',
      name: `write back ${label}: loop max delay, await flush()`,
      unit: 'ms',
      ours: med('flush', 'maxMs'),
      baseline: 'sync(buf, true)',
      base: med('sync', 'maxMs'),
      target: { oursMax: 10 },
    },
    {
      workload: '6. write-back',
      name: `write back ${label}: loop p99 delay, await flush()`,
      unit: 'ms',
      ours: med('flush', 'p99Ms'),
      baseline: 'sync(buf, true)',
      base: med('sync', 'p99Ms'),
    },
    {
      workload: '6. write-back',
      name: `write back ${label}: duration, await flush()`,
      unit: 'ms',
      ours: med('flush', 'durationMs'),
      baseline: 'sync(buf, true)',
      base: med('sync', 'durationMs'),
    },
  ]
  return { rows, notes: [], raw: results }
}

u.runWorkload(main)
