'use strict'
// The finalizer: once the last reference to a mapped Buffer is gone and GC ran, the mapping
// leaves the process (the kernel's /proc/self/maps is the oracle). Finalizers run on a later
// event-loop turn, never inside gc(), so every wait here polls with timers against a deadline.

const test = require('node:test')
const assert = require('node:assert/strict')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

const mmap = require('..')
const {
  PACKAGE,
  tempDir,
  randomFileIn,
  mapsLines,
  mappingsOf,
  exposeGc,
  pollUntil,
  assertCleanExit,
  straceUnavailable,
  straceScript,
  mappingCountOf,
} = require('./helpers.js')

const { PAGESIZE, PROT_READ, PROT_WRITE, MAP_SHARED } = mmap
const RW = PROT_READ | PROT_WRITE
const gc = exposeGc()
const dir = tempDir(test)
let serial = 0

function randomFile(size) {
  return randomFileIn(dir, `f-${++serial}.bin`, size)
}

/** Maps `file` and checks it, in a frame of its own, so no reference outlives the call. */
function mapWithoutKeeping(file, bytes, protection = PROT_READ) {
  const fd = fs.openSync(file, protection & PROT_WRITE ? 'r+' : 'r')
  const buf = mmap.map(bytes.length, protection, MAP_SHARED, fd)
  fs.closeSync(fd)
  assert.ok(buf.equals(bytes))
  assert.equal(mappingCountOf(file), 1, 'the new mapping is not in /proc/self/maps')
  return null
}

test('a dropped Buffer is unmapped once GC has run', async () => {
  const { file, bytes } = randomFile(4 * PAGESIZE)
  mapWithoutKeeping(file, bytes)
  const gone = await pollUntil(() => mappingCountOf(file) === 0, { gc })
  assert.ok(gone, `the mapping of ${file} is still in /proc/self/maps after GC and 10 s of event-loop turns`)
})

test('a MAP_SHARED write made just before the drop is in the file after the unmap', async () => {
  const { file, bytes } = randomFile(2 * PAGESIZE)
  const patch = randomBytes(100)
  ;(() => {
    const fd = fs.openSync(file, 'r+')
    const buf = mmap.map(bytes.length, RW, MAP_SHARED, fd)
    fs.closeSync(fd)
    patch.copy(buf, PAGESIZE - 50)
  })()
  assert.ok(await pollUntil(() => mappingCountOf(file) === 0, { gc }), 'not unmapped')
  const expected = Buffer.from(bytes)
  patch.copy(expected, PAGESIZE - 50)
  assert.ok(fs.readFileSync(file).equals(expected))
})

test('a view (subarray, Uint8Array over buf.buffer) keeps the mapping alive', async () => {
  const { file, bytes } = randomFile(3 * PAGESIZE)
  let views = (() => {
    const fd = fs.openSync(file, 'r')
    const buf = mmap.map(bytes.length, PROT_READ, MAP_SHARED, fd)
    fs.closeSync(fd)
    return [buf.subarray(PAGESIZE, 2 * PAGESIZE), new Uint8Array(buf.buffer, 2 * PAGESIZE)]
  })()
  // The Buffer object itself is garbage now; its memory is not, while a view lives.
  for (let turn = 0; turn < 20; turn++) {
    gc()
    await new Promise(setImmediate)
  }
  assert.equal(mappingCountOf(file), 1, 'unmapped while a view was alive')
  // Still the live mapping of the file: a write through fs shows in the views.
  const patch = randomBytes(16)
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, patch, 0, patch.length, PAGESIZE + 8)
  fs.writeSync(fd, patch, 0, patch.length, 2 * PAGESIZE + 8)
  fs.closeSync(fd)
  assert.ok(views[0].subarray(8, 24).equals(patch))
  assert.ok(Buffer.from(views[1].subarray(8, 24)).equals(patch))
  views = null
  assert.ok(await pollUntil(() => mappingCountOf(file) === 0, { gc }), 'not unmapped after the views went')
})

test('200,000 maps of 64 KiB that yield every 1,000 end without ENOMEM and leave no mapping', async () => {
  const size = 64 * 1024
  const { file, bytes } = randomFile(size)
  const fd = fs.openSync(file, 'r')
  const start = mapsLines().length
  let most = 0
  try {
    for (let i = 0; i < 200_000; i++) {
      const buf = mmap.map(size, PROT_READ, MAP_SHARED, fd)
      if (i % 977 === 0) {
        const at = (i * 31) % size
        assert.equal(buf[at], bytes[at], `map #${i} shows the wrong byte at ${at}`)
      }
      if ((i + 1) % 1000 === 0) {
        gc()
        await new Promise(setImmediate)
        if ((i + 1) % 20_000 === 0) most = Math.max(most, mappingsOf(file).length)
      }
    }
  } finally {
    fs.closeSync(fd)
  }
  // The loop's own bound: finalizers kept up (far from vm.max_map_count, 65530).
  assert.ok(most < 20_000, `${most} mappings of the file were alive at once`)
  const settled = await pollUntil(() => mappingsOf(file).length === 0 && mapsLines().length <= start + 100, {
    gc,
    timeoutMs: 20_000,
  })
  assert.ok(
    settled,
    `after polling: ${mappingsOf(file).length} mappings of the file left, ` +
      `${mapsLines().length} lines in /proc/self/maps (${start} before the loop)`,
  )
  assert.ok(fs.readFileSync(file).equals(bytes), 'the file changed')
})

// --- Huge pages (MAP_HUGETLB) ----------------------------------------------------------------
// The kernel maps, unmaps and replaces huge pages only whole: a mapping of 4 KiB with
// MAP_HUGETLB takes a whole 2 MiB page, and must be given back (and replaced by unmap()'s
// placeholder) as one. Oracle: HugePages_Free in /proc/meminfo, and the mappings with
// 2048 kB pages in /proc/self/smaps.

