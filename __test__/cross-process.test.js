'use strict'
// Across processes: several `node` processes share one file through MAP_SHARED mappings.
// Atomics on an Int32Array over the mapping are atomic across processes; a writer killed with
// SIGKILL right after sync(buf, true) leaves its data in the file; a reader in another process
// sees every record of a writer that publishes them with a sequence number. Oracles: fs reads
// of the file, a fresh mapping in this process, and the writer's /proc/<pid>/smaps.
// Nothing is timed: every wait is a bounded poll against a deadline.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')

const mmap = require('..')
const { PACKAGE, tempDir, fileWith, pattern, childEnv } = require('./helpers.js')

const { PAGESIZE, PROT_READ, MAP_SHARED } = mmap
const dir = tempDir(test)
let serial = 0

/** Children still running; a failed test leaves none behind. */
const running = new Set()
test.after(() => {
  for (const child of running) child.kill('SIGKILL')
})

/**
 * Starts `node -e` running `(main)(mmap, params)` (the function is sent as its source, so it
 * must use nothing from this file's scope) with an IPC channel: `process.send` works in it.
 * What `main` resolves to is printed as JSON. Returns the child, a Promise of its messages as
 * they arrive (`next()`), and `exited`: a Promise of { code, signal, stdout, stderr, result }.
 */
function start(main, params) {
  const source = `'use strict'
    const mmap = require(${JSON.stringify(PACKAGE)})
    Promise.resolve((${main})(mmap, ${JSON.stringify(params)})).then(
      (result) => process.stdout.write(JSON.stringify(result ?? null)),
      (err) => { process.stderr.write(String((err && err.stack) || err)); process.exitCode = 1 },
    ).finally(() => process.disconnect?.())
  `
  const child = spawn(process.execPath, ['-e', source], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  running.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk))
  const messages = []
  const waiting = []
  child.on('message', (m) => (waiting.length ? waiting.shift()(m) : messages.push(m)))
  const exited = new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      running.delete(child)
      let result
      try {
        result = stdout ? JSON.parse(stdout) : undefined
      } catch {}
      resolve({ code, signal, stdout, stderr, result })
    })
  })
  const next = () =>
    messages.length ? Promise.resolve(messages.shift()) : new Promise((resolve) => waiting.push(resolve))
  return { child, next, exited }
}

/** Asserts that a child ended with code 0, no signal and nothing on stderr; returns its result. */
function clean(ended, name = 'child') {
  const detail = `${name}: code ${ended.code}, signal ${ended.signal}\nstdout: ${ended.stdout}\nstderr: ${ended.stderr}`
  assert.equal(ended.signal, null, detail)
  assert.equal(ended.code, 0, detail)
  assert.equal(ended.stderr, '', detail)
  return ended.result
}

/** A fresh read-only mapping of the whole file, in this process. */
function freshMapping(file) {
  const fd = fs.openSync(file, 'r')
  try {
    return mmap.map(fs.fstatSync(fd).size, PROT_READ, MAP_SHARED, fd)
  } finally {
    fs.closeSync(fd)
  }
}

// ---------------------------------------------------------------------------------------------

