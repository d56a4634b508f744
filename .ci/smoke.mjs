// A smoke test of node-mmap that runs unchanged on Node.js, Bun and Deno (the node:test suite in
// __test__/ is Node's own). .ci/run runs it as:
//
//   node --expose-gc .ci/smoke.mjs
//   bun .ci/smoke.mjs
//   deno run -A --v8-flags=--expose-gc .ci/smoke.mjs
//
// With NODE_MMAP_TEST_SMALL_SIGSTACK=<bytes> (a test switch of node-mmap, inherited by the
// children), every thread that maps runs the signal handlers on an alternate stack that leaves
// them <bytes> beside the kernel's signal frame, whatever the CPU (.ci/run uses 4096, less than
// Deno's 8 KiB stack leaves on a CPU with AVX-512).
//
// It loads the addon that `npm install` built (both entries: index.js through createRequire, as
// Deno loads a CommonJS N-API package, and index.mjs), maps a temporary file and checks every
// step against the runtime's own fs and the kernel's list of mappings (/proc/self/maps). Each
// check runs on its own and prints `ok` or `FAIL` with what it expected and what it got; the last
// line is "smoke: N passed, N failed". Exit code 1 if any check failed.
//
// On Windows (node.exe under Wine: bash .ci/wine.sh node --expose-gc .ci/smoke.mjs) the same
// checks run, with Windows' answers where Windows differs, each said in the check: no
// /proc/self/maps (whether a file is still mapped is asked by cutting it shorter, which Windows
// refuses under a view), a mapped file cannot be truncated (so no SIGBUS), remap() and waits are
// ENOTSUP, an access violation ends the process with Windows' status (after node-mmap's line).

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import util from 'node:util'
import { Worker } from 'node:worker_threads'

// The package to test: this repository, or (NODE_MMAP_SMOKE_ROOT) a copy npm installed
// elsewhere, such as node_modules/node-mmap after installing the prebuilt tarballs.
const root = process.env.NODE_MMAP_SMOKE_ROOT
  ? path.resolve(process.env.NODE_MMAP_SMOKE_ROOT)
  : path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
// A command that runs this runtime's executable, as a JSON array that the executable's path and
// arguments follow (NODE_MMAP_SMOKE_EXEC): under qemu-user, where the guest cannot start another
// arm64 executable by itself (no binfmt_misc), children go through qemu-aarch64 too.
const execPrefix = process.env.NODE_MMAP_SMOKE_EXEC ? JSON.parse(process.env.NODE_MMAP_SMOKE_EXEC) : []

function runtime() {
  if (typeof globalThis.Bun !== 'undefined') return `Bun ${globalThis.Bun.version}`
  if (typeof globalThis.Deno !== 'undefined') return `Deno ${globalThis.Deno.version.deno} (V8 ${globalThis.Deno.version.v8})`
  return `Node.js ${process.version}`
}

/** A full garbage collection, or null where this runtime was not started with one exposed. */
function gcFunction() {
  if (typeof globalThis.Bun !== 'undefined') return () => globalThis.Bun.gc(true)
  if (typeof globalThis.gc === 'function') return () => globalThis.gc()
  return null
}

const windows = process.platform === 'win32'

/** The mappings of `file` listed in /proc/self/maps. */
function mappingsOf(file) {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.trim().split(/\s+/).slice(5).join(' ') === file)
}

/**
 * How many mappings of `file` exist: the count /proc/self/maps gives; on Windows, which has no
 * such list, 1 if the file is mapped at all, else 0: Windows refuses to cut a file shorter while
 * a view of it exists (UNKNOWN, errno -4094, from fs), so the file is cut to empty and, if that
 * worked, written back as it was.
 */
function mappedCount(file) {
  if (!windows) return mappingsOf(file).length
  const bytes = fs.readFileSync(file)
  try {
    fs.truncateSync(file, 0)
  } catch (err) {
    assert.equal(err.code, 'UNKNOWN', `fs.truncateSync of a mapped file: ${err.message}`)
    return 1
  }
  fs.writeFileSync(file, bytes)
  return 0
}

/** Asserts that `file` is mapped `count` times (on Windows: mapped at all, or not; see mappedCount). */
function expectMapped(file, count, what) {
  assert.equal(mappedCount(file), windows ? Math.min(count, 1) : count, what)
}

