'use strict'
// Workload 4, time to first byte of a file larger than 2 GiB (sparse: fs.truncateSync to 3 GiB):
//   ours          mmap.openSync(path), read buf[0], mmap.unmap(buf)
//   ours, handle  mmap.Mapping.open(path), readInto a 1-byte Buffer, unmap(): no Buffer over
//                 the mapping, so V8 does not count it as external memory
//   readSync      fs.openSync, fs.readSync one byte at 0, fs.closeSync
//   readFileSync  refuses files over 2 GiB: its error is shown instead of a time
//   peers         map(size, PROT_READ, MAP_SHARED, fd) of the whole file: shown as they fail or not
//   ours, bigger old space   `ours` and `readSync` again in a child `node
//                 --max-old-space-size=<4x the file>`: V8 runs a full GC for each new external
//                 Buffer once external memory passes half the old-space limit (by default about
//                 2 GiB here), so a bigger limit shows what that GC costs
// Microseconds per open-read-release, each iteration timed on its own. The final munmap that
// node-mmap's unmap leaves to the finalizer is not in these figures (workload 1 measures it);
// the placeholders are given back between runs.

const fs = require('node:fs')
const u = require('../lib/util')

const SETTLE_EVERY = 100

/** `ours` and `readSync` in a child with a bigger old space: `{ times, gcs, oldSpaceMiB }`. */
function inBiggerOldSpace(config, size) {
  const { execFileSync } = require('node:child_process')
  const oldSpaceMiB = Math.ceil((4 * size) / u.MiB)
  const child = { ...config, variants: ['ours', 'readSync'], child: true }
  const args = ['--expose-gc', `--max-old-space-size=${oldSpaceMiB}`, __filename, JSON.stringify(child)]
  const out = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  return { ...JSON.parse(out.trim().split('\n').pop()), oldSpaceMiB }
}

