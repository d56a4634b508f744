#!/usr/bin/env node
'use strict'
// `map` alone, builds of node-mmap against the peers and the Node-API floor in one process,
// paired run by run: each run of each implementation is divided by the run of
// @riaskov/mmap-io in the same rotation (a fraction of a second apart), and the median and
// quartiles of those ratios are printed, in the main thread's run time (Linux schedstat: it
// leaves out V8's helper threads and the time other guests take this VM's CPUs) and in wall
// time. This is how bench/PROFILE.md's "paired" figures and its ablation table were measured;
// a tool for deciding, not a bench result.
//
//   node --expose-gc bench/paired.js [name=]<dir> ... [--reps 61] [--count 10000]
//
// A build is a directory that `require` loads as node-mmap (`.` is this checkout; another
// commit: `git worktree add /tmp/old <commit> && cd /tmp/old && npm install`). The peers and the
// Node-API floor are installed and built as `npm run bench` does (bench/.peers, bench/.build).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { buildNapiFloor } = require('./lib/floor')
const { mainThreadNs } = require('./lib/util')
const { ensurePeers } = require('./lib/peers')

const BENCH = __dirname
const PEER = '@riaskov/mmap-io'

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`)
  return at > 0 ? Number(process.argv[at + 1]) : fallback
}

const builds = []
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i].startsWith('--')) {
    i++ // an option and its value
    continue
  }
  const [name, dir] = process.argv[i].includes('=') ? process.argv[i].split('=', 2) : [process.argv[i], process.argv[i]]
  builds.push({ name, dir: path.resolve(dir) })
}
if (builds.length === 0 || typeof gc !== 'function') {
  process.stderr.write('usage: node --expose-gc bench/paired.js [name=]<dir> ... [--reps 61] [--count 10000]\n')
  process.exit(2)
}
const reps = option('reps', 61)
const count = option('count', 10000)

const say = (text) => process.stderr.write(`${text}\n`)
const impls = []
for (const { name, dir } of builds) impls.push({ name, impl: require(dir) })
const { PROT_READ, MAP_SHARED } = impls[0].impl
for (const peer of ensurePeers(path.join(BENCH, '.peers'), say)) {
  if (peer.ok) impls.push({ name: peer.name, impl: require(peer.dir) })
  else say(`${peer.name}: ${peer.reason}`)
}
const napiFloor = buildNapiFloor(path.join(BENCH, 'napi-floor.c'), path.join(BENCH, '.build'))
if (napiFloor.ok) impls.push({ name: 'Node-API floor', impl: { map: require(napiFloor.bin).map, PROT_READ, MAP_SHARED } })
else say(`Node-API floor: ${napiFloor.reason}`)
if (!impls.some(({ name }) => name === PEER)) {
  say(`${PEER} is needed as the reference and is not available`)
  process.exit(1)
}

const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-paired-')), 'page.bin')
fs.writeFileSync(file, Buffer.alloc(4096))
const fd = fs.openSync(file, 'r')
const turn = () => new Promise((resolve) => setImmediate(resolve))
/** [main-thread ns, wall ns] per map of one run: a scavenge and a turn every 1,000, as the bench. */
async function run({ map, PROT_READ, MAP_SHARED }, n) {
  gc()
  await turn()
  const main0 = mainThreadNs()
  const wall0 = process.hrtime.bigint()
  for (let i = 1; i <= n; i++) {
    map(4096, PROT_READ, MAP_SHARED, fd, 0)
    if (i % 1000 === 0) {
      gc({ type: 'minor' })
      await turn()
    }
  }
  const wall = Number(process.hrtime.bigint() - wall0) / n
  return [main0 === null ? NaN : (mainThreadNs() - main0) / n, wall]
}

;(async () => {
  const samples = Object.fromEntries(impls.map(({ name }) => [name, { main: [], wall: [] }]))
  for (const { impl } of impls) await run(impl, Math.min(count, 3000)) // warm-up
  for (let rep = 0; rep < reps; rep++) {
    // Rotate, and reverse every other round, so that no implementation always follows another.
    const order = impls.map((_, i) => impls[(i + rep) % impls.length])
    if (Math.floor(rep / impls.length) % 2) order.reverse()
    for (const { name, impl } of order) {
      const [main, wall] = await run(impl, count)
      samples[name].main.push(main)
      samples[name].wall.push(wall)
    }
  }
  const sorted = (values) => values.slice().sort((a, b) => a - b)
  const at = (values, q) => values[Math.min(values.length - 1, Math.floor(q * values.length))]
  const paired = (name, kind) => {
    const ratios = sorted(samples[name][kind].map((v, i) => v / samples[PEER][kind][i]))
    return `${at(ratios, 0.5).toFixed(3)}x [${at(ratios, 0.25).toFixed(3)}-${at(ratios, 0.75).toFixed(3)}]`
  }
  process.stdout.write(`${reps} runs of ${count} maps each, paired against ${PEER}: median [quartiles]\n`)
  for (const { name } of impls) {
    const main = Number.isNaN(samples[name].main[0]) ? 'n/a' : paired(name, 'main')
    const ns = Math.round(at(sorted(samples[name].wall), 0.5))
    process.stdout.write(`${name.padEnd(20)} main thread ${main}   wall ${paired(name, 'wall')}   (${ns} ns/map)\n`)
  }
})()