/** One of the adders: `adds` Atomics.add(i32, 0, 1) once every process is ready. */
async function adder(mmap, { file, processes, adds, index }) {
  const fs = require('node:fs')
  const fd = fs.openSync(file, 'r+')
  const buf = mmap.map(mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  const i32 = new Int32Array(buf.buffer, buf.byteOffset, buf.length / 4)
  // A barrier in the mapping itself (word 1), so that every process adds at the same time: a
  // busy poll, bounded by a deadline.
  Atomics.add(i32, 1, 1)
  const deadline = Date.now() + 60_000
  for (let spins = 0; Atomics.load(i32, 1) < processes; spins++) {
    if (spins % 100_000 === 0 && Date.now() > deadline) throw new Error(`process ${index}: the others never arrived`)
  }
  const first = Atomics.add(i32, 0, 1)
  let last = first
  for (let k = 1; k < adds; k++) last = Atomics.add(i32, 0, 1)
  mmap.unmap(buf)
  return { first, last }
}

test('4 processes × 1,000,000 Atomics.add on one Int32Array over a MAP_SHARED mapping: exactly 4,000,000', { timeout: 120_000 }, async () => {
  const processes = 4
  const adds = 1_000_000
  const file = fileWith(dir, `atomics-${++serial}.bin`, Buffer.alloc(PAGESIZE))
  const children = Array.from({ length: processes }, (_, index) => start(adder, { file, processes, adds, index }))
  const ended = await Promise.all(children.map((c) => c.exited))
  const results = ended.map((e, index) => clean(e, `adder ${index}`))
  // The premise: the processes did add at the same time (what each saw overlaps another's).
  const overlapping = results.some((a, i) => results.some((b, j) => i !== j && a.first < b.first && b.first < a.last))
  assert.ok(overlapping, `no two processes added at the same time: ${JSON.stringify(results)}`)
  const onDisk = fs.readFileSync(file)
  assert.equal(onDisk.readInt32LE(0), processes * adds, 'the counter as fs reads it')
  assert.equal(onDisk.readInt32LE(4), processes, 'the barrier as fs reads it')
  const fresh = freshMapping(file)
  const counter = new Int32Array(fresh.buffer, fresh.byteOffset, 2)
  assert.equal(Atomics.load(counter, 0), processes * adds, 'the counter through a fresh mapping')
  mmap.unmap(fresh)
})

// ---------------------------------------------------------------------------------------------

/** Writes `pattern(size, seed)` over the file, syncs it, then waits to be killed or kills itself. */
async function syncThenDie(mmap, { file, seed, killSelf }) {
  const fs = require('node:fs')
  const fd = fs.openSync(file, 'r+')
  const size = fs.fstatSync(fd).size
  const buf = mmap.map(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff // toolkit's pattern()
  mmap.sync(buf, true)
  if (killSelf) process.kill(process.pid, 'SIGKILL')
  process.send('synced')
  globalThis.keep = buf
  await new Promise(() => setInterval(() => {}, 1000)) // until the parent kills it
}

/** kB of the file's pages that are dirty in process `pid` (its /proc/<pid>/smaps). */
function dirtyKBIn(pid, file) {
  let dirty = 0
  let entries = 0
  let ours = false
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      ours = line.endsWith(' ' + file)
      if (ours) entries++
      continue
    }
    const match = ours && /^(Shared|Private)_Dirty:\s+(\d+) kB$/.exec(line)
    if (match) dirty += Number(match[2])
  }
  return { dirty, entries }
}

test('a writer killed with SIGKILL right after sync(buf, true) leaves its data in the file', { timeout: 60_000 }, async (t) => {
  const size = 64 * PAGESIZE + 123
  for (const killSelf of [false, true]) {
    await t.test(killSelf ? 'it kills itself' : 'the parent kills it once it has synced', async () => {
      const before = randomBytes(size)
      const file = fileWith(dir, `killed-${++serial}.bin`, before)
      const seed = 1 + serial
      const expected = pattern(size, seed)
      assert.ok(!expected.equals(before))
      const writer = start(syncThenDie, { file, seed, killSelf })
      if (!killSelf) {
        const said = await Promise.race([writer.next(), writer.exited])
        assert.equal(said, 'synced', `the writer did not report: ${JSON.stringify(said)}`)
        // msync(MS_SYNC) wrote the pages back: none of them is dirty in the writer.
        let smaps
        try {
          smaps = dirtyKBIn(writer.child.pid, file)
        } finally {
          writer.child.kill('SIGKILL')
        }
        assert.equal(smaps.entries, 1, 'the writer\'s mapping is not in its /proc/<pid>/smaps')
        assert.equal(smaps.dirty, 0, 'dirty kB of the file in the writer after sync(buf, true)')
      }
      const ended = await writer.exited
      assert.equal(ended.signal, 'SIGKILL', `the writer ended otherwise: ${JSON.stringify(ended)}`)
      assert.ok(fs.readFileSync(file).equals(expected), 'the file does not hold what the writer wrote')
      const fresh = freshMapping(file)
      assert.ok(fresh.equals(expected), 'a fresh mapping does not show what the writer wrote')
      mmap.unmap(fresh)
    })
  }
})

// ---------------------------------------------------------------------------------------------
// The sequence protocol. Page 0 holds four Int32 words: [0] the last record published, [1] the
// last record the reader has checked (the writer never gets more than RING records ahead of
// it), [2] the reader is ready. From page 1 on, a ring of RING slots of RECORD bytes: record n
// sits in slot n % RING and holds n, then bytes derived from n, then a checksum.

const RING = 64
const RECORD = 200 // not a divisor of the page size: records straddle pages

