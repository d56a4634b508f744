'use strict'
// The Mapping handle: new Mapping(size, prot, flags, fd, offset) and Mapping.open(path, options);
// length, read/readInto/write (copying), view (zero-copy), sync/flush/advise/incore/lock/unlock,
// unmap and Symbol.dispose; mappings above buffer.constants.MAX_LENGTH (a sparse 6 GiB file);
// and the runtime without external buffers (Electron 21+), simulated in a child process.
// Oracles: the file itself (fs.readFileSync / fs.readSync), /proc/self/maps and /proc/self/smaps.

const test = require('node:test')
const assert = require('node:assert/strict')
const { constants: bufferConstants } = require('node:buffer')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

const mmap = require('..')
const {
  tempDir,
  randomFileIn,
  mappingsOf,
  smapsOf,
  openFdTargets,
  runScript,
  runNode,
  assertCleanExit,
  assertThrowsExactly,
  assertRejectsExactly,
  mappingCountOf,
  notOnWindows,
} = require('./helpers.js')

const { Mapping, PAGESIZE, PROT_NONE, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS } = mmap
const RW = PROT_READ | PROT_WRITE
const ANON = MAP_PRIVATE | MAP_ANONYMOUS
const GiB = 2 ** 30
const MAX_LENGTH = bufferConstants.MAX_LENGTH
const dir = tempDir(test)
let serial = 0
const windows = process.platform === 'win32'
// The unit of map()'s offsets: PAGESIZE on Linux, 65536 on Windows (ALLOCATION_GRANULARITY).
const GRAIN = mmap.ALLOCATION_GRANULARITY
/** The errno Node gives error `code` here (Linux's -2 for ENOENT; libuv's -4058 on Windows). */
const errnoOf = (code) => [...require('node:util').getSystemErrorMap()].find(([, [name]]) => name === code)[0]

/** A new file holding `size` random bytes: { file, bytes } (bytes is the oracle's copy). */
function randomFile(size = 4 * PAGESIZE + 123) {
  return randomFileIn(dir, `file-${++serial}.bin`, size)
}

/** `new Mapping(...)` over `file` opened with `fsMode`; the fd is closed before returning. */
function mappingOf(file, fsMode, size, protection, flags, offset) {
  const fd = fs.openSync(file, fsMode)
  try {
    return new Mapping(size, protection, flags, fd, offset)
  } finally {
    fs.closeSync(fd)
  }
}

const UNMAPPED = { code: 'ERR_MMAP_UNMAPPED', message: 'The mapping was unmapped' }

/** Node's rendering of a large integer in ERR_OUT_OF_RANGE messages: 1_234_567 above 2^32. */
function shown(n) {
  return Math.abs(n) > 2 ** 32 ? String(n).replace(/\B(?=(\d{3})+(?!\d))/g, '_') : String(n)
}

// ---------------------------------------------------------------------------------------------
// Making a Mapping

test('new Mapping(size, prot, flags, fd, offset) maps the file window', () => {
  const { file, bytes } = randomFile(6 * GRAIN)
  const m = mappingOf(file, 'r+', 3 * GRAIN, RW, MAP_SHARED, GRAIN)
  assert.ok(m instanceof Mapping)
  assert.equal(m.length, 3 * GRAIN)
  assert.equal(m.unmapped, false)
  assert.ok(m.read().equals(bytes.subarray(GRAIN, 4 * GRAIN)))
  if (!windows) {
    // The kernel's own list (Windows has no /proc/self/maps).
    const maps = mappingsOf(file)
    assert.equal(maps.length, 1)
    assert.deepEqual([maps[0].offset, maps[0].length, maps[0].perms], [GRAIN, 3 * GRAIN, 'rw-s'])
  }
  // The fd is closed already: the write still reaches the file.
  const patch = randomBytes(10)
  assert.equal(m.write(patch, 5), 10)
  assert.ok(fs.readFileSync(file).subarray(GRAIN + 5, GRAIN + 15).equals(patch))
  m.unmap()
})

test('new Mapping with offset omitted maps from 0; anonymous memory reads as zeros', () => {
  const { file, bytes } = randomFile(2 * PAGESIZE)
  const m = mappingOf(file, 'r', 2 * PAGESIZE, PROT_READ, MAP_SHARED)
  assert.ok(m.read().equals(bytes))
  if (!windows) assert.equal(mappingsOf(file)[0].perms, 'r--s') // no /proc/self/maps on Windows
  m.unmap()

  const anon = new Mapping(3 * PAGESIZE + 1, RW, ANON, -1)
  assert.equal(anon.length, 3 * PAGESIZE + 1)
  assert.ok(anon.read().equals(Buffer.alloc(3 * PAGESIZE + 1)))
  anon.write(Buffer.from('anonymous'), 3 * PAGESIZE - 4)
  assert.equal(anon.read(3 * PAGESIZE - 4, 5).toString(), 'anony')
  anon.unmap()
})

