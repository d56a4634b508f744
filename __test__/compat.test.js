'use strict'
// A program written for mmap-io 1.x (and the seed's node-mmap) runs unchanged with
// require('node-mmap') and gets the results mmap-io documents: map with 4, 5 and 6 arguments,
// advise with 2 and 4, incore's [unmappedPages, mappedPages], every sync form, the PROT_*,
// MAP_*, MADV_*, MS_* constants and PAGESIZE. Oracles: the file (fs.readFileSync), a second
// mapping of it, mincore's documented meaning for anonymous memory, `getconf PAGESIZE`, the
// numbers of <sys/mman.h> that mmap-io's own typings list, and the system calls as the kernel
// saw them (strace).

const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const mmap = require('node-mmap')
const {
  tempDir,
  randomFileIn,
  runNode,
  assertCleanExit,
  straceUnavailable,
  straceScript,
  assertThrowsExactly,
} = require('./helpers.js')

const { PAGESIZE } = mmap
const dir = tempDir(test)
let serial = 0

/** A new file holding `size` random bytes: { file, bytes } (bytes is the oracle's copy). */
function randomFile(size) {
  return randomFileIn(dir, `file-${++serial}.bin`, size)
}

// ---------------------------------------------------------------------------------------------
// Whole programs, unchanged

// mmap-io's README usage section (LiveScript there), in JavaScript, call for call. Only the file
// name comes from argv; PROT_EXECUTE is what the README writes (it exists in neither library, so
// the protection is PROT_READ in both).
const MMAP_IO_README = `
const mmap = require("node-mmap")
const fs = require("fs")

const someFile = process.argv[1]

const fd = fs.openSync(someFile, "r")
const fdW = fs.openSync(someFile, "r+")

const size = fs.fstatSync(fd).size
const rxProt = mmap.PROT_READ | mmap.PROT_EXECUTE
const priv = mmap.MAP_SHARED

// map( size, protection, privacy, fd [, offset = 0 [, advise = 0]] ) -> Buffer
const buffer = mmap.map(size, rxProt, priv, fd)
const buffer2 = mmap.map(size, mmap.PROT_READ, priv, fd, 0, mmap.MADV_SEQUENTIAL)
const wBuffer = mmap.map(size, mmap.PROT_WRITE, priv, fdW)

// advise( buffer, advise ) -> void
// advise( buffer, offset, length, advise ) -> void
mmap.advise(wBuffer, mmap.MADV_RANDOM)

wBuffer[47] = 42

mmap.sync(wBuffer)
mmap.sync(wBuffer, true)
mmap.sync(wBuffer, 0, size)
mmap.sync(wBuffer, 0, size, true)
mmap.sync(wBuffer, 0, size, true, false)

// incore( buffer ) -> [ unmapped-pages Int, mapped-pages Int ]
for (let i = 0; i < size; i += mmap.PAGESIZE) buffer[i]
const coreStats = mmap.incore(buffer)

process.stdout.write(JSON.stringify({
  lengths: [buffer.length, buffer2.length, wBuffer.length],
  seen: [buffer[47], buffer2[47]],
  same: buffer.equals(buffer2),
  coreStats,
}))
`

test("mmap-io's README program runs unchanged and gets mmap-io's results", () => {
  const size = 3 * PAGESIZE + 100
  const { file, bytes } = randomFile(size)
  bytes[47] = 0 // so that 42 is a change
  fs.writeFileSync(file, bytes)
  const result = runNode(['-e', MMAP_IO_README, file])
  assertCleanExit(result)
  const out = JSON.parse(result.stdout)
  assert.deepEqual(out.lengths, [size, size, size])
  assert.deepEqual(out.seen, [42, 42], 'the write through the PROT_WRITE mapping shows in the others')
  assert.equal(out.same, true)
  const pages = Math.ceil(size / PAGESIZE)
  assert.deepEqual(out.coreStats, [0, pages], '[unmapped pages, mapped pages] of a file just read')
  const expected = Buffer.from(bytes)
  expected[47] = 42
  assert.ok(fs.readFileSync(file).equals(expected), 'the file has the write and nothing else')
})

// The seed's two-process example, word for word (only the file name comes from argv).
const SEED_FIRST = `
    const fs = require('fs');
    const mmap = require('node-mmap');
    
    var n_bytes = 1024;
    var fd = fs.openSync(process.argv[1], 'w+');
    fs.writeSync(fd, '\\0', n_bytes); // resize
    var buffer = mmap.map(n_bytes, mmap.PROT_READ | mmap.PROT_WRITE , mmap.MAP_SHARED, fd, 0);
    buffer.writeUInt32BE(0xDEADBEEF, 0);
`
const SEED_SECOND = `
    const fs = require('fs');
    const mmap = require('node-mmap');

    var fd = fs.openSync(process.argv[1], 'r');
    var size = fs.fstatSync(fd).size;
    var buffer = mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0);
    console.log("I'll take dead beef? Answer: 0x" + buffer.readUInt32BE(0).toString(16));
`

