'use strict'
// The heavy loop of fuzz.test.js, run in a child process so that a crash (a signal) fails the
// test instead of killing the test runner. Not a test file itself: node --test only runs
// `__test__/*.test.js`.
//
// fast-check draws sequences of calls to every export of node-mmap, every `Mapping` method and
// getter, with random arguments: wrong types, NaN, -0, Infinity, huge and fractional numbers,
// 2^53, 2^64, bigints, symbols, objects whose valueOf/toString/getters throw, Proxies, arrays,
// detached and unmapped buffers, views at odd offsets of real mappings, other ArrayBuffers, and
// valid values. Each run starts from a fresh pool of real mappings (anonymous memory and a temp
// file), which the calls use, unmap, remap, grow and protect. Properties, for every call:
//   * the process does not crash (the parent sees the signal);
//   * a throw, or a rejection of a returned Promise, is a TypeError, RangeError or Error with a
//     non-empty string `code` (system errors also with a negative `errno` and a `syscall`), or
//     the very error one of our own hostile values threw (a getter, a Proxy trap, or V8's
//     TypeError for a revoked Proxy);
//   * a call that succeeds returns what README documents (shape and, where the arguments pin it,
//     length), and unmap/remap leave every view of the mapping they release at its length,
//     reading zeros;
//   * Node's own consumers of Buffers (zlib one-shot and streams, crypto.randomFill, fs.write,
//     fs.read, a loopback socket's write), given pool memory and now and then left in flight
//     while the next call unmaps, remaps, advises or locks it, finish with the view's full length;
//   * workers that map, open, view and unmap in a loop, terminated at random moments, end.
// FUZZ_NEAR_LIMIT=1 first fills the process with kernel mappings up to the guard (fillToTheLimit).
// The file the pool maps holds random bytes (from the seed), as users' data does.
//
// Before each call its description is written to FUZZ_LAST_FILE (at offset 0), so the parent
// can name the call that was running when the process died. Environment:
//   FUZZ_SEED   fast-check seed (the parent passes its default)   FUZZ_RUNS, FUZZ_CALLS  sizes
//   FUZZ_PATH   replay one failing run (the path fast-check prints) FUZZ_SHRINK=1  shrink failures
//   FUZZ_TRACE=1  every call on stderr                              FUZZ_TMPDIR  where files go
// The last line on stdout is a JSON summary (calls, time, error codes per function, ...).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { types } = require('node:util')
const fc = require('fast-check')

const mmap = require('../..')

const { Mapping, PAGESIZE: P } = mmap
const { PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC } = mmap
const { MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS: ANON } = mmap
const RW = PROT_READ | PROT_WRITE

/**
 * Mappings above this size are never kept in the pool nor touched: the fuzz must not commit
 * real memory (as root, mlock has no limit) nor read gigabytes of zero pages.
 */
const BIG = 1 << 20
/** At most this many mappings made by the fuzz itself are kept; older ones are unmapped. */
const MAX_KEPT = 20

const SEED = Number(process.env.FUZZ_SEED ?? 1)
const RUNS = Number(process.env.FUZZ_RUNS ?? 1000)
const CALLS = Number(process.env.FUZZ_CALLS ?? 100)
const REPLAY_PATH = process.env.FUZZ_PATH || undefined
const SHRINK = process.env.FUZZ_SHRINK === '1'
const TRACE = process.env.FUZZ_TRACE === '1'

// ---------------------------------------------------------------------------------------------
// Files and descriptors

