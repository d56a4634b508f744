'use strict'
// Workload 3, random access: N reads of 64-byte records at random offsets of a page-cached file,
// the same precomputed offsets for all, each run timed from open to close:
//   ours      mmap.openSync(path), then mapped.copy(record, 0, off, off + 64) into one reused
//             64-byte Buffer (+ unmap)
//   in place  mmap.openSync(path), then the record's byte read straight from the mapping: what
//             a mapping is for (no copy at all; the baselines copy first, then read that byte)
//   pread     fs.openSync, then fs.readSync(fd, record, 0, 64, off) into one reused Buffer
//   heap      the same .copy from a Buffer already holding the whole file (fs.readFileSync just
//             before the run, not timed, and dropped after it): what the copy itself costs in
//             Node, with no mapping and no system call. Only this reader's runs hold that 1 GiB
//             Buffer: held through the others, it made in-place reads ~30% slower here.
// Each adds one byte of each record to a checksum, and the checksums must agree.
//
// Twice, with the file's page cache in two states; every reader reads the same cache:
//   as written     the cache the bench's 1 MiB write(2)s left: folios no larger than a write,
//                  so a mapping maps the file with one page-table entry per 4 KiB page, and
//                  nearly every random read of a 1 GiB file also misses the TLB.
//   MADV_HUGEPAGE  the pages dropped (the C floor's `drop`), then read back in one pass through
//                  mmap.openSync(path, { advise: MADV_HUGEPAGE }): where the filesystem has
//                  large folios and THP is not "never" (ext4 on Linux 6.18 here), the kernel
//                  reads the file in 2 MiB folios, and a mapping maps each with one entry.
// How much of the file a fresh mapping maps with 2 MiB entries (FilePmdMapped in
// /proc/self/smaps) is printed in the notes for each.
//
// In each state the C floor (bench/floor.c `random`) also makes the same reads, in place from a
// mapping and by pread, with nothing in between: a row compares our in-place reads with its,
// and a note gives its pread / in-place ratio, the most this machine allows in that state.

const fs = require('node:fs')
const u = require('../lib/util')
const { dropPageCache, floorRandom } = require('../lib/floor')

const { RECORD } = u

/** Offsets in [0, size - 64] from a fixed-seed xorshift, so every run reads the same records. */
function offsets(count, size) {
  const out = new Float64Array(count)
  let x = 0x2545f491
  const span = size - RECORD + 1
  for (let i = 0; i < count; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    const hi = (x >>> 0) / 2 ** 32
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    const lo = (x >>> 0) / 2 ** 32
    out[i] = Math.floor((hi + lo / 2 ** 32) * span)
  }
  return out
}

function oursReads(mmap, file, offs) {
  const mapped = mmap.openSync(file)
  const record = Buffer.allocUnsafe(RECORD)
  let sum = 0
  for (let i = 0; i < offs.length; i++) {
    const off = offs[i]
    mapped.copy(record, 0, off, off + RECORD)
    sum += record[i & (RECORD - 1)]
  }
  mmap.unmap(mapped)
  return sum
}

function heapReads(heap, offs) {
  const record = Buffer.allocUnsafe(RECORD)
  let sum = 0
  for (let i = 0; i < offs.length; i++) {
    const off = offs[i]
    heap.copy(record, 0, off, off + RECORD)
    sum += record[i & (RECORD - 1)]
  }
  return sum
}

const AS_WRITTEN = 'as written'
const HUGE_FILL = 'MADV_HUGEPAGE'

/** Bytes read by `touchPages`: kept, so the JIT cannot drop the loads that fault pages in. */
let touched = 0

/** Reads one byte of every page of `mapped`, so that every page is faulted in. */
function touchPages(mmap, mapped) {
  for (let i = 0; i < mapped.length; i += mmap.PAGESIZE) touched += mapped[i]
}

/** Puts the file's page cache in the state `how`. */
function fillPageCache(mmap, config, how) {
  if (how === AS_WRITTEN) return u.warmPageCache(config.file) // resident, folios left as they are
  dropPageCache(config.floor.bin, config.file)
  const mapped = mmap.openSync(config.file, { advise: mmap.MADV_HUGEPAGE })
  touchPages(mmap, mapped)
  mmap.unmap(mapped)
}

/** KiB of the file that a fresh mapping maps with 2 MiB entries (FilePmdMapped), of its size. */
function pmdMapped(mmap, file) {
  const mapped = mmap.openSync(file)
  const sizeKiB = mapped.length / 1024
  touchPages(mmap, mapped)
  const smaps = fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')
  mmap.unmap(mapped)
  let inFile = false
  for (const line of smaps) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inFile = line.endsWith(` ${file}`)
    const match = inFile && /^FilePmdMapped:\s+(\d+) kB/.exec(line)
    if (match) return { kib: Number(match[1]), sizeKiB }
  }
  return null
}

