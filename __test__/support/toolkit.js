'use strict'
// Shared helpers for the toolkit suites (unmap, remap, advise, incore, sync, flush, lock,
// protect). Not a test file itself: `node --test __test__/` only runs `*.test.js`.
//
// The oracles live here: /proc/self/maps and /proc/self/smaps parsed into entries, a second
// Node process, and strace(1) watching a child's system calls. None of them asks node-mmap
// anything.

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..', '..')

/** A fresh temporary directory, removed when `t` (a test or suite context) ends. */
function tempDir(t, prefix = 'node-mmap-toolkit-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A file of `bytes` (a Buffer, or a size to fill with zeros) in `dir`, open with `flags`.
 * Returns `{ path, fd }`; the fd is closed when `t` ends.
 */
function tempFile(t, dir, name, bytes, flags = 'r+') {
  const file = path.join(dir, name)
  fs.writeFileSync(file, typeof bytes === 'number' ? Buffer.alloc(bytes) : bytes)
  const fd = fs.openSync(file, flags)
  t.after(() => {
    try {
      fs.closeSync(fd)
    } catch {}
  })
  return { path: file, fd }
}

/** `n` bytes of a repeatable pattern that differs between pages and within them. */
function pattern(n, seed = 1) {
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff
  return out
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

/** The maps entries of a file, by path. */
function mapsOf(file) {
  return procEntries('maps').filter((e) => e.path === file)
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

/**
 * Calls `fn` and checks the whole error it throws: its class (exactly), and every property in
 * `props` (`code`, `message`, `errno`, `syscall`, ...). An argument error (no `errno` in
 * `props`) must carry no `errno` and no `syscall`.
 */
function throwsExactly(fn, Class, props) {
  let thrown = null
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  assert.ok(thrown, `expected a ${Class.name} ${props.code ?? ''} to be thrown`)
  checkError(thrown, Class, props)
  return thrown
}

/** As `throwsExactly`, for a Promise that must reject. */
async function rejectsExactly(promise, Class, props) {
  let rejected = null
  try {
    await promise
  } catch (err) {
    rejected = err
  }
  assert.ok(rejected, `expected a rejection with ${props.code ?? Class.name}`)
  checkError(rejected, Class, props)
  return rejected
}

function checkError(err, Class, props) {
  assert.equal(err?.constructor, Class, `error class: ${err && err.stack}`)
  assert.ok(err instanceof Class)
  for (const [key, value] of Object.entries(props)) {
    assert.deepEqual(err[key], value, `error.${key}`)
  }
  if (!('errno' in props)) {
    assert.equal(err.errno, undefined, 'an argument error has no errno')
    assert.equal(err.syscall, undefined, 'an argument error has no syscall')
  }
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

/** `node -e <source>` with node-mmap's root on `NODE_MMAP_ROOT`; returns spawnSync's result. */
function runNode(source, { args = [], nodeArgs = [], env = {}, timeout = 120_000, shell } = {}) {
  const command = shell ? '/bin/sh' : process.execPath
  const argv = shell
    ? ['-c', `${shell}; exec "$0" "$@"`, process.execPath, ...nodeArgs, '-e', source, ...args]
    : [...nodeArgs, '-e', source, ...args]
  return spawnSync(command, argv, {
    encoding: 'utf8',
    env: { ...process.env, NODE_MMAP_ROOT: ROOT, ...env },
    timeout,
    maxBuffer: 64 << 20,
  })
}

/** Fails with the child's output when it did not exit 0. */
function assertExitedZero(result) {
  assert.equal(
    result.error,
    undefined,
    `spawn failed: ${result.error}`,
  )
  assert.deepEqual(
    { status: result.status, signal: result.signal },
    { status: 0, signal: null },
    `child failed:\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
  )
}

/** Whether strace(1) can trace a child here. */
const straceAvailable = (() => {
  const probe = spawnSync('strace', ['-o', '/dev/null', '-e', 'trace=none', process.execPath, '-e', '0'], {
    encoding: 'utf8',
  })
  return probe.status === 0
})()

/**
 * Child-side prelude for `traceCalls`: `mmap` is node-mmap, `report(file)` prints where that
 * file is mapped (from /proc/self/maps) as the line `RANGE <start> <end>` for the parent.
 */
const TRACE_PRELUDE = `
const mmap = require(process.env.NODE_MMAP_ROOT)
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
function traceCalls(t, source, syscalls, { threads = false } = {}) {
  const dir = tempDir(t, 'node-mmap-strace-')
  const out = path.join(dir, 'trace')
  const args = ['-o', out, '-e', `trace=${syscalls.join(',')}`]
  if (threads) args.unshift('-f')
  const result = spawnSync('strace', [...args, process.execPath, '-e', TRACE_PRELUDE + source], {
    encoding: 'utf8',
    env: { ...process.env, NODE_MMAP_ROOT: ROOT },
    timeout: 120_000,
  })
  assertExitedZero(result)
  const range = /^RANGE ([0-9a-f]+) ([0-9a-f]+)$/m.exec(result.stdout)
  assert.ok(range, `the child reported its mapping: ${result.stdout}`)
  const start = BigInt('0x' + range[1])
  const end = BigInt('0x' + range[2])
  const calls = []
  const lines = fs.readFileSync(out, 'utf8').split('\n')
  for (const line of lines) {
    // With -f each line starts with the thread id. A call another traced call interrupted
    // shows as "<unfinished ...>" and "<... resumed>": callers keep traced calls sequential.
    const call = /^(?:\d+\s+)?(\w+)\((0x[0-9a-f]+), (\d+)(?:, ([^)]*))?\)\s+= (-?\d+)/.exec(line)
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

module.exports = {
  ROOT,
  tempDir,
  tempFile,
  pattern,
  procEntries,
  mapsOf,
  smapsOf,
  smapsSum,
  dirtyKB,
  guardedSmaps,
  guardedAnonymous,
  throwsExactly,
  rejectsExactly,
  nodeReceived,
  runNode,
  assertExitedZero,
  straceAvailable,
  traceCalls,
}
