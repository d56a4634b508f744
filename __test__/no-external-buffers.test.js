'use strict'
// Runtimes that forbid external buffers (Electron 21+): map() must refuse with
// ERR_MMAP_NO_EXTERNAL_BUFFERS rather than copy (a copy would lose every write), and must give
// the mapping back. No such runtime exists here, so the library's switch
// NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS=1 (read once per process) makes the Buffer creation
// report that status; each check runs in a child process with it set.

const test = require('node:test')
const assert = require('node:assert/strict')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')

const { tempDir, fileWith, runScript, assertCleanExit } = require('./helpers.js')

const dir = tempDir(test)
const SWITCH = { NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS: '1' }

/** Runs `body` in a child with the switch on; it must print one JSON object. */
function child(body, args) {
  const result = runScript(
    `const fs = require('node:fs')
     const mmap = require(MMAP)
     const lines = () => { globalThis.gc(); return fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter(Boolean).length }
     const mappingsOf = (file) => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file)).length
     // KiB of address space that can be accessed (reservations, perms ---p, left out: thread
     // arenas reserve 64 MiB each without using it).
     const accessibleKiB = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter(Boolean)
       .filter((l) => !l.split(/\\s+/)[1].startsWith('---'))
       .reduce((sum, l) => { const [a, b] = l.split(' ')[0].split('-').map((h) => parseInt(h, 16)); return sum + (b - a) / 1024 }, 0)
     const describe = (fn) => {
       try { fn(); return { threw: false } } catch (e) {
         return { threw: true, isError: e instanceof Error, exactlyError: Object.getPrototypeOf(e) === Error.prototype,
                  name: e.name, code: e.code, message: e.message, errno: e.errno, syscall: e.syscall }
       }
     }
     const out = {}
     ${body}
     process.stdout.write(JSON.stringify(out))`,
    { args, nodeArgs: ['--expose-gc'], env: SWITCH },
  )
  assertCleanExit(result)
  return JSON.parse(result.stdout)
}

function assertNoExternalBuffersError(error, label) {
  assert.equal(error.threw, true, `${label}: map() did not throw`)
  assert.equal(error.isError, true, label)
  assert.equal(error.exactlyError, true, `${label}: not a plain Error`)
  assert.equal(error.name, 'Error', label)
  assert.equal(error.code, 'ERR_MMAP_NO_EXTERNAL_BUFFERS', label)
  assert.equal(error.errno, undefined, label)
  assert.equal(error.syscall, undefined, label)
  // It says what is wrong and what to do instead.
  assert.match(error.message, /does not allow external buffers/, label)
  assert.match(error.message, /Use mmap.Mapping/, label)
  assert.match(error.message, /mmap\.externalBuffersAllowed\(\)/, label)
  assert.match(error.message, /node:fs|Mapping/, label)
}

test('map() throws ERR_MMAP_NO_EXTERNAL_BUFFERS; externalBuffersAllowed() is false', () => {
  const file = fileWith(dir, 'probe.bin', randomBytes(16 * 1024))
  // Asked before any map (answered by the probe Buffer) ...
  const first = child(
    `out.allowedBefore = mmap.externalBuffersAllowed()
     const fd = fs.openSync(process.argv[1], 'r')
     out.error = describe(() => mmap.map(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd))
     out.allowedAfter = mmap.externalBuffersAllowed()`,
    [file],
  )
  assert.equal(first.allowedBefore, false)
  assert.equal(first.allowedAfter, false)
  assertNoExternalBuffersError(first.error, 'probe first')
  // ... and after a failed map (answered from it).
  const second = child(
    `out.error = describe(() => mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1))
     out.allowed = mmap.externalBuffersAllowed()`,
    [],
  )
  assertNoExternalBuffersError(second.error, 'map first')
  assert.equal(second.allowed, false)
})

test('argument errors come first; then the refusal, before any system call', () => {
  const result = child(
    `out.size = describe(() => mmap.map(0, 1, 1, 0))
     out.mode = describe(() => mmap.openSync('/nonexistent', { mode: 'x' }))
     // A descriptor that is not open: refused as the runtime's, not EBADF (mmap is never called).
     out.ebadf = describe(() => mmap.map(4096, mmap.PROT_READ, mmap.MAP_SHARED, 1_000_000))
     out.enoent = describe(() => mmap.openSync('/nonexistent/file'))`,
    [],
  )
  assert.equal(result.size.code, 'ERR_OUT_OF_RANGE')
  assert.equal(result.mode.code, 'ERR_INVALID_ARG_VALUE')
  assertNoExternalBuffersError(result.ebadf, 'map() of a closed descriptor')
  assertNoExternalBuffersError(result.enoent, 'openSync() of a missing file')
})