/** `n` pseudo-random bytes from `seed` (xorshift32): random data that a replay sees again. */
function seededBytes(n, seed) {
  const out = Buffer.alloc(n)
  let x = (seed >>> 0) || 0x9e3779b9
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

function scratchRoot() {
  if (process.env.FUZZ_TMPDIR) return process.env.FUZZ_TMPDIR
  // tmpfs: msync(MS_SYNC) there costs nothing, on a disk it waits for the write-back.
  try {
    fs.accessSync('/dev/shm', fs.constants.W_OK)
    return '/dev/shm'
  } catch {
    return os.tmpdir()
  }
}

const DIR = fs.mkdtempSync(path.join(scratchRoot(), 'node-mmap-fuzz-'))
process.on('exit', () => fs.rmSync(DIR, { recursive: true, force: true }))
// Relative paths (random strings) land in DIR.
process.chdir(DIR)

const lastFd = process.env.FUZZ_LAST_FILE ? fs.openSync(process.env.FUZZ_LAST_FILE, 'w') : -1
let lastLength = 0
/** Records what is about to run, so the parent can tell which call a crash interrupted. */
function note(text) {
  if (TRACE) process.stderr.write(text + '\n')
  if (lastFd < 0) return
  const padded = text.padEnd(lastLength)
  lastLength = text.length
  fs.writeSync(lastFd, padded, 0)
}

/** The pool's file. Never truncated and never opened 'w+' (guards below); grows to <= BIG. */
const FILE = path.join(DIR, 'data.bin')
const FILE_LEN = 3 * P + 123
// Random bytes, as users' data is (incompressible, every value), repeatable from the seed.
fs.writeFileSync(FILE, seededBytes(FILE_LEN, SEED))
/** Stays empty: writable modes on it are sent to SCRATCH. */
const EMPTY = path.join(DIR, 'empty.bin')
fs.writeFileSync(EMPTY, '')
/** Where 'w+' and growing opens go; whatever maps it is unmapped at once, untouched. */
const SCRATCH = path.join(DIR, 'scratch.bin')
/** Where sizes above BIG go (a sparse file); its mappings are unmapped at once, untouched. */
const HUGE = path.join(DIR, 'huge.bin')

const fdRead = fs.openSync(FILE, 'r')
const fdWrite = fs.openSync(FILE, 'r+')
const fdDir = fs.openSync(DIR, 'r')
const fdEmpty = fs.openSync(EMPTY, 'r')
const fdClosed = fs.openSync(EMPTY, 'r')
fs.closeSync(fdClosed)

const WASM = new WebAssembly.Memory({ initial: 1, maximum: 2 })

// ---------------------------------------------------------------------------------------------
// Arguments: descriptors that fast-check draws and shrinks, materialized at call time (the pool
// changes as calls run). `show` is how the call log prints them.

class Arg {
  constructor(show, make) {
    this.show = show
    this.make = make
  }
  [fc.toStringMethod]() {
    return this.show
  }
}
const lit = (show, value) => new Arg(show, () => value)
const fresh = (show, make) => new Arg(show, make)

/** Errors our own hostile values throw: a call may pass them through unchanged. */
class HostileError extends Error {
  constructor(what) {
    super(`thrown by a fuzz value (${what})`)
    this.code = 'ERR_FUZZ_HOSTILE'
  }
}
const thrower = (what) => () => {
  throw new HostileError(what)
}

/** Calls of valueOf/toString/Symbol.toPrimitive by the library, per function (see the summary). */
const coercions = {}
let currentOp = '(setup)'
function coerce(result, what) {
  return function () {
    coercions[currentOp] = (coercions[currentOp] ?? 0) + 1
    if (result === thrower) throw new HostileError(what)
    return result
  }
}

const fmtNum = (n) => (Object.is(n, -0) ? '-0' : String(n))

const EDGE_NUMBERS = [
  0, -0, 1, -1, 0.5, 1.5, -1.5, 1e-300, Number.MIN_VALUE, Number.EPSILON, NaN, Infinity, -Infinity,
  P - 1, P, P + 1, 2 * P, 3 * P, FILE_LEN, FILE_LEN + 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32,
  2 ** 32 + 1, 2 ** 52, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 2 ** 64, 2 ** 64 + 2 ** 12, 1e21,
  1e308, Number.MAX_VALUE, -(2 ** 31), -(2 ** 53), -(2 ** 64), -Number.MAX_VALUE,
]

const THROWING_TRAPS = {}
for (const trap of [
  'get', 'set', 'has', 'ownKeys', 'getOwnPropertyDescriptor', 'getPrototypeOf', 'defineProperty',
  'deleteProperty', 'isExtensible', 'preventExtensions', 'setPrototypeOf', 'apply', 'construct',
]) {
  THROWING_TRAPS[trap] = thrower(`Proxy ${trap} trap`)
}

/** Values of every JS type and then some; each `make` builds a fresh one. */
const HOSTILE = [
  lit('undefined', undefined),
  lit('null', null),
  lit('true', true),
  lit('false', false),
  ...EDGE_NUMBERS.map((n) => lit(fmtNum(n), n)),
  ...[0n, 1n, -1n, 4096n, 2n ** 64n, -(2n ** 63n)].map((b) => lit(`${b}n`, b)),
  ...['', '0', '4096', '-1', 'r', 'r+', 'w+', 'NaN', '\0', 'ä'].map((s) => lit(JSON.stringify(s), s)),
  lit('Symbol(fuzz)', Symbol('fuzz')),
  lit('Symbol()', Symbol()),
  lit('Symbol.iterator', Symbol.iterator),
  fresh('() => {}', () => () => {}),
  fresh('function named() {}', () => function named() {}),
  fresh('class Klass {}', () => class Klass {}),
  fresh('async () => {}', () => async () => {}),
  fresh('{}', () => ({})),
  fresh('[]', () => []),
  fresh('[4096]', () => [4096]),
  fresh('[[]]', () => [[]]),
  fresh('Object.create(null)', () => Object.create(null)),
  fresh('{ valueOf: () => 4096 }', () => ({ valueOf: coerce(4096) })),
  fresh("{ toString: () => 'r' }", () => ({ toString: coerce('r') })),
  fresh('{ [Symbol.toPrimitive]: () => 1 }', () => ({ [Symbol.toPrimitive]: coerce(1) })),
  fresh('{ valueOf() { throw } }', () => ({ valueOf: coerce(thrower, 'valueOf') })),
  fresh('{ toString() { throw } }', () => ({ toString: coerce(thrower, 'toString') })),
  fresh('{ [Symbol.toPrimitive]() { throw } }', () => ({
    [Symbol.toPrimitive]: coerce(thrower, 'toPrimitive'),
  })),
  fresh('{ get constructor() { throw } }', () => ({
    get constructor() {
      throw new HostileError('constructor getter')
    },
  })),
  fresh('new (class { static get name() { throw } })()', () => {
    class Nameless {
      static get name() {
        throw new HostileError('name getter')
      }
    }
    return new Nameless()
  }),
  fresh('new Proxy({}, <every trap throws>)', () => new Proxy({}, THROWING_TRAPS)),
  fresh('new Proxy(function () {}, <every trap throws>)', () => new Proxy(function () {}, THROWING_TRAPS)),
  fresh('<a revoked Proxy>', (st) => {
    const { proxy, revoke } = Proxy.revocable({}, {})
    revoke()
    st.revoked = true
    return proxy
  }),
  fresh('new Proxy(Buffer.alloc(8), {})', () => new Proxy(Buffer.alloc(8), {})),
  fresh('new Number(4096)', () => new Number(4096)),
  fresh("new String('r')", () => new String('r')),
  fresh('new Boolean(true)', () => new Boolean(true)),
  fresh('new Date(0)', () => new Date(0)),
  fresh('/re/g', () => /re/g),
  fresh("new Error('plain')", () => new Error('plain')),
  fresh('Promise.resolve(1)', () => Promise.resolve(1)),
  fresh('new Map()', () => new Map()),
  fresh('new WeakRef({})', () => new WeakRef({})),
  fresh('{ length: 4096, byteLength: 4096, buffer: new ArrayBuffer(8) }', () => ({
    length: 4096,
    byteLength: 4096,
    buffer: new ArrayBuffer(8),
  })),
  fresh('Object.setPrototypeOf({}, Buffer.prototype)', () => Object.setPrototypeOf({}, Buffer.prototype)),
  fresh('Object.create(Mapping.prototype)', () => Object.create(Mapping.prototype)),
  lit('globalThis', globalThis),
  lit('mmap', mmap),
  lit('Mapping', Mapping),
]

/** ArrayBuffers and views that node-mmap did not map. */
function detachedArrayBuffer() {
  return detachedView(ArrayBuffer)
}
/** A view made over an ArrayBuffer that is then detached (or the ArrayBuffer itself). */
function detachedView(Ctor, ...rest) {
  const ab = new ArrayBuffer(8)
  const view = Ctor === ArrayBuffer ? ab : new Ctor(ab, ...rest)
  structuredClone(ab, { transfer: [ab] })
  return view
}
const FOREIGN = [
  fresh('Buffer.alloc(16)', () => Buffer.alloc(16)),
  fresh('Buffer.alloc(0)', () => Buffer.alloc(0)),
  fresh("Buffer.from('fuzz-pooled').subarray(3)", () => Buffer.from('fuzz-pooled').subarray(3)),
  fresh('Buffer.allocUnsafeSlow(5)', () => Buffer.allocUnsafeSlow(5).fill(1)),
  fresh('new Uint8Array(7)', () => new Uint8Array(7)),
  fresh('new Float64Array(3)', () => new Float64Array(3)),
  fresh('new BigUint64Array(2)', () => new BigUint64Array(2)),
  fresh('new DataView(new ArrayBuffer(9), 1, 7)', () => new DataView(new ArrayBuffer(9), 1, 7)),
  fresh('new ArrayBuffer(33)', () => new ArrayBuffer(33)),
  fresh('new ArrayBuffer(0)', () => new ArrayBuffer(0)),
  fresh('new SharedArrayBuffer(64)', () => new SharedArrayBuffer(64)),
  fresh('new Int32Array(new SharedArrayBuffer(64), 4, 3)', () => new Int32Array(new SharedArrayBuffer(64), 4, 3)),
  fresh('wasmMemory.buffer', () => WASM.buffer),
  fresh('new Uint8Array(wasmMemory.buffer, 101, 5)', () => new Uint8Array(WASM.buffer, 101, 5)),
  fresh('new DataView(wasmMemory.buffer, 3, 10)', () => new DataView(WASM.buffer, 3, 10)),
  fresh('<a detached ArrayBuffer>', detachedArrayBuffer),
  fresh('<a Uint16Array over a detached ArrayBuffer>', () => detachedView(Uint16Array, 2, 1)),
  fresh('<a DataView over a detached ArrayBuffer>', () => detachedView(DataView, 1, 3)),
]
// Float16Array (Node 24): 2 bytes per element, which a bug once took for 1 (the test
// 'a Float16Array is 2 bytes per element ...' in fuzz.test.js).
if (typeof Float16Array === 'function') {
  FOREIGN.push(fresh('new Float16Array(5)', () => new Float16Array(5)))
}
// Resizable and growable buffers (Node 20+).
if (typeof ArrayBuffer.prototype.resize === 'function') {
  FOREIGN.push(
    fresh('new SharedArrayBuffer(8, { maxByteLength: 64 })', () => new SharedArrayBuffer(8, { maxByteLength: 64 })),
    fresh('new ArrayBuffer(8, { maxByteLength: 64 })', () => new ArrayBuffer(8, { maxByteLength: 64 })),
    fresh('<a length-tracking Uint8Array over a resizable ArrayBuffer>', () => {
      return new Uint8Array(new ArrayBuffer(8, { maxByteLength: 64 }), 1)
    }),
    fresh('<a Uint8Array out of bounds of its shrunk ArrayBuffer>', () => {
      const ab = new ArrayBuffer(16, { maxByteLength: 16 })
      const view = new Uint8Array(ab, 8, 4)
      ab.resize(4)
      return view
    }),
  )
}

const num = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...EDGE_NUMBERS) },
  { weight: 3, arbitrary: fc.integer({ min: -3, max: 4 * P + 200 }) },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 2, arbitrary: fc.double() },
)
const numArg = num.map((n) => lit(fmtNum(n), n))
const bigintArg = fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((b) => lit(`${b}n`, b))
const stringArg = fc.string({ maxLength: 8 }).map((s) => lit(JSON.stringify(s), s))
const boolArg = fc.boolean().map((b) => lit(String(b), b))

const VIEW_KINDS = [
  'buf', 'sub', 'sub1', 'tail', 'ab', 'u8', 'i8', 'u8c', 'u16', 'i32', 'f32', 'f64', 'big64', 'dv',
  'dvOdd', 'kept', 'handle',
]
/** A view of a pool mapping (live or already unmapped), picked when the call runs. */
const poolArg = fc
  .record({ e: fc.nat(63), kind: fc.constantFrom(...VIEW_KINDS), a: fc.nat(1 << 16), b: fc.nat(1 << 16) })
  .map((r) => {
    const arg = new Arg(`pool[${r.e}].${r.kind}(${r.a}, ${r.b})`, (st) => {
      const { value, show } = st.view(r)
      st.shown.set(arg, show)
      return value
    })
    return arg
  })

const FD = [
  lit('fdRead', fdRead),
  lit('fdWrite', fdWrite),
  lit('fdDir', fdDir),
  lit('fdEmpty', fdEmpty),
  lit('fdClosed', fdClosed),
  lit('-1', -1),
  lit('0', 0),
  lit('1', 1),
  lit('2', 2),
  lit('2 ** 31 - 1', 2 ** 31 - 1),
  lit('1e6', 1e6),
]
const PATHS = [
  lit('FILE', FILE),
  fresh('Buffer.from(FILE)', () => Buffer.from(FILE)),
  fresh('new Uint8Array(Buffer.from(FILE))', () => new Uint8Array(Buffer.from(FILE))),
  fresh("Buffer.from(FILE).subarray(0, 4)  /* '/dev' or '/tmp' */", () => Buffer.from(FILE).subarray(0, 4)),
  lit("FILE + '\\0x'", FILE + '\0x'),
  lit("''", ''),
  lit('DIR', DIR),
  lit("'missing/x'", 'missing/x'),
  lit('SCRATCH', SCRATCH),
  lit('HUGE', HUGE),
  lit('EMPTY', EMPTY),
  lit("'/dev/null'", '/dev/null'),
  lit("'/dev/zero'", '/dev/zero'),
  lit("'x'.repeat(5000)", 'x'.repeat(5000)),
  lit("'relative.bin'", 'relative.bin'),
  fresh('new Uint16Array(4)', () => new Uint16Array(4)),
  fresh('<a detached Uint8Array>', () => detachedView(Uint8Array, 1)),
]

const hostileArg = fc.constantFrom(...HOSTILE)
const foreignArg = fc.constantFrom(...FOREIGN)
const fdArg = fc.constantFrom(...FD)
const pathArg = fc.constantFrom(...PATHS)

/** Any value: what every parameter gets now and then. */
const anyLeaf = fc.oneof(
  { weight: 6, arbitrary: hostileArg },
  { weight: 3, arbitrary: numArg },
  { weight: 1, arbitrary: bigintArg },
  { weight: 1, arbitrary: stringArg },
  { weight: 4, arbitrary: poolArg },
  { weight: 2, arbitrary: foreignArg },
  { weight: 1, arbitrary: fdArg },
  { weight: 1, arbitrary: pathArg },
)

/** Mostly `arb`, sometimes anything. */
const typed = (arb, weight = 4) => fc.oneof({ weight, arbitrary: arb }, { weight: 1, arbitrary: anyLeaf })

