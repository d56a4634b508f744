#!/usr/bin/env node
'use strict'
// Two builds of node-mmap in one process, side by side: `map` alone (a scavenge and an event-loop
// turn every 1,000, as bench/workloads/map-cost.js does) and `map` + `unmap` pairs (then a GC
// and two turns, so their finalizers run inside the measurement), in CPU time and wall time.
// CPU time leaves out the time other guests take this VM's CPUs, which moves wall-time figures
// by 10% or more from one run to the next; the runs alternate, so drifts hit both builds alike.
//
//   node --expose-gc bench/ab.js <dir A> <dir B> [--reps 15] [--count 40000]
//
// A build is a directory that `require` loads as node-mmap: a checkout with its addon built
// (`git worktree add /tmp/old <commit> && cd /tmp/old && npm install`). Prints medians per
// call and B/A: below 1, B took less time. This is how the changes described in
// bench/PROFILE.md were measured; it is a tool for deciding, not a bench result.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`)
  return at > 0 ? Number(process.argv[at + 1]) : fallback
}

const positional = []
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i].startsWith('--')) i++ // an option and its value
  else positional.push(process.argv[i])
}
const [dirA, dirB] = positional
if (!dirA || !dirB || typeof gc !== 'function') {
  process.stderr.write('usage: node --expose-gc bench/ab.js <dir A> <dir B> [--reps 15] [--count 40000]\n')
  process.exit(2)
}
const reps = option('reps', 15)
const count = option('count', 40000)
const builds = { A: require(path.resolve(dirA)), B: require(path.resolve(dirB)) }

const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-ab-')), 'page.bin')
fs.writeFileSync(file, Buffer.alloc(4096))
const fd = fs.openSync(file, 'r')
const turn = () => new Promise((resolve) => setImmediate(resolve))

async function mapAlone(mmap, n) {
  const { map, PROT_READ, MAP_SHARED } = mmap
  for (let i = 1; i <= n; i++) {
    map(4096, PROT_READ, MAP_SHARED, fd, 0)
    if (i % 1000 === 0) {
      gc({ type: 'minor' })
      await turn()
    }
  }
}

async function pairs(mmap, n) {
  const { map, unmap, PROT_READ, MAP_SHARED } = mmap
  for (let i = 0; i < n; i++) unmap(map(4096, PROT_READ, MAP_SHARED, fd, 0))
  gc()
  await turn()
  await turn()
}

/** [CPU ns, wall ns] per call of one run. */
async function measure(loop, mmap) {
  gc()
  await turn()
  const cpu0 = process.cpuUsage()
  const wall0 = process.hrtime.bigint()
  await loop(mmap, count)
  const wall = Number(process.hrtime.bigint() - wall0)
  const { user, system } = process.cpuUsage(cpu0)
  return [((user + system) * 1000) / count, wall / count]
}

const median = (values) => values.slice().sort((a, b) => a - b)[values.length >> 1]

;(async () => {
  process.stdout.write(`A = ${dirA}\nB = ${dirB}\n${reps} runs of ${count} calls each, alternating\n`)
  for (const [name, loop] of [
    ['map alone', mapAlone],
    ['map + unmap', pairs],
  ]) {
    const runs = { A: [], B: [] }
    await measure(loop, builds.A) // warm-up, not counted
    await measure(loop, builds.B)
    for (let rep = 0; rep < reps; rep++) {
      for (const key of rep % 2 ? ['A', 'B'] : ['B', 'A'])
        runs[key].push(await measure(loop, builds[key]))
    }
    const cpu = (key) => median(runs[key].map((run) => run[0]))
    const wall = (key) => median(runs[key].map((run) => run[1]))
    const line = (label, of) =>
      `${label} ns: A ${of('A').toFixed(0)}, B ${of('B').toFixed(0)}, B/A ${(of('B') / of('A')).toFixed(3)}`
    process.stdout.write(`${name.padEnd(12)} ${line('CPU', cpu)}   ${line('wall', wall)}\n`)
  }
  fs.closeSync(fd)
  fs.rmSync(path.dirname(file), { recursive: true, force: true })
})()
