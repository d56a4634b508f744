'use strict'
// Fault survival: SIGBUS recovery when a mapped file is truncated, setSigbusRecovery(false),
// the SIGSEGV diagnostic, chaining to the handlers installed before ours (V8's WebAssembly trap
// handler), worker threads, and unmap() leaving the fault table.
//
// Children inherit NODE_MMAP_TEST_SMALL_SIGSTACK (see "small alternate signal stack" below):
// `NODE_MMAP_TEST_SMALL_SIGSTACK=4096 node --test __test__/faults.test.js` runs every scenario
// with the handlers on a small signal stack.
//
// Every scenario that can kill a process runs in a child `node` (core dumps off) and is judged
// by its exit status, its signal, its stderr and what it printed on stdout (one JSON line).
// Oracles that do not ask node-mmap: fs.readFileSync / fs.statSync of the file (read by this
// process after the child is gone), /proc/self/maps and /proc/self/status (SigCgt), and a child
// that never loads node-mmap.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const mmap = require('..')
const { PACKAGE, tempDir, childEnv, runScript, assertExited, notOnWindows } = require('./helpers.js')

const P = mmap.PAGESIZE
const RW = mmap.PROT_READ | mmap.PROT_WRITE
const ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS

/** `n` bytes of a pattern with no zero byte (so a zero read can only come from a lost page). */
function pattern(n) {
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) out[i] = 1 + ((i * 31 + (i >> 12) * 17) % 255)
  return out
}

/** A file of `pages` pages of `pattern` in a fresh temporary directory. */
function patternFile(t, name, pages = 4) {
  const dir = tempDir(t)
  const file = path.join(dir, name)
  fs.writeFileSync(file, pattern(pages * P))
  return file
}

// What every child script starts with. `report(value)` prints the one JSON line the parent
// reads; `sigCaught(signo)` reads the kernel's SigCgt mask of this process.
const PRELUDE = `'use strict'
const PACKAGE = ${JSON.stringify(PACKAGE)}
const fs = require('node:fs')
const { spawnSync } = require('node:child_process')
function report(value) { process.stdout.write(JSON.stringify(value) + '\\n') }
function sigCaught(signo) {
  const line = fs.readFileSync('/proc/self/status', 'utf8').split('\\n').find((l) => l.startsWith('SigCgt:'))
  return ((BigInt('0x' + line.split(/\\s+/)[1]) >> BigInt(signo - 1)) & 1n) === 1n
}
/** Truncates from another process. */
function truncateElsewhere(file, size) {
  const r = spawnSync(process.execPath, ['-e', 'require("fs").truncateSync(process.argv[1], +process.argv[2])', file, String(size)])
  if (r.status !== 0) throw new Error('truncating child failed: ' + r.stderr)
}
`

/**
 * Runs `source` (after PRELUDE, with `ARGS` bound to `args`) in a child `node` with core dumps
 * off. Returns { status, signal, stdout, stderr }. A child that hangs is killed and fails the
 * test (recovery that loops on the same fault would hang).
 */
function child(source, { args = {}, nodeArgs = [], cwd, env: extraEnv = {} } = {}) {
  const script = `${PRELUDE}const ARGS = ${JSON.stringify(args)}\n${source}`
  const env = childEnv(extraEnv)
  delete env.NODE_OPTIONS
  const result = spawnSync(
    '/bin/sh',
    ['-c', 'ulimit -c 0 2>/dev/null; exec "$0" "$@"', process.execPath, ...nodeArgs, '-e', script],
    { encoding: 'utf8', env, cwd, timeout: 30_000, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
  )
  if (result.error) throw result.error
  if (result.signal === 'SIGKILL') assert.fail(`child hung (killed after 30 s)\nstdout: ${result.stdout}\nstderr: ${result.stderr}`)
  return result
}

function detail(r) {
  return `status ${r.status}, signal ${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`
}

/** Asserts the child exited 0 with an empty stderr; returns its last stdout line, parsed. */
function survived(r) {
  assert.equal(r.signal, null, `the child must survive: ${detail(r)}`)
  assert.equal(r.status, 0, `the child must exit 0: ${detail(r)}`)
  assert.equal(r.stderr, '', `the child wrote to stderr: ${detail(r)}`)
  const lines = r.stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1])
}

/** Asserts the child died by `signal`; returns its stderr. */
function diedBy(r, signal) {
  assert.equal(r.signal, signal, `the child must die by ${signal}: ${detail(r)}`)
  assert.equal(r.status, null)
  return r.stderr
}

/** Parses the one diagnostic line: { signal, offset, length, path, protection, cause }. */
function diagnostic(stderr) {
  const m = /^node-mmap: (SIGBUS|SIGSEGV) at offset (\d+) of a (\d+)-byte mapping(?: of '(.*)')? \(([A-Z_ |]+)\): (.*)\. The process cannot continue\.\n$/.exec(
    stderr,
  )
  assert.ok(m, `stderr must be exactly one node-mmap diagnostic line, got: ${JSON.stringify(stderr)}`)
  return { signal: m[1], offset: Number(m[2]), length: Number(m[3]), path: m[4] ?? null, protection: m[5], cause: m[6] }
}

const SEGV_WRITE = 'a write to memory mapped without PROT_WRITE'
const SEGV_READ = 'a read of memory mapped without PROT_READ'

function segvLine(offset, length, file, protection, cause) {
  const of = file === null ? '' : ` of '${file}'`
  return `node-mmap: SIGSEGV at offset ${offset} of a ${length}-byte mapping${of} (${protection}): ${cause}. The process cannot continue.\n`
}

// ---------------------------------------------------------------------------------------------
// 1. Truncation survival
// ---------------------------------------------------------------------------------------------

// Maps `ARGS.file` (4 pages, read-write, MAP_SHARED) through `ARGS.api` and defines
// readAt(i), writeAt(i, v), page0(), faults() (the mapping's count) and viewFaults() (the
// module's faults() on another view of the same memory).
const OPEN_BY_API = `
const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const { api, file } = ARGS
let readAt, writeAt, page0, faults, viewFaults, handle
if (api === 'map' || api === 'openSync') {
  let buf
  if (api === 'map') {
    const fd = fs.openSync(file, 'r+')
    buf = mmap.map(4 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
    fs.closeSync(fd)
  } else {
    buf = mmap.openSync(file, { mode: 'r+' })
  }
  readAt = (i) => buf[i]
  writeAt = (i, v) => { buf[i] = v }
  page0 = () => Buffer.from(buf.subarray(0, P)).toString('hex')
  faults = () => mmap.faults(buf)
  viewFaults = () => mmap.faults(new Uint8Array(buf.buffer, buf.byteOffset + 3 * P, 10))
} else {
  handle = mmap.Mapping.open(file, { mode: 'r+' })
  // Mapping's copies refuse lost pages (ERR_MMAP_LOST_PAGES, after the fault that found them
  // was survived); what is there is then seen through a view.
  const lostOnly = (fn, fallback) => {
    try { return fn() } catch (err) { if (err.code !== 'ERR_MMAP_LOST_PAGES') throw err; return fallback() }
  }
  readAt = (i) => lostOnly(() => handle.read(i, 1)[0], () => handle.view(i, 1)[0])
  writeAt = (i, v) => lostOnly(() => { if (handle.write(Buffer.of(v), i) !== 1) throw new Error('short write') }, () => { handle.view(i, 1)[0] = v })
  page0 = () => handle.read(0, P).toString('hex')
  faults = () => handle.faults
  viewFaults = () => mmap.faults(handle.view(3 * P, 10))
}
`