test("the seed's two-process example works word for word", () => {
  const file = path.join(dir, 'temp_file')
  const first = runNode(['-e', SEED_FIRST, file])
  assertCleanExit(first)
  assert.equal(fs.readFileSync(file).readUInt32BE(0), 0xdeadbeef, 'the first process wrote the file')
  const second = runNode(['-e', SEED_SECOND, file])
  assertCleanExit(second)
  assert.equal(second.stdout, "I'll take dead beef? Answer: 0xdeadbeef\n")
})

// ---------------------------------------------------------------------------------------------
// mmap-io's own test script (test.ls), case by case

test('map with 6, 5 and 4 arguments (mmap-io test.ls)', () => {
  const { file, bytes } = randomFile(2 * PAGESIZE - 10)
  const size = bytes.length
  const fd = fs.openSync(file, 'r')
  try {
    const six = mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0, mmap.MADV_SEQUENTIAL)
    const five = mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    const four = mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd)
    for (const buf of [six, five, four]) {
      assert.equal(buf.length, size)
      assert.ok(buf.equals(bytes))
      assert.equal(buf[size + 47], undefined, 'reading out of bounds gives undefined')
    }
    // advise with 2 and 4 arguments.
    assert.equal(mmap.advise(six, mmap.MADV_NORMAL), undefined)
    assert.equal(mmap.advise(six, 0, PAGESIZE, mmap.MADV_NORMAL), undefined)
    // Touch every page; then incore says all are mapped, as mmap-io's test expects ([0, 2]).
    for (let i = 0; i < size; i += PAGESIZE) void six[i]
    assert.deepEqual(mmap.incore(six), [0, 2])
    for (const buf of [six, five, four]) mmap.unmap(buf)
  } finally {
    fs.closeSync(fd)
  }
})

test('the bad inputs of mmap-io test.ls throw, with Node-style errors', () => {
  const { file } = randomFile(PAGESIZE)
  const fd = fs.openSync(file, 'r')
  try {
    assertThrowsExactly(() => mmap.map('foo', mmap.PROT_READ, mmap.MAP_SHARED, fd, 0), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: `The "size" argument must be of type number. Received type string ('foo')`,
    })
    assertThrowsExactly(() => mmap.map(0, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
    })
    assertThrowsExactly(() => mmap.map(PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, PAGESIZE - 1), RangeError, {
      code: 'ERR_INVALID_ARG_VALUE',
      // ALLOCATION_GRANULARITY is PAGESIZE on Linux, 65536 on Windows (README).
      message: `The argument 'offset' must be a multiple of ALLOCATION_GRANULARITY (${mmap.ALLOCATION_GRANULARITY}). Received ${PAGESIZE - 1}`,
    })
    const buffer = mmap.map(PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd)
    assertThrowsExactly(() => mmap.advise(buffer, 'fuck off'), TypeError, { code: 'ERR_INVALID_ARG_TYPE' })
    mmap.unmap(buffer)
  } finally {
    fs.closeSync(fd)
  }
  // A Buffer that is not a mapping, where mmap-io would fail with EINVAL or crash.
  const plain = Buffer.alloc(PAGESIZE)
  for (const call of [
    () => mmap.advise(plain, mmap.MADV_NORMAL),
    () => mmap.incore(plain),
    () => mmap.sync(plain),
    () => mmap.sync(plain, true),
  ]) {
    assertThrowsExactly(call, TypeError, { code: 'ERR_MMAP_NOT_A_MAPPING' })
  }
})

test('write through a PROT_WRITE mapping, read through a PROT_READ one (mmap-io test.ls)', () => {
  const testSize = 47474
  const testFile = path.join(dir, 'tmp-mmap-file')
  fs.writeFileSync(testFile, '')
  fs.truncateSync(testFile, testSize)

  const fdW = fs.openSync(testFile, 'r+')
  const wBuffer = mmap.map(testSize, mmap.PROT_WRITE, mmap.MAP_SHARED, fdW)
  fs.closeSync(fdW)
  mmap.advise(wBuffer, mmap.MADV_SEQUENTIAL)

  const fdR = fs.openSync(testFile, 'r')
  const rBuffer = mmap.map(testSize, mmap.PROT_READ, mmap.MAP_SHARED, fdR)
  fs.closeSync(fdR)
  mmap.advise(rBuffer, mmap.MADV_SEQUENTIAL)

  const expected = Buffer.alloc(testSize)
  for (let i = 0; i < testSize; i++) {
    const val = 32 + (i % 60)
    wBuffer[i] = val
    expected[i] = val
    assert.equal(rBuffer[i], val)
  }
  // The four sync calls of test.ls.
  mmap.sync(wBuffer, 0, testSize, true, false)
  mmap.sync(wBuffer, true, false)
  mmap.sync(wBuffer, 0, testSize)
  mmap.sync(wBuffer)
  assert.ok(fs.readFileSync(testFile).equals(expected))
  mmap.unmap(wBuffer)
  mmap.unmap(rBuffer)
})

