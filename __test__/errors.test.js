'use strict'
// Every way map() refuses its input, asserted whole: class (name), code, exact message, and for
// failed system calls errno (negative, as node:fs), syscall, and no path.

const test = require('node:test')
const assert = require('node:assert/strict')
const { constants: bufferConstants } = require('node:buffer')
const fs = require('node:fs')
const path = require('node:path')
const util = require('node:util')

const mmap = require('..')
const { tempDir, fileWith, mappingsOf, runScript, assertCleanExit, dataLimitUnavailable, notOnWindows } = require('./helpers.js')

const { PAGESIZE, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS } = mmap
const RW = PROT_READ | PROT_WRITE
const MAX = bufferConstants.MAX_LENGTH // Node's own limit, not the module's
const dir = tempDir(test)
const file = fileWith(dir, 'data.bin', Buffer.alloc(4 * PAGESIZE, 0x61))
const fd = fs.openSync(file, 'r+')
test.after(() => fs.closeSync(fd))

/** The errno Node gives error `code` on this platform (Linux's -9 for EBADF; libuv's -4083 on Windows). */
const errnoOf = (code) => [...util.getSystemErrorMap()].find(([, [name]]) => name === code)[0]

const typeError = (name, received) => ({
  name: 'TypeError',
  code: 'ERR_INVALID_ARG_TYPE',
  message: `The "${name}" argument must be of type number. Received ${received}`,
})
const outOfRange = (name, range, received) => ({
  name: 'RangeError',
  code: 'ERR_OUT_OF_RANGE',
  message: `The value of "${name}" is out of range. It must be ${range}. Received ${received}`,
})
const invalidValue = (name, reason, received) => ({
  name: 'RangeError',
  code: 'ERR_INVALID_ARG_VALUE',
  message: `The argument '${name}' ${reason}. Received ${received}`,
})
const PLACEMENT = (flag) =>
  `must not include ${flag}: there is no address to place the mapping at, and a fixed mapping could overwrite the process's own memory`
const SIZE_RANGE = `>= 1 && <= ${MAX}`
const SIZE_LIMIT =
  `>= 1 && <= ${MAX} (buffer.constants.MAX_LENGTH, the largest Buffer this runtime can make); ` +
  'map the file in windows with "offset", or use Mapping, which has no such limit'

/** Asserts that `fn` throws exactly `expected` (and that it is a real Error of that class). */
function assertThrowsExactly(fn, expected, label) {
  let error
  assert.throws(
    () => {
      try {
        fn()
      } catch (err) {
        error = err
        throw err
      }
    },
    expected,
    label,
  )
  const Class = { TypeError, RangeError, Error }[expected.name]
  assert.ok(error instanceof Class, `${label}: not an instance of ${expected.name}`)
  assert.equal(Object.getPrototypeOf(error), Class.prototype, `${label}: not exactly a ${expected.name}`)
}

test('size of the wrong type: ERR_INVALID_ARG_TYPE', () => {
  const cases = [
    ['4096', "type string ('4096')"],
    [undefined, 'undefined'],
    [null, 'null'],
    [{}, 'an instance of Object'],
    [[4096], 'an instance of Array'],
    [new Number(4096), 'an instance of Number'],
    [4096n, 'type bigint (4096n)'],
    [Symbol('size'), 'type symbol (Symbol(size))'],
    [function size() {}, 'function size'],
    [true, 'type boolean (true)'],
  ]
  for (const [value, received] of cases) {
    const expected = typeError('size', received)
    assertThrowsExactly(() => mmap.map(value, RW, MAP_SHARED, fd), expected, String(received))
    // Node's own validator, given the same value under the same name, says the same.
    assert.throws(() => Buffer.alloc(value), { code: expected.code, message: expected.message })
  }
  assertThrowsExactly(() => mmap.map(), typeError('size', 'undefined'), 'no arguments')
})

