'use strict'
// The process ends cleanly (its own exit code, no signal, nothing on stderr) with live mappings,
// whether it runs out of work, calls process.exit(), has finalizers still queued, or has a
// worker holding mappings. MAP_SHARED writes made before the end are in the file afterwards.

const test = require('node:test')
const assert = require('node:assert/strict')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')

const { tempDir, fileWith, runScript, assertCleanExit } = require('./helpers.js')

const { PAGESIZE } = require('..')
const dir = tempDir(test)
let serial = 0

/** The start of every child: maps `file` several ways and keeps everything alive. */
const HOLD = `
  const fs = require('node:fs')
  const mmap = require(MMAP)
  const [file, hex, at] = process.argv.slice(1)
  const patch = Buffer.from(hex, 'hex')
  const RW = mmap.PROT_READ | mmap.PROT_WRITE
  const fd = fs.openSync(file, 'r+')
  const size = fs.fstatSync(fd).size
  const live = [
    mmap.map(size, RW, mmap.MAP_SHARED, fd),
    mmap.map(size, RW, mmap.MAP_PRIVATE, fd),
    mmap.map(size - mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, mmap.PAGESIZE, mmap.MADV_RANDOM),
    mmap.map(1 << 20, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1),
    mmap.map(1 << 20, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1),
  ]
  fs.closeSync(fd)
  live[1].fill(1)
  live[3].fill(2)
  live[4].fill(3)
  const views = live.map((b) => b.subarray(7))
  patch.copy(live[0], Number(at))
`

function run(tail, { nodeArgs = [], code = 0 } = {}) {
  const bytes = randomBytes(8 * PAGESIZE)
  const file = fileWith(dir, `exit-${++serial}.bin`, bytes)
  const patch = randomBytes(64)
  const at = 3 * PAGESIZE - 32
  const result = runScript(HOLD + tail, { args: [file, patch.toString('hex'), String(at)], nodeArgs })
  assertCleanExit(result, code)
  const expected = Buffer.from(bytes)
  patch.copy(expected, at)
  return { result, file, expected }
}

test('natural exit with live mappings: code 0, and MAP_SHARED writes are in the file', () => {
  const { file, expected } = run(`globalThis.keep = [live, views]`)
  assert.ok(fs.readFileSync(file).equals(expected))
})

test('mappings still work in an exit handler, and that write is kept', () => {
  const { result, file, expected } = run(`
    process.on('exit', () => {
      live[0][0] = 0xab
      process.stdout.write(String(views[2][0] === live[2][7]))
    })
  `)
  assert.equal(result.stdout, 'true')
  expected[0] = 0xab
  assert.ok(fs.readFileSync(file).equals(expected))
})

test('process.exit() with live mappings keeps its exit code (0 and 7)', () => {
  for (const code of [0, 7]) {
    const { file, expected } = run(`process.exit(${code})`, { code })
    assert.ok(fs.readFileSync(file).equals(expected))
  }
  // From a later turn, too.
  run(`setImmediate(() => process.exit(5))`, { code: 5 })
})

test('process.exit() while finalizers are queued (GC ran, their turn has not come)', () => {
  run(
    `live.length = 0
     views.length = 0
     for (let i = 0; i < 2000; i++) mmap.map(65536, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
     globalThis.gc()
     process.exit(0)`,
    { nodeArgs: ['--expose-gc'] },
  )
})

test('natural exit with 20,000 live mappings', () => {
  run(
    `const fd2 = fs.openSync(file, 'r')
     globalThis.many = []
     for (let i = 0; i < 20_000; i++) globalThis.many.push(mmap.map(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd2))
     fs.closeSync(fd2)
     const lines = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file))
     if (lines.length < 20_000) throw new Error('only ' + lines.length + ' mappings')`,
  )
})

test('process.exit() in the main thread while a worker writes to its own mappings', () => {
  const { file, expected } = run(`
    const { Worker } = require('node:worker_threads')
    const worker = new Worker(\`
      const { parentPort, workerData } = require('node:worker_threads')
      const fs = require('node:fs')
      const mmap = require(workerData.MMAP)
      const fd = fs.openSync(workerData.file, 'r+')
      const buf = mmap.map(mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 6 * mmap.PAGESIZE)
      const anon = mmap.map(1 << 20, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
      parentPort.postMessage('busy')
      for (let i = 0; ; i++) { buf[i % 64] = 0; anon[i % (1 << 20)] = i }
    \`, { eval: true, workerData: { MMAP, file } })
    worker.once('message', () => process.exit(0))
  `)
  // The worker may have written zeros into bytes 0..63 of page 6, and nothing else.
  const now = fs.readFileSync(file)
  assert.ok(now.subarray(0, 6 * PAGESIZE).equals(expected.subarray(0, 6 * PAGESIZE)))
  assert.ok(now.subarray(6 * PAGESIZE + 64).equals(expected.subarray(6 * PAGESIZE + 64)))
})

test('an uncaught exception with live mappings exits with code 1, not a signal', () => {
  const bytes = randomBytes(8 * PAGESIZE)
  const file = fileWith(dir, `exit-${++serial}.bin`, bytes)
  const result = runScript(HOLD + `throw new Error('boom')`, { args: [file, '00', '0'] })
  assert.equal(result.signal, null, result.stderr)
  assert.equal(result.status, 1, result.stderr)
  assert.match(result.stderr, /Error: boom/)
})
