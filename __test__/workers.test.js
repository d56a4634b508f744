'use strict'
// worker_threads: the addon loads in several threads at once, their MAP_SHARED mappings of one
// file all write to it, and a worker's mappings leave the process when it exits, however it
// exits. Oracles: fs.readFileSync and /proc/self/maps.

const test = require('node:test')
const assert = require('node:assert/strict')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')
const { Worker } = require('node:worker_threads')

const mmap = require('..')
const { PACKAGE, tempDir, fileWith, mappingsOf, pollUntil } = require('./helpers.js')

const { PAGESIZE, PROT_READ, MAP_SHARED } = mmap
const dir = tempDir(test)
let serial = 0

/** Starts a worker running `source` (CommonJS; `MMAP` is the package path, `data` its data). */
function startWorker(source, data) {
  const prelude = `'use strict'
    const { workerData: data, parentPort } = require('node:worker_threads')
    const fs = require('node:fs')
    const mmap = require(${JSON.stringify(PACKAGE)})
  `
  return new Worker(prelude + source, { eval: true, workerData: data })
}

/** Resolves, once the worker exited, with its exit code, its messages and any uncaught error. */
function finished(worker) {
  const messages = []
  let error = null
  worker.on('message', (m) => messages.push(m))
  worker.on('error', (err) => {
    error = err
  })
  return new Promise((resolve) => worker.on('exit', (code) => resolve({ code, messages, error })))
}

const pattern = (index, at) => (at * 131 + index * 17 + 1) & 0xff

test('4 workers map one file MAP_SHARED and write disjoint quarters at once', { timeout: 60_000 }, async () => {
  const parts = 4
  const part = 16 * PAGESIZE + 123 // quarters that do not fall on page boundaries
  const size = parts * part
  const file = fileWith(dir, `quarters-${++serial}.bin`, Buffer.alloc(size))
  const barrier = new Int32Array(new SharedArrayBuffer(8))

  const source = `
    const { file, index, parts, part, barrier } = data
    const arrive = (slot) => {
      Atomics.add(barrier, slot, 1)
      Atomics.notify(barrier, slot)
      for (;;) {
        const seen = Atomics.load(barrier, slot)
        if (seen >= parts) return
        if (Atomics.wait(barrier, slot, seen, 20_000) === 'timed-out') throw new Error('barrier timed out')
      }
    }
    const fd = fs.openSync(file, 'r+')
    const buf = mmap.map(parts * part, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
    fs.closeSync(fd)
    globalThis.keep = buf // alive until the worker exits
    parentPort.postMessage({ allowed: mmap.externalBuffersAllowed(), pagesize: mmap.PAGESIZE })
    arrive(0) // every worker has mapped: now all write at once
    for (let at = index * part; at < (index + 1) * part; at++) buf[at] = (at * 131 + index * 17 + 1) & 0xff
    arrive(1) // every worker has written: each reads what the others wrote
    parentPort.postMessage({ seen: Buffer.from(buf) })
  `
  const workers = []
  for (let index = 0; index < parts; index++) {
    workers.push(finished(startWorker(source, { file, index, parts, part, barrier })))
  }
  const results = await Promise.all(workers)

  const expected = Buffer.alloc(size)
  for (let index = 0; index < parts; index++) {
    for (let at = index * part; at < (index + 1) * part; at++) expected[at] = pattern(index, at)
  }
  assert.ok(fs.readFileSync(file).equals(expected), 'the file does not hold all four quarters')
  for (const [index, { code, messages }] of results.entries()) {
    assert.equal(code, 0, `worker ${index} exit code`)
    assert.deepEqual(messages[0], { allowed: true, pagesize: PAGESIZE })
    assert.ok(Buffer.from(messages[1].seen).equals(expected), `worker ${index} did not see every quarter`)
  }
  const gone = await pollUntil(() => mappingsOf(file).length === 0)
  assert.ok(gone, `${mappingsOf(file).length} mappings of the file outlived the workers`)
})