test('size out of range: ERR_OUT_OF_RANGE', () => {
  const cases = [
    [0, outOfRange('size', SIZE_RANGE, '0')],
    [-0, outOfRange('size', SIZE_RANGE, '-0')],
    [-1, outOfRange('size', SIZE_RANGE, '-1')],
    [-4096, outOfRange('size', SIZE_RANGE, '-4096')],
    [1.5, outOfRange('size', 'an integer', '1.5')],
    [4096.000001, outOfRange('size', 'an integer', '4096.000001')],
    [NaN, outOfRange('size', 'an integer', 'NaN')],
    [Infinity, outOfRange('size', 'an integer', 'Infinity')],
    [-Infinity, outOfRange('size', 'an integer', '-Infinity')],
    [MAX + 1, outOfRange('size', SIZE_LIMIT, (MAX + 1).toLocaleString('en').replaceAll(',', '_'))],
  ]
  if (MAX < 5 * 2 ** 30) cases.push([5 * 2 ** 30, outOfRange('size', SIZE_LIMIT, '5_368_709_120')])
  for (const [value, expected] of cases) {
    assertThrowsExactly(() => mmap.map(value, RW, MAP_SHARED, fd), expected, String(value))
    assertThrowsExactly(() => mmap.map(value, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1), expected, String(value))
  }
})

test('5 GiB is never silently truncated: it throws, and nothing is mapped', () => {
  const big = path.join(dir, 'five-gib.bin')
  const bigFd = fs.openSync(big, 'w+')
  try {
    // Sparse: a truncated size would map fine. On Windows a read-only view cannot pass the
    // end of its file (README), so the file there holds every size tried.
    fs.ftruncateSync(bigFd, process.platform === 'win32' ? 2 ** 33 + PAGESIZE : 5 * 2 ** 30)
    for (const size of [5 * 2 ** 30, 2 ** 32 + PAGESIZE, 2 ** 33 + 1]) {
      if (size <= MAX) {
        // A runtime with a larger MAX_LENGTH maps it whole.
        const buf = mmap.map(size, PROT_READ, MAP_SHARED, bigFd)
        assert.equal(buf.length, size)
        mmap.unmap(buf) // Windows deletes no file under a view (the directory's removal)
        continue
      }
      const received = size.toLocaleString('en').replaceAll(',', '_')
      assertThrowsExactly(
        () => mmap.map(size, PROT_READ, MAP_SHARED, bigFd),
        outOfRange('size', SIZE_LIMIT, received),
        `size ${size}`,
      )
      assert.deepEqual(mappingsOf(big), [], `map(${size}) left a mapping behind`)
    }
  } finally {
    fs.closeSync(bigFd)
  }
})

test('protection: wrong type, out of range, unknown bits', () => {
  assertThrowsExactly(() => mmap.map(PAGESIZE, '1', MAP_SHARED, fd), typeError('protection', "type string ('1')"), 'string')
  assertThrowsExactly(() => mmap.map(PAGESIZE, undefined, MAP_SHARED, fd), typeError('protection', 'undefined'), 'undefined')
  assertThrowsExactly(
    () => mmap.map(PAGESIZE, -1, MAP_SHARED, fd),
    outOfRange('protection', '>= 0 && <= 2147483647', '-1'),
    '-1',
  )
  assertThrowsExactly(() => mmap.map(PAGESIZE, 1.5, MAP_SHARED, fd), outOfRange('protection', 'an integer', '1.5'), '1.5')
  const reason = 'must be PROT_NONE or a bitwise OR of PROT_READ, PROT_WRITE and PROT_EXEC'
  for (const protection of [8, 0x10, PROT_READ | 0x20, 0x1000000, 0x7fffffff]) {
    assertThrowsExactly(
      () => mmap.map(PAGESIZE, protection, MAP_SHARED, fd),
      invalidValue('protection', reason, String(protection)),
      `protection ${protection}`,
    )
  }
})

