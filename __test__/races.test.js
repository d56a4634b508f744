'use strict'
// Native code of node-mmap that touches a mapping's memory (the copies of Mapping#read,
// readInto and write, the read of a futex word) racing a change of that memory on another
// thread: protect(PROT_NONE), unmap(), remap(). Another thread holds the same mapping when the
// memory moved to it without a copy (a byte stream's enqueue(), as moved.test.js does). Found by
// the fifth attack pass: a check of the rights and the copy after it raced protect() (SIGSEGV in
// node-mmap's code), a copy racing unmap() came back part file, part zeros with no error, and a
// waitAsync() whose word was protect()ed before its thread read it killed the process.
// What must hold: no crash; each copy is either all of the file's bytes or an error
// (ERR_MMAP_ACCESS, ERR_MMAP_UNMAPPED); each wait settles. Oracles: the child's exit status, the
// file's bytes.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { runScript, assertExited, tempDir } = require('./helpers.js')

// A round: the main thread moves the memory of `m.view()` to a worker through a byte stream; the
// worker toggles protect() on it for 1.5 s, or unmap()s or remap()s it after `delay` ms; the
// main thread copies (op) meanwhile, and three times more after the change. The file holds
// random bytes: a copy is whole when it equals them.
const SCENARIO = `
const { Worker } = require('node:worker_threads')
const fs = require('node:fs')
const mmap = require(MMAP)
const [file, op, change, rounds] = process.argv.slice(-4)
const outcomes = { whole: 0, torn: 0 }
const expected = fs.readFileSync(file)

function round(delay) {
  return new Promise((resolve) => {
    // Set by the worker when its change is done: the copies below run synchronously, with no
    // event-loop turn for a message.
    const flag = new Int32Array(new SharedArrayBuffer(4))
    const m = mmap.Mapping.open(file, { mode: 'r+' })
    const worker = new Worker(\`
      const { parentPort, workerData: { change, flag, delay } } = require('node:worker_threads')
      const mmap = require(\${JSON.stringify(MMAP)})
      parentPort.once('message', (u) => {
        parentPort.postMessage('go')
        if (change === 'protect') {
          for (const end = Date.now() + 1500; Date.now() < end;) {
            mmap.protect(u, 0, u.length, mmap.PROT_NONE)
            mmap.protect(u, 0, u.length, mmap.PROT_READ | mmap.PROT_WRITE)
          }
        } else {
          const until = Date.now() + delay
          while (Date.now() < until);
          if (change === 'unmap') mmap.unmap(u)
          else mmap.remap(u, 4096)
        }
        Atomics.store(flag, 0, 1)
      })
    \`, { eval: true, workerData: { change, flag, delay } })
    let controller
    const stream = new ReadableStream({ type: 'bytes', start(c) { controller = c } })
    controller.enqueue(m.view())
    stream.getReader().read().then(({ value }) => worker.postMessage(value, [value.buffer]))
    worker.once('message', () => {
      const target = Buffer.alloc(m.length)
      for (let after = 0; after < 3; after += Atomics.load(flag, 0)) {
        try {
          let bytes = null
          if (op === 'read') bytes = m.read()
          else if (op === 'readInto') bytes = (m.readInto(target), target)
          else m.write(expected)
          outcomes[bytes === null || bytes.equals(expected) ? 'whole' : 'torn']++
        } catch (err) {
          outcomes[err.code] = (outcomes[err.code] || 0) + 1
        }
      }
      worker.terminate().then(resolve)
    })
  })
}

;(async () => {
  for (let i = 0; i < Number(rounds); i++) await round(5 + 3 * i)
  console.log(JSON.stringify({ outcomes, fileIntact: fs.readFileSync(file).equals(expected) }))
})()
`

function run(t, op, change, rounds) {
  const dir = tempDir(t)
  const file = path.join(dir, `race-${op}-${change}.bin`)
  fs.writeFileSync(file, require('node:crypto').randomBytes(16 << 20))
  const result = runScript(SCENARIO, { args: [file, op, change, rounds], timeout: 120_000 })
  assertExited(result)
  return JSON.parse(result.stdout.trim().split('\n').pop())
}