/** Free huge pages of the default size (/proc/meminfo), or null where the kernel has none. */
function hugePagesFree() {
  const match = /^HugePages_Free:\s+(\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))
  return match ? Number(match[1]) : null
}

/** Why the huge-page tests cannot run here, or null. */
function noHugePages() {
  if (process.platform !== 'linux') return 'huge pages (MAP_HUGETLB) are Linux only'
  const free = hugePagesFree()
  if (free === null || free < 2) {
    return `${free ?? 0} free huge pages: reserve some first (as root: echo 4 > /proc/sys/vm/nr_hugepages; .ci/run does)`
  }
  return null
}

const HUGE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_HUGETLB
/** The addon itself (this platform's build), for its hidden count of the bytes placeholders hold. */
const binding = require(
  path.join(PACKAGE, fs.readdirSync(PACKAGE).find((f) => f.endsWith('.node') && f.includes(`.${process.platform}-${process.arch}-`))),
)

test('a MAP_HUGETLB mapping of one small page gives its whole huge page back when collected', { skip: noHugePages() ?? false }, async () => {
  const before = hugePagesFree()
  ;(() => {
    const buf = mmap.map(PAGESIZE, RW, HUGE, -1)
    buf.fill(7)
    assert.equal(buf.length, PAGESIZE)
    assert.equal(hugePagesFree(), before - 1, 'one huge page taken')
  })()
  assert.ok(await pollUntil(() => hugePagesFree() === before, { gc }), `HugePages_Free ${hugePagesFree()}, ${before} before`)
})

test('unmap() of a MAP_HUGETLB mapping takes the whole huge page away at once', { skip: noHugePages() ?? false }, async () => {
  const before = hugePagesFree()
  let buf = mmap.map(PAGESIZE + 1, RW, HUGE, -1)
  buf[PAGESIZE] = 9
  assert.equal(hugePagesFree(), before - 1)
  mmap.unmap(buf)
  assert.equal(buf[PAGESIZE], 0, 'the Buffer reads zeros')
  assert.equal(hugePagesFree(), before, 'the placeholder replaced the whole huge page')
  buf = null
})

test('the system calls behind a huge page\'s unmap() and collection cover it whole, and no more (strace)', { skip: noHugePages() ?? straceUnavailable() ?? false }, () => {
  const HUGE_PAGE = 2 * 1024 * 1024
  const source = `
    const fs = require('node:fs')
    const v8 = require('node:v8')
    v8.setFlagsFromString('--expose-gc')
    const collect = require('node:vm').runInNewContext('gc')
    const mmap = require(MMAP)
    const binding = require(require('node:path').join(MMAP, fs.readdirSync(MMAP).find((f) => f.endsWith('.node'))))
    const free = () => Number(/^HugePages_Free:\\s+(\\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))[1])
    const flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_HUGETLB
    const RW = mmap.PROT_READ | mmap.PROT_WRITE
    const before = free()
    ;(() => {
      const unmapped = mmap.map(mmap.PAGESIZE + 1, RW, flags, -1)
      unmapped[mmap.PAGESIZE] = 1
      mmap.unmap(unmapped)
      mmap.map(mmap.PAGESIZE, RW, flags, -1)[0] = 1
    })()
    ;(async () => {
      for (let turn = 0; turn < 5000 && (binding.__placeholderBytes() > 0 || free() < before); turn++) {
        collect()
        await new Promise(setImmediate)
      }
      process.stdout.write(JSON.stringify({ held: binding.__placeholderBytes(), lost: before - free() }))
    })()
  `
  const { result, lines } = straceScript(source, 'mmap,munmap', { threads: false })
  assertCleanExit(result)
  assert.deepEqual(JSON.parse(result.stdout), { held: 0, lost: 0 }, 'placeholders and huge pages all given back')
  const mapped = (size) => {
    const line = lines.find((l) => l.startsWith(`mmap(NULL, ${size}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB, -1, 0)`))
    assert.ok(line, `the huge-page mmap of ${size} bytes is in the trace`)
    return BigInt(/= (0x[0-9a-f]+)/.exec(line)[1])
  }
  const [first, second] = [mapped(PAGESIZE + 1), mapped(PAGESIZE)]
  // unmap(): a placeholder over the whole huge page, later given back (alone or in a run of
  // placeholders), never more than placeholders.
  const hex = (n) => '0x' + n.toString(16)
  assert.ok(
    lines.some((l) => l.startsWith(`mmap(${hex(first)}, ${HUGE_PAGE}, `) && l.includes('MAP_FIXED') && l.endsWith(`= ${hex(first)}`)),
    `a placeholder of ${HUGE_PAGE} bytes at ${hex(first)}`,
  )
  const munmaps = lines
    .map((l) => /^munmap\((0x[0-9a-f]+), (\d+)\)\s+= (-?\d+)/.exec(l))
    .filter(Boolean)
    .map((m) => ({ start: BigInt(m[1]), end: BigInt(m[1]) + BigInt(m[2]), ok: m[3] === '0' }))
  const covering = (start) => munmaps.filter((m) => m.start <= start && m.end >= start + BigInt(HUGE_PAGE))
  assert.ok(covering(first).some((m) => m.ok), `the placeholder at ${hex(first)} is unmapped whole`)
  // Collected: its own munmap, exactly the huge page (huge pages never wait in a run).
  const own = munmaps.filter((m) => m.start === second)
  assert.deepEqual(own, [{ start: second, end: second + BigInt(HUGE_PAGE), ok: true }], `the huge page at ${hex(second)}`)
})