const named = (pairs) => pairs.filter(([, value]) => value !== 0 || pairs.length === 1)
const PROT_NAMES = named([
  ['PROT_READ', PROT_READ],
  ['PROT_WRITE', PROT_WRITE],
  ['PROT_EXEC', PROT_EXEC],
])
const protArg = fc.oneof(
  fc.subarray(PROT_NAMES).map((parts) => {
    const value = parts.reduce((acc, [, v]) => acc | v, 0)
    return lit(parts.map(([n]) => n).join(' | ') || 'PROT_NONE', value)
  }),
  fc.integer({ min: -1, max: 16 }).map((n) => lit(String(n), n)),
)
const FLAG_NAMES = [
  'MAP_SHARED', 'MAP_PRIVATE', 'MAP_SHARED_VALIDATE', 'MAP_ANONYMOUS', 'MAP_NORESERVE', 'MAP_POPULATE',
  'MAP_NONBLOCK', 'MAP_HUGETLB', 'MAP_HUGE_2MB', 'MAP_HUGE_1GB', 'MAP_LOCKED', 'MAP_STACK', 'MAP_SYNC',
].map((name) => [name, mmap[name]])
// Linux's placement flags, which map() must refuse: MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_32BIT,
// MAP_GROWSDOWN.
const PLACEMENT = [
  ['0x10 /* MAP_FIXED */', 0x10],
  ['0x100000 /* MAP_FIXED_NOREPLACE */', 0x100000],
  ['0x40 /* MAP_32BIT */', 0x40],
  ['0x100 /* MAP_GROWSDOWN */', 0x100],
]
const flagsArg = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(
    lit('MAP_PRIVATE | MAP_ANONYMOUS', MAP_PRIVATE | ANON),
    lit('MAP_SHARED | MAP_ANONYMOUS', MAP_SHARED | ANON),
    lit('MAP_SHARED', MAP_SHARED),
    lit('MAP_PRIVATE', MAP_PRIVATE),
  ) },
  { weight: 3, arbitrary: fc.subarray([...FLAG_NAMES, ...PLACEMENT], { maxLength: 4 }).map((parts) => {
    const value = parts.reduce((acc, [, v]) => acc | v, 0)
    return lit(parts.map(([n]) => n).join(' | ') || '0', value)
  }) },
  { weight: 1, arbitrary: fc.integer({ min: -1, max: 0x7fffffff }).map((n) => lit(String(n), n)) },
)
const ADVICE_NAMES = Object.keys(mmap).filter((k) => k.startsWith('MADV_'))
const adviceArg = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...ADVICE_NAMES).map((n) => lit(n, mmap[n])) },
  // MADV_HWPOISON (100), MADV_SOFT_OFFLINE (101), MADV_POPULATE_READ (22): not in the set.
  { weight: 1, arbitrary: fc.constantFrom(100, 101, 22, 23, 12345, -1, 2 ** 31).map((n) => lit(String(n), n)) },
)

/** Offsets and lengths: mostly around the pool's sizes, edges included. */
const rangeArg = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: FILE_LEN + 200 }).map((n) => lit(String(n), n)) },
  { weight: 2, arbitrary: fc.constantFrom(...EDGE_NUMBERS).map((n) => lit(fmtNum(n), n)) },
  { weight: 1, arbitrary: anyLeaf },
)
const sizeArg = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 4 * P }).map((n) => lit(String(n), n)) },
  { weight: 2, arbitrary: fc.constantFrom(...EDGE_NUMBERS).map((n) => lit(fmtNum(n), n)) },
  { weight: 1, arbitrary: anyLeaf },
)
const bufArg = fc.oneof(
  { weight: 8, arbitrary: poolArg },
  { weight: 2, arbitrary: foreignArg },
  { weight: 1, arbitrary: anyLeaf },
)

/** Options objects: plain ones with known (and now and then unknown) keys, and hostile ones. */
function optionsArg(keys) {
  const model = {}
  for (const [key, arb] of Object.entries(keys)) model[key] = typed(arb, 5)
  const plainOf = (record) =>
    record.map((o) => {
      const show = `{ ${Object.entries(o).map(([k, v]) => `${k}: ${v.show}`).join(', ')} }`
      const arg = new Arg(show, (st) => {
        const out = {}
        for (const [k, v] of Object.entries(o)) out[k] = v.make(st)
        st.plainOptions.add(out)
        const parts = Object.entries(o).map(([k, v]) => `${k}: ${st.shown.get(v) ?? v.show}`)
        st.shown.set(arg, `{ ${parts.join(', ')} }`)
        return out
      })
      return arg
    })
  const plain = plainOf(fc.record(model, { requiredKeys: [] }))
  // Now and then an unknown key too.
  const withBogus = plainOf(fc.record({ ...model, bogus: anyLeaf }, { requiredKeys: ['bogus'] }))
  const names = Object.keys(keys)
  const evil = fc.constantFrom(...names).chain((key) =>
    fc.constantFrom(
      fresh(`{ get ${key}() { throw } }`, () => ({
        get [key]() {
          throw new HostileError(`options.${key} getter`)
        },
      })),
      // The getter unmaps the mapping the call works on, between the library's checks.
      fresh(`{ get ${key}() { unmap(<the call's mapping>) } }`, (st) => ({
        get [key]() {
          st.retireTarget()
          return undefined
        },
      })),
      // The getter remaps it: the memory moves, the old views are detached.
      fresh(`{ get ${key}() { unmap(remap(<the call's mapping>, 2 * P)) } }`, (st) => ({
        get [key]() {
          st.remapTarget()
          return undefined
        },
      })),
      fresh(`Object.create({ ${key}: 1 })`, () => Object.create({ [key]: 1 })),
      fresh(`new Proxy({ ${key}: 0 }, { ownKeys() { throw } })`, () =>
        new Proxy({ [key]: 0 }, { ownKeys: thrower('ownKeys trap') })),
      fresh(`new Proxy({ ${key}: 0 }, { get() { throw } })`, () =>
        new Proxy({ [key]: 0 }, { get: thrower('get trap') })),
      fresh('new Proxy({}, <every trap throws>)', () => new Proxy({}, THROWING_TRAPS)),
      fresh(`{ [Symbol('x')]: 1, ${key}: undefined }`, () => ({ [Symbol('x')]: 1, [key]: undefined })),
      fresh('[0, 1]', () => [0, 1]),
      lit('null', null),
    ),
  )
  return fc.oneof(
    { weight: 6, arbitrary: plain },
    { weight: 1, arbitrary: withBogus },
    { weight: 2, arbitrary: evil },
    { weight: 1, arbitrary: anyLeaf },
  )
}
const openOptionsArg = optionsArg({
  mode: fc.constantFrom('r', 'r+', 'w+').map((m) => lit(`'${m}'`, m)),
  size: rangeArg,
  offset: rangeArg,
  length: rangeArg,
  shared: boolArg,
  populate: boolArg,
  advise: adviceArg,
})
const flushOptionsArg = optionsArg({ offset: rangeArg, length: rangeArg, invalidate: boolArg })

// ---------------------------------------------------------------------------------------------
// The pool of real mappings, rebuilt for every run.

// Brand checks and the built-in getters: they never run code of a hostile value (a Proxy, a
// fake Buffer with a throwing getter), unlike `instanceof` and `.buffer`.
const getterOf = (proto, name) => Object.getOwnPropertyDescriptor(proto, name).get
const TYPED_ARRAY = Object.getPrototypeOf(Uint8Array.prototype)
const TA_BUFFER = getterOf(TYPED_ARRAY, 'buffer')
const TA_OFFSET = getterOf(TYPED_ARRAY, 'byteOffset')
const TA_LENGTH = getterOf(TYPED_ARRAY, 'byteLength')
const DV_BUFFER = getterOf(DataView.prototype, 'buffer')
const AB_LENGTH = getterOf(ArrayBuffer.prototype, 'byteLength')
const SAB_LENGTH = getterOf(SharedArrayBuffer.prototype, 'byteLength')
const isArrayBuffer = (v) => types.isAnyArrayBuffer(v)
/** The ArrayBuffer behind a view (or the ArrayBuffer itself); undefined for anything else. */
function bufferOf(v) {
  if (types.isAnyArrayBuffer(v)) return v
  if (types.isTypedArray(v)) return TA_BUFFER.call(v)
  if (types.isDataView(v)) return DV_BUFFER.call(v)
  return undefined
}
const abLength = (ab) => (types.isSharedArrayBuffer(ab) ? SAB_LENGTH.call(ab) : AB_LENGTH.call(ab))
/** Whether `v` is a view or ArrayBuffer whose memory is gone (detached) or empty. */
function detached(v) {
  const ab = bufferOf(v)
  return ab !== undefined && abLength(ab) === 0
}

class Pool {
  constructor(run) {
    this.run = run
    this.entries = []
    this.owners = new WeakMap() // view or handle -> entry
    this.plainOptions = new WeakSet() // option objects built from plain descriptors
    this.shown = new Map()
    this.targets = []
    this.nextId = 0
  }

