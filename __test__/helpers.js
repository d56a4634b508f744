'use strict'
// Shared helpers for the node:test suites. Not a test file itself (the name matches none of
// node --test's patterns).

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const v8 = require('node:v8')
const vm = require('node:vm')

/** The package root: what `require('..')` loads, and what child processes require. */
const PACKAGE = path.resolve(__dirname, '..')

/** A fresh temporary directory, removed when the file's tests end (pass node:test's `after`). */
function tempDir(after) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-test-'))
  after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Writes `bytes` to a new file in `dir` and returns its path. */
function fileWith(dir, name, bytes) {
  const file = path.join(dir, name)
  fs.writeFileSync(file, bytes)
  return file
}

/** The lines of /proc/self/maps (the kernel's own list of this process's mappings). */
function mapsLines() {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter(Boolean)
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

/** Runs `node <args>` (this same binary) to completion; returns status, signal, stdout, stderr. */
function runNode(args, { env = {}, timeout = 60_000, input } = {}) {
  // Children start from this environment minus the test switch, plus what the test asks for.
  const base = { ...process.env }
  delete base.NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS
  const result = spawnSync(process.execPath, args, {
    encoding: 'utf8',
    env: { ...base, ...env },
    timeout,
    input,
    maxBuffer: 64 * 1024 * 1024,
  })
  if (result.error) throw result.error
  return result
}

/** Runs a CommonJS script in a child `node`; `MMAP` in it is the package's module path. */
function runScript(source, { args = [], nodeArgs = [], env, timeout } = {}) {
  const script = `'use strict'\nconst MMAP = ${JSON.stringify(PACKAGE)}\n${source}`
  return runNode([...nodeArgs, '-e', script, '--', ...args], { env, timeout })
}

/** Asserts that a child ended normally with `code` and said nothing on stderr. */
function assertCleanExit(result, code = 0) {
  const detail = `status ${result.status}, signal ${result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`
  assert.equal(result.signal, null, `child was killed by a signal: ${detail}`)
  assert.equal(result.status, code, `child exit code: ${detail}`)
  assert.equal(result.stderr, '', `child wrote to stderr: ${detail}`)
}

module.exports = {
  PACKAGE,
  tempDir,
  fileWith,
  mapsLines,
  mappingsOf,
  exposeGc,
  pollUntil,
  runNode,
  runScript,
  assertCleanExit,
}