test('new Mapping refuses what map() refuses, with the same errors', () => {
  const fd = fs.openSync(randomFile(PAGESIZE).file, 'r')
  try {
    assertThrowsExactly(() => new Mapping(0, RW, ANON, -1), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "size" is out of range. It must be >= 1 && <= ${Number.MAX_SAFE_INTEGER}. Received 0`,
    })
    assertThrowsExactly(() => new Mapping('4096', RW, ANON, -1), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: `The "size" argument must be of type number. Received type string ('4096')`,
    })
    assertThrowsExactly(() => new Mapping(PAGESIZE, PROT_READ, MAP_SHARED, fd, 1), RangeError, {
      code: 'ERR_INVALID_ARG_VALUE',
      message: `The argument 'offset' must be a multiple of ALLOCATION_GRANULARITY (${GRAIN}). Received 1`,
    })
    assertThrowsExactly(() => new Mapping(PAGESIZE, RW, ANON, 5), RangeError, {
      code: 'ERR_INVALID_ARG_VALUE',
      message: "The argument 'fd' must be -1 with MAP_ANONYMOUS. Received 5",
    })
    // A write mapping of an fd opened read-only: the kernel says EACCES.
    assertThrowsExactly(() => new Mapping(PAGESIZE, RW, MAP_SHARED, fd), Error, {
      code: 'EACCES',
      errno: errnoOf('EACCES'),
      syscall: 'mmap',
      message: 'EACCES: permission denied, mmap',
    })
  } finally {
    fs.closeSync(fd)
  }
})

test(
  'Mapping called without new throws a TypeError and maps nothing',
  { skip: notOnWindows('the child counts its mappings in /proc/self/maps: Windows has no such file') },
  () => {
    // In a child: the bug wraps the child's global object.
    const { file } = randomFile(PAGESIZE)
    const result = runScript(
      `const fs = require('node:fs')
       const mmap = require(MMAP)
       const { Mapping } = mmap
       const file = process.argv[1]
       const mapped = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(file)).length
       const fd = fs.openSync(file, 'r')
       const out = []
       // Also through the prototype's constructor (attack pass 5: it was the native one) and an
       // instance's, on a plain object as 'this' and on the global object.
       const C = Mapping.prototype.constructor
       const instance = new Mapping(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd)
       const before = mapped()
       out.push({ same: C === Mapping && instance.constructor === Mapping })
       const calls = [
         () => Mapping(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd),
         () => mmap.Mapping(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd),
         () => C.call({}, 4096, mmap.PROT_READ, mmap.MAP_SHARED, fd),
         () => instance.constructor(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd),
         () => C.call(instance, 4096, mmap.PROT_READ, mmap.MAP_SHARED, fd),
       ]
       for (const call of calls) {
         try { call(); out.push({ threw: null, mapped: mapped() - before }) } catch (err) { out.push({ threw: err.name, code: err.code, mapped: mapped() - before }) }
       }
       // new through the prototype's constructor still constructs.
       const again = new instance.constructor(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd)
       out.push({ constructed: again instanceof Mapping && again.length === 4096 })
       process.stdout.write(JSON.stringify(out))`,
      { args: [file] },
    )
    assertCleanExit(result)
    const refused = { threw: 'TypeError', code: 'ERR_CONSTRUCT_CALL_REQUIRED', mapped: 0 }
    assert.deepEqual(JSON.parse(result.stdout), [
      { same: true },
      refused,
      refused,
      refused,
      refused,
      refused,
      { constructed: true },
    ])
  },
)

test('Mapping.open(path, options) maps like openSync, at any offset', () => {
  const { file, bytes } = randomFile(5 * PAGESIZE + 77)
  const whole = Mapping.open(file)
  assert.equal(whole.length, bytes.length)
  assert.ok(whole.read().equals(bytes))
  whole.unmap()
  for (const offset of [1, PAGESIZE - 1, PAGESIZE + 1, 10000]) {
    const m = Mapping.open(file, { offset, length: 3000 })
    assert.equal(m.length, 3000)
    assert.ok(m.read().equals(bytes.subarray(offset, offset + 3000)), `offset ${offset}`)
    assert.ok(m.read(10, 20).equals(bytes.subarray(offset + 10, offset + 30)), `offset ${offset} + 10`)
    m.unmap()
  }
})

// A static method ignores its receiver, as Node's own do (Buffer.from, fs.Stats...): called
// destructured or on another class it maps and returns a Mapping. (It threw napi-rs's uncoded
// InvalidArg, or mapped the file and returned an Array.)
test('Mapping.open ignores its receiver: destructured, .call(Array), .call({}), .call(null)', () => {
  const { file, bytes } = randomFile(PAGESIZE + 3)
  const { open } = Mapping
  const calls = [
    ['destructured', () => open(file)],
    ['.call(Array)', () => Mapping.open.call(Array, file)],
    ['.call({})', () => Mapping.open.call({}, file)],
    ['.call(null)', () => Mapping.open.call(null, file)],
    ['.call(Mapping)', () => Mapping.open.call(Mapping, file, { offset: 1 })],
  ]
  for (const [name, call] of calls) {
    const m = call()
    assert.ok(m instanceof Mapping, `${name}: a Mapping`)
    assert.equal(Object.getPrototypeOf(m), Mapping.prototype, `${name}: a Mapping, not a foreign object`)
    assert.ok(m.read().equals(bytes.subarray(m.length === bytes.length ? 0 : 1)), `${name}: the file's bytes`)
    m.unmap()
  }
  const missing = path.join(dir, 'missing-destructured')
  assertThrowsExactly(() => open(missing), Error, {
    code: 'ENOENT',
    errno: errnoOf('ENOENT'),
    syscall: 'open',
    path: missing,
    message: `ENOENT: no such file or directory, open '${missing}'`,
  })
  assertThrowsExactly(() => open(1), TypeError, { code: 'ERR_INVALID_ARG_TYPE' })
})

// A SharedArrayBuffer is a fine source or target of a copy (as for fs.readSync): readInto and
// write copy the bytes; nothing is treated as empty.
test('readInto and write copy to and from views of a SharedArrayBuffer', () => {
  const { file, bytes } = randomFile(PAGESIZE)
  const m = Mapping.open(file, { mode: 'r+' })
  const shared = new Uint8Array(new SharedArrayBuffer(64))
  assert.equal(m.readInto(shared, 10), 64)
  assert.deepEqual(Buffer.from(shared), bytes.subarray(10, 74))
  shared.fill(0x5c)
  assert.equal(m.write(new DataView(shared.buffer, 4, 8), 100), 8)
  m.unmap()
  const disk = fs.readFileSync(file)
  assert.deepEqual(disk.subarray(100, 108), Buffer.alloc(8, 0x5c))
  assert.deepEqual(disk.subarray(0, 100), bytes.subarray(0, 100))
  assert.deepEqual(disk.subarray(108), bytes.subarray(108))
})