// ---------------------------------------------------------------------------------------------
// incore: [unmappedPages, mappedPages]

test('incore(buf) is [unmappedPages, mappedPages]: untouched anonymous pages are unmapped', () => {
  const pages = 16
  const buf = mmap.map(pages * PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  assert.deepEqual(mmap.incore(buf), [pages, 0])
  buf[0] = 1
  buf[3 * PAGESIZE + 5] = 1
  buf[pages * PAGESIZE - 1] = 1
  assert.deepEqual(mmap.incore(buf), [pages - 3, 3])
  // Returned as a plain two-element Array of numbers.
  const stats = mmap.incore(buf)
  assert.ok(Array.isArray(stats))
  assert.equal(stats.length, 2)
  mmap.unmap(buf)
})

// ---------------------------------------------------------------------------------------------
// Constants and PAGESIZE

test('PAGESIZE is the system page size (getconf PAGESIZE)', {
  skip: process.platform === 'win32' && 'getconf is a POSIX tool: Windows has none',
}, () => {
  const pageSize = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim())
  assert.equal(mmap.PAGESIZE, pageSize)
})

test("the constants have the values mmap-io's typings list (Linux <sys/mman.h>)", (t) => {
  if (process.platform !== 'linux') return t.skip('the numbers are Linux values')
  const expected = {
    PROT_READ: 1,
    PROT_WRITE: 2,
    PROT_EXEC: 4,
    PROT_NONE: 0,
    MAP_SHARED: 1,
    MAP_PRIVATE: 2,
    MAP_NONBLOCK: 65536,
    MAP_POPULATE: 32768,
    MADV_NORMAL: 0,
    MADV_RANDOM: 1,
    MADV_SEQUENTIAL: 2,
    MADV_WILLNEED: 3,
    MADV_DONTNEED: 4,
    MS_ASYNC: 1,
    MS_INVALIDATE: 2,
    MS_SYNC: 4,
  }
  for (const [name, value] of Object.entries(expected)) assert.equal(mmap[name], value, name)
})

test('the constants are read-only: sloppy assignment is silently ignored (as mmap-io test.ls expects)', () => {
  // Code compiled by Function is sloppy-mode, like mmap-io's test.
  const assignSloppy = new Function('mmap', 'mmap.PAGESIZE = 47; return mmap.PAGESIZE')
  assert.equal(assignSloppy(mmap), PAGESIZE)
  assert.throws(() => {
    mmap.PROT_READ = 7
  }, TypeError)
  assert.equal(mmap.PROT_READ, 1)
})

// ---------------------------------------------------------------------------------------------
// The system calls behind each call form (strace)

const TRACED = `
const fs = require('node:fs')
const mmap = require('node-mmap')
const { PAGESIZE } = mmap
const fd = fs.openSync(process.argv[1], 'r+')
const size = fs.fstatSync(fd).size
process.stdout.write(JSON.stringify({ fd, size }))
const buf = mmap.map(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0, mmap.MADV_SEQUENTIAL)
// advise
mmap.advise(buf, mmap.MADV_RANDOM)
mmap.advise(buf, 1, 100, mmap.MADV_WILLNEED)
mmap.advise(buf, PAGESIZE + 5, 10, mmap.MADV_NORMAL)
mmap.advise(buf.subarray(2 * PAGESIZE), mmap.MADV_DONTNEED)
// sync: every form
mmap.sync(buf)
mmap.sync(buf, true)
mmap.sync(buf, true, true)
mmap.sync(buf, 0, size)
mmap.sync(buf, 0, size, true)
mmap.sync(buf, 0, size, true, false)
mmap.sync(buf, 0, 0)
mmap.sync(buf, PAGESIZE + 1)
mmap.sync(buf, PAGESIZE + 1, 10)
mmap.sync(buf, PAGESIZE + 1, 10, false, true)
mmap.sync(buf.subarray(2 * PAGESIZE), true)
mmap.unmap(buf)
`