for (const op of ['read', 'readInto', 'write']) {
  test(`Mapping#${op} while another thread toggles protect(PROT_NONE) on the same memory: ERR_MMAP_ACCESS or a whole copy, never a crash (child)`, (t) => {
    const { outcomes, fileIntact } = run(t, op, 'protect', 1)
    const { whole = 0, torn = 0, ERR_MMAP_ACCESS = 0, ...other } = outcomes
    assert.deepEqual(other, {}, 'no other error')
    assert.equal(torn, 0, 'no copy of part of the bytes')
    assert.ok(whole + ERR_MMAP_ACCESS > 0, JSON.stringify(outcomes))
    assert.equal(fileIntact, true)
  })
}

for (const change of ['unmap', 'remap']) {
  test(`Mapping#read racing ${change}() of the same memory on another thread is all of the file or ERR_MMAP_UNMAPPED, never part of it (child)`, (t) => {
    const { outcomes, fileIntact } = run(t, 'read', change, 8)
    const { whole = 0, torn = 0, ERR_MMAP_UNMAPPED = 0, ...other } = outcomes
    assert.deepEqual(other, {}, 'no other error')
    assert.equal(torn, 0, `reads of part file, part zeros: ${JSON.stringify(outcomes)}`)
    assert.ok(ERR_MMAP_UNMAPPED > 0, `the ${change}() happened during the reads: ${JSON.stringify(outcomes)}`)
    t.diagnostic(JSON.stringify(outcomes))
    assert.equal(fileIntact, true)
  })
}

test('waitAsync() whose word is protect()ed PROT_NONE in the same tick settles (timed-out, or ERR_MMAP_ACCESS), never a crash (child)', () => {
  const result = runScript(
    `const mmap = require(MMAP)
     const P = mmap.PAGESIZE
     const outcomes = {}
     let pending = 0
     // Kept: a wait does not keep its mapping alive (a collected one ends it ERR_MMAP_UNMAPPED).
     const keep = []
     for (let i = 0; i < 40; i++) {
       const flags = [mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS][i % 2]
       const b = mmap.map(P, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1)
       keep.push(b)
       pending++
       mmap.waitAsync(b, 0, 0, 200).then(
         (value) => { outcomes[value] = (outcomes[value] || 0) + 1 },
         (err) => { outcomes[err.code] = (outcomes[err.code] || 0) + 1 },
       ).finally(() => { if (--pending === 0) console.log(JSON.stringify(outcomes), keep.length) })
       mmap.protect(b, 0, P, mmap.PROT_NONE)
     }`,
    { timeout: 60_000 },
  )
  assertExited(result)
  const outcomes = JSON.parse(result.stdout.trim().split('\n').pop().split(' ')[0])
  const { 'timed-out': timedOut = 0, ERR_MMAP_ACCESS = 0, ...other } = outcomes
  assert.deepEqual(other, {}, JSON.stringify(outcomes))
  assert.equal(timedOut + ERR_MMAP_ACCESS, 40)
})

