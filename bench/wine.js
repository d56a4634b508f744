'use strict'
// The Windows rows (issue 14): scan and random reads through a mapping against fs.readFileSync
// and fs.readSync, run by the Windows node.exe under Wine:
//
//   bash .ci/wine.sh node bench/wine.js [--quick]
//
// Every ratio is between two figures of this one run. Wine is not Windows (its file reads and
// its MapViewOfFile are Linux system calls underneath), so the absolute figures mean little;
// the ratios say whether a mapping still pays on the Windows code path (src/sys/windows.rs).
// Prints the table; writes no file (.ci/run's bench section runs it and checks that the
// repository stays clean).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const u = require('./lib/util')
const { formatTable } = require('./lib/report')

const mmap = require('..')

const quick = process.argv.includes('--quick')
const SIZE = (quick ? 64 : 256) * u.MiB
const READS = quick ? 100_000 : 400_000
const ROUNDS = quick ? 3 : 7
const { RECORD } = u
const MISSING = 0x00 // the pattern file never holds this byte: every scan reads it all

/** Deterministic offsets of RECORD-byte reads inside `size` bytes (xorshift32). */
function offsets(size, count) {
  const out = new Float64Array(count)
  let x = 0x2545f491
  for (let i = 0; i < count; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = (x >>> 0) % (size - RECORD + 1)
  }
  return out
}

const scans = {
  'openSync + indexOf': (file) => {
    const mapped = mmap.openSync(file)
    const at = mapped.indexOf(MISSING)
    mmap.unmap(mapped)
    return at
  },
  'fs.readFileSync + indexOf': (file) => fs.readFileSync(file).indexOf(MISSING),
  'fs.readSync 1 MiB chunks + indexOf': (file) => {
    const chunk = Buffer.allocUnsafe(u.MiB)
    const fd = fs.openSync(file, 'r')
    try {
      for (let pos = 0; ; ) {
        const n = fs.readSync(fd, chunk, 0, chunk.length, pos)
        if (n === 0) return -1
        const at = chunk.subarray(0, n).indexOf(MISSING)
        if (at >= 0) return pos + at
        pos += n
      }
    } finally {
      fs.closeSync(fd)
    }
  },
}

const reads = {
  'in place from openSync': (file, offs) => u.inPlaceReads(mmap, file, offs),
  'fs.readSync 64 B': (file, offs) => u.preadReads(file, offs),
}

/** Runs each of `variants` ROUNDS times, in rotating order; medians in ms, and each result. */
function measure(variants, run) {
  const names = Object.keys(variants)
  const times = Object.fromEntries(names.map((name) => [name, []]))
  const results = {}
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of u.rotate(names, round)) {
      const t0 = u.now()
      const result = run(variants[name])
      times[name].push((u.now() - t0) / 1e6)
      if (name in results && results[name] !== result) throw new Error(`${name}: ${result}, before ${results[name]}`)
      results[name] = result
    }
  }
  return { ms: Object.fromEntries(names.map((name) => [name, u.median(times[name])])), results }
}

function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-bench-wine-'))
  const file = path.join(dir, 'pattern.bin')
  try {
    u.progress(`${process.platform}-${process.arch} ${process.version}: writing ${SIZE / u.MiB} MiB`)
    u.writePatternFile(file, SIZE, MISSING)
    u.warmPageCache(file)
    u.progress(`scan, ${ROUNDS} rounds`)
    const scan = measure(scans, (fn) => fn(file))
    for (const [name, at] of Object.entries(scan.results)) {
      if (at !== -1) throw new Error(`scan ${name} found the missing byte at ${at}`)
    }
    const offs = offsets(SIZE, READS)
    u.progress(`random reads: ${READS} of ${RECORD} B, ${ROUNDS} rounds`)
    const random = measure(reads, (fn) => fn(file, offs))
    const sums = new Set(Object.values(random.results))
    if (sums.size !== 1) throw new Error(`the random reads disagree: ${JSON.stringify(random.results)}`)

    const scanName = `scan ${SIZE / u.MiB} MiB page-cached: openSync + indexOf`
    const readName = `${READS} random ${RECORD} B reads of ${SIZE / u.MiB} MiB: in place`
    const workload = process.platform === 'win32' ? 'Windows node.exe' : `${process.platform} (not Windows)`
    const rows = [
      ...['fs.readFileSync + indexOf', 'fs.readSync 1 MiB chunks + indexOf'].map((baseline) => ({
        workload,
        name: scanName,
        unit: 'ms',
        ours: scan.ms['openSync + indexOf'],
        baseline,
        base: scan.ms[baseline],
      })),
      {
        workload,
        name: readName,
        unit: 'ns/read',
        ours: (random.ms['in place from openSync'] * 1e6) / READS,
        baseline: 'fs.readSync 64 B',
        base: (random.ms['fs.readSync 64 B'] * 1e6) / READS,
      },
    ]
    process.stdout.write(`\n${formatTable(rows)}\n`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main()