describe('truncation survival (SIGBUS recovery)', () => {
  for (const api of ['map', 'openSync', 'Mapping.open']) {
    for (const truncator of ['this process (ftruncate)', 'another process']) {
      it(`${api}: truncated by ${truncator}: lost pages read 0, the lost tail is replaced and counted at the first fault, writes stay out of the file`, (t) => {
        const file = patternFile(t, 'four-pages.bin')
        const r = child(
          `${OPEN_BY_API}
const out = {}
let sum = 0
for (let i = 0; i < 4 * P; i += 1024) sum += readAt(i) // every page resident and healthy
out.healthy = faults()
if (ARGS.elsewhere) truncateElsewhere(file, P)
else { const fd = fs.openSync(file, 'r+'); fs.ftruncateSync(fd, P); fs.closeSync(fd) }
out.sizeAfterTruncate = fs.statSync(file).size
out.page0 = page0()
out.page0Faults = faults()
out.lost1 = [readAt(P), readAt(P + 1), readAt(2 * P - 1)]
out.afterPage1 = faults()
out.lost3 = [readAt(3 * P + 17), readAt(4 * P - 1)]
out.afterPage3 = faults()
writeAt(2 * P + 9, 0xab) // the first access to page 2 is a write
out.afterWrite = faults()
out.readBack = readAt(2 * P + 9)
writeAt(P + 3, 0xcd) // a write to a page already replaced
out.readBack1 = readAt(P + 3)
out.end = faults()
out.viewFaults = viewFaults()
out.sizeEnd = fs.statSync(file).size
report(out)`,
          { args: { api, file, elsewhere: truncator === 'another process' } },
        )
        const out = survived(r)
        assert.equal(out.healthy, 0, 'faults() of a healthy mapping')
        assert.equal(out.sizeAfterTruncate, P)
        const disk = fs.readFileSync(file)
        assert.equal(out.page0, disk.toString('hex'), 'the intact page reads what fs reads')
        assert.equal(out.page0, pattern(P).toString('hex'))
        assert.equal(out.page0Faults, 0, 'reading the intact page counts nothing')
        assert.deepEqual(out.lost1, [0, 0, 0], 'a lost page reads 0')
        // Every page past the new end is lost: the first fault replaces pages 1-3 at once.
        assert.equal(out.afterPage1, 3, 'the first fault replaces and counts the whole lost tail')
        assert.deepEqual(out.lost3, [0, 0])
        assert.equal(out.afterPage3, 3, 'pages already replaced count nothing more')
        assert.equal(out.afterWrite, 3, 'a write to a replaced page counts nothing more')
        assert.equal(out.readBack, 0xab, 'the write landed in the replacement page')
        assert.equal(out.readBack1, 0xcd)
        assert.equal(out.end, 3, 'three lost pages in all')
        assert.equal(out.viewFaults, 3, 'mmap.faults() of another view of the same mapping')
        assert.equal(out.sizeEnd, P, 'writes to lost pages do not grow the file')
        // After the child: the file is still one page of its own bytes, and growing it again
        // shows zeros where the child wrote (the writes never reached the file).
        assert.deepEqual(fs.readFileSync(file), pattern(P))
        fs.truncateSync(file, 4 * P)
        assert.deepEqual(fs.readFileSync(file).subarray(P), Buffer.alloc(3 * P))
      })
    }
  }

  // Mapping's copies know where they copy, so they tell: bytes that land on (or come from)
  // pages lost to truncation are refused with ERR_MMAP_LOST_PAGES, never counted as done. A
  // write there went into the anonymous page that replaced the lost one, not to the file.
  it('native copies over lost pages survive: Mapping#read, #readInto, #write throw ERR_MMAP_LOST_PAGES; Buffer#copy/compare/indexOf read zeros', (t) => {
    const files = ['a', 'b', 'c', 'd', 'e'].map((name) => patternFile(t, `${name}.bin`))
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const [a, b, c, d, e] = ARGS.files
const out = {}
const ha = mmap.Mapping.open(a, { mode: 'r+' })
const hb = mmap.Mapping.open(b, { mode: 'r+' })
const hc = mmap.Mapping.open(c, { mode: 'r+' })
const bd = mmap.openSync(d, { mode: 'r+' })
const be = mmap.openSync(e, { mode: 'r+' })
for (const f of ARGS.files) fs.truncateSync(f, P)
const error = (fn) => { try { return { returned: fn() } } catch (err) { return { name: err.name, code: err.code, message: err.message, errno: err.errno } } }
out.read = { error: error(() => ha.read()), page0: ha.read(0, P).toString('hex'), faults: ha.faults, again: error(() => ha.read(P, 1)).code }
const target = Buffer.alloc(4 * P, 7)
out.readInto = { error: error(() => hb.readInto(target, 0)), page0: target.subarray(0, P).toString('hex'), restIsZero: target.subarray(P).every((x) => x === 0), faults: hb.faults }
out.write = { error: error(() => hc.write(Buffer.alloc(2 * P, 0xee), P + P / 2)), faults: hc.faults, intact: error(() => hc.write(Buffer.alloc(P, 0xee), 0)) }
const copy = Buffer.alloc(4 * P, 7)
out.copy = { copied: bd.copy(copy), restIsZero: copy.subarray(P).every((x) => x === 0), faults: mmap.faults(bd) }
out.compare = { cmp: Buffer.compare(be.subarray(P), Buffer.alloc(3 * P)), index: be.indexOf(1, P), faults: mmap.faults(be) }
out.sizes = ARGS.files.map((f) => fs.statSync(f).size)
report(out)`,
      { args: { files } },
    )
    const out = survived(r)
    const page0 = pattern(P).toString('hex')
    const lost = (what, count, from, detail) => ({
      name: 'Error',
      code: 'ERR_MMAP_LOST_PAGES',
      message: `Cannot ${what} ${count} bytes: the bytes from ${from} of them on lie on pages past the end of the file (lost to its truncation, or mapped past its end); ${detail} (see faults)`,
    })
    const zeros = 'what is read there is zeros, not the file'
    assert.deepEqual(out.read, { error: lost('read', 4 * P, P, zeros), page0, faults: 3, again: 'ERR_MMAP_LOST_PAGES' })
    assert.deepEqual(out.readInto, { error: lost('read', 4 * P, P, zeros), page0, restIsZero: true, faults: 3 })
    // The write covers half of page 1, all of page 2 and half of page 3: none of it is file.
    const nowhere = 'what lands there stays in anonymous memory and never reaches the file'
    assert.deepEqual(out.write, { error: lost('write', 2 * P, 0, nowhere), faults: 3, intact: { returned: P } })
    assert.deepEqual(out.copy, { copied: 4 * P, restIsZero: true, faults: 3 })
    assert.deepEqual(out.compare, { cmp: 0, index: -1, faults: 3 })
    assert.deepEqual(out.sizes, [P, P, P, P, P])
    const written = pattern(P)
    written.fill(0xee)
    for (const f of files) {
      assert.deepEqual(fs.readFileSync(f), f === files[2] ? written : pattern(P), 'the file keeps its first page, nothing more')
    }
  })

  // The case as found: a 100-byte file under a 3-page Mapping; a write of page 1 (past the end of
  // the file) returned 4096 and reached nothing.
  it('Mapping#write past the end of the file: ERR_MMAP_LOST_PAGES, not a count of bytes that went nowhere', (t) => {
    const dir = tempDir(t)
    const file = path.join(dir, 'short.bin')
    fs.writeFileSync(file, Buffer.alloc(100, 0x41))
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const m = new mmap.Mapping(3 * P, 3, mmap.MAP_SHARED, fs.openSync(ARGS.file, 'r+'))
const out = {}
try { out.returned = m.write(Buffer.alloc(P, 1), P) } catch (err) { out.error = { name: err.name, code: err.code, message: err.message } }
out.faults = m.faults
out.head = m.write(Buffer.from('BB'), 0)
try { m.write(Buffer.alloc(200, 2), 0) } catch (err) { out.straddle = err.message }
m.sync(true)
report(out)`,
      { args: { file } },
    )
    const out = survived(r)
    assert.deepEqual(out.error, {
      name: 'Error',
      code: 'ERR_MMAP_LOST_PAGES',
      message: `Cannot write ${P} bytes: the bytes from 0 of them on lie on pages past the end of the file (lost to its truncation, or mapped past its end); what lands there stays in anonymous memory and never reaches the file (see faults)`,
    })
    assert.equal(out.returned, undefined)
    assert.equal(out.faults, 2)
    assert.equal(out.head, 2)
    // Bytes 0..199 of a 100-byte file in page 0 of the mapping: the page is the file's, bytes
    // past its end are in it but never in the file. Not lost pages: no error.
    assert.equal(out.straddle, undefined)
    const expected = Buffer.alloc(100, 2)
    assert.deepEqual(fs.readFileSync(file), expected, 'the file is as long as it was')
  })

  it('MAP_PRIVATE file mappings recover too', (t) => {
    const file = patternFile(t, 'private.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const buf = mmap.openSync(ARGS.file, { shared: false })
truncateElsewhere(ARGS.file, P)
report({ lost: buf[2 * P + 1], faults: mmap.faults(buf), page0: Buffer.from(buf.subarray(0, P)).toString('hex') })`,
      { args: { file } },
    )
    // Pages 2 and 3 (the lost tail) replaced at once.
    assert.deepEqual(survived(r), { lost: 0, faults: 2, page0: pattern(P).toString('hex') })
  })

  it("a replaced page keeps the mapping's protection: a write to a lost page of a PROT_READ mapping still dies by SIGSEGV", (t) => {
    const file = patternFile(t, 'read-only.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const buf = mmap.openSync(ARGS.file) // mode 'r': PROT_READ
truncateElsewhere(ARGS.file, P)
report({ lost: buf[2 * P + 1], faults: mmap.faults(buf) })
buf[2 * P + 1] = 1
report('survived the write')`,
      { args: { file } },
    )
    const stderr = diedBy(r, 'SIGSEGV')
    assert.deepEqual(JSON.parse(r.stdout.trim()), { lost: 0, faults: 2 })
    assert.equal(stderr, segvLine(2 * P + 1, 4 * P, file, 'PROT_READ', SEGV_WRITE))
  })

  it("a replaced page keeps a protect()ed range's protection", (t) => {
    const file = patternFile(t, 'protected-lost.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const buf = mmap.openSync(ARGS.file, { mode: 'r+' })
mmap.protect(buf, P, 3 * P, mmap.PROT_READ)
truncateElsewhere(ARGS.file, P)
report({ lost: buf[2 * P + 1], faults: mmap.faults(buf) })
buf[2 * P + 1] = 1
report('survived the write')`,
      { args: { file } },
    )
    diedBy(r, 'SIGSEGV')
  })

  it('faults() is 0 for healthy mappings and throws ERR_MMAP_NOT_A_MAPPING for other memory', (t) => {
    const file = patternFile(t, 'healthy.bin')
    const fd = fs.openSync(file, 'r+')
    t.after(() => fs.closeSync(fd))
    const shared = mmap.map(4 * P, RW, mmap.MAP_SHARED, fd)
    const opened = mmap.openSync(file)
    const anon = mmap.map(2 * P, RW, ANON, -1)
    const handle = mmap.Mapping.open(file)
    t.after(() => {
      mmap.unmap(shared)
      mmap.unmap(opened)
      mmap.unmap(anon)
      handle.unmap()
    })
    anon.fill(3)
    assert.equal(shared.reduce((s, x) => s + x, 0), pattern(4 * P).reduce((s, x) => s + x, 0))
    for (const view of [shared, shared.subarray(P), opened, anon, anon.buffer, new DataView(anon.buffer, 5), handle.view()]) {
      assert.equal(mmap.faults(view), 0)
    }
    assert.equal(handle.faults, 0)
    for (const other of [Buffer.alloc(16), new Uint8Array(16), new ArrayBuffer(16), new DataView(new ArrayBuffer(16)), new Float64Array(2)]) {
      assert.throws(() => mmap.faults(other), (err) => err instanceof TypeError && err.code === 'ERR_MMAP_NOT_A_MAPPING')
    }
    for (const notAView of [undefined, null, 0, 'buffer', {}, [1, 2]]) {
      assert.throws(() => mmap.faults(notAView), (err) => err instanceof TypeError && err.code === 'ERR_INVALID_ARG_TYPE')
    }
  })
})

describe('huge pages (SIGBUS recovery)', () => {
  const noHugeTlb = process.platform !== 'linux' || !fs.existsSync('/sys/kernel/mm/hugepages')
    ? 'huge pages (MAP_HUGETLB) are Linux only, and need hugetlb support (/sys/kernel/mm/hugepages)'
    : null
  it('a huge page the pool cannot give (MAP_NORESERVE) reads as zeros, whole, and is counted', { skip: noHugeTlb ?? false }, () => {
    // The child first takes every free huge page (the count is system-wide, so it maps and
    // touches them all), then touches a MAP_NORESERVE huge-page mapping: the kernel has no page
    // for it and raises SIGBUS, and the handler must replace the whole huge page (the kernel
    // refuses to replace less).
    const r = child(`
      const mmap = require(PACKAGE)
      const RW = mmap.PROT_READ | mmap.PROT_WRITE
      const HUGE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_HUGETLB
      const free = () => Number(/^HugePages_Free:\\s+(\\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))[1])
      const held = []
      for (let n = free(); n > 0; n--) {
        const page = mmap.map(mmap.PAGESIZE, RW, HUGE, -1)
        page[0] = 1
        held.push(page)
      }
      const buf = mmap.map(3 * mmap.PAGESIZE, RW, HUGE | mmap.MAP_NORESERVE, -1)
      const before = free()
      const read = buf[2 * mmap.PAGESIZE + 5]
      buf[7] = 9
      report({ before, read, written: buf[7], faults: mmap.faults(buf), length: buf.length })
    `)
    assert.deepEqual(survived(r), { before: 0, read: 0, written: 9, faults: 1, length: 3 * P })
  })
})

// ---------------------------------------------------------------------------------------------
// 2. setSigbusRecovery(false)
// ---------------------------------------------------------------------------------------------

describe('setSigbusRecovery(false)', () => {
  function assertSigbusLine(stderr, { offset, file }) {
    const d = diagnostic(stderr)
    assert.equal(d.signal, 'SIGBUS')
    assert.equal(d.offset, offset)
    assert.equal(d.length, 4 * P)
    assert.equal(d.path, file)
    assert.equal(d.protection, 'PROT_READ | PROT_WRITE')
    assert.match(d.cause, /truncated/)
    assert.match(d.cause, /recovery is off/)
  }

  it('openSync (turned off before the first mapping): the access ends the child by SIGBUS with the diagnostic', (t) => {
    const file = patternFile(t, 'off-open.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
mmap.setSigbusRecovery(false)
const buf = mmap.openSync(ARGS.file, { mode: 'r+' })
fs.truncateSync(ARGS.file, P)
report('about to touch')
const x = buf[2 * P + 7]
report('survived: ' + x)`,
      { args: { file } },
    )
    assertSigbusLine(diedBy(r, 'SIGBUS'), { offset: 2 * P + 7, file })
    assert.equal(r.stdout, '"about to touch"\n', 'nothing runs after the access')
  })

  it('Mapping.open (turned off after mapping, truncated by another process): Mapping#read dies by SIGBUS', (t) => {
    const file = patternFile(t, 'off-handle.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const handle = mmap.Mapping.open(ARGS.file, { mode: 'r+' })
mmap.setSigbusRecovery(false)
truncateElsewhere(ARGS.file, P)
report('about to read')
const x = handle.read(3 * P + 11, 1)
report('survived: ' + x[0])`,
      { args: { file } },
    )
    assertSigbusLine(diedBy(r, 'SIGBUS'), { offset: 3 * P + 11, file })
    assert.equal(r.stdout, '"about to read"\n')
  })

  it('map(fd): dies by SIGBUS with the diagnostic (offset, length, recovery is off)', (t) => {
    const file = patternFile(t, 'off-map.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const fd = fs.openSync(ARGS.file, 'r+')
const buf = mmap.map(4 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
mmap.setSigbusRecovery(false)
fs.ftruncateSync(fd, P)
buf[P + 1] = 5
report('survived')`,
      { args: { file } },
    )
    const d = diagnostic(diedBy(r, 'SIGBUS'))
    assert.equal(d.offset, P + 1)
    assert.equal(d.length, 4 * P)
    assert.match(d.cause, /recovery is off/)
  })

  it('map(fd): the SIGBUS diagnostic names the file', (t) => {
    const file = patternFile(t, 'off-map-path.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const fd = fs.openSync(ARGS.file, 'r+')
const buf = mmap.map(4 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
mmap.setSigbusRecovery(false)
fs.ftruncateSync(fd, P)
buf[P + 1] = 5`,
      { args: { file } },
    )
    assert.equal(diagnostic(diedBy(r, 'SIGBUS')).path, file)
  })

  it('setSigbusRecovery(true) again restores survival', (t) => {
    const file = patternFile(t, 'on-again.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const buf = mmap.openSync(ARGS.file, { mode: 'r+' })
mmap.setSigbusRecovery(false)
mmap.setSigbusRecovery(true)
truncateElsewhere(ARGS.file, P)
report({ lost: [buf[P], buf[3 * P]], faults: mmap.faults(buf) })`,
      { args: { file } },
    )
    assert.deepEqual(survived(r), { lost: [0, 0], faults: 3 })
  })
})

