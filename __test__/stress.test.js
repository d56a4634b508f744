'use strict'
// Stress: many threads mapping and unmapping at once, address reuse while old Buffers await
// finalization, and flush() from several threads at once. The heavy parts run in a child
// `node` (so a crash fails the test with its signal, and /proc/self/maps is the child's own),
// which reports what it saw as JSON on stdout. Oracles: fs reads of the same bytes, a fresh
// mapping, and the kernel's /proc/self/maps and /proc/self/smaps. Nothing here is timed.
// The last test runs out of kernel mappings through placeholders that cannot merge: ENOMEM, not a crash.

const test = require('node:test')
const assert = require('node:assert/strict')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')

const mmap = require('..')
const { tempDir, fileWith, runScript, assertCleanExit } = require('./helpers.js')

const { PAGESIZE } = mmap
const dir = tempDir(test)
let serial = 0

/**
 * How far above its baseline /proc/self/maps may stay once everything settled: V8 keeps some
 * of the 256 KiB heap pages it grew into (about 25 after the reuse loop). A leak of the
 * mappings under test is thousands of lines (no line naming a test file is allowed at all).
 */
const SLACK = 64

/**
 * Runs `main(MMAP, params)` in a child `node --expose-gc` (the function is sent as its source,
 * so it must use nothing from this file's scope) and returns what it printed as JSON.
 * The child must end with code 0, no signal and nothing on stderr.
 */
function runChild(main, params, { timeout = 120_000 } = {}) {
  const source = `
    ${CHILD_HELPERS}
    const HELPERS = ${JSON.stringify(CHILD_HELPERS)}
    Promise.resolve((${main})(MMAP, ${JSON.stringify(params)})).then(
      (report) => process.stdout.write(JSON.stringify(report)),
      (err) => { process.stderr.write(String(err && err.stack || err)); process.exitCode = 1 },
    )
  `
  const result = runScript(source, { nodeArgs: ['--expose-gc'], timeout })
  assertCleanExit(result)
  return JSON.parse(result.stdout)
}

// ---------------------------------------------------------------------------------------------
// The parts that run in the child (or in its workers). They share these helpers by source.

/**
 * What cycle `i` of the reuse test maps: file `f` (of `sizes`) from a page `offset`, `len` bytes
 * (at least 114), and where it writes its 4-byte stamp. The test replays it to build the files'
 * expected bytes.
 */
function cycleShape(i, sizes, P) {
  const f = i % sizes.length
  const offsets = Math.floor((sizes[f] - 128) / P) + 1 // page offsets that leave 128 bytes or more
  const offset = (Math.floor(i / sizes.length) % offsets) * P
  const len = sizes[f] - offset - (i % 3) * 7
  return { f, offset, len, stampAt: (i * 7919) % (len - 4) }
}

/** Sources of helpers the child functions need; prepended to every worker. */
const CHILD_HELPERS = `
  ${cycleShape}
  const procLines = () => require('node:fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').filter(Boolean)
  const turn = () => new Promise((resolve) => setTimeout(resolve, 5))
  /** gc() and timer turns (so queued finalizers run) until condition() holds or 20 s pass. */
  async function settle(condition, timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      gc()
      await new Promise(setImmediate)
      if (condition()) return true
      if (Date.now() > deadline) return false
      await turn()
    }
  }
  /** Starts a worker running \`(fn)(MMAP, data)\` and resolves with its exit code, messages, error. */
  function runWorker(fn, MMAP, data) {
    const { Worker } = require('node:worker_threads')
    const source = HELPERS + \`
      const { workerData, parentPort } = require('node:worker_threads')
      ;(\${fn})(\${JSON.stringify(MMAP)}, workerData).then((r) => parentPort.postMessage({ done: r }))
    \`
    const worker = new Worker(source, { eval: true, workerData: data })
    const messages = []
    let error = null
    worker.on('message', (m) => messages.push(m))
    worker.on('error', (err) => { error = err })
    return new Promise((resolve) => {
      worker.on('exit', (code) => resolve({ code, messages, error: error && String(error.stack || error) }))
    })
  }
`

