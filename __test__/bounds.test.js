'use strict'
// The overflow edges of the one bounds check (src/js/view.rs, `bounds`/`bounds_named`) through
// every function that takes an offset and a length: advise (4 arguments), sync, flush, lock,
// unlock, protect, and Mapping#read/readInto/write/view/sync/flush/advise/lock/unlock.
//
// Ranges are relative to the view a function is given, so every edge is tried on views that start
// inside the mapping (a subarray from byte 1, a DataView at byte 3, typed arrays at byte 2 and 8),
// where a range one byte too long would still lie inside the mapping: it must be refused all the
// same. The edges: offset = view length (allowed: an empty range), offset = length + 1, length
// one past the rest of the view, offset + length past 2^64 (2^53 - 1 twice; 1 and 2^64), 2^53,
// Number.MAX_VALUE, negative and non-integer numbers. Bad ones are asserted whole: class, code
// and exact message; good ones must succeed and cover the bytes asked for.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const mmap = require('..')
const { tempDir } = require('./helpers.js')

const { Mapping, PAGESIZE: P, PROT_NONE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE, MADV_NORMAL } = mmap
const RW = mmap.PROT_READ | mmap.PROT_WRITE
const L = 3 * P + 5 // not a whole number of pages

const dir = tempDir(test)
const file = path.join(dir, 'data.bin')
fs.writeFileSync(file, Buffer.alloc(L, 0x61))

/**
 * The Received part of Node's ERR_OUT_OF_RANGE: integers beyond 2^32 with `_` every three digits
 * (Node's addNumericalSeparator); other numbers as String() prints them. (Node itself also puts
 * separators into '1.7976931348623157e+308'; node-mmap leaves such a number whole.)
 */
function received(n) {
  const text = String(n)
  if (Number.isInteger(n) && Math.abs(n) > 2 ** 32 && /^-?\d+$/.test(text)) {
    return text.replace(/\B(?=(\d{3})+$)/g, '_')
  }
  return text
}
assert.equal(received(2 ** 64), '18_446_744_073_709_552_000')
assert.equal(received(2 ** 53 - 1), '9_007_199_254_740_991')
assert.equal(received(-(2 ** 40)), '-1_099_511_627_776')
assert.equal(received(Number.MAX_VALUE), '1.7976931348623157e+308')

const outOfRange = (name, max, value) => ({
  name: 'RangeError',
  code: 'ERR_OUT_OF_RANGE',
  message: `The value of "${name}" is out of range. It must be >= 0 && <= ${max}. Received ${received(value)}`,
})
const notInteger = (name, value) => ({
  name: 'RangeError',
  code: 'ERR_OUT_OF_RANGE',
  message: `The value of "${name}" is out of range. It must be an integer. Received ${received(value)}`,
})

/**
 * The edges for a view of `V` bytes: `{ offset, length, bytes }` (good: the range has `bytes`
 * bytes) or `{ offset, length, error(names) }` (bad). `undefined` means the argument is left out.
 */
function edges(V) {
  const list = []
  const good = (offset, length, bytes, why) => list.push({ offset, length, bytes, why })
  const badOffset = (offset, length, why) =>
    list.push({ offset, length, why, error: (n) => outOfRange(n.offset, V, offset) })
  const badLength = (offset, length, why) =>
    list.push({ offset, length, why, error: (n) => outOfRange(n.length, V - offset, length) })
  const fraction = (offset, length, which, why) =>
    list.push({ offset, length, why, error: (n) => notInteger(n[which], which === 'offset' ? offset : length) })

  good(V, undefined, 0, 'offset = view length, no length: an empty range at the end')
  good(V, 0, 0, 'offset = view length, length 0')
  good(0, V, V, 'the whole view')
  good(0, undefined, V, 'offset 0, no length: the whole view')
  good(-0, V, V, '-0 is 0')
  if (V > 0) good(V - 1, 1, 1, 'the last byte')
  if (V > 1) good(1, V - 1, V - 1, 'from byte 1 to the end')

  badOffset(V + 1, undefined, 'offset = view length + 1')
  badOffset(V + 1, 0, 'offset = view length + 1, length 0')
  badLength(0, V + 1, 'length = view length + 1')
  if (V > 0) badLength(1, V, 'offset 1, length = view length: one past the rest')
  badLength(V, 1, 'one byte past the end')
  badOffset(2 ** 53 - 1, 2 ** 53 - 1, 'offset + length = 2^54 - 2')
  badLength(0, 2 ** 53 - 1, 'length 2^53 - 1')
  if (V > 0) badLength(1, 2 ** 64, 'offset 1, length 2^64: the sum wraps a u64')
  badLength(V, 2 ** 64, 'offset = view length, length 2^64')
  badOffset(2 ** 53, 0, 'offset 2^53')
  badLength(0, 2 ** 53, 'length 2^53')
  badOffset(2 ** 64, 0, 'offset 2^64')
  badOffset(Number.MAX_VALUE, 0, 'offset Number.MAX_VALUE')
  badLength(0, Number.MAX_VALUE, 'length Number.MAX_VALUE')
  badOffset(-1, 0, 'offset -1')
  badLength(0, -1, 'length -1')
  fraction(1.5, 0, 'offset', 'offset 1.5')
  fraction(0, 0.5, 'length', 'length 0.5')
  fraction(0, NaN, 'length', 'length NaN')
  fraction(Infinity, 0, 'offset', 'offset Infinity')
  fraction(0, -Infinity, 'length', 'length -Infinity')
  return list
}