test('Mapping.open refuses what openSync refuses (errors with path)', () => {
  const missing = path.join(dir, 'missing')
  assertThrowsExactly(() => Mapping.open(missing), Error, {
    code: 'ENOENT',
    errno: errnoOf('ENOENT'),
    syscall: 'open',
    path: missing,
    message: `ENOENT: no such file or directory, open '${missing}'`,
  })
  const { file } = randomFile(100)
  assertThrowsExactly(() => Mapping.open(file, { offset: 101 }), RangeError, {
    code: 'ERR_OUT_OF_RANGE',
    message:
      `The value of "options.offset + options.length" is out of range. It must be <= 100 (the size of '${file}'; ` +
      "pass options.size with mode 'r+' or 'w+' to grow the file). Received 101",
  })
  assertThrowsExactly(() => Mapping.open(file, { size: 10 }), RangeError, { code: 'ERR_INVALID_ARG_VALUE' })
  assertThrowsExactly(() => Mapping.open(file, { nope: 1 }), TypeError, { code: 'ERR_INVALID_ARG_VALUE' })
  assert.ok(!openFdTargets().includes(file))
})

test('Mapping.open of an empty file: length 0, reads give empty Buffers', () => {
  const file = path.join(dir, `empty-${++serial}`)
  fs.writeFileSync(file, '')
  const m = Mapping.open(file)
  assert.equal(m.length, 0)
  assert.equal(m.read().length, 0)
  assert.equal(m.view().length, 0)
  assert.equal(m.readInto(Buffer.alloc(4)), 0)
  assert.deepEqual(m.incore(), [0, 0])
  m.unmap()
  assert.equal(m.unmapped, true)
})

// ---------------------------------------------------------------------------------------------
// read / readInto / write against the file

test('read(offset, length) copies exactly those bytes of the file', () => {
  const { file, bytes } = randomFile(7 * PAGESIZE + 5)
  const m = Mapping.open(file)
  const cases = [
    [undefined, undefined, 0, bytes.length],
    [0, undefined, 0, bytes.length],
    [PAGESIZE + 3, undefined, PAGESIZE + 3, bytes.length],
    [0, 1, 0, 1],
    [PAGESIZE - 2, 5, PAGESIZE - 2, PAGESIZE + 3],
    [bytes.length - 1, 1, bytes.length - 1, bytes.length],
    [bytes.length, undefined, bytes.length, bytes.length],
    [123, 0, 123, 123],
  ]
  for (const [offset, length, start, end] of cases) {
    const copy = m.read(offset, length)
    assert.ok(Buffer.isBuffer(copy))
    assert.ok(copy.equals(bytes.subarray(start, end)), `read(${offset}, ${length})`)
  }
  // A copy: changing it changes neither the mapping nor the file.
  const copy = m.read(0, 10)
  copy.fill(0)
  assert.ok(m.read(0, 10).equals(bytes.subarray(0, 10)))
  m.unmap()
})

test('readInto(target, offset) copies as much as fits into any view and returns the count', () => {
  const { file, bytes } = randomFile(3 * PAGESIZE)
  const m = Mapping.open(file)

  const target = Buffer.alloc(100)
  assert.equal(m.readInto(target), 100)
  assert.ok(target.equals(bytes.subarray(0, 100)))

  assert.equal(m.readInto(target, PAGESIZE + 1), 100)
  assert.ok(target.equals(bytes.subarray(PAGESIZE + 1, PAGESIZE + 101)))

  // Near the end: only what is left.
  const tail = Buffer.alloc(100, 0xee)
  assert.equal(m.readInto(tail, bytes.length - 30), 30)
  assert.ok(tail.subarray(0, 30).equals(bytes.subarray(bytes.length - 30)))
  assert.ok(tail.subarray(30).equals(Buffer.alloc(70, 0xee)), 'the rest of the target is untouched')
  assert.equal(m.readInto(tail, bytes.length), 0)

  // A subarray: the bytes land where the view is.
  const big = Buffer.alloc(64)
  assert.equal(m.readInto(big.subarray(10, 20), 7), 10)
  assert.ok(big.subarray(10, 20).equals(bytes.subarray(7, 17)))
  assert.ok(big.subarray(0, 10).equals(Buffer.alloc(10)))
  assert.ok(big.subarray(20).equals(Buffer.alloc(44)))

  // Other element sizes and a DataView count bytes.
  const words = new Uint32Array(8)
  assert.equal(m.readInto(words, 3), 32)
  assert.ok(Buffer.from(words.buffer).equals(bytes.subarray(3, 35)))
  const dv = new DataView(new ArrayBuffer(16), 4, 8)
  assert.equal(m.readInto(dv, 100), 8)
  assert.ok(Buffer.from(dv.buffer, 4, 8).equals(bytes.subarray(100, 108)))
  m.unmap()
})