/**
 * One phase: every reader `reps` times in rotation; medians in ns per read. A reader is
 * `{ prepare, read }`: `prepare()` runs untimed and its result is passed to the timed `read`.
 */
async function measure(readers, config, count, sums) {
  const times = Object.fromEntries(Object.keys(readers).map((name) => [name, []]))
  for (let rep = -1; rep < config.reps; rep++) {
    for (const name of u.rotate(Object.keys(readers), rep + 1)) {
      await u.quiesce()
      const { prepare = () => null, read } = readers[name]
      let prepared = prepare()
      const t0 = u.now()
      sums.add(read(prepared))
      const ns = (u.now() - t0) / count
      prepared = null
      if (rep >= 0) times[name].push(ns)
    }
  }
  return times
}

const ROW = {
  workload: '3. random access',
  unit: 'ns/read',
  baseline: 'fs.readSync (pread) 64 B',
  target: { ratioMax: 1 / 20 },
}

async function main(config) {
  const mmap = require(config.root)
  const { file, count } = config
  const size = fs.statSync(file).size
  const offs = offsets(count, size)
  const label = `${count} random 64 B reads of ${(size / u.MiB).toFixed(0)} MiB`
  const readers = {
    ours: { read: () => oursReads(mmap, file, offs) },
    inPlace: { read: () => u.inPlaceReads(mmap, file, offs) },
    pread: { read: () => u.preadReads(file, offs) },
    heap: { prepare: () => fs.readFileSync(file), read: (heap) => heapReads(heap, offs) },
  }
  const rows = []
  const notes = []
  const raw = {}
  const sums = new Set()
  for (const fill of [AS_WRITTEN, HUGE_FILL]) {
    const cache = `, page cache ${fill}`
    if (fill === HUGE_FILL && !config.floor.ok) {
      const error = `cannot drop the page cache without the C helper: ${config.floor.reason}`
      const name = `${label}${cache}: in place, no copy`
      rows.push({ ...ROW, name, ours: null, base: null, error })
      continue
    }
    fillPageCache(mmap, config, fill)
    const pmd = pmdMapped(mmap, file)
    notes.push(
      `random access, page cache ${fill}: a fresh mapping of the file had ` +
        (pmd
          ? `${(pmd.kib / u.KiB).toFixed(0)} of ${(pmd.sizeKiB / u.KiB).toFixed(0)} MiB mapped with 2 MiB entries (FilePmdMapped)`
          : 'no FilePmdMapped line in /proc/self/smaps'),
    )
    u.progress(`random access${cache}: ${config.reps} runs of ${count} reads of ${RECORD} bytes`)
    const times = await measure(readers, config, count, sums)
    const floor = []
    for (let rep = 0; config.floor.ok && rep < config.reps; rep++) {
      const run = floorRandom(config.floor.bin, file, count)
      sums.add(run.sum)
      floor.push(run)
    }
    raw[fill] = { times, pmd, floor }
    const pread = u.median(times.pread)
    rows.push(
      { ...ROW, name: `${label}${cache}: mapped.copy`, ours: u.median(times.ours), base: pread },
      { ...ROW, name: `${label}${cache}: in place, no copy`, ours: u.median(times.inPlace), base: pread },
      {
        ...ROW,
        name: `${label}${cache}: mapped.copy`,
        ours: u.median(times.ours),
        baseline: 'heap Buffer .copy (file loaded just before, not timed)',
        base: u.median(times.heap),
        target: null,
      },
      {
        ...ROW,
        name: `${label}${cache}: in place, no copy`,
        ours: u.median(times.inPlace),
        baseline: 'C floor: the same reads in place (mmap)',
        base: config.floor.ok ? u.median(floor.map((run) => run.inPlace)) : null,
        error: config.floor.ok ? null : config.floor.reason,
        target: null,
      },
    )
    if (!config.floor.ok) continue
    const floorInPlace = u.median(floor.map((run) => run.inPlace))
    const floorPread = u.median(floor.map((run) => run.pread))
    notes.push(
      `random access, page cache ${fill}: the C floor read in place in ${floorInPlace.toFixed(1)} ns and by pread in ` +
        `${floorPread.toFixed(0)} ns per read (medians of ${config.reps}): pread / in place = ${(floorPread / floorInPlace).toFixed(1)}x, ` +
        `the most this machine gave in this state; ours in place took ${(u.median(times.inPlace) / floorInPlace).toFixed(2)}x its time`,
    )
  }
  if (sums.size !== 1)
    throw new Error(`the readers disagree on the records: checksums ${[...sums]}`)
  notes.push(
    `random access: the four readers agree on the checksum of the records (${[...sums][0]}); each run includes open and close/unmap`,
  )
  return { rows, notes, raw }
}

u.runWorkload(main)
