#!/usr/bin/env node
'use strict'
// `npm run bench` (= node bench/run.js [--quick] [--only NAME,...]): node-mmap against its peers,
// Node's fs and the C floor. Every figure is a ratio measured side by side in this run, a median
// over repeated runs; see bench/README.md.
//
// It builds the C floor and the Node-API floor (bench/.build/), installs the peers once (bench/.peers/), makes the test
// files in a temporary directory, runs each workload in its own `node --expose-gc` child process
// (bench/workloads/*.js, JSON result on stdout), prints the table and writes the results:
// bench/results.json + bench/results.svg for a full run, bench/results.quick.{json,svg}
// (gitignored) for --quick or --only runs, so CI never dirties the repository.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, execFileSync } = require('node:child_process')
const u = require('./lib/util')
const { buildFloor, buildNapiFloor } = require('./lib/floor')
const { ensurePeers } = require('./lib/peers')
const { formatTable, formatSvg, ratioOf } = require('./lib/report')

const BENCH = __dirname
const ROOT = path.dirname(BENCH)
const MISSING = 0xa5 // the byte the scans look for: never in the test data

const WORKLOADS = ['map-cost', 'scan', 'random', 'ttfb', 'cold', 'writeback', 'ipc', 'load']
const TITLES = {
  'map-cost': '1. map cost',
  scan: '2. scan',
  random: '3. random access',
  ttfb: '4. first byte > 2 GiB',
  cold: '5. cold cache',
  writeback: '6. write-back',
  ipc: '7. IPC',
  load: '8. load',
}

const SETTINGS = {
  full: {
    quick: false,
    reps: 5,
    mapReps: 31,
    pairs: 20000,
    maps: 20000,
    dataSize: u.GiB,
    randomCount: 1000000,
    ttfbIterations: 200,
    writebackSize: 256 * u.MiB,
    ipcCount: 20000,
  },
  quick: {
    quick: true,
    reps: 3,
    mapReps: 3,
    pairs: 5000,
    maps: 5000,
    dataSize: 128 * u.MiB,
    randomCount: 100000,
    ttfbIterations: 50,
    writebackSize: 64 * u.MiB,
    ipcCount: 2000,
  },
}

function usage() {
  return [
    'usage: node bench/run.js [--quick] [--only NAME[,NAME...]]',
    '  --quick   smaller files and fewer runs (under a minute); writes bench/results.quick.*',
    `  --only    run only these workloads: ${WORKLOADS.join(', ')}; writes bench/results.quick.*`,
  ].join('\n')
}