test('flags: placement flags, no SHARED/PRIVATE, unknown bits, wrong type', () => {
  const placement = [
    ['MAP_FIXED', 0x10],
    ['MAP_FIXED_NOREPLACE', 0x100000],
    ['MAP_32BIT', 0x40],
    ['MAP_GROWSDOWN', 0x100],
  ]
  for (const [name, bit] of placement) {
    for (const base of [MAP_SHARED, MAP_PRIVATE, MAP_PRIVATE | MAP_ANONYMOUS]) {
      const flags = base | bit
      const target = base & MAP_ANONYMOUS ? -1 : fd
      // Windows has no placement flags (README): Linux's numbers are bits it does not know.
      const expected =
        process.platform === 'win32'
          ? invalidValue('flags', `has bits that are not MAP_* flags node-mmap knows (0x${bit.toString(16)})`, String(flags))
          : invalidValue('flags', PLACEMENT(name), String(flags))
      assertThrowsExactly(() => mmap.map(PAGESIZE, RW, flags, target), expected, `${name} with ${base}`)
    }
  }
  for (const flags of [0, MAP_ANONYMOUS, mmap.MAP_POPULATE, 4, 8]) {
    assertThrowsExactly(
      () => mmap.map(PAGESIZE, RW, flags, flags & MAP_ANONYMOUS ? -1 : fd),
      invalidValue('flags', 'must include one of MAP_SHARED, MAP_PRIVATE and MAP_SHARED_VALIDATE', String(flags)),
      `flags ${flags}`,
    )
  }
  const unknown = [
    [MAP_SHARED | 0x800, 0x800], // MAP_DENYWRITE: not one we accept
    [MAP_PRIVATE | 0x1000, 0x1000], // MAP_EXECUTABLE
    [MAP_SHARED | 0x200000, 0x200000],
    [mmap.MAP_SHARED_VALIDATE | 0x800, 0x800],
    [MAP_SHARED | mmap.MAP_HUGE_2MB, mmap.MAP_HUGE_2MB], // a huge-page size without MAP_HUGETLB
  ]
  for (const [flags, bits] of unknown) {
    // MAP_SHARED_VALIDATE and MAP_HUGE_2MB are Linux flags, 0 on Windows: no unknown bits there.
    if (process.platform === 'win32' && (flags === 0x800 || bits === 0)) continue
    assertThrowsExactly(
      () => mmap.map(PAGESIZE, RW, flags, fd),
      invalidValue('flags', `has bits that are not MAP_* flags node-mmap knows (0x${bits.toString(16)})`, String(flags)),
      `flags ${flags}`,
    )
  }
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, '1', fd), typeError('flags', "type string ('1')"), 'string')
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, null, fd), typeError('flags', 'null'), 'null')
  assertThrowsExactly(
    () => mmap.map(PAGESIZE, RW, 2 ** 31, fd),
    outOfRange('flags', '>= 0 && <= 2147483647', '2147483648'),
    '2^31',
  )
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, -1, fd), outOfRange('flags', '>= 0 && <= 2147483647', '-1'), '-1')
})

