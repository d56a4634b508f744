'use strict'
// The helpers every node:test suite shares. Not a test file itself (the name matches none of
// node --test's patterns).
//
// The oracles live here: /proc/self/maps and /proc/self/smaps parsed into entries, a second
// Node process, and strace(1) watching a child's system calls. None of them asks node-mmap
// anything.

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const v8 = require('node:v8')
const vm = require('node:vm')

/** The package root: what `require('..')` loads, and what child processes require. */
const PACKAGE = path.resolve(__dirname, '..')

// --- Files ------------------------------------------------------------------------------------

/**
 * A fresh temporary directory, removed when `t` ends: a test or suite context, or node:test's
 * `test` itself (its `after` hook runs when the file's tests end).
 */
function tempDir(t, prefix = 'node-mmap-test-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  t.after(() => {
    try {
      fs.rmSync(dir, { recursive: true, force: true })
    } catch (err) {
      // Windows deletes no file that is still open or mapped (a descriptor closed by a later
      // hook, a view not yet collected): try once more as the process exits, quietly.
      if (process.platform !== 'win32') throw err
      process.once('exit', () => {
        try {
          fs.rmSync(dir, { recursive: true, force: true })
        } catch {}
      })
    }
  })
  return dir
}

/** Writes `bytes` to a new file in `dir` and returns its path. */
function fileWith(dir, name, bytes) {
  const file = path.join(dir, name)
  fs.writeFileSync(file, bytes)
  return file
}

/**
 * A file of `bytes` (a Buffer, or a size to fill with zeros) in `dir`, open with `flags`.
 * Returns `{ path, fd }`; the fd is closed when `t` ends.
 */
function tempFile(t, dir, name, bytes, flags = 'r+') {
  const file = fileWith(dir, name, typeof bytes === 'number' ? Buffer.alloc(bytes) : bytes)
  const fd = fs.openSync(file, flags)
  t.after(() => {
    try {
      fs.closeSync(fd)
    } catch {}
  })
  return { path: file, fd }
}

/** A new file `name` in `dir` of `size` random bytes: { file, bytes } (bytes, read back, is the oracle's copy). */
function randomFileIn(dir, name, size) {
  const file = fileWith(dir, name, randomBytes(size))
  return { file, bytes: fs.readFileSync(file) }
}

/**
 * A file of `size` bytes of `pattern(size, seed)` in a fresh temporary directory, open 'r+' and
 * mapped whole, read-write, with `flags` (MAP_SHARED unless given); unmapped when `t` ends if
 * `unmap`. `mmap` is the module under test. Returns `{ path, fd, bytes, buf }`.
 */
function mapTempFile(t, mmap, name, size, { seed = 1, flags = mmap.MAP_SHARED, unmap = false } = {}) {
  const dir = tempDir(t)
  const bytes = pattern(size, seed)
  const file = tempFile(t, dir, name, bytes)
  const buf = mmap.map(size, mmap.PROT_READ | mmap.PROT_WRITE, flags, file.fd, 0)
  if (unmap) t.after(() => mmap.unmap(buf))
  return { ...file, bytes, buf }
}

/** `n` bytes of a repeatable pattern that differs between pages and within them. */
function pattern(n, seed = 1) {
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff
  return out
}

// --- /proc/self -------------------------------------------------------------------------------

/** The lines of /proc/self/maps (the kernel's own list of this process's mappings). */
function mapsLines() {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter(Boolean)
}

/** /proc/self/maps (or smaps) as entries: `{ start, end, perms, offset, path, line, fields }`. */
function procEntries(which = 'maps') {
  const text = fs.readFileSync(`/proc/self/${which}`, 'utf8')
  const entries = []
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+\s*(.*)$/.exec(line)
    if (head) {
      entries.push({
        start: BigInt('0x' + head[1]),
        end: BigInt('0x' + head[2]),
        perms: head[3],
        offset: BigInt('0x' + head[4]),
        path: head[5],
        line,
        fields: {},
      })
      continue
    }
    const field = /^(\w+):\s+(\d+) kB$/.exec(line)
    if (field && entries.length) entries[entries.length - 1].fields[field[1]] = Number(field[2])
  }
  return entries
}