/** A worker of the map/unmap storm: see the first test. */
async function stormWorker(MMAP, { file, index, region, iterations, gcEvery }) {
  const fs = require('node:fs')
  const mmap = require(MMAP)
  const { PAGESIZE: P, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS } = mmap
  const RW = PROT_READ | PROT_WRITE
  const fd = fs.openSync(file, 'r+')
  const size = fs.fstatSync(fd).size
  const own = index * P // this worker's page of the file; it writes `region` bytes at its start
  const stamp = (i) => {
    const b = Buffer.alloc(region, (index * 37 + i * 11 + 1) & 0xff)
    b.writeUInt32LE(i, 0)
    return b
  }
  const zeros = Buffer.alloc(4 * P)
  const fromFile = Buffer.alloc(region)
  let expected = fs.readFileSync(file).subarray(own, own + region) // what the region holds now
  let leftToGc = 0
  let fsChecks = 0
  const fail = (what, i) => {
    throw new Error(`worker ${index}, iteration ${i}: ${what}`)
  }
  for (let i = 0; i < iterations; i++) {
    // The file: the whole of it, or only this worker's page (an offset mapping).
    const whole = i % 2 === 0
    const buf = whole ? mmap.map(size, RW, MAP_SHARED, fd) : mmap.map(P, RW, MAP_SHARED, fd, own)
    const view = whole ? buf.subarray(own, own + region) : buf.subarray(0, region)
    if (!view.equals(expected)) fail('the region does not hold what was written last', i)
    const next = stamp(i)
    next.copy(view)
    if (!view.equals(next)) fail('the write does not read back', i)
    if (i % 50 === 0) {
      fs.readSync(fd, fromFile, 0, region, own)
      if (!fromFile.equals(next)) fail('fs.readSync does not see the write', i)
      fsChecks++
    }
    expected = next
    // Anonymous memory: private or shared, 1 to 4 pages less a ragged tail. Fresh: all zeros,
    // whatever the address held before.
    const len = (1 + (i % 4)) * P - (i % 3) * 100
    const flags = (i % 5 === 0 ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS
    const anon = mmap.map(len, RW, flags, -1)
    if (anon.length !== len) fail(`anonymous length ${anon.length}, not ${len}`, i)
    if (!anon.equals(zeros.subarray(0, len))) fail('fresh anonymous memory is not zero-filled', i)
    anon.fill(next[4])
    anon.writeUInt32LE(i, len - 4)
    if (anon[0] !== next[4] || anon[len - 5] !== next[4] || anon.readUInt32LE(len - 4) !== i) {
      fail('anonymous writes do not read back', i)
    }
    if (i % 10 === 9) {
      leftToGc++ // dropped without unmap(): the finalizer releases both
    } else {
      mmap.unmap(buf)
      mmap.unmap(anon)
      // Views keep their length and read the placeholder's zeros.
      if (anon.length !== len || anon[0] !== 0 || anon[len - 1] !== 0) fail('unmap() left anonymous memory its bytes', i)
      if (view.length !== region || view.some((b) => b !== 0)) fail('unmap() left a view of the file its bytes', i)
    }
    if (i % gcEvery === gcEvery - 1) {
      gc()
      await new Promise(setImmediate)
    }
  }
  // What it dropped since the last collection is let go before it ends: a Buffer a worker still
  // holds at its end keeps its range reserved for good (README, Caveats), which the baseline
  // below would count.
  gc()
  for (let turn = 0; turn < 3; turn++) await new Promise(setImmediate)
  fs.closeSync(fd)
  return { leftToGc, fsChecks }
}

/** The child of the map/unmap storm: a warm-up round, a baseline, the storm, the settling. */
async function stormChild(MMAP, { file, workers, region, iterations, gcEvery, slack, worker }) {
  const fs = require('node:fs')
  const round = (n) =>
    Promise.all(
      Array.from({ length: workers }, (_, index) =>
        runWorker(worker, MMAP, { file, index, region, iterations: n, gcEvery }),
      ),
    )
  const fileLines = () => procLines().filter((line) => line.endsWith(' ' + file))
  // Warm-up: threads leave allocator arenas and the like behind; count them in the baseline.
  const warm = await round(20)
  await settle(() => fileLines().length === 0)
  const baseline = procLines().length
  // Samples the kernel's list during the storm: the oracle must see the mappings it later
  // expects gone.
  const peak = { lines: 0, fileLines: 0 }
  const sampler = setInterval(() => {
    const lines = procLines()
    peak.lines = Math.max(peak.lines, lines.length)
    peak.fileLines = Math.max(peak.fileLines, lines.filter((line) => line.endsWith(' ' + file)).length)
  }, 20)
  const results = await round(iterations)
  clearInterval(sampler)
  const settled = await settle(() => fileLines().length === 0 && procLines().length <= baseline + slack)
  return {
    warm: warm.map((r) => r.code),
    results,
    baseline,
    peak,
    settled,
    after: procLines().length,
    fileLines: fileLines(),
    final: fs.readFileSync(file).toString('hex'),
  }
}

test(
  '8 workers × 10,000 map/unmap pairs (file and anonymous), every 10th left to GC: writes hold, /proc/self/maps returns to its baseline',
  { timeout: 180_000 },
  () => {
    const workers = 8
    const region = 300
    const iterations = 10_000
    const initial = randomBytes(workers * PAGESIZE)
    const file = fileWith(dir, `storm-${++serial}.bin`, initial)
    const report = runChild(
      stormChild,
      { file, workers, region, iterations, gcEvery: 250, slack: SLACK, worker: String(stormWorker) },
      { timeout: 150_000 },
    )
    for (const [index, r] of report.results.entries()) {
      assert.equal(r.error, null, `worker ${index} threw`)
      assert.equal(r.code, 0, `worker ${index} exit code`)
      assert.equal(r.messages.at(-1).done.leftToGc, iterations / 10)
    }
    assert.deepEqual(report.warm, Array(workers).fill(0))
    // The file: each worker's last stamp at the start of its page, the rest untouched.
    const expected = Buffer.from(initial)
    for (let index = 0; index < workers; index++) {
      const at = index * PAGESIZE
      expected.fill((index * 37 + (iterations - 1) * 11 + 1) & 0xff, at, at + region)
      expected.writeUInt32LE(iterations - 1, at)
    }
    assert.ok(fs.readFileSync(file).equals(expected), 'the file does not hold every worker\'s last write')
    assert.ok(Buffer.from(report.final, 'hex').equals(expected), 'the child read something else from the file')
    // The kernel's list: it showed the storm's mappings of the file; none is left, and the
    // count of lines is back near its baseline.
    assert.ok(report.peak.fileLines > 0, 'no sample of /proc/self/maps during the storm named the file')
    // Finalizers ran during the storm, not only when the workers exited.
    const leftToGc = (workers * iterations) / 10
    assert.ok(report.peak.fileLines < leftToGc / 2, `${report.peak.fileLines} mappings of the file alive at once`)
    assert.deepEqual(report.fileLines, [], 'mappings of the file outlived the workers')
    assert.ok(
      report.settled,
      `/proc/self/maps has ${report.after} lines after the storm (baseline ${report.baseline}, peak ${report.peak.lines})`,
    )
  },
)

/** The child of the reuse test: see the second test. */
async function reuseChild(MMAP, { files, warmUp, cycles, gcEvery, keepEvery, keepFor, surviveEvery, slack }) {
  const fs = require('node:fs')
  const mmap = require(MMAP)
  const { PAGESIZE: P, PROT_READ, PROT_WRITE, MAP_SHARED } = mmap
  const RW = PROT_READ | PROT_WRITE
  const fds = files.map((file) => fs.openSync(file, 'r+'))
  // The model of each file: what fs read at the start, plus every stamp written since (each
  // cycle also compares the new Buffer with fs.readSync).
  const model = files.map((file) => fs.readFileSync(file))
  const sizes = model.map((bytes) => bytes.length)
  const fail = (what, i) => {
    throw new Error(`cycle ${i}: ${what}`)
  }
  const fileLines = () => procLines().filter((line) => files.some((file) => line.endsWith(' ' + file)))
  const starts = () => new Set(fileLines().map((line) => line.slice(0, line.indexOf('-'))))
  const scratch = Buffer.alloc(64)
  const seen = new Set()
  const stats = { sampled: 0, reused: 0, oldChecks: 0, leftToGc: 0, peak: 0 }

  async function loop(from, to) {
    // Unmapped Buffers, subarrays and typed arrays: the first three sets kept for the whole
    // loop, the others for `keepFor` cycles each.
    let old = []
    let survivors = [] // Buffers kept mapped (never unmapped) for `keepFor` cycles
    for (let i = from; i < to; i++) {
      const { f, offset, len, stampAt } = cycleShape(i, sizes, P)
      const sample = i % 97 === 0
      const before = sample ? starts() : null
      const buf = mmap.map(len, RW, MAP_SHARED, fds[f], offset)
      if (sample) {
        // The new mapping's address: the one start that was not there before the call.
        const added = [...starts()].filter((start) => !before.has(start))
        if (added.length !== 1) fail(`${added.length} new mappings in /proc/self/maps after one map()`, i)
        stats.sampled++
        if (seen.has(added[0])) stats.reused++
        seen.add(added[0])
      }
      // The new Buffer shows its own file's bytes, wherever the kernel put it.
      if (buf.length !== len) fail(`length ${buf.length}, not ${len}`, i)
      if (!buf.equals(model[f].subarray(offset, offset + len))) fail('the new Buffer does not show its file', i)
      const at = (i * 61) % (len - 64)
      fs.readSync(fds[f], scratch, 0, 64, offset + at)
      if (!scratch.equals(buf.subarray(at, at + 64))) fail('fs.readSync disagrees with the new Buffer', i)
      // A stamp through the mapping, so that each file keeps changing: later maps must show it.
      buf.writeUInt32LE(i, stampAt)
      model[f].writeUInt32LE(i, offset + stampAt)
      // Every old view keeps its length and reads zeros, whatever the file holds now (its
      // address stays reserved while it lives), and unmap() and sync() through one of them
      // touch nothing else.
      for (const views of old) {
        for (const [at, view] of views.entries()) {
          const n = view.length
          if (n !== views.lengths[at] || view[0] !== 0 || view[n >> 1] !== 0 || view[n - 1] !== 0) {
            fail(`an unmapped view (cycle ${views.i}) shows bytes`, i)
          }
          stats.oldChecks++
        }
      }
      if (old.length) {
        const views = old[i % old.length]
        const view = views[i % views.length]
        mmap.unmap(view)
        mmap.sync(view)
        if (buf.length !== len || buf.readUInt32LE(stampAt) !== i) {
          fail('unmap() of an old view reached the new mapping', i)
        }
      }
      if (i % 7 === 3) {
        stats.leftToGc++ // dropped while mapped: its finalizer releases it on a later turn
      } else if (i % surviveEvery === 0) {
        survivors.push({ i, f, offset, len, buf })
      } else {
        const keep = i % keepEvery === 0
        const views = keep ? [buf, buf.subarray(5, 70), new Uint32Array(buf.buffer, buf.byteOffset, 4)] : []
        const lengths = views.map((view) => view.length)
        mmap.unmap(buf)
        if (buf.length !== len || buf[0] !== 0 || buf[len - 1] !== 0) fail('unmap() left the Buffer its bytes', i)
        Object.assign(views, { lengths })
        if (keep) old.push(Object.assign(views, { i }))
      }
      if (i % gcEvery === gcEvery - 1) {
        stats.peak = Math.max(stats.peak, procLines().length)
        old = old.filter((views, at) => at < 3 || views.i > i - keepFor)
        survivors = survivors.filter((s) => s.i > i - keepFor)
        gc()
        await new Promise(setImmediate)
        // Mappings kept across the turns still show their files.
        for (const s of survivors) {
          const now = Buffer.alloc(s.len)
          fs.readSync(fds[s.f], now, 0, s.len, s.offset)
          if (!s.buf.equals(now)) fail(`a surviving mapping (cycle ${s.i}) does not show its file`, i)
        }
      }
    }
  }

  // A warm-up round first, so that the baseline counts what the runtime keeps after the loop.
  await loop(0, warmUp)
  await settle(() => fileLines().length === 0)
  const baseline = procLines().length
  await loop(warmUp, warmUp + cycles)
  const settled = await settle(() => fileLines().length === 0 && procLines().length <= baseline + slack)
  for (const fd of fds) fs.closeSync(fd)
  return {
    ...stats,
    baseline,
    settled,
    after: procLines().length,
    fileLines: fileLines(),
  }
}

test(
  '100,000 map/unmap cycles over reused addresses: new Buffers show their files, old views read zeros, /proc/self/maps returns to its baseline',
  { timeout: 150_000 },
  () => {
    const sizes = [3 * PAGESIZE + 100, 5 * PAGESIZE, 2 * PAGESIZE + 1, 8 * PAGESIZE - 3]
    const initial = sizes.map((size) => randomBytes(size))
    const files = initial.map((bytes) => fileWith(dir, `reuse-${++serial}.bin`, bytes))
    const warmUp = 5_000
    const cycles = 100_000
    const report = runChild(reuseChild, {
      files,
      warmUp,
      cycles,
      gcEvery: 500,
      keepEvery: 101,
      keepFor: 3000,
      surviveEvery: 1009,
      slack: SLACK,
    })
    // The premise: the kernel did place new mappings at addresses used before.
    assert.ok(report.reused > 0, `no sampled map() landed on a reused address (${report.sampled} samples)`)
    assert.ok(report.oldChecks > 0, 'no old view was checked')
    // The files hold their first bytes and every cycle's stamp.
    const expected = initial.map((bytes) => Buffer.from(bytes))
    for (let i = 0; i < warmUp + cycles; i++) {
      const { f, offset, stampAt } = cycleShape(i, sizes, PAGESIZE)
      expected[f].writeUInt32LE(i, offset + stampAt)
    }
    for (const [f, file] of files.entries()) {
      assert.ok(fs.readFileSync(file).equals(expected[f]), `${file} does not hold every stamp`)
    }
    assert.deepEqual(report.fileLines, [], 'mappings of the files outlived every reference')
    assert.ok(
      report.settled,
      `/proc/self/maps has ${report.after} lines after the loop (baseline ${report.baseline}, peak ${report.peak})`,
    )
  },
)

/** A worker of the flush test: see the third test. */
async function flushWorker(MMAP, { file, index, workers, part, rounds, barrier }) {
  const fs = require('node:fs')
  const mmap = require(MMAP)
  const { PAGESIZE: P, PROT_READ, PROT_WRITE, MAP_SHARED } = mmap
  const fd = fs.openSync(file, 'r+')
  const size = workers * part
  const buf = mmap.map(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd)
  fs.closeSync(fd)
  const arrive = (slot) => {
    Atomics.add(barrier, slot, 1)
    Atomics.notify(barrier, slot)
    for (;;) {
      const seen = Atomics.load(barrier, slot)
      if (seen >= workers) return
      if (Atomics.wait(barrier, slot, seen, 30_000) === 'timed-out') throw new Error(`barrier ${slot} timed out`)
    }
  }
  const own = index * part // parts do not fall on page boundaries: neighbours share pages
  const outcomes = { resolved: 0, unmappedInFlight: 0 }
  const settleAll = async (promises) => {
    for (const result of await Promise.allSettled(promises)) {
      if (result.status === 'fulfilled' && result.value === undefined) outcomes.resolved++
      else throw new Error(`a flush did not resolve to undefined: ${result.reason?.stack ?? result.value}`)
    }
  }
  for (let round = 0; round < rounds; round++) {
    arrive(round) // every worker starts the round at once
    buf.fill((index * 41 + round * 7 + 1) & 0xff, own, own + part)
    buf.writeUInt32LE(round, own)
    // The same stamp again through a second mapping of the file, which is unmapped while its
    // flush is in flight.
    const fd2 = fs.openSync(file, 'r+')
    const other = mmap.map(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd2)
    fs.closeSync(fd2)
    other.writeUInt32LE(round, own)
    // Flushes of this worker's part, of a range over both neighbours' pages, and of the whole
    // file, all at once.
    const near = Math.max(0, own - P)
    const promises = [
      mmap.flush(buf, { offset: own, length: part }),
      mmap.flush(buf, { offset: near, length: Math.min(size, own + part + P) - near }),
      mmap.flush(buf),
      mmap.flush(buf.subarray(own, own + part), { invalidate: round % 2 === 0 }),
    ]
    const inFlight = mmap.flush(other, { offset: own, length: part }).then(
      (value) => ({ value }),
      (err) => ({ err }),
    )
    mmap.unmap(other)
    await settleAll(promises)
    // A flush that was in flight when its mapping was unmapped settles: it resolves, or rejects
    // with ERR_MMAP_UNMAPPED; it never crashes.
    const { value, err } = await inFlight
    if (err && err.code !== 'ERR_MMAP_UNMAPPED') throw err
    if (!err && value !== undefined) throw new Error(`an in-flight flush resolved to ${value}`)
    if (err) outcomes.unmappedInFlight++
    else outcomes.resolved++
  }
  arrive(rounds) // every worker's last flush has resolved: nobody writes any more
  // No page of the file is left dirty in this process (every thread's mappings are in
  // /proc/self/smaps): the flushes wrote back every worker's bytes.
  let dirtyKB = 0
  let entries = 0
  let ours = false
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      ours = line.endsWith(' ' + file)
      if (ours) entries++
      continue
    }
    const dirty = ours && /^(Shared|Private)_Dirty:\s+(\d+) kB$/.exec(line)
    if (dirty) dirtyKB += Number(dirty[2])
  }
  return { ...outcomes, dirtyKB, entries }
}