  /** Adds a mapping: a Buffer (`handle` false) or a Mapping. `prot` is what it was made with. */
  add({ obj, prot, handle = false, label, fuzz = false, mayBeLocked = false, file = false, backed = Infinity }) {
    const entry = { id: this.nextId++, obj, prot, handle, label, fuzz, mayBeLocked, file, backed, views: [] }
    this.owners.set(obj, entry)
    // A handle's Buffer: one view() made now (a library call, not one of the fuzz's).
    entry.base = handle ? obj.view() : obj
    this.owners.set(entry.base, entry)
    const ab = entry.base.buffer
    const L = ab.byteLength
    // Views kept from the start: after an unmap they are the detached views of the mapping.
    const kept = [entry.base, ab, entry.base.subarray(Math.min(1, entry.base.length))]
    if (L >= 4) kept.push(new Uint16Array(ab, 2, Math.floor((L - 2) / 2)))
    if (L >= 8) kept.push(new Int32Array(ab, 4, 1))
    if (L >= 16) kept.push(new Float64Array(ab, 8, 1), new BigInt64Array(ab, 8, 1))
    if (L >= 4) kept.push(new DataView(ab, 3, L - 3))
    for (const view of kept) this.adopt(view, entry)
    this.entries.push(entry)
    if (fuzz && this.entries.filter((e) => e.fuzz).length > MAX_KEPT) {
      const oldest = this.entries.findIndex((e) => e.fuzz)
      this.retire(this.entries[oldest])
      this.entries.splice(oldest, 1)
    }
    return entry
  }

  adopt(view, entry) {
    this.owners.set(view, entry)
    if (entry.views.length < 24) entry.views.push(view)
  }

  owner(value) {
    return (typeof value === 'object' || typeof value === 'function') && value !== null
      ? this.owners.get(value)
      : undefined
  }

  /**
   * Whether the entry's mapping is still there (not unmapped, remapped or disposed). A Buffer
   * keeps its length after unmap() (nothing is detached), so the model keeps count itself.
   */
  live(entry) {
    return entry.handle ? !entry.obj.unmapped : !entry.gone
  }

  /** Unmaps an entry, through the library (teardown, protect(), eviction). */
  retire(entry) {
    if (entry.handle) {
      entry.obj.unmap()
      entry.disposed = true
    } else {
      mmap.unmap(entry.obj)
      entry.gone = true
    }
  }

  retireTarget() {
    const target = this.targets[0]
    if (target) this.retire(target)
  }

  remapTarget() {
    const target = this.targets[0]
    if (!target) return
    if (target.handle) return this.retire(target)
    // Growing a locked mapping would lock (commit) the new pages too: 2 pages is harmless.
    const moved = mmap.remap(target.obj, 2 * P)
    target.gone = true
    mmap.unmap(moved)
  }

  /** Materializes a pool view descriptor. */
  view({ e, kind, a, b }) {
    const entry = this.entries[e % this.entries.length]
    const base = entry.base
    const ab = base.buffer
    const L = ab.byteLength
    const typedAt = (Ctor) => {
      const size = Ctor.BYTES_PER_ELEMENT
      const off = size * (a % (Math.floor(L / size) + 1))
      const max = Math.floor((L - off) / size)
      return new Ctor(ab, off, max - (b % (max + 1)))
    }
    const make = () => {
      switch (kind) {
        case 'buf':
          return base
        case 'sub': {
          const start = a % (base.length + 1)
          return base.subarray(start, start + (b % (base.length - start + 1)))
        }
        case 'sub1':
          return base.subarray(Math.min(1, base.length))
        case 'tail':
          return base.subarray(base.length)
        case 'ab':
          return ab
        case 'u8':
          return typedAt(Uint8Array)
        case 'i8':
          return typedAt(Int8Array)
        case 'u8c':
          return typedAt(Uint8ClampedArray)
        case 'u16':
          return typedAt(Uint16Array)
        case 'i32':
          return typedAt(Int32Array)
        case 'f32':
          return typedAt(Float32Array)
        case 'f64':
          return typedAt(Float64Array)
        case 'big64':
          return typedAt(BigInt64Array)
        case 'dv': {
          const off = a % (L + 1)
          return new DataView(ab, off, L - off - (b % (L - off + 1)))
        }
        case 'dvOdd': {
          const off = L === 0 ? 0 : Math.min(L, 2 * (a % Math.ceil(L / 2)) + 1)
          return new DataView(ab, off, L - off - (b % (L - off + 1)))
        }
        case 'kept':
          return entry.views[a % entry.views.length]
        case 'handle':
          return entry.obj
        default:
          throw new Error(`unknown view kind ${kind}`)
      }
    }
    let value
    try {
      value = make()
    } catch {
      // A view over a detached ArrayBuffer cannot be made any more: use a kept one.
      value = entry.views[a % entry.views.length]
    }
    if (value !== entry.obj) this.adopt(value, entry)
    const what = value === entry.obj ? entry.label : `${entry.label}${this.live(entry) ? '' : ' (unmapped)'}`
    const shape = describeView(value)
    return { value, show: `pool#${entry.id}<${what}>.${kind}(${a}, ${b}) = ${shape}` }
  }

  handleAt(index) {
    const handles = this.entries.filter((e) => e.handle)
    return handles[index % handles.length]
  }
}

function describeView(value) {
  if (value instanceof Mapping) return 'the Mapping'
  if (isArrayBuffer(value)) return `ArrayBuffer(${value.byteLength})`
  const name = Buffer.isBuffer(value) ? 'Buffer' : value.constructor.name
  if (detached(value)) return `${name} (detached)`
  return `${name}{ byteOffset: ${value.byteOffset}, byteLength: ${value.byteLength} }`
}

const roundUp = (n) => Math.ceil(n / P) * P
/**
 * How many bytes of anonymous memory are backed: all of a private mapping (Infinity), and
 * only the original size of a shared one (its shmem object has a fixed size: remap() refuses
 * to grow it, the test 'remap() of shared anonymous memory to a larger size ...').
 */
function backedBytes(label, length) {
  return label.includes('SHARED') ? roundUp(length) : Infinity
}

/** The mappings every run starts with (library calls, not counted among the fuzz's). */
function setup(run) {
  const pool = new Pool(run)
  const add = (label, obj, prot, handle = false) =>
    pool.add({ label, obj, prot, handle, file: !label.includes('ANON'), backed: backedBytes(label, obj.length) })
  add('map(P + 1, RW, PRIVATE | ANON)', mmap.map(P + 1, RW, MAP_PRIVATE | ANON, -1), RW)
  add('map(3P, RW, SHARED | ANON)', mmap.map(3 * P, RW, MAP_SHARED | ANON, -1), RW)
  add('map(2P, READ, PRIVATE | ANON)', mmap.map(2 * P, PROT_READ, MAP_PRIVATE | ANON, -1), PROT_READ)
  add('map(P, NONE, PRIVATE | ANON)', mmap.map(P, PROT_NONE, MAP_PRIVATE | ANON, -1), PROT_NONE)
  add("openSync(FILE, { mode: 'r+' })", mmap.openSync(FILE, { mode: 'r+' }), RW)
  add('openSync(FILE, { offset: 5, length: 2P })', mmap.openSync(FILE, { offset: 5, length: 2 * P }), PROT_READ)
  add('map(2P, RW, PRIVATE, fdRead, P)', mmap.map(2 * P, RW, MAP_PRIVATE, fdRead, P), RW)
  add('new Mapping(2P + 7, RW, PRIVATE | ANON)', new Mapping(2 * P + 7, RW, MAP_PRIVATE | ANON, -1), RW, true)
  add('Mapping.open(FILE, { offset: 3 })', Mapping.open(FILE, { offset: 3 }), PROT_READ, true)
  add(
    "Mapping.open(FILE, { mode: 'r+', offset: P + 1, length: P })",
    Mapping.open(FILE, { mode: 'r+', offset: P + 1, length: P }),
    RW,
    true,
  )
  add('new Mapping(P, NONE, PRIVATE | ANON)', new Mapping(P, PROT_NONE, MAP_PRIVATE | ANON, -1), PROT_NONE, true)
  add('new Mapping(P, WRITE, SHARED | ANON)', new Mapping(P, PROT_WRITE, MAP_SHARED | ANON, -1), PROT_WRITE, true)
  add('Mapping.open(EMPTY)', Mapping.open(EMPTY), PROT_READ, true)
  return pool
}

function teardown(pool) {
  for (const entry of pool.entries) pool.retire(entry)
}

// ---------------------------------------------------------------------------------------------
// Checks

class Failure extends Error {}
function fail(message) {
  throw new Failure(message)
}
function expect(condition, message) {
  if (!condition) fail(message)
}

const codes = {}
/**
 * Whether `err` is a hostile value's own error, which the library may pass through: one our
 * values threw, or the TypeError V8 throws for any operation on a revoked Proxy.
 */
function isHostile(ctx, err) {
  if (err instanceof HostileError) return true
  return (
    ctx.revoked === true &&
    Object.getPrototypeOf(err) === TypeError.prototype &&
    /on a proxy that has been revoked/.test(err.message)
  )
}

function checkThrown(ctx, op, err) {
  if (isHostile(ctx, err)) return
  if (!(err instanceof Error)) fail(`threw a non-Error: ${typeof err} ${safeString(err)}`)
  const proto = Object.getPrototypeOf(err)
  expect(
    proto === Error.prototype || proto === TypeError.prototype || proto === RangeError.prototype,
    `threw ${err.name} (not exactly Error, TypeError or RangeError): ${err.message}`,
  )
  expect(typeof err.code === 'string' && err.code !== '', `threw ${err.name} without a code: ${err.message}`)
  expect(typeof err.message === 'string' && err.message !== '', `threw ${err.name} ${err.code} without a message`)
  if (/^E[A-Z0-9]+$/.test(err.code)) {
    expect(Number.isInteger(err.errno) && err.errno < 0, `system error ${err.code} with errno ${err.errno}`)
    expect(typeof err.syscall === 'string' && err.syscall !== '', `system error ${err.code} without a syscall`)
  }
  const perOp = (codes[op] ??= {})
  const key = `${err.name} ${err.code}`
  perOp[key] = (perOp[key] ?? 0) + 1
  // The first call that threw each (function, class, code), with the message, for the report.
  examples[`${op}: ${key}`] ??= `${ctx.text}\n    -> ${err.message}`
}
const examples = {}

