'use strict'
// Abuse: a property-based fuzz (fast-check) of every export, 100,000 calls with random arguments,
// in a child process (support/fuzz-child.js, which documents the properties and the calls that
// are constrained because they are dangerous by design). A crash fails the test with the signal
// and the call that was running; a property that fails names the call and how to replay it.
//
// Seed: FUZZ_SEED=<n> (or FUZZ_SEED=random) picks another; the default is fixed so CI repeats.
//
// The tests after the fuzz are bugs it found, all fixed since: each asserts the behaviour README
// promises; crashes among them run in a child process of their own.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const fc = require('fast-check')

const mmap = require('..')
const { PACKAGE, runScript, childEnv } = require('./helpers.js')

const { Mapping, PAGESIZE, MAP_PRIVATE, MAP_ANONYMOUS } = mmap
const ANON = MAP_PRIVATE | MAP_ANONYMOUS
const RW = mmap.PROT_READ | mmap.PROT_WRITE

const DEFAULT_SEED = 0x6d6d6170 // 'mmap'
const SEED =
  process.env.FUZZ_SEED === 'random' ? crypto.randomInt(2 ** 31) : Number(process.env.FUZZ_SEED ?? DEFAULT_SEED)
const RUNS = 1000
const CALLS = 100 // per run: RUNS * CALLS = 100,000 calls
const CHILD = path.join(__dirname, 'support', 'fuzz-child.js')

/** The fuzz's summary (set by the first test; tests below read it too). */
let summary

/**
 * Runs support/fuzz-child.js with `env` (its seed, sizes, switches) on files in a fresh
 * directory (tmpfs where there is one: msync there does not wait for a disk), removed here, as a
 * child that crashes cannot clean up after itself. Asserts it ended well; returns its summary.
 */
function runFuzz(t, seed, env) {
  let dir
  try {
    dir = fs.mkdtempSync('/dev/shm/node-mmap-fuzz-')
  } catch {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-fuzz-'))
  }
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const lastFile = path.join(dir, 'last-call.txt')
  const result = spawnSync(process.execPath, ['--expose-gc', CHILD], {
    cwd: PACKAGE,
    env: childEnv({ FUZZ_SEED: String(seed), FUZZ_CALLS: String(CALLS), FUZZ_LAST_FILE: lastFile, FUZZ_TMPDIR: dir, ...env }),
    encoding: 'utf8',
    timeout: 10 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  })
  const last = fs.existsSync(lastFile) ? fs.readFileSync(lastFile, 'utf8').trimEnd() : '(none)'
  const detail =
    `seed ${seed}; status ${result.status}, signal ${result.signal}\n` +
    `last call started:\n  ${last}\nstderr:\n${result.stderr.slice(-8000)}`
  assert.equal(result.error?.code, undefined, `the fuzz could not run or timed out: ${result.error}\n${detail}`)
  assert.equal(result.signal, null, `the fuzz process crashed (${result.signal})\n${detail}`)
  assert.equal(result.status, 0, `a property failed\n${detail}`)
  return JSON.parse(result.stdout.trim().split('\n').pop())
}

test('fuzz: 100,000 random calls to every export never crash, and every error has a code', (t) => {
  t.diagnostic(`seed ${SEED} (FUZZ_SEED=${SEED} repeats this run)`)
  summary = runFuzz(t, SEED, { FUZZ_RUNS: String(RUNS) })
  t.diagnostic(`${summary.calls} calls in ${summary.runs} runs took ${(summary.ms / 1000).toFixed(1)} s`)
  assert.equal(summary.calls, RUNS * CALLS)
  assert.ok(summary.calls >= 100_000)
})

test('fuzz near the kernel-mapping limit: 10,000 random calls with the process filled up to the guard never crash', (t) => {
  const near = runFuzz(t, SEED + 1, { FUZZ_RUNS: '100', FUZZ_NEAR_LIMIT: '1', FUZZ_WORKERS: '10' })
  assert.equal(near.calls, 100 * CALLS)
  assert.ok(near.held > 1000, `the process was filled with mappings first: ${near.held}`)
})