test('write(source, offset) reaches the file, as much as fits, and returns the count', () => {
  const { file, bytes } = randomFile(3 * PAGESIZE + 10)
  const expected = Buffer.from(bytes)
  const m = Mapping.open(file, { mode: 'r+' })

  const a = randomBytes(300)
  assert.equal(m.write(a, PAGESIZE - 100), 300)
  a.copy(expected, PAGESIZE - 100)

  const b = randomBytes(20)
  assert.equal(m.write(b), 20)
  b.copy(expected, 0)

  const words = new Uint16Array([0x0102, 0x0304, 0x0506])
  assert.equal(m.write(words, 1000), 6)
  Buffer.from(words.buffer).copy(expected, 1000)

  const dv = new DataView(randomBytes(32).buffer, 8, 16)
  assert.equal(m.write(dv, 2000), 16)
  Buffer.from(dv.buffer, 8, 16).copy(expected, 2000)

  // At the end: only what fits; the file does not grow.
  const c = randomBytes(50)
  assert.equal(m.write(c, bytes.length - 20), 20)
  c.copy(expected, bytes.length - 20, 0, 20)
  assert.equal(m.write(c, bytes.length), 0)

  const oracle = fs.readFileSync(file)
  assert.equal(oracle.length, bytes.length)
  assert.ok(oracle.equals(expected), 'the file holds exactly the writes')
  assert.ok(m.read().equals(expected), 'read() shows them too')
  m.unmap()
})

test('read/readInto/write argument errors (whole error)', () => {
  const { file } = randomFile(1000)
  const m = Mapping.open(file, { mode: 'r+' })
  assertThrowsExactly(() => m.read(-1), RangeError, {
    code: 'ERR_OUT_OF_RANGE',
    message: 'The value of "offset" is out of range. It must be >= 0 && <= 1000. Received -1',
  })
  assertThrowsExactly(() => m.read(1001), RangeError, {
    code: 'ERR_OUT_OF_RANGE',
    message: 'The value of "offset" is out of range. It must be >= 0 && <= 1000. Received 1001',
  })
  assertThrowsExactly(() => m.read(990, 11), RangeError, {
    code: 'ERR_OUT_OF_RANGE',
    message: 'The value of "length" is out of range. It must be >= 0 && <= 10. Received 11',
  })
  assertThrowsExactly(() => m.read('1'), TypeError, {
    code: 'ERR_INVALID_ARG_TYPE',
    message: `The "offset" argument must be of type number. Received type string ('1')`,
  })
  assertThrowsExactly(() => m.readInto('x'), TypeError, {
    code: 'ERR_INVALID_ARG_TYPE',
    message: `The "target" argument must be an instance of Buffer, TypedArray or DataView. Received type string ('x')`,
  })
  assertThrowsExactly(() => m.readInto(new ArrayBuffer(4)), TypeError, {
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'The "target" argument must be an instance of Buffer, TypedArray or DataView. Received an instance of ArrayBuffer',
  })
  assertThrowsExactly(() => m.readInto(Buffer.alloc(1), 1001), RangeError, { code: 'ERR_OUT_OF_RANGE' })
  assertThrowsExactly(() => m.write('abc'), TypeError, {
    code: 'ERR_INVALID_ARG_TYPE',
    message: `The "source" argument must be an instance of Buffer, TypedArray or DataView. Received type string ('abc')`,
  })
  assertThrowsExactly(() => m.write(Buffer.from('a'), 1.5), RangeError, {
    code: 'ERR_OUT_OF_RANGE',
    message: 'The value of "offset" is out of range. It must be an integer. Received 1.5',
  })
  m.unmap()
})

// ---------------------------------------------------------------------------------------------
// Access rights

test('write to a mapping without PROT_WRITE throws ERR_MMAP_ACCESS instead of crashing', () => {
  const { file, bytes } = randomFile(2 * PAGESIZE)
  const cases = [
    Mapping.open(file),
    Mapping.open(file, { mode: 'r' }),
    mappingOf(file, 'r', 2 * PAGESIZE, PROT_READ, MAP_SHARED),
    new Mapping(PAGESIZE, PROT_READ, ANON, -1),
    new Mapping(PAGESIZE, PROT_NONE, ANON, -1),
  ]
  for (const m of cases) {
    assertThrowsExactly(() => m.write(Buffer.from('x'), 0), Error, {
      code: 'ERR_MMAP_ACCESS',
      message: 'Cannot write: the mapping, or part of it, is without PROT_WRITE (mapped so, or protect()ed so; a protect() of all of it gives it back)',
    })
    assert.equal(m.write(Buffer.alloc(0)), 0, 'an empty write writes nothing and is fine')
    m.unmap()
  }
  assert.ok(fs.readFileSync(file).equals(bytes))
})

test('read from a mapping without PROT_READ throws ERR_MMAP_ACCESS instead of crashing', () => {
  for (const protection of [PROT_NONE, PROT_WRITE]) {
    const m = new Mapping(PAGESIZE, protection, ANON, -1)
    for (const read of [() => m.read(0, 1), () => m.read(), () => m.readInto(Buffer.alloc(2))]) {
      assertThrowsExactly(read, Error, {
        code: 'ERR_MMAP_ACCESS',
        message: 'Cannot read: the mapping, or part of it, is without PROT_READ (mapped so, or protect()ed so; a protect() of all of it gives it back)',
      })
    }
    assert.equal(m.read(0, 0).length, 0)
    m.unmap()
  }
})

// ---------------------------------------------------------------------------------------------
// view