function safeString(value) {
  try {
    return String(value)
  } catch {
    return '<unprintable>'
  }
}

const isCount = (n) => Number.isInteger(n) && n >= 0
function checkIncore(result, maxPages) {
  expect(Array.isArray(result) && result.length === 2, `incore returned ${safeString(result)}`)
  expect(isCount(result[0]) && isCount(result[1]), `incore returned ${result}`)
  expect(result[0] + result[1] <= maxPages, `incore counted ${result} pages of a ${maxPages}-page span`)
}
const pagesOf = (n) => Math.ceil(n / P) + 1

/** The entry behind an argument, if it is a view (not the handle) of a pool mapping. */
function viewOwner(pool, value) {
  const entry = pool.owner(value)
  return entry && !(entry.handle && value === entry.obj) ? entry : undefined
}

/**
 * After a successful unmap/remap of `entry`: every view it had keeps its length and reads
 * zeros (the placeholder unmap() leaves), and the library treats it as unmapped.
 */
function expectGone(pool, entry, what, zeroed = true) {
  if (!entry.handle) entry.gone = true
  expect(!pool.live(entry), `${what}: the mapping is still live`)
  // Not when it was unmapped before (the placeholder may hold what was written to it since),
  // nor when a consumer in flight wrote into it.
  for (const view of zeroed ? entry.views : []) {
    if (detached(view)) continue // empty from the start
    const ab = bufferOf(view)
    const bytes = types.isAnyArrayBuffer(view)
      ? new Uint8Array(ab)
      : new Uint8Array(ab, types.isTypedArray(view) ? TA_OFFSET.call(view) : view.byteOffset, byteLengthOf(view))
    expect(bytes.length === byteLengthOf(view), `${what}: a view changed its length: ${describeView(view)}`)
    const step = bytes.length > 65536 ? 4093 : 1
    for (let i = 0; i < bytes.length; i += step) {
      if (bytes[i] !== 0) fail(`${what}: a view of the mapping reads ${bytes[i]} at ${i}, not 0: ${describeView(view)}`)
    }
    const pages = mmap.incore(view)
    expect(pages[0] === 0 && pages[1] === 0, `${what}: incore() of an unmapped view is ${pages}`)
  }
  if (entry.handle) {
    expect(entry.obj.unmapped === true, `${what}: the Mapping does not report it is unmapped`)
    // 0 however it was unmapped: by its own unmap(), or through a view (the test
    // 'mapping.length is 0 once the mapping is unmapped through a view').
    expect(entry.obj.length === 0, `${what}: the Mapping's length is ${entry.obj.length}`)
  }
}

/** Unmaps a result the pool does not keep, without touching its memory. */
function dispose(result) {
  if (result instanceof Mapping) result.unmap()
  else if (Buffer.isBuffer(result) && result.length > 0) mmap.unmap(result)
}

/** A view's byte length; 0 once detached (a detached DataView throws on .byteLength). */
function byteLengthOf(v) {
  if (detached(v)) return 0
  if (types.isAnyArrayBuffer(v)) return abLength(v)
  return types.isTypedArray(v) ? TA_LENGTH.call(v) : v.byteLength
}
const isPlainNumber = (v) => typeof v === 'number'

// ---------------------------------------------------------------------------------------------
// Guards: calls that are dangerous by design (README, Caveats) are constrained, not made.

/** A view of a pool mapping made without `prot` (reading or writing it kills the process). */
function lacks(pool, value, prot) {
  const entry = viewOwner(pool, value)
  // Once unmapped, the placeholder there is readable and writable.
  return entry !== undefined && (entry.prot & prot) === 0 && !detached(value) && pool.live(entry)
}

/**
 * Paths the fuzz itself decodes (`decodePath`, in JS) to keep writable opens inside its
 * directory: a view of a mapping without PROT_READ would be read there, and the process would
 * die in the fuzz's own code. (The library refuses such a path with a coded error: the test
 * 'openSync(), open() and Mapping.open() with a path in a PROT_NONE mapping throw ...'.)
 */
function guardPath(pool, args, notes) {
  if (lacks(pool, args[0], PROT_READ)) {
    args[0] = Buffer.from(FILE)
    notes.push('path: a view of an unreadable mapping, replaced by Buffer.from(FILE)')
  }
}

function decodePath(value) {
  if (typeof value === 'string') return value
  if (types.isUint8Array(value) && !detached(value)) {
    return Buffer.from(TA_BUFFER.call(value), TA_OFFSET.call(value), TA_LENGTH.call(value)).toString()
  }
  return undefined
}

/**
 * open/openSync/Mapping.open: never truncate or shrink a file the pool maps ('w+' on FILE or
 * EMPTY goes to SCRATCH), never grow a file outside DIR, and never populate or read ahead a file
 * larger than BIG (sizes above BIG go to the sparse HUGE file, without populate or advise).
 */
function guardOpen(pool, args, notes) {
  guardPath(pool, args, notes)
  const options = args[1]
  if (!pool.plainOptions.has(options)) return // hostile options: only defaults come out of them
  const text = decodePath(args[0])
  const writable = options.mode === 'r+' || options.mode === 'w+'
  if (writable && text !== undefined && !text.includes('\0')) {
    const resolved = path.resolve(DIR, text)
    const inside = resolved.startsWith(DIR + path.sep) || resolved === '/dev/null' || resolved === '/dev/zero'
    if (!inside) {
      args[0] = SCRATCH
      notes.push(`path: ${options.mode} outside the fuzz directory, replaced by SCRATCH`)
    } else if (resolved === EMPTY || (resolved === FILE && options.mode === 'w+')) {
      args[0] = SCRATCH
      notes.push(`path: ${options.mode} would truncate or grow a file the pool maps, replaced by SCRATCH`)
    }
  }
  if (isPlainNumber(options.size) && options.size > BIG) {
    args[0] = HUGE
    notes.push('path: a size above 1 MiB, replaced by HUGE')
  }
  if (args[0] === HUGE || decodePath(args[0]) === HUGE) {
    if ('populate' in options) notes.push('populate removed (HUGE is sparse and large)')
    if ('advise' in options) notes.push('advise removed (HUGE is sparse and large)')
    delete options.populate
    delete options.advise
  }
}

/** map()/new Mapping(): a large mapping must not be populated or locked (root: no mlock limit). */
function guardMap(pool, args, notes) {
  const [size, , flags] = args
  const heavy = mmap.MAP_POPULATE | mmap.MAP_LOCKED
  if (isPlainNumber(size) && size > BIG && isPlainNumber(flags) && flags & heavy) {
    args[2] = flags & ~heavy
    notes.push('flags: MAP_POPULATE and MAP_LOCKED removed from a mapping above 1 MiB')
  }
}

/** The mapping a call was made with: keep it in the pool if it is small and safe to touch. */
function keepOrDispose(pool, result, { label, prot, keep, mayBeLocked = false, handle = false, file = true, backed }) {
  if (keep && result.length <= BIG) {
    pool.add({ obj: result, prot, handle, label: `kept: ${label}`, fuzz: true, mayBeLocked, file, backed })
  } else {
    dispose(result)
  }
}

function fileSize() {
  return fs.fstatSync(fdRead).size
}

/** Whether map(size, ..., fd, offset) made a mapping that lies wholly inside FILE (or is anonymous). */
function keepMapped(args) {
  const [size, , flags, fd, offset = 0] = args
  if (size > BIG) return false
  if (flags & ANON) return true
  return (fd === fdRead || fd === fdWrite) && offset + size <= fileSize()
}

/** The protection an open() with plain options maps with, or undefined if it is not kept. */
function openedProt(pool, args) {
  const [p, given] = args
  if (path.resolve(DIR, decodePath(p) ?? '/') !== FILE) return undefined
  if (given !== undefined && !pool.plainOptions.has(given)) return undefined
  const options = given ?? {}
  const writable = options.mode === 'r+' || options.mode === 'w+'
  return writable || options.shared === false ? RW : PROT_READ
}

// ---------------------------------------------------------------------------------------------
// The functions under test

const arity = (n) => fc.oneof({ weight: 6, arbitrary: fc.constant(n) }, { weight: 2, arbitrary: fc.nat(n) })
/** Argument lists: the given parameters, sometimes cut short, sometimes with one extra. */
function argList(...arbs) {
  return fc
    .tuple(fc.tuple(...arbs), arity(arbs.length), fc.option(anyLeaf, { freq: 10 }))
    .map(([args, n, extra]) => {
      const list = args.slice(0, n)
      if (n === arbs.length && extra !== null) list.push(extra)
      return list
    })
}

const OPS = []
function op(name, weight, args, spec) {
  OPS.push({ name, weight, args, ...spec })
}
const method = (name, weight, args, spec) => op(name, weight, args, { method: true, ...spec })

const undef = (result) => expect(result === undefined, `returned ${safeString(result)}, not undefined`)

op('map', 8, argList(sizeArg, typed(protArg), typed(flagsArg), typed(fdArg), rangeArg, typed(adviceArg, 1)), {
  guard: guardMap,
  invoke: (args) => mmap.map(...args),
  check(result, args) {
    expect(Buffer.isBuffer(result), 'map() did not return a Buffer')
    expect(result.length === args[0], `map(${args[0]}) returned ${result.length} bytes`)
    expect(mmap.faults(result) === 0, 'a new mapping has faults')
  },
  after(pool, args, result) {
    keepOrDispose(pool, result, {
      label: `map(${args.map(safeArg).join(', ')})`,
      prot: args[1],
      keep: keepMapped(args),
      mayBeLocked: (args[2] & mmap.MAP_LOCKED) !== 0,
      file: (args[2] & ANON) === 0,
      backed: (args[2] & 0x0f) === MAP_PRIVATE ? Infinity : roundUp(args[0]), // 0x0f: MAP_TYPE
    })
  },
})

