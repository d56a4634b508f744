'use strict'
// wait / waitAsync / notify: futex-style sleeping on a 32-bit word of a mapping, within a
// process, across worker threads, and across processes that map the same file.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { once } = require('node:events')
const fs = require('node:fs')
const path = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')
const { Worker } = require('node:worker_threads')

const mmap = require('..')
const { tempDir } = require('./helpers.js')

const { PROT_READ, PROT_WRITE, MAP_SHARED, MAP_ANONYMOUS } = mmap
const RW = PROT_READ | PROT_WRITE
const ROOT = path.join(__dirname, '..')
const dir = tempDir(test)
const linux = process.platform === 'linux'

function anonymous(size = 4096, protection = RW) {
  return mmap.map(size, protection, MAP_SHARED | MAP_ANONYMOUS, -1)
}

/** Notifies the word until a waiter wakes (a waiter may not be asleep yet at the first try). */
async function notifyUntilWoken(view, byteOffset) {
  for (let tries = 0; tries < 1000; tries++) {
    const woken = mmap.notify(view, byteOffset)
    if (woken > 0) return woken
    await sleep(5)
  }
  throw new Error('no waiter woke within 5 s')
}

test('wait returns not-equal at once when the word differs, timed-out after the timeout', { skip: !linux && 'futex(2) is Linux only' }, () => {
  const buf = anonymous()
  buf.writeInt32LE(-5, 8)
  assert.equal(mmap.wait(buf, 8, 0), 'not-equal')
  assert.equal(mmap.wait(buf, 8, -5, 0), 'timed-out')
  assert.equal(mmap.wait(buf, 8, 2 ** 32 - 5, 0), 'timed-out', 'uint32 and int32 name the same bits')
  const t0 = process.hrtime.bigint()
  assert.equal(mmap.wait(buf, 8, -5, 60), 'timed-out')
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  assert.ok(ms >= 59, `waited ${ms} ms of 60`)
  assert.equal(mmap.notify(buf, 8), 0, 'nobody waits')
  mmap.unmap(buf)
})