test('view(offset, length) is zero-copy: writes through it are seen by read() and in the file', () => {
  const { file, bytes } = randomFile(4 * PAGESIZE)
  const expected = Buffer.from(bytes)
  const m = Mapping.open(file, { mode: 'r+', offset: 5 })
  const v = m.view(PAGESIZE, 100)
  assert.ok(Buffer.isBuffer(v))
  assert.equal(v.length, 100)
  assert.ok(v.equals(bytes.subarray(5 + PAGESIZE, 5 + PAGESIZE + 100)))

  v.fill(0x42, 10, 20)
  expected.fill(0x42, 5 + PAGESIZE + 10, 5 + PAGESIZE + 20)
  assert.ok(m.read(PAGESIZE + 10, 10).equals(Buffer.alloc(10, 0x42)), 'read() sees the view write')
  assert.ok(fs.readFileSync(file).equals(expected), 'the file sees the view write')

  // And the other way: write() is seen by the view.
  m.write(Buffer.from('through write'), PAGESIZE + 50)
  assert.equal(v.toString('latin1', 50, 63), 'through write')

  // The default view is the whole mapping; two views share the memory.
  const all = m.view()
  assert.equal(all.length, m.length)
  all[PAGESIZE + 99] = 0x99
  assert.equal(v[99], 0x99)
  // A view is a mapping for the module's toolkit too.
  assert.deepEqual(mmap.incore(v), [0, 1], 'v lies in one page of the file')
  const across = m.view(PAGESIZE - 10, 20) // file bytes 4091..4111 with 4 KiB pages
  const [notResident, resident] = mmap.incore(across)
  assert.equal(notResident + resident, Math.floor((5 + PAGESIZE + 9) / PAGESIZE) - Math.floor((5 + PAGESIZE - 10) / PAGESIZE) + 1)
  m.unmap()
})

test('view argument errors', () => {
  const m = new Mapping(PAGESIZE, RW, ANON, -1)
  assertThrowsExactly(() => m.view(PAGESIZE + 1), RangeError, {
    code: 'ERR_OUT_OF_RANGE',
    message: `The value of "offset" is out of range. It must be >= 0 && <= ${PAGESIZE}. Received ${PAGESIZE + 1}`,
  })
  assertThrowsExactly(() => m.view(1, PAGESIZE), RangeError, {
    code: 'ERR_OUT_OF_RANGE',
    message: `The value of "length" is out of range. It must be >= 0 && <= ${PAGESIZE - 1}. Received ${PAGESIZE}`,
  })
  m.unmap()
})

// ---------------------------------------------------------------------------------------------
// sync, flush, advise, incore, lock, unlock on a live mapping