/**
 * The mappings of `file` in /proc/self/maps, parsed:
 * { start, end, length, perms, offset } with BigInt addresses and Number length/offset.
 */
function mappingsOf(file) {
  const out = []
  for (const line of mapsLines()) {
    const fields = line.trim().split(/\s+/)
    // address perms offset dev inode pathname
    if (fields.length < 6 || fields.slice(5).join(' ') !== file) continue
    const [start, end] = fields[0].split('-').map((hex) => BigInt('0x' + hex))
    out.push({
      start,
      end,
      length: Number(end - start),
      perms: fields[1],
      offset: Number(BigInt('0x' + fields[2])),
    })
  }
  return out
}

/** The smaps entries of a file, by path. */
function smapsOf(file) {
  return procEntries('smaps').filter((e) => e.path === file)
}

/** The sum of an smaps field (in kB) over the entries of a file. */
function smapsSum(file, field) {
  return smapsOf(file).reduce((sum, e) => sum + (e.fields[field] ?? 0), 0)
}

/** Dirty kB of a file's mappings in this process. */
function dirtyKB(file) {
  return smapsSum(file, 'Shared_Dirty') + smapsSum(file, 'Private_Dirty')
}

/**
 * The smaps entry of an anonymous private mapping of exactly `sizeKB` that sits between two
 * `---p` guard pages (see `guardedAnonymous`). Anonymous VMAs have no name and the kernel merges
 * neighbours, so the guards are what make the entry findable; exactly one must match.
 */
function guardedSmaps(sizeKB) {
  const all = procEntries('smaps')
  const found = []
  for (let i = 1; i < all.length - 1; i++) {
    const e = all[i]
    if (e.perms !== 'rw-p' || e.path !== '' || e.fields.Size !== sizeKB) continue
    const before = all[i - 1]
    const after = all[i + 1]
    if (before.end === e.start && before.perms === '---p' && after.start === e.end && after.perms === '---p') {
      found.push(e)
    }
  }
  assert.equal(found.length, 1, `exactly one guarded ${sizeKB} kB anonymous mapping in /proc/self/smaps`)
  return found[0]
}

/**
 * A private anonymous mapping of `pages` pages between two PROT_NONE guard pages, so that its
 * smaps entry is its own. Returns `{ whole, view }`: `view` is the usable middle.
 */
function guardedAnonymous(mmap, pages) {
  const P = mmap.PAGESIZE
  const whole = mmap.map((pages + 2) * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  mmap.protect(whole, 0, P, mmap.PROT_NONE)
  mmap.protect(whole, (pages + 1) * P, P, mmap.PROT_NONE)
  return { whole, view: whole.subarray(P, (pages + 1) * P) }
}

/** The targets of this process's open file descriptors (readlink of /proc/self/fd/*). */
function openFdTargets() {
  const out = []
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.push(fs.readlinkSync(`/proc/self/fd/${fd}`))
    } catch {
      // The fd of the readdir itself is gone by now.
    }
  }
  return out
}

// --- Garbage collection -----------------------------------------------------------------------

/** `gc()`, exposed for this process without a command-line flag. */
function exposeGc() {
  if (typeof globalThis.gc === 'function') return globalThis.gc
  v8.setFlagsFromString('--expose-gc')
  return vm.runInNewContext('gc')
}

/**
 * Polls `condition()` once per event-loop turn (a timer, so finalizers queued with
 * SetImmediate get to run), calling `gc()` before each check, until it returns true or
 * `timeoutMs` passes. Returns whether the condition came true. Nothing sleeps a fixed time.
 */
