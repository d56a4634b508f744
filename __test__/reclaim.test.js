'use strict'
// Finalizers unmap in batches (src/reclaim.rs): the small mappings a garbage collection frees,
// adjacent in the address space, leave in a few munmap calls, each covering only ranges that
// were ours; the last run leaves on a later event-loop turn with no further node-mmap call, when
// a worker exits, and never keeps a program from ending. Oracles: strace of a child (the munmap
// calls themselves) and /proc/self/maps.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { Worker } = require('node:worker_threads')

const mmap = require('..')
const {
  PACKAGE,
  tempDir,
  randomFileIn,
  mappingsOf,
  exposeGc,
  pollUntil,
  runScript,
  assertCleanExit,
  straceUnavailable,
  straceScript,
} = require('./helpers.js')

const { PAGESIZE, PROT_READ, MAP_SHARED } = mmap
const gc = exposeGc()
const dir = tempDir(test)
let serial = 0

/** Child (and worker) side: map `count` pages of `file` and drop them; `mapped()` counts them. */
const DROP_MANY = `
const fs = require('node:fs')
const v8 = require('node:v8')
const vm = require('node:vm')
v8.setFlagsFromString('--expose-gc')
const collect = vm.runInNewContext('gc')
const mmap = require(MMAP)
const mapped = (file) =>
  fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file)).length
function dropMany(file, count, size = mmap.PAGESIZE) {
  const fd = fs.openSync(file, 'r')
  for (let i = 0; i < count; i++) mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
}
/** Collects until the finalizers have run for some of the file's mappings (fewer than \`count\` left). */
async function untilFinalized(file, count) {
  for (let turn = 0; turn < 5000 && mapped(file) >= count; turn++) {
    collect()
    await new Promise(setImmediate)
  }
}
`

