'use strict'
// Mapped memory that moved to another thread without a copy, then outlived the worker that
// mapped it. A byte stream's enqueue() (and ArrayBuffer.prototype.transfer(), Node 22+) moves a
// Buffer's memory into a new ArrayBuffer, which postMessage can transfer to another thread. When
// the worker ends, Node calls the Buffer's finalizer whatever became of the memory; unmapping
// then left the other thread a pointer into unmapped memory (SIGSEGV) or into the next mapping
// the kernel placed there (silent corruption, and unmap() of the stale view unmapped that one).
// What must hold: the moved memory reads zeros after the worker's end, nothing crashes, no other
// mapping is touched; memory that did not move is still released when the worker ends.
// Oracles: the child's exit status, the bytes other mappings hold, /proc/self/maps.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { runScript, assertExited, tempDir, mappingsOf, pollUntil } = require('./helpers.js')
const mmap = require('..')

// The worker maps a file (map() or a Mapping's view()), moves the Buffer's memory through a
// byte stream, or with transfer() when asked, and posts the new ArrayBuffer's view to the main
// thread; it then ends by itself or is terminated.
const SCENARIO = `
const { Worker } = require('node:worker_threads')
const mmap = require(process.env.NODE_MMAP_ROOT)
const [file, how, end, move] = process.argv.slice(-4)
const P = mmap.PAGESIZE
const worker = new Worker(\`
  const { parentPort, workerData } = require('node:worker_threads')
  const mmap = require(process.env.NODE_MMAP_ROOT)
  const { file, how, move } = workerData
  const fd = require('node:fs').openSync(file, 'r+')
  const m = how === 'view' ? mmap.Mapping.open(file, { mode: 'r+' }) : null
  const b = m ? m.view() : mmap.map(4 * mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
  globalThis.keep = [m, b]
  if (move === 'transfer') {
    const moved = new Uint8Array(b.buffer.transfer())
    parentPort.postMessage(moved, [moved.buffer])
  } else {
    let controller
    const stream = new ReadableStream({ type: 'bytes', start(c) { controller = c } })
    controller.enqueue(b)
    stream.getReader().read().then(({ value }) => parentPort.postMessage(value, [value.buffer]))
  }
  parentPort.on('message', () => process.exit(0))
\`, { eval: true, workerData: { file, how, move } })
worker.on('error', (err) => { console.error(err); process.exit(2) })
worker.once('message', (stale) => {
  const before = stale[0]
  worker.once('exit', () => {
    // The worker is gone: the moved memory must still be readable (zeros), and stay ours.
    const zeros = stale.every((b) => b === 0)
    const fresh = []
    for (let i = 0; i < 64; i++) {
      fresh.push(mmap.map(4 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1).fill(0x11))
    }
    stale.fill(0x99)
    let unmapError = null
    try { mmap.unmap(stale) } catch (err) { unmapError = err.code }
    const intact = fresh.every((b) => b.every((x) => x === 0x11))
    console.log(JSON.stringify({ before, length: stale.length, zeros, intact, unmapError }))
  })
  if (end === 'terminate') worker.terminate()
  else worker.postMessage('end')
})
`

function runScenario(t, how, end, move = 'stream') {
  const dir = tempDir(t)
  const file = path.join(dir, `moved-${how}-${end}-${move}.bin`)
  fs.writeFileSync(file, Buffer.alloc(4 * mmap.PAGESIZE, 0x41))
  const result = runScript(SCENARIO, { args: [file, how, end, move], timeout: 60_000 })
  assertExited(result)
  return JSON.parse(result.stdout.trim().split('\n').pop())
}

for (const how of ['map', 'view']) {
  for (const end of ['exit', 'terminate']) {
    test(`memory of a worker's ${how === 'map' ? 'map() Buffer' : 'Mapping#view()'} moved to the main thread through a byte stream: after the worker ${end === 'exit' ? 'exits' : 'is terminated'} it reads zeros, and no other mapping is touched (child)`, (t) => {
      const out = runScenario(t, how, end)
      assert.deepEqual(out, {
        before: 0x41,
        length: 4 * mmap.PAGESIZE,
        zeros: true,
        intact: true,
        unmapError: null,
      })
    })
  }
}

test('memory moved with ArrayBuffer.prototype.transfer() to the main thread outlives the worker safely (child)', (t) => {
  if (typeof ArrayBuffer.prototype.transfer !== 'function') {
    // CI runs this file on Node 22 and 24 too, which have it.
    t.skip(`this Node (${process.version}) has no ArrayBuffer.prototype.transfer; the byte-stream tests above cover the same path`)
    return
  }
  const out = runScenario(t, 'map', 'exit', 'transfer')
  assert.deepEqual(out, { before: 0x41, length: 4 * mmap.PAGESIZE, zeros: true, intact: true, unmapError: null })
})