/** Asserts that `fn` throws exactly `expected`, of exactly that class. */
function assertThrowsExactly(fn, expected, label) {
  let error
  try {
    fn()
  } catch (err) {
    error = err
  }
  assertErrorExactly(error, expected, label)
}

function assertErrorExactly(error, expected, label) {
  assert.ok(error instanceof Error, `${label}: did not throw (or threw a non-Error)`)
  assert.equal(Object.getPrototypeOf(error), globalThis[expected.name].prototype, `${label}: ${error.name}`)
  assert.equal(error.code, expected.code, `${label}: code`)
  assert.equal(error.message, expected.message, `${label}: message`)
}

const show = (n) => (n === undefined ? 'undefined' : Object.is(n, -0) ? '-0' : String(n))

// ---------------------------------------------------------------------------------------------
// Module functions, on views of a mapping

/** The views every module function is tried on: `[label, view, its length in bytes]`. */
function views(buf) {
  return [
    ['the Buffer', buf, L],
    ['buf.subarray(1)', buf.subarray(1), L - 1],
    ['buf.subarray(1, L - 1)', buf.subarray(1, L - 1), L - 2],
    ['buf.subarray(P + 3, 2 * P)', buf.subarray(P + 3, 2 * P), P - 3],
    ['new DataView(buf.buffer, 3, 101)', new DataView(buf.buffer, 3, 101), 101],
    ['new Uint16Array(buf.buffer, 2, 50)', new Uint16Array(buf.buffer, 2, 50), 100],
    ['new Float64Array(buf.buffer, 8, 10)', new Float64Array(buf.buffer, 8, 10), 80],
    ['buf.buffer', buf.buffer, L],
    ['buf.subarray(L): empty, at the end', buf.subarray(L), 0],
  ]
}

const PLAIN = { offset: 'offset', length: 'length' }
const OPTIONS = { offset: 'options.offset', length: 'options.length' }

const moduleFunctions = [
  ['advise(view, offset, length, MADV_NORMAL)', (v, o, l) => mmap.advise(v, o, l, MADV_NORMAL), PLAIN],
  ['sync(view, offset, length)', (v, o, l) => mmap.sync(v, o, l), PLAIN],
  ['flush(view, { offset, length })', (v, o, l) => mmap.flush(v, { offset: o, length: l }), OPTIONS],
  ['lock(view, offset, length)', (v, o, l) => mmap.lock(v, o, l), PLAIN],
  ['unlock(view, offset, length)', (v, o, l) => mmap.unlock(v, o, l), PLAIN],
  // The view's own protection: a good range changes nothing it could later trip over.
  ['protect(view, offset, length, PROT_READ | PROT_WRITE)', (v, o, l) => mmap.protect(v, o, l, RW), PLAIN],
]

for (const [name, call, names] of moduleFunctions) {
  test(`${name}: the edges of the range, on views at odd offsets`, async () => {
    const buf = mmap.openSync(file, { mode: 'r+' })
    assert.equal(buf.length, L)
    try {
      for (const [label, view, V] of views(buf)) {
        assert.equal(view.byteLength, V, label)
        for (const edge of edges(V)) {
          const what = `${name} on ${label} (${V} bytes), offset ${show(edge.offset)}, length ${show(edge.length)}: ${edge.why}`
          let result
          let error
          try {
            result = call(view, edge.offset, edge.length)
            if (result instanceof Promise) result = await result
          } catch (err) {
            error = err
          }
          if (edge.error) assertErrorExactly(error, edge.error(names), what)
          else {
            assert.equal(error, undefined, `${what}: threw ${error}`)
            assert.equal(result, undefined, what)
          }
        }
      }
    } finally {
      mmap.unlock(buf)
      mmap.unmap(buf)
    }
  })
}

test('sync(): offset 0 and length 0 mean the whole view, and go through the same check', () => {
  const buf = mmap.openSync(file, { mode: 'r+' })
  const view = buf.subarray(1)
  const V = L - 1
  mmap.sync(view, 0, 0)
  mmap.sync(view, V, 0)
  assertThrowsExactly(() => mmap.sync(view, 0, V + 1), outOfRange('length', V, V + 1), 'offset 0, length V + 1')
  assertThrowsExactly(() => mmap.sync(view, V + 1, 0), outOfRange('offset', V, V + 1), 'offset V + 1, length 0')
  mmap.unmap(buf)
})

// ---------------------------------------------------------------------------------------------
// Mapping methods: ranges are bytes from the start of the Mapping (which may itself start at
// an odd byte of its file, as Mapping.open(file, { offset: 5 }) does)

const HUGE_LOG2 = process.platform === 'win32' ? 33 : 40

