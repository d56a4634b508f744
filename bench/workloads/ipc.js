'use strict'
// Workload 7, shared memory as IPC (the seed's "fastest type of inter-process communication"):
// round trips between this process and a child, each run timed over `count` trips:
//   ours      both processes map one file MAP_SHARED; the parent stores a sequence number in
//             word 0 and notify()s it, the child wait()s for it, stores it in word 1 and
//             notify()s back (Atomics.load/store on an Int32Array over the mapping)
//   fork IPC  child_process.fork: process.send(n) and the child's process.send(n) back, the
//             way Node programs usually talk to a child
// Reported: microseconds per round trip.

const { fork, spawn } = require('node:child_process')
const { once } = require('node:events')
const fs = require('node:fs')
const path = require('node:path')
const u = require('../lib/util')

const CHILD = `
const mmap = require(process.argv[1])
const buf = mmap.openSync(process.argv[2], { mode: 'r+' })
const words = new Int32Array(buf.buffer, buf.byteOffset, 2)
const count = Number(process.argv[3])
process.stdout.write('ready\\n')
for (let i = 1; i <= count; i++) {
  for (let seen = Atomics.load(words, 0); seen !== i; seen = Atomics.load(words, 0)) mmap.wait(buf, 0, seen)
  Atomics.store(words, 1, i)
  mmap.notify(buf, 4)
}
`

/** `count` round trips through the mapped words; ns per trip. */
async function sharedTrips(mmap, root, file, count) {
  fs.writeFileSync(file, Buffer.alloc(mmap.PAGESIZE))
  const buf = mmap.openSync(file, { mode: 'r+' })
  const words = new Int32Array(buf.buffer, buf.byteOffset, 2)
  const child = spawn(process.execPath, ['-e', CHILD, root, file, String(count)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await once(child.stdout, 'data')
  const t0 = u.now()
  for (let i = 1; i <= count; i++) {
    Atomics.store(words, 0, i)
    mmap.notify(buf, 0)
    for (let seen = Atomics.load(words, 1); seen !== i; seen = Atomics.load(words, 1)) mmap.wait(buf, 4, seen)
  }
  const ns = (u.now() - t0) / count
  const [code] = await once(child, 'exit')
  mmap.unmap(buf)
  if (code !== 0) throw new Error(`the shared-memory child exited with ${code}`)
  return ns
}

/** `count` round trips of process.send between this process and a forked echo child. */
async function forkTrips(dir, count) {
  const echo = path.join(dir, 'echo.js')
  fs.writeFileSync(echo, "process.on('message', (n) => { process.send(n); if (n === 0) process.exit(0) })\n")
  const child = fork(echo, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  const t0 = u.now()
  for (let i = 1; i <= count; i++) {
    child.send(i)
    const [n] = await once(child, 'message')
    if (n !== i) throw new Error(`fork IPC echoed ${n} for ${i}`)
  }
  const ns = (u.now() - t0) / count
  child.send(0)
  await once(child, 'exit')
  return ns
}

async function main(config) {
  const mmap = require(config.root)
  const file = path.join(config.dir, 'ipc.bin')
  const count = config.count
  if (process.platform !== 'linux') {
    const error = 'wait()/notify() need Linux (futex)'
    return { rows: [{ workload: '7. IPC', name: 'round trip', unit: 'us', ours: null, base: null, baseline: 'fork IPC', error }], notes: [], raw: {} }
  }
  u.progress(`IPC round trips: ${config.reps} runs of ${count}`)
  const times = { shared: [], fork: [] }
  for (let rep = -1; rep < config.reps; rep++) {
    for (const name of u.rotate(['shared', 'fork'], rep + 1)) {
      await u.quiesce()
      const ns = name === 'shared' ? await sharedTrips(mmap, config.root, file, count) : await forkTrips(config.dir, count)
      if (rep >= 0) times[name].push(ns / 1000)
    }
  }
  return {
    rows: [
      {
        workload: '7. IPC',
        name: `round trip to a child process: wait/notify on a shared mapping`,
        unit: 'us',
        ours: u.median(times.shared),
        baseline: 'child_process.fork, process.send both ways',
        base: u.median(times.fork),
      },
    ],
    notes: [
      `IPC: ${count} round trips per run; both sides block in wait() (futex), so each trip is two wake-ups across processes`,
    ],
    raw: { times },
  }
}

u.runWorkload(main)
