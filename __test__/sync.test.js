'use strict'
// sync(buf[, offset[, length[, blocking[, invalidate]]]]) / sync(buf, blocking[, invalidate]):
// msync(2) as mmap-io calls it. MS_ASYNC unless blocking, MS_INVALIDATE when asked, the whole
// view when offset/length are omitted or 0, the start rounded down to its page.
// Oracles: strace of a child (the exact msync calls), /proc/self/smaps (a blocking sync leaves
// no dirty page), and a second process reading the file with fs.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')

const mmap = require('..')
const {
  tempDir,
  tempFile,
  mapTempFile,
  pattern,
  dirtyKB,
  assertThrowsExactly,
  runScript,
  assertExited,
  straceUnavailable,
  traceCalls,
  notOnWindows,
} = require('./helpers.js')

const P = mmap.PAGESIZE

function sharedFile(t, name, size) {
  return mapTempFile(t, mmap, name, size, { seed: 11 })
}

describe('sync', () => {
  it(
    'makes the msync calls of every mmap-io call form (strace)',
    { skip: straceUnavailable() ?? false },
    (t) => {
      const dir = tempDir(t)
      const L = 4 * P
      const { path } = tempFile(t, dir, 'sync-strace.bin', L)
      const forms = [
        ['buf', 0, L, 'MS_ASYNC'],
        ['buf, 0', 0, L, 'MS_ASYNC'],
        ['buf, 0, 0', 0, L, 'MS_ASYNC'],
        [`buf, ${P + 5}`, P, L - P, 'MS_ASYNC'],
        [`buf, ${P + 5}, 100`, P, 105, 'MS_ASYNC'],
        [`buf, ${2 * P}, 0`, 2 * P, L - 2 * P, 'MS_ASYNC'],
        ['buf, 0, 10', 0, 10, 'MS_ASYNC'],
        [`buf, ${P}, 100, true, true`, P, 100, 'MS_INVALIDATE|MS_SYNC'],
        [`buf, ${P}, 100, false, true`, P, 100, 'MS_ASYNC|MS_INVALIDATE'],
        [`buf, ${P}, 100, true, false`, P, 100, 'MS_SYNC'],
        ['buf, 0, 0, true', 0, L, 'MS_SYNC'],
        ['buf, undefined, undefined, true', 0, L, 'MS_SYNC'],
        ['buf, true', 0, L, 'MS_SYNC'],
        ['buf, false', 0, L, 'MS_ASYNC'],
        ['buf, true, true', 0, L, 'MS_INVALIDATE|MS_SYNC'],
        ['buf, false, true', 0, L, 'MS_ASYNC|MS_INVALIDATE'],
        [`buf.subarray(${P + 1}, ${3 * P})`, P, 2 * P, 'MS_ASYNC'],
        [`buf.subarray(${P + 1}), 0, 10, true`, P, 11, 'MS_SYNC'],
        [`buf.subarray(${P + 1}), ${P}, 0, true`, 2 * P, L - 2 * P, 'MS_SYNC'],
        [`new Uint32Array(buf.buffer, ${2 * P}, 4), true`, 2 * P, 16, 'MS_SYNC'],
        [`new DataView(buf.buffer, ${3 * P + 7}), 1, 2`, 3 * P, 10, 'MS_ASYNC'],
        ['buf.buffer, true', 0, L, 'MS_SYNC'],
      ]
      const { calls } = traceCalls(
        `
        const fd = fs.openSync(${JSON.stringify(path)}, 'r+')
        const buf = mmap.map(${L}, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        report(${JSON.stringify(path)})
        ${forms.map(([args]) => `mmap.sync(${args})`).join('\n')}
      `,
        ['msync'],
      )
      assert.deepEqual(
        calls.map((c) => [c.offset, c.length, c.arg, c.result]),
        forms.map(([, offset, length, flags]) => [offset, length, flags, 0]),
      )
    },
  )

  // Mapping#sync goes through the same implementation: every form makes the same msync call
  // as the module's sync on a Buffer of the whole mapping. (`Mapping#sync(0, 0, true)` wrote
  // back nothing: msync(addr, 0).)
  it(
    'Mapping#sync makes the msync calls of the module function, every form (strace)',
    { skip: straceUnavailable() ?? false },
    (t) => {
      const dir = tempDir(t)
      const L = 4 * P
      const { path } = tempFile(t, dir, 'sync-mapping-strace.bin', L)
      const forms = [
        ['', 0, L, 'MS_ASYNC'],
        ['0', 0, L, 'MS_ASYNC'],
        ['0, 0', 0, L, 'MS_ASYNC'],
        ['0, 0, true', 0, L, 'MS_SYNC'],
        ['0, 0, true, true', 0, L, 'MS_INVALIDATE|MS_SYNC'],
        ['undefined, undefined, true', 0, L, 'MS_SYNC'],
        [`${P + 5}`, P, L - P, 'MS_ASYNC'],
        [`${P + 5}, 100`, P, 105, 'MS_ASYNC'],
        [`${2 * P}, 0, true`, 2 * P, L - 2 * P, 'MS_SYNC'],
        ['0, 10', 0, 10, 'MS_ASYNC'],
        ['true', 0, L, 'MS_SYNC'],
        ['false', 0, L, 'MS_ASYNC'],
        ['true, true', 0, L, 'MS_INVALIDATE|MS_SYNC'],
      ]
      const { calls } = traceCalls(
        `
        const m = mmap.Mapping.open(${JSON.stringify(path)}, { mode: 'r+' })
        report(${JSON.stringify(path)})
        ${forms.map(([args]) => `m.sync(${args})`).join('\n')}
      `,
        ['msync'],
      )
      assert.deepEqual(
        calls.map((c) => [c.offset, c.length, c.arg, c.result]),
        forms.map(([, offset, length, flags]) => [offset, length, flags, 0]),
      )
    },
  )

  it('Mapping#sync(0, 0, true) writes every dirty page back (smaps), as sync(buf, 0, 0, true) does', {
    skip: notOnWindows('counts dirty pages in /proc/self/smaps: Windows has no such file'),
  }, (t) => {
    const dir = tempDir(t)
    const { path } = tempFile(t, dir, 'sync-mapping-dirty.bin', pattern(4 * P, 3))
    const m = mmap.Mapping.open(path, { mode: 'r+', offset: 10 })
    const forms = [() => m.sync(0, 0, true), () => m.sync(true), () => m.sync(undefined, 0, true, false)]
    for (const form of forms) {
      for (let page = 0; page < 4; page++) m.write(Buffer.from([page]), page * P)
      assert.equal(dirtyKB(path), 4 * (P / 1024), `4 dirty pages before ${form}`)
      form()
      assert.equal(dirtyKB(path), 0, `no dirty page after ${form}`)
    }
    m.unmap()
  })

  it('a blocking sync writes every dirty page back (smaps), whatever the form', {
    skip: notOnWindows('counts dirty pages in /proc/self/smaps: Windows has no such file'),
  }, (t) => {
    const { path, buf } = sharedFile(t, 'sync-dirty.bin', 4 * P)
    const forms = [
      () => mmap.sync(buf, true),
      () => mmap.sync(buf, true, true),
      () => mmap.sync(buf, 0, 0, true),
      () => mmap.sync(buf, 0, 0, true, true),
      () => mmap.sync(buf, undefined, undefined, true, false),
    ]
    for (const form of forms) {
      for (let page = 0; page < 4; page++) buf[page * P + 1] ^= 0xff
      assert.equal(dirtyKB(path), 4 * (P / 1024), `4 dirty pages before ${form}`)
      form()
      assert.equal(dirtyKB(path), 0, `no dirty page after ${form}`)
    }
  })

  it('data written and synced is what another process reads from the file', (t) => {
    const { path, bytes, buf } = sharedFile(t, 'sync-other-process.bin', 3 * P)
    const fresh = pattern(3 * P, 99)
    fresh.copy(buf)
    assert.notDeepEqual(fresh, bytes)
    mmap.sync(buf, true)
    const blocking = runScript(`process.stdout.write(require('node:fs').readFileSync(process.argv[1]).toString('base64'))`, {
      args: [path],
    })
    assertExited(blocking)
    assert.deepEqual(Buffer.from(blocking.stdout, 'base64'), fresh)

    buf.write('asynchronous', P + 3, 'latin1')
    mmap.sync(buf, P, 100)
    const asynchronous = runScript(
      `process.stdout.write(require('node:fs').readFileSync(process.argv[1]).toString('latin1', ${P + 3}, ${P + 15}))`,
      { args: [path] },
    )
    assertExited(asynchronous)
    assert.equal(asynchronous.stdout, 'asynchronous')
  })

  it('refuses arguments of the wrong type', (t) => {
    const { buf } = sharedFile(t, 'sync-bad-types.bin', 2 * P)
    const cases = [
      [() => mmap.sync(buf, 'x'), 'The "offset" argument must be of type number. Received type string (\'x\')'],
      [() => mmap.sync(buf, 0, '10'), 'The "length" argument must be of type number. Received type string (\'10\')'],
      [() => mmap.sync(buf, 0, 0, 1), 'The "blocking" argument must be of type boolean. Received type number (1)'],
      [() => mmap.sync(buf, 0, 0, true, 'yes'), 'The "invalidate" argument must be of type boolean. Received type string (\'yes\')'],
      [() => mmap.sync(buf, true, 1), 'The "invalidate" argument must be of type boolean. Received type number (1)'],
      [() => mmap.sync(buf, 0n), 'The "offset" argument must be of type number. Received type bigint (0n)'],
    ]
    for (const [fn, message] of cases) assertThrowsExactly(fn, TypeError, { code: 'ERR_INVALID_ARG_TYPE', message })
  })

  it('refuses ranges outside the view', (t) => {
    const L = 2 * P
    const { buf } = sharedFile(t, 'sync-bad-ranges.bin', L)
    const cases = [
      [() => mmap.sync(buf, L + 1), `The value of "offset" is out of range. It must be >= 0 && <= ${L}. Received ${L + 1}`],
      [() => mmap.sync(buf, -1), `The value of "offset" is out of range. It must be >= 0 && <= ${L}. Received -1`],
      [() => mmap.sync(buf, 1.5), 'The value of "offset" is out of range. It must be an integer. Received 1.5'],
      [() => mmap.sync(buf, 0, L + 1), `The value of "length" is out of range. It must be >= 0 && <= ${L}. Received ${L + 1}`],
      [() => mmap.sync(buf, P, P + 1), `The value of "length" is out of range. It must be >= 0 && <= ${P}. Received ${P + 1}`],
      [() => mmap.sync(buf, 0, -5), `The value of "length" is out of range. It must be >= 0 && <= ${L}. Received -5`],
      [
        () => mmap.sync(buf.subarray(P), 1, P),
        `The value of "length" is out of range. It must be >= 0 && <= ${P - 1}. Received ${P}`,
      ],
    ]
    for (const [fn, message] of cases) assertThrowsExactly(fn, RangeError, { code: 'ERR_OUT_OF_RANGE', message })
  })

  it('refuses what is not a mapping', () => {
    assertThrowsExactly(() => mmap.sync(Buffer.alloc(4)), TypeError, {
      code: 'ERR_MMAP_NOT_A_MAPPING',
      message: 'The "buffer" argument must be a view of memory mapped by node-mmap. Received an instance of Buffer',
    })
    assertThrowsExactly(() => mmap.sync({}), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "buffer" argument must be an instance of Buffer, TypedArray, DataView or ArrayBuffer. Received an instance of Object',
    })
  })

  it('reports a failed msync as a system error (MS_INVALIDATE over locked pages: EBUSY)', {
    skip: notOnWindows("Linux's msync refuses MS_INVALIDATE over locked pages; FlushViewOfFile has no invalidate and cannot fail so"),
  }, (t) => {
    const { buf } = sharedFile(t, 'sync-ebusy.bin', P)
    mmap.lock(buf)
    t.after(() => mmap.unlock(buf))
    for (const fn of [() => mmap.sync(buf, true, true), () => mmap.sync(buf, 0, 0, false, true)]) {
      assertThrowsExactly(fn, Error, {
        code: 'EBUSY',
        errno: -16,
        syscall: 'msync',
        message: 'EBUSY: resource busy or locked, msync',
      })
    }
  })

  it('does nothing on an unmapped view', (t) => {
    const { buf } = sharedFile(t, 'sync-detached.bin', P)
    mmap.unmap(buf)
    mmap.sync(buf)
    mmap.sync(buf, true, true)
    mmap.sync(buf, 0, 0, true, true)
  })
})