/** `[label, make(), its length]`; `roomy` false: only empty good ranges are run (no memory). */
const handles = [
  ['new Mapping(L, RW, MAP_PRIVATE | MAP_ANONYMOUS)', () => new Mapping(L, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1), L, true],
  ["Mapping.open(file, { mode: 'r+', offset: 5 })", () => Mapping.open(file, { mode: 'r+', offset: 5 }), L - 5, true],
  // 1 TiB of address space (PROT_NONE, no memory behind it): lengths above 2^32. Only the
  // empty good ranges are run on it: reading it would be refused, locking it is not for a test.
  // On Windows 8 GiB, still above 2^32: an anonymous section is committed whole there
  // (MAP_NORESERVE is 0, README), and 1 TiB is more than the pagefile gives (ENOMEM).
  [
    `new Mapping(2 ** ${HUGE_LOG2}, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)`,
    () => new Mapping(2 ** HUGE_LOG2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1),
    2 ** HUGE_LOG2,
    false,
  ],
]

const TARGET = 100 // bytes of the Buffer that readInto/write copy into/from

const methods = [
  ['read(offset, length)', (m, o, l) => m.read(o, l), PLAIN, (r, bytes) => Buffer.isBuffer(r) && r.length === bytes],
  ['view(offset, length)', (m, o, l) => m.view(o, l), PLAIN, (r, bytes) => Buffer.isBuffer(r) && r.length === bytes],
  ['sync(offset, length)', (m, o, l) => m.sync(o, l), PLAIN, (r) => r === undefined],
  ['flush({ offset, length })', (m, o, l) => m.flush({ offset: o, length: l }), OPTIONS, (r) => r === undefined],
  ['advise(offset, length, MADV_NORMAL)', (m, o, l) => m.advise(o, l, MADV_NORMAL), PLAIN, (r) => r === undefined],
  ['lock(offset, length)', (m, o, l) => m.lock(o, l), PLAIN, (r) => r === undefined],
  ['unlock(offset, length)', (m, o, l) => m.unlock(o, l), PLAIN, (r) => r === undefined],
]
// readInto and write take an offset only; they copy as many bytes as fit.
const offsetMethods = [
  ['readInto(Buffer.alloc(100), offset)', (m, o) => m.readInto(Buffer.alloc(TARGET), o)],
  ['write(Buffer.alloc(100), offset)', (m, o) => m.write(Buffer.alloc(TARGET, 0x62), o)],
]

for (const [label, make, M, roomy] of handles) {
  for (const [name, call, names, isResult] of methods) {
    test(`Mapping#${name} on ${label}: the edges of the range`, async () => {
      const m = make()
      assert.equal(m.length, M)
      try {
        for (const edge of edges(M)) {
          if (!edge.error && !roomy && edge.bytes > 0) continue
          const what = `${name}, offset ${show(edge.offset)}, length ${show(edge.length)}: ${edge.why}`
          let result
          let error
          try {
            result = call(m, edge.offset, edge.length)
            if (result instanceof Promise) result = await result
          } catch (err) {
            error = err
          }
          if (edge.error) assertErrorExactly(error, edge.error(names), what)
          else {
            assert.equal(error, undefined, `${what}: threw ${error}`)
            assert.ok(isResult(result, edge.bytes), `${what}: returned ${result}`)
          }
        }
      } finally {
        m.unmap()
      }
    })
  }
  for (const [name, call] of offsetMethods) {
    test(`Mapping#${name} on ${label}: the edges of the offset`, () => {
      const m = make()
      try {
        for (const edge of edges(M)) {
          if (edge.length !== undefined) continue
          if (!edge.error && !roomy && edge.bytes > 0) continue
          const what = `${name}, offset ${show(edge.offset)}: ${edge.why}`
          if (edge.error) {
            assertThrowsExactly(() => call(m, edge.offset), edge.error(PLAIN), what)
          } else {
            assert.equal(call(m, edge.offset), Math.min(edge.bytes, TARGET), what)
          }
        }
        // And just past the end, with a target longer than what is left.
        if (roomy) assert.equal(call(m, M - 1), 1, `${name}, offset ${M - 1}`)
        assertThrowsExactly(() => call(m, M + 1), outOfRange('offset', M, M + 1), `${name}, offset ${M + 1}`)
      } finally {
        m.unmap()
      }
    })
  }
}

test('a good range reaches the bytes it names, relative to the view (read back through fs)', () => {
  // The oracle is the file itself: write through the module's view-relative ranges with the
  // Mapping's write at the edges, then read the file.
  const m = Mapping.open(file, { mode: 'r+', offset: 5 })
  assert.equal(m.write(Buffer.from('Z'), m.length - 1), 1)
  assert.equal(m.write(Buffer.from('Y'), 0), 1)
  assert.equal(m.write(Buffer.from('X'), m.length), 0)
  m.sync(0, m.length, true)
  m.unmap()
  const bytes = fs.readFileSync(file)
  assert.equal(bytes.length, L)
  assert.equal(String.fromCharCode(bytes[5], bytes[L - 1], bytes[4]), 'YZa')
})
