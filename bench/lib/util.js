'use strict'
// Small helpers shared by bench/run.js and the workloads: timing, medians, /proc readings,
// waiting for finalizers, test files.

const fs = require('node:fs')

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

/** Nanoseconds from the monotonic clock, as a Number (exact below 2^53 ns, i.e. 104 days). */
function now() {
  return Number(process.hrtime.bigint())
}

function median(values) {
  const sorted = values
    .filter((v) => typeof v === 'number' && Number.isFinite(v))
    .sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** One field of /proc/self/status in KiB (VmSize, RssAnon, ...). */
function procStatus(field) {
  const text = fs.readFileSync('/proc/self/status', 'latin1')
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)
  return match ? Number(match[1]) : null
}

/** Lines in /proc/self/maps: the process's VMAs. */
function mapsLines() {
  return fs.readFileSync('/proc/self/maps', 'latin1').split('\n').length - 1
}

const immediate = () => new Promise((resolve) => setImmediate(resolve))

function gc() {
  if (typeof global.gc !== 'function') throw new Error('run with node --expose-gc')
  global.gc()
}

/**
 * A minor GC (scavenge): collects the young Buffers a map loop leaves behind, as a real program's
 * own scavenges would. A full gc() costs ~10 ms here, which spread over 1,000 maps would swamp
 * the few microseconds per map being measured. Falls back to a full gc() where V8 lacks it.
 */
function minorGc() {
  if (typeof global.gc !== 'function') throw new Error('run with node --expose-gc')
  try {
    global.gc({ type: 'minor' })
  } catch {
    global.gc()
  }
}

/**
 * Runs a minor GC and turns the event loop until the mappings that `reservedKiB` of address
 * space stood for are given back (a full gc() every 20 turns if they are not): Node runs Buffer
 * finalizers on a later event-loop turn, never inside gc(). The signal is VmSize: node-mmap's
 * unmap() leaves a placeholder over the range until the finalizer runs, and the kernel merges
 * adjacent placeholders into one VMA, so /proc/self/maps's line count cannot tell.
 * "Back" means within `slackKiB` (default: an eighth of `reservedKiB`, at least 1 MiB) of
 * `startVmKiB`: V8's own heap may have grown meanwhile.
 * Returns how many turns and GCs it took, and whether the address space came back.
 */
async function settle(startVmKiB, reservedKiB, { maxMs = 5000, slackKiB } = {}) {
  const slack = slackKiB ?? Math.max(1024, reservedKiB / 8)
  const deadline = now() + maxMs * 1e6
  minorGc()
  let turns = 0
  let gcs = 1
  for (;;) {
    await immediate()
    turns++
    if (procStatus('VmSize') <= startVmKiB + slack) return { turns, gcs, settled: true }
    if (now() > deadline) return { turns, gcs, settled: false }
    if (turns % 20 === 0) {
      gc()
      gcs++
    }
  }
}

/**
 * Counts the garbage collections V8 runs on its own (not the ones the bench forces) from now
 * until `stop()`: `{ major, minor, incremental, ms }`. V8 counts the length of every external
 * Buffer as external memory, and a mapping is one, so mapping large ranges can trigger GCs.
 */
function watchGc() {
  const { PerformanceObserver, constants: c } = require('node:perf_hooks')
  const counts = { major: 0, minor: 0, incremental: 0, ms: 0 }
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const { kind, flags } = entry.detail || entry
      if (flags & c.NODE_PERFORMANCE_GC_FLAGS_FORCED) continue
      if (kind === c.NODE_PERFORMANCE_GC_MAJOR) counts.major++
      else if (kind === c.NODE_PERFORMANCE_GC_MINOR) counts.minor++
      else if (kind === c.NODE_PERFORMANCE_GC_INCREMENTAL) counts.incremental++
      else continue
      counts.ms += entry.duration
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  return {
    async stop() {
      // Entries are delivered on a later turn.
      await immediate()
      await new Promise((resolve) => setTimeout(resolve, 1))
      observer.disconnect()
      return counts
    },
  }
}

