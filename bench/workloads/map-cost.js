'use strict'
// Workload 1, map cost.
//
// a) `map` + `unmap` pairs of 4 KiB and of 1 MiB of a file, in nanoseconds per pair, against the
//    C floor (mmap + munmap with nothing in between). node-mmap's unmap() swaps the range for a
//    placeholder and leaves the final munmap to the Buffer's finalizer (so native code still
//    holding the pointer cannot crash), so "ours" is the honest total: the loop, then a GC and
//    event-loop turns until the address space is back (VmSize), divided by the pairs. The loop
//    alone is shown beside it. Also against the Node-API floor's pair (bench/napi-floor.c: map,
//    then unmap by detaching the ArrayBuffer, the munmap in its finalizer; measured the same way
//    as ours): the notes give its ratio to the C floor, what Node-API alone costs a pair.
// b) `map` alone (nobody unmaps) against the peers' `map`: every 1,000 maps, a GC and one
//    event-loop turn so finalizers can run, the same for every implementation. Also against the
//    Node-API floor (bench/napi-floor.c): an addon that only reads five integers, calls mmap and
//    makes the Buffer with a munmap finalizer through Node-API, so "ours / Node-API floor" is what
//    node-mmap's own work costs, and "peer / Node-API floor" what a peer saves by calling V8 and
//    Node's C++ directly (or not). The GC is a
//    scavenge (gc({ type: 'minor' })): a full gc() costs ~10 ms, ~10 us per map, and would
//    drown what is measured.

const fs = require('node:fs')
const path = require('node:path')
const u = require('../lib/util')
const { floorPairs } = require('../lib/floor')

const SIZES = [
  { bytes: 4 * u.KiB, label: '4 KiB' },
  { bytes: u.MiB, label: '1 MiB' },
]
const YIELD_EVERY = 1000

function pairLoop(mmap, fd, size, n) {
  const { PROT_READ, MAP_SHARED } = mmap
  for (let i = 0; i < n; i++) mmap.unmap(mmap.map(size, PROT_READ, MAP_SHARED, fd, 0))
}

/** Ours: `n` map + unmap pairs, then until the finalizers have given the ranges back. */
async function oursPairs(mmap, fd, size, n) {
  await u.quiesce()
  const vm0 = u.procStatus('VmSize')
  const lines0 = u.mapsLines()
  const watch = u.watchGc()
  const t0 = u.now()
  pairLoop(mmap, fd, size, n)
  const t1 = u.now()
  const vmGrowth = u.procStatus('VmSize') - vm0
  const linesGrowth = u.mapsLines() - lines0
  const reservedKiB = (n * Math.ceil(size / mmap.PAGESIZE) * mmap.PAGESIZE) / 1024
  const settled = await u.settle(vm0, reservedKiB)
  const t2 = u.now()
  const gc = await watch.stop()
  return {
    loop: (t1 - t0) / n,
    total: (t2 - t0) / n,
    settleMs: (t2 - t1) / 1e6,
    ...settled,
    vmGrowthKiB: vmGrowth,
    linesGrowth,
    gc,
  }
}

/** CPU time of the whole process (all threads), in nanoseconds. */
function cpuNow() {
  const { user, system } = process.cpuUsage()
  return (user + system) * 1000
}

/**
 * `n` maps with no unmap, yielding every 1,000: nanoseconds per map, yields included, in wall
 * time; with `more`, also in CPU time (`more.cpu`, every thread of the process: V8's GC helpers
 * too) and in the main thread's run time (`more.main`, where Linux tells it).
 */
async function mapOnly(impl, fd, size, n, more) {
  await u.quiesce()
  const { PROT_READ, MAP_SHARED } = impl
  const map = impl.map
  const m0 = u.mainThreadNs()
  const c0 = cpuNow()
  const t0 = u.now()
  for (let i = 1; i <= n; i++) {
    map(size, PROT_READ, MAP_SHARED, fd, 0)
    if (i % YIELD_EVERY === 0) {
      u.minorGc()
      await u.immediate()
    }
  }
  const wall = (u.now() - t0) / n
  if (more) {
    more.cpu.push((cpuNow() - c0) / n)
    if (m0 !== null) more.main.push((u.mainThreadNs() - m0) / n)
  }
  return wall
}