test('fuzz: it calls every export, every Mapping method and getter, and each one also succeeds', () => {
  assert.ok(summary, 'the fuzz did not run')
  const expected = []
  for (const [name, value] of Object.entries(mmap)) {
    if (typeof value !== 'function') continue
    if (name === 'Mapping') expected.push('new Mapping', 'Mapping()', 'Mapping.open')
    else expected.push(name)
  }
  for (const key of Reflect.ownKeys(Mapping.prototype)) {
    if (key === 'constructor') continue
    expected.push(key === Symbol.dispose ? '[Symbol.dispose]' : `.${String(key)}`)
  }
  // Node's own Buffer consumers (zlib, crypto, fs) on pool memory, racing unmap()/remap().
  const consumers = summary.ops.filter((name) => name.startsWith('node:'))
  assert.ok(consumers.length >= 5, `the fuzz runs Node's consumers: ${consumers.join(', ')}`)
  expected.push(...consumers)
  for (const name of expected) {
    assert.ok(summary.ops.includes(name), `the fuzz does not call ${name}`)
    assert.ok(summary.called[name] > 0, `the fuzz never called ${name}`)
    // Mapping() without `new` must always throw; everything else must sometimes work, or the
    // fuzz would only ever test argument checks.
    if (name !== 'Mapping()') assert.ok(summary.successes[name] > 0, `no call of ${name} succeeded`)
  }
  assert.equal(summary.successes['Mapping()'], undefined)
})

// ---------------------------------------------------------------------------------------------
// Bugs found by the fuzz, fixed since. Each test is what README promises.

/** Runs `source` in a child node; asserts it was not killed and printed `expected`. */
function assertSurvives(source, expected) {
  const result = runScript(`const mmap = require(MMAP)\n${source}`)
  const detail = `status ${result.status}, signal ${result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`
  assert.equal(result.signal, null, `the process was killed: ${detail}`)
  assert.equal(result.stdout.trim(), expected, detail)
}

const READ_ONLY = `mmap.map(4096, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)`
const NO_ACCESS = `mmap.map(4096, mmap.PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)`
const WRITABLE = `new mmap.Mapping(4096, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)`
// What the child prints for an error: its code if it has one (the library may pick the code;
// ERR_MMAP_ACCESS is what Mapping#read/#write already throw for their own mapping).
const printCode = `(e) => console.log(typeof e.code === 'string' && e.code !== '' ? 'coded' : 'uncoded: ' + e)`

test(
  'Mapping#readInto() into a view of a read-only mapping throws instead of crashing',
  () => {
    assertSurvives(
      `const target = ${READ_ONLY}\ntry { ${WRITABLE}.readInto(target) } catch (e) { (${printCode})(e) }`,
      'coded',
    )
  },
)

test(
  'Mapping#write() from a view of a PROT_NONE mapping throws instead of crashing',
  () => {
    assertSurvives(
      `const source = ${NO_ACCESS}\ntry { ${WRITABLE}.write(source) } catch (e) { (${printCode})(e) }`,
      'coded',
    )
  },
)

test(
  'openSync(), open() and Mapping.open() with a path in a PROT_NONE mapping throw instead of crashing',
  () => {
    for (const call of ['mmap.openSync(path)', 'mmap.Mapping.open(path)', 'mmap.open(path)']) {
      assertSurvives(
        `const path = ${NO_ACCESS}\n` +
          `try { Promise.resolve(${call}).catch(${printCode}) } catch (e) { (${printCode})(e) }`,
        'coded',
      )
    }
  },
)

test(
  'options.mode is never converted to a string: no user code runs, no memory is read',
  () => {
    let calls = 0
    const mode = {
      toString() {
        calls++
        return 'r'
      },
    }
    assert.throws(() => mmap.openSync(__filename, { mode }), {
      name: 'RangeError',
      code: 'ERR_INVALID_ARG_VALUE',
      message: "The argument 'options.mode' must be 'r', 'r+' or 'w+'. Received an instance of Object",
    })
    assert.equal(calls, 0, 'mode.toString() was called')
    assertSurvives(
      `const mode = new Int32Array(${NO_ACCESS}.buffer, 0, 2)\n` +
        `try { mmap.openSync(__filename, { mode }) } catch (e) { console.log(e.code) }`,
      'ERR_INVALID_ARG_VALUE',
    )
  },
)

