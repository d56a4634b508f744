'use strict'
// Workload 2, stop slurping: find a byte that is not there in a page-cached file with
// `buf.indexOf`, three ways, each timed from open to result:
//   ours        mmap.openSync(path) + indexOf (+ unmap)
//   readFile    fs.readFileSync(path) + indexOf
//   readSync    fs.readSync in 1 MiB chunks into one reused Buffer, indexOf on each chunk
// and the anonymous memory each one adds (RssAnon of /proc/self/status), measured in a fresh
// child process per variant so one variant cannot pollute another.
//
// Run as `scan.js CONFIG` for the timings, or `scan.js --memory VARIANT FILE MISSING` for one
// memory measurement (prints JSON).

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const u = require('../lib/util')

const CHUNK = u.MiB

/** The three scans. Each returns `[indexOf result, what keeps the memory alive]`. */
function variants(mmap) {
  return {
    ours(file, missing) {
      const buf = mmap.openSync(file)
      return [buf.indexOf(missing), buf]
    },
    readFile(file, missing) {
      const buf = fs.readFileSync(file)
      return [buf.indexOf(missing), buf]
    },
    readSync(file, missing) {
      const chunk = Buffer.allocUnsafe(CHUNK)
      const fd = fs.openSync(file, 'r')
      let found = -1
      try {
        for (let pos = 0; ;) {
          const n = fs.readSync(fd, chunk, 0, CHUNK, pos)
          if (n === 0) break
          const at = chunk.subarray(0, n).indexOf(missing)
          if (at !== -1) {
            found = pos + at
            break
          }
          pos += n
        }
      } finally {
        fs.closeSync(fd)
      }
      return [found, chunk]
    },
  }
}

const LABELS = {
  readFile: 'fs.readFileSync + indexOf',
  readSync: 'fs.readSync 1 MiB chunks + indexOf',
}

/** Child-process mode: RssAnon growth of one variant, with its memory still alive. */
async function memoryChild(root, variant, file, missing) {
  const mmap = require(root)
  const scan = variants(mmap)[variant]
  await u.quiesce()
  const before = u.procStatus('RssAnon')
  const [found, keep] = scan(file, Number(missing))
  const after = u.procStatus('RssAnon')
  const rssFile = u.procStatus('RssFile')
  if (keep.length === 0) throw new Error('nothing scanned')
  process.stdout.write(
    `${JSON.stringify({ found, growthKiB: after - before, rssFileKiB: rssFile })}\n`,
  )
}

function measureMemory(variant, config) {
  const result = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      __filename,
      '--memory',
      config.root,
      variant,
      config.file,
      String(config.missing),
    ],
    { encoding: 'utf8', timeout: 120000 },
  )
  if (result.status !== 0)
    throw new Error(`memory child for ${variant} failed: ${(result.stderr || '').trim()}`)
  return JSON.parse(result.stdout)
}

async function main(config) {
  const mmap = require(config.root)
  const scans = variants(mmap)
  const names = Object.keys(scans)
  const { file, missing } = config
  const size = fs.statSync(file).size
  u.warmPageCache(file)
  const probe = mmap.openSync(file)
  const [notResident, resident] = mmap.incore(probe)
  mmap.unmap(probe)
  const notes = [
    `scan: ${(size / u.MiB).toFixed(0)} MiB file, ${resident} of ${resident + notResident} pages in the page cache before timing`,
  ]
  u.progress(
    `scan ${(size / u.MiB).toFixed(0)} MiB: ${config.reps} runs of ${names.length} variants`,
  )
  const times = Object.fromEntries(names.map((n) => [n, []]))
  for (let rep = -1; rep < config.reps; rep++) {
    for (const name of u.rotate(names, rep + 1)) {
      await u.quiesce()
      const t0 = u.now()
      const [found, keep] = scans[name](file, missing)
      if (name === 'ours') mmap.unmap(keep)
      const ms = (u.now() - t0) / 1e6
      if (found !== -1)
        throw new Error(`${name} found byte ${missing} at ${found}: the file is wrong`)
      if (rep >= 0) times[name].push(ms) // rep -1 is the warm-up
    }
  }
  u.progress('scan memory: one fresh child process per variant')
  const memory = {}
  for (const name of names) memory[name] = measureMemory(name, config)

  const rows = []
  const label = `${(size / u.MiB).toFixed(0)} MiB`
  for (const base of ['readFile', 'readSync']) {
    rows.push({
      workload: '2. scan',
      name: `scan ${label} page-cached: openSync + indexOf`,
      unit: 'ms',
      ours: u.median(times.ours),
      baseline: LABELS[base],
      base: u.median(times[base]),
      target: base === 'readFile' ? { ratioMax: 0.6 } : null,
    })
  }
  for (const base of ['readFile', 'readSync']) {
    rows.push({
      workload: '2. scan',
      name: `scan ${label}: RssAnon growth of openSync`,
      unit: 'MiB',
      ours: memory.ours.growthKiB / 1024,
      baseline: LABELS[base],
      base: memory[base].growthKiB / 1024,
      target: base === 'readFile' ? { oursMax: 16 } : null,
    })
  }
  notes.push(
    `scan memory: RssFile with the scan's memory alive: ours ${(memory.ours.rssFileKiB / 1024).toFixed(0)} MiB ` +
      `(the page cache, shared, not the heap), readFileSync ${(memory.readFile.rssFileKiB / 1024).toFixed(0)} MiB`,
  )
  return { rows, notes, raw: { times, memory } }
}

if (process.argv[2] === '--memory') {
  const [, , , root, variant, file, missing] = process.argv
  memoryChild(root, variant, file, missing).catch((err) => {
    process.stderr.write(`${err.stack}\n`)
    process.exitCode = 1
  })
} else {
  u.runWorkload(main)
}