function parseArgs(argv) {
  const options = { quick: false, only: null }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--quick') options.quick = true
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const value = arg.includes('=') ? arg.slice(7) : argv[++i]
      options.only = String(value || '')
        .split(',')
        .filter(Boolean)
      const unknown = options.only.filter((name) => !WORKLOADS.includes(name))
      if (unknown.length || options.only.length === 0)
        throw new Error(`--only: unknown workload ${unknown.join(', ')}\n${usage()}`)
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${usage()}\n`)
      process.exit(0)
    } else throw new Error(`unknown argument ${arg}\n${usage()}`)
  }
  return options
}

function machine() {
  let cpu = os.cpus()[0]?.model || 'unknown CPU'
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8')
    const model = /^model name\s*:\s*(.+)$/m.exec(info) || /^Model\s*:\s*(.+)$/m.exec(info)
    if (model) cpu = model[1].trim()
  } catch {
    // not Linux: os.cpus() it is
  }
  let npm = null
  try {
    npm = execFileSync('npm', ['--version'], { encoding: 'utf8' }).trim()
  } catch {
    // no npm on PATH
  }
  return {
    cpu,
    cores: os.availableParallelism ? os.availableParallelism() : os.cpus().length,
    kernel: os.release(),
    platform: `${process.platform}-${process.arch}`,
    memoryGiB: Math.round(os.totalmem() / u.GiB),
    node: process.version,
    v8: process.versions.v8,
    napi: process.versions.napi,
    npm,
  }
}

/** Runs one workload in its own process; resolves to its JSON result or `{ failed }`. */
function runWorkload(name, config) {
  return new Promise((resolve) => {
    const script = path.join(BENCH, 'workloads', `${name}.js`)
    const child = spawn(process.execPath, ['--expose-gc', script, JSON.stringify(config)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    current = child
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (data) => {
      stdout += data
    })
    child.stderr.on('data', (data) => {
      stderr += data
      process.stderr.write(data)
    })
    child.on('close', (code, signal) => {
      current = null
      if (code === 0) {
        try {
          resolve(JSON.parse(stdout.trim().split('\n').pop()))
          return
        } catch (err) {
          resolve({ failed: `bad output: ${err.message}` })
          return
        }
      }
      // The workload's own last words, not its progress lines (indented).
      const last = stderr
        .split('\n')
        .filter((l) => l.trim() && !l.startsWith('  '))
        .slice(-3)
        .join(' | ')
      resolve({
        failed: `${signal ? `killed by ${signal}` : `exit ${code}`}${last ? `: ${last}` : ''}`,
      })
    })
  })
}

let current = null
let tmpDir = null

function cleanup() {
  if (tmpDir) {
    fs.rmSync(tmpDir, { recursive: true, force: true })
    tmpDir = null
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (current) current.kill(signal)
    cleanup()
    process.exit(128 + os.constants.signals[signal])
  })
}

async function main() {
  const options = parseArgs(process.argv.slice(2))
  const settings = SETTINGS[options.quick ? 'quick' : 'full']
  const selected = options.only || WORKLOADS
  const partial = options.quick || options.only !== null
  const say = (message) => process.stderr.write(`${message}\n`)
  const started = Date.now()

  // Ours must load, or there is nothing to measure.
  require(ROOT)
  const info = machine()
  say(
    `node-mmap bench${options.quick ? ' --quick' : ''}: ${info.cpu}, ${info.cores} cores, Linux ${info.kernel}, Node ${info.node}`,
  )

  const floor = buildFloor(path.join(BENCH, 'floor.c'), path.join(BENCH, '.build'))
  if (!floor.ok) say(`C floor: ${floor.reason}`)
  const napiFloor = selected.includes('map-cost')
    ? buildNapiFloor(path.join(BENCH, 'napi-floor.c'), path.join(BENCH, '.build'))
    : { ok: false, bin: null, reason: 'not built (map-cost not selected)' }
  if (selected.includes('map-cost') && !napiFloor.ok) say(`Node-API floor: ${napiFloor.reason}`)
  const needsPeers = selected.includes('map-cost') || selected.includes('ttfb')
  const peers = needsPeers ? ensurePeers(path.join(BENCH, '.peers'), say) : []
  for (const peer of peers)
    say(`peer ${peer.name}@${peer.version}: ${peer.ok ? 'ok' : peer.reason}`)

  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-bench-'))
  const dataFile = path.join(tmpDir, 'data.bin')
  if (selected.some((name) => ['scan', 'random', 'cold'].includes(name))) {
    say(`writing a ${settings.dataSize / u.MiB} MiB test file in ${tmpDir}`)
    u.writePatternFile(dataFile, settings.dataSize, MISSING)
  }
  const sparseFile = path.join(tmpDir, 'sparse-3g.bin')
  if (selected.includes('ttfb')) {
    fs.writeFileSync(sparseFile, '')
    fs.truncateSync(sparseFile, 3 * u.GiB)
  }

  const common = {
    root: ROOT,
    dir: tmpDir,
    floor,
    peers,
    reps: settings.reps,
    quick: settings.quick,
  }
  const configs = {
    'map-cost': {
      ...common,
      napiFloor,
      reps: settings.mapReps,
      pairs: settings.pairs,
      maps: settings.maps,
    },
    scan: { ...common, file: dataFile, missing: MISSING },
    random: { ...common, file: dataFile, count: settings.randomCount },
    ttfb: { ...common, file: sparseFile, iterations: settings.ttfbIterations },
    cold: { ...common, file: dataFile, missing: MISSING },
    writeback: { ...common, size: settings.writebackSize },
    ipc: { ...common, count: settings.ipcCount },
    load: common,
  }

  const rows = []
  const notes = []
  const raw = {}
  const failures = []
  try {
    for (const name of selected) {
      say(`[${name}]`)
      const result = await runWorkload(name, configs[name])
      if (result.failed) {
        failures.push({ workload: name, reason: result.failed })
        rows.push({
          workload: TITLES[name],
          name: `${name}: did not run`,
          unit: '',
          ours: null,
          baseline: '-',
          base: null,
          error: result.failed,
        })
        continue
      }
      rows.push(...result.rows)
      notes.push(...result.notes)
      raw[name] = result.raw
    }
  } finally {
    cleanup()
  }

  for (const row of rows) row.ratio = ratioOf(row)
  const results = {
    date: new Date().toISOString(),
    command: `node bench/run.js${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
    seconds: Math.round((Date.now() - started) / 1000),
    machine: info,
    settings: { ...settings, workloads: selected },
    floor: { ok: floor.ok, reason: floor.reason },
    napiFloor: { ok: napiFloor.ok, reason: napiFloor.reason },
    peers: peers.map(({ name, version, ok, reason }) => ({ name, version, ok, reason })),
    rows,
    notes,
    failures,
    raw,
  }

  const out = []
  out.push('')
  out.push(
    `node-mmap benchmarks${options.quick ? ' (--quick)' : ''}: medians of ${settings.reps} runs side by side (map cost: ${settings.mapReps})`,
  )
  out.push(
    `machine: ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB, Linux ${info.kernel}; Node ${info.node} (V8 ${info.v8}, N-API ${info.napi})`,
  )
  out.push(
    'ours/baseline below 1: node-mmap took less time (or memory) than that baseline; above 1: more.',
  )
  out.push('')
  out.push(formatTable(rows))
  out.push('')
  if (notes.length) out.push('Notes:', ...notes.map((note) => `- ${note}`))
  const unavailable = [
    ...(floor.ok ? [] : [`C floor: ${floor.reason}`]),
    ...(napiFloor.ok || !selected.includes('map-cost') ? [] : [`Node-API floor: ${napiFloor.reason}`]),
    ...peers.filter((p) => !p.ok).map((p) => `${p.name}@${p.version}: ${p.reason}`),
    ...failures.map((f) => `workload ${f.workload}: ${f.reason}`),
  ]
  if (unavailable.length) out.push('Could not run:', ...unavailable.map((line) => `- ${line}`))
  process.stdout.write(`${out.join('\n')}\n`)

  const base = path.join(BENCH, partial ? 'results.quick' : 'results')
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`)
  fs.writeFileSync(`${base}.svg`, formatSvg(results))
  say(`\nwrote ${path.relative(process.cwd(), base)}.json and .svg in ${results.seconds} s`)
  if (failures.length) process.exitCode = 1
}

main().catch((err) => {
  cleanup()
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