/** gc() and a few event-loop turns: a quiet start for the next measurement. */
/**
 * Run time of the main thread of this process in nanoseconds, from Linux's schedstat:
 * like CPU time it leaves out the time other guests take this VM's CPUs, and unlike
 * `process.cpuUsage()` it leaves out V8's helper threads, which run beside the main thread.
 * `null` where there is no schedstat.
 */
function mainThreadNs() {
  try {
    return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'latin1').split(' ')[0])
  } catch {
    return null
  }
}

async function quiesce() {
  gc()
  for (let i = 0; i < 3; i++) await immediate()
  gc()
}

/** Rotates `items` by `n`: run order changes from one repetition to the next. */
function rotate(items, n) {
  const k = n % items.length
  return items.slice(k).concat(items.slice(0, k))
}

/** A deterministic byte pattern that never contains `missing`: one MiB, repeated. */
function patternChunk(missing) {
  const chunk = Buffer.allocUnsafe(MiB)
  let x = 0x9e3779b9
  for (let i = 0; i < chunk.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    let byte = x & 0xff
    if (byte === missing) byte ^= 1
    chunk[i] = byte
  }
  return chunk
}

/** Writes `size` bytes of the pattern to `path` (page-cached afterwards). */
function writePatternFile(path, size, missing) {
  const chunk = patternChunk(missing)
  const fd = fs.openSync(path, 'w')
  try {
    for (let pos = 0; pos < size; pos += chunk.length) {
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - pos), pos)
    }
  } finally {
    fs.closeSync(fd)
  }
}

/** Reads a whole file once in 1 MiB chunks, so its pages sit in the page cache. */
function warmPageCache(path) {
  const chunk = Buffer.allocUnsafe(MiB)
  const fd = fs.openSync(path, 'r')
  try {
    let pos = 0
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, pos)
      if (n === 0) break
      pos += n
    }
  } finally {
    fs.closeSync(fd)
  }
}

const RECORD = 64

/** Reads of RECORD bytes at `offs` in place from a fresh mapping of `file`: one byte of each, summed. */
function inPlaceReads(mmap, file, offs) {
  const mapped = mmap.openSync(file)
  let sum = 0
  for (let i = 0; i < offs.length; i++) {
    sum += mapped[offs[i] + (i & (RECORD - 1))]
  }
  mmap.unmap(mapped)
  return sum
}

/** The same reads by fs.readSync (pread) of RECORD bytes into one Buffer. */
function preadReads(file, offs) {
  const fd = fs.openSync(file, 'r')
  const record = Buffer.allocUnsafe(RECORD)
  let sum = 0
  try {
    for (let i = 0; i < offs.length; i++) {
      fs.readSync(fd, record, 0, RECORD, offs[i])
      sum += record[i & (RECORD - 1)]
    }
  } finally {
    fs.closeSync(fd)
  }
  return sum
}

/** A workload's result goes to stdout as one JSON line; progress goes to stderr. */
function progress(message) {
  process.stderr.write(`  ${message}\n`)
}

/** Reads the workload's configuration (JSON in argv[2]), runs `main`, prints its result. */
function runWorkload(main) {
  const config = JSON.parse(process.argv[2])
  main(config).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`)
    },
    (err) => {
      process.stderr.write(`${err && err.stack ? err.stack : err}\n`)
      process.exitCode = 1
    },
  )
}

/** An error as one line for the table: `CODE: message`. */
function describeError(err) {
  if (!err) return 'unknown error'
  const message = String(err.message || err).split('\n')[0]
  return err.code ? `${err.code}: ${message}` : message
}

module.exports = {
  RECORD,
  inPlaceReads,
  preadReads,
  KiB,
  MiB,
  GiB,
  now,
  median,
  procStatus,
  mapsLines,
  immediate,
  gc,
  minorGc,
  settle,
  watchGc,
  quiesce,
  mainThreadNs,
  rotate,
  patternChunk,
  writePatternFile,
  warmPageCache,
  progress,
  runWorkload,
  describeError,
}