test('notify wakes a wait in a worker thread, which sees the new value', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  const file = path.join(dir, 'worker-word.bin')
  fs.writeFileSync(file, Buffer.alloc(4096))
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads')
    const mmap = require(workerData.root)
    const buf = mmap.openSync(workerData.file, { mode: 'r+' })
    parentPort.postMessage('waiting')
    const outcome = mmap.wait(buf, 4, 0)
    parentPort.postMessage([outcome, buf.readInt32LE(4)])
    `,
    { eval: true, workerData: { root: ROOT, file } },
  )
  const messages = []
  worker.on('message', (m) => messages.push(m))
  while (messages.length === 0) await sleep(5)
  const buf = mmap.openSync(file, { mode: 'r+' })
  buf.writeInt32LE(42, 4)
  // The worker may still be between its message and the wait: then it sees 42 and returns
  // not-equal, which is right too; otherwise exactly one waiter wakes.
  const woken = mmap.notify(buf, 4)
  await once(worker, 'exit')
  const [outcome, value] = messages[1]
  assert.equal(value, 42)
  assert.equal(outcome, woken === 1 ? 'ok' : 'not-equal')
  mmap.unmap(buf)
})

test('a wait in another process wakes on notify, through the shared file', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  const file = path.join(dir, 'process-word.bin')
  fs.writeFileSync(file, Buffer.alloc(8192))
  const child = spawn(
    process.execPath,
    [
      '-e',
      `
      const mmap = require(${JSON.stringify(ROOT)})
      const buf = mmap.openSync(${JSON.stringify(file)}, { mode: 'r+' })
      process.stdout.write('waiting\\n')
      // The word stays 0: only a notify can end this wait (or the 10 s timeout).
      const outcome = mmap.wait(buf, 4096, 0, 10000)
      process.stdout.write(outcome + ' ' + buf.readInt32LE(4100) + '\\n')
      `,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  while (!out.includes('waiting')) {
    assert.equal(child.exitCode, null, `child exited early: ${err}`)
    await sleep(5)
  }
  const buf = mmap.openSync(file, { mode: 'r+' })
  buf.writeInt32LE(7, 4100)
  assert.equal(await notifyUntilWoken(buf, 4096), 1)
  const [code] = await once(child, 'exit')
  assert.equal(code, 0, err)
  assert.equal(out.trim().split('\n').pop(), 'ok 7')
  mmap.unmap(buf)
})

test('waitAsync keeps the event loop turning and resolves ok on notify', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  const buf = anonymous()
  const pending = mmap.waitAsync(buf, 0, 0)
  let ticks = 0
  const ticker = setInterval(() => ticks++, 5)
  await sleep(50)
  assert.ok(ticks >= 3, `the event loop turned ${ticks} times while waiting`)
  buf.writeInt32LE(1, 0)
  assert.equal(await notifyUntilWoken(buf, 0), 1)
  assert.equal(await pending, 'ok')
  clearInterval(ticker)
  assert.equal(await mmap.waitAsync(buf, 0, 0), 'not-equal')
  assert.equal(await mmap.waitAsync(buf, 0, 1, 20), 'timed-out')
  mmap.unmap(buf)
})

test('waitAsync rejects with ERR_MMAP_UNMAPPED when the mapping is unmapped meanwhile', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  const buf = anonymous()
  const pending = mmap.waitAsync(buf, 0, 0)
  await sleep(20)
  mmap.unmap(buf)
  const t0 = Date.now()
  await assert.rejects(pending, { code: 'ERR_MMAP_UNMAPPED' })
  assert.ok(Date.now() - t0 < 1000, 'settled within a slice')
})

test('wait, waitAsync and notify refuse bad arguments like Node does', () => {
  const buf = anonymous()
  const notMapped = Buffer.alloc(16)
  const range = (name, text) => ({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: `The value of "${name}" is out of range. It must be ${text}` })
  const type = (name, received) => ({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: `The "${name}" argument must be of type number. Received ${received}` })
  const aligned = (received) => ({
    name: 'RangeError',
    code: 'ERR_INVALID_ARG_VALUE',
    message: `The argument 'byteOffset' must point at a 4-byte aligned word of the mapping. Received ${received}`,
  })
  const cases = [
    [() => mmap.wait(buf, 2, 0, 0), aligned(2)],
    [() => mmap.wait(buf.subarray(2), 0, 0, 0), aligned(0)],
    [() => mmap.notify(buf, 6), aligned(6)],
    [() => mmap.wait(buf, 4093, 0, 0), range('byteOffset', ">= 0 && <= 4092 (the view's length less 4). Received 4093")],
    [() => mmap.wait(buf, -4, 0, 0), range('byteOffset', ">= 0 && <= 4092 (the view's length less 4). Received -4")],
    [
      () => mmap.wait(buf.subarray(0, 3), 0, 0, 0),
      range('byteOffset', 'within the view, which has no room for a 32-bit word (its length is 3). Received 0'),
    ],
    [() => mmap.wait(buf, '0', 0, 0), type('byteOffset', "type string ('0')")],
    [() => mmap.wait(buf, 0, 0.5, 0), range('expected', 'an integer. Received 0.5')],
    [() => mmap.wait(buf, 0, 2 ** 32, 0), range('expected', '>= -2147483648 && <= 4294967295. Received 4294967296')],
    [() => mmap.wait(buf, 0, 0, -1), range('timeout', '>= 0 (milliseconds; Infinity: no limit). Received -1')],
    [() => mmap.wait(buf, 0, 0, NaN), range('timeout', '>= 0 (milliseconds; Infinity: no limit). Received NaN')],
    [() => mmap.wait(buf, 0, 0, '1'), type('timeout', "type string ('1')")],
    [() => mmap.notify(buf, 0, -1), range('count', '>= 0 && <= 9007199254740991. Received -1')],
    [() => mmap.notify(buf, 0, 2 ** 53), range('count', '>= 0 && <= 9007199254740991. Received 9_007_199_254_740_992')],
    [() => mmap.notify(buf, 0, 1.5), range('count', 'an integer. Received 1.5')],
    [
      () => mmap.wait(notMapped, 0, 0, 0),
      {
        name: 'TypeError',
        code: 'ERR_MMAP_NOT_A_MAPPING',
        message: 'The "view" argument must be a view of memory mapped by node-mmap. Received an instance of Buffer',
      },
    ],
    [
      () => mmap.notify({}, 0),
      {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_TYPE',
        message: 'The "view" argument must be an instance of Buffer, TypedArray, DataView or ArrayBuffer. Received an instance of Object',
      },
    ],
  ]
  for (const [call, expected] of cases) assert.throws(call, expected, call.toString())
  // waitAsync reports argument errors as a rejected Promise, as flush does.
  return assert.rejects(mmap.waitAsync(buf, 2, 0), aligned(2)).then(() => mmap.unmap(buf))
})

test('a word the mapping cannot read is refused, not slept on', () => {
  const none = anonymous(4096, mmap.PROT_NONE)
  assert.throws(() => mmap.wait(none, 0, 0, 0), {
    name: 'Error',
    code: 'ERR_MMAP_ACCESS',
    message: 'The "view" argument is memory that cannot be read: it is mapped without PROT_READ (or protect()ed so)',
  })
  mmap.unmap(none)
  const buf = anonymous()
  mmap.protect(buf, 0, 4096, mmap.PROT_NONE)
  assert.throws(() => mmap.wait(buf, 0, 0, 0), { code: 'ERR_MMAP_ACCESS' })
  mmap.unmap(buf)
})

test('notify counts: 0 wakes none, the default wakes every waiter', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  const buf = anonymous()
  const waits = [mmap.waitAsync(buf, 0, 0, 5000), mmap.waitAsync(buf, 0, 0, 5000)]
  await sleep(50)
  assert.equal(mmap.notify(buf, 0, 0), 0)
  let woken = 0
  for (let tries = 0; woken < 2 && tries < 1000; tries++) {
    woken += mmap.notify(buf, 0, Infinity)
    if (woken < 2) await sleep(5)
  }
  assert.equal(woken, 2)
  assert.deepEqual(await Promise.all(waits), ['ok', 'ok'])
  mmap.unmap(buf)
})

test('on kernels without futex_waitv (simulated), waitAsync waits in slices: notify and unmap still end it', { skip: !linux && 'futex(2) is Linux only' }, () => {
  const { runScript, assertCleanExit } = require('./helpers.js')
  const result = runScript(
    `
    const mmap = require(${JSON.stringify(ROOT)})
    const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
    const words = new Int32Array(buf.buffer, buf.byteOffset, 2)
    const changed = mmap.waitAsync(buf, 0, 0, 5000)
    const dropped = mmap.waitAsync(buf, 4, 0, 5000)
    setTimeout(() => { Atomics.store(words, 0, 1); mmap.notify(buf, 0) }, 250) // past a slice
    changed.then(async (outcome) => {
      const t0 = Date.now()
      mmap.unmap(buf)
      const error = await dropped.catch((e) => e)
      console.log(outcome, error.code, Date.now() - t0 < 1000)
    })
    `,
    { env: { NODE_MMAP_SIMULATE_NO_FUTEX_WAITV: '1' } },
  )
  assertCleanExit(result)
  assert.equal(result.stdout.trim(), 'ok ERR_MMAP_UNMAPPED true')
})

test('worker.terminate() and process.exit() end a wait() or waitAsync() at once, as they end Atomics.wait()', { skip: !linux && 'futex(2) is Linux only', timeout: 120_000 }, async (t) => {
  const { runScript, assertExited } = require('./helpers.js')
  const file = path.join(dir, 'terminate-word.bin')
  fs.writeFileSync(file, Buffer.alloc(4096))
  // The child's worker maps the file and sleeps on a word nobody changes, with no timeout; then
  // the child ends it one way or another and says how long that took, and how many mappings of
  // the file are left once the worker is gone. It used to hang there for ever.
  const sleepers = {
    'wait()': `mmap.wait(buf, 0, 0)`,
    'waitAsync()': `mmap.waitAsync(buf, 0, 0).then((outcome) => console.log('settled', outcome))`,
    'Atomics.wait()': `Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)`, // the yardstick
  }
  const endings = {
    'worker.terminate()': `
      const t0 = Date.now()
      await worker.terminate()
      const ms = Date.now() - t0
      let left = mappings()
      for (const deadline = Date.now() + 5000; left > 0 && Date.now() < deadline; left = mappings()) await sleep(10)
      console.log('terminated', ms < 5000, left)`,
    'process.exit() in the main thread': `console.log('exiting'); process.exit(7)`,
  }
  for (const [sleeperName, sleeper] of Object.entries(sleepers)) {
    for (const [endingName, ending] of Object.entries(endings)) {
      await t.test(`${sleeperName} in a worker, ${endingName}`, () => {
        const started = Date.now()
        const result = runScript(
          `
          const fs = require('node:fs')
          const { Worker } = require('node:worker_threads')
          const { setTimeout: sleep } = require('node:timers/promises')
          const file = ${JSON.stringify(file)}
          const mappings = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file)).length
          const worker = new Worker(\`
            const mmap = require(\${JSON.stringify(MMAP)})
            const buf = mmap.openSync(\${JSON.stringify(file)}, { mode: 'r+' })
            require('node:worker_threads').parentPort.postMessage('sleeping')
            ${sleeper}
          \`, { eval: true })
          worker.once('message', async () => {
            await sleep(100) // well inside the sleep
            ${ending}
          })
          `,
          { timeout: 15_000 },
        )
        const exited = `${endingName} took ${Date.now() - started} ms in all; stdout: ${result.stdout}`
        if (endingName === 'worker.terminate()') {
          assertExited(result, 0)
          assert.equal(result.stdout.trim(), 'terminated true 0', exited)
        } else {
          assertExited(result, 7)
          assert.equal(result.stdout.trim(), 'exiting', exited)
        }
      })
    }
  }
  await t.test('waitAsync() in a worker, worker.terminate(), on kernels without futex_waitv (simulated)', () => {
    const result = runScript(
      `
      const { Worker } = require('node:worker_threads')
      const worker = new Worker(\`
        const mmap = require(\${JSON.stringify(MMAP)})
        const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
        require('node:worker_threads').parentPort.postMessage('sleeping')
        mmap.waitAsync(buf, 0, 0)
      \`, { eval: true })
      worker.once('message', () => setTimeout(async () => {
        const t0 = Date.now()
        await worker.terminate()
        console.log('terminated', Date.now() - t0 < 5000)
      }, 100))
      `,
      { timeout: 15_000, env: { NODE_MMAP_SIMULATE_NO_FUTEX_WAITV: '1' } },
    )
    assertExited(result, 0)
    assert.equal(result.stdout.trim(), 'terminated true')
  })
  await t.test('waitAsync() pending in the main thread, process.exit()', () => {
    const result = runScript(
      `
      const mmap = require(MMAP)
      const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
      mmap.waitAsync(buf, 0, 0).then((outcome) => console.log('settled', outcome))
      setTimeout(() => { console.log('exiting'); process.exit(7) }, 100)
      `,
      { timeout: 15_000 },
    )
    assertExited(result, 7)
    assert.equal(result.stdout.trim(), 'exiting')
  })
  await t.test('a pending waitAsync() keeps the event loop alive until it settles', () => {
    const result = runScript(
      `
      const mmap = require(MMAP)
      const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
      // buf is used when the wait settles: a wait does not keep its mapping alive.
      mmap.waitAsync(buf, 0, 0, 300).then((outcome) => console.log('settled', outcome, buf.length))
      `,
      { timeout: 15_000 },
    )
    assertExited(result, 0)
    assert.equal(result.stdout.trim(), 'settled timed-out 4096')
  })
})