/** The child of the flush test. */
async function flushChild(MMAP, { file, workers, part, rounds, worker }) {
  const fs = require('node:fs')
  const barrier = new Int32Array(new SharedArrayBuffer(4 * (rounds + 1)))
  const results = await Promise.all(
    Array.from({ length: workers }, (_, index) =>
      runWorker(worker, MMAP, { file, index, workers, part, rounds, barrier }),
    ),
  )
  return { results, final: fs.readFileSync(file).toString('hex') }
}

test(
  'flush() from 4 workers at once, on their own and overlapping ranges of one file: every flush of a live mapping resolves, the file holds every write',
  { timeout: 120_000 },
  () => {
    const workers = 4
    const part = 3 * PAGESIZE + 123
    const rounds = 300
    const initial = randomBytes(workers * part)
    const file = fileWith(dir, `flush-${++serial}.bin`, initial)
    const report = runChild(flushChild, { file, workers, part, rounds, worker: String(flushWorker) })
    const expected = Buffer.alloc(workers * part)
    for (let index = 0; index < workers; index++) {
      const own = index * part
      expected.fill((index * 41 + (rounds - 1) * 7 + 1) & 0xff, own, own + part)
      expected.writeUInt32LE(rounds - 1, own)
    }
    for (const [index, r] of report.results.entries()) {
      assert.equal(r.error, null, `worker ${index} threw`)
      assert.equal(r.code, 0, `worker ${index} exit code`)
      const { resolved, unmappedInFlight, dirtyKB, entries } = r.messages.at(-1).done
      assert.equal(resolved + unmappedInFlight, rounds * 5, `worker ${index}: flushes that settled`)
      assert.ok(resolved >= rounds * 4, `worker ${index}: ${resolved} flushes resolved`)
      assert.ok(entries > 0, `worker ${index} found no mapping of the file in /proc/self/smaps`)
      assert.equal(dirtyKB, 0, `worker ${index}: dirty kB of the file after every flush resolved`)
    }
    assert.ok(fs.readFileSync(file).equals(expected), 'the file does not hold every worker\'s last write')
    assert.ok(Buffer.from(report.final, 'hex').equals(expected), 'the child read something else from the file')
    // A fresh mapping shows the same bytes.
    const fd = fs.openSync(file, 'r')
    const fresh = mmap.map(expected.length, mmap.PROT_READ, mmap.MAP_SHARED, fd)
    fs.closeSync(fd)
    assert.ok(fresh.equals(expected), 'a fresh mapping shows something else')
    mmap.unmap(fresh)
  },
)