test('fd: wrong type, non-integer, -1 without MAP_ANONYMOUS, a real fd with MAP_ANONYMOUS', () => {
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, '3'), typeError('fd', "type string ('3')"), 'string')
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED), typeError('fd', 'undefined'), 'missing')
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, null), typeError('fd', 'null'), 'null')
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, 1.5), outOfRange('fd', 'an integer', '1.5'), '1.5')
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, NaN), outOfRange('fd', 'an integer', 'NaN'), 'NaN')
  assertThrowsExactly(
    () => mmap.map(PAGESIZE, RW, MAP_SHARED, -2),
    outOfRange('fd', '>= -1 && <= 2147483647', '-2'),
    '-2',
  )
  assertThrowsExactly(
    () => mmap.map(PAGESIZE, RW, MAP_SHARED, 2 ** 31),
    outOfRange('fd', '>= -1 && <= 2147483647', '2147483648'),
    '2^31',
  )
  for (const flags of [MAP_SHARED, MAP_PRIVATE]) {
    assertThrowsExactly(
      () => mmap.map(PAGESIZE, RW, flags, -1),
      invalidValue('fd', 'must be an open file descriptor (>= 0) unless flags include MAP_ANONYMOUS', '-1'),
      `fd -1, flags ${flags}`,
    )
  }
  for (const flags of [MAP_SHARED | MAP_ANONYMOUS, MAP_PRIVATE | MAP_ANONYMOUS]) {
    for (const bad of [5, 0, fd]) {
      assertThrowsExactly(
        () => mmap.map(PAGESIZE, RW, flags, bad),
        invalidValue('fd', 'must be -1 with MAP_ANONYMOUS', String(bad)),
        `fd ${bad} with MAP_ANONYMOUS`,
      )
    }
  }
})

test('offset: not a multiple of ALLOCATION_GRANULARITY, negative, non-integer, wrong type', () => {
  const g = mmap.ALLOCATION_GRANULARITY
  for (const offset of [1, g / 2, g + 1, 3 * g - 1, 2 ** 40 + 512]) {
    assertThrowsExactly(
      () => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, offset),
      invalidValue('offset', `must be a multiple of ALLOCATION_GRANULARITY (${g})`, String(offset)),
      `offset ${offset}`,
    )
  }
  const range = '>= 0 && <= 9007199254740991'
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, -g), outOfRange('offset', range, String(-g)), '-g')
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, -1), outOfRange('offset', range, '-1'), '-1')
  assertThrowsExactly(
    () => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, 2 ** 53),
    outOfRange('offset', range, '9_007_199_254_740_992'),
    '2^53',
  )
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, 0.5), outOfRange('offset', 'an integer', '0.5'), '0.5')
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, '0'), typeError('offset', "type string ('0')"), 'string')
  assertThrowsExactly(() => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, 0n), typeError('offset', 'type bigint (0n)'), 'bigint')
})

test('advise: not a known MADV_* value (MADV_HWPOISON = 100 refused), wrong type', () => {
  const reason = 'must be one of the MADV_* constants'
  // 100 = MADV_HWPOISON and 101 = MADV_SOFT_OFFLINE destroy pages; 22 = MADV_POPULATE_READ and
  // 25 = MADV_COLLAPSE are real Linux advice the module does not export; 5 and 7 are unused;
  // -1 and 2^31-1 are not advice at all.
  for (const advise of [100, 101, 22, 25, 5, 7, -1, 2 ** 31 - 1]) {
    assertThrowsExactly(
      () => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, 0, advise),
      invalidValue('advise', reason, String(advise)),
      `advise ${advise}`,
    )
  }
  assertThrowsExactly(
    () => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, 0, 'sequential'),
    typeError('advise', "type string ('sequential')"),
    'string',
  )
  assertThrowsExactly(
    () => mmap.map(PAGESIZE, RW, MAP_SHARED, fd, 0, 1.5),
    outOfRange('advise', 'an integer', '1.5'),
    '1.5',
  )
  // Nothing was mapped by any refused call.
  assert.deepEqual(mappingsOf(file), [])
})

/** Asserts a system error: Error, code, negative errno, syscall, message, no path. */
function assertSystemError(fn, { code, errno, syscall, description }, label) {
  assertThrowsExactly(
    fn,
    { name: 'Error', code, errno, syscall, message: `${code}: ${description}, ${syscall}` },
    label,
  )
  try {
    fn()
  } catch (err) {
    assert.equal('path' in err, false, `${label}: no path is known, yet the error has one`)
  }
}