test(
  'the fuzz saw no valueOf/toString/Symbol.toPrimitive called by the library',
  () => {
    assert.ok(summary, 'the fuzz did not run')
    assert.deepEqual(summary.coercions, {})
  },
)

test(
  'a Float16Array is 2 bytes per element: Mapping#readInto/#write stay within it, ranges within it',
  {
    skip: typeof Float16Array === 'undefined' && 'this Node.js has no Float16Array (Node.js 24 has)',
  },
  () => {
    const m = new Mapping(PAGESIZE, RW, ANON, -1)
    m.write(Buffer.alloc(PAGESIZE, 0x41))
    const bytes = new Uint8Array(64)
    const target = new Float16Array(bytes.buffer, 0, 4) // 8 bytes
    assert.equal(m.readInto(target), 8)
    assert.deepEqual([...bytes.subarray(8, 16)], new Array(8).fill(0), 'bytes past the Float16Array were written')
    // Inside a larger ArrayBuffer, so that the bug reads bytes of ours, not of V8's heap.
    assert.equal(m.write(new Float16Array(new ArrayBuffer(64), 0, 4)), 8)
    const buf = mmap.map(PAGESIZE, RW, ANON, -1)
    const view = new Float16Array(buf.buffer, 0, 2) // 4 bytes
    assert.throws(() => mmap.advise(view, 4, 1, mmap.MADV_NORMAL), { code: 'ERR_OUT_OF_RANGE' })
    mmap.unmap(buf)
    m.unmap()
  },
)

test(
  'remap() of shared anonymous memory to a larger size gives pages that work, or refuses',
  () => {
    assertSurvives(
      `const P = mmap.PAGESIZE\n` +
        `try {\n` +
        `  const grown = mmap.remap(mmap.map(3 * P, 3, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1), 4 * P)\n` +
        `  grown[3 * P] = 7\n` +
        `  console.log(mmap.faults(grown) === 0 && grown[3 * P] === 7 ? 'ok' : 'faults: ' + mmap.faults(grown))\n` +
        `} catch (e) { console.log(typeof e.code === 'string' ? 'ok' : 'uncoded: ' + e) }`,
      'ok',
    )
  },
)

test(
  'mapping.length is 0 once the mapping is unmapped through a view',
  () => {
    const m = new Mapping(2 * PAGESIZE, RW, ANON, -1)
    mmap.unmap(m.view(1, 10))
    assert.equal(m.unmapped, true)
    assert.equal(m.length, 0)
    const n = new Mapping(2 * PAGESIZE, RW, ANON, -1)
    mmap.unmap(mmap.remap(n.view(), PAGESIZE))
    assert.equal(n.unmapped, true)
    assert.equal(n.length, 0)
  },
)

test(
  'mapping.unmap() from an options getter of mapping.flush() unmaps, and flush rejects ERR_MMAP_UNMAPPED',
  async () => {
    const m = new Mapping(PAGESIZE, RW, ANON, -1)
    const options = {
      get offset() {
        m.unmap()
        return undefined
      },
    }
    await assert.rejects(m.flush(options), { name: 'Error', code: 'ERR_MMAP_UNMAPPED' })
    assert.equal(m.unmapped, true)
  },
)

test(
  'setSigbusRecovery() refuses a non-boolean with ERR_INVALID_ARG_TYPE',
  () => {
    try {
      assert.throws(() => mmap.setSigbusRecovery(1), {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_TYPE',
        message: 'The "enabled" argument must be of type boolean. Received type number (1)',
      })
    } finally {
      mmap.setSigbusRecovery(true)
    }
  },
)

test(
  'every error code the fuzz saw is Node-style (ERR_* or an errno name)',
  () => {
    assert.ok(summary, 'the fuzz did not run')
    const odd = []
    for (const [op, codes] of Object.entries(summary.codes)) {
      for (const key of Object.keys(codes)) {
        const code = key.split(' ')[1]
        if (!/^(ERR_[A-Z0-9_]+|E[A-Z0-9]+)$/.test(code)) odd.push(`${op}: ${key}`)
      }
    }
    assert.deepEqual(odd, [])
  },
)

