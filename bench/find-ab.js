#!/usr/bin/env node
'use strict'
// Two builds of node-mmap in one process, side by side, on what bench/ab.js does not cover: the
// lookup of a view's mapping among many live ones (the registry's `find`, then a counted
// reference taken and dropped). Each build keeps `--live` one-page mappings alive and calls
// `faults(view)` (a lookup and one counter read, no system call) on them in a shuffled order;
// the runs alternate, so drifts hit both builds alike. Prints CPU-time and wall-time medians
// per call and B/A: below 1, B took less time. A tool for deciding, as bench/ab.js is.
//
//   node --expose-gc bench/find-ab.js <dir A> <dir B> [--reps 15] [--live 10000] [--count 400000]

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
  process.stderr.write(
    'usage: node --expose-gc bench/find-ab.js <dir A> <dir B> [--reps 15] [--live 10000] [--count 400000]\n',
  )
  process.exit(2)
}
const reps = option('reps', 15)
const live = option('live', 10000)
const count = option('count', 400000)
const builds = { A: require(path.resolve(dirA)), B: require(path.resolve(dirB)) }

// The same shuffled order of lookups for both builds.
const order = new Uint32Array(count)
let seed = 0x2545f491
for (let i = 0; i < count; i++) {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  order[i] = (seed >>> 0) % live
}

// Made alternately, so neither build's mappings are all older or lower than the other's.
const views = { A: [], B: [] }
for (let i = 0; i < live; i++) {
  for (const key of ['A', 'B']) {
    const { map, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS } = builds[key]
    views[key].push(map(4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1))
  }
}

// One loop compiled per build, so neither shares the other's call-site feedback.
const loops = {}
for (const key of ['A', 'B']) {
  loops[key] = new Function(
    'faults',
    'list',
    'order',
    'let sum = 0; for (let i = 0; i < order.length; i++) sum += faults(list[order[i]]); return sum',
  )
}

/** [CPU ns, wall ns] per lookup of one run. */
function measure(key) {
  gc()
  const cpu0 = process.cpuUsage()
  const wall0 = process.hrtime.bigint()
  const sum = loops[key](builds[key].faults, views[key], order)
  const wall = Number(process.hrtime.bigint() - wall0)
  const { user, system } = process.cpuUsage(cpu0)
  if (sum !== 0) throw new Error(`faults() counted ${sum}`)
  return [((user + system) * 1000) / count, wall / count]
}

const median = (values) => values.slice().sort((a, b) => a - b)[values.length >> 1]

process.stdout.write(`A = ${dirA}\nB = ${dirB}\n${reps} runs of ${count} lookups among ${live} live mappings, alternating\n`)
const runs = { A: [], B: [] }
measure('A') // warm-up, not counted
measure('B')
for (let rep = 0; rep < reps; rep++) {
  for (const key of rep % 2 ? ['A', 'B'] : ['B', 'A']) runs[key].push(measure(key))
}
const cpu = (key) => median(runs[key].map((run) => run[0]))
const wall = (key) => median(runs[key].map((run) => run[1]))
const line = (label, of) =>
  `${label} ns: A ${of('A').toFixed(1)}, B ${of('B').toFixed(1)}, B/A ${(of('B') / of('A')).toFixed(3)}`
process.stdout.write(`${'find'.padEnd(12)} ${line('CPU', cpu)}   ${line('wall', wall)}\n`)
for (const key of ['A', 'B']) for (const buf of views[key]) builds[key].unmap(buf)