async function pollUntil(condition, { gc = null, timeoutMs = 10_000 } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (gc) gc()
    await new Promise(setImmediate)
    if (condition()) return true
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

// --- Child processes --------------------------------------------------------------------------

/**
 * The environment for a child: this one without the no-external-buffers switch, with the
 * package root on `NODE_MMAP_ROOT`, plus `env`.
 */
function childEnv(env = {}) {
  const base = { ...process.env }
  delete base.NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS
  delete base.NODE_MMAP_SIMULATE_NO_FUTEX_WAITV
  return { ...base, NODE_MMAP_ROOT: PACKAGE, ...env }
}

/**
 * Runs `node <args>` (this same binary) to completion; returns status, signal, stdout, stderr.
 * `shell`: shell commands (`ulimit ...`) run first, in a /bin/sh that then execs node.
 */
function runNode(args, { env, cwd = PACKAGE, timeout = 120_000, input, shell } = {}) {
  const command = shell ? '/bin/sh' : process.execPath
  const argv = shell ? ['-c', `${shell}; exec "$0" "$@"`, process.execPath, ...args] : args
  const result = spawnSync(command, argv, {
    cwd,
    encoding: 'utf8',
    env: childEnv(env),
    timeout,
    input,
    maxBuffer: 64 * 1024 * 1024,
  })
  if (result.error) throw result.error
  return result
}

/** A CommonJS script for a child `node`: `MMAP` in it is the package's module path. */
function scriptSource(source) {
  return `'use strict'\nconst MMAP = ${JSON.stringify(PACKAGE)}\n${source}`
}

/** Runs a CommonJS script in a child `node` (see `scriptSource`); options as `runNode`'s. */
function runScript(source, { args = [], nodeArgs = [], ...options } = {}) {
  return runNode([...nodeArgs, '-e', scriptSource(source), '--', ...args], options)
}

/**
 * Why a child `node` under `ulimit -d <kib>` cannot run `probe` (plain JavaScript, no node-mmap:
 * what a test does before it calls the library), or null when it can. Node 24's V8 reserves more
 * at startup, and dies under limits that Node 18-22 run under: then the test cannot tell
 * node-mmap's allocations from V8's, and says so by skipping.
 */
function dataLimitUnavailable(kib, probe) {
  const r = runNode(['-e', probe], { shell: `ulimit -d ${kib}` })
  if (r.status === 0 && r.signal === null) return null
  return `this Node (${process.version}) cannot run the test's own setup under ulimit -d ${kib}, without node-mmap (status ${r.status}, signal ${r.signal})`
}

/** Asserts that a child ended normally with exit code `code` (stderr may say anything). */
function assertExited(result, code = 0) {
  const detail = `status ${result.status}, signal ${result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`
  assert.equal(result.error, undefined, `spawn failed: ${result.error}`)
  assert.equal(result.signal, null, `child was killed by a signal: ${detail}`)
  assert.equal(result.status, code, `child exit code: ${detail}`)
}

/** Asserts that a child ended normally with exit code `code` and said nothing on stderr. */
function assertCleanExit(result, code = 0) {
  assertExited(result, code)
  const detail = `status ${result.status}, signal ${result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`
  assert.equal(result.stderr, '', `child wrote to stderr: ${detail}`)
}

// --- strace -----------------------------------------------------------------------------------

let straceReason

/** Null when strace(1) can trace a child `node` here (installed, ptrace allowed); else why not. */
function straceUnavailable() {
  if (straceReason !== undefined) return straceReason
  const probe = spawnSync('strace', ['-f', '-e', 'trace=none', '-o', '/dev/null', process.execPath, '-e', '0'], {
    encoding: 'utf8',
  })
  if (probe.error) straceReason = `strace is not installed (${probe.error.code}): apt-get install strace`
  else if (probe.status !== 0) straceReason = `strace cannot trace here: ${probe.stderr.trim()}`
  else straceReason = null
  return straceReason
}

/**
 * Runs a CommonJS script (see `scriptSource`) in a child `node` under
 * `strace -e trace=<syscalls>` (and `-f`, every thread, unless `threads` is false) and returns
 * { result, lines }: the child's result and the trace's lines (pid prefix removed).
 */
function straceScript(source, syscalls, { args = [], env, threads = true, timeout = 60_000 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-strace-'))
  try {
    const out = path.join(dir, 'trace.txt')
    const traceArgs = ['-e', `trace=${syscalls}`, '-o', out]
    if (threads) traceArgs.unshift('-f')
    const result = spawnSync(
      'strace',
      [...traceArgs, process.execPath, '-e', scriptSource(source), '--', ...args],
      { cwd: PACKAGE, encoding: 'utf8', env: childEnv(env), timeout },
    )
    if (result.error) throw result.error
    const lines = fs
      .readFileSync(out, 'utf8')
      .split('\n')
      .map((line) => line.replace(/^\d+\s+/, ''))
      .filter(Boolean)
    return { result, lines }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Child-side prelude for `traceCalls`: `mmap` is node-mmap, `report(file)` prints where that
 * file is mapped (from /proc/self/maps) as the line `RANGE <start> <end>` for the parent.
 */
const TRACE_PRELUDE = `
const mmap = require(MMAP)
const fs = require('node:fs')
function report(file) {
  const lines = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file))
  if (lines.length !== 1) throw new Error('expected one maps line for ' + file + ': ' + lines.join('; '))
  const [start, end] = lines[0].split(' ')[0].split('-')
  console.log('RANGE ' + start + ' ' + end)
}
`

/**
 * Runs `source` (after TRACE_PRELUDE) in a child under strace, tracing `syscalls` (in every
 * thread too when `threads`, for work on the libuv pool), and returns the calls whose first
 * argument (an address) falls in the range the child reported:
 * `[{ name, offset, length, arg, result }]`, `offset` from the start of that range, `arg` the
 * third argument with its flags sorted, in the order they were made.
 */
function traceCalls(source, syscalls, { threads = false } = {}) {
  const { result, lines } = straceScript(TRACE_PRELUDE + source, syscalls.join(','), { threads, timeout: 120_000 })
  assertExited(result)
  const range = /^RANGE ([0-9a-f]+) ([0-9a-f]+)$/m.exec(result.stdout)
  assert.ok(range, `the child reported its mapping: ${result.stdout}`)
  const start = BigInt('0x' + range[1])
  const end = BigInt('0x' + range[2])
  const calls = []
  for (const line of lines) {
    // A call another traced call interrupted shows as "<unfinished ...>" and "<... resumed>":
    // callers keep traced calls sequential.
    const call = /^(\w+)\((0x[0-9a-f]+), (\d+)(?:, ([^)]*))?\)\s+= (-?\d+)/.exec(line)
    if (!call || !syscalls.includes(call[1])) continue
    const addr = BigInt(call[2])
    if (addr < start || addr >= end) continue
    calls.push({
      name: call[1],
      offset: Number(addr - start),
      length: Number(call[3]),
      arg: call[4] === undefined ? undefined : call[4].split('|').sort().join('|'),
      result: Number(call[5]),
    })
  }
  const interrupted = lines.filter((l) => /unfinished|resumed/.test(l) && syscalls.some((s) => l.includes(s)))
  assert.deepEqual(interrupted, [], 'no traced call was interrupted by another')
  return { calls, stdout: result.stdout, stderr: result.stderr }
}

// --- Errors -----------------------------------------------------------------------------------

/**
 * Calls `fn` and checks the whole error it throws: its class (exactly), and every property in
 * `props` (`code`, `message`, `errno`, `syscall`, ...). An argument error (no `errno` in
 * `props`) must carry no `errno` and no `syscall`. Returns the error.
 */
function assertThrowsExactly(fn, Class, props) {
  let thrown = null
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown, `expected a ${Class.name} ${props.code ?? ''} to be thrown`)
  assertErrorShape(thrown, Class, props)
  return thrown
}

/** As `assertThrowsExactly`, for a Promise that must reject. */
async function assertRejectsExactly(promise, Class, props) {
  assert.ok(promise instanceof Promise, 'expected a Promise')
  let rejected = null
  try {
    await promise
  } catch (err) {
    rejected = err
  }
  assert.ok(rejected, `expected a rejection with ${props.code ?? Class.name}`)
  assertErrorShape(rejected, Class, props)
  return rejected
}

function assertErrorShape(err, Class, props) {
  assert.equal(Object.getPrototypeOf(err), Class.prototype, `class of ${err && err.stack}`)
  assert.equal(err?.constructor, Class, `error class: ${err && err.stack}`)
  assert.ok(err instanceof Class)
  for (const [key, value] of Object.entries(props)) {
    assert.deepEqual(err[key], value, `err.${key} of ${err.stack}`)
  }
  if (!('errno' in props)) {
    assert.equal(err.errno, undefined, 'an argument error has no errno')
    assert.equal(err.syscall, undefined, 'an argument error has no syscall')
  }
}

/** The error Node's own fs gives for `fn` (the oracle for system-call error shapes). */
function fsError(fn) {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('the fs oracle did not fail')
}

/** Node's own rendering of a received number in ERR_OUT_OF_RANGE (`4_294_967_297`). */
function nodeReceived(n) {
  // Buffer#readUInt8 throws ERR_OUT_OF_RANGE for any offset but 0 on every Node version (Node
  // 18's Buffer.alloc throws ERR_INVALID_ARG_VALUE above 4 GiB instead) and allocates nothing.
  try {
    Buffer.alloc(1).readUInt8(n)
  } catch (err) {
    if (err.code === 'ERR_OUT_OF_RANGE') return err.message.slice(err.message.indexOf('Received ') + 9)
  }
  return String(n)
}

// --- Windows ------------------------------------------------------------------------------------

/**
 * How many mappings of `file` the process holds: its entries in /proc/self/maps. Windows has no
 * /proc; it cuts no file shorter while a view of it exists (README), so there 1 if cutting the
 * file one byte shorter is refused, else 0 (and the byte is put back).
 */
function mappingCountOf(file) {
  if (process.platform !== 'win32') return mappingsOf(file).length
  const fd = fs.openSync(file, 'r+')
  try {
    const { size } = fs.fstatSync(fd)
    const last = Buffer.alloc(1)
    fs.readSync(fd, last, 0, 1, size - 1)
    try {
      fs.ftruncateSync(fd, size - 1)
    } catch (err) {
      if (err.code === 'UNKNOWN') return 1 // ERROR_USER_MAPPED_FILE
      throw err
    }
    fs.writeSync(fd, last, 0, 1, size - 1)
    return 0
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * A test's `skip` option for a test that cannot apply on Windows: `reason` there, false
 * elsewhere (`test(name, { skip: notOnWindows('why') }, fn)`), so nothing changes on Linux.
 */
function notOnWindows(reason) {
  return process.platform === 'win32' && reason
}

module.exports = {
  notOnWindows,
  mappingCountOf,
  dataLimitUnavailable,
  PACKAGE,
  tempDir,
  fileWith,
  tempFile,
  randomFileIn,
  mapTempFile,
  pattern,
  mapsLines,
  procEntries,
  mappingsOf,
  smapsOf,
  smapsSum,
  dirtyKB,
  guardedSmaps,
  guardedAnonymous,
  openFdTargets,
  exposeGc,
  pollUntil,
  childEnv,
  runNode,
  runScript,
  scriptSource,
  assertExited,
  assertCleanExit,
  straceUnavailable,
  straceScript,
  traceCalls,
  assertThrowsExactly,
  assertRejectsExactly,
  fsError,
  nodeReceived,
}
