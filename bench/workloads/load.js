'use strict'
// Workload 8, load: what `require('node-mmap')` costs a new process, against loading the
// `.node` file alone (process.dlopen, which any addon pays). Each sample is a fresh
// `node` process that times one first load of one kind and prints it; the kinds alternate, so
// a busy machine slows both alike. The difference is the loader (index.js): finding the build
// for this platform (on Linux, telling glibc from musl only when both builds are there), the
// guards on Mapping's methods, and the read-only exports.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const u = require('../lib/util')

const PROBE = `
  const kind = process.argv[1], target = process.argv[2]
  const t0 = process.hrtime.bigint()
  if (kind === 'require') require(target)
  else process.dlopen({ exports: {} }, target)
  process.stdout.write(String(Number(process.hrtime.bigint() - t0) / 1e6))
`

function sample(kind, target) {
  const child = spawnSync(process.execPath, ['-e', PROBE, kind, target], { encoding: 'utf8' })
  if (child.status !== 0) throw new Error(`${kind} ${target}: ${child.stderr.trim().split('\n').pop()}`)
  return Number(child.stdout)
}

async function main(config) {
  const prefix = `node-mmap.${process.platform}-${process.arch}`
  const file = fs.readdirSync(config.root).find((name) => name.startsWith(prefix) && name.endsWith('.node'))
  if (!file) throw new Error(`no ${prefix}*.node in ${config.root}: build it first (npm run compile)`)
  const addon = path.join(config.root, file)
  const count = config.quick ? 15 : 61
  u.progress(`load: ${count} new processes each for require('node-mmap') and process.dlopen of ${path.basename(addon)}`)
  const times = { require: [], dlopen: [] }
  for (let i = 0; i < count; i++) {
    for (const kind of u.rotate(['require', 'dlopen'], i)) {
      times[kind].push(sample(kind, kind === 'require' ? config.root : addon))
    }
  }
  return {
    rows: [
      {
        workload: '8. load',
        name: "require('node-mmap') in a new process",
        unit: 'ms',
        ours: u.median(times.require),
        baseline: 'process.dlopen of the .node file alone',
        base: u.median(times.dlopen),
      },
    ],
    notes: [],
    raw: { times },
  }
}

u.runWorkload(main)