async function main(config) {
  const mmap = require(config.root)
  const file = path.join(config.dir, 'map-cost.bin')
  u.writePatternFile(file, u.MiB, 0)
  const fd = fs.openSync(file, 'r')
  const rows = []
  const notes = []
  const raw = {}

  // The Node-API floor, for both parts.
  const napiFloor = config.napiFloor
  let napiFloorImpl = null
  if (napiFloor.ok) {
    try {
      const { map, unmap } = require(napiFloor.bin)
      const { PROT_READ, MAP_SHARED, PAGESIZE } = mmap
      napiFloorImpl = { map, unmap, PROT_READ, MAP_SHARED, PAGESIZE }
    } catch (err) {
      napiFloor.ok = false
      napiFloor.reason = `does not load: ${u.describeError(err)}`
    }
  }

  // a) map + unmap pairs against the floor.
  for (const size of SIZES) {
    const n = config.pairs
    u.progress(`map+unmap ${size.label}: ${config.reps} x ${n} pairs`)
    await oursPairs(mmap, fd, size.bytes, Math.min(n, 5000)) // warm-up
    if (napiFloorImpl) await oursPairs(napiFloorImpl, fd, size.bytes, Math.min(n, 5000))
    const ours = []
    const floor = []
    const napi = []
    for (let rep = 0; rep < config.reps; rep++) {
      for (const which of u.rotate(['ours', 'floor', 'napi'], rep)) {
        if (which === 'ours') ours.push(await oursPairs(mmap, fd, size.bytes, n))
        else if (which === 'floor' && config.floor.ok) floor.push(floorPairs(config.floor.bin, file, size.bytes, n))
        else if (which === 'napi' && napiFloorImpl) napi.push(await oursPairs(napiFloorImpl, fd, size.bytes, n))
      }
    }
    raw[`pairs ${size.label}`] = { ours, floor, napiFloor: napi }
    const unsettled = ours.filter((r) => !r.settled).length
    const total = u.median(ours.map((r) => r.total))
    const loop = u.median(ours.map((r) => r.loop))
    rows.push({
      workload: '1. map cost',
      name: `map+unmap ${size.label}, total until finalized`,
      unit: 'ns/pair',
      ours: total,
      oursNote: `loop only ${Math.round(loop).toLocaleString('en-US')}`,
      baseline: 'C floor mmap+munmap',
      base: config.floor.ok ? u.median(floor) : null,
      error: config.floor.ok ? null : config.floor.reason,
      target: { ratioMax: 1.5 },
    })
    const napiTotal = napi.length ? u.median(napi.map((r) => r.total)) : null
    rows.push({
      workload: '1. map cost',
      name: `map+unmap ${size.label}, total until finalized`,
      unit: 'ns/pair',
      ours: total,
      baseline: 'Node-API floor map+detach',
      base: napiTotal,
      error: napiFloor.ok ? null : napiFloor.reason,
      target: null,
    })
    if (napiTotal !== null && config.floor.ok) {
      notes.push(
        `map+unmap ${size.label}: the Node-API floor's pair (map, then napi_detach_arraybuffer; the munmap in its finalizer) ` +
          `took ${Math.round(napiTotal).toLocaleString('en-US')} ns, ${(napiTotal / u.median(floor)).toFixed(2)}x the C floor ` +
          `(unsettled runs: ${napi.filter((r) => !r.settled).length}): what Node-API alone costs a pair, before any work of ours`,
      )
    }
    const last = ours[ours.length - 1]
    notes.push(
      `map+unmap ${size.label}: after ${n} pairs, before finalizers, VmSize had grown ${last.vmGrowthKiB} KiB ` +
        `and /proc/self/maps ${last.linesGrowth} lines (the kernel merges adjacent placeholders); ` +
        `the GC + waiting for finalizers took ${last.settleMs.toFixed(1)} ms (${last.turns} turns, ${last.gcs} GC); ` +
        `V8 ran ${last.gc.major} major, ${last.gc.incremental} incremental, ${last.gc.minor} minor GCs on its own in the loop ` +
        `(${last.gc.ms.toFixed(1)} ms)` +
        (unsettled ? `; ${unsettled} run(s) did not get the address space back within 5 s` : ''),
    )
  }

  // b) map alone, against the peers.
  const size = SIZES[0]
  const n = config.maps
  u.progress(`map alone ${size.label}: ${config.reps} x ${n} maps, yielding every ${YIELD_EVERY}`)
  const impls = [{ name: 'ours', impl: mmap }]
  if (napiFloorImpl) impls.push({ name: 'Node-API floor', impl: napiFloorImpl })
  for (const peer of config.peers) {
    if (!peer.ok) continue
    try {
      impls.push({ name: peer.name, impl: require(peer.dir) })
    } catch (err) {
      peer.ok = false
      peer.reason = `does not load: ${u.describeError(err)}`
    }
  }
  const samples = Object.fromEntries(impls.map((i) => [i.name, []]))
  const cpuSamples = Object.fromEntries(impls.map((i) => [i.name, []]))
  const mainSamples = Object.fromEntries(impls.map((i) => [i.name, []]))
  for (const { impl } of impls) await mapOnly(impl, fd, size.bytes, Math.min(n, 5000)) // warm-up
  for (let rep = 0; rep < config.reps; rep++) {
    for (const { name, impl } of u.rotate(impls, rep)) {
      const more = { cpu: cpuSamples[name], main: mainSamples[name] }
      samples[name].push(await mapOnly(impl, fd, size.bytes, n, more))
    }
  }
  raw[`map alone ${size.label}`] = samples
  raw[`map alone ${size.label}, CPU time`] = cpuSamples
  raw[`map alone ${size.label}, main thread run time`] = mainSamples
  const ours = u.median(samples.ours)
  for (const peer of config.peers) {
    rows.push({
      workload: '1. map cost',
      name: `map alone ${size.label}, GC + yield per ${YIELD_EVERY}`,
      unit: 'ns/map',
      ours,
      baseline: `${peer.name} map`,
      base: peer.ok ? u.median(samples[peer.name]) : null,
      error: peer.ok ? null : peer.reason,
      target: peer.name === '@riaskov/mmap-io' ? { ratioMax: 1.0 } : null,
    })
  }
  rows.push({
    workload: '1. map cost',
    name: `map alone ${size.label}, GC + yield per ${YIELD_EVERY}`,
    unit: 'ns/map',
    ours,
    baseline: 'Node-API floor map',
    base: napiFloor.ok ? u.median(samples['Node-API floor']) : null,
    error: napiFloor.ok ? null : napiFloor.reason,
    target: null,
  })
  if (napiFloor.ok) {
    const floorMap = u.median(samples['Node-API floor'])
    const vsFloor = config.peers
      .filter((peer) => peer.ok)
      .map((peer) => `${peer.name} ${(u.median(samples[peer.name]) / floorMap).toFixed(2)}x`)
    notes.push(
      `map alone: the Node-API floor (bench/napi-floor.c: mmap + napi_create_external_buffer with a munmap finalizer, nothing else) ` +
        `took ${Math.round(floorMap).toLocaleString('en-US')} ns; against it, ours ${(ours / floorMap).toFixed(2)}x` +
        (vsFloor.length ? `, ${vsFloor.join(', ')}` : ''),
    )
  }
  // CPU time leaves out the time this VM's CPUs were taken by other guests, which moves
  // wall-time medians by 10% or more here from one run to the next.
  const cpuOurs = u.median(cpuSamples.ours)
  const cpuRatios = impls
    .filter(({ name }) => name !== 'ours')
    .map(({ name }) => `${name} ${(cpuOurs / u.median(cpuSamples[name])).toFixed(2)}x`)
  notes.push(
    `map alone in CPU time (every thread of the process, same runs): ours ${Math.round(cpuOurs).toLocaleString('en-US')} ns; ` +
      `ours against ${cpuRatios.join(', ')}`,
  )
  // Paired: each run of ours against the run of the other in the same rotation, a few hundred
  // milliseconds apart, so that a slow stretch of the host weighs on both sides of one ratio.
  // The quartiles show how far apart single runs fall: when they straddle 1, single runs
  // disagree on which is faster.
  const paired = (series, name) => {
    const ratios = series.ours.map((value, i) => value / series[name][i]).sort((a, b) => a - b)
    const at = (q) => ratios[Math.min(ratios.length - 1, Math.floor(q * ratios.length))].toFixed(3)
    return `${at(0.5)}x [${at(0.25)}-${at(0.75)}]`
  }
  const others = impls.filter(({ name }) => name !== 'ours').map(({ name }) => name)
  const hasMain = mainSamples.ours.length === config.reps
  notes.push(
    `map alone, paired by run (ours / other in the same rotation, median [quartiles] of ${config.reps}): ` +
      others
        .map((name) => `${name}: wall ${paired(samples, name)}` + (hasMain ? `, main thread ${paired(mainSamples, name)}` : ''))
        .join('; '),
  )
  fs.closeSync(fd)
  return { rows, notes, raw }
}

u.runWorkload(main)