test('the small mappings one collection frees leave in a few munmap calls, each over our ranges only (strace)', (t) => {
  const unavailable = straceUnavailable()
  if (unavailable) return t.skip(unavailable)
  const { file } = randomFileIn(dir, `strace-${++serial}.bin`, 3 * 1024 * 1024)
  const small = 512
  const big = 3
  const bigSize = 2 * 1024 * 1024 + 1
  const source = `${DROP_MANY}
    const file = process.argv[1]
    dropMany(file, ${small})
    dropMany(file, ${big}, ${bigSize})
    // Where they are: one line each (mappings of one file at offset 0 never merge).
    const ranges = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith(' ' + file))
      .map((l) => l.split(' ')[0].split('-'))
    // A mark in the trace: the munmap calls before it were made before these mappings existed.
    try { fs.openSync('/node-mmap-trace-mark') } catch {}
    ;(async () => {
      // Only /proc/self/maps is read from here on: the last run must leave by itself.
      for (let turn = 0; turn < 5000 && mapped(file) > 0; turn++) {
        collect()
        await new Promise(setImmediate)
      }
      process.stdout.write(JSON.stringify({ left: mapped(file), ranges }))
    })()
  `
  const { result, lines } = straceScript(source, 'munmap,openat', { args: [file] })
  assertCleanExit(result)
  const { left, ranges } = JSON.parse(result.stdout)
  assert.equal(left, 0, 'every mapping of the file left the process')

  const pages = (start, length) => {
    const out = []
    for (let at = start; at < start + BigInt(Math.ceil(length / PAGESIZE) * PAGESIZE); at += BigInt(PAGESIZE)) out.push(at)
    return out
  }
  const bigLength = Math.ceil(bigSize / PAGESIZE) * PAGESIZE
  const ours = new Map() // page -> 'small' | 'big'
  const bigStarts = []
  for (const [startHex, endHex] of ranges) {
    const [start, end] = [BigInt('0x' + startHex), BigInt('0x' + endHex)]
    const kind = Number(end - start) === bigLength ? 'big' : 'small'
    assert.ok(kind === 'big' || Number(end - start) === PAGESIZE, `a mapping of ${end - start} bytes`)
    if (kind === 'big') bigStarts.push(start)
    for (const page of pages(start, Number(end - start))) ours.set(page, kind)
  }
  assert.equal(ours.size, small + big * (bigLength / PAGESIZE), 'every mapping is in /proc/self/maps')

  const unmapped = new Map() // page -> times unmapped
  const calls = { small: 0, big: [] }
  const mark = lines.findIndex((line) => line.includes('"/node-mmap-trace-mark"'))
  assert.ok(mark >= 0, 'the mark is in the trace')
  for (const line of lines.slice(mark)) {
    // "munmap(addr, len) = 0", or "munmap(addr, len <unfinished ...>" when another thread's call
    // came between (its result then follows on a line of its own; munmap of our ranges cannot fail).
    const m = /^munmap\((0x[0-9a-f]+), (\d+)/.exec(line)
    if (!m) continue
    const covered = pages(BigInt(m[1]), Number(m[2]))
    const mine = covered.filter((page) => ours.has(page))
    if (mine.length === 0) continue // the runtime's own memory
    assert.equal(mine.length, covered.length, `${line}: unmaps pages that were not ours`)
    for (const page of covered) unmapped.set(page, (unmapped.get(page) ?? 0) + 1)
    if (ours.get(covered[0]) === 'big') calls.big.push({ start: BigInt(m[1]), length: Number(m[2]) })
    else calls.small++
  }
  for (const page of ours.keys()) assert.equal(unmapped.get(page), 1, `page ${page.toString(16)} unmapped once`)
  // Larger than 1 MiB: each alone, exactly its own range.
  assert.deepEqual(
    calls.big.map(({ start }) => start).sort(),
    [...bigStarts].sort(),
    'each large mapping is unmapped by a call of its own',
  )
  for (const { length } of calls.big) assert.equal(length, bigSize)
  // 512 adjacent pages in runs of at most 64: 8 calls when nothing came between them. The bound
  // leaves room for the runtime's own mappings placed among ours, and for collections that free
  // the pages in several batches.
  assert.ok(calls.small <= small / 8, `${calls.small} munmap calls for ${small} mappings of one page`)
})

test('the last run of a batch leaves on a later event-loop turn with no node-mmap call', async () => {
  const { file } = randomFileIn(dir, `turns-${++serial}.bin`, PAGESIZE)
  ;(() => {
    const fd = fs.openSync(file, 'r')
    for (let i = 0; i < 300; i++) mmap.map(PAGESIZE, PROT_READ, MAP_SHARED, fd)
    fs.closeSync(fd)
  })()
  assert.equal(mappingsOf(file).length, 300)
  // pollUntil only collects and reads /proc/self/maps.
  assert.ok(await pollUntil(() => mappingsOf(file).length === 0, { gc }), `${mappingsOf(file).length} left`)
})

test("a worker's waiting run leaves when the worker exits", async () => {
  const { file } = randomFileIn(dir, `worker-${++serial}.bin`, PAGESIZE)
  const count = 300
  const worker = new Worker(
    `'use strict'
    const MMAP = ${JSON.stringify(PACKAGE)}
    ${DROP_MANY}
    const { workerData: file, parentPort } = require('node:worker_threads')
    dropMany(file, ${count})
    untilFinalized(file, ${count}).then(() => {
      // Exit at once, in the turn the finalizers ran in: a run is usually still waiting.
      parentPort.postMessage(mapped(file))
      process.exit(0)
    })`,
    { eval: true, workerData: file },
  )
  let seen = null
  worker.on('message', (left) => {
    seen = left
  })
  const code = await new Promise((resolve, reject) => {
    worker.on('error', reject)
    worker.on('exit', resolve)
  })
  assert.equal(code, 0)
  assert.ok(seen !== null && seen < count, `the worker saw ${seen} of its mappings left`)
  // Node still runs a queued call of the flusher while it tears the worker's env down; the
  // flusher's close and the thread's exit unmap the run too.
  assert.equal(mappingsOf(file).length, 0, `${mappingsOf(file).length} left after the worker exited (${seen} at its exit)`)
})

test('a program whose last run is still waiting ends by itself', () => {
  const { file } = randomFileIn(dir, `exit-${++serial}.bin`, PAGESIZE)
  const result = runScript(
    `${DROP_MANY}
    const file = process.argv[1]
    dropMany(file, 300)
    // Nothing keeps the event loop alive after this: the flusher must not either.
    untilFinalized(file, 300).then(() => process.stdout.write(String(mapped(file))))
    `,
    { args: [file], timeout: 30_000 },
  )
  assertCleanExit(result)
  assert.ok(Number(result.stdout) < 300, `stdout: ${result.stdout}`)
})
