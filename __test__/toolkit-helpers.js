'use strict'
// Helpers shared by the toolkit suites (open, mapping, esm, types, compat). Not a test file
// itself: its name matches none of node --test's patterns.

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

/** The package root: what `require('..')` loads and what child processes require. */
const PACKAGE = path.resolve(__dirname, '..')

/** A fresh temporary directory, removed when the file's tests end (pass node:test's `after`). */
function tempDir(after) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-toolkit-'))
  after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * The mappings of `file` in /proc/self/maps (the kernel's own list), parsed:
 * { start, end, length, perms, offset } with BigInt addresses and Number length/offset.
 */
function mappingsOf(file) {
  const out = []
  for (const line of fs.readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/)
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

/** The "Locked:" sizes in kB of every mapping of `file` in /proc/self/smaps. */
function lockedKbOf(file) {
  const out = []
  let mine = false
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      mine = line.trim().split(/\s+/).slice(5).join(' ') === file
    } else if (mine && line.startsWith('Locked:')) {
      out.push(Number(line.split(/\s+/)[1]))
    }
  }
  return out
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

/** The environment for a child: this one without the no-external-buffers switch, plus `env`. */
function childEnv(env = {}) {
  const base = { ...process.env }
  delete base.NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS
  return { ...base, ...env }
}

/** Runs `node <args>` (this same binary) to completion; returns status, signal, stdout, stderr. */
function runNode(args, { env, cwd = PACKAGE, timeout = 60_000 } = {}) {
  const result = spawnSync(process.execPath, args, {
    cwd,
    encoding: 'utf8',
    env: childEnv(env),
    timeout,
    maxBuffer: 64 * 1024 * 1024,
  })
  if (result.error) throw result.error
  return result
}

/** Runs a CommonJS script in a child `node`; `MMAP` in it is the package's path. */
function runScript(source, { args = [], env, timeout } = {}) {
  const script = `'use strict'\nconst MMAP = ${JSON.stringify(PACKAGE)}\n${source}`
  return runNode(['-e', script, '--', ...args], { env, timeout })
}

/** Asserts that a child ended normally with exit code 0 and wrote nothing to stderr. */
function assertCleanExit(result) {
  const detail = `status ${result.status}, signal ${result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`
  assert.equal(result.signal, null, `child was killed by a signal: ${detail}`)
  assert.equal(result.status, 0, `child exit code: ${detail}`)
  assert.equal(result.stderr, '', `child wrote to stderr: ${detail}`)
}

/** Whether `strace` runs here (installed, and ptrace allowed); a reason string when not. */
function straceUnavailable() {
  const probe = spawnSync('strace', ['-f', '-e', 'trace=none', '-o', '/dev/null', 'true'], {
    encoding: 'utf8',
  })
  if (probe.error) return `strace is not installed (${probe.error.code}): apt-get install strace`
  if (probe.status !== 0) return `strace cannot trace here: ${probe.stderr.trim()}`
  return null
}

/**
 * Runs a CommonJS script in a child `node` under `strace -f -e trace=<syscalls>` and returns
 * { result, lines }: the child's result and the trace's lines (pid prefix removed).
 */
function straceScript(source, syscalls, { args = [], env } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-strace-'))
  try {
    const out = path.join(dir, 'trace.txt')
    const script = `'use strict'\nconst MMAP = ${JSON.stringify(PACKAGE)}\n${source}`
    const result = spawnSync(
      'strace',
      ['-f', '-e', `trace=${syscalls}`, '-o', out, process.execPath, '-e', script, '--', ...args],
      { cwd: PACKAGE, encoding: 'utf8', env: childEnv(env), timeout: 60_000 },
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
 * Asserts that `fn` throws an error of exactly `Class` whose own fields include `fields`
 * (code, errno, syscall, path, message, ...). Returns the error.
 */
function assertThrowsExactly(fn, Class, fields) {
  let caught = null
  try {
    fn()
  } catch (err) {
    caught = err
  }
  assert.ok(caught, 'expected a throw')
  assertErrorShape(caught, Class, fields)
  return caught
}

/** Like assertThrowsExactly, for a Promise that must reject. */
async function assertRejectsExactly(promise, Class, fields) {
  assert.ok(promise instanceof Promise, 'expected a Promise')
  let caught = null
  await promise.then(
    () => {},
    (err) => {
      caught = err
    },
  )
  assert.ok(caught, 'expected a rejection')
  assertErrorShape(caught, Class, fields)
  return caught
}

function assertErrorShape(err, Class, fields) {
  assert.equal(Object.getPrototypeOf(err), Class.prototype, `class of ${err && err.stack}`)
  for (const [key, value] of Object.entries(fields)) {
    assert.deepEqual(err[key], value, `err.${key} of ${err.stack}`)
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

module.exports = {
  PACKAGE,
  tempDir,
  mappingsOf,
  lockedKbOf,
  openFdTargets,
  childEnv,
  runNode,
  runScript,
  assertCleanExit,
  straceUnavailable,
  straceScript,
  assertThrowsExactly,
  assertRejectsExactly,
  fsError,
}