/** Collects garbage and yields (a timer turn, so queued finalizers run) until `condition()`. */
async function collectUntil(condition, gc, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    gc()
    await new Promise((resolve) => setTimeout(resolve, 5))
    if (condition()) return true
    if (Date.now() > deadline) return false
  }
}

/** Asserts that `fn` throws an instance of `Class` whose `code` is `code`; returns the error. */
function throwsWithCode(fn, Class, code) {
  let caught = null
  try {
    fn()
  } catch (err) {
    caught = err
  }
  assert.ok(caught, `expected a ${Class.name} with code ${code}, but nothing was thrown`)
  assert.ok(caught instanceof Class, `expected a ${Class.name} (${code}), got ${caught && caught.stack}`)
  assert.equal(caught.code, code, `error code (message: ${caught.message})`)
  return caught
}

const checks = []
const check = (name, fn) => checks.push({ name, fn })
/** What a check returns where it cannot apply: printed as `# SKIP reason`, never counted as passed. */
class Skip {
  constructor(reason) {
    this.reason = reason
  }
}
const skip = (reason) => new Skip(reason)

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-smoke-'))
let mmap = null
let PAGESIZE = 4096
const RW = () => mmap.PROT_READ | mmap.PROT_WRITE

/** A new file of `size` random bytes in the temp dir; returns { file, bytes }. */
function randomFile(name, size) {
  const file = path.join(dir, name)
  const bytes = randomBytes(size)
  fs.writeFileSync(file, bytes)
  return { file, bytes }
}

check('loads: require() of the package (index.js) and import() of index.mjs give the same functions', async () => {
  mmap = createRequire(import.meta.url)(root)
  PAGESIZE = mmap.PAGESIZE
  assert.equal(typeof mmap.map, 'function')
  // 4096 on x86-64; NODE_MMAP_SMOKE_PAGESIZE names another (qemu-aarch64 -p 65536 emulates 64 KiB).
  assert.equal(PAGESIZE, Number(process.env.NODE_MMAP_SMOKE_PAGESIZE || 4096), 'PAGESIZE')
  const esm = await import(pathToFileURL(path.join(root, 'index.mjs')).href)
  assert.equal(esm.default, mmap, 'index.mjs default export is the CommonJS module')
  assert.equal(esm.map, mmap.map)
  assert.equal(esm.Mapping, mmap.Mapping)
})

check('externalBuffersAllowed() is true (the runtime lets native memory back a Buffer)', () => {
  assert.equal(mmap.externalBuffersAllowed(), true)
})

check('map() of a temp file (MAP_SHARED): a Buffer that shows the bytes fs wrote, writes reach the file, sync, unmap takes the bytes away', async () => {
  const size = 2 * PAGESIZE
  const { file, bytes } = randomFile('map.bin', size)
  const fd = fs.openSync(file, 'r+')
  try {
    const buf = mmap.map(size, RW(), mmap.MAP_SHARED, fd, 0)
    assert.ok(Buffer.isBuffer(buf), 'map() returns a Buffer')
    assert.equal(buf.length, size)
    expectMapped(file, 1, '/proc/self/maps lists the file once')
    assert.ok(buf.equals(bytes), 'the Buffer holds the bytes fs.writeFileSync wrote')

    // Writes through the Buffer are in the file (fs.readSync is the oracle) ...
    const patch = randomBytes(64)
    buf.set(patch, 100)
    const back = Buffer.alloc(64)
    assert.equal(fs.readSync(fd, back, 0, 64, 100), 64)
    assert.deepEqual(back, patch, 'fs.readSync sees the write made through the mapping')
    // ... and fs writes are in the Buffer.
    const other = randomBytes(32)
    fs.writeSync(fd, other, 0, 32, PAGESIZE + 5)
    assert.deepEqual(buf.subarray(PAGESIZE + 5, PAGESIZE + 37), other, 'the mapping sees fs.writeSync')

    // msync: both sync forms and the async flush.
    assert.equal(mmap.sync(buf), undefined)
    assert.equal(mmap.sync(buf, 0, PAGESIZE, true), undefined)
    assert.equal(await mmap.flush(buf), undefined)
    if (process.env.NODE_MMAP_SMOKE_SKIP_INCORE) {
      // .ci/prebuilt.sh sets this under qemu-aarch64 -p 65536: qemu-user passes mincore's vector
      // through to the 4 KiB-page host kernel, which writes 16 bytes per 64 KiB page into a
      // vector sized (as mincore(2) says) for one: the emulator overflows the heap. incore()
      // runs in the 4 KiB-page run and on every other platform.
      console.log(`    (incore() not called: ${process.env.NODE_MMAP_SMOKE_SKIP_INCORE})`)
    } else {
      const [notResident, resident] = mmap.incore(buf)
      assert.equal(notResident + resident, size / PAGESIZE, 'incore() counts every page')
    }

    // unmap: the Buffer and every other view over its ArrayBuffer keep their length (nothing
    // is detached) and read zeros.
    const view = new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
    const arrayBuffer = buf.buffer
    mmap.unmap(buf)
    assert.equal(buf.length, size, 'buf.length after unmap')
    assert.equal(view.length, size, 'another view of the memory after unmap')
    assert.equal(arrayBuffer.byteLength, size, 'ArrayBuffer.byteLength after unmap')
    assert.ok(buf.equals(Buffer.alloc(size)), 'an unmapped Buffer reads zeros')
    assert.ok(view.every((b) => b === 0), 'so does every view')
    expectMapped(file, 0, 'the file is no longer mapped')
    mmap.unmap(buf) // again: does nothing
    assert.deepEqual(fs.readFileSync(file).subarray(100, 164), patch, 'the write stays in the file')
  } finally {
    fs.closeSync(fd)
  }
})