test('an unopened fd: EBADF, errno -9, syscall mmap', () => {
  const closed = fs.openSync(file, 'r')
  fs.closeSync(closed)
  for (const bad of [closed, 1_000_000]) {
    assertSystemError(
      () => mmap.map(PAGESIZE, PROT_READ, MAP_SHARED, bad),
      { code: 'EBADF', errno: errnoOf('EBADF'), syscall: 'mmap', description: 'bad file descriptor' },
      `fd ${bad}`,
    )
  }
})

test('PROT_WRITE + MAP_SHARED on a read-only fd, PROT_READ on a write-only fd: EACCES', () => {
  const ro = fs.openSync(file, 'r')
  const wo = fs.openSync(file, 'a')
  try {
    for (const protection of [PROT_WRITE, RW]) {
      assertSystemError(
        () => mmap.map(PAGESIZE, protection, MAP_SHARED, ro),
        { code: 'EACCES', errno: errnoOf('EACCES'), syscall: 'mmap', description: 'permission denied' },
        `protection ${protection} on O_RDONLY`,
      )
    }
    assertSystemError(
      () => mmap.map(PAGESIZE, PROT_READ, MAP_SHARED, wo),
      { code: 'EACCES', errno: errnoOf('EACCES'), syscall: 'mmap', description: 'permission denied' },
      'PROT_READ on O_WRONLY',
    )
  } finally {
    fs.closeSync(ro)
    fs.closeSync(wo)
  }
})

test('a directory fd: ENODEV', () => {
  const dirFd = fs.openSync(dir, 'r')
  try {
    assertSystemError(
      () => mmap.map(PAGESIZE, PROT_READ, MAP_SHARED, dirFd),
      { code: 'ENODEV', errno: errnoOf('ENODEV'), syscall: 'mmap', description: 'no such device' },
      'directory',
    )
  } finally {
    fs.closeSync(dirFd)
  }
})

test('MAP_SHARED_VALIDATE | MAP_SYNC on a file that is not DAX: ENOTSUP (errno -95)', {
  skip: notOnWindows('MAP_SHARED_VALIDATE and MAP_SYNC are Linux flags, 0 on Windows (README)'),
}, () => {
  assertSystemError(
    () => mmap.map(PAGESIZE, RW, mmap.MAP_SHARED_VALIDATE | mmap.MAP_SYNC, fd),
    { code: 'ENOTSUP', errno: errnoOf('ENOTSUP'), syscall: 'mmap', description: 'operation not supported' },
    'MAP_SYNC',
  )
})

test('a failing madvise throws a system error (syscall madvise) and leaves no mapping', {
  skip: notOnWindows('MADV_FREE is 0 on Windows (README: the advice there are hints), so no advice fails'),
}, () => {
  const own = fileWith(dir, 'madvise.bin', Buffer.alloc(2 * PAGESIZE, 0x62))
  const ownFd = fs.openSync(own, 'r+')
  try {
    // MADV_FREE works only on private anonymous memory: EINVAL on a file mapping.
    for (let i = 0; i < 1000; i++) {
      assertSystemError(
        () => mmap.map(2 * PAGESIZE, RW, MAP_SHARED, ownFd, 0, mmap.MADV_FREE),
        { code: 'EINVAL', errno: errnoOf('EINVAL'), syscall: 'madvise', description: 'invalid argument' },
        'MADV_FREE on a file',
      )
    }
    // Gone at once, with no GC: the failure path unmaps.
    assert.deepEqual(mappingsOf(own), [])
    assert.ok(fs.readFileSync(own).equals(Buffer.alloc(2 * PAGESIZE, 0x62)))
  } finally {
    fs.closeSync(ownFd)
  }
})