async function main(config) {
  const mmap = require(config.root)
  const { file } = config
  const size = fs.statSync(file).size
  const iterations = config.iterations
  const one = Buffer.alloc(1)

  const variants = {
    ours() {
      const t0 = u.now()
      const buf = mmap.openSync(file)
      const byte = buf[0]
      mmap.unmap(buf)
      const t1 = u.now()
      // After unmap() the Buffer keeps its length and spans no mapped page: incore() says [0, 0].
      const pages = mmap.incore(buf)
      if (byte !== 0 || pages[0] !== 0 || pages[1] !== 0) throw new Error('ours: wrong first byte or not unmapped')
      return t1 - t0
    },
    handle() {
      one[0] = 1
      const t0 = u.now()
      const mapping = mmap.Mapping.open(file)
      mapping.readInto(one, 0)
      mapping.unmap()
      const t1 = u.now()
      if (one[0] !== 0) throw new Error('handle: wrong first byte')
      return t1 - t0
    },
    readSync() {
      one[0] = 1
      const t0 = u.now()
      const fd = fs.openSync(file, 'r')
      fs.readSync(fd, one, 0, 1, 0)
      fs.closeSync(fd)
      const t1 = u.now()
      if (one[0] !== 0) throw new Error('readSync: wrong first byte')
      return t1 - t0
    },
  }
  const names = config.variants || Object.keys(variants)
  const times = Object.fromEntries(names.map((name) => [name, []]))
  const gcs = Object.fromEntries(
    names.map((name) => [name, { major: 0, minor: 0, incremental: 0, ms: 0 }]),
  )
  u.progress(
    `time to first byte of ${(size / u.GiB).toFixed(0)} GiB: ${config.reps} runs of ${iterations}`,
  )
  for (let rep = -1; rep < config.reps; rep++) {
    for (const name of u.rotate(names, rep + 1)) {
      let total = 0
      let vm0 = u.procStatus('VmSize')
      const watch = u.watchGc()
      for (let i = 1; i <= iterations; i++) {
        total += variants[name]()
        if (name !== 'readSync' && (i % SETTLE_EVERY === 0 || i === iterations)) {
          // Give the placeholders back (3 GiB of address space each), outside the timings.
          await u.settle(vm0, 0, { slackKiB: 64 * 1024 })
          vm0 = u.procStatus('VmSize')
        }
      }
      const counted = await watch.stop()
      if (rep >= 0) {
        times[name].push(total / iterations / 1000)
        for (const key of Object.keys(counted)) gcs[name][key] += counted[key]
      }
    }
  }

  if (config.child) return { times, gcs }
  const bigger = inBiggerOldSpace(config, size)

  let readFileError = null
  try {
    fs.readFileSync(file)
    readFileError = 'no error: read the whole file'
  } catch (err) {
    readFileError = u.describeError(err)
  }

  const rows = [
    {
      workload: '4. first byte > 2 GiB',
      name: `first byte of ${(size / u.GiB).toFixed(0)} GiB: openSync + buf[0] + unmap`,
      unit: 'us',
      ours: u.median(times.ours),
      baseline: 'fs.openSync + readSync 1 B + close',
      base: u.median(times.readSync),
    },
    {
      workload: '4. first byte > 2 GiB',
      name: `first byte of ${(size / u.GiB).toFixed(0)} GiB: openSync + buf[0] + unmap`,
      unit: 'us',
      ours: u.median(times.ours),
      baseline: 'fs.readFileSync',
      base: null,
      error: readFileError,
    },
  ]
  const fd = fs.openSync(file, 'r')
  for (const peer of config.peers) {
    let outcome = peer.ok ? null : peer.reason
    if (peer.ok) {
      try {
        const p = require(peer.dir)
        const buf = p.map(size, p.PROT_READ, p.MAP_SHARED, fd, 0)
        outcome = buf.length === size ? null : `maps ${buf.length} bytes of ${size}`
      } catch (err) {
        outcome = `throws ${err.constructor.name} without code: ${u.describeError(err)}`
        if (err.code) outcome = `throws ${u.describeError(err)}`
      }
    }
    rows.push({
      workload: '4. first byte > 2 GiB',
      name: `first byte of ${(size / u.GiB).toFixed(0)} GiB: openSync + buf[0] + unmap`,
      unit: 'us',
      ours: u.median(times.ours),
      baseline: `${peer.name} map of the whole file`,
      base: null,
      error: outcome || 'mapped the whole file (not timed)',
    })
  }
  fs.closeSync(fd)
  rows.push({
    workload: '4. first byte > 2 GiB',
    name: `first byte of ${(size / u.GiB).toFixed(0)} GiB: Mapping.open + readInto 1 B + unmap`,
    unit: 'us',
    ours: u.median(times.handle),
    baseline: 'fs.openSync + readSync 1 B + close',
    base: u.median(times.readSync),
  })
  rows.push({
    workload: '4. first byte > 2 GiB',
    name: `first byte of ${(size / u.GiB).toFixed(0)} GiB: openSync + buf[0] + unmap, --max-old-space-size=${bigger.oldSpaceMiB}`,
    unit: 'us',
    ours: u.median(bigger.times.ours),
    baseline: 'fs.openSync + readSync 1 B + close (same process)',
    base: u.median(bigger.times.readSync),
  })
  const opens = iterations * config.reps
  const notes = [
    `first byte: during ${opens} timed openSync calls of the ${(size / u.GiB).toFixed(0)} GiB file V8 ran ` +
      `${gcs.ours.major} major and ${gcs.ours.incremental} incremental GCs on its own (${(gcs.ours.ms / opens).toFixed(2)} ms of GC per open), ` +
      `against ${gcs.handle.major} for Mapping.open and ${gcs.readSync.major} for readSync: V8 counts an external Buffer's length as external memory`,
    `first byte, node --max-old-space-size=${bigger.oldSpaceMiB}: V8 ran ${bigger.gcs.ours.major} major GCs during the same ${opens} openSync calls`,
  ]
  return { rows, notes, raw: { times, gcs, readFileError, bigger } }
}

u.runWorkload(main)