test(
  'map/unmap pairs between mappings kept alive end in ENOMEM, not in a crash, when the kernel runs out of mappings',
  {
    timeout: 120_000,
  },
  () => {
    // Each pair: a mapping of a file kept alive, then an anonymous one unmapped at once (no event-loop turn,
    // so no finalizer runs). Every placeholder sits between two file mappings: none can merge.
    const file = fileWith(dir, `crowd-${++serial}.bin`, randomBytes(PAGESIZE))
    const result = runScript(
      `
      const fs = require('node:fs')
      const mmap = require(MMAP)
      const fd = fs.openSync(${JSON.stringify(file)}, 'r')
      const keep = []
      let outcome = 'done'
      try {
        for (let i = 0; i < 40_000; i++) {
          keep.push(mmap.map(mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd))
          const RW = mmap.PROT_READ | mmap.PROT_WRITE
          const anon = mmap.map(mmap.PAGESIZE, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
          mmap.unmap(anon)
        }
      } catch (err) {
        outcome = err.code + ' ' + err.syscall
      }
      // The runtime still works: it allocates, and reads the mappings it kept.
      const garbage = []
      for (let k = 0; k < 100; k++) garbage.push(new Array(100_000).fill(k))
      const first = keep[0][0]
      keep.length = 0
      process.stdout.write(JSON.stringify({ outcome, first }))
      `,
      { timeout: 100_000 },
    )
    assertCleanExit(result)
    const { outcome, first } = JSON.parse(result.stdout)
    assert.ok(['done', 'ENOMEM mmap'].includes(outcome), `the loop ended with ${outcome}`)
    assert.equal(first, fs.readFileSync(file)[0])
  },
)
