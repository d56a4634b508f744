'use strict'
// flush(buf, { offset, length, invalidate }) -> Promise: msync(MS_SYNC) on the libuv pool.
// Oracles: /proc/self/smaps (no dirty page left once it resolves), strace of a child (the exact
// msync calls, made on a pool thread), a second process reading the file, and a counter of
// event-loop turns (counted, never timed).

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const mmap = require('..')
const {
  tempDir,
  tempFile,
  mapTempFile,
  pattern,
  dirtyKB,
  assertRejectsExactly,
  runScript,
  assertExited,
  straceUnavailable,
  traceCalls,
  notOnWindows,
} = require('./helpers.js')

const P = mmap.PAGESIZE
const RW = mmap.PROT_READ | mmap.PROT_WRITE

function sharedFile(t, name, size) {
  return mapTempFile(t, mmap, name, size, { seed: 17 })
}

function readInOtherProcess(file) {
  const result = runScript(`process.stdout.write(require('node:fs').readFileSync(process.argv[1]).toString('base64'))`, {
    args: [file],
  })
  assertExited(result)
  return Buffer.from(result.stdout, 'base64')
}

describe('flush', () => {
  it('returns a Promise that resolves once the dirty pages are written back', {
    skip: notOnWindows('counts dirty pages in /proc/self/smaps: Windows has no such file'),
  }, async (t) => {
    const { path, buf } = sharedFile(t, 'flush-basic.bin', 4 * P)
    const fresh = pattern(4 * P, 23)
    fresh.copy(buf)
    assert.equal(dirtyKB(path), 4 * (P / 1024))
    const promise = mmap.flush(buf)
    assert.ok(promise instanceof Promise)
    assert.equal(await promise, undefined)
    assert.equal(dirtyKB(path), 0, 'no dirty page left')
    assert.deepEqual(readInOtherProcess(path), fresh)
  })

  it('accepts every view and option form', async (t) => {
    const { path, buf } = sharedFile(t, 'flush-forms.bin', 4 * P)
    const forms = [
      () => mmap.flush(buf, {}),
      () => mmap.flush(buf, undefined),
      () => mmap.flush(buf, { offset: P, length: 2 * P, invalidate: true }),
      () => mmap.flush(buf, { offset: undefined, length: undefined, invalidate: undefined }),
      () => mmap.flush(buf.subarray(1)),
      () => mmap.flush(new DataView(buf.buffer)),
      () => mmap.flush(buf.buffer, { invalidate: false }),
    ]
    for (const form of forms) {
      buf[3 * P] ^= 1
      assert.equal(await form(), undefined)
    }
    assert.equal(dirtyKB(path), 0)
  })

  it(
    'makes the msync calls asked for, on a thread of the libuv pool (strace)',
    { skip: straceUnavailable() ?? false },
    (t) => {
      const dir = tempDir(t)
      const L = 4 * P
      const { path } = tempFile(t, dir, 'flush-strace.bin', L)
      const forms = [
        ['buf', 0, L, 'MS_SYNC'],
        ['buf, {}', 0, L, 'MS_SYNC'],
        [`buf, { offset: ${P + 5} }`, P, L - P, 'MS_SYNC'],
        [`buf, { offset: ${P + 5}, length: 100 }`, P, 105, 'MS_SYNC'],
        ['buf, { length: 10, invalidate: true }', 0, 10, 'MS_INVALIDATE|MS_SYNC'],
        ['buf, { invalidate: false }', 0, L, 'MS_SYNC'],
        // An empty range spans no page: no msync at all.
        ['buf, { offset: 0, length: 0 }', null],
        [`buf, { offset: ${P + 5}, length: 0 }`, null],
        [`buf.subarray(${P + 1}), { offset: 1, length: 2 }`, P, 4, 'MS_SYNC'],
        [`new DataView(buf.buffer, ${2 * P}), { invalidate: true }`, 2 * P, L - 2 * P, 'MS_INVALIDATE|MS_SYNC'],
      ]
      const { calls, stdout } = traceCalls(
        `
        const fd = fs.openSync(${JSON.stringify(path)}, 'r+')
        const buf = mmap.map(${L}, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        report(${JSON.stringify(path)})
        ;(async () => {
          ${forms.map(([args]) => `await mmap.flush(${args})`).join('\n')}
          console.log('FLUSHED')
        })()
      `,
        ['msync'],
        { threads: true },
      )
      assert.match(stdout, /^FLUSHED$/m)
      assert.deepEqual(
        calls.map((c) => [c.offset, c.length, c.arg, c.result]),
        forms.filter(([, offset]) => offset !== null).map(([, offset, length, flags]) => [offset, length, flags, 0]),
      )
    },
  )

  it('rejects for unknown option names and bad option values, as Node promise APIs do (never throws)', async (t) => {
    const L = 2 * P
    const { buf } = sharedFile(t, 'flush-bad-options.bin', L)
    await assertRejectsExactly(mmap.flush(buf, { offest: 0 }), TypeError, {
      code: 'ERR_INVALID_ARG_VALUE',
      message: `The argument 'options' has an unknown option "offest"; known options are offset, length, invalidate`,
    })
    await assertRejectsExactly(mmap.flush(buf, { sync: true }), TypeError, {
      code: 'ERR_INVALID_ARG_VALUE',
      message: `The argument 'options' has an unknown option "sync"; known options are offset, length, invalidate`,
    })
    await assertRejectsExactly(mmap.flush(buf, 5), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "options" argument must be of type object. Received type number (5)',
    })
    await assertRejectsExactly(mmap.flush(buf, 'sync'), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: `The "options" argument must be of type object. Received type string ('sync')`,
    })
    await assertRejectsExactly(mmap.flush(buf, { offset: '1' }), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: `The "options.offset" argument must be of type number. Received type string ('1')`,
    })
    await assertRejectsExactly(mmap.flush(buf, { invalidate: 1 }), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "options.invalidate" argument must be of type boolean. Received type number (1)',
    })
    await assertRejectsExactly(mmap.flush(buf, { offset: L + 1 }), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "options.offset" is out of range. It must be >= 0 && <= ${L}. Received ${L + 1}`,
    })
    await assertRejectsExactly(mmap.flush(buf, { offset: P, length: P + 1 }), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "options.length" is out of range. It must be >= 0 && <= ${P}. Received ${P + 1}`,
    })
    await assertRejectsExactly(mmap.flush(buf, { length: -1 }), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "options.length" is out of range. It must be >= 0 && <= ${L}. Received -1`,
    })
    await assertRejectsExactly(mmap.flush(Buffer.alloc(3)), TypeError, {
      code: 'ERR_MMAP_NOT_A_MAPPING',
      message: 'The "buffer" argument must be a view of memory mapped by node-mmap. Received an instance of Buffer',
    })
    await assertRejectsExactly(mmap.flush(null), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "buffer" argument must be an instance of Buffer, TypedArray, DataView or ArrayBuffer. Received null',
    })
  })

  it('does nothing (resolves) for an unmapped Buffer or any view of it, as sync()', async (t) => {
    const { buf } = sharedFile(t, 'flush-unmapped.bin', P)
    const sub = buf.subarray(1)
    mmap.unmap(buf)
    for (const view of [buf, sub, buf.buffer]) {
      assert.equal(await mmap.flush(view), undefined)
    }
  })

  it('rejects with a system error when msync fails (MS_INVALIDATE over locked pages: EBUSY)', {
    skip: notOnWindows("Linux's msync refuses MS_INVALIDATE over locked pages; FlushViewOfFile has no invalidate and cannot fail so"),
  }, async (t) => {
    const { buf } = sharedFile(t, 'flush-ebusy.bin', P)
    mmap.lock(buf)
    t.after(() => mmap.unlock(buf))
    await assertRejectsExactly(mmap.flush(buf, { invalidate: true }), Error, {
      code: 'EBUSY',
      errno: -16,
      syscall: 'msync',
      message: 'EBUSY: resource busy or locked, msync',
    })
  })

  it('keeps the event loop turning while 256 MiB of dirty pages are written back', async (t) => {
    const size = 256 << 20
    const dir = tempDir(t)
    const file = `${dir}/flush-256MiB.bin`
    const fd = fs.openSync(file, 'w+')
    fs.ftruncateSync(fd, size)
    const buf = mmap.map(size, RW, mmap.MAP_SHARED, fd, 0)
    fs.closeSync(fd)
    t.after(() => mmap.unmap(buf))
    for (let i = 0; i < size; i += P) buf[i] = (i / P) & 0xff || 1
    // Precondition (the kernel's own background writeback may already have cleaned a few);
    // Windows has no /proc/self/smaps to count them.
    if (process.platform !== 'win32') assert.ok(dirtyKB(file) >= size / 1024 / 2, 'most pages dirty before')

    let turns = 0
    let settled = false
    const spin = () => {
      if (settled) return
      turns++
      setImmediate(spin)
    }
    setImmediate(spin)
    await mmap.flush(buf)
    settled = true
    assert.ok(turns > 0, `the event loop turned while flush ran (turns: ${turns})`)
    assert.equal(dirtyKB(file), 0, 'every page written back')
    const fdCheck = fs.openSync(file, 'r')
    const sample = Buffer.alloc(1)
    fs.readSync(fdCheck, sample, 0, 1, 1000 * P)
    fs.closeSync(fdCheck)
    assert.equal(sample[0], 1000 & 0xff)
  })

  it('resolves several flushes at once', async (t) => {
    const { path, buf } = sharedFile(t, 'flush-many.bin', 16 * P)
    const fresh = pattern(16 * P, 31)
    fresh.copy(buf)
    const other = sharedFile(t, 'flush-many-other.bin', 4 * P)
    other.buf.fill(0x42)
    const results = await Promise.all([
      ...Array.from({ length: 16 }, (_, i) => mmap.flush(buf, { offset: i * P, length: P })),
      mmap.flush(buf),
      mmap.flush(buf.subarray(3 * P, 9 * P)),
      mmap.flush(other.buf, { invalidate: true }),
      mmap.flush(other.buf),
    ])
    assert.deepEqual(results, Array(20).fill(undefined))
    assert.equal(dirtyKB(path), 0)
    assert.equal(dirtyKB(other.path), 0)
    assert.deepEqual(readInOtherProcess(path), fresh)
    assert.deepEqual(readInOtherProcess(other.path), Buffer.alloc(4 * P, 0x42))
  })

  it('settles (resolves, or rejects with ERR_MMAP_UNMAPPED) when unmap follows at once', async (t) => {
    const dir = tempDir(t)
    const { fd } = tempFile(t, dir, 'flush-then-unmap.bin', 64 * P)
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, () => {
        const buf = mmap.map(64 * P, RW, mmap.MAP_SHARED, fd, 0)
        buf.fill(1)
        const promise = mmap.flush(buf)
        mmap.unmap(buf)
        return promise.then(
          () => 'resolved',
          (err) => {
            assert.equal(err.constructor, Error)
            assert.equal(err.code, 'ERR_MMAP_UNMAPPED')
            assert.equal(err.message, 'The mapping was unmapped')
            return 'unmapped'
          },
        )
      }),
    )
    assert.equal(outcomes.length, 50)
    assert.ok(outcomes.every((o) => o === 'resolved' || o === 'unmapped'))
  })
})