op('new Mapping', 5, argList(sizeArg, typed(protArg), typed(flagsArg), typed(fdArg), rangeArg), {
  guard: guardMap,
  invoke: (args, _, call) => (call.subclass ? new SubMapping(...args) : new Mapping(...args)),
  check(result, args) {
    expect(result instanceof Mapping, 'new Mapping() is not a Mapping')
    expect(result.length === args[0] && result.unmapped === false && result.faults === 0, 'new Mapping(): wrong state')
  },
  after(pool, args, result) {
    keepOrDispose(pool, result, {
      label: `new Mapping(${args.map(safeArg).join(', ')})`,
      prot: args[1],
      keep: keepMapped(args),
      mayBeLocked: (args[2] & mmap.MAP_LOCKED) !== 0,
      file: (args[2] & ANON) === 0,
      backed: (args[2] & 0x0f) === MAP_PRIVATE ? Infinity : roundUp(args[0]), // 0x0f: MAP_TYPE
      handle: true,
    })
  },
})
class SubMapping extends Mapping {}

op('Mapping()', 1, argList(sizeArg, typed(protArg), typed(flagsArg), typed(fdArg)), {
  invoke: (args) => Mapping(...args),
  check: () => fail('Mapping() without new did not throw'),
  thrown(err) {
    expect(err instanceof TypeError && err.code === 'ERR_CONSTRUCT_CALL_REQUIRED', `Mapping() threw ${err.code}`)
  },
})

const openLike = (name, weight, invoke, { async = false, handle = false } = {}) =>
  op(name, weight, argList(typed(pathArg, 3), openOptionsArg), {
    async,
    guard: guardOpen,
    invoke,
    check(result, args, pool) {
      if (handle) expect(result instanceof Mapping, `${name}() did not return a Mapping`)
      else expect(Buffer.isBuffer(result), `${name}() did not return a Buffer`)
      const options = args[1]
      if (pool.plainOptions.has(options) && isPlainNumber(options.length)) {
        expect(result.length === options.length, `${name}(): length ${result.length}, asked ${options.length}`)
      }
    },
    after(pool, args, result) {
      const prot = openedProt(pool, args)
      // openSync/open give a plain empty Buffer for an empty range: nothing to keep or unmap.
      if (!handle && result.length === 0) return
      keepOrDispose(pool, result, { label: `${name}(...)`, prot, keep: prot !== undefined, handle })
    },
  })
openLike('openSync', 5, (args) => mmap.openSync(...args))
openLike('open', 3, (args) => mmap.open(...args), { async: true })
openLike('Mapping.open', 4, (args) => Mapping.open(...args), { handle: true })

op('unmap', 4, argList(bufArg), {
  invoke: (args) => mmap.unmap(...args),
  check(result, args, pool, before) {
    undef(result)
    if (before.live) expectGone(pool, before.entry, 'unmap()', before.written !== before.entry)
  },
})

op('remap', 4, argList(bufArg, typed(sizeArg)), {
  guard(pool, args, notes) {
    const entry = viewOwner(pool, args[0])
    if (entry?.mayBeLocked && isPlainNumber(args[1]) && args[1] > BIG) {
      // mremap grows a locked mapping by locking (committing) the new pages as well.
      args[1] = 2 * P
      notes.push('newSize: a locked mapping is not grown above 1 MiB')
    }
  },
  invoke: (args) => mmap.remap(...args),
  check(result, args, pool, before) {
    expect(Buffer.isBuffer(result) && result.length === args[1], `remap() returned ${describeView(result)}`)
    if (before.live) expectGone(pool, before.entry, 'remap()', before.written !== before.entry)
  },
  after(pool, args, result, before) {
    const entry = before.entry
    // File mappings may now reach past the end of the file, shared anonymous memory past what
    // backs it: not kept, not touched.
    keepOrDispose(pool, result, {
      label: `remap(pool#${entry?.id}, ${args[1]})`,
      prot: entry?.prot,
      keep: entry !== undefined && !entry.file && args[1] <= entry.backed,
      mayBeLocked: entry?.mayBeLocked,
      file: false,
      backed: entry?.backed,
    })
  },
})

op('advise', 6, fc.oneof(argList(bufArg, typed(adviceArg)), argList(bufArg, rangeArg, rangeArg, typed(adviceArg))), {
  // Any advice, MADV_DONTNEED/MADV_FREE/MADV_REMOVE included: the fuzz never checks contents.
  invoke: (args) => mmap.advise(...args),
  check: undef,
})

op('incore', 3, argList(bufArg), {
  invoke: (args) => mmap.incore(...args),
  check(result, args, pool) {
    const value = args[0]
    const entry = viewOwner(pool, value)
    if (detached(value) || (entry && !pool.live(entry))) {
      expect(result[0] === 0 && result[1] === 0, `incore of an empty or unmapped view: ${result}`)
    }
    checkIncore(result, pagesOf(byteLengthOf(value)))
  },
})

op(
  'sync',
  6,
  fc.oneof(
    argList(bufArg, rangeArg, rangeArg, typed(boolArg), typed(boolArg)),
    argList(bufArg, typed(boolArg), typed(boolArg)),
  ),
  { invoke: (args) => mmap.sync(...args), check: undef },
)

op('flush', 4, argList(bufArg, flushOptionsArg), {
  async: true,
  invoke: (args) => mmap.flush(...args),
  check: undef,
})

/** The word's expected value: mostly what pool words hold (0, file bytes), sometimes anything. */
const wordArg = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(0, 1, -1, 2 ** 32 - 1, 2 ** 31, -(2 ** 31)).map((n) => lit(fmtNum(n), n)) },
  { weight: 2, arbitrary: fc.integer().map((n) => lit(String(n), n)) },
  { weight: 1, arbitrary: numArg },
)
const timeoutArg = fc.oneof(
  { weight: 4, arbitrary: fc.nat(2).map((n) => lit(String(n), n)) },
  { weight: 2, arbitrary: numArg },
)
const WAIT_OUTCOMES = ['ok', 'not-equal', 'timed-out']
/**
 * A wait on a word that holds the expected value sleeps until its timeout: the fuzz gives every
 * wait that could begin at most 2 ms (a timeout that is refused, NaN or negative, stays).
 */
function guardWait(pool, args, notes) {
  const timeout = args[3]
  if (typeof timeout === 'number' && (Number.isNaN(timeout) || timeout <= 2)) return
  if (args.length >= 4 && timeout !== undefined && typeof timeout !== 'number') return
  args[3] = 2
  notes.push('timeout: 2 ms (a wait on a word that holds its value sleeps until the timeout)')
}
const waitArgs = argList(bufArg, rangeArg, typed(wordArg), timeoutArg)
const waitOutcome = (result) => expect(WAIT_OUTCOMES.includes(result), `wait returned ${safeString(result)}`)

op('wait', 3, waitArgs, { guard: guardWait, invoke: (args) => mmap.wait(...args), check: waitOutcome })

op('waitAsync', 2, waitArgs, {
  async: true,
  guard: guardWait,
  invoke: (args) => mmap.waitAsync(...args),
  check: waitOutcome,
})

op('notify', 3, argList(bufArg, rangeArg, typed(timeoutArg)), {
  invoke: (args) => mmap.notify(...args),
  check: (result) => expect(Number.isInteger(result) && result >= 0, `notify returned ${safeString(result)}`),
})

for (const name of ['lock', 'unlock']) {
  op(name, 4, argList(bufArg, rangeArg, rangeArg), {
    invoke: (args) => mmap[name](...args),
    check: undef,
    after(pool, args) {
      const entry = viewOwner(pool, args[0])
      if (entry) entry.mayBeLocked = true
    },
    afterThrow(pool, args) {
      const entry = viewOwner(pool, args[0])
      if (entry) entry.mayBeLocked = true
    },
  })
}

op('protect', 3, argList(bufArg, rangeArg, rangeArg, typed(protArg)), {
  guard(pool, args, notes) {
    // Taking rights from memory a consumer left in flight still reads or writes kills the
    // process by design (as for the fuzz's own reads): not that mapping, then.
    const busy = pool.inFlight?.spec.name?.startsWith('node:') && viewOwner(pool, pool.inFlight.args[0])
    if (busy && busy === viewOwner(pool, args[0])) {
      args[0] = Buffer.alloc(8)
      notes.push('buffer: a Node consumer is still working on this mapping: Buffer.alloc(8)')
    }
  },
  invoke: (args) => mmap.protect(...args),
  check: undef,
  // Touching memory that protect() took away kills the process by design, so the pool narrows
  // what it knows of the mapping's rights (also after a throw: mprotect may have changed part
  // of the range), and the fuzz's own reads avoid it. The library's calls go on using it: they
  // must refuse what the rights forbid (and remap() must keep them).
  after: narrowFirst,
  afterThrow: narrowFirst,
})
function narrowFirst(pool, args) {
  const entry = viewOwner(pool, args[0])
  if (entry && Number.isInteger(args[3])) entry.prot &= args[3]
}