test('sync and flush write back; their ranges are checked', async () => {
  const { file } = randomFile(3 * PAGESIZE)
  const m = Mapping.open(file, { mode: 'r+' })
  m.write(Buffer.from('synced'), 10)
  m.sync()
  m.sync(0, PAGESIZE, true)
  m.sync(1, 10, true, true)
  assert.equal(fs.readFileSync(file).toString('latin1', 10, 16), 'synced')
  m.write(Buffer.from('flushed'), PAGESIZE + 1)
  assert.equal(await m.flush(), undefined)
  assert.equal(await m.flush({ offset: PAGESIZE, length: 10, invalidate: true }), undefined)
  assert.equal(fs.readFileSync(file).toString('latin1', PAGESIZE + 1, PAGESIZE + 8), 'flushed')
  assertThrowsExactly(() => m.sync(0, 3 * PAGESIZE + 1), RangeError, { code: 'ERR_OUT_OF_RANGE' })
  assertThrowsExactly(() => m.sync(0, 1, 'yes'), TypeError, {
    code: 'ERR_INVALID_ARG_TYPE',
    message: `The "blocking" argument must be of type boolean. Received type string ('yes')`,
  })
  await assert.rejects(m.flush({ size: 1 }), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
  m.unmap()
})

test('advise: MADV_DONTNEED drops private anonymous pages (they read as zeros again)', () => {
  const m = new Mapping(4 * PAGESIZE, RW, ANON, -1)
  m.write(Buffer.alloc(4 * PAGESIZE, 0x11))
  m.advise(mmap.MADV_RANDOM)
  m.advise(PAGESIZE, PAGESIZE, mmap.MADV_DONTNEED)
  const expected = Buffer.alloc(4 * PAGESIZE, 0x11)
  // A hint on Windows (README): the page stays there.
  if (!windows) expected.fill(0, PAGESIZE, 2 * PAGESIZE)
  assert.ok(m.read().equals(expected))
  assertThrowsExactly(() => m.advise(12345), RangeError, { code: 'ERR_INVALID_ARG_VALUE' })
  m.unmap()
})

test('advise: two arguments are not a form: advise(0, MADV_DONTNEED) throws, drops nothing', () => {
  const m = new Mapping(2 * PAGESIZE, RW, ANON, -1)
  m.write(Buffer.alloc(2 * PAGESIZE, 0x22))
  const missing = { code: 'ERR_INVALID_ARG_TYPE', message: 'The "advice" argument must be of type number. Received undefined' }
  assertThrowsExactly(() => m.advise(0, mmap.MADV_DONTNEED), TypeError, missing)
  assertThrowsExactly(() => m.advise(PAGESIZE, PAGESIZE, undefined), TypeError, missing)
  assert.ok(m.read().equals(Buffer.alloc(2 * PAGESIZE, 0x22)))
  m.advise(0, PAGESIZE, mmap.MADV_DONTNEED)
  // A hint on Windows (README): the page stays there.
  assert.ok(m.read(0, PAGESIZE).equals(windows ? Buffer.alloc(PAGESIZE, 0x22) : Buffer.alloc(PAGESIZE)))
  m.unmap()
})

test('incore: [notResident, resident] of the mapping, as mincore sees anonymous pages', () => {
  const pages = 8
  const m = new Mapping(pages * PAGESIZE, RW, ANON, -1)
  assert.deepEqual(m.incore(), [pages, 0], 'untouched anonymous memory is not resident')
  m.write(Buffer.from([1]), 0)
  m.write(Buffer.from([1]), 5 * PAGESIZE + 9)
  assert.deepEqual(m.incore(), [pages - 2, 2], 'two written pages are resident')
  m.unmap()
})

test('lock and unlock: /proc/self/smaps shows the locked bytes of the mapping', {
  skip: notOnWindows("reads the 'Locked:' lines of /proc/self/smaps: Windows has no such file"),
}, () => {
  const { file } = randomFile(4 * PAGESIZE)
  const m = Mapping.open(file)
  const pageKb = PAGESIZE / 1024
  assert.deepEqual(smapsOf(file).map((e) => e.fields.Locked), [0])
  m.lock(PAGESIZE, 2 * PAGESIZE)
  // mlock splits the mapping into three: unlocked, locked, unlocked.
  assert.deepEqual(smapsOf(file).map((e) => e.fields.Locked), [0, 2 * pageKb, 0])
  m.unlock()
  assert.equal(smapsOf(file).map((e) => e.fields.Locked).reduce((a, b) => a + b, 0), 0)
  m.lock()
  assert.equal(smapsOf(file).map((e) => e.fields.Locked).reduce((a, b) => a + b, 0), 4 * pageKb)
  m.unlock(0, PAGESIZE)
  assert.equal(smapsOf(file).map((e) => e.fields.Locked).reduce((a, b) => a + b, 0), 3 * pageKb)
  m.unmap()
})

// ---------------------------------------------------------------------------------------------
// unmap and Symbol.dispose

test('unmap(): views keep their length and read zeros, the file mapping is gone, every later call throws ERR_MMAP_UNMAPPED', async () => {
  const { file, bytes } = randomFile(3 * PAGESIZE)
  const m = Mapping.open(file, { mode: 'r+' })
  const views = [m.view(), m.view(1, 10), m.view(PAGESIZE, PAGESIZE)]
  const sub = views[0].subarray(5, 50)
  assert.equal(mappingCountOf(file), 1)

  assert.equal(m.unmap(), undefined)
  assert.equal(m.unmapped, true)
  assert.equal(m.length, 0)
  const lengths = [3 * PAGESIZE, 10, PAGESIZE, 45]
  for (const [i, v] of [...views, sub].entries()) {
    assert.equal(v.length, lengths[i], 'a view keeps its length')
    assert.ok(v.every((b) => b === 0), 'a view reads zeros')
  }
  assert.equal(mappingCountOf(file), 0, 'the file is no longer mapped (/proc/self/maps)')

  const calls = {
    read: () => m.read(),
    readRange: () => m.read(0, 1),
    readInto: () => m.readInto(Buffer.alloc(1)),
    write: () => m.write(Buffer.from('x')),
    view: () => m.view(),
    sync: () => m.sync(),
    advise: () => m.advise(mmap.MADV_NORMAL),
    incore: () => m.incore(),
    lock: () => m.lock(),
    unlock: () => m.unlock(),
  }
  for (const [name, call] of Object.entries(calls)) {
    const err = assertThrowsExactly(call, Error, UNMAPPED)
    assert.equal(err.code, UNMAPPED.code, name)
  }
  // flush: the same error (thrown or as a rejection).
  let flushed
  try {
    flushed = m.flush()
  } catch (err) {
    flushed = Promise.reject(err)
  }
  await assertRejectsExactly(flushed, Error, UNMAPPED)

  // unmap again: fine.
  assert.equal(m.unmap(), undefined)
  assert.equal(m.unmapped, true)
  assert.ok(fs.readFileSync(file).equals(bytes), 'the file is unchanged')
})

test(
  'flush() after unmap() returns a rejected Promise (it does not throw)',
  async () => {
    const m = new Mapping(PAGESIZE, RW, ANON, -1)
    m.unmap()
    let promise
    assert.doesNotThrow(() => {
      promise = m.flush()
    })
    await assertRejectsExactly(promise, Error, UNMAPPED)
  },
)

test('unmap() of an anonymous Mapping and of one made with new Mapping over a file', () => {
  const anon = new Mapping(PAGESIZE, RW, ANON, -1)
  const v = anon.view()
  v[0] = 1
  anon.unmap()
  assert.equal(v.length, PAGESIZE)
  assert.equal(v[0], 0)
  assert.throws(() => anon.read(), UNMAPPED)

  const { file } = randomFile(PAGESIZE)
  const m = mappingOf(file, 'r+', PAGESIZE, RW, MAP_SHARED)
  assert.equal(mappingCountOf(file), 1)
  m.unmap()
  assert.equal(mappingCountOf(file), 0)
})

test('Mapping.prototype[Symbol.dispose] unmaps', () => {
  assert.equal(typeof Symbol.dispose, 'symbol', 'this Node has Symbol.dispose')
  const { file } = randomFile(2 * PAGESIZE)
  const m = Mapping.open(file)
  const v = m.view()
  assert.equal(typeof m[Symbol.dispose], 'function')
  m[Symbol.dispose]()
  assert.equal(m.unmapped, true)
  assert.equal(m.length, 0)
  assert.equal(v.length, 2 * PAGESIZE)
  assert.ok(v.every((b) => b === 0))
  assert.equal(mappingCountOf(file), 0)
  m[Symbol.dispose]() // twice: fine
})

test('`using m = Mapping.open(...)` unmaps at the end of the block', (t) => {
  let block
  try {
    block = new Function('Mapping', 'file', 'let seen; { using m = Mapping.open(file); seen = m; } return seen')
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err
    return t.skip(`this Node (${process.version}) has no \`using\` declarations: ${err.message}`)
  }
  const { file } = randomFile(PAGESIZE)
  const m = block(Mapping, file)
  assert.equal(m.unmapped, true)
  assert.equal(mappingCountOf(file), 0)
})

// ---------------------------------------------------------------------------------------------
// Above buffer.constants.MAX_LENGTH: a sparse 6 GiB file

// buffer.constants.MAX_LENGTH is 4 GiB on Node 18 and 20, and 2^53 - 1 on Node 22 and later, where
// a Buffer may be as long as any mapping: the tests below check the limit where there is one.
const BUFFERS_ABOVE_4_GIB = MAX_LENGTH > 4 * GiB

test('a sparse 6 GiB file: Mapping.open reads, writes and views beyond 4 GiB', async (t) => {
  const file = path.join(dir, 'sparse-6g.bin')
  fs.writeFileSync(file, '')
  fs.truncateSync(file, 6 * GiB)
  t.after(() => fs.rmSync(file, { force: true }))

  // Bytes written with fs at offsets beyond 4 GiB (and one below, one at the very end).
  const marks = [
    [1000, randomBytes(16)],
    [4 * GiB - 3, randomBytes(8)], // across the 4 GiB line
    [5 * GiB + 7, randomBytes(32)],
    [6 * GiB - 5, randomBytes(5)],
  ]
  const fd = fs.openSync(file, 'r+')
  t.after(() => fs.closeSync(fd))
  for (const [at, bytes] of marks) fs.writeSync(fd, bytes, 0, bytes.length, at)

  const m = Mapping.open(file, { mode: 'r+' })
  t.after(() => m.unmap())
  assert.equal(m.length, 6 * GiB, 'length is exact')
  for (const [at, bytes] of marks) {
    assert.ok(m.read(at, bytes.length).equals(bytes), `read() at ${at}`)
    const into = Buffer.alloc(bytes.length)
    assert.equal(m.readInto(into, at), bytes.length)
    assert.ok(into.equals(bytes), `readInto() at ${at}`)
  }

  // write() beyond 4 GiB reaches the file (fs.readSync is the oracle).
  const patch = randomBytes(64)
  const where = 5 * GiB + PAGESIZE + 3
  assert.equal(m.write(patch, where), 64)
  const back = Buffer.alloc(64)
  assert.equal(fs.readSync(fd, back, 0, 64, where), 64)
  assert.ok(back.equals(patch), 'fs.readSync sees the write')

  // view() of a window beyond 4 GiB.
  const v = m.view(5 * GiB, 2 * PAGESIZE)
  assert.equal(v.length, 2 * PAGESIZE)
  assert.ok(v.subarray(7, 39).equals(marks[2][1]))
  v.write('via view', 100, 'latin1')
  const viaView = Buffer.alloc(8)
  fs.readSync(fd, viaView, 0, 8, 5 * GiB + 100)
  assert.equal(viaView.toString('latin1'), 'via view')

  // Node 18/20: a view exactly MAX_LENGTH (4 GiB) long is allowed; one byte more is a RangeError.
  // Node 22+: a view of the whole 6 GiB is one Buffer.
  const max = BUFFERS_ABOVE_4_GIB ? m.view() : m.view(2 * GiB, MAX_LENGTH)
  const maxStart = BUFFERS_ABOVE_4_GIB ? 0 : 2 * GiB
  assert.equal(max.length, BUFFERS_ABOVE_4_GIB ? 6 * GiB : MAX_LENGTH)
  assert.ok(max.subarray(5 * GiB + 7 - maxStart, 5 * GiB + 39 - maxStart).equals(marks[2][1]))
  if (!BUFFERS_ABOVE_4_GIB) {
    for (const args of [[0, MAX_LENGTH + 1], [], [GiB]]) {
      const length = args.length === 2 ? args[1] : 6 * GiB - (args[0] ?? 0)
      assertThrowsExactly(() => m.view(...args), RangeError, {
        code: 'ERR_OUT_OF_RANGE',
        message: `The value of "length" is out of range. It must be <= ${MAX_LENGTH} (buffer.constants.MAX_LENGTH). Received ${length}`,
      })
    }
  }
  // incore counts every page of the 6 GiB.
  const [notResident, resident] = m.incore()
  assert.equal(notResident + resident, (6 * GiB) / PAGESIZE)

  // Mapping.open at an offset beyond 4 GiB, and openSync of a window there.
  const far = Mapping.open(file, { offset: 5 * GiB + 7, length: 32 })
  assert.ok(far.read().equals(marks[2][1]))
  far.unmap()
  const window = mmap.openSync(file, { offset: 5 * GiB + 7, length: 32 })
  assert.ok(window.equals(marks[2][1]))
  mmap.unmap(window)

  if (BUFFERS_ABOVE_4_GIB) {
    // openSync of the whole file is one 6 GiB Buffer.
    const whole = mmap.openSync(file)
    assert.equal(whole.length, 6 * GiB)
    assert.ok(whole.subarray(6 * GiB - 5).equals(marks[3][1]))
    mmap.unmap(whole)
  } else {
    // openSync of the whole file is refused (it cannot be one Buffer), pointing to windows.
    assertThrowsExactly(() => mmap.openSync(file), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message:
        `The value of "options.length" is out of range. It must be <= ${MAX_LENGTH} (buffer.constants.MAX_LENGTH, ` +
        'the largest Buffer this runtime can make); map the file in windows with options.offset and options.length. ' +
        `Received ${6 * GiB}`,
    })
  }

  const lengths = [v.length, max.length]
  m.unmap()
  assert.deepEqual([v.length, max.length], lengths, 'the views keep their lengths')
  assert.deepEqual([v[0], max[max.length - 1]], [0, 0], 'and read zeros')
})

