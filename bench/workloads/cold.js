'use strict'
// Workload 5, cold cache: before every scan the file's pages are dropped from the page cache
// (the C floor's `drop`: fdatasync, then posix_fadvise(POSIX_FADV_DONTNEED); no root needed),
// the drop is checked with mmap.incore (resident pages near 0), then the file is scanned for a
// byte that is not there:
//   ours with advice  mmap.openSync(path, { advise }) + indexOf, for MADV_NORMAL,
//                     MADV_SEQUENTIAL, MADV_WILLNEED and MADV_HUGEPAGE (which, where the
//                     filesystem has large folios, makes the kernel read 2 MiB folios: see the
//                     random-access workload)
//   readSync          fs.readSync in 1 MiB chunks + indexOf
// The table shows what each advice buys against plain reads from disk.

const fs = require('node:fs')
const u = require('../lib/util')
const { dropPageCache } = require('../lib/floor')

const CHUNK = u.MiB

function readSyncScan(file, missing) {
  const chunk = Buffer.allocUnsafe(CHUNK)
  const fd = fs.openSync(file, 'r')
  try {
    for (let pos = 0; ;) {
      const n = fs.readSync(fd, chunk, 0, CHUNK, pos)
      if (n === 0) return -1
      const at = chunk.subarray(0, n).indexOf(missing)
      if (at !== -1) return pos + at
      pos += n
    }
  } finally {
    fs.closeSync(fd)
  }
}

async function main(config) {
  const { file, missing } = config
  const size = fs.statSync(file).size
  const label = `${(size / u.MiB).toFixed(0)} MiB`
  if (!config.floor.ok) {
    const reason = `cannot drop the page cache without the C helper: ${config.floor.reason}`
    return {
      rows: [
        {
          workload: '5. cold cache',
          name: `cold scan ${label}`,
          unit: 'ms',
          ours: null,
          baseline: 'fs.readSync 1 MiB chunks',
          base: null,
          error: reason,
        },
      ],
      notes: [],
      raw: {},
    }
  }
  const mmap = require(config.root)
  const oursWith = (advice) => () => {
    const buf = mmap.openSync(file, { advise: mmap[advice] })
    const found = buf.indexOf(missing)
    mmap.unmap(buf)
    return found
  }
  const variants = {
    MADV_NORMAL: oursWith('MADV_NORMAL'),
    MADV_SEQUENTIAL: oursWith('MADV_SEQUENTIAL'),
    MADV_WILLNEED: oursWith('MADV_WILLNEED'),
    MADV_HUGEPAGE: oursWith('MADV_HUGEPAGE'),
    readSync: () => readSyncScan(file, missing),
  }
  const names = Object.keys(variants)
  const times = Object.fromEntries(names.map((n) => [n, []]))
  const residentAfterDrop = []
  let totalPages = 0
  u.progress(
    `cold cache ${label}: ${config.reps} runs of ${names.length} variants, page cache dropped before each`,
  )
  for (let rep = 0; rep < config.reps; rep++) {
    for (const name of u.rotate(names, rep)) {
      await u.quiesce()
      dropPageCache(config.floor.bin, file)
      const probe = mmap.openSync(file)
      const [notResident, resident] = mmap.incore(probe)
      mmap.unmap(probe)
      residentAfterDrop.push(resident)
      totalPages = notResident + resident
      const t0 = u.now()
      const found = variants[name]()
      times[name].push((u.now() - t0) / 1e6)
      if (found !== -1)
        throw new Error(`${name} found byte ${missing} at ${found}: the file is wrong`)
    }
  }
  const rows = []
  for (const advice of ['MADV_NORMAL', 'MADV_SEQUENTIAL', 'MADV_WILLNEED', 'MADV_HUGEPAGE']) {
    rows.push({
      workload: '5. cold cache',
      name: `cold scan ${label}: openSync({ advise: ${advice} })`,
      unit: 'ms',
      ours: u.median(times[advice]),
      baseline: 'fs.readSync 1 MiB chunks + indexOf',
      base: u.median(times.readSync),
    })
  }
  const worst = Math.max(...residentAfterDrop)
  const notes = [
    `cold cache: after each drop, mmap.incore saw at most ${worst} of ${totalPages} pages resident ` +
      `(median ${u.median(residentAfterDrop)})${worst > totalPages / 100 ? ': THE DROP DID NOT WORK, these are not cold reads' : ''}`,
  ]
  return { rows, notes, raw: { times, residentAfterDrop, totalPages } }
}

u.runWorkload(main)