test(
  'Mapping methods and getters on a wrong receiver throw a TypeError with a code',
  () => {
    const members = Reflect.ownKeys(Mapping.prototype).filter((k) => k !== 'constructor')
    const receivers = [
      undefined, null, 1, 'x', {}, [], Object.create(Mapping.prototype), Buffer.alloc(8), new Proxy({}, {}),
    ]
    fc.assert(
      fc.property(fc.constantFrom(...members), fc.constantFrom(...receivers), (key, receiver) => {
        const descriptor = Object.getOwnPropertyDescriptor(Mapping.prototype, key)
        const fn = descriptor.get ?? descriptor.value
        let error
        try {
          fn.call(receiver)
        } catch (err) {
          error = err
        }
        assert.ok(error instanceof TypeError, `${String(key)}: ${error && error.name}`)
        assert.equal(typeof error.code, 'string', `${String(key)}: ${error.message}`)
      }),
      { seed: SEED, numRuns: 200 },
    )
  },
)

// Found by attack pass 11: an object another addon wrapped (napi_wrap), given
// Mapping.prototype, passes `instanceof`; the getters then threw napi-rs's uncoded `Error`
// (code 'InvalidArg') instead of ERR_INVALID_THIS. The addon is built here, from C with its
// own declarations of the four Node-API calls it makes (no headers needed).
test('Mapping members on an object another addon wrapped throw ERR_INVALID_THIS', (t) => {
  const { spawnSync } = require('node:child_process')
  const os = require('node:os')
  const path = require('node:path')
  const fs = require('node:fs')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-wrapper-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const src = path.join(dir, 'wrapper.c')
  const addon = path.join(dir, 'wrapper.node')
  fs.writeFileSync(src, `
    #include <stddef.h>
    typedef struct env *napi_env;
    typedef struct value *napi_value;
    typedef struct info *napi_callback_info;
    typedef napi_value (*napi_callback)(napi_env, napi_callback_info);
    extern int napi_create_object(napi_env, napi_value *);
    extern int napi_wrap(napi_env, napi_value, void *, void *, void *, void *);
    extern int napi_create_function(napi_env, const char *, size_t, napi_callback, void *, napi_value *);
    extern int napi_set_named_property(napi_env, napi_value, const char *, napi_value);
    static int block[4];
    static napi_value make(napi_env env, napi_callback_info info) {
      napi_value object;
      napi_create_object(env, &object);
      napi_wrap(env, object, block, NULL, NULL, NULL);
      return object;
    }
    napi_value napi_register_module_v1(napi_env env, napi_value exports) {
      napi_value fn;
      napi_create_function(env, "makeWrapped", (size_t)-1, make, NULL, &fn);
      napi_set_named_property(env, exports, "makeWrapped", fn);
      return exports;
    }
  `)
  const cc = process.env.CC || 'cc'
  const built = spawnSync(cc, ['-shared', '-fPIC', '-o', addon, src], { encoding: 'utf8' })
  assert.equal(built.error, undefined, `\`${cc}\` is needed to build the test addon: ${built.error}`)
  assert.equal(built.status, 0, built.stderr)
  const wrapped = require(addon).makeWrapped()
  Object.setPrototypeOf(wrapped, Mapping.prototype)
  assert.ok(wrapped instanceof Mapping)
  const members = Reflect.ownKeys(Mapping.prototype).filter((k) => k !== 'constructor')
  const odd = []
  for (const key of members) {
    const descriptor = Object.getOwnPropertyDescriptor(Mapping.prototype, key)
    try {
      ;(descriptor.get ?? descriptor.value).call(wrapped)
      odd.push(`${String(key)}: no error`)
    } catch (err) {
      if (!(err instanceof TypeError) || err.code !== 'ERR_INVALID_THIS') odd.push(`${String(key)}: ${err.name} ${err.code} ${err.message}`)
    }
  }
  assert.deepEqual(odd, [])
})