test('arguments are checked in order: size, protection, flags, fd, offset, advise', () => {
  assertThrowsExactly(() => mmap.map(0, -1, 0, 'x', -1, 100), outOfRange('size', SIZE_RANGE, '0'), 'size first')
  assertThrowsExactly(
    () => mmap.map(1, 8, 0, 'x', -1, 100),
    invalidValue('protection', 'must be PROT_NONE or a bitwise OR of PROT_READ, PROT_WRITE and PROT_EXEC', '8'),
    'protection second',
  )
  assertThrowsExactly(
    () => mmap.map(1, 1, 0, 'x', -1, 100),
    invalidValue('flags', 'must include one of MAP_SHARED, MAP_PRIVATE and MAP_SHARED_VALIDATE', '0'),
    'flags third',
  )
  assertThrowsExactly(() => mmap.map(1, 1, 1, 'x', -1, 100), typeError('fd', "type string ('x')"), 'fd fourth')
  assertThrowsExactly(
    () => mmap.map(1, 1, 1, fd, -1, 100),
    outOfRange('offset', '>= 0 && <= 9007199254740991', '-1'),
    'offset fifth',
  )
})

test(
  'null for the optional offset / advise is refused like any non-number',
  () => {
    assert.throws(() => mmap.map(PAGESIZE, PROT_READ, MAP_SHARED, fd, null), typeError('offset', 'null'))
    assert.throws(() => mmap.map(PAGESIZE, PROT_READ, MAP_SHARED, fd, 0, null), typeError('advise', 'null'))
  },
)

test('an optional argument passed as undefined counts as left out; extra arguments are ignored', () => {
  // map() looks at how many arguments came: these take the path of passed arguments, the
  // four-argument call the path of left-out ones.
  for (const args of [[], [undefined], [undefined, undefined], [0, undefined], [undefined, mmap.MADV_RANDOM], [0, undefined, 'extra']]) {
    const buf = mmap.map(PAGESIZE, PROT_READ, MAP_SHARED, fd, ...args)
    assert.equal(buf.length, PAGESIZE, `map(..., fd, ${args.map(String).join(', ')})`)
    mmap.unmap(buf)
  }
})

// Node 18 cuts the quoted form of a string longer than 26 characters at 25 characters with no
// closing quote ('aaaaaaaaaaaaaaaaaaaaaaaa...), where Node 20 and later cut longer ones and
// close the quote; node-mmap writes Node 20+'s wording on every Node, so on Node 18 this test
// fails: a known difference, reported as a TODO there rather than hidden. An instance of an
// anonymous class is worded as the running Node words it: `an instance of ` on Node 20 to 24,
// what util.inspect(value, { depth: -1 }) shows on Node 18 and 26 (`{}`, `[Object]`, `[]`).
const NODE_18_WORDING = (() => {
  try {
    Buffer.alloc('a'.repeat(27))
  } catch (err) {
    return err.message.endsWith("...)")
  }
  return false
})()

test(
  'ERR_INVALID_ARG_TYPE describes every received value exactly as Node does',
  {
    todo: NODE_18_WORDING
      ? `Node ${process.version} cuts strings unlike Node 20+, whose wording node-mmap uses`
      : false,
  },
  () => {
    const Anonymous = (() => class {})()
    const AnonymousArray = (() => class extends Array {})()
    const values = [
      'a'.repeat(27),
      'a'.repeat(29),
      "it's",
      Object.create(null),
      new Anonymous(),
      Object.assign(new Anonymous(), { field: 1 }),
      new AnonymousArray(),
      AnonymousArray.from([1, 2]),
    ]
    for (const value of values) {
      let node
      try {
        Buffer.alloc(value)
      } catch (err) {
        node = err.message
      }
      assert.throws(() => mmap.map(value, RW, MAP_SHARED, fd), { message: node })
    }
  },
)