test('a worker that exits while holding live mappings does not crash the process', { timeout: 60_000 }, async (t) => {
  const bytes = randomBytes(8 * PAGESIZE)
  const devZero = () => mappingsOf('/dev/zero (deleted)').length // shared anonymous memory
  const holdMany = `
    const fd = fs.openSync(data.file, 'r+')
    const RW = mmap.PROT_READ | mmap.PROT_WRITE
    globalThis.keep = [
      mmap.map(data.size, RW, mmap.MAP_SHARED, fd),
      mmap.map(data.size, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, mmap.PAGESIZE),
      mmap.map(3 * mmap.PAGESIZE, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1),
      mmap.map(1 << 20, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1),
    ]
    fs.closeSync(fd)
    globalThis.keep[0][data.at] = data.value
    globalThis.keep[2].fill(9)
    const views = globalThis.keep.map((b) => b.subarray(1))
    globalThis.views = views
  `
  const endings = {
    'at natural exit': { tail: `parentPort.postMessage('mapped')`, code: 0 },
    'at process.exit() in the worker': { tail: `parentPort.postMessage('mapped'); process.exit(0)`, code: 0 },
    'with process.exit(3) in the worker': { tail: `parentPort.postMessage('mapped'); process.exit(3)`, code: 3 },
    'on an uncaught exception': { tail: `parentPort.postMessage('mapped'); throw new Error('boom')`, code: 1, error: 'boom' },
    'at worker.terminate() while writing': {
      tail: `parentPort.postMessage('mapped'); const b = globalThis.keep[0]; for (let i = 0; ; i++) b[data.at + 1 + (i % 64)] = i`,
      code: 1,
      terminate: true,
    },
  }
  const anonBefore = devZero()
  for (const [name, ending] of Object.entries(endings)) {
    await t.test(name, async () => {
      const file = fileWith(dir, `held-${++serial}.bin`, bytes)
      const at = 5 * PAGESIZE + 7
      const value = bytes[at] ^ 0xff
      const worker = startWorker(holdMany + ending.tail, { file, size: bytes.length - PAGESIZE, at, value })
      const done = finished(worker)
      if (ending.terminate) {
        await new Promise((resolve) => worker.once('message', resolve))
        assert.ok(mappingsOf(file).length >= 2, 'the worker\'s mappings are not in /proc/self/maps')
        await worker.terminate()
      }
      const result = await done
      assert.equal(result.error?.message, ending.error)
      assert.equal(result.code, ending.code)
      // The worker's write is in the file; the rest of it is untouched (save the busy loop's).
      const now = fs.readFileSync(file)
      assert.equal(now[at], value)
      assert.ok(now.subarray(0, at).equals(bytes.subarray(0, at)))
      if (!ending.terminate) assert.ok(now.subarray(at + 1).equals(bytes.subarray(at + 1)))
      const gone = await pollUntil(() => mappingsOf(file).length === 0 && devZero() === anonBefore)
      assert.ok(gone, `left behind: ${mappingsOf(file).length} mappings of the file, ${devZero() - anonBefore} shared anonymous`)
      // This process carries on: it maps and reads the file.
      const fd = fs.openSync(file, 'r')
      const buf = mmap.map(now.length, PROT_READ, MAP_SHARED, fd)
      fs.closeSync(fd)
      assert.ok(buf.equals(now))
    })
  }
})

test('workers terminated at random points while they map leave no mapping behind', { timeout: 120_000 }, async () => {
  // Each worker maps the file in a loop every way there is, and is terminated a random time
  // after it starts: sometimes inside map(), openSync(), remap(), a Mapping or open()'s
  // completion, where the env already refuses to make the Buffer. Whatever the worker held, its
  // mappings must all go (they used to stay for the life of the process: ~0.4 per termination).
  const file = fileWith(dir, `terminated-${++serial}.bin`, randomBytes(4 * PAGESIZE))
  const loop = `
    const fd = fs.openSync(data.file, 'r+')
    const RW = mmap.PROT_READ | mmap.PROT_WRITE
    const pause = new Int32Array(new SharedArrayBuffer(4))
    parentPort.postMessage('started')
    ;(async () => {
      for (let i = 0; ; i++) {
        mmap.unmap(mmap.map(4 * mmap.PAGESIZE, RW, mmap.MAP_SHARED, fd))
        mmap.unmap(mmap.openSync(data.file, { mode: 'r+', offset: 100 }))
        mmap.unmap(mmap.remap(mmap.map(mmap.PAGESIZE, RW, mmap.MAP_SHARED, fd), 2 * mmap.PAGESIZE))
        const handle = mmap.Mapping.open(data.file)
        handle.view(1, 10)
        handle.unmap()
        globalThis.kept = mmap.map(mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE, fd) // left to GC
        if (i % 16 === 0) mmap.unmap(await mmap.open(data.file))
        if (i % 64 === 0) Atomics.wait(pause, 0, 0, 1) // lets open()'s pool work finish meanwhile
      }
    })()
  `
  for (let round = 0; round < 40; round++) {
    const worker = startWorker(loop, { file })
    const done = finished(worker)
    await new Promise((resolve) => worker.once('message', resolve))
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 30))
    await worker.terminate()
    await done
  }
  const gone = await pollUntil(() => mappingsOf(file).length === 0)
  assert.ok(gone, `${mappingsOf(file).length} mappings of the file outlived 40 terminated workers`)
})
