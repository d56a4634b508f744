'use strict'
// Workload 3, random access: N reads of 64-byte records at random offsets of a page-cached file,
// the same precomputed offsets for both, each run timed from open to close:
//   ours      mmap.openSync(path), then mapped.copy(record, 0, off, off + 64) into one reused
//             64-byte Buffer (+ unmap)
//   in place  mmap.openSync(path), then the record's byte read straight from the mapping: what
//             a mapping is for (no copy at all; the baselines copy first, then read that byte)
//   pread     fs.openSync, then fs.readSync(fd, record, 0, 64, off) into one reused Buffer
//   heap      the same .copy from a Buffer already holding the whole file (fs.readFileSync, not
//             timed): what the copy itself costs in Node, with no mapping and no system call
// Each adds one byte of each record to a checksum, and the checksums must agree.

const fs = require('node:fs')
const u = require('../lib/util')

const RECORD = 64

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

function inPlaceReads(mmap, file, offs) {
  const mapped = mmap.openSync(file)
  let sum = 0
  for (let i = 0; i < offs.length; i++) {
    sum += mapped[offs[i] + (i & (RECORD - 1))]
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

function preadReads(file, offs) {
  const fd = fs.openSync(file, 'r')
  const record = Buffer.allocUnsafe(RECORD)
  let sum = 0
  try {
    for (let i = 0; i < offs.length; i++) {
      fs.readSync(fd, record, 0, RECORD, offs[i])
      sum += record[i & (RECORD - 1)]
    }
  } finally {
    fs.closeSync(fd)
  }
  return sum
}

async function main(config) {
  const mmap = require(config.root)
  const { file, count } = config
  const size = fs.statSync(file).size
  const offs = offsets(count, size)
  u.warmPageCache(file)
  u.progress(`random access: ${config.reps} runs of ${count} reads of ${RECORD} bytes`)
  const heap = fs.readFileSync(file)
  const run = {
    ours: () => oursReads(mmap, file, offs),
    inPlace: () => inPlaceReads(mmap, file, offs),
    pread: () => preadReads(file, offs),
    heap: () => heapReads(heap, offs),
  }
  const times = { ours: [], inPlace: [], pread: [], heap: [] }
  const sums = new Set()
  for (let rep = -1; rep < config.reps; rep++) {
    for (const name of u.rotate(Object.keys(run), rep + 1)) {
      await u.quiesce()
      const t0 = u.now()
      sums.add(run[name]())
      const ns = (u.now() - t0) / count
      if (rep >= 0) times[name].push(ns)
    }
  }
  if (sums.size !== 1)
    throw new Error(`the two readers disagree on the records: checksums ${[...sums]}`)
  return {
    rows: [
      {
        workload: '3. random access',
        name: `${count} random 64 B reads of ${(size / u.MiB).toFixed(0)} MiB: mapped.copy`,
        unit: 'ns/read',
        ours: u.median(times.ours),
        baseline: 'fs.readSync (pread) 64 B',
        base: u.median(times.pread),
        target: { ratioMax: 1 / 20 },
      },
      {
        workload: '3. random access',
        name: `${count} random 64 B reads of ${(size / u.MiB).toFixed(0)} MiB: in place, no copy`,
        unit: 'ns/read',
        ours: u.median(times.inPlace),
        baseline: 'fs.readSync (pread) 64 B',
        base: u.median(times.pread),
        target: { ratioMax: 1 / 20 },
      },
      {
        workload: '3. random access',
        name: `${count} random 64 B reads of ${(size / u.MiB).toFixed(0)} MiB: mapped.copy`,
        unit: 'ns/read',
        ours: u.median(times.ours),
        baseline: 'heap Buffer .copy (file preloaded)',
        base: u.median(times.heap),
        target: null,
      },
    ],
    notes: [
      `random access: the four readers agree on the checksum of the records (${[...sums][0]}); each run includes open and close/unmap`,
    ],
    raw: { times },
  }
}

u.runWorkload(main)