// Every export that takes a view of a mapping goes through one resolver: a view of a
// SharedArrayBuffer is not a mapping (it was silently treated as empty by unmap, incore, sync,
// faults, lock, protect, remap and flush, and wait/notify called it a view of length 0).
test('views of a SharedArrayBuffer: ERR_MMAP_NOT_A_MAPPING from every export that takes a view', async () => {
  const sab = new SharedArrayBuffer(16)
  const views = [
    [new Uint8Array(sab), 'Uint8Array'],
    [new Int32Array(sab, 4, 2), 'Int32Array'],
    [new DataView(sab), 'DataView'],
    [new Uint8Array(new SharedArrayBuffer(0)), 'Uint8Array'],
  ]
  for (const [view, kind] of views) {
    const notMapping = (name) => ({
      name: 'TypeError',
      code: 'ERR_MMAP_NOT_A_MAPPING',
      message: `The "${name}" argument must be a view of memory mapped by node-mmap. Received an instance of ${kind}`,
    })
    const calls = {
      unmap: () => mmap.unmap(view),
      incore: () => mmap.incore(view),
      sync: () => mmap.sync(view),
      faults: () => mmap.faults(view),
      lock: () => mmap.lock(view),
      unlock: () => mmap.unlock(view),
      protect: () => mmap.protect(view, 0, 0, PROT_READ),
      remap: () => mmap.remap(view, 8),
      advise: () => mmap.advise(view, mmap.MADV_NORMAL),
    }
    for (const [name, call] of Object.entries(calls)) {
      assert.throws(call, (err) => {
        assert.ok(err instanceof TypeError, `${name}(${kind}): a TypeError`)
        assert.deepEqual({ name: err.name, code: err.code, message: err.message }, notMapping('buffer'))
        return true
      })
    }
    await assert.rejects(mmap.flush(view), (err) => {
      assert.deepEqual({ name: err.name, code: err.code, message: err.message }, notMapping('buffer'))
      return true
    })
    for (const [name, call] of [
      ['wait', () => mmap.wait(view, 0, 1, 0)],
      ['notify', () => mmap.notify(view, 0)],
    ]) {
      assert.throws(call, (err) => {
        assert.ok(err instanceof TypeError, `${name}(${kind}): a TypeError`)
        assert.deepEqual({ name: err.name, code: err.code, message: err.message }, notMapping('view'))
        return true
      })
    }
    await assert.rejects(mmap.waitAsync(view, 0, 1, 0), (err) => {
      assert.deepEqual({ name: err.name, code: err.code, message: err.message }, notMapping('view'))
      return true
    })
  }
})

// An error message shows a value's first characters, as Node's do: describing a 128 MiB string
// (or a function whose name is one) must not copy it. It did, and where that copy could not be
// had the process aborted. In a child whose data limit leaves no room for a copy.
test('describing a huge argument copies none of it: a coded TypeError under a small data limit (child)', {
  skip: notOnWindows('needs ulimit -d through /bin/sh: Windows has neither'),
}, (t) => {
  const unavailable = dataLimitUnavailable(409600, "const s = Buffer.alloc(2 ** 27, 0x78).toString('latin1')")
  if (unavailable) return t.skip(unavailable)
  const script = `
    const mmap = require(MMAP)
    const s = Buffer.alloc(2 ** 27, 0x78).toString('latin1')
    const named = Object.defineProperty(function () {}, 'name', { value: s })
    for (const call of [
      () => mmap.map(s, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1),
      () => new mmap.Mapping(4096, s, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1),
      () => mmap.incore(named),
    ]) {
      try {
        call()
        console.log('no error')
      } catch (err) {
        console.log(JSON.stringify([err.name, err.code, err.message]))
      }
    }
  `
  const result = runScript(script, { shell: 'ulimit -d 409600' })
  assertCleanExit(result)
  const shown = `type string ('${'x'.repeat(25)}...')`
  const expected = [
    ['TypeError', 'ERR_INVALID_ARG_TYPE', `The "size" argument must be of type number. Received ${shown}`],
    ['TypeError', 'ERR_INVALID_ARG_TYPE', `The "protection" argument must be of type number. Received ${shown}`],
    [
      'TypeError',
      'ERR_INVALID_ARG_TYPE',
      'The "buffer" argument must be an instance of Buffer, TypedArray, DataView or ArrayBuffer. ' +
        `Received function ${'x'.repeat(1024)}`,
    ],
  ]
  assert.deepEqual(result.stdout.trim().split('\n').map((line) => JSON.parse(line)), expected)
})