const NO_MAPPING_ABOVE_MAX_LENGTH = BUFFERS_ABOVE_4_GIB
  ? `buffer.constants.MAX_LENGTH is ${MAX_LENGTH} on Node ${process.version}: no mapping can be longer`
  : false

test('read() longer than buffer.constants.MAX_LENGTH throws (no crash, no truncated copy)', { skip: NO_MAPPING_ABOVE_MAX_LENGTH }, (t) => {
  const m = new Mapping(MAX_LENGTH + PAGESIZE, PROT_READ, ANON | mmap.MAP_NORESERVE, -1)
  t.after(() => m.unmap())
  assert.throws(() => m.read(0, MAX_LENGTH + 1), (err) => {
    assert.ok(['ERR_OUT_OF_RANGE', 'ERR_BUFFER_TOO_LARGE'].includes(err.code), err.stack)
    return true
  })
})

test('map() of 5 GiB is a RangeError that points to Mapping (Node 18/20) or a 5 GiB Buffer (22+); new Mapping of 5 GiB works', () => {
  const size = 5 * GiB
  if (BUFFERS_ABOVE_4_GIB) {
    const buf = mmap.map(size, RW, ANON | mmap.MAP_NORESERVE, -1)
    assert.equal(buf.length, size)
    buf[size - 1] = 7
    assert.equal(buf[size - 1], 7)
    mmap.unmap(buf)
  } else {
    assertThrowsExactly(() => mmap.map(size, RW, ANON | mmap.MAP_NORESERVE, -1), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message:
        `The value of "size" is out of range. It must be >= 1 && <= ${MAX_LENGTH} (buffer.constants.MAX_LENGTH, ` +
        'the largest Buffer this runtime can make); map the file in windows with "offset", or use Mapping, ' +
        `which has no such limit. Received ${shown(size)}`,
    })
  }
  const m = new Mapping(size, RW, ANON | mmap.MAP_NORESERVE, -1)
  assert.equal(m.length, size)
  m.write(Buffer.from('far away'), size - 8)
  assert.equal(m.read(size - 8).toString(), 'far away')
  assert.deepEqual(m.incore(), [size / PAGESIZE - 1, 1])
  m.unmap()
})