// ---------------------------------------------------------------------------------------------
// 3. SIGSEGV inside a mapping: the diagnostic, then death by SIGSEGV
// ---------------------------------------------------------------------------------------------

describe('SIGSEGV in a mapping', () => {
  const at = P + 5

  it('a write to an openSync() read-only mapping: exactly the diagnostic line, then SIGSEGV', (t) => {
    const file = patternFile(t, 'ro-open.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const buf = mmap.openSync(ARGS.file)
buf[ARGS.at] = 1
report('survived')`,
      { args: { file, at } },
    )
    assert.equal(diedBy(r, 'SIGSEGV'), segvLine(at, 4 * P, file, 'PROT_READ', SEGV_WRITE))
    assert.equal(r.stdout, '')
    assert.deepEqual(fs.readFileSync(file), pattern(4 * P), 'the file is unchanged')
  })

  it('a write to a map(..., PROT_READ, MAP_SHARED, fd) mapping: offset, length, protection, cause', (t) => {
    const file = patternFile(t, 'ro-map.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const fd = fs.openSync(ARGS.file, 'r')
const buf = mmap.map(4 * mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd)
buf[ARGS.at] = 1
report('survived')`,
      { args: { file, at } },
    )
    const d = diagnostic(diedBy(r, 'SIGSEGV'))
    assert.deepEqual(
      { signal: d.signal, offset: d.offset, length: d.length, protection: d.protection, cause: d.cause },
      { signal: 'SIGSEGV', offset: at, length: 4 * P, protection: 'PROT_READ', cause: SEGV_WRITE },
    )
  })

  it('a write to a map(..., PROT_READ, MAP_SHARED, fd) mapping: the line names the file', (t) => {
    const file = patternFile(t, 'ro-map-path.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const fd = fs.openSync(ARGS.file, 'r')
const buf = mmap.map(4 * mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd)
buf[ARGS.at] = 1`,
      { args: { file, at } },
    )
    assert.equal(diedBy(r, 'SIGSEGV'), segvLine(at, 4 * P, file, 'PROT_READ', SEGV_WRITE))
  })

  it('a write to a protect()ed read-only range of a read-write mapping: SIGSEGV, path, offset, length, cause', (t) => {
    const file = patternFile(t, 'protected.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const buf = mmap.openSync(ARGS.file, { mode: 'r+' })
mmap.protect(buf, P, P, mmap.PROT_READ)
buf[0] = 9 // the other pages stay writable
buf[2 * P] = 9
report('wrote outside the range')
buf[ARGS.at] = 1
report('survived')`,
      { args: { file, at } },
    )
    const d = diagnostic(diedBy(r, 'SIGSEGV'))
    assert.equal(r.stdout, '"wrote outside the range"\n')
    assert.deepEqual(
      { signal: d.signal, offset: d.offset, length: d.length, path: d.path, cause: d.cause },
      { signal: 'SIGSEGV', offset: at, length: 4 * P, path: file, cause: SEGV_WRITE },
    )
  })

  it("a write to a protect()ed read-only range names the range's protection (PROT_READ)", (t) => {
    const file = patternFile(t, 'protected-name.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const buf = mmap.openSync(ARGS.file, { mode: 'r+' })
mmap.protect(buf, mmap.PAGESIZE, mmap.PAGESIZE, mmap.PROT_READ)
buf[ARGS.at] = 1`,
      { args: { file, at } },
    )
    assert.equal(diedBy(r, 'SIGSEGV'), segvLine(at, 4 * P, file, 'PROT_READ', SEGV_WRITE))
  })

  it('a read of a PROT_NONE mapping: "a read of memory mapped without PROT_READ"', (t) => {
    const file = patternFile(t, 'none.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const fd = fs.openSync(ARGS.file, 'r')
const buf = mmap.map(4 * mmap.PAGESIZE, mmap.PROT_NONE, mmap.MAP_SHARED, fd)
const x = buf[ARGS.at]
report('survived: ' + x)`,
      { args: { file, at } },
    )
    const d = diagnostic(diedBy(r, 'SIGSEGV'))
    assert.deepEqual(
      { signal: d.signal, offset: d.offset, length: d.length, protection: d.protection, cause: d.cause },
      { signal: 'SIGSEGV', offset: at, length: 4 * P, protection: 'PROT_NONE', cause: SEGV_READ },
    )
    assert.equal(r.stdout, '')
  })

  it('a read of a protect(PROT_NONE)ed range of a file mapping: SIGSEGV, path, offset, cause', (t) => {
    const file = patternFile(t, 'protected-none.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const buf = mmap.openSync(ARGS.file)
mmap.protect(buf, mmap.PAGESIZE, mmap.PAGESIZE, mmap.PROT_NONE)
const x = buf[ARGS.at]
report('survived: ' + x)`,
      { args: { file, at } },
    )
    const d = diagnostic(diedBy(r, 'SIGSEGV'))
    assert.deepEqual(
      { offset: d.offset, length: d.length, path: d.path, cause: d.cause },
      { offset: at, length: 4 * P, path: file, cause: SEGV_READ },
    )
  })

  it('an anonymous mapping: the line has no path', () => {
    const r = child(
      `const mmap = require(PACKAGE)
const buf = mmap.map(4 * mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
buf[ARGS.at] = 1
report('survived')`,
      { args: { at } },
    )
    assert.equal(diedBy(r, 'SIGSEGV'), segvLine(at, 4 * P, null, 'PROT_READ', SEGV_WRITE))
  })

  it('an anonymous PROT_NONE Mapping handle, read through Mapping#view: no path, a read', () => {
    const r = child(
      `const mmap = require(PACKAGE)
const h = new mmap.Mapping(3 * mmap.PAGESIZE, mmap.PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
const v = h.view()
const x = v[ARGS.at]
report('survived: ' + x)`,
      { args: { at: 2 * P + 3 } },
    )
    assert.equal(diedBy(r, 'SIGSEGV'), segvLine(2 * P + 3, 3 * P, null, 'PROT_NONE', SEGV_READ))
  })
})

// ---------------------------------------------------------------------------------------------
// 4. Chaining to the handlers installed before ours
// ---------------------------------------------------------------------------------------------

// (module (memory 1) (func (export "load") (param i32) (result i32) local.get 0 i32.load))
const WASM = `new Uint8Array([0,0x61,0x73,0x6d,1,0,0,0, 1,6,1,0x60,1,0x7f,1,0x7f, 3,2,1,0, 5,3,1,0,1,
  7,8,1,4,0x6c,0x6f,0x61,0x64,0,0, 0x0a,9,1,7,0,0x20,0,0x28,2,0,0x0b])`

const WASM_PROBE = `
const instance = new WebAssembly.Instance(new WebAssembly.Module(${WASM}))
const out = { inBounds: instance.exports.load(65532), oob: [] }
for (const addr of [65536, 65533, 1 << 20, 0x7fffffff, -1]) {
  try {
    out.oob.push({ addr, returned: instance.exports.load(addr) })
  } catch (err) {
    out.oob.push({ addr, class: err.constructor.name, isRuntimeError: err instanceof WebAssembly.RuntimeError, message: err.message })
  }
}
`

describe('chaining to the previous handlers', () => {
  it('handlers are installed by the first mapping, not by require()', () => {
    const r = child(`const mmap = require(PACKAGE)
const before = sigCaught(7) // SIGBUS: Node itself does not catch it on Linux
mmap.map(mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
report({ before, after: sigCaught(7), segv: sigCaught(11) })`)
    assert.deepEqual(survived(r), { before: false, after: true, segv: true })
  })

  it('a WebAssembly out-of-bounds access throws the same RuntimeError with our handler installed', () => {
    const without = survived(child(`${WASM_PROBE}\nreport({ ...out, bus: sigCaught(7) })`))
    const withUs = survived(
      child(`const mmap = require(PACKAGE)
const keep = mmap.map(4 * mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
keep[0] = 1
${WASM_PROBE}
report({ ...out, bus: sigCaught(7), keep: keep[0] })`),
    )
    assert.equal(without.bus, false, 'the baseline child has no SIGBUS handler')
    assert.equal(withUs.bus, true, 'our handlers are installed in the other child')
    assert.equal(withUs.keep, 1)
    assert.equal(withUs.inBounds, 0)
    assert.deepEqual(withUs.oob, without.oob, 'same outcome as without node-mmap')
    for (const o of withUs.oob) {
      assert.deepEqual(o, { addr: o.addr, class: 'RuntimeError', isRuntimeError: true, message: 'memory access out of bounds' })
    }
  })

  it('a WebAssembly out-of-bounds access in a worker that maps, while the main thread holds mappings', () => {
    const r = child(`const mmap = require(PACKAGE)
const { Worker } = require('node:worker_threads')
const keep = mmap.map(mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
const w = new Worker(\`const { parentPort } = require('node:worker_threads')
const mmap = require(\${JSON.stringify(PACKAGE)})
const keep = mmap.map(mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
\${${JSON.stringify(WASM_PROBE)}}
parentPort.postMessage(out)\`, { eval: true })
w.once('message', (out) => report(out))`)
    const out = survived(r)
    assert.equal(out.inBounds, 0)
    assert.equal(out.oob.length, 5)
    for (const o of out.oob) assert.equal(o.message, 'memory access out of bounds', JSON.stringify(o))
  })

  // No real fault outside every mapping can be provoked from JS without node-mmap's help or a
  // native addon of our own; signals sent with kill(2) reach the same handler.
  function killProbe(signal, { mmapLoaded, nodeArgs = [] }) {
    return child(
      `${mmapLoaded ? `const mmap = require(PACKAGE)
const keep = mmap.map(mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
if (!sigCaught(7)) throw new Error('handlers not installed')` : ''}
process.kill(process.pid, ARGS.signal)
report('survived ' + ARGS.signal)`,
      { args: { signal }, nodeArgs },
    )
  }

  it('process.kill(pid, SIGSEGV) ends the process by SIGSEGV, with no node-mmap line, as without us', () => {
    const without = killProbe('SIGSEGV', { mmapLoaded: false })
    assert.equal(diedBy(without, 'SIGSEGV'), '')
    const withUs = killProbe('SIGSEGV', { mmapLoaded: true })
    assert.equal(diedBy(withUs, 'SIGSEGV'), '')
    assert.equal(withUs.stdout, '')
  })

  it('process.kill(pid, SIGBUS) ends the process by SIGBUS, as without us', () => {
    const without = killProbe('SIGBUS', { mmapLoaded: false })
    assert.equal(diedBy(without, 'SIGBUS'), '')
    const withUs = killProbe('SIGBUS', { mmapLoaded: true })
    assert.equal(diedBy(withUs, 'SIGBUS'), '')
  })

  const noTrapHandlerFlag = process.allowedNodeEnvironmentFlags.has('--disable-wasm-trap-handler')
  it('with --disable-wasm-trap-handler, process.kill(pid, SIGSEGV) still ends the process by SIGSEGV', {
    skip: noTrapHandlerFlag ? false : `this Node (${process.version}) has no --disable-wasm-trap-handler`,
  }, () => {
    const nodeArgs = ['--disable-wasm-trap-handler']
    assert.equal(diedBy(killProbe('SIGSEGV', { mmapLoaded: false, nodeArgs }), 'SIGSEGV'), '')
    assert.equal(diedBy(killProbe('SIGSEGV', { mmapLoaded: true, nodeArgs }), 'SIGSEGV'), '')
  })
})

// ---------------------------------------------------------------------------------------------
// 5. Worker threads
// ---------------------------------------------------------------------------------------------

describe('worker threads', () => {
  it('a worker that loads node-mmap first, maps and truncates, survives; so does the main thread after it', (t) => {
    const file = patternFile(t, 'worker.bin')
    const file2 = patternFile(t, 'main-after-worker.bin')
    const r = child(
      `const { Worker } = require('node:worker_threads')
const w = new Worker(\`const { parentPort, workerData } = require('node:worker_threads')
const fs = require('node:fs')
const mmap = require(workerData.PACKAGE)
const P = mmap.PAGESIZE
const buf = mmap.openSync(workerData.file, { mode: 'r+' })
fs.truncateSync(workerData.file, P)
const out = { page0: Buffer.from(buf.subarray(0, P)).toString('hex'), lost: [buf[P], buf[2 * P + 1], buf[4 * P - 1]] }
buf[3 * P] = 4
out.faults = mmap.faults(buf)
parentPort.postMessage(out)\`, { eval: true, workerData: { PACKAGE, file: ARGS.file } })
w.once('message', (worker) => {
  w.once('exit', () => {
    const mmap = require(PACKAGE)
    const P = mmap.PAGESIZE
    const h = mmap.Mapping.open(ARGS.file2, { mode: 'r+' })
    fs.truncateSync(ARGS.file2, P)
    let code
    try { h.read(P, 3 * P) } catch (err) { code = err.code }
    report({ worker, main: { code, lost: h.view(P, 3 * P).every((x) => x === 0), faults: h.faults } })
  })
})`,
      { args: { file, file2 } },
    )
    const out = survived(r)
    assert.deepEqual(out.worker, { page0: fs.readFileSync(file).toString('hex'), lost: [0, 0, 0], faults: 3 })
    assert.equal(out.worker.page0, pattern(P).toString('hex'))
    assert.deepEqual(out.main, { code: 'ERR_MMAP_LOST_PAGES', lost: true, faults: 3 })
    assert.equal(fs.statSync(file).size, P)
  })

  it('the main thread survives truncation faults while workers map, fault and unmap in a loop', (t) => {
    const dir = tempDir(t)
    const r = child(
      `const mmap = require(PACKAGE)
const { Worker } = require('node:worker_threads')
const P = mmap.PAGESIZE
const WORKERS = 2
const PAGES = 64
const ctl = new Int32Array(new SharedArrayBuffer(4 * (1 + WORKERS))) // [stop, progress...]
const workerSource = \`const { parentPort, workerData } = require('node:worker_threads')
const fs = require('node:fs')
const path = require('node:path')
const mmap = require(workerData.PACKAGE)
const P = mmap.PAGESIZE
const ctl = new Int32Array(workerData.sab)
const file = path.join(workerData.dir, 'worker-' + workerData.index + '.bin')
let i = 0
const bad = []
let ownFaults = 0
while (Atomics.load(ctl, 0) === 0) {
  const a = mmap.map(P * (1 + (i % 3)), mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  a[a.length - 1] = 1
  if (i % 10 !== 0) mmap.unmap(a) // every tenth is left to the GC
  if (i % 20 === 0) {
    fs.writeFileSync(file, Buffer.alloc(2 * P, 9))
    const b = mmap.openSync(file, { mode: 'r+' })
    fs.truncateSync(file, P)
    if (b[P + (i % P)] !== 0 || b[0] !== 9 || mmap.faults(b) !== 1) bad.push({ i, lost: b[P], first: b[0], faults: mmap.faults(b) })
    ownFaults += mmap.faults(b)
    mmap.unmap(b)
  }
  Atomics.add(ctl, 1 + workerData.index, 1)
  i++
}
parentPort.postMessage({ iterations: i, ownFaults, bad })\`
const workers = []
for (let index = 0; index < WORKERS; index++) {
  workers.push(new Worker(workerSource, { eval: true, workerData: { PACKAGE, sab: ctl.buffer, index, dir: ARGS.dir } }))
}
const progress = () => Array.from({ length: WORKERS }, (_, k) => Atomics.load(ctl, 1 + k))
// Wait (no deadline: the parent's timeout catches a hang) until every worker is looping.
while (progress().some((n) => n < 5)) Atomics.wait(ctl, 0, 0, 1)
const start = progress()
const rounds = []
const file = require('node:path').join(ARGS.dir, 'main.bin')
const image = Buffer.alloc(PAGES * P)
for (let i = 0; i < image.length; i++) image[i] = 1 + (i % 251)
// Rounds go on until every worker has done 200 more iterations: the main thread's faults
// overlap the workers' map/unmap (fault-table updates) without any timing assumption.
for (let round = 0; round < 3 || progress().some((n, k) => n - start[k] < 200); round++) {
  fs.writeFileSync(file, image)
  const buf = mmap.openSync(file, { mode: 'r+' })
  fs.truncateSync(file, P)
  let zeros = 0
  let counted = true
  for (let page = 1; page < PAGES; page++) {
    if (buf[page * P + ((page * 97) % P)] === 0) zeros++
    // The first fault replaces the whole lost tail (pages 1 to PAGES - 1) and counts it.
    if (mmap.faults(buf) !== PAGES - 1) counted = false
  }
  rounds.push({ zeros, counted, faults: mmap.faults(buf), page0: buf.subarray(0, P).equals(image.subarray(0, P)) })
  mmap.unmap(buf)
}
Atomics.store(ctl, 0, 1)
Promise.all(workers.map((w) => new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })))
  .then((results) => report({ rounds, results }))`,
      { args: { dir } },
    )
    const out = survived(r)
    assert.ok(out.rounds.length >= 3)
    for (const round of out.rounds) {
      assert.deepEqual(round, { zeros: 63, counted: true, faults: 63, page0: true })
    }
    assert.equal(out.results.length, 2)
    for (const w of out.results) {
      assert.deepEqual(w.bad, [], 'every worker fault read 0 and was counted once')
      assert.ok(w.iterations >= 205)
      assert.equal(w.ownFaults, Math.ceil(w.iterations / 20))
    }
  })
})

// ---------------------------------------------------------------------------------------------
// 6. unmap() leaves the fault table
// ---------------------------------------------------------------------------------------------

describe('unmap and the fault table', () => {
  it('an unmapped Buffer: its file is no longer mapped; truncating it then touching the old Buffer reads zeros and counts nothing', (t) => {
    const a = patternFile(t, 'unmapped-buffer.bin')
    const b = patternFile(t, 'unmapped-handle.bin')
    const c = patternFile(t, 'still-live.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const mapsOf = (file) => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file)).length
const out = {}
const buf = mmap.openSync(ARGS.a, { mode: 'r+' })
const tail = buf.subarray(P)
out.mappedBefore = mapsOf(ARGS.a)
mmap.unmap(buf)
out.mappedAfter = mapsOf(ARGS.a)
truncateElsewhere(ARGS.a, P)
out.buffer = { length: buf.length, lost: String(buf[2 * P]), tailLength: tail.length, tail: String(tail[0]), faults: mmap.faults(buf), tailFaults: mmap.faults(tail) }

const h = mmap.Mapping.open(ARGS.b, { mode: 'r+' })
const view = h.view()
h.unmap()
out.handleMappedAfter = mapsOf(ARGS.b)
fs.truncateSync(ARGS.b, P)
let readError = null
try { h.read(P, 1) } catch (err) { readError = err.code }
out.handle = { viewLength: view.length, lost: String(view[2 * P]), faults: h.faults, viewFaults: mmap.faults(view), readError }

// The handler still works in this process: a live mapping counts its lost page.
const live = mmap.openSync(ARGS.c, { mode: 'r+' })
fs.truncateSync(ARGS.c, P)
out.live = { lost: live[3 * P], faults: mmap.faults(live) }
report(out)`,
      { args: { a, b, c } },
    )
    const out = survived(r)
    assert.equal(out.mappedBefore, 1)
    assert.equal(out.mappedAfter, 0, 'unmap() took the file out of this process')
    // The old views keep their length and read the placeholder's zeros: no fault to count.
    assert.deepEqual(out.buffer, { length: 4 * P, lost: '0', tailLength: 3 * P, tail: '0', faults: 0, tailFaults: 0 })
    assert.equal(out.handleMappedAfter, 0)
    assert.deepEqual(out.handle, { viewLength: 4 * P, lost: '0', faults: 0, viewFaults: 0, readError: 'ERR_MMAP_UNMAPPED' })
    assert.deepEqual(out.live, { lost: 0, faults: 1 })
  })

  it('after unmap() and GC, a new mapping (often at the same address) counts its own faults, once', (t) => {
    const dir = tempDir(t)
    const r = child(
      `const mmap = require(PACKAGE)
const v8 = require('node:v8')
const vm = require('node:vm')
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')
const P = mmap.PAGESIZE
const startOf = (file) => {
  const line = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.endsWith(' ' + file))
  return line.split('-')[0]
}
const file = require('node:path').join(ARGS.dir, 'cycle.bin')
;(async () => {
  const cycles = []
  for (let i = 0; i < 30; i++) {
    fs.writeFileSync(file, Buffer.alloc(4 * P, 5))
    let buf = mmap.openSync(file, { mode: 'r+' })
    const start = startOf(file)
    fs.truncateSync(file, P)
    cycles.push({ start, lost: buf[P + i], first: buf[0], faults: mmap.faults(buf) })
    mmap.unmap(buf)
    buf = null
    // Let the finalizer give the range back, so that the kernel may hand it out again.
    for (let k = 0; k < 2; k++) { gc(); await new Promise(setImmediate) }
  }
  report(cycles)
})()`,
      { args: { dir } },
    )
    const cycles = survived(r)
    assert.equal(cycles.length, 30)
    for (const c of cycles) {
      assert.deepEqual({ lost: c.lost, first: c.first, faults: c.faults }, { lost: 0, first: 5, faults: 3 })
    }
    // Precondition of the scenario: some mapping took the address of an earlier, unmapped one
    // (the kernel reuses the freed range). A stale fault-table slot would match it first.
    const reused = cycles.length - new Set(cycles.map((c) => c.start)).size
    assert.ok(reused > 0, 'no address was reused: the scenario was not exercised')
    t.diagnostic(`addresses reused across 30 cycles: ${reused}`)
  })
})

// ---------------------------------------------------------------------------------------------
// 8. The fault table has no size a program can outgrow
// ---------------------------------------------------------------------------------------------

describe('the fault table', () => {
  it('more than 2^18 live mappings are all protected: truncation faults in the last and the first one made are recovered', (t) => {
    const dir = tempDir(t)
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const N = 300000
const file = require('node:path').join(ARGS.dir, 'many.bin')
const fd = fs.openSync(file, 'w+')
fs.writeSync(fd, Buffer.alloc(P, 3), 0, P, 0)
fs.ftruncateSync(fd, N * P)
const bufs = new Array(N)
// From the last page down: each new mapping lands just below the one before, and the kernel
// merges consecutive pages of the file into few kernel mappings (so N fits vm.max_map_count).
for (let i = N - 1; i >= 0; i--) bufs[i] = mmap.map(P, mmap.PROT_READ, mmap.MAP_SHARED, fd, i * P)
const kernelMappings = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file)).length
const before = [bufs[0][0], bufs[N - 1][0]]
fs.ftruncateSync(fd, 0)
const last = bufs[0][5], first = bufs[N - 1][7], middle = bufs[N >> 1][9]
report({ kernelMappings, before, lost: [last, first, middle], faults: [mmap.faults(bufs[0]), mmap.faults(bufs[N - 1]), mmap.faults(bufs[N >> 1])], size: fs.fstatSync(fd).size })`,
      { args: { dir } },
    )
    const out = survived(r)
    assert.ok(out.kernelMappings < 5000, `precondition: ${out.kernelMappings} kernel mappings for 300000 mappings`)
    assert.deepEqual(out.before, [3, 0], 'page 0 holds 3s, the rest of the file is a hole')
    assert.deepEqual(out.lost, [0, 0, 0])
    assert.deepEqual(out.faults, [1, 1, 1])
    assert.equal(out.size, 0)
  })
})

// ---------------------------------------------------------------------------------------------
// 9. A small alternate signal stack (Deno's is 8 KiB; the signal frame of an AVX-512 CPU takes
//    ~2.7 KiB of it). NODE_MMAP_TEST_SMALL_SIGSTACK=<bytes> gives each thread that maps a stack
//    that leaves the handlers <bytes> beside the signal frame, whatever the CPU, with a guard
//    page below: a handler that needs more dies by SIGSEGV without a word.
// ---------------------------------------------------------------------------------------------

describe('on a small alternate signal stack', () => {
  const SMALL = { NODE_MMAP_TEST_SMALL_SIGSTACK: '4096' }
  const AFTER_PROTECT = `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const buf = mmap.openSync(ARGS.file, { mode: 'r+' })
mmap.protect(buf, P, P, mmap.PROT_READ)
truncateElsewhere(ARGS.file, P)
report({ lost: [buf[2 * P + 1], buf[P + 3], buf[4 * P - 1]], kept: buf[0], faults: mmap.faults(buf) })`

  it('SIGBUS recovery after protect() (reads /proc/self/maps in the handler) survives', (t) => {
    const file = patternFile(t, 'small-stack-protect.bin')
    const out = survived(child(AFTER_PROTECT, { args: { file }, env: SMALL }))
    assert.deepEqual(out, { lost: [0, 0, 0], kept: pattern(1)[0], faults: 3 })
  })

  it('control: with 256 bytes the same recovery overflows the stack, so the switch is in force', (t) => {
    const file = patternFile(t, 'small-stack-control.bin')
    const r = child(AFTER_PROTECT, { args: { file }, env: { NODE_MMAP_TEST_SMALL_SIGSTACK: '256' } })
    assert.equal(r.signal, 'SIGSEGV', detail(r))
  })

  it('the SIGSEGV diagnostic is written whole, with the path read from /proc/self/maps', (t) => {
    const file = patternFile(t, 'small-stack-segv.bin')
    const r = child(
      `const mmap = require(PACKAGE)
const fd = fs.openSync(ARGS.file, 'r')
const buf = mmap.map(4 * mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd)
buf[ARGS.at] = 1
report('survived')`,
      { args: { file, at: P + 5 }, env: SMALL },
    )
    assert.equal(diedBy(r, 'SIGSEGV'), segvLine(P + 5, 4 * P, file, 'PROT_READ', SEGV_WRITE))
  })

  it('the SIGBUS diagnostic with recovery off is written whole', (t) => {
    const file = patternFile(t, 'small-stack-sigbus.bin')
    const r = child(
      `const mmap = require(PACKAGE)
mmap.setSigbusRecovery(false)
const buf = mmap.openSync(ARGS.file, { mode: 'r+' })
mmap.protect(buf, 0, mmap.PAGESIZE, mmap.PROT_READ)
fs.truncateSync(ARGS.file, mmap.PAGESIZE)
const x = buf[2 * mmap.PAGESIZE + 7]
report('survived: ' + x)`,
      { args: { file }, env: SMALL },
    )
    const d = diagnostic(diedBy(r, 'SIGBUS'))
    assert.deepEqual(
      { signal: d.signal, offset: d.offset, length: d.length, path: d.path, protection: d.protection },
      { signal: 'SIGBUS', offset: 2 * P + 7, length: 4 * P, path: file, protection: 'PROT_READ | PROT_WRITE' },
    )
    assert.match(d.cause, /recovery is off/)
  })

  it('a worker thread that maps recovers on its own small stack', (t) => {
    const file = patternFile(t, 'small-stack-worker.bin')
    const r = child(
      `const { Worker } = require('node:worker_threads')
const w = new Worker(\`
const { parentPort, workerData } = require('node:worker_threads')
const fs = require('node:fs')
const mmap = require(workerData.PACKAGE)
const P = mmap.PAGESIZE
const buf = mmap.openSync(workerData.file, { mode: 'r+' })
mmap.protect(buf, 2 * P, P, mmap.PROT_READ)
fs.truncateSync(workerData.file, P)
parentPort.postMessage({ lost: [buf[P], buf[2 * P], buf[3 * P]], faults: mmap.faults(buf) })\`, { eval: true, workerData: { PACKAGE, file: ARGS.file } })
w.once('message', report)`,
      { args: { file }, env: SMALL },
    )
    assert.deepEqual(survived(r), { lost: [0, 0, 0], faults: 3 })
  })
})

// A full tmpfs raises SIGBUS for a hole inside the file (the page cannot be allocated, even to
// be read): that is no truncation, and the pages after it hold the file's data. Recovery took
// every page from the hole to the end for lost: the Buffer showed zeros where the file had data,
// and writes there never reached the file once space was back.
describe('a lost page inside the file (a full tmpfs)', () => {
  it('replaces only the unreadable pages from it on: the data after them still shows, and writes to it still reach the file', (t) => {
    const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'node-mmap-full-'))
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${16 * P}`, 'tmpfs', dir], { encoding: 'utf8' })
    t.after(() => {
      if (mount.status === 0) spawnSync('umount', [dir])
      fs.rmSync(dir, { recursive: true, force: true })
    })
    if (mount.status !== 0) {
      return t.skip(`cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN): ${(mount.stderr || mount.error || '').toString().trim()}`)
    }
    const r = child(
      `const mmap = require(PACKAGE)
const P = mmap.PAGESIZE
const file = ARGS.dir + '/data.bin'
const b = mmap.openSync(file, { mode: 'w+', size: 32 * P })
b.fill(0x77, 20 * P, 21 * P)
b.fill(0x66, 30 * P, 31 * P)
mmap.sync(b, true)
// Fill the file system: every hole of the file can no longer get a page.
let filler = 0
try { for (;;) { fs.appendFileSync(ARGS.dir + '/filler', Buffer.alloc(P, 1)); filler++ } } catch (err) { if (err.code !== 'ENOSPC') throw err }
const hole = b[4 * P]
// Pages 4 to 19 are holes that cannot be read in now: replaced (zeros, as holes read); page 20
// holds data and is readable, so the run stops there.
const faults = mmap.faults(b)
const data = [b[20 * P], b[30 * P]]
fs.unlinkSync(ARGS.dir + '/filler')
b[20 * P + 1] = 0x43
b[25 * P] = 0x44
mmap.sync(b, true)
const disk = fs.readFileSync(file)
report({ hole, faults, data, disk: [disk[20 * P], disk[30 * P], disk[20 * P + 1], disk[25 * P]], filler: filler > 0 })`,
      { args: { dir } },
    )
    const out = survived(r)
    assert.deepEqual(out, { hole: 0, faults: 16, data: [0x77, 0x66], disk: [0x77, 0x66, 0x43, 0x44], filler: true })
  })
})

// Found by attack pass 8: zero pages put in place of lost ones are private memory, which counts
// toward RLIMIT_DATA (ulimit -d); past it the kernel refused them and the process died of the
// read ("replacing it with zeros failed"). Past the limit they are now shared anonymous memory,
// which does not count.
describe('SIGBUS recovery under ulimit -d', () => {
  it('reads all of a truncated 1 GiB mapping as zeros past the data limit', (t) => {
    const { dataLimitUnavailable, runScript, assertExited } = require('./helpers.js')
    const kib = 500000
    const unavailable = dataLimitUnavailable(kib, 'const a = []; for (let i = 0; i < 1e5; i++) a.push({ i })')
    if (unavailable) return t.skip(unavailable)
    const dir = tempDir(t)
    const file = path.join(dir, 'lost-past-ulimit-d.bin')
    const result = runScript(
      `const mmap = require(MMAP)
       const fs = require('fs')
       const file = process.argv[process.argv.length - 1]
       const size = 2 ** 30
       fs.closeSync(fs.openSync(file, 'w'))
       fs.truncateSync(file, size)
       const buf = mmap.openSync(file, { mode: 'r+' })
       fs.truncateSync(file, 0)
       let sum = 0
       for (let at = 0; at < size; at += 64 * 2 ** 20) sum += buf[at] + buf[at + 2 ** 20 - 1]
       buf[size - 1] = 7
       const data = Number(fs.readFileSync('/proc/self/status', 'utf8').match(/VmData:\\s+(\\d+)/)[1])
       console.log(JSON.stringify({ sum, last: buf[size - 1], faults: mmap.faults(buf), data }))`,
      { args: [file], shell: `ulimit -d ${kib}` },
    )
    assertExited(result)
    const out = JSON.parse(result.stdout)
    assert.equal(out.sum, 0)
    assert.equal(out.last, 7, 'a write to a replaced page stays there')
    assert.equal(out.faults, 2 ** 30 / mmap.PAGESIZE)
    assert.ok(out.data <= kib, `VmData ${out.data} kB within the limit`)
  })
})

// Found by attack pass 8: recovery replaces at most 256 MiB of a lost tail at once, and only a
// replacement that reached the end of the mapping marked the tail lost; on a longer mapping,
// Mapping#write onto the replaced pages returned a count (the bytes never reached the file)
// and read() gave zeros that are not the file.
describe('a lost tail longer than one replacement (256 MiB)', () => {
  it('Mapping#read, #readInto and #write throw ERR_MMAP_LOST_PAGES on every part of it', (t) => {
    const dir = tempDir(t)
    const file = path.join(dir, 'long-tail.bin')
    const size = 600 * 2 ** 20
    fs.closeSync(fs.openSync(file, 'w'))
    fs.truncateSync(file, size)
    const m = mmap.Mapping.open(file, { mode: 'r+' })
    t.after(() => m.unmap())
    fs.truncateSync(file, 0)
    const code = (f) => { try { f(); return 'returned' } catch (err) { return err.code } }
    assert.equal(code(() => m.read(0, 4)), 'ERR_MMAP_LOST_PAGES', 'the copy that found the loss')
    for (const at of [0, 100 * 2 ** 20, 255 * 2 ** 20, 256 * 2 ** 20, 599 * 2 ** 20]) {
      assert.equal(code(() => m.write(Buffer.from('DATA'), at)), 'ERR_MMAP_LOST_PAGES', `write at ${at}`)
      assert.equal(code(() => m.read(at, 4)), 'ERR_MMAP_LOST_PAGES', `read at ${at}`)
      assert.equal(code(() => m.readInto(Buffer.alloc(4), at)), 'ERR_MMAP_LOST_PAGES', `readInto at ${at}`)
    }
    assert.equal(fs.statSync(file).size, 0)
  })
})

// Attack pass 9 asked: bytes past the end of a file on its last page. The kernel maps whole
// pages, so those bytes are the page's, not lost pages: they can be written (Mapping#write
// counts them) and never reach the file. README, Caveats ("Lost pages read as zeros").
describe('the last page of a file cut to the middle of a page', () => {
  it('takes writes past the end of the file that never reach it, with no fault (as documented)', (t) => {
    const P = mmap.PAGESIZE
    const dir = tempDir(t)
    const file = path.join(dir, 'partial-tail.bin')
    fs.writeFileSync(file, Buffer.alloc(2 * P, 0x41))
    const m = mmap.Mapping.open(file, { mode: 'r+' })
    t.after(() => m.unmap())
    fs.truncateSync(file, P + 1000)
    assert.equal(m.write(Buffer.alloc(3000, 0x42), P + 1000), 3000)
    assert.equal(m.faults, 0)
    m.sync(0, 2 * P, true)
    const bytes = fs.readFileSync(file)
    assert.equal(bytes.length, P + 1000, 'the file keeps its size')
    assert.ok(bytes.every((b) => b === 0x41), 'and its bytes: none of the 3000 reached it')
  })
})

// Found by attack pass 17: a read of a page past the end of a file that another process
// truncates and grows back in a loop (logrotate's copytruncate with a writer, faster): the
// handler saw the page readable again (grown back), took it for a write the file system
// refused, and copied it with a plain read, which faulted inside the handler once the file was
// cut again: the kernel killed the process. A read fault on a readable page now just runs
// again, and the refused-write copy is made by the kernel (process_vm_readv), which cannot fault.
describe('a file truncated and grown back by another process', () => {
  it('a reader survives it in a loop (child)', { skip: notOnWindows('a mapped file cannot be truncated on Windows') }, () => {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'node-mmap-regrow-'))
  const file = path.join(dir, 'log.bin')
  fs.writeFileSync(file, Buffer.alloc(16 << 20, 1))
  const loop = require('node:child_process').spawn(process.execPath, ['-e', `
    const fs = require('fs'), fd = fs.openSync(${JSON.stringify(file)}, 'r+')
    for (;;) { fs.ftruncateSync(fd, 0); fs.ftruncateSync(fd, 16 << 20) }
  `], { stdio: 'ignore' })
  try {
    const result = runScript(`
      const mmap = require(MMAP), fs = require('fs')
      const fd = fs.openSync(process.argv.at(-1), 'r')
      const end = Date.now() + 8000
      let rounds = 0, sum = 0
      while (Date.now() < end) {
        const b = mmap.map(16 << 20, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        for (let i = 0; i < 4096; i++) sum += b[i * 4096 + 5]
        mmap.unmap(b)
        rounds++
      }
      console.log(JSON.stringify({ survived: true, rounds: rounds > 0 }))
    `, { args: [file], timeout: 60_000 })
    assertExited(result)
    assert.deepEqual(JSON.parse(result.stdout), { survived: true, rounds: true })
  } finally {
    loop.kill('SIGKILL')
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
})