// Node's own consumers of Buffers on pool memory, now and then left in flight while the next
// call unmaps, remaps, advises or locks that memory: they must finish (every callback comes),
// with the view's full length (a Buffer that shrank under zlib used to abort the process).
const zlib = require('node:zlib')
const crypto = require('node:crypto')
const SINK = fs.openSync(path.join(DIR, 'sink.bin'), 'w+')
// A loopback socket: writes hand the memory to libuv, which sends it from the event loop.
const net = require('node:net')
const SOCKET = (() => {
  const server = net.createServer((socket) => socket.unref().resume()).listen(0, '127.0.0.1')
  const state = { client: null, ready: null }
  state.ready = new Promise((resolve) => server.once('listening', () => {
    state.client = net.connect(server.address().port, '127.0.0.1', resolve)
    state.client.on('error', () => {})
    state.client.unref()
  }))
  process.on('exit', () => { state.client?.destroy(); server.close() })
  server.unref()
  return state
})()
/** Consumers take views; others, and views without the rights they need, become a small Buffer. */
function consumerGuard(prot) {
  return (pool, args, notes) => {
    const v = args[0]
    const view = types.isTypedArray(v) || types.isDataView(v) || types.isArrayBuffer(v)
    // Nor empty views: a view out of bounds of its shrunk resizable ArrayBuffer (Node 22+) reads
    // as empty, and Node's consumers throw V8's uncoded RangeError for it, as for any such view.
    if (!view || detached(v) || byteLengthOf(v) === 0 || lacks(pool, v, prot)) {
      args[0] = Buffer.alloc(8)
      notes.push('view: not a view, an empty one, or one without the rights the consumer needs: Buffer.alloc(8)')
    }
  }
}
const callback = (start) => new Promise((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value))))
const bytesOf = (v) => (types.isArrayBuffer(v) ? new Uint8Array(v) : new Uint8Array(bufferOf(v), v.byteOffset, v.byteLength))
// [name, the rights it needs, how it runs, whether it writes into the view]
for (const [name, prot, invoke, writes = false] of [
  ['node:zlib.deflate', PROT_READ, (v) => callback((cb) => zlib.deflate(v, cb)).then((z) => zlib.inflateSync(z).length)],
  ['node:zlib.createGzip', PROT_READ, (v) => new Promise((resolve, reject) => {
    const chunks = []
    const gzip = zlib.createGzip({ chunkSize: 1024 })
    gzip.on('data', (c) => chunks.push(c)).on('end', () => resolve(zlib.gunzipSync(Buffer.concat(chunks)).length)).on('error', reject)
    const bytes = bytesOf(v)
    gzip.write(bytes.subarray(0, bytes.length >> 1))
    gzip.end(bytes.subarray(bytes.length >> 1))
  })],
  ['node:crypto.randomFill', PROT_WRITE, (v) => callback((cb) => crypto.randomFill(v, cb)).then((x) => x.byteLength), true],
  ['node:fs.write', PROT_READ, (v) => callback((cb) => fs.write(SINK, bytesOf(v), 0, v.byteLength, 0, cb))],
  ['node:fs.read', PROT_WRITE, (v) => callback((cb) => fs.read(fdRead, bytesOf(v), 0, v.byteLength, 0, cb)).then(() => v.byteLength), true],
  ['node:net.Socket#write', PROT_READ, (v) => SOCKET.ready.then(() => callback((cb) => SOCKET.client.write(bytesOf(v), cb)).then(() => v.byteLength))],
]) {
  op(name, 2, argList(bufArg), {
    async: true,
    writes,
    guard: consumerGuard(prot),
    invoke: (args) => invoke(args[0]),
    check(result, args) {
      // fs.write reports what it wrote (all of it); the others, the length they saw end to end.
      expect(result === byteLengthOf(args[0]), `${name} saw ${safeString(result)} bytes of ${byteLengthOf(args[0])}`)
    },
  })
}

// A worker that maps, opens, views and unmaps in a loop, terminated at a random moment (from at
// once to 30 ms in): the process must not die, and the worker must end. A fixed number per
// process (each costs a thread start), so that 100,000 calls still take seconds.
const { Worker } = require('node:worker_threads')
let workersLeft = Number(process.env.FUZZ_WORKERS ?? 60)
const WORKER_LOOP = `
  const mmap = require(${JSON.stringify(path.resolve(__dirname, '../..'))})
  const { workerData: file } = require('node:worker_threads')
  for (let i = 0; ; i++) {
    const a = mmap.openSync(file, i % 2 ? { mode: 'r+' } : { offset: i % 5000 })
    const m = mmap.Mapping.open(file)
    const v = m.view(i % 100)
    const b = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    if (i % 3) mmap.unmap(a)
    if (i % 4) m.unmap()
    b[0] = v[0] ^ a[0]
    if (i % 7 === 0) mmap.waitAsync(b, 0, 1, 5).catch(() => {})
  }
`
op('worker.terminate', 1, argList(fc.nat(30).map((n) => lit(`${n} ms`, n))), {
  async: true,
  guard(pool, args, notes) {
    if (workersLeft <= 0 || !Number.isInteger(args[0])) {
      args[0] = undefined
      notes.push('no worker: the budget of workers is spent')
    }
  },
  invoke(args) {
    if (args[0] === undefined) return Promise.resolve('skipped')
    workersLeft--
    const worker = new Worker(WORKER_LOOP, { eval: true, workerData: FILE })
    worker.on('error', () => {})
    return new Promise((resolve) => setTimeout(resolve, args[0])).then(() => worker.terminate()).then(() => 'terminated')
  },
  check(result) {
    expect(result === 'terminated' || result === 'skipped', `worker.terminate() gave ${safeString(result)}`)
  },
})

op('faults', 2, argList(bufArg), {
  invoke: (args) => mmap.faults(...args),
  // No file is ever truncated under a mapping here, so no page is ever lost.
  check: (result) => expect(result === 0, `faults() returned ${safeString(result)}`),
})

op('setSigbusRecovery', 1, argList(typed(boolArg, 1)), {
  // Always turned back on after the call (in a finally): off, a lost page ends the process.
  invoke: (args) => mmap.setSigbusRecovery(...args),
  check: undef,
})

op('externalBuffersAllowed', 1, argList(anyLeaf), {
  invoke: (args) => mmap.externalBuffersAllowed(...args),
  check: (result) => expect(result === true, `externalBuffersAllowed() returned ${safeString(result)}`),
})

// Mapping methods and getters, on pool handles (live, unmapped, empty).
const getter = (name, check) =>
  method(`.${name}`, 1, fc.constant([]), { invoke: (_, m) => m[name], check })
getter('length', (result, _, pool, before) => {
  expect(isCount(result), `length is ${safeString(result)}`)
  // Only after the handle's own unmap(): see expectGone.
  if (pool.owner(before.recv).disposed) expect(result === 0, `length of an unmapped Mapping is ${result}`)
})
getter('faults', (result) => expect(result === 0, `faults is ${safeString(result)}`))
getter('unmapped', (result, _, pool, before) => {
  expect(result === !before.recvLive, `unmapped is ${safeString(result)}`)
})

/** How many bytes a method's (offset, length) pair covers, when both are plain and in range. */
function span(m, offset, length) {
  const o = offset === undefined ? 0 : offset
  return length === undefined ? m.length - o : length
}

method('.read', 4, argList(rangeArg, rangeArg), {
  invoke: (args, m) => m.read(...args),
  check(result, args, pool, before) {
    expect(Buffer.isBuffer(result), 'read() did not return a Buffer')
    expect(result.length === span(before.recv, args[0], args[1]), `read(${args.map(safeArg).join(", ")}) returned ${result.length} bytes`)
  },
})

method('.readInto', 4, argList(bufArg, rangeArg), {
  // A target without PROT_WRITE (mapped so, or protect()ed) must be refused with
  // ERR_MMAP_ACCESS: no guard.
  invoke: (args, m) => m.readInto(...args),
  check(result, args) {
    expect(isCount(result) && result <= byteLengthOf(args[0]), `readInto() returned ${safeString(result)}`)
  },
})

method('.write', 4, argList(bufArg, rangeArg), {
  // A source without PROT_READ (mapped so, or protect()ed) must be refused with
  // ERR_MMAP_ACCESS: no guard.
  invoke: (args, m) => m.write(...args),
  check(result, args) {
    expect(isCount(result) && result <= byteLengthOf(args[0]), `write() returned ${safeString(result)}`)
  },
})

method('.view', 4, argList(rangeArg, rangeArg), {
  invoke: (args, m) => m.view(...args),
  check(result, args, pool, before) {
    expect(Buffer.isBuffer(result), 'view() did not return a Buffer')
    expect(result.length === span(before.recv, args[0], args[1]), `view(${args.map(safeArg).join(", ")}) has ${result.length} bytes`)
  },
  after(pool, args, result, before) {
    pool.adopt(result, pool.owner(before.recv))
  },
})

method(
  '.sync',
  3,
  argList(rangeArg, rangeArg, typed(boolArg), typed(boolArg)),
  { invoke: (args, m) => m.sync(...args), check: undef },
)
method('.flush', 3, argList(flushOptionsArg), { async: true, invoke: (args, m) => m.flush(...args), check: undef })
method('.advise', 4, fc.oneof(argList(typed(adviceArg)), argList(rangeArg, rangeArg, typed(adviceArg))), {
  invoke: (args, m) => m.advise(...args),
  check: undef,
})
method('.incore', 2, argList(), {
  invoke: (args, m) => m.incore(...args),
  check: (result, args, pool, before) => checkIncore(result, pagesOf(before.recv.length)),
})
for (const name of ['lock', 'unlock']) {
  method(`.${name}`, 3, argList(rangeArg, rangeArg), {
    invoke: (args, m) => m[name](...args),
    check: undef,
    after: (pool, args, result, before) => (pool.owner(before.recv).mayBeLocked = true),
    afterThrow: (pool, args, before) => (pool.owner(before.recv).mayBeLocked = true),
  })
}
for (const [name, invoke] of [
  ['.unmap', (args, m) => m.unmap(...args)],
  ['[Symbol.dispose]', (args, m) => m[Symbol.dispose](...args)],
]) {
  method(name, 2, argList(), {
    invoke,
    check(result, args, pool, before) {
      undef(result)
      pool.owner(before.recv).disposed = true
      const entry = pool.owner(before.recv)
      expectGone(pool, entry, name, before.recvLive && before.written !== entry)
    },
  })
}