test('wait and waitAsync work on read-only memory of this process alone, and notify wakes them', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  // The kernel refuses the shared futex key of a read-only anonymous page (EFAULT): a PROT_READ
  // MAP_PRIVATE | MAP_ANONYMOUS mapping, or a MAP_PRIVATE page that was written and then made
  // read-only. Such pages belong to this process alone, and the waits used to fail with EFAULT.
  const { PROT_READ, MAP_PRIVATE } = mmap
  const file = path.join(dir, 'private-word.bin')
  fs.writeFileSync(file, Buffer.alloc(8192))
  const fd = fs.openSync(file, 'r+')
  const kinds = {
    'PROT_READ MAP_PRIVATE | MAP_ANONYMOUS': () => mmap.map(4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1),
    'MAP_PRIVATE | MAP_ANONYMOUS written, then protect()ed PROT_READ': () => {
      const buf = mmap.map(4096, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1)
      buf[100] = 1
      mmap.protect(buf, 0, 4096, PROT_READ)
      return buf
    },
    'a MAP_PRIVATE file page written, then protect()ed PROT_READ': () => {
      const buf = mmap.map(4096, RW, MAP_PRIVATE, fd)
      buf[100] = 1
      mmap.protect(buf, 0, 4096, PROT_READ)
      return buf
    },
    'PROT_READ MAP_SHARED | MAP_ANONYMOUS': () => mmap.map(4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1),
    'PROT_READ MAP_PRIVATE of a file': () => mmap.map(4096, PROT_READ, MAP_PRIVATE, fd),
  }
  try {
    for (const [name, make] of Object.entries(kinds)) {
      const buf = make()
      assert.equal(mmap.wait(buf, 8, 0, 0), 'timed-out', name)
      assert.equal(mmap.wait(buf, 8, 1, 0), 'not-equal', name)
      // Settled at once (no thread needed), and still a Promise.
      const [timedOut, notEqual] = [mmap.waitAsync(buf, 8, 0, 0), mmap.waitAsync(buf, 8, 1)]
      assert.ok(timedOut instanceof Promise && notEqual instanceof Promise, name)
      assert.equal(await timedOut, 'timed-out', name)
      assert.equal(await notEqual, 'not-equal', name)
      const pending = mmap.waitAsync(buf, 8, 0, 10_000)
      assert.equal(await notifyUntilWoken(buf, 8), 1, name)
      assert.equal(await pending, 'ok', name)
      assert.equal(mmap.notify(buf, 8), 0, `${name}: nobody waits any more`)
      mmap.unmap(buf)
    }
  } finally {
    fs.closeSync(fd)
  }
})

