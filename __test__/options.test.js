'use strict'
// Options arguments: every export that takes an options object (openSync, open, Mapping.open,
// flush, Mapping#flush) accepts undefined, null, an object literal, a null-prototype object and
// a class instance, and refuses what only looks like an object (an array, a boxed string, a
// TypedArray, a DataView, an ArrayBuffer) or is a function, with Node's own ERR_INVALID_ARG_TYPE
// as validateObject words it. The oracle for "the options were read" is the file itself.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const mmap = require('..')
const { tempDir, randomFileIn, assertThrowsExactly, assertRejectsExactly } = require('./helpers.js')

const dir = tempDir(test)
let serial = 0

/** Each export that takes options, as (file, options) -> Promise (a throw becomes a rejection). */
const EXPORTS = [
  ['openSync', (file, options) => Promise.resolve().then(() => mmap.openSync(file, options))],
  ['open', (file, options) => mmap.open(file, options)],
  ['Mapping.open', (file, options) => Promise.resolve().then(() => mmap.Mapping.open(file, options))],
  [
    'flush',
    async (file, options) => {
      const buf = mmap.openSync(file, { mode: 'r+' })
      try {
        return await mmap.flush(buf, options)
      } finally {
        mmap.unmap(buf)
      }
    },
  ],
  [
    'Mapping#flush',
    async (file, options) => {
      const handle = mmap.Mapping.open(file, { mode: 'r+' })
      try {
        return await handle.flush(options)
      } finally {
        handle.unmap()
      }
    },
  ],
]

/** Things of type object (or function) that are not options, and how Node names them. */
const NOT_OPTIONS = [
  [() => [], 'an instance of Array'],
  [() => [1, 2], 'an instance of Array'],
  [() => new String('x'), 'an instance of String'],
  [() => new Number(1), 'an instance of Number'],
  [() => new Boolean(false), 'an instance of Boolean'],
  [() => Object(Symbol('s')), 'an instance of Symbol'],
  [() => Object(1n), 'an instance of BigInt'],
  [() => new Uint8Array(1), 'an instance of Uint8Array'],
  [() => Buffer.alloc(4), 'an instance of Buffer'],
  [() => new Float64Array(2), 'an instance of Float64Array'],
  [() => new DataView(new ArrayBuffer(8)), 'an instance of DataView'],
  [() => new ArrayBuffer(8), 'an instance of ArrayBuffer'],
  [() => new SharedArrayBuffer(8), 'an instance of SharedArrayBuffer'],
  [() => Object.create(Array.prototype), 'an instance of Array'],
  [() => Object.create(DataView.prototype), 'an instance of DataView'],
  // Its inherited `length` (2) read as options.length mapped 2 bytes (attack pass 18b).
  [() => Object.create(function (a, b) {}), 'an instance of Function'],
  // Its own `length` (0) read as options.length mapped 0 bytes (attack pass 18c).
  [() => (function () { return arguments })(), 'an instance of Object'],
  [() => function options() {}, 'function options'],
  [() => () => {}, 'function '],
  // From another realm (a vm context, an iframe in Electron), which `instanceof` this realm's
  // constructors misses: boxed primitives and SharedArrayBuffers were read as empty options,
  // Object.create(Array.prototype) mapped 0 bytes (attack pass 18).
  ...[
    ['new String("r+")', 'String'],
    ['new Number(5)', 'Number'],
    ['new Boolean(false)', 'Boolean'],
    ['Object(Symbol("s"))', 'Symbol'],
    ['Object(1n)', 'BigInt'],
    ['new ArrayBuffer(8)', 'ArrayBuffer'],
    ['new SharedArrayBuffer(8)', 'SharedArrayBuffer'],
    ['Object.create(Array.prototype)', 'Array'],
    ['Object.create(DataView.prototype)', 'DataView'],
    ['Object.create(ArrayBuffer.prototype)', 'ArrayBuffer'],
    ['new Proxy([], {})', 'Array'],
  ].map(([source, name]) => [() => require('node:vm').runInNewContext(source), `an instance of ${name}`]),
]

for (const [name, call] of EXPORTS) {
  test(`${name}: arrays, boxed primitives, ArrayBuffers and their views, functions are ERR_INVALID_ARG_TYPE`, async () => {
    const { file, bytes } = randomFileIn(dir, `refused-${++serial}.bin`, 3000)
    for (const [make, received] of NOT_OPTIONS) {
      await assertRejectsExactly(call(file, make()), TypeError, {
        code: 'ERR_INVALID_ARG_TYPE',
        message: `The "options" argument must be of type object. Received ${received}`,
      })
    }
    assert.ok(fs.readFileSync(file).equals(bytes), 'the file is unchanged')
  })

  test(`${name}: undefined, null, {}, a null-prototype object and a class instance are accepted`, async () => {
    const { file } = randomFileIn(dir, `accepted-${++serial}.bin`, 3000)
    class Options {}
    const other = require('node:vm').runInNewContext('[{}, Object.create(null), new (class Options {})()]')
    for (const options of [undefined, null, {}, Object.create(null), new Options(), ...other]) {
      await call(file, options)
    }
  })
}

test('a null-prototype object is read: its options take effect', () => {
  const { file, bytes } = randomFileIn(dir, `null-proto-${++serial}.bin`, 3000)
  const options = Object.assign(Object.create(null), { offset: 10, length: 20 })
  const buf = mmap.openSync(file, options)
  assert.ok(buf.equals(bytes.subarray(10, 30)))
  mmap.unmap(buf)
  const handle = mmap.Mapping.open(file, options)
  assert.ok(handle.read().equals(bytes.subarray(10, 30)))
  handle.unmap()
})

test('an array with option-named properties is still refused (it used to map 0 bytes or flush nothing)', async () => {
  const { file } = randomFileIn(dir, `array-${++serial}.bin`, 3000)
  const array = Object.assign([], { length: 0 })
  assertThrowsExactly(() => mmap.openSync(file, array), TypeError, { code: 'ERR_INVALID_ARG_TYPE' })
  const buf = mmap.openSync(file, { mode: 'r+' })
  await assertRejectsExactly(mmap.flush(buf, []), TypeError, {
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'The "options" argument must be of type object. Received an instance of Array',
  })
  mmap.unmap(buf)
})