// ---------------------------------------------------------------------------------------------
// No external buffers (Electron 21+), simulated with NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS=1

const NO_EXTERNAL_SCRIPT = `
  const fs = require('node:fs')
  const mmap = require(MMAP)
  const [file, other] = process.argv.slice(1)
  const out = { allowed: mmap.externalBuffersAllowed(), errors: {} }
  const attempt = (name, fn) => {
    try { fn(); out.errors[name] = null } catch (err) {
      out.errors[name] = { name: err.name, code: err.code, message: err.message }
    }
  }
  attempt('map', () => mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1))
  attempt('openSync', () => mmap.openSync(other))
  const m = mmap.Mapping.open(file, { mode: 'r+' })
  attempt('view', () => m.view(0, 10))
  out.written = m.write(Buffer.from('no external buffers'), 4097)
  out.read = m.read(4097, 19).toString('latin1')
  const into = Buffer.alloc(19)
  out.readInto = m.readInto(into, 4097)
  out.readIntoText = into.toString('latin1')
  m.sync(0, 0, true)
  const anon = new mmap.Mapping(8192, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  anon.write(Buffer.from('anon'), 8190)
  out.anon = anon.read(8188, 4).toString('latin1')
  out.otherMapped = fs.readFileSync('/proc/self/maps', 'utf8').includes(other)
  out.emptyView = m.view(5, 0).length
  // Read once per process: changing the variable now changes nothing.
  delete process.env.NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS
  out.allowedAfterDelete = mmap.externalBuffersAllowed()
  mmap.open(other).then(
    () => { out.open = null },
    (err) => { out.open = { name: err.name, code: err.code } },
  ).then(() => {
    m.flush().then(() => {
      m.unmap()
      anon.unmap()
      process.stdout.write(JSON.stringify(out))
    })
  })
`

test('without external buffers: map/openSync/open/view throw ERR_MMAP_NO_EXTERNAL_BUFFERS; Mapping works', () => {
  const { file, bytes } = randomFile(3 * PAGESIZE)
  const { file: other, bytes: otherBytes } = randomFile(PAGESIZE)
  const result = runScript(NO_EXTERNAL_SCRIPT, {
    args: [file, other],
    env: { NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS: '1' },
  })
  assertCleanExit(result)
  const out = JSON.parse(result.stdout)
  assert.equal(out.allowed, false)
  assert.equal(out.allowedAfterDelete, false, 'the variable is read once per process')
  const expected = {
    name: 'Error',
    code: 'ERR_MMAP_NO_EXTERNAL_BUFFERS',
    message:
      'This runtime does not allow external buffers (Electron 21+ and other V8 memory-cage builds), so a mapping ' +
      'cannot be shown as a zero-copy Buffer, and a copy would lose every write. Use ' +
      'mmap.Mapping (Mapping.open(path) or new Mapping(...)), which reads and writes the mapping by copying; ' +
      'mmap.externalBuffersAllowed() tells which to use.',
  }
  assert.deepEqual(out.errors, { map: expected, openSync: expected, view: expected })
  assert.deepEqual(out.open, { name: 'Error', code: 'ERR_MMAP_NO_EXTERNAL_BUFFERS' })
  assert.equal(out.otherMapped, false, 'the refused openSync left nothing mapped')
  assert.equal(out.written, 19)
  assert.equal(out.read, 'no external buffers')
  assert.equal(out.readInto, 19)
  assert.equal(out.readIntoText, 'no external buffers')
  assert.equal(out.anon, '\0\0an')
  assert.equal(out.emptyView, 0)
  // The writes reached the file.
  const expectedFile = Buffer.from(bytes)
  expectedFile.write('no external buffers', 4097, 'latin1')
  assert.ok(fs.readFileSync(file).equals(expectedFile))
  assert.ok(fs.readFileSync(other).equals(otherBytes))
})

test('the switch is off by default: a child without it has external buffers', () => {
  const result = runNode(['-e', `process.stdout.write(String(require(${JSON.stringify(path.resolve(__dirname, '..'))}).externalBuffersAllowed()))`])
  assertCleanExit(result)
  assert.equal(result.stdout, 'true')
  assert.equal(mmap.externalBuffersAllowed(), process.env.NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS !== '1')
})