test("a read-only MAP_PRIVATE mapping of a file still shares the file's futex with other mappings", { skip: !linux && 'futex(2) is Linux only' }, async () => {
  // Its pages are the file's until written: a reader in a worker waits on one, and a writer's
  // MAP_SHARED mapping of the same file wakes it (the private key would not reach it).
  const file = path.join(dir, 'private-reader.bin')
  fs.writeFileSync(file, Buffer.alloc(4096))
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads')
    const mmap = require(workerData.root)
    const fd = require('node:fs').openSync(workerData.file, 'r')
    const buf = mmap.map(4096, mmap.PROT_READ, mmap.MAP_PRIVATE, fd)
    parentPort.postMessage('waiting')
    const outcome = mmap.wait(buf, 12, 0, 10_000)
    parentPort.postMessage([outcome, buf.readInt32LE(12)])
    `,
    { eval: true, workerData: { root: ROOT, file } },
  )
  const messages = []
  worker.on('message', (m) => messages.push(m))
  while (messages.length === 0) await sleep(5)
  const buf = mmap.openSync(file, { mode: 'r+' })
  buf.writeInt32LE(5, 12)
  const woken = mmap.notify(buf, 12)
  await once(worker, 'exit')
  assert.deepEqual(messages[1], [woken === 1 ? 'ok' : 'not-equal', 5])
  mmap.unmap(buf)
})

test('a word on a page lost to truncation reads as 0, as it does in JavaScript (SIGBUS recovery)', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  // The kernel's own read of the word fails there (EFAULT); JavaScript's is answered with zeros.
  const file = path.join(dir, 'truncated-word.bin')
  fs.writeFileSync(file, Buffer.alloc(3 * 4096, 7))
  const fd = fs.openSync(file, 'r+')
  const buf = mmap.map(3 * 4096, RW, MAP_SHARED, fd)
  fs.ftruncateSync(fd, 0)
  fs.closeSync(fd)
  assert.equal(mmap.wait(buf, 4, 0x07070707, 0), 'not-equal')
  assert.equal(mmap.wait(buf, 4, 0, 0), 'timed-out')
  assert.equal(await mmap.waitAsync(buf, 4096, 0, 0), 'timed-out')
  assert.equal(await mmap.waitAsync(buf, 2 * 4096, 0x07070707), 'not-equal')
  assert.equal(mmap.faults(buf), 3, 'each lost page was replaced once')
  assert.equal(buf.readInt32LE(2 * 4096), 0)
  mmap.unmap(buf)
})

// --- Issue 12 (adversarial review): lost wakeups, unmap() and sync waits, unmapped views ---------

test('a notify() right after waitAsync() returns (same tick, word unchanged) wakes it and counts it, as Atomics.waitAsync', { skip: !linux && 'futex(2) is Linux only' }, async (t) => {
  const { runScript, assertCleanExit } = require('./helpers.js')
  // The waits' threads have not reached the kernel yet when notify() runs: the in-process
  // registry must count them. Each count is checked against the outcomes the waits report.
  const script = `
    const mmap = require(MMAP)
    const b = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
    const t0 = Date.now()
    const settled = (waits) => Promise.all(waits).then((outcomes) => [outcomes.join(','), Date.now() - t0 < 3000])
    ;(async () => {
      const one = mmap.waitAsync(b, 0, 0, 5000)
      const woke = mmap.notify(b, 0)
      console.log('one', woke, ...(await settled([one])))
      const six = Array.from({ length: 6 }, () => mmap.waitAsync(b, 4, 0, 5000))
      console.log('six', mmap.notify(b, 4), ...(await settled(six)))
      // Counts: at most count woken per notify, each woken wait 'ok', the rest time out.
      const four = Array.from({ length: 4 }, () => mmap.waitAsync(b, 8, 0, 400))
      const counts = [mmap.notify(b, 8, 2), mmap.notify(b, 8, 1), mmap.notify(b, 8, 0)]
      const outcomes = await Promise.all(four)
      console.log('four', counts.join(','), outcomes.join(','))
    })()
  `
  for (const [name, env] of [['futex_waitv', {}], ['without futex_waitv (simulated)', { NODE_MMAP_SIMULATE_NO_FUTEX_WAITV: '1' }]]) {
    await t.test(name, () => {
      const result = runScript(script, { env, timeout: 20_000 })
      assertCleanExit(result)
      assert.deepEqual(result.stdout.trim().split('\n'), [
        'one 1 ok true',
        'six 6 ok,ok,ok,ok,ok,ok true',
        'four 2,1,0 ok,ok,ok,timed-out',
      ])
    })
  }
})

// Found by attack pass 5: this process's waits were found by address, so a same-tick notify()
// through another mapping of the same file missed a waitAsync() whose thread had not reached the
// kernel yet, and the wait slept to its timeout (forever by default).
test('a same-tick notify() through another mapping of the same file wakes and counts waitAsync()s on the others', { skip: !linux && 'futex(2) is Linux only' }, async (t) => {
  const { runScript, assertCleanExit } = require('./helpers.js')
  const file = path.join(dir, 'notify-other-mapping.bin')
  fs.writeFileSync(file, Buffer.alloc(3 * 4096))
  const script = `
    const mmap = require(MMAP)
    const file = process.argv[process.argv.length - 1]
    const a = mmap.openSync(file, { mode: 'r+' })
    const b = mmap.openSync(file, { mode: 'r+', offset: 4096 }) // page 1 of the file at b[0]
    const c = mmap.Mapping.open(file, { mode: 'r+' }).view(4096)
    const t0 = Date.now()
    ;(async () => {
      const first = mmap.waitAsync(a, 4096 + 8, 0, 5000)
      const second = mmap.waitAsync(c, 8, 0, 5000)
      const woke = mmap.notify(b, 8)
      const outcomes = await Promise.all([first, second])
      console.log(JSON.stringify({ woke, outcomes, fast: Date.now() - t0 < 3000 }))
    })()
  `
  for (const [name, env] of [['futex_waitv', {}], ['without futex_waitv (simulated)', { NODE_MMAP_SIMULATE_NO_FUTEX_WAITV: '1' }]]) {
    await t.test(name, () => {
      const result = runScript(script, { env, args: [file], timeout: 20_000 })
      assertCleanExit(result)
      assert.deepEqual(JSON.parse(result.stdout), { woke: 2, outcomes: ['ok', 'ok'], fast: true })
    })
  }
})

test('notify() wakes and counts wait()s of other threads on the same mapping, at most count of them', { skip: !linux && 'futex(2) is Linux only', timeout: 60_000 }, () => {
  const { runScript, assertCleanExit } = require('./helpers.js')
  // Three workers wait on one word of the main thread's mapping (a byte stream moves a view's
  // memory into a transferable Uint8Array); notify(…, 1) until two woke: each call wakes at
  // most one, each woken wait says 'ok', the third times out.
  const result = runScript(
    `
    const { Worker } = require('node:worker_threads')
    const { once } = require('node:events')
    const mmap = require(MMAP)
    const m = new mmap.Mapping(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
    const transferable = async () => {
      let ctl
      const rs = new ReadableStream({ type: 'bytes', start(c) { ctl = c } })
      ctl.enqueue(m.view(0, 4096))
      return (await rs.getReader().read()).value
    }
    ;(async () => {
      const workers = []
      for (let i = 0; i < 3; i++) {
        const worker = new Worker(\`
          const { parentPort } = require('node:worker_threads')
          const mmap = require(\${JSON.stringify(MMAP)})
          parentPort.once('message', (view) => parentPort.postMessage(mmap.wait(view, 4, 0, 3000)))
        \`, { eval: true })
        const view = await transferable()
        worker.postMessage(view, [view.buffer])
        workers.push(worker)
      }
      const outcomes = workers.map((w) => once(w, 'message').then(([m]) => m))
      const exits = workers.map((w) => once(w, 'exit'))
      const counts = []
      let woken = 0
      const main = m.view(0, 8)
      for (let tries = 0; woken < 2 && tries < 400; tries++) {
        const n = mmap.notify(main, 4, 1)
        if (n !== 0) counts.push(n)
        woken += n
        if (woken < 2) await new Promise((resolve) => setTimeout(resolve, 5))
      }
      console.log(counts.join(','), (await Promise.all(outcomes)).sort().join(','))
      for (const w of workers) w.unref()
    })()
    `,
    { timeout: 30_000 },
  )
  assertCleanExit(result)
  assert.equal(result.stdout.trim(), '1,1 ok,ok,timed-out')
})

test('unmap() ends a wait() asleep in another thread on that mapping with ERR_MMAP_UNMAPPED, at once', { skip: !linux && 'futex(2) is Linux only', timeout: 60_000 }, () => {
  const { runScript, assertCleanExit } = require('./helpers.js')
  // The worker holds a view of the main thread's mapping: a byte stream moves a view's memory
  // into a new, transferable Uint8Array. Three rounds: a wait that only looks every tenth of a
  // second ends 40 ms or more after the unmap() in at least one of the three (their delays differ
  // by a third of a slice).
  const result = runScript(
    `
    const { Worker } = require('node:worker_threads')
    const mmap = require(MMAP)
    const worker = new Worker(\`
      const { parentPort } = require('node:worker_threads')
      const mmap = require(\${JSON.stringify(MMAP)})
      parentPort.on('message', (view) => {
        parentPort.postMessage('waiting')
        let outcome
        try { outcome = mmap.wait(view, 0, 0, 10000) } catch (e) { outcome = [e.name, e.code, e.message].join('|') }
        parentPort.postMessage([outcome, Date.now()])
      })
    \`, { eval: true })
    ;(async () => {
      for (let round = 0; round < 3; round++) {
        const m = new mmap.Mapping(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
        let ctl
        const rs = new ReadableStream({ type: 'bytes', start(c) { ctl = c } })
        ctl.enqueue(m.view(0, 4096))
        const { value } = await rs.getReader().read()
        worker.postMessage(value, [value.buffer])
        const [waiting] = await once(worker, 'message')
        await new Promise((resolve) => setTimeout(resolve, 225 + 33 * round)) // asleep in the kernel by then
        const unmappedAt = Date.now()
        m.unmap()
        const [[outcome, endedAt]] = await once(worker, 'message')
        console.log(waiting, outcome, endedAt - unmappedAt < 40 || endedAt - unmappedAt)
      }
      await worker.terminate()
    })()
    const { once } = require('node:events')
    `,
    { timeout: 30_000 },
  )
  assertCleanExit(result)
  const line = 'waiting Error|ERR_MMAP_UNMAPPED|The mapping was unmapped true'
  assert.deepEqual(result.stdout.trim().split('\n'), [line, line, line])
})

test('a view of an unmapped mapping keeps its length: notify() returns 0, wait()/waitAsync() fail with ERR_MMAP_UNMAPPED', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  const buf = anonymous()
  const u32 = new Uint32Array(buf.buffer, buf.byteOffset + 8, 4)
  mmap.unmap(buf)
  assert.equal(buf.length, 4096, 'the view keeps its length')
  const unmapped = { name: 'Error', code: 'ERR_MMAP_UNMAPPED', message: 'The mapping was unmapped' }
  assert.equal(mmap.notify(buf, 0), 0)
  assert.equal(mmap.notify(u32, 12, 1), 0)
  assert.throws(() => mmap.wait(buf, 0, 0), unmapped)
  assert.throws(() => mmap.wait(buf, 4092, 0, 0), unmapped)
  assert.throws(() => mmap.wait(u32, 4, 0, 10), unmapped)
  await assert.rejects(mmap.waitAsync(buf, 0, 0), unmapped)
  await assert.rejects(mmap.waitAsync(u32, 0, 0, 5), unmapped)
  // Arguments are still checked first, against the view's length.
  assert.throws(() => mmap.wait(buf, 4096, 0), {
    name: 'RangeError',
    code: 'ERR_OUT_OF_RANGE',
    message: 'The value of "byteOffset" is out of range. It must be >= 0 && <= 4092 (the view\'s length less 4). Received 4096',
  })
  assert.throws(() => mmap.notify(buf, 2), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' })
  assert.throws(() => mmap.wait(buf, 0, 0.5), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  // An empty view, and a view the user detached, keep their errors: no room for a word.
  const noRoom = (length) => ({
    name: 'RangeError',
    code: 'ERR_OUT_OF_RANGE',
    message: `The value of "byteOffset" is out of range. It must be within the view, which has no room for a 32-bit word (its length is ${length}). Received 0`,
  })
  const live = anonymous()
  assert.throws(() => mmap.wait(live.subarray(0, 0), 0, 0), noRoom(0))
  assert.throws(() => mmap.notify(live.subarray(0, 0), 0), noRoom(0))
  const detached = new ArrayBuffer(16)
  const overDetached = new Uint8Array(detached)
  structuredClone(detached, { transfer: [detached] })
  assert.throws(() => mmap.notify(detached, 0), noRoom(0))
  assert.throws(() => mmap.wait(overDetached, 0, 0), noRoom(0))
  mmap.unmap(live)
})

test("notify() wakes this process's waits first, then the kernel's, never more than count in all", { skip: !linux && 'futex(2) is Linux only' }, async () => {
  const file = path.join(dir, 'mixed-word.bin')
  fs.writeFileSync(file, Buffer.alloc(4096))
  const child = spawn(
    process.execPath,
    [
      '-e',
      `
      const mmap = require(${JSON.stringify(ROOT)})
      const buf = mmap.openSync(${JSON.stringify(file)}, { mode: 'r+' })
      process.stdout.write('waiting\\n')
      process.stdout.write(mmap.wait(buf, 0, 0, 10000) + '\\n')
      `,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const exited = once(child, 'exit')
  while (!out.includes('waiting')) {
    assert.equal(child.exitCode, null, `child exited early: ${err}`)
    await sleep(5)
  }
  const buf = mmap.openSync(file, { mode: 'r+' })
  // Two waits of this process, the word unchanged: notify(…, 2) wakes exactly those two, whether
  // or not the other process's wait sleeps in the kernel already.
  const here = [mmap.waitAsync(buf, 0, 0, 10000), mmap.waitAsync(buf, 0, 0, 10000)]
  assert.equal(mmap.notify(buf, 0, 2), 2)
  assert.deepEqual(await Promise.all(here), ['ok', 'ok'])
  assert.equal(out.trim(), 'waiting', 'the other process still waits')
  // Then the other process's wait, through the kernel, once it sleeps there.
  assert.equal(await notifyUntilWoken(buf, 0), 1)
  const [code] = await exited
  assert.equal(code, 0, err)
  assert.equal(out.trim(), 'waiting\nok')
  mmap.unmap(buf)
})

test('notify() calls racing in three threads against a stream of waitAsync()s count every woken wait once', { skip: !linux && 'futex(2) is Linux only', timeout: 60_000 }, async (t) => {
  const { runScript, assertCleanExit } = require('./helpers.js')
  // Two workers notify(…, 1) in a loop on a view of the main thread's mapping while the main
  // thread adds waits and notifies too: the counts must add up to the waits that said 'ok'.
  const script = `
    const { Worker } = require('node:worker_threads')
    const { once } = require('node:events')
    const mmap = require(MMAP)
    const m = new mmap.Mapping(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
    const transferable = async () => {
      let ctl
      const rs = new ReadableStream({ type: 'bytes', start(c) { ctl = c } })
      ctl.enqueue(m.view(0, 4096))
      return (await rs.getReader().read()).value
    }
    ;(async () => {
      const workers = []
      for (let i = 0; i < 2; i++) {
        const worker = new Worker(\`
          const { parentPort } = require('node:worker_threads')
          const mmap = require(\${JSON.stringify(MMAP)})
          parentPort.once('message', ([view, until]) => {
            let n = 0
            while (Date.now() < until) n += mmap.notify(view, 0, 1)
            parentPort.postMessage(n)
          })
        \`, { eval: true })
        workers.push(worker)
      }
      const until = Date.now() + 1000
      for (const worker of workers) {
        const view = await transferable()
        worker.postMessage([view, until], [view.buffer])
      }
      const counted = workers.map((w) => once(w, 'message').then(([n]) => n))
      const view = m.view(0, 4096)
      const waits = []
      let mine = 0
      while (Date.now() < until - 100) {
        for (let i = 0; i < 10; i++) waits.push(mmap.waitAsync(view, 0, 0, 3000))
        mine += mmap.notify(view, 0, 2)
        await new Promise((resolve) => setImmediate(resolve))
      }
      const theirs = await Promise.all(counted)
      const outcomes = await Promise.all(waits)
      const ok = outcomes.filter((o) => o === 'ok').length
      console.log(waits.length > 100, ok === mine + theirs[0] + theirs[1] || [ok, mine, theirs], outcomes.length - ok)
    })()
  `
  for (const [name, env] of [['futex_waitv', {}], ['without futex_waitv (simulated)', { NODE_MMAP_SIMULATE_NO_FUTEX_WAITV: '1' }]]) {
    await t.test(name, () => {
      const result = runScript(script, { env, timeout: 30_000 })
      assertCleanExit(result)
      // Every wait woke ('ok') or timed out after the notifiers stopped; counts add up.
      const [many, adds, timedOut] = result.stdout.trim().split(' ')
      assert.deepEqual([many, adds], ['true', 'true'], result.stdout)
      assert.ok(Number(timedOut) >= 0)
    })
  }
})

// Found by attack pass 6: a worker that calls wait() in a loop went on for a while after
// terminate() (V8 acts on it only at some turns of the loop), and each wait() then slept a whole
// slice before it looked: terminate() and process.exit() took half a minute.
test('worker.terminate() and process.exit() end a worker that loops on wait() at once (child)', { skip: !linux && 'futex(2) is Linux only', timeout: 120_000 }, () => {
  const { runScript, assertExited } = require('./helpers.js')
  for (const how of ['terminate', 'exit']) {
    const result = runScript(
      `const { Worker } = require('node:worker_threads')
       const how = ${JSON.stringify(how)}
       const worker = new Worker(\`
         const mmap = require(\${JSON.stringify(MMAP)})
         const b = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
         require('node:worker_threads').parentPort.postMessage('go')
         for (;;) mmap.wait(b, 0, 0)
       \`, { eval: true })
       worker.once('message', () => setTimeout(async () => {
         const t0 = Date.now()
         if (how === 'exit') {
           process.on('exit', () => process._rawDebug(String(Date.now() - t0)))
           process.exit(0)
         }
         await worker.terminate()
         console.log(Date.now() - t0)
       }, 100))`,
      { timeout: 90_000 },
    )
    assertExited(result)
    const took = Number((how === 'exit' ? result.stderr : result.stdout).trim().split('\n').pop())
    assert.ok(took < 1500, `${how}: took ${took} ms`)
  }
})

// Found by attack pass 6: the kernel's shared futex key takes the page for writing, which made a
// writable private mapping's page a private copy: after a wait() or notify() it no longer showed
// the file's changes.
test("wait() and notify() on a writable MAP_PRIVATE mapping of a file leave its page the file's (no copy-on-write)", { skip: !linux && 'futex(2) is Linux only' }, () => {
  const file = path.join(dir, 'private-futex.bin')
  fs.writeFileSync(file, Buffer.alloc(8192))
  const fd = fs.openSync(file, 'r+')
  try {
    for (const op of ['wait', 'notify']) {
      const b = mmap.map(8192, RW, mmap.MAP_PRIVATE, fd, 0)
      if (op === 'wait') assert.equal(mmap.wait(b, 0, 0, 1), 'timed-out')
      else assert.equal(mmap.notify(b, 0), 0)
      fs.writeSync(fd, Buffer.from([op.length]), 0, 1, 0)
      assert.equal(b[0], op.length, `${op}: the mapping still shows the file`)
      mmap.unmap(b)
    }
  } finally {
    fs.closeSync(fd)
  }
})

// Found by attack pass 8: each pending waitAsync() is a thread; at a thread limit the waits took
// every thread left before libuv had started its pool, and the next fs call aborted the process
// (libuv aborts when it cannot make its threads). The pool is now started before the first wait.
test('pending waitAsync() calls at a thread limit leave the runtime its thread pool (ulimit -u, another user)', (t) => {
  const { spawnSync } = require('node:child_process')
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return t.skip('needs root, to run the child as another user under its own ulimit -u')
  }
  if (spawnSync('setpriv', ['--help']).status !== 0) return t.skip('setpriv (util-linux) is not here')
  const asNobody = ['--reuid=65534', '--regid=65534', '--clear-groups', 'prlimit', '--nproc=40:40']
  const probe = spawnSync('setpriv', [...asNobody, process.execPath, '-e', `require(${JSON.stringify(path.join(__dirname, '..'))})`])
  if (probe.status !== 0) {
    // .ci/run keeps the other Node versions under /root, which uid 65534 cannot enter; a clone
    // under /root is as closed to it.
    return t.skip(`uid 65534 cannot run this Node (${process.execPath}) or load the package from ${path.join(__dirname, '..')}`)
  }
  const dir = fs.mkdtempSync('/tmp/node-mmap-threads-')
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.chmodSync(dir, 0o755)
  const script = path.join(dir, 'waits.js')
  fs.writeFileSync(script, `
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    const buf = mmap.map(mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1, 0)
    const waits = []
    for (let i = 0; i < 200; i++) waits.push(mmap.waitAsync(buf, 0, 0, 1500).then((r) => r, (e) => e.code))
    setTimeout(() => {
      require('fs').readFile(__filename, (err, data) => {
        Promise.all(waits).then((outcomes) => {
          const counts = {}
          for (const o of outcomes) counts[o] = (counts[o] || 0) + 1
          // buf is used here, so that it lives until the waits end: a wait does not keep its
          // mapping alive (a collected buf ends them with ERR_MMAP_UNMAPPED, by design).
          console.log(JSON.stringify({ read: err ? err.code : data.length, counts, mapped: buf.length }))
        })
      })
    }, 100)
  `)
  fs.chmodSync(script, 0o644)
  const child = spawnSync('setpriv', [...asNobody, process.execPath, script], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  assert.equal(child.signal, null, `the child died by ${child.signal}: ${child.stderr}`)
  assert.equal(child.status, 0, child.stderr)
  const out = JSON.parse(child.stdout)
  assert.ok(out.read > 0, 'fs.readFile worked')
  // Threads ran out: the waits that got none were refused with EAGAIN, the others timed out.
  assert.ok(out.counts.EAGAIN > 0, `precondition: the limit was reached: ${JSON.stringify(out.counts)}`)
  assert.equal((out.counts.EAGAIN || 0) + (out.counts['timed-out'] || 0), 200, JSON.stringify(out.counts))
})

// Found by attack pass 11: a waitAsync() (or a wait() in another thread) already asleep when
// protect() took read access away (PROT_NONE; PROT_WRITE, where x86 still reads) could never be
// woken: notify() refuses such a word with ERR_MMAP_ACCESS, and the Promise kept the process
// alive for ever. Such waits now end with ERR_MMAP_ACCESS, as a wait begun on the word does.
for (const kernel of ['this kernel', 'a kernel without futex_waitv (simulated)']) {
  test(`waits asleep when protect() takes read access away end with ERR_MMAP_ACCESS, never hang (${kernel})`, { skip: !linux && 'futex(2) is Linux only' }, () => {
    const { runScript, assertCleanExit } = require('./helpers.js')
    const result = runScript(
      `
      const mmap = require(MMAP)
      const { Worker } = require('worker_threads')
      const outcome = (p) => p.then((v) => 'settled ' + v, (e) => e.code)
      const fresh = () => mmap.map(8192, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
      const later = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
      ;(async () => {
        const results = {}
        for (const [name, prot] of [['PROT_NONE', mmap.PROT_NONE], ['PROT_WRITE', mmap.PROT_WRITE]]) {
          // A later tick: the wait is asleep in its thread.
          let b = fresh()
          let p = outcome(mmap.waitAsync(b, 0, 0))
          await later(50)
          mmap.protect(b, 0, 8192, prot)
          let notified
          try { notified = mmap.notify(b, 0) } catch (e) { notified = e.code }
          results[name] = [await p, notified]
          // Only part of the mapping (the other page): the mapping no longer guarantees reading.
          b = fresh()
          p = outcome(mmap.waitAsync(b, 0, 0))
          await later(50)
          mmap.protect(b, 4096, 4096, prot)
          results[name + ' other page'] = await p
        }
        // Read access back before the wait's thread runs, or after: it ends, or sleeps on and
        // a notify wakes it. Never pending for ever.
        const b = fresh()
        const p = outcome(mmap.waitAsync(b, 0, 0))
        await later(50)
        mmap.protect(b, 0, 8192, mmap.PROT_NONE)
        mmap.protect(b, 0, 8192, mmap.PROT_READ | mmap.PROT_WRITE)
        await later(50)
        mmap.notify(b, 0)
        results.toggled = await p
        // Another thread: a worker protects the memory this thread waits on. A byte stream
        // moves a view's memory into a transferable Uint8Array the worker then holds.
        const move = async (view) => {
          let ctl
          const rs = new ReadableStream({ type: 'bytes', start(c) { ctl = c } })
          ctl.enqueue(view)
          return (await rs.getReader().read()).value
        }
        const mapping = () => new mmap.Mapping(8192, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
        const shared = mapping()
        const worker = new Worker(
          'const mmap = require(' + JSON.stringify(MMAP) + '); const { parentPort } = require("worker_threads");' +
          'parentPort.once("message", (b) => setTimeout(() => { mmap.protect(b, 0, 8192, mmap.PROT_NONE); parentPort.postMessage("done") }, 50))',
          { eval: true })
        const waited = outcome(mmap.waitAsync(shared.view(), 0, 0))
        const toWorker = await move(shared.view(0, 8192))
        worker.postMessage(toWorker, [toWorker.buffer])
        results.worker = await waited
        // And a sync wait() in a worker, protected from this thread.
        const sync = new Worker(
          'const mmap = require(' + JSON.stringify(MMAP) + '); const { parentPort } = require("worker_threads");' +
          'parentPort.once("message", (b) => { try { parentPort.postMessage(mmap.wait(b, 0, 0)) } catch (e) { parentPort.postMessage(e.code) } })',
          { eval: true })
        const other = mapping()
        const toSync = await move(other.view(0, 8192))
        sync.postMessage(toSync, [toSync.buffer])
        await later(100)
        mmap.protect(other.view(), 0, 8192, mmap.PROT_NONE)
        const [syncResult] = await require('events').once(sync, 'message')
        results.syncWait = syncResult
        await worker.terminate()
        await sync.terminate()
        console.log(JSON.stringify(results))
      })()
      `,
      { env: kernel === 'this kernel' ? {} : { NODE_MMAP_SIMULATE_NO_FUTEX_WAITV: '1' }, timeout: 30_000 },
    )
    assertCleanExit(result)
    const results = JSON.parse(result.stdout)
    assert.deepEqual(results.PROT_NONE, ['ERR_MMAP_ACCESS', 'ERR_MMAP_ACCESS'])
    assert.deepEqual(results.PROT_WRITE, ['ERR_MMAP_ACCESS', 'ERR_MMAP_ACCESS'])
    assert.equal(results['PROT_NONE other page'], 'ERR_MMAP_ACCESS')
    assert.equal(results['PROT_WRITE other page'], 'ERR_MMAP_ACCESS')
    assert.ok(['ERR_MMAP_ACCESS', 'settled ok'].includes(results.toggled), results.toggled)
    assert.equal(results.worker, 'ERR_MMAP_ACCESS')
    assert.equal(results.syncWait, 'ERR_MMAP_ACCESS')
  })
}

// Found by attack pass 11: with an Error.prepareStackTrace that throws, node-mmap's errors
// (which it tags with their code in `stack`) were replaced by the hook's exception, and a
// waitAsync() ended later by unmap() or protect() never settled: Node exited in the middle of
// the await, Deno aborted ("Cannot create a handle without a HandleScope").
test('a throwing Error.prepareStackTrace neither replaces node-mmap errors nor keeps a waitAsync() from settling', { skip: !linux && 'futex(2) is Linux only' }, () => {
  const { runScript, assertExited } = require('./helpers.js')
  const result = runScript(
    `
    const mmap = require(MMAP)
    Error.prepareStackTrace = () => { throw new Error('the hook throws') }
    const later = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
    const fresh = () => mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
    const results = {}
    try { mmap.map(0, mmap.PROT_READ, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1) } catch (e) { results.sync = [e.code, e.message.startsWith('The value of "size" is out of range')] }
    try { mmap.openSync('/nonexistent/file') } catch (e) { results.open = [e.code, e.syscall] }
    ;(async () => {
      let b = fresh()
      let p = mmap.waitAsync(b, 0, 0)
      await later(20)
      mmap.unmap(b)
      results.unmapped = await p.then(String, (e) => e.code)
      b = fresh()
      p = mmap.waitAsync(b, 0, 0)
      await later(20)
      mmap.protect(b, 0, 4096, mmap.PROT_NONE)
      results.protected = await p.then(String, (e) => e.code)
      results.opened = await mmap.open('/nonexistent/file').then(String, (e) => e.code)
      console.log(JSON.stringify(results))
    })()
    `,
    { timeout: 30_000 },
  )
  assertExited(result)
  assert.deepEqual(JSON.parse(result.stdout), {
    sync: ['ERR_OUT_OF_RANGE', true],
    open: ['ENOENT', 'open'],
    unmapped: 'ERR_MMAP_UNMAPPED',
    protected: 'ERR_MMAP_ACCESS',
    opened: 'ENOENT',
  })
})

// Found by attack pass 12: a waitAsync() asleep when the last view of its mapping went
// (collected, or its memory released by ArrayBuffer#transfer()) held the mapping for ever: with
// anonymous memory nothing could reach the word again, the Promise kept the process alive, and
// the mapping stayed mapped and resident. The last view's release now takes the memory away
// as unmap() does: the waits end with ERR_MMAP_UNMAPPED and the mapping goes.
test('a waitAsync() whose mapping loses its last view ends with ERR_MMAP_UNMAPPED, and the mapping goes', { skip: !linux && 'futex(2) is Linux only' }, () => {
  const { runScript, assertCleanExit } = require('./helpers.js')
  const result = runScript(
    `
    const mmap = require(MMAP)
    const fs = require('fs'), os = require('os'), path = require('path')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-lastview-'))
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
    const linesOf = (file) => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file)).length
    const outcome = (p) => p.then((v) => 'settled ' + v, (e) => e.code)
    const collect = async () => { for (let k = 0; k < 4; k++) { globalThis.gc(); await new Promise((r) => setImmediate(r)) } }
    ;(async () => {
      const results = {}
      // A Buffer from openSync(), collected.
      const file = path.join(dir, 'buffer')
      fs.writeFileSync(file, Buffer.alloc(8192))
      let b = mmap.openSync(file, { mode: 'r+' })
      let p = outcome(mmap.waitAsync(b, 0, 0))
      b = null
      await collect()
      results.buffer = [await p, linesOf(file)]
      // A Mapping handle and its view, both collected.
      const other = path.join(dir, 'handle')
      fs.writeFileSync(other, Buffer.alloc(8192))
      let m = mmap.Mapping.open(other, { mode: 'r+' })
      p = outcome(mmap.waitAsync(m.view(), 0, 0))
      m = null
      await collect()
      results.handle = [await p, linesOf(other)]
      // Anonymous memory: nothing else could ever wake it.
      let anon = mmap.map(1 << 20, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
      p = outcome(mmap.waitAsync(anon, 0, 0))
      if (typeof anon.buffer.transfer === 'function') {
        anon.buffer.transfer(4096) // V8 copies 4 KiB and releases the mapping's memory
      }
      anon = null
      await collect()
      results.anonymous = await p
      // A view still alive elsewhere keeps the wait: notify() through it wakes it.
      const kept = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
      let view = kept.subarray(0)
      p = outcome(mmap.waitAsync(view, 0, 0))
      view = null
      await collect()
      mmap.notify(kept, 0)
      results.kept = await p
      console.log(JSON.stringify(results))
    })()
    `,
    { nodeArgs: ['--expose-gc'], timeout: 60_000 },
  )
  assertCleanExit(result)
  assert.deepEqual(JSON.parse(result.stdout), {
    buffer: ['ERR_MMAP_UNMAPPED', 0],
    handle: ['ERR_MMAP_UNMAPPED', 0],
    anonymous: 'ERR_MMAP_UNMAPPED',
    kept: 'settled ok',
  })
})

// Found by attack pass 12: a wait() looping in a worker on a word that always held `expected`
// returned 'not-equal' while another thread toggled protect(PROT_NONE) and back: the kernel
// saw the cancel word set and reset in between, which is not the word changing.
test("wait() never says 'not-equal' of a word that holds expected, while protect() toggles read access", { skip: !linux && 'futex(2) is Linux only', timeout: 60_000 }, () => {
  const { runScript, assertCleanExit } = require('./helpers.js')
  const result = runScript(
    `
    const mmap = require(MMAP)
    const { Worker } = require('worker_threads')
    ;(async () => {
      const m = new mmap.Mapping(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
      const mine = m.view()
      let ctl
      const rs = new ReadableStream({ type: 'bytes', start(c) { ctl = c } })
      ctl.enqueue(m.view(0, 4096))
      const { value } = await rs.getReader().read()
      const worker = new Worker(
        'const mmap = require(' + JSON.stringify(MMAP) + '); const { parentPort, workerData } = require("worker_threads");' +
        'const stats = {}; for (let i = 0; i < 20000; i++) { let r; try { r = mmap.wait(workerData, 0, 0) } catch (e) { r = e.code } stats[r] = (stats[r] || 0) + 1 }' +
        'parentPort.postMessage(stats)',
        { eval: true, workerData: value, transferList: [value.buffer] })
      let done = false
      worker.on('message', (stats) => { done = true; console.log(JSON.stringify({ stats, word: mine.readInt32LE(0) })); worker.terminate() })
      ;(function tick() {
        if (done) return
        for (let k = 0; k < 50; k++) {
          mmap.protect(mine, 0, 4096, mmap.PROT_NONE)
          for (let s = 0; s < 1000; s++);
          mmap.protect(mine, 0, 4096, mmap.PROT_READ | mmap.PROT_WRITE)
          for (let s = 0; s < (k % 7) * 3000; s++);
        }
        setImmediate(tick)
      })()
    })()
    `,
    { timeout: 55_000 },
  )
  assertCleanExit(result)
  const { stats, word } = JSON.parse(result.stdout)
  assert.equal(word, 0)
  assert.equal(stats['not-equal'], undefined, JSON.stringify(stats))
  assert.ok(Object.keys(stats).every((k) => k === 'ok' || k === 'ERR_MMAP_ACCESS'), JSON.stringify(stats))
})

// Found by attack pass 12: a finite count above 2 ** 31 - 1 was refused (ERR_OUT_OF_RANGE)
// though Infinity was taken; Atomics.notify takes any count.
test('notify() takes any count up to Number.MAX_SAFE_INTEGER, waking all past what the kernel takes', { skip: !linux && 'futex(2) is Linux only' }, async () => {
  const buf = anonymous()
  const waits = [mmap.waitAsync(buf, 0, 0), mmap.waitAsync(buf, 0, 0)]
  assert.equal(mmap.notify(buf, 0, 2 ** 31), 2)
  assert.deepEqual(await Promise.all(waits), ['ok', 'ok'])
  assert.equal(mmap.notify(buf, 0, Number.MAX_SAFE_INTEGER), 0)
  mmap.unmap(buf)
})
