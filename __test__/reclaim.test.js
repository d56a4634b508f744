'use strict'
// Finalizers unmap in batches (src/core/reclaim.rs): the small mappings a garbage collection frees,
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

test('what a collection frees leaves in a few munmap calls, each over our ranges only (strace)', (t) => {
  const unavailable = straceUnavailable()
  if (unavailable) return t.skip(unavailable)
  const { file } = randomFileIn(dir, `strace-${++serial}.bin`, 3 * 1024 * 1024)
  // Each kind has a size and rights of its own, to tell our mmap calls in the trace.
  const kinds = {
    small: { count: 512, size: PAGESIZE }, // one page of the file, dropped
    big: { count: 3, size: 2 * 1024 * 1024 + 1 }, // over 1 MiB: never waits
    anonymous: { count: 128, size: 3 * PAGESIZE }, // private anonymous, read-only, dropped
    placeholder: { count: 128, size: 2 * PAGESIZE }, // the file, unmap()ed: placeholders, then dropped
    locked: { count: 16, size: 5 * PAGESIZE }, // the file with MAP_LOCKED, dropped: never waits
    lockedLater: { count: 16, size: 7 * PAGESIZE }, // the file, lock()ed, dropped: never waits
  }
  const source = `${DROP_MANY}
    const file = process.argv[1]
    const k = ${JSON.stringify(kinds)}
    // The addon itself: its hidden count of the bytes placeholders still hold.
    const binding = require(require('node:path').join(MMAP, fs.readdirSync(MMAP).find((f) => f.endsWith('.node'))))
    dropMany(file, k.small.count)
    dropMany(file, k.big.count, k.big.size)
    for (let i = 0; i < k.anonymous.count; i++)
      mmap.map(k.anonymous.size, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    const fd = fs.openSync(file, 'r')
    for (let i = 0; i < k.placeholder.count; i++) mmap.unmap(mmap.map(k.placeholder.size, mmap.PROT_READ, mmap.MAP_SHARED, fd))
    for (let i = 0; i < k.locked.count; i++) mmap.map(k.locked.size, mmap.PROT_READ, mmap.MAP_SHARED | mmap.MAP_LOCKED, fd)
    for (let i = 0; i < k.lockedLater.count; i++) mmap.lock(mmap.map(k.lockedLater.size, mmap.PROT_READ, mmap.MAP_SHARED, fd))
    fs.closeSync(fd)
    // A mark in the trace: the munmap calls before it were made before these mappings were dropped.
    try { fs.openSync('/node-mmap-trace-mark') } catch {}
    ;(async () => {
      // Only /proc/self/maps (and node-mmap's placeholder count) are read from here on: the
      // last run must leave by itself.
      for (let turn = 0; turn < 5000 && (mapped(file) > 0 || binding.__placeholderBytes() > 0); turn++) {
        collect()
        await new Promise(setImmediate)
      }
      process.stdout.write(JSON.stringify({ left: mapped(file), placeholderBytes: binding.__placeholderBytes() }))
    })()
  `
  // Only the JS thread, where node-mmap maps and its finalizers unmap: its calls are never cut
  // in two by another thread's in the trace.
  const { result, lines } = straceScript(source, 'mmap,munmap,openat', { args: [file], threads: false })
  assertCleanExit(result)
  assert.deepEqual(JSON.parse(result.stdout), { left: 0, placeholderBytes: 0 }, 'everything left the process')

  const roundUp = (n) => Math.ceil(n / PAGESIZE) * PAGESIZE
  const pages = (start, length) => {
    const out = []
    for (let at = start; at < start + BigInt(roundUp(length)); at += BigInt(PAGESIZE)) out.push(at)
    return out
  }
  // Our mappings: mmap(NULL, <size>, PROT_READ, MAP_SHARED, <fd>, 0) = <address>, and the
  // anonymous ones with MAP_PRIVATE|MAP_ANONYMOUS, -1.
  const ours = new Map() // page -> kind
  const starts = Object.fromEntries(Object.keys(kinds).map((kind) => [kind, []]))
  for (const line of lines) {
    const m = /^mmap\(NULL, (\d+), PROT_READ, (MAP_SHARED|MAP_SHARED\|MAP_LOCKED|MAP_PRIVATE\|MAP_ANONYMOUS), (-?\d+), 0\)\s+= (0x[0-9a-f]+)/.exec(line)
    if (!m) continue
    const flagsOf = { anonymous: 'MAP_PRIVATE|MAP_ANONYMOUS', locked: 'MAP_SHARED|MAP_LOCKED' }
    const kind = Object.keys(kinds).find((k) => kinds[k].size === Number(m[1]) && (flagsOf[k] ?? 'MAP_SHARED') === m[2])
    if (!kind) continue
    starts[kind].push(BigInt(m[4]))
    for (const page of pages(BigInt(m[4]), Number(m[1]))) ours.set(page, kind)
  }
  for (const [kind, { count }] of Object.entries(kinds)) assert.equal(starts[kind].length, count, `${kind}: mmap calls in the trace`)

  const mark = lines.findIndex((line) => line.includes('"/node-mmap-trace-mark"'))
  assert.ok(mark >= 0, 'the mark is in the trace')
  const unmapped = new Map() // page -> times unmapped
  const calls = Object.fromEntries(Object.keys(kinds).map((kind) => [kind, []]))
  for (const line of lines.slice(mark)) {
    const m = /^munmap\((0x[0-9a-f]+), (\d+)\)\s+= 0/.exec(line)
    if (!m) continue
    const covered = pages(BigInt(m[1]), Number(m[2]))
    const mine = covered.filter((page) => ours.has(page))
    if (mine.length === 0) continue // the runtime's own memory
    assert.equal(mine.length, covered.length, `${line}: unmaps pages that were not ours`)
    for (const page of covered) unmapped.set(page, (unmapped.get(page) ?? 0) + 1)
    // A run may join ranges of different kinds that lay side by side: the call counts for each.
    for (const kind of new Set(covered.map((page) => ours.get(page)))) calls[kind].push({ start: BigInt(m[1]), length: Number(m[2]) })
  }
  for (const [page, kind] of ours) assert.equal(unmapped.get(page), 1, `${kind} page ${page.toString(16)} unmapped once`)
  // Larger than 1 MiB: each alone, exactly its own range.
  assert.deepEqual(
    calls.big.map(({ start }) => start).sort(),
    [...starts.big].sort(),
    'each large mapping is unmapped by a call of its own',
  )
  for (const { length } of calls.big) assert.equal(length, roundUp(kinds.big.size))
  // Locked memory never waits either (its charge against RLIMIT_MEMLOCK would linger).
  for (const kind of ['locked', 'lockedLater']) {
    assert.deepEqual(
      calls[kind].map(({ start, length }) => `${start.toString(16)}+${length}`).sort(),
      starts[kind].map((start) => `${start.toString(16)}+${kinds[kind].size}`).sort(),
      `${kind}: each mapping is unmapped by a call of its own`,
    )
  }
  // In runs of at most 64: 512 pages need 8 calls, 128 anonymous mappings 2, and the
  // placeholders, which unmap() leaves side by side, come back as one run or a few. The bounds
  // leave room for the runtime's own mappings placed among ours, and for collections that
  // free them in several batches.
  assert.ok(calls.small.length <= 32, `${calls.small.length} munmap calls for ${kinds.small.count} one-page mappings`)
  assert.ok(calls.anonymous.length <= 16, `${calls.anonymous.length} munmap calls for ${kinds.anonymous.count} anonymous mappings`)
  assert.ok(calls.placeholder.length <= 16, `${calls.placeholder.length} munmap calls for ${kinds.placeholder.count} placeholders`)
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

test("the flusher's async resource says it keeps nothing alive (hasRef() is false), once per thread", () => {
  // What async_hooks users see of it (Jest's --detectOpenHandles lists resources without
  // hasRef() as open): one resource per env that loads the addon, made at load.
  const result = runScript(
    `const hooks = require('node:async_hooks')
    const seen = []
    hooks.createHook({ init(id, type, trigger, resource) { if (type === 'node-mmap unmap') seen.push(resource) } }).enable()
    require(MMAP)
    require(MMAP)
    process.stdout.write(JSON.stringify(seen.map((r) => typeof r.hasRef === 'function' && r.hasRef())))`,
  )
  assertCleanExit(result)
  assert.deepEqual(JSON.parse(result.stdout), [false])
})