/** Writes records 1..total, each published with Atomics.store after an msync of its slot. */
async function writer(mmap, { file, total, ring, record }) {
  const fs = require('node:fs')
  const P = mmap.PAGESIZE
  const fd = fs.openSync(file, 'r+')
  const buf = mmap.map(P + ring * record, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  const word = new Int32Array(buf.buffer, buf.byteOffset, 4)
  const deadline = Date.now() + 60_000
  let waits = 0
  for (let n = 1; n <= total; n++) {
    // Never overwrite a record the reader has not checked yet.
    for (let spins = 0; n - Atomics.load(word, 1) > ring; spins++) {
      if (spins % 1000 === 999) {
        waits++
        if (Date.now() > deadline) throw new Error(`writer: the reader stopped at ${Atomics.load(word, 1)}`)
        await new Promise(setImmediate)
      }
    }
    const at = P + (n % ring) * record
    buf.writeUInt32LE(n, at)
    let sum = 0
    for (let k = 4; k < record - 4; k++) {
      const byte = (n * 13 + k * 7) & 0xff
      buf[at + k] = byte
      sum = (sum + byte * k) >>> 0
    }
    buf.writeUInt32LE(sum, at + record - 4)
    mmap.sync(buf, at, record)
    Atomics.store(word, 0, n)
  }
  mmap.sync(buf, true)
  return { waits }
}

/** Polls the published number and checks every record up to it, in order. */
async function reader(mmap, { file, total, ring, record }) {
  const fs = require('node:fs')
  const P = mmap.PAGESIZE
  const fd = fs.openSync(file, 'r+') // read-write: the reader writes its word of the header
  const buf = mmap.map(P + ring * record, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  const word = new Int32Array(buf.buffer, buf.byteOffset, 4)
  const fromFile = Buffer.alloc(record)
  Atomics.store(word, 2, 1)
  const deadline = Date.now() + 60_000
  let last = 0
  let batches = 0
  let fsChecks = 0
  for (let spins = 0; last < total; spins++) {
    const published = Atomics.load(word, 0)
    if (published < last) throw new Error(`reader: the published number went back from ${last} to ${published}`)
    if (published === last) {
      if (spins % 1000 === 999) {
        if (Date.now() > deadline) throw new Error(`reader: nothing published after ${last}`)
        await new Promise(setImmediate)
      }
      continue
    }
    batches++
    for (let n = last + 1; n <= published; n++) {
      const at = P + (n % ring) * record
      if (buf.readUInt32LE(at) !== n) throw new Error(`reader: slot of record ${n} holds ${buf.readUInt32LE(at)}`)
      let sum = 0
      for (let k = 4; k < record - 4; k++) {
        const byte = (n * 13 + k * 7) & 0xff
        if (buf[at + k] !== byte) throw new Error(`reader: record ${n} is incomplete at byte ${k}`)
        sum = (sum + byte * k) >>> 0
      }
      if (buf.readUInt32LE(at + record - 4) !== sum) throw new Error(`reader: record ${n} has a bad checksum`)
      if (n % 97 === 0) {
        // The file, read with fs, holds the same record.
        fs.readSync(fd, fromFile, 0, record, at)
        if (!fromFile.equals(buf.subarray(at, at + record))) throw new Error(`reader: fs reads another record ${n}`)
        fsChecks++
      }
      Atomics.store(word, 1, n)
    }
    last = published
  }
  fs.closeSync(fd)
  return { last, batches, fsChecks }
}

test('a reader in another process sees every record of a writer that syncs, complete and in order', { timeout: 120_000 }, async () => {
  const total = 10_000
  const size = PAGESIZE + RING * RECORD
  const file = fileWith(dir, `records-${++serial}.bin`, Buffer.alloc(size))
  const params = { file, total, ring: RING, record: RECORD }
  const readerProcess = start(reader, params)
  const writerProcess = start(writer, params)
  const [read, wrote] = await Promise.all([readerProcess.exited, writerProcess.exited])
  const { last, batches, fsChecks } = clean(read, 'reader')
  clean(wrote, 'writer')
  assert.equal(last, total, 'the reader did not reach the last record')
  // The premise: the reader checked records while the writer was still writing (the ring is
  // smaller than the total, so it had to), in more than one batch.
  assert.ok(batches >= total / RING, `the reader saw ${batches} batches`)
  assert.ok(fsChecks >= Math.floor(total / 97))
  // The file: the header, and the last RING records complete in their slots.
  const expected = Buffer.alloc(size)
  expected.writeInt32LE(total, 0)
  expected.writeInt32LE(total, 4)
  expected.writeInt32LE(1, 8)
  for (let n = total - RING + 1; n <= total; n++) {
    const at = PAGESIZE + (n % RING) * RECORD
    expected.writeUInt32LE(n, at)
    let sum = 0
    for (let k = 4; k < RECORD - 4; k++) {
      expected[at + k] = (n * 13 + k * 7) & 0xff
      sum = (sum + expected[at + k] * k) >>> 0
    }
    expected.writeUInt32LE(sum, at + RECORD - 4)
  }
  assert.ok(fs.readFileSync(file).equals(expected), 'the file does not hold the header and the last records')
  const fresh = freshMapping(file)
  assert.ok(fresh.equals(expected), 'a fresh mapping shows something else')
  mmap.unmap(fresh)
})