// Pass 18: the refusal came after the file was opened, created, resized or punched, so a
// program that caught ERR_MMAP_NO_EXTERNAL_BUFFERS to fall back on Mapping (as README advises)
// had already lost its data.
test('a refused openSync()/open()/map() has created, resized, emptied or punched nothing', () => {
  const bytes = randomBytes(12 * 1024)
  const file = fileWith(dir, 'unchanged.bin', bytes)
  const missing = `${dir}/never-made.bin`
  const result = child(
    `const [file, missing] = process.argv.slice(1)
     const original = fs.readFileSync(file)
     const RW = mmap.PROT_READ | mmap.PROT_WRITE
     const calls = {
       'w+ with size': () => mmap.openSync(file, { mode: 'w+', size: 8192 }),
       'w+': () => mmap.openSync(file, { mode: 'w+' }),
       'r+ growing': () => mmap.openSync(file, { mode: 'r+', size: 65536 }),
       'r+ MADV_REMOVE': () => mmap.openSync(file, { mode: 'r+', advise: mmap.MADV_REMOVE }),
       'map MADV_REMOVE': () => {
         const fd = fs.openSync(file, 'r+')
         try { mmap.map(12288, RW, mmap.MAP_SHARED, fd, 0, mmap.MADV_REMOVE) } finally { fs.closeSync(fd) }
       },
       'w+ of a missing file': () => mmap.openSync(missing, { mode: 'w+', size: 10 }),
     }
     out.sync = {}
     for (const [name, call] of Object.entries(calls)) {
       const error = describe(call)
       out.sync[name] = { error, same: fs.readFileSync(file).equals(original), missing: !fs.existsSync(missing) }
     }
`,
    [file, missing],
  )
  // open(): the same, on the thread pool.
  const pending = runScript(
    `const fs = require('node:fs')
     const mmap = require(MMAP)
     const file = process.argv[1]
     const original = fs.readFileSync(file)
     const out = {}
     const calls = { 'open w+ with size': { mode: 'w+', size: 8192 }, 'open r+ growing': { mode: 'r+', size: 65536 } }
     ;(async () => {
       for (const [name, options] of Object.entries(calls)) {
         const error = await mmap.open(file, options).then(() => ({ threw: false }), (e) => ({
           threw: true, isError: e instanceof Error, exactlyError: Object.getPrototypeOf(e) === Error.prototype,
           name: e.name, code: e.code, message: e.message, errno: e.errno, syscall: e.syscall }))
         out[name] = { error, same: fs.readFileSync(file).equals(original) }
       }
       process.stdout.write(JSON.stringify(out))
     })()`,
    { args: [file], env: SWITCH },
  )
  assertCleanExit(pending)
  const async = JSON.parse(pending.stdout)
  assert.deepEqual(Object.keys(async), ['open w+ with size', 'open r+ growing'])
  for (const [name, got] of Object.entries({ ...result.sync, ...async })) {
    assertNoExternalBuffersError(got.error, name)
    assert.equal(got.same, true, `${name}: the file changed`)
    if ('missing' in got) assert.equal(got.missing, true, `${name}: the missing file was created`)
  }
  assert.ok(fs.readFileSync(file).equals(bytes))
})

test('10,000 failed maps leak no mapping and leave the file unchanged', { timeout: 120_000 }, () => {
  const bytes = randomBytes(64 * 1024)
  const file = fileWith(dir, 'leak.bin', bytes)
  const result = child(
    `const file = process.argv[1]
     const fd = fs.openSync(file, 'r+')
     const RW = mmap.PROT_READ | mmap.PROT_WRITE
     const size = 64 * 1024
     const kinds = [
       () => mmap.map(size, RW, mmap.MAP_SHARED, fd),
       () => mmap.map(size, RW, mmap.MAP_PRIVATE, fd),
       () => mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0, mmap.MADV_SEQUENTIAL),
       () => mmap.map(size, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1),
       () => mmap.map(size, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1),
     ]
     describe(kinds[0]) // first use: lazy set-up out of the measurement
     out.linesBefore = lines()
     out.sharedAnonBefore = mappingsOf('/dev/zero (deleted)')
     globalThis.gc(); out.accessibleBefore = accessibleKiB()
     out.refused = 0
     out.other = []
     for (let i = 0; i < 10_000; i++) {
       const got = describe(kinds[i % kinds.length])
       if (got.code === 'ERR_MMAP_NO_EXTERNAL_BUFFERS') out.refused++
       else if (out.other.length < 5) out.other.push(got)
     }
     out.ofFile = mappingsOf(file)
     out.linesAfter = lines()
     out.sharedAnonAfter = mappingsOf('/dev/zero (deleted)')
     globalThis.gc(); out.accessibleAfter = accessibleKiB()
     fs.closeSync(fd)`,
    [file],
  )
  assert.deepEqual(result.other, [], 'some maps did not fail with ERR_MMAP_NO_EXTERNAL_BUFFERS')
  assert.equal(result.refused, 10_000)
  assert.equal(result.ofFile, 0, 'mappings of the file were left behind')
  // Shared anonymous mappings never merge: each leak would add a line (2,000 here).
  assert.equal(result.sharedAnonAfter, result.sharedAnonBefore, 'shared anonymous mappings were left behind')
  // Each leaked file mapping would add a line too (maps of one offset never merge): 8,000 in
  // all. Some slack for the process's own growth (JS heap, thread arenas).
  assert.ok(
    result.linesAfter <= result.linesBefore + 64,
    `/proc/self/maps grew from ${result.linesBefore} to ${result.linesAfter} lines`,
  )
  // Private anonymous leaks can merge into one line; the accessible address space shows them
  // (4,000 x 64 KiB = 250 MiB).
  const grownKiB = result.accessibleAfter - result.accessibleBefore
  assert.ok(grownKiB < 64 * 1024, `accessible address space grew by ${grownKiB} KiB`)
  assert.ok(fs.readFileSync(file).equals(bytes), 'the file changed')
})