test('strace: the 6th map argument, advise ranges and every sync form reach the kernel as documented', (t) => {
  const unavailable = straceUnavailable()
  if (unavailable) return t.skip(unavailable)
  const size = 4 * PAGESIZE + 100
  const { file } = randomFile(size)
  const { result, lines } = straceScript(TRACED, 'mmap,madvise,msync', {
    args: [file],
  })
  assertCleanExit(result)
  const { fd } = JSON.parse(result.stdout)

  // mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0) = base
  const mapLine = lines.find((line) =>
    new RegExp(`^mmap\\(NULL, ${size}, PROT_READ\\|PROT_WRITE, MAP_SHARED, ${fd}, 0\\) = (0x[0-9a-f]+)`).test(line),
  )
  assert.ok(mapLine, `no mmap of the file in the trace:\n${lines.filter((l) => l.startsWith('mmap(NULL, ' + size)).join('\n')}`)
  const base = BigInt(/= (0x[0-9a-f]+)/.exec(mapLine)[1])
  const end = base + BigInt(Math.ceil(size / PAGESIZE) * PAGESIZE)

  /** The calls of `syscall` on our range: { offset, length, flags } relative to base. */
  const callsOf = (syscall) =>
    lines
      .map((line) => new RegExp(`^${syscall}\\((0x[0-9a-f]+), (\\d+), ([A-Z_|]+)\\) = 0`).exec(line))
      .filter((m) => m && BigInt(m[1]) >= base && BigInt(m[1]) < end)
      .map((m) => ({ offset: Number(BigInt(m[1]) - base), length: Number(m[2]), flags: m[3] }))

  /**
   * Checks one call against the byte range [offset, offset + length) it was asked for: it starts
   * at the page holding `offset`, covers the range, and reaches into no page past it.
   */
  const covers = (call, offset, length, flags, what) => {
    assert.equal(call.flags, flags, `${what}: flags`)
    assert.equal(call.offset, Math.floor(offset / PAGESIZE) * PAGESIZE, `${what}: start`)
    const callEnd = call.offset + call.length
    assert.ok(callEnd >= offset + length, `${what}: covers the range (${callEnd} < ${offset + length})`)
    assert.ok(callEnd <= Math.ceil((offset + length) / PAGESIZE) * PAGESIZE, `${what}: no page past the range`)
  }

  const advises = callsOf('madvise')
  const expectedAdvise = [
    [0, size, 'MADV_SEQUENTIAL', 'map(..., advise)'],
    [0, size, 'MADV_RANDOM', 'advise(buf, advice)'],
    [1, 100, 'MADV_WILLNEED', 'advise(buf, 1, 100, advice)'],
    [PAGESIZE + 5, 10, 'MADV_NORMAL', 'advise(buf, PAGESIZE + 5, 10, advice)'],
    // A destructive advice covers only the whole pages inside its range (not the last 100 bytes).
    [2 * PAGESIZE, 2 * PAGESIZE, 'MADV_DONTNEED', 'advise(subarray, advice)'],
  ]
  assert.equal(advises.length, expectedAdvise.length, JSON.stringify(advises))
  expectedAdvise.forEach(([offset, length, flags, what], i) => covers(advises[i], offset, length, flags, what))

  const syncs = callsOf('msync')
  const P1 = PAGESIZE + 1
  const expectedSync = [
    [0, size, 'MS_ASYNC', 'sync(buf)'],
    [0, size, 'MS_SYNC', 'sync(buf, true)'],
    [0, size, 'MS_SYNC|MS_INVALIDATE', 'sync(buf, true, true)'],
    [0, size, 'MS_ASYNC', 'sync(buf, 0, size)'],
    [0, size, 'MS_SYNC', 'sync(buf, 0, size, true)'],
    [0, size, 'MS_SYNC', 'sync(buf, 0, size, true, false)'],
    [0, size, 'MS_ASYNC', 'sync(buf, 0, 0): 0 means the whole buffer'],
    [P1, size - P1, 'MS_ASYNC', 'sync(buf, offset): to the end'],
    [P1, 10, 'MS_ASYNC', 'sync(buf, offset, length)'],
    [P1, 10, 'MS_ASYNC|MS_INVALIDATE', 'sync(buf, offset, length, false, true)'],
    [2 * PAGESIZE, size - 2 * PAGESIZE, 'MS_SYNC', 'sync(subarray, true)'],
  ]
  assert.equal(syncs.length, expectedSync.length, JSON.stringify(syncs))
  expectedSync.forEach(([offset, length, flags, what], i) => covers(syncs[i], offset, length, flags, what))
})