const OP_BY_NAME = Object.fromEntries(OPS.map((o) => [o.name, o]))
const callArb = fc.oneof(
  ...OPS.map((o) => ({
    weight: o.weight,
    arbitrary: fc.tuple(o.args, fc.nat(63), fc.boolean()).map(([args, recv, flag]) => ({
      op: o.name,
      args,
      recv,
      // new SubMapping(...) instead of new Mapping(...), now and then.
      subclass: o.name === 'new Mapping' && flag && recv % 4 === 0,
      // An open()/flush() Promise left in flight while the next call runs (then awaited).
      defer: o.async === true && flag,
      [fc.toStringMethod]() {
        const head = o.method ? `handle[${recv}]${o.name}` : this.subclass ? 'new SubMapping' : o.name
        return `${head}(${args.map((a) => a.show).join(', ')})`
      },
    })),
  })),
)

const safeArg = (v) => (typeof v === 'number' ? fmtNum(v) : typeof v === 'string' ? JSON.stringify(v) : typeof v)

// ---------------------------------------------------------------------------------------------
// Running

const stats = { calls: 0, runs: 0 }
/** Calls and successful calls per function. */
const calledOps = {}
const successes = {}

async function execute(pool, call, index) {
  const spec = OP_BY_NAME[call.op]
  pool.shown = new Map()
  pool.revoked = false
  const recvEntry = spec.method ? pool.handleAt(call.recv) : undefined
  const recv = recvEntry?.obj
  const args = call.args.map((a) => a.make(pool))
  const notes = []
  spec.guard?.(pool, args, notes)
  const shownArgs = call.args.map((a) => pool.shown.get(a) ?? a.show)
  const head = spec.method
    ? `pool#${recvEntry.id}<${recvEntry.label}${pool.live(recvEntry) ? '' : ' (unmapped)'}>${call.op}`
    : call.subclass
      ? 'new SubMapping'
      : call.op
  const defer = spec.async && call.defer
  const text =
    `run ${pool.run} call ${index}: ${head}(${shownArgs.join(', ')})` +
    (notes.length ? ` [guarded: ${notes.join('; ')}]` : '') +
    (defer ? ' [left in flight during the next call]' : '') +
    (pool.inFlight ? `\n  while in flight: ${pool.inFlight.ctx.text}` : '')
  note(text)
  const entry = viewOwner(pool, args[0])
  pool.targets = [recvEntry, entry].filter(Boolean)
  const before = {
    entry,
    live: entry !== undefined && pool.live(entry) && !detached(args[0]),
    // A consumer left in flight that writes into a mapping (from the thread pool) may write into
    // the zeros unmap() leaves there: a view of that mapping may read its bytes afterwards.
    written: pool.inFlight?.spec.writes ? viewOwner(pool, pool.inFlight.args[0]) : undefined,
    recv,
    recvLive: recvEntry !== undefined && pool.live(recvEntry),
  }
  const ctx = { text, revoked: false }
  currentOp = call.op
  let result
  let error
  let threw = false
  try {
    result = spec.invoke(args, recv, call)
    if (spec.async) {
      expect(result instanceof Promise, `${call.op}() did not return a Promise`)
      if (defer) {
        // Handlers at once: a rejection must not go unhandled while the next call runs.
        result = result.then(
          (value) => ({ threw: false, value }),
          (err) => ({ threw: true, value: err }),
        )
      } else {
        result = await result
      }
    }
  } catch (err) {
    if (err instanceof Failure) throw err
    threw = true
    error = err
  } finally {
    currentOp = '(fuzz)'
    if (call.op === 'setSigbusRecovery') mmap.setSigbusRecovery(true)
    ctx.revoked = pool.revoked
  }
  stats.calls++
  calledOps[call.op] = (calledOps[call.op] ?? 0) + 1
  const settled = { pool, spec, call, args, before, ctx }
  // The previous call's Promise, if it was left in flight during this one.
  await settle(pool)
  if (defer && !threw) {
    pool.inFlight = settled
    settled.promise = result
    return
  }
  finish(settled, threw, threw ? error : result)
}

/** Awaits and checks a Promise left in flight, if any. */
async function settle(pool) {
  const settled = pool.inFlight
  if (!settled) return
  pool.inFlight = undefined
  const { threw, value } = await settled.promise
  finish(settled, threw, value)
}

/** The checks of one call's outcome, then the pool's bookkeeping. */
function finish({ pool, spec, call, args, before, ctx }, threw, value) {
  try {
    if (threw) {
      checkThrown(ctx, call.op, value)
      spec.thrown?.(value)
      spec.afterThrow?.(pool, args, before)
    } else {
      spec.check?.(value, args, pool, before)
      spec.after?.(pool, args, value, before)
      successes[call.op] = (successes[call.op] ?? 0) + 1
    }
  } catch (err) {
    err.message = `${ctx.text}\n  ${err.message}`
    throw err
  }
}

let runIndex = 0
const started = Date.now()
const property = fc.asyncProperty(fc.array(callArb, { minLength: CALLS, maxLength: CALLS }), async (calls) => {
  const run = runIndex++
  currentOp = '(setup)'
  let pool
  for (let attempt = 0; ; attempt++) {
    try {
      pool = setup(run)
      break
    } catch (err) {
      // Near the limit the pool itself may not fit until the collector has let the last runs'
      // mappings go: a coded ENOMEM, as it must be; wait for room.
      if (process.env.FUZZ_NEAR_LIMIT !== '1' || err.code !== 'ENOMEM' || attempt >= 100) throw err
      globalThis.gc?.()
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  try {
    for (let i = 0; i < calls.length; i++) await execute(pool, calls[i], i)
    await settle(pool)
  } finally {
    currentOp = '(teardown)'
    teardown(pool)
    stats.runs++
  }
  // Now and then collect garbage and let the finalizers of dropped views run (they run on a
  // later turn of the event loop): the release path of Buffers the fuzz let go of.
  if (run % 25 === 24) {
    globalThis.gc?.()
    await new Promise(setImmediate)
  }
})

/**
 * FUZZ_NEAR_LIMIT=1: first fill the process's kernel mappings up to node-mmap's guard (mappings
 * of one file at alternating offsets, which cannot merge), then let 400 of them go, so that the
 * fuzz runs a few hundred kernel mappings below the guard (each run's own pool needs some, and
 * placeholders wait for the collector): a call that adds one there must fail with a coded
 * ENOMEM, never abort the runtime.
 */
async function fillToTheLimit() {
  const fill = path.join(DIR, 'fill.bin')
  fs.writeFileSync(fill, Buffer.alloc(3 * P, 1))
  const fd = fs.openSync(fill, 'r')
  const held = []
  try {
    for (let i = 0; i < 300_000; i++) held.push(mmap.map(P, PROT_READ, MAP_SHARED, fd, (i % 2) * 2 * P))
  } catch (err) {
    if (err.code !== 'ENOMEM') throw err
  }
  for (const buf of held.splice(-400)) mmap.unmap(buf)
  // The placeholders unmap() left go with their Buffers' finalizers, a few turns of the event
  // loop after a collection (more on some Node versions): wait until a run's pool fits.
  for (const deadline = Date.now() + 20_000; ; ) {
    globalThis.gc?.()
    await new Promise((resolve) => setTimeout(resolve, 10))
    try {
      const probe = []
      for (let i = 0; i < 60; i++) probe.push(mmap.map(P, PROT_READ, MAP_SHARED, fd, (i % 2) * 2 * P))
      for (const buf of probe) mmap.unmap(buf)
      break
    } catch (err) {
      if (err.code !== 'ENOMEM' || Date.now() > deadline) throw err
    }
  }
  process.stderr.write(`fuzz: ${held.length} mappings hold the process near its kernel-mapping limit\n`)
  return held
}

async function main() {
  process.stderr.write(`fuzz: seed ${SEED}, ${RUNS} runs of ${CALLS} calls, files in ${DIR}\n`)
  const held = process.env.FUZZ_NEAR_LIMIT === '1' ? await fillToTheLimit() : []
  const details = await fc.check(property, {
    seed: SEED,
    numRuns: RUNS,
    path: REPLAY_PATH,
    endOnFailure: !SHRINK,
  })
  if (details.failed) {
    const error = details.errorInstance
    process.stderr.write(
      `fuzz: property failed (seed ${SEED}, run path "${details.counterexamplePath}", ` +
        `after ${stats.calls} calls)\n${error && error.stack ? error.stack : error}\n` +
        `Replay: FUZZ_SEED=${SEED} FUZZ_PATH=${details.counterexamplePath} ` +
        `node __test__/support/fuzz-child.js (add FUZZ_TRACE=1 to see every call, FUZZ_SHRINK=1 to shrink)\n`,
    )
    process.exitCode = 1
    return
  }
  const summary = {
    seed: SEED,
    runs: stats.runs,
    callsPerRun: CALLS,
    calls: stats.calls,
    ms: Date.now() - started,
    ops: OPS.map((o) => o.name),
    called: calledOps,
    successes,
    codes,
    coercions,
    examples,
  }
  process.stdout.write(JSON.stringify({ ...summary, held: held.length }) + '\n')
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`)
  process.exitCode = 1
})