check('openSync(path, { mode: "r+" }): the file as a Buffer, writes reach it, unmap takes the bytes away', () => {
  const { file, bytes } = randomFile('open-sync.bin', 3 * PAGESIZE + 10)
  const buf = mmap.openSync(file, { mode: 'r+' })
  assert.ok(Buffer.isBuffer(buf))
  assert.ok(buf.equals(bytes), 'openSync shows the file')
  buf.write('hello from openSync', PAGESIZE + 1, 'latin1')
  const onDisk = fs.readFileSync(file)
  assert.equal(onDisk.toString('latin1', PAGESIZE + 1, PAGESIZE + 20), 'hello from openSync')
  mmap.sync(buf, true)
  mmap.unmap(buf)
  assert.equal(buf.length, 3 * PAGESIZE + 10)
  assert.ok(buf.equals(Buffer.alloc(buf.length)), 'an unmapped Buffer reads zeros')
  expectMapped(file, 0, 'the file is no longer mapped')
  // Any byte offset; a window of the file.
  const tail = mmap.openSync(file, { offset: 3 * PAGESIZE + 3 })
  assert.deepEqual(tail, onDisk.subarray(3 * PAGESIZE + 3))
  mmap.unmap(tail)
})

check('open(path) (thread pool, Promise) fulfills with the file as a Buffer', async () => {
  const { file, bytes } = randomFile('open-async.bin', PAGESIZE + 1)
  const buf = await mmap.open(file)
  assert.ok(buf.equals(bytes))
  mmap.unmap(buf)
  assert.ok(buf.equals(Buffer.alloc(PAGESIZE + 1)), 'an unmapped Buffer reads zeros')
})

check('Mapping round trip: Mapping.open, write, read, readInto, view, sync, unmap', () => {
  const { file, bytes } = randomFile('mapping.bin', 4 * PAGESIZE)
  const m = mmap.Mapping.open(file, { mode: 'r+' })
  assert.ok(m instanceof mmap.Mapping)
  assert.equal(m.length, 4 * PAGESIZE)
  assert.equal(m.unmapped, false)
  assert.ok(m.read().equals(bytes), 'read() copies the whole file')
  const patch = randomBytes(100)
  assert.equal(m.write(patch, 2 * PAGESIZE - 50), 100, 'write() returns the bytes copied')
  const back = Buffer.alloc(100)
  const fd = fs.openSync(file, 'r')
  try {
    fs.readSync(fd, back, 0, 100, 2 * PAGESIZE - 50)
  } finally {
    fs.closeSync(fd)
  }
  assert.deepEqual(back, patch, 'fs sees Mapping.write()')
  assert.deepEqual(m.read(2 * PAGESIZE - 50, 100), patch, 'read() sees it')
  const into = Buffer.alloc(100)
  assert.equal(m.readInto(into, 2 * PAGESIZE - 50), 100)
  assert.deepEqual(into, patch)
  const v = m.view(PAGESIZE, 2 * PAGESIZE)
  assert.equal(v.length, 2 * PAGESIZE)
  assert.deepEqual(v.subarray(PAGESIZE - 50, PAGESIZE + 50), patch, 'view() is zero-copy over the same memory')
  m.sync(0, 0, true)
  m.unmap()
  assert.equal(m.unmapped, true)
  assert.equal(m.length, 0)
  assert.ok(v.length === 2 * PAGESIZE && v.every((b) => b === 0), 'view() Buffers read zeros after unmap()')
  expectMapped(file, 0, 'the file is no longer mapped')
  throwsWithCode(() => m.read(), Error, 'ERR_MMAP_UNMAPPED')
  m.unmap() // again: does nothing
})

