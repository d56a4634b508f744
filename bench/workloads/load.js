'use strict'
// Workload 8, load: what `require('node-mmap')` costs a new process, against loading the
// `.node` file alone (process.dlopen, which any addon pays), and against the least any npm
// package can cost: a package whose index.js only dlopens the same file (the floor). Each
// sample is a fresh `node` process that times one first load of one kind and prints it; the
// kinds rotate, so a busy machine slows all alike. The difference between the floor and ours
// is the loader's own work (index.js): finding the build for this platform (on Linux, telling
// glibc from musl only when both builds are there), the guards on Mapping's methods, and the
// read-only exports.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const u = require('../lib/util')

const formatRatio = (ratio) => `${ratio.toFixed(2)}x`

// The time is taken before \`process.stdout\` is touched: its getter builds the stream on first
// use (2 to 5 ms here), and an earlier version of this probe, which read it in the same
// expression as the clock, timed that too, for every kind alike (it showed 1.6x for 3.3x).
const PROBE = `
  const kind = process.argv[2], target = process.argv[3]
  const t0 = process.hrtime.bigint()
  if (kind === 'dlopen') process.dlopen({ exports: {} }, target)
  else require(target)
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  process.stdout.write(String(ms))
`

// The floor: a package (package.json + an index.js of one line) that dlopens \`addon\`, so
// require() resolves a folder, reads package.json and compiles an index.js as for ours.
function floorPackage(addon) {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'node-mmap-bench-floor-'))
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'floor', main: 'index.js' }))
  fs.writeFileSync(path.join(dir, 'index.js'), `process.dlopen(module, ${JSON.stringify(addon)})\n`)
  return dir
}

// The probe runs as a script file, as an application's main module does: with \`node -e\` the
// first require() of a file also warms up the CommonJS loader (2 to 3 ms here), which a
// script's own loading has already done.
function sample(probe, kind, target) {
  const child = spawnSync(process.execPath, [probe, kind, target], { encoding: 'utf8' })
  if (child.status !== 0) throw new Error(`${kind} ${target}: ${child.stderr.trim().split('\n').pop()}`)
  return Number(child.stdout)
}

async function main(config) {
  const prefix = `node-mmap.${process.platform}-${process.arch}`
  const file = fs.readdirSync(config.root).find((name) => name.startsWith(prefix) && name.endsWith('.node'))
  if (!file) throw new Error(`no ${prefix}*.node in ${config.root}: build it first (npm run compile)`)
  const addon = path.join(config.root, file)
  const count = config.quick ? 15 : 61
  const floor = floorPackage(addon)
  const probe = path.join(floor, 'probe.js')
  fs.writeFileSync(probe, PROBE)
  u.progress(
    `load: ${count} new processes each for require('node-mmap'), process.dlopen of ${path.basename(addon)}, ` +
      'and require() of a package that only dlopens it',
  )
  const times = { require: [], dlopen: [], floor: [] }
  const targets = { require: config.root, dlopen: addon, floor }
  try {
    for (let i = 0; i < count; i++) {
      for (const kind of u.rotate(['require', 'dlopen', 'floor'], i)) times[kind].push(sample(probe, kind, targets[kind]))
    }
  } finally {
    fs.rmSync(floor, { recursive: true, force: true })
  }
  const dlopen = u.median(times.dlopen)
  const floorMs = u.median(times.floor)
  return {
    rows: [
      {
        workload: '8. load',
        name: "require('node-mmap') in a new process",
        unit: 'ms',
        ours: u.median(times.require),
        baseline: 'process.dlopen of the .node file alone',
        base: dlopen,
        target: { ratioMax: 1.5, issue: 15 },
      },
      {
        workload: '8. load',
        name: 'floor: require() of a package that only dlopens the file',
        unit: 'ms',
        ours: floorMs,
        baseline: 'process.dlopen of the .node file alone',
        base: dlopen,
      },
      {
        workload: '8. load',
        name: "require('node-mmap') in a new process",
        unit: 'ms',
        ours: u.median(times.require),
        baseline: 'the floor package',
        base: floorMs,
      },
    ],
    notes: [
      `The floor is what any npm package pays over process.dlopen: require() resolves the folder, reads its package.json and compiles its index.js (here ${formatRatio(floorMs / dlopen)} of dlopen).`,
    ],
    raw: { times },
  }
}

u.runWorkload(main)