// Found by attack pass 6: SIGBUS recovery in one thread (reading memory of a truncated file)
// raced protect() and unmap() of the same mapping in another. Recovery put back the rights it
// had seen before a protect() made a page writable, and the write that protect() allowed died
// of SIGSEGV; and a read that faulted just before unmap() found the mapping gone from the
// table, and the process died of SIGBUS with no diagnostic. Now recovery and those changes
// exclude each other, and a read of a missing page that can be read by the time its handler
// runs simply runs again.
for (const write of [false, true]) {
  test(`SIGBUS recovery in a worker racing protect()${write ? ' and a write it allows' : ''} and unmap() in the main thread never ends the process (child)`, (t) => {
    const dir = tempDir(t)
    const file = path.join(dir, 'recovery-race.bin')
    const result = runScript(
      `const { Worker } = require('node:worker_threads')
       const fs = require('node:fs')
       const mmap = require(MMAP)
       const [file, write] = [process.argv[process.argv.length - 2], process.argv[process.argv.length - 1] === 'true']
       const PS = mmap.PAGESIZE, RW = mmap.PROT_READ | mmap.PROT_WRITE, NP = 64
       async function move(buf) {
         const rs = new ReadableStream({ type: 'bytes', start(c) { c.enqueue(buf); c.close() } })
         return (await rs.getReader().read()).value.buffer
       }
       const w = new Worker(\`
         const { parentPort } = require('node:worker_threads')
         parentPort.on('message', (ab) => {
           const u = new Uint8Array(ab)
           parentPort.postMessage('reading')
           let s = 0
           const end = Date.now() + 3
           while (Date.now() < end) for (let i = 0; i < u.length; i += \${PS}) s += u[i]
         })
       \`, { eval: true })
       let m, round = 0
       const next = async () => {
         if (++round > 1500) { console.log('survived'); return w.terminate() }
         fs.writeFileSync(file, Buffer.alloc(NP * PS, 7))
         m = mmap.Mapping.open(file, { mode: 'r+' })
         mmap.protect(m.view(), 0, NP * PS, mmap.PROT_READ)
         const ab = await move(m.view())
         w.postMessage(ab, [ab])
       }
       w.on('message', () => {
         const v = m.view()
         fs.truncateSync(file, 0)
         for (let p = NP - 1; p >= 0; p--) {
           mmap.protect(v, p * PS, PS, RW)
           if (write) v[p * PS] = 1
         }
         m.unmap()
         next()
       })
       next()`,
      { args: [file, String(write)], timeout: 120_000 },
    )
    assertExited(result)
    assert.equal(result.stdout.trim(), 'survived')
  })
}

// Found by attack pass 9: remap() took the old range out of the fault table while it held the
// exclusion of SIGBUS recovery; leaving the table waits for the handlers using the record, and
// one of them (a worker reading the moved memory's lost pages) waited for the exclusion: both
// threads spun for ever. The old range now leaves the table after the exclusion, as in unmap().
test('remap() racing SIGBUS recovery of the same mapping in a worker never hangs (child)', (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'remap-vs-recovery.bin')
  const result = runScript(
    `const { Worker } = require('node:worker_threads')
     const fs = require('node:fs')
     const mmap = require(MMAP)
     const file = process.argv[process.argv.length - 1]
     const P = mmap.PAGESIZE
     const fd = fs.openSync(file, 'w+')
     const worker = new Worker(\`
       const { parentPort } = require('node:worker_threads')
       parentPort.on('message', (ab) => {
         const u = new Uint8Array(ab)
         let sum = 0
         const until = Date.now() + 6
         while (Date.now() < until) for (let o = 0; o < u.length; o += \${P}) sum += u[o]
         parentPort.postMessage(sum)
       })
       parentPort.postMessage(0)
     \`, { eval: true })
     let round = 0
     const outcomes = {}
     worker.on('message', async () => {
       if (round++ === 300) {
         console.log(JSON.stringify({ rounds: round - 1, outcomes }))
         return void worker.terminate()
       }
       fs.ftruncateSync(fd, 64 * P)
       const m = mmap.Mapping.open(file, { mode: 'r+' })
       // Moved without a copy, by a byte stream (every Node version).
       const view = m.view()
       let controller
       const reader = new ReadableStream({ type: 'bytes', start(c) { controller = c } }).getReader()
       controller.enqueue(view)
       const moved = (await reader.read()).value.buffer
       fs.ftruncateSync(fd, P) // as another process would
       worker.postMessage(moved, [moved])
       const until = Date.now() + (round % 4)
       while (Date.now() < until); // the worker starts to fault
       let outcome = 'remapped'
       try { mmap.remap(m.view(0, P), 4 * P) } catch (err) { outcome = err.code }
       outcomes[outcome] = (outcomes[outcome] || 0) + 1
     })`,
    { args: [file], timeout: 120_000 },
  )
  assertExited(result)
  const out = JSON.parse(result.stdout)
  assert.equal(out.rounds, 300)
  for (const code of Object.keys(out.outcomes)) {
    // EFAULT: recovery had split the mapping (documented for remap()).
    assert.ok(['remapped', 'EFAULT'].includes(code), `remap() gave ${code}`)
  }
})