// Found by attack pass 16: napi_create_error assigns `code`, so a setter for `code` (or
// `errno`, `syscall`, `path`) on Error.prototype ran; one that threw kept the error from its
// Promise, which never settled (open(), waitAsync() ended by unmap() or protect()). The
// properties are now defined, with the attributes an assignment gives (as Node's own errors).
test('a throwing setter on Error.prototype for code, errno, syscall or path keeps no Promise from settling (child)', () => {
  const result = runScript(`
    const mmap = require(MMAP)
    const P = mmap.PAGESIZE
    for (const prop of ['code', 'errno', 'syscall', 'path']) {
      Object.defineProperty(Error.prototype, prop, { configurable: true, get() { return undefined }, set(v) { throw new Error('setter ' + prop) } })
    }
    process.on('uncaughtException', (e) => { console.log(JSON.stringify({ uncaught: e.message })); process.exit(1) })
    const own = (e, p) => Object.getOwnPropertyDescriptor(e, p)?.value
    const shape = (e) => e instanceof Error ? [own(e, 'code'), own(e, 'syscall') ?? null] : 'not an Error'
    const anon = () => mmap.map(P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
    const cases = {
      open: () => mmap.open('/nonexistent-node-mmap-dir/x'),
      // Waits are Linux's (README: not on Windows yet).
      ...(process.platform === 'win32' ? {} : {
        waitAsyncUnmapped: () => { const b = anon(); const p = mmap.waitAsync(b, 0, 0, 5000); setTimeout(() => mmap.unmap(b), 10); return p },
        waitAsyncProtected: () => { const b = anon(); const p = mmap.waitAsync(b, 0, 0, 5000); setTimeout(() => mmap.protect(b, 0, P, mmap.PROT_NONE), 10); return p },
      }),
      openBadMode: () => mmap.open('/tmp', { mode: 'x' }),
      mapBadFd: () => mmap.map(P, mmap.PROT_READ, mmap.MAP_SHARED, 1 << 20),
    }
    ;(async () => {
      const out = {}
      for (const [name, run] of Object.entries(cases)) {
        const settled = (async () => run())().then(() => 'fulfilled', shape)
        out[name] = await Promise.race([settled, new Promise((r) => setTimeout(() => r('pending after 3 s'), 3000))])
      }
      console.log(JSON.stringify(out))
    })()
  `)
  assertCleanExit(result)
  const waits = process.platform === 'win32' ? {} : { waitAsyncUnmapped: ['ERR_MMAP_UNMAPPED', null], waitAsyncProtected: ['ERR_MMAP_ACCESS', null] }
  assert.deepEqual(JSON.parse(result.stdout), {
    open: ['ENOENT', 'open'],
    ...waits,
    openBadMode: ['ERR_INVALID_ARG_VALUE', null],
    mapBadFd: ['EBADF', 'mmap'],
  })
})

test('code, errno, syscall and path have the attributes of Node\'s own (fs) error properties', () => {
  const attributes = (error, name) => {
    const { writable, enumerable, configurable } = Object.getOwnPropertyDescriptor(error, name)
    return { writable, enumerable, configurable }
  }
  const missing = path.join(dir, 'missing')
  let ours
  let nodes
  try {
    mmap.openSync(missing)
  } catch (e) {
    ours = e
  }
  try {
    fs.openSync(missing)
  } catch (e) {
    nodes = e
  }
  for (const name of ['code', 'errno', 'syscall', 'path']) {
    assert.deepEqual(attributes(ours, name), attributes(nodes, name), name)
  }
  assert.deepEqual(Object.keys(ours).sort(), Object.keys(nodes).sort())
})