check('new Mapping of anonymous memory, and remap() grows a Buffer (mremap; ENOTSUP on Windows)', () => {
  const m = new mmap.Mapping(PAGESIZE, RW(), mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  assert.ok(m.read().equals(Buffer.alloc(PAGESIZE)), 'anonymous memory reads as zeros')
  m.unmap()
  const buf = mmap.map(PAGESIZE, RW(), mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  buf.write('kept', 0, 'latin1')
  if (windows) {
    const err = throwsWithCode(() => mmap.remap(buf, 3 * PAGESIZE), Error, 'ENOTSUP')
    assert.equal(err.syscall, 'mremap')
    assert.equal(buf.toString('latin1', 0, 4), 'kept', 'the Buffer is as it was')
    mmap.unmap(buf)
    return
  }
  const grown = mmap.remap(buf, 3 * PAGESIZE)
  assert.equal(grown.length, 3 * PAGESIZE)
  assert.equal(grown.toString('latin1', 0, 4), 'kept')
  assert.ok(buf.length === PAGESIZE && buf.every((b) => b === 0), 'the old Buffer reads zeros')
  mmap.unmap(grown)
})

check('errors carry Node-style codes (TypeError, RangeError, system error with errno/syscall/path)', () => {
  throwsWithCode(() => mmap.map('x', RW(), mmap.MAP_SHARED, 0), TypeError, 'ERR_INVALID_ARG_TYPE')
  throwsWithCode(() => mmap.map(-1, RW(), mmap.MAP_SHARED, 0), RangeError, 'ERR_OUT_OF_RANGE')
  const missing = path.join(dir, 'missing.bin')
  const err = throwsWithCode(() => mmap.openSync(missing), Error, 'ENOENT')
  assert.equal(err.syscall, 'open')
  assert.equal(util.getSystemErrorName(err.errno), 'ENOENT', `the name this runtime gives errno ${err.errno}`)
  let fsErrno = null
  try {
    fs.openSync(missing, 'r')
  } catch (fsErr) {
    fsErrno = fsErr.errno
  }
  assert.equal(err.errno, fsErrno, "errno, as fs.openSync's")
  assert.equal(err.path, missing)
  throwsWithCode(() => mmap.unmap(Buffer.alloc(8)), TypeError, 'ERR_MMAP_NOT_A_MAPPING')
})

check('a dropped Buffer and a dropped Mapping are unmapped once garbage-collected (finalizers)', async () => {
  const gc = gcFunction()
  assert.ok(gc, 'no gc() here: start Node with --expose-gc, Deno with --v8-flags=--expose-gc')
  const { file: bufFile } = randomFile('dropped-buffers.bin', PAGESIZE)
  const { file: mapFile } = randomFile('dropped-mappings.bin', PAGESIZE)
  ;(() => {
    for (let i = 0; i < 8; i++) {
      mmap.openSync(bufFile)[0] // touched, then dropped
      mmap.Mapping.open(mapFile).read(0, 1)
    }
  })()
  expectMapped(bufFile, 8, 'eight Buffer mappings before GC')
  expectMapped(mapFile, 8, 'eight Mapping mappings before GC')
  const buffersGone = await collectUntil(() => mappedCount(bufFile) === 0, gc)
  const mappingsGone = await collectUntil(() => mappedCount(mapFile) === 0, gc)
  assert.ok(
    buffersGone && mappingsGone,
    `after 10 s of gc(): ${mappedCount(bufFile)} of 8 dropped Buffers and ` +
      `${mappedCount(mapFile)} of 8 dropped Mappings are still mapped`,
  )
})

// Checks in a child process of the same runtime: what they try can end a process.

let children = 0
/** Runs `source` as an ES module in a new process of this runtime, `mmap` loaded; returns spawnSync's result. */
function runChild(source, env = {}) {
  const file = path.join(dir, `child-${++children}.mjs`)
  const head =
    "import fs from 'node:fs'\nimport { createRequire } from 'node:module'\n" +
    `const mmap = createRequire(import.meta.url)(${JSON.stringify(root)})\nconst P = mmap.PAGESIZE\n`
  fs.writeFileSync(file, head + source)
  const args = typeof globalThis.Deno !== 'undefined' ? ['run', '-A', file] : [file]
  const command = [...execPrefix, process.execPath, ...args]
  const result = spawnSync(command[0], command.slice(1), { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } })
  if (result.error) throw result.error
  return result
}

function describe(result) {
  return `status ${result.status}, signal ${result.signal}\n  stdout: ${result.stdout.trim()}\n  stderr: ${result.stderr.trim()}`
}

check('a worker thread loads the addon, maps a file and writes to it; the main thread sees the write', async () => {
  const { file } = randomFile('worker.bin', PAGESIZE)
  const source = `
    const { parentPort, workerData } = require('node:worker_threads')
    const mmap = require(workerData.root)
    const buf = mmap.openSync(workerData.file, { mode: 'r+' })
    buf.write('written by a worker', 10, 'latin1')
    mmap.sync(buf, true)
    mmap.unmap(buf)
    parentPort.postMessage(buf.indexOf('written'))
  `
  const worker = new Worker(source, { eval: true, workerData: { root, file } })
  const [message, exitCode] = await new Promise((resolve, reject) => {
    let got
    worker.on('message', (m) => (got = m))
    worker.on('error', reject)
    worker.on('exit', (code) => resolve([got, code]))
  })
  assert.equal(exitCode, 0, 'the worker exits with 0')
  assert.equal(message, -1, 'the worker saw its Buffer read zeros after unmap()')
  assert.equal(fs.readFileSync(file).toString('latin1', 10, 29), 'written by a worker')
})

// Found by attack pass 5 on Bun, which finalizes a worker's Buffers after the thread's own
// destructors ran: node-mmap took that for an ordinary collection and unmapped for real, so the
// main thread's moved view then faulted, or wrote into whatever the kernel mapped there next.
check("memory a worker mapped and moved to the main thread (byte stream) reads zeros after the worker's end (or stays the file's, where the runtime keeps it alive), and no later mapping is touched through it", async () => {
  const { file, bytes } = randomFile('moved.bin', PAGESIZE)
  const source = `
    const { parentPort, workerData } = require('node:worker_threads')
    const mmap = require(workerData.root)
    const buf = mmap.openSync(workerData.file, { mode: 'r+' })
    let controller
    const stream = new ReadableStream({ type: 'bytes', start(c) { controller = c } })
    controller.enqueue(buf)
    stream.getReader().read().then(({ value }) => parentPort.postMessage(value, [value.buffer]))
  `
  const worker = new Worker(source, { eval: true, workerData: { root, file } })
  const [moved, exitCode] = await new Promise((resolve, reject) => {
    let got
    worker.on('message', (m) => (got = m))
    worker.on('error', reject)
    worker.on('exit', (code) => resolve([got, code]))
  })
  assert.equal(exitCode, 0, 'the worker exits with 0')
  assert.equal(moved.length, PAGESIZE, 'the moved view keeps its length')
  await new Promise((resolve) => setTimeout(resolve, 50))
  // Later mappings, then a write through the stale view: it must land in the placeholder.
  const later = Array.from({ length: 16 }, () => mmap.map(PAGESIZE, RW(), mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1).fill(0x11))
  // Node and Bun finalize a worker's Buffers at its end: the memory is then the zero-filled
  // placeholder. Deno keeps the memory alive while another thread holds it: it is still the
  // file's. Either way it is never another mapping's.
  const zeros = moved.every((b) => b === 0)
  const stillTheFile = Buffer.from(moved.buffer, moved.byteOffset, moved.length).equals(bytes)
  assert.ok(zeros || stillTheFile, 'the moved memory reads zeros (or, kept alive, the file)')
  moved.fill(0x58)
  assert.equal(later.every((b) => b.every((x) => x === 0x11)), true, 'no later mapping changed')
  const expected = zeros ? bytes : Buffer.alloc(PAGESIZE, 0x58)
  assert.equal(fs.readFileSync(file).equals(expected), true, 'the write went where the memory is (placeholder, or the file)')
  for (const b of later) mmap.unmap(b)
})

// Found by attack pass 5 on Deno, which finalizes none of a worker's objects when it ends with
// Node-API work pending: everything the worker mapped stayed mapped (and resident).
check('workers that end with a flush() and an open() pending leave none of their mappings behind', async () => {
  const { file } = randomFile('pending.bin', 4 * PAGESIZE)
  const source = `
    const { workerData } = require('node:worker_threads')
    const mmap = require(workerData.root)
    const kept = [mmap.openSync(workerData.file, { mode: 'r+' }), mmap.Mapping.open(workerData.file)]
    kept[0][0] = 1
    mmap.flush(kept[0]).catch(() => {})
    mmap.open(workerData.file).catch(() => {})
    globalThis.kept = kept
    process.exit(0)
  `
  for (let i = 0; i < 4; i++) {
    const worker = new Worker(source, { eval: true, workerData: { root, file } })
    await new Promise((resolve, reject) => {
      worker.on('error', reject)
      worker.on('exit', resolve)
    })
  }
  const gc = gcFunction()
  const gone = await collectUntil(() => mappedCount(file) === 0, gc ?? (() => {}))
  assert.ok(gone, `${mappedCount(file)} mappings of the file left by ended workers`)
})

check('`using m = Mapping.open(...)` unmaps at the end of the block (where the runtime has `using`)', () => {
  let block
  try {
    block = new Function('Mapping', 'file', 'let seen; { using m = Mapping.open(file); seen = m; } return seen')
  } catch (err) {
    console.log(`    (no \`using\` declarations in this runtime: ${err.message}; Symbol.dispose checked instead)`)
    const { file } = randomFile('dispose.bin', PAGESIZE)
    const m = mmap.Mapping.open(file)
    assert.equal(typeof m[Symbol.dispose], 'function')
    m[Symbol.dispose]()
    assert.equal(m.unmapped, true)
    return
  }
  const { file } = randomFile('using.bin', PAGESIZE)
  const m = block(mmap.Mapping, file)
  assert.equal(m.unmapped, true)
  expectMapped(file, 0, 'the file is no longer mapped')
})

check('exit with live mappings (child): exit code kept, MAP_SHARED writes are in the file', () => {
  const { file } = randomFile('exit.bin', 2 * PAGESIZE)
  const result = runChild(`
    const buf = mmap.openSync(${JSON.stringify(file)}, { mode: 'r+' })
    const m = mmap.Mapping.open(${JSON.stringify(file)}, { mode: 'r+' })
    buf.write('left mapped', 0, 'latin1')
    m.write(Buffer.from('mapping too'), P)
    process.exit(3)
  `)
  assert.equal(result.signal, null, describe(result))
  assert.equal(result.status, 3, describe(result))
  const bytes = fs.readFileSync(file)
  assert.equal(bytes.toString('latin1', 0, 11), 'left mapped')
  assert.equal(bytes.toString('latin1', PAGESIZE, PAGESIZE + 11), 'mapping too')
})

check('SIGBUS (child): a page lost to truncation reads as 0 and is counted by faults() (Windows: the truncation is refused, nothing is lost)', () => {
  const { file } = randomFile('sigbus.bin', 2 * PAGESIZE)
  if (windows) {
    // Windows cuts no file shorter than a view of it: fs says UNKNOWN (errno -4094), and every
    // byte stays, in the view and in the file.
    fs.writeFileSync(file, Buffer.alloc(2 * PAGESIZE, 7))
    const buf = mmap.openSync(file, { mode: 'r+' })
    const err = throwsWithCode(() => fs.truncateSync(file, PAGESIZE), Error, 'UNKNOWN')
    assert.equal(err.errno, -4094)
    assert.ok(buf.every((b) => b === 7), 'the view keeps every byte')
    assert.equal(mmap.faults(buf), 0)
    mmap.unmap(buf)
    assert.ok(fs.readFileSync(file).equals(Buffer.alloc(2 * PAGESIZE, 7)), 'the file keeps every byte')
    return
  }
  const result = runChild(`
    fs.writeFileSync(${JSON.stringify(file)}, Buffer.alloc(2 * P, 7))
    const buf = mmap.openSync(${JSON.stringify(file)}, { mode: 'r+' })
    fs.truncateSync(${JSON.stringify(file)}, P)
    const lost = buf[P + 10]
    console.log(JSON.stringify({ kept: buf[10], lost, faults: mmap.faults(buf) }))
  `)
  assert.equal(result.signal, null, `the process was killed: ${describe(result)}`)
  assert.equal(result.status, 0, describe(result))
  assert.deepEqual(JSON.parse(result.stdout), { kept: 7, lost: 0, faults: 1 }, describe(result))
})

// After protect(), recovery reads /proc/self/maps in the handler: on Deno's 8 KiB signal stack
// (~2.7 KiB of it the signal frame on a CPU with AVX-512) that is what once died by SIGSEGV.
// Every lost page is read, so the count is 3 whether one recovery replaced the whole lost tail
// (pages 2 and 3, as on Linux) or each page on its own (as under qemu-user).
const AFTER_PROTECT = (file) => `
    fs.writeFileSync(${JSON.stringify(file)}, Buffer.alloc(4 * P, 7))
    const buf = mmap.openSync(${JSON.stringify(file)}, { mode: 'r+' })
    mmap.protect(buf, P, P, mmap.PROT_READ)
    fs.truncateSync(${JSON.stringify(file)}, P)
    console.log(JSON.stringify({ kept: buf[10], lost: [buf[2 * P + 1], buf[P + 3], buf[3 * P + 5]], faults: mmap.faults(buf) }))
  `

check('SIGBUS after protect() (child): lost pages read as 0, with the rights protect() gave them', () => {
  if (windows) return skip('a mapped file cannot be truncated on Windows (the check above shows it)')
  const { file } = randomFile('sigbus-protect.bin', PAGESIZE)
  const result = runChild(AFTER_PROTECT(file))
  assert.equal(result.signal, null, `the process was killed: ${describe(result)}`)
  assert.equal(result.status, 0, describe(result))
  assert.deepEqual(JSON.parse(result.stdout), { kept: 7, lost: [0, 0, 0], faults: 3 }, describe(result))
})

check('NODE_MMAP_TEST_SMALL_SIGSTACK is in force (child): with 256 bytes the same recovery overflows its stack', () => {
  if (windows) return skip('a switch of the Unix signal handlers; Windows has no signal stack')
  const { file } = randomFile('sigbus-control.bin', PAGESIZE)
  const result = runChild(AFTER_PROTECT(file), { NODE_MMAP_TEST_SMALL_SIGSTACK: '256' })
  assert.equal(result.signal, 'SIGSEGV', describe(result))
})

check("SIGSEGV (child): a write to a PROT_READ mapping ends the process with node-mmap's diagnostic (Windows: an access violation, status 0xC0000005)", () => {
  const result = runChild(`
    const buf = mmap.map(P, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    buf[5] = 1
    console.log('survived')
  `)
  if (windows) {
    assert.equal(result.status, 0xc0000005, describe(result))
    assert.doesNotMatch(result.stdout, /survived/, describe(result))
    assert.match(result.stderr, /node-mmap: EXCEPTION_ACCESS_VIOLATION at offset 5 of a 4096-byte mapping \(PROT_READ\): a write/, describe(result))
    return
  }
  assert.equal(result.signal, 'SIGSEGV', describe(result))
  assert.match(result.stderr, /node-mmap: SIGSEGV/, describe(result))
})

check('WebAssembly (child): an out-of-bounds access still throws a RuntimeError with our handlers installed', () => {
  // (module (memory 1) (func (export "load") (param i32) (result i32) local.get 0 i32.load))
  const result = runChild(`
    const bytes = new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f,
      0x03, 0x02, 0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x08, 0x01, 0x04, 0x6c, 0x6f, 0x61,
      0x64, 0x00, 0x00, 0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x28, 0x02, 0x00, 0x0b,
    ])
    const mapped = mmap.map(P, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    const { instance } = await WebAssembly.instantiate(bytes)
    const out = { inBounds: instance.exports.load(8) }
    try {
      instance.exports.load(70000)
      out.outOfBounds = 'no throw'
    } catch (err) {
      out.outOfBounds = err instanceof WebAssembly.RuntimeError ? 'RuntimeError' : String(err)
    }
    out.stillMapped = mapped[0]
    console.log(JSON.stringify(out))
  `)
  assert.equal(result.signal, null, `the process was killed: ${describe(result)}`)
  assert.equal(result.status, 0, describe(result))
  assert.deepEqual(JSON.parse(result.stdout), { inBounds: 0, outOfBounds: 'RuntimeError', stillMapped: 0 }, describe(result))
})

// Found by attack pass 14 on Bun, where a program can raise buffer.constants.MAX_LENGTH: map()
// past the largest Buffer Bun makes kept its mapping when Bun refused the Buffer, and remap()
// lost the bytes it had moved. Where the constant cannot be changed (Node), nothing changes.
check('a raised buffer.constants.MAX_LENGTH (child): map() and remap() past what the runtime makes keep nothing mapped and lose no byte', () => {
  if (windows) return skip('counts kernel mappings in /proc/self/maps')
  const result = runChild(`
    try { (await import('node:buffer')).constants.MAX_LENGTH = 2 ** 53 - 1 } catch {}
    const maps = () => fs.readFileSync('/proc/self/maps', 'latin1').split(String.fromCharCode(10)).length
    const before = maps()
    const out = {}
    try {
      const big = mmap.map(5 * 2 ** 30, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_NORESERVE, -1)
      out.map = big.length === 5 * 2 ** 30
      mmap.unmap(big)
    } catch (e) {
      out.map = 'refused'
    }
    const buf = mmap.map(P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1).fill(0x42)
    try {
      const grown = mmap.remap(buf, 5 * 2 ** 30)
      out.remap = grown.length === 5 * 2 ** 30 && grown[0] === 0x42
      mmap.unmap(grown)
    } catch (e) {
      out.remap = 'refused'
      out.kept = buf.every((b) => b === 0x42)
      mmap.unmap(buf)
    }
    out.extraMaps = maps() - before
    console.log(JSON.stringify(out))
  `)
  assert.equal(result.status, 0, describe(result))
  const out = JSON.parse(result.stdout)
  assert.ok(out.map === true || out.map === 'refused', describe(result))
  assert.ok(out.remap === true || (out.remap === 'refused' && out.kept === true), describe(result))
  // Only a refusal must leave nothing behind (what succeeded leaves its placeholders until
  // their views are collected, and the runtime grows too).
  if (out.map === 'refused' || out.remap === 'refused') {
    assert.ok(out.extraMaps <= 8, `${out.extraMaps} more kernel mappings: ${describe(result)}`)
  }
})

// Errors that reject a Promise are made when the work ends, with no JavaScript running: Bun
// gave them no `stack` at all.
check('errors that reject open() and waitAsync() have a stack, as every Error does', async () => {
  const missing = path.join(dir, 'no-such-file')
  const opened = await mmap.open(missing).then(() => null, (err) => err)
  assert.ok(opened instanceof Error, 'open() of a missing file rejects')
  assert.equal(opened.code, 'ENOENT')
  assert.equal(typeof opened.stack, 'string', `open() error stack: ${opened.stack}`)
  assert.ok(opened.stack.startsWith(`Error: ENOENT: no such file or directory, open '${missing}'`), opened.stack)
  const buf = mmap.map(PAGESIZE, RW(), mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
  const pending = mmap.waitAsync(buf, 0, 0).then(() => null, (err) => err)
  await new Promise((resolve) => setTimeout(resolve, 20))
  mmap.unmap(buf)
  const waited = await pending
  assert.ok(waited instanceof Error, 'waitAsync() rejects when its mapping is unmapped')
  // Windows: no waits yet, and the rejection says so (README).
  const code = windows ? 'ENOTSUP' : 'ERR_MMAP_UNMAPPED'
  assert.equal(waited.code, code)
  assert.equal(typeof waited.stack, 'string', `waitAsync() error stack: ${waited.stack}`)
  assert.ok(waited.stack.startsWith(windows ? 'Error: ENOTSUP: ' : 'Error [ERR_MMAP_UNMAPPED]: '), waited.stack)
})

let passed = 0
let failed = 0
let skipped = 0
const smallStack = process.env.NODE_MMAP_TEST_SMALL_SIGSTACK
console.log(
  `node-mmap smoke test on ${runtime()} (${process.platform}-${process.arch})` +
    (smallStack ? `, handlers on a small signal stack (NODE_MMAP_TEST_SMALL_SIGSTACK=${smallStack})` : ''),
)
for (const { name, fn } of checks) {
  try {
    const result = await fn()
    if (result instanceof Skip) {
      skipped++
      console.log(`ok - ${name} # SKIP ${result.reason}`)
      continue
    }
    passed++
    console.log(`ok - ${name}`)
  } catch (err) {
    failed++
    console.log(`FAIL - ${name}`)
    console.log(String((err && err.stack) || err).replace(/^/gm, '    '))
    if (err && 'expected' in err) console.log(`    expected: ${JSON.stringify(err.expected)}\n    actual:   ${JSON.stringify(err.actual)}`)
  }
}
fs.rmSync(dir, { recursive: true, force: true })
console.log(`smoke: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped (each with its reason)` : ''}`)
process.exitCode = failed ? 1 : 0