test('a worker\'s end unmaps the files its Buffers still showed, moved or not (/proc/self/maps)', async (t) => {
  const { Worker } = require('node:worker_threads')
  const dir = tempDir(t)
  const file = path.join(dir, 'not-moved.bin')
  fs.writeFileSync(file, Buffer.alloc(4 * mmap.PAGESIZE, 0x41))
  const worker = new Worker(
    `const mmap = require(${JSON.stringify(path.resolve(__dirname, '..'))})
     const { parentPort, workerData } = require('node:worker_threads')
     globalThis.keep = [mmap.openSync(workerData, { mode: 'r+' }), mmap.Mapping.open(workerData).view(), mmap.openSync(workerData).subarray(1)]
     parentPort.postMessage(globalThis.keep.length)
     setInterval(() => {}, 1000) // alive until terminated`,
    { eval: true, workerData: file },
  )
  const [count] = await Promise.all([new Promise((resolve) => worker.once('message', resolve))])
  assert.equal(count, 3)
  assert.ok(mappingsOf(file).length >= 1, 'the worker maps the file')
  await worker.terminate()
  assert.ok(await pollUntil(() => mappingsOf(file).length === 0, { timeoutMs: 30_000 }), `${mappingsOf(file).length} mappings of the file left`)
})

// A worker that wrote to its Buffers after unmap() (or remap()) left those pages in the
// placeholder; kept for good at the worker's end, they stayed resident: 64 MiB a worker.
for (const call of ['unmap(b)', 'remap(b, 4096)']) {
  test(`what a worker wrote after ${call.split('(')[0]}() does not stay resident after its end (RssAnon, child)`, () => {
    const result = runScript(`
      const { Worker } = require('node:worker_threads')
      const fs = require('node:fs')
      const rssAnon = () => Number(fs.readFileSync('/proc/self/status', 'utf8').match(/RssAnon:\\s+(\\d+) kB/)[1])
      const source = \`const mmap = require(process.env.NODE_MMAP_ROOT)
        const b = mmap.map(64 << 20, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
        mmap.${call}
        b.fill(2)
        require('node:worker_threads').parentPort.postMessage(b[12345])\`
      ;(async () => {
        const before = rssAnon()
        const seen = []
        for (let i = 0; i < 5; i++) {
          const worker = new Worker(source, { eval: true })
          seen.push(await new Promise((resolve) => worker.once('message', resolve)))
          await worker.terminate()
        }
        console.log(JSON.stringify({ seen, grewMiB: Math.round((rssAnon() - before) / 1024) }))
      })()
    `, { timeout: 60_000 })
    assertExited(result)
    const out = JSON.parse(result.stdout.trim().split('\n').pop())
    assert.deepEqual(out.seen, [2, 2, 2, 2, 2], 'the workers wrote to the placeholder')
    assert.ok(out.grewMiB < 64, `RssAnon grew ${out.grewMiB} MiB for 5 workers that each wrote 64 MiB`)
  })
}

// Attack pass 7 asked whether toolkit calls work on mapped memory in the thread it moved to.
// They do, where the memory moved (a byte stream; transfer()): the registry is the process's.
// A mapping's ArrayBuffer put straight into postMessage's transfer list does not move: Node 21+
// refuses it (DataCloneError), Node 20 and older send a copy, which is no mapping (writes to it
// never reach the file). README, Caveats.
test('toolkit calls in a worker find mapped memory moved to it; a transfer list sends none', async (t) => {
  const { Worker } = require('node:worker_threads')
  const dir = tempDir(t)
  const file = path.join(dir, 'moved-to-worker.bin')
  fs.writeFileSync(file, Buffer.alloc(4 * mmap.PAGESIZE, 0x41))
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    parentPort.on('message', ({ moved, copied }) => {
      const out = {}
      for (const [name, ab] of Object.entries({ moved, copied })) {
        if (!ab) continue
        const u = new Uint8Array(ab)
        if (name === 'moved') u[1] = 0x42
        else u[2] = 0x43
        out[name] = {}
        for (const call of ['faults', 'sync', 'incore']) {
          try { mmap[call](u); out[name][call] = 'ok' } catch (err) { out[name][call] = err.code }
        }
      }
      parentPort.postMessage(out)
    })
  `, { eval: true })
  t.after(() => worker.terminate())
  const b = mmap.openSync(file, { mode: 'r+' })
  let controller
  const stream = new ReadableStream({ type: 'bytes', start(c) { controller = c } })
  controller.enqueue(b)
  const { value } = await stream.getReader().read()
  const reply = () => new Promise((resolve) => worker.once('message', resolve))
  const movedReply = reply()
  worker.postMessage({ moved: value.buffer }, [value.buffer])
  const out = await movedReply
  assert.equal(fs.readFileSync(file)[1], 0x42, 'the moved memory is the file')
  const direct = mmap.openSync(file, { mode: 'r+' })
  let refused = null
  const copiedReply = reply()
  try {
    worker.postMessage({ copied: direct.buffer }, [direct.buffer])
    Object.assign(out, await copiedReply)
  } catch (err) {
    refused = err.name // Node 21+: nothing was sent
  }
  assert.deepEqual(out.moved, { faults: 'ok', sync: 'ok', incore: 'ok' })
  if (refused === null) {
    assert.deepEqual(out.copied, { faults: 'ERR_MMAP_NOT_A_MAPPING', sync: 'ERR_MMAP_NOT_A_MAPPING', incore: 'ERR_MMAP_NOT_A_MAPPING' })
    assert.equal(direct.length, 4 * mmap.PAGESIZE, 'the transfer list left the Buffer where it was')
    assert.equal(direct[2], 0x41, "the copy's write did not reach the mapping")
  } else {
    assert.equal(refused, 'DataCloneError')
  }
})
