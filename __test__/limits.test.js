'use strict'
// vm.max_map_count: a tight loop of map() must end in a catchable ENOMEM, never in V8 aborting
// the process because node-mmap took the last kernel mappings.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')

test('mapping until the kernel limit throws ENOMEM, leaves the process alive, and recovers after unmap', () => {
  const script = `
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    const fs = require('fs'), os = require('os'), path = require('path')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-limits-'))
    const file = path.join(dir, 'f')
    fs.writeFileSync(file, Buffer.alloc(2 * mmap.PAGESIZE))
    const fd = fs.openSync(file, 'r')
    const held = []
    let error
    try {
      // Alternating offsets keep the kernel from merging neighbours into one mapping.
      for (let i = 0; i < 200000; i++) held.push(mmap.map(mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, (i % 2) * mmap.PAGESIZE))
    } catch (err) {
      error = err
    }
    const limit = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'))
    const vmas = fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).length - 1
    // The runtime can still allocate: build a big object after the failure.
    const junk = Array.from({ length: 100000 }, (_, i) => ({ i, s: String(i) }))
    for (const buf of held) mmap.unmap(buf)
    const again = mmap.map(mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd)
    console.log(JSON.stringify({
      held: held.length, limit, vmas, junk: junk.length, againLength: again.length,
      error: error && { name: error.name, code: error.code, errno: error.errno, syscall: error.syscall, message: error.message },
    }))
    fs.rmSync(dir, { recursive: true })
  `
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120000 })
  assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr}`)
  assert.equal(child.status, 0, child.stderr)
  const result = JSON.parse(child.stdout)
  assert.deepEqual(result.error, {
    name: 'Error', code: 'ENOMEM', errno: -12, syscall: 'mmap', message: 'ENOMEM: not enough memory, mmap',
  })
  // Neighbouring mappings of the same file merge in the kernel, so more Buffers than kernel
  // mappings may be held; what is refused is the kernel mapping that would leave V8 fewer than
  // 4096 (the count when map() gave up).
  assert.ok(result.held > 1000, `held ${result.held}`)
  assert.ok(result.vmas <= result.limit - 4096 + 64, `${result.vmas} kernel mappings of ${result.limit}`)
  assert.ok(result.vmas >= result.limit - 4096 - 64, `gave up early: ${result.vmas} kernel mappings of ${result.limit}`)
  assert.equal(result.junk, 100000)
  assert.equal(result.againLength, 4096)
})

/** Runs `script` in a child node; returns its one JSON line, asserting it exited 0. */
function runChild(script, { timeout = 120000, descriptors = null, env = {} } = {}) {
  const limits = `ulimit -c 0 2>/dev/null;${descriptors ? ` ulimit -n ${descriptors};` : ''}`
  const child = spawnSync('/bin/sh', ['-c', `${limits} exec "$0" -e "$1"`, process.execPath, script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout,
  })
  assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr}`)
  assert.equal(child.status, 0, child.stderr)
  return JSON.parse(child.stdout)
}

/**
 * Runs `script` in a child node after the shell limits `limits` (`ulimit -v ...`), with no core
 * dump; asserts that it exited normally with 0 and returns its JSON output.
 */
function runUnderLimit(limits, script) {
  const child = spawnSync('/bin/sh', ['-c', `ulimit -c 0; ${limits}; exec "$0" -e "$1"`, process.execPath, script], { encoding: 'utf8', timeout: 120_000 })
  assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr.slice(0, 400)}`)
  assert.equal(child.status, 0, child.stderr.slice(0, 400))
  return JSON.parse(child.stdout)
}

const PRELUDE = `
  const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
  const fs = require('fs'), os = require('os'), path = require('path')
  const P = mmap.PAGESIZE
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-limits-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  const vmas = () => fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).length - 1
  const linesOf = (file) => fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).filter((l) => l.endsWith(' ' + file)).length
  const shape = (err) => err && { name: err.name, code: err.code, errno: err.errno, syscall: err.syscall, message: err.message }
`

test('reading every other page of a truncated 256 MiB file survives, with the lost tail replaced by one kernel mapping', () => {
  // Replacing each lost page on its own took 2 kernel mappings per isolated page: 32768 pages
  // read here, and the process died by SIGBUS once the kernel refused the next one.
  const result = runChild(`${PRELUDE}
    const size = 256 * 2 ** 20
    const file = path.join(dir, 'big')
    const fd = fs.openSync(file, 'w+')
    fs.writeSync(fd, Buffer.alloc(P, 7), 0, P, 0)
    fs.ftruncateSync(fd, size)
    const buf = mmap.map(size, mmap.PROT_READ, mmap.MAP_SHARED, fd)
    const lines = () => fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).filter(Boolean)
    const [start, end] = lines().find((l) => l.endsWith(' ' + file)).split(' ')[0].split('-').map((x) => parseInt(x, 16))
    // The kernel mappings inside the mapping's range (the oracle: /proc/self/maps).
    const inside = () => lines().filter((l) => { const [s, e] = l.split(' ')[0].split('-').map((x) => parseInt(x, 16)); return s >= start && e <= end }).length
    const before = inside()
    fs.ftruncateSync(fd, P)
    let nonZero = 0, read = 0
    for (let at = P; at < size; at += 2 * P) { read++; if (buf[at] !== 0) nonZero++ }
    console.log(JSON.stringify({ read, nonZero, first: buf[0], faults: mmap.faults(buf), before, after: inside(), size: fs.fstatSync(fd).size }))
  `)
  // The file's first page, then one zero-filled mapping for everything past the new end.
  assert.deepEqual(result, { read: 32768, nonZero: 0, first: 7, faults: 65535, before: 1, after: 2, size: 4096 })
})

test('at the limit, remap() and unmap() that need kernel mappings throw ENOMEM; SIGBUS recovery still works and V8 keeps room', () => {
  const result = runChild(`${PRELUDE}
    const K = 3000
    // K consecutive pages of one file, each its own mapping, mapped from the last page down:
    // the kernel places each new mapping just below the previous one and merges them all into
    // one kernel mapping (checked below). Unmapping one in the middle cuts that in three.
    const mergedFile = path.join(dir, 'merged')
    fs.writeFileSync(mergedFile, Buffer.alloc(K * P, 5))
    const mfd = fs.openSync(mergedFile, 'r+')
    const merged = []
    for (let i = K - 1; i >= 0; i--) merged[i] = mmap.map(P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, mfd, i * P)
    const mergedLines = linesOf(mergedFile)
    // Fill up to node-mmap's limit with mappings that do not merge (offsets 0 and 2 pages).
    const fillFile = path.join(dir, 'fill')
    fs.writeFileSync(fillFile, Buffer.alloc(3 * P, 1))
    const ffd = fs.openSync(fillFile, 'r')
    const held = []
    let mapError
    try {
      for (let i = 0; i < 200000; i++) held.push(mmap.map(P, mmap.PROT_READ, mmap.MAP_SHARED, ffd, (i % 2) * 2 * P))
    } catch (err) { mapError = shape(err) }
    const limit = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'))
    const atLimit = vmas()
    // remap() needs a new kernel mapping.
    let remapError
    try { mmap.remap(held[1], 2 * P) } catch (err) { remapError = shape(err) }
    const remappedStillThere = held[1].length === P && held[1][0] === 1
    // unmap() of mappings in the middle of the merged one: each adds 2 until the grace runs out.
    let unmapped = 0, unmapError, failedIndex = -1
    for (let i = 1; i < K - 1; i += 2) {
      try { mmap.unmap(merged[i]); unmapped++ } catch (err) { unmapError = shape(err); failedIndex = i; break }
    }
    const failedStillMapped = failedIndex > 0 && merged[failedIndex].length === P && merged[failedIndex].every((b) => b === 5)
    // A mapping that is a kernel mapping of its own is still unmapped (no new kernel mapping).
    let loneError
    try { mmap.unmap(held[2]) } catch (err) { loneError = shape(err) }
    const afterUnmaps = vmas()
    // SIGBUS recovery in the merged mapping still works: a lost page replaced in the middle.
    fs.ftruncateSync(mfd, 0)
    const lost = [merged[failedIndex][0], merged[failedIndex + 2][9]]
    const faults = [mmap.faults(merged[failedIndex]), mmap.faults(merged[failedIndex + 2])]
    // V8 can still allocate.
    const junk = Array.from({ length: 200000 }, (_, i) => ({ i, s: String(i) }))
    console.log(JSON.stringify({
      mergedLines, mapError, limit, atLimit, remapError, remappedStillThere, unmapped, unmapError, failedStillMapped,
      loneError, afterUnmaps, lost, faults, junk: junk.length,
    }))
  `)
  // Mostly merged: the runtime's own mappings land between them now and then (Node 18 in CI: 12).
  assert.ok(result.mergedLines <= 64, `precondition: the ${3000} mappings merged into ${result.mergedLines} kernel mappings`)
  const enomem = (syscall) => ({ name: 'Error', code: 'ENOMEM', errno: -12, syscall, message: `ENOMEM: not enough memory, ${syscall}` })
  assert.deepEqual(result.mapError, enomem('mmap'))
  assert.deepEqual(result.remapError, enomem('mremap'), 'remap() at the limit')
  assert.equal(result.remappedStillThere, true, 'a remap() that failed leaves the Buffer as it was')
  assert.deepEqual(result.unmapError, enomem('mmap'), 'unmap() that would split a kernel mapping, past the grace')
  // unmap() may go a quarter of the runtime's 4096 kernel mappings past the limit: 2 each.
  assert.ok(result.unmapped >= 400 && result.unmapped <= 520, `unmapped ${result.unmapped} before ENOMEM`)
  assert.equal(result.failedStillMapped, true, 'an unmap() that failed leaves the mapping and its bytes')
  assert.equal(result.loneError, undefined, 'unmap() of a mapping that splits nothing works at the limit')
  // node-mmap leaves the runtime 4096 - 1024 kernel mappings at the recount of the unmap() that
  // failed; the runtime's own mappings grow between that count and this one (Node 18 in CI: 84
  // more), so the check is that well over half of the headroom is still there.
  assert.ok(result.limit - result.afterUnmaps >= 2048, `${result.afterUnmaps} of ${result.limit}: V8 keeps room`)
  assert.deepEqual(result.lost, [0, 0])
  assert.deepEqual(result.faults, [1, 1])
  assert.equal(result.junk, 200000)
})

test('Mapping#read of more than can be allocated throws the RangeError Buffer.alloc throws (ERR_MEMORY_ALLOCATION_FAILED) instead of aborting', () => {
  // Address space capped at ~6 GiB: a 3.5 GiB copy cannot be had. Node-API's own Buffer
  // constructors abort the process there (V8's fatal OOM handler) on Node 18-22.
  const script = `
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    const m = new mmap.Mapping(2 ** 32, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_NORESERVE, -1)
    let error
    try { m.read(0, 3.5 * 2 ** 30) } catch (err) { error = { name: err.name, code: err.code, message: err.message } }
    console.log(JSON.stringify({ error, small: m.read(0, 16).length }))
  `
  const child = spawnSync('/bin/sh', ['-c', `ulimit -v 6500000 && exec "${process.execPath}" -e "$0"`, script], {
    encoding: 'utf8',
    timeout: 60000,
  })
  assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr}`)
  assert.equal(child.status, 0, child.stderr)
  assert.deepEqual(JSON.parse(child.stdout), {
    // What Buffer.alloc() throws when the memory cannot be had (a RangeError, V8's message),
    // with a code.
    error: {
      name: 'RangeError',
      code: 'ERR_MEMORY_ALLOCATION_FAILED',
      message: `Array buffer allocation failed (a copy of ${3.5 * 2 ** 30} bytes)`,
    },
    small: 16,
  })
})

// A finalizer's munmap of a mapping the kernel had merged with neighbours that stay cuts a hole
// in that kernel mapping: one more. Finalizers cannot throw, so at the limit such a range now
// waits (still mapped, unused) until a later release finds room; before, 6000 of them took the
// process thousands of kernel mappings past the guard, into V8's headroom and beyond.
test('finalizers that cut holes in a merged kernel mapping at the limit wait for room instead of passing the guard', () => {
  const script = `${PRELUDE}
    const binding = require(path.join(${JSON.stringify(path.join(__dirname, '..'))}, fs.readdirSync(${JSON.stringify(path.join(__dirname, '..'))}).find((f) => f.endsWith('.node'))))
    const K = 12001
    const mergedFile = path.join(dir, 'merged')
    fs.writeFileSync(mergedFile, Buffer.alloc(K * P, 5))
    const mfd = fs.openSync(mergedFile, 'r')
    let merged = []
    for (let i = K - 1; i >= 0; i--) merged[i] = mmap.map(P, mmap.PROT_READ, mmap.MAP_SHARED, mfd, i * P)
    const mergedLines = linesOf(mergedFile)
    const fillFile = path.join(dir, 'fill')
    fs.writeFileSync(fillFile, Buffer.alloc(3 * P, 1))
    const ffd = fs.openSync(fillFile, 'r')
    let held = []
    let mapError
    try {
      for (let i = 0; i < 200000; i++) held.push(mmap.map(P, mmap.PROT_READ, mmap.MAP_SHARED, ffd, (i % 2) * 2 * P))
    } catch (err) { mapError = shape(err) }
    const atFill = vmas()
    const limit = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'))
    // Every other page, none at either end: 6000 holes, each one more kernel mapping.
    const holes = (K - 1) / 2
    for (let i = 1; i < K - 1; i += 2) merged[i] = null
    // Each hole is either unmapped (the merged kernel mapping gains a piece) or waits.
    const settled = () => linesOf(mergedFile) - 1 + binding.__deferredBytes() / P === holes
    const poll = (done, then, deadline = Date.now() + 60000) => {
      globalThis.gc()
      if (done() || Date.now() > deadline) return then()
      setTimeout(() => poll(done, then, deadline), 5)
    }
    poll(settled, () => {
      const atGuard = { settled: settled(), vmas: vmas(), deferred: binding.__deferredBytes() / P, pieces: linesOf(mergedFile) }
      const junk = Array.from({ length: 200000 }, (_, i) => ({ i, s: String(i) }))
      // Room again: the fill mappings go, and the waiting ranges are unmapped after them.
      held = null
      poll(() => binding.__deferredBytes() === 0 && linesOf(fillFile) === 0, () => {
        const after = { deferred: binding.__deferredBytes(), pieces: linesOf(mergedFile), fill: linesOf(fillFile) }
        const intact = merged.every((b, i) => b === null || (b[0] === 5 && b[P - 1] === 5))
        console.log(JSON.stringify({ mergedLines, mapError, atFill, limit, holes, atGuard, junk: junk.length, after, intact }))
      })
    })
  `
  const child = spawnSync('/bin/sh', ['-c', 'ulimit -c 0 2>/dev/null; exec "$0" --expose-gc -e "$1"', process.execPath, script], {
    encoding: 'utf8',
    timeout: 180000,
  })
  assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr}`)
  assert.equal(child.status, 0, child.stderr)
  const result = JSON.parse(child.stdout)
  assert.ok(result.mergedLines <= 64, `precondition: the mappings merged into ${result.mergedLines} kernel mappings`)
  assert.equal(result.mapError.code, 'ENOMEM', 'precondition: filled up to the guard')
  assert.equal(result.atGuard.settled, true, `every hole unmapped or waiting: ${JSON.stringify(result.atGuard)}`)
  // A finalizer may go as far as unmap() may (a quarter of the runtime's 4096) past the guard,
  // no further: the whole process's kernel mappings (the next assertion). Holes may be a few
  // more than 1024 where V8 gave kernel mappings back in the collections meanwhile (the room is
  // counted for the whole process) or the fill stopped short of the guard.
  const short = Math.max(0, result.limit - 4096 - result.atFill)
  assert.ok(result.atGuard.pieces - 1 <= 1024 + short + 64, `${result.atGuard.pieces - 1} holes cut at the guard (the fill stopped ${short} short)`)
  // The runtime's own mappings (V8's heap through the garbage collections above) come on top.
  assert.ok(result.atGuard.vmas <= result.limit - 4096 + 1024 + 256, `${result.atGuard.vmas} of ${result.limit}: V8 keeps room`)
  assert.ok(result.atGuard.deferred > 0, 'some holes had to wait')
  assert.equal(result.junk, 200000)
  assert.deepEqual(result.after, { deferred: 0, pieces: result.holes + 1, fill: 0 })
  assert.equal(result.intact, true, 'the mappings still held read their bytes')
})

// Found by the fifth attack pass: the bound of kernel mappings was trusted until it reached the
// limit, and only node-mmap's own mappings add to it; WebAssembly memories (or a second copy of
// node-mmap, loaded from another path) made in between took the runtime's headroom, and V8
// aborted or the process died of SIGSEGV instead of map() throwing ENOMEM.
for (const other of ['WebAssembly memories', 'a second copy of node-mmap']) {
  test(`mapping until the limit while ${other} make kernel mappings too still ends in ENOMEM, and V8 keeps room`, () => {
    const root = path.join(__dirname, '..')
    const script = `
      const fs = require('fs'), os = require('os'), path = require('path')
      const mmap = require(${JSON.stringify(root)})
      let other
      if (${JSON.stringify(other)} === 'a second copy of node-mmap') {
        // The same package from another directory: another dlopen, statics of its own.
        const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-copy-'))
        for (const name of fs.readdirSync(${JSON.stringify(root)})) {
          if (/^(index\\.js|package\\.json)$|\\.node$/.test(name)) fs.copyFileSync(path.join(${JSON.stringify(root)}, name), path.join(copy, name))
        }
        const second = require(copy)
        other = (i) => second.map(4096, i % 4 < 2 ? second.PROT_READ : second.PROT_READ | second.PROT_WRITE, second.MAP_PRIVATE | second.MAP_ANONYMOUS, -1)
      } else {
        other = () => new WebAssembly.Memory({ initial: 1, maximum: 1 })
      }
      const vmas = () => fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).length - 1
      const kept = [], others = []
      let error, otherError
      for (let i = 0; i < 200000; i++) {
        if (i % 3 === 0 && !otherError) {
          try { others.push(other(i)) } catch (err) { otherError = err.code || err.message }
        }
        try {
          kept.push(mmap.map(4096, i % 2 ? mmap.PROT_READ : mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1))
        } catch (err) { error = { code: err.code, syscall: err.syscall }; break }
      }
      const atError = vmas()
      const limit = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'))
      const junk = []
      for (let j = 0; j < 100; j++) junk.push(new Array(1e5).fill(j))
      console.log(JSON.stringify({ error, atError, limit, kept: kept.length, others: others.length, junk: junk.length }))
    `
    const child = spawnSync('/bin/sh', ['-c', 'ulimit -c 0 2>/dev/null; exec "$0" -e "$1"', process.execPath, script], {
      encoding: 'utf8',
      timeout: 180000,
    })
    assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr.slice(-2000)}`)
    assert.equal(child.status, 0, child.stderr.slice(-2000))
    const result = JSON.parse(child.stdout)
    assert.deepEqual(result.error, { code: 'ENOMEM', syscall: 'mmap' })
    assert.ok(result.others > 1000, `precondition: ${result.others} other mappings made`)
    // node-mmap stops where the whole process (not node-mmap alone) leaves V8 its 4096.
    assert.ok(result.atError <= result.limit - 4096 + 64, `${result.atError} kernel mappings of ${result.limit}`)
    assert.equal(result.junk, 100)
  })
}

// Found by attack pass 6: a second copy's count, taken before the first copy filled the room,
// let it map tens of thousands more (its bound trusted half the room it had seen), into V8's
// headroom: std::bad_alloc. A count now refills allowances for 100 ms at most.
test('a second copy of node-mmap that maps after the first filled the process to the limit gets ENOMEM at once, and V8 keeps room', () => {
  const root = path.join(__dirname, '..')
  const script = `
    const fs = require('fs'), os = require('os'), path = require('path')
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-copy-'))
    for (const name of fs.readdirSync(${JSON.stringify(root)})) {
      if (/^(index\\.js|package\\.json)$|\\.node$/.test(name)) fs.copyFileSync(path.join(${JSON.stringify(root)}, name), path.join(copy, name))
    }
    const A = require(${JSON.stringify(root)}), B = require(copy)
    const vmas = () => fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).length - 1
    const mk = (m, i) => m.map(4096, i & 1 ? m.PROT_READ : m.PROT_READ | m.PROT_WRITE, m.MAP_PRIVATE | m.MAP_ANONYMOUS, -1)
    const keep = [mk(A, 0), mk(B, 0)] // each copy has counted once, early
    let a = 0, b = 0, aError, bError
    try { for (;;) { keep.push(mk(A, a)); a++ } } catch (err) { aError = err.code }
    try { for (;;) { keep.push(mk(B, b)); b++ } } catch (err) { bError = err.code }
    const atEnd = vmas()
    const limit = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'))
    const junk = []
    for (let j = 0; j < 100; j++) junk.push(new Array(1e5).fill(j))
    console.log(JSON.stringify({ a, b, aError, bError, atEnd, limit, junk: junk.length }))
  `
  const child = spawnSync('/bin/sh', ['-c', 'ulimit -c 0 2>/dev/null; exec "$0" -e "$1"', process.execPath, script], {
    encoding: 'utf8',
    timeout: 180000,
  })
  assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr.slice(-2000)}`)
  assert.equal(child.status, 0, child.stderr.slice(-2000))
  const result = JSON.parse(child.stdout)
  assert.ok(result.a > 1000, `precondition: the first copy mapped ${result.a}`)
  assert.deepEqual([result.aError, result.bError], ['ENOMEM', 'ENOMEM'])
  assert.ok(result.b <= 64, `the second copy mapped ${result.b} more past the limit`)
  assert.ok(result.atEnd <= result.limit - 4096 + 128, `${result.atEnd} kernel mappings of ${result.limit}`)
  assert.equal(result.junk, 100)
})

// Found by attack pass 7: a worker ending at the limit (its Buffers' memory taken away one by
// one, as unmap() does) read the kernel's whole list for each Buffer, some 30 ms each at 60,000
// kernel mappings, once WebAssembly memories had taken what the count said was left: the worker
// took most of an hour to end, worker.terminate() never resolved, and its thread spun.
for (const kernel of ['this kernel', 'a kernel without PROCMAP_QUERY']) {
  for (const end of ['terminate', 'natural']) {
    test(`a worker that ends (${end}) at the limit after WebAssembly took the room ends at once (${kernel})`, () => {
      const root = path.join(__dirname, '..')
      const script = `
        const { Worker } = require('worker_threads')
        const mmap = require(${JSON.stringify(root)})
        const fill = (m) => {
          const keep = []
          try {
            for (let n = 0; ; n++) keep.push(m.map(4096, n & 1 ? m.PROT_READ : m.PROT_READ | m.PROT_WRITE, m.MAP_PRIVATE | m.MAP_ANONYMOUS, -1))
          } catch (err) { return { keep, code: err.code } }
        }
        const worker = new Worker(\`
          const { parentPort } = require('worker_threads')
          const m = require(\${JSON.stringify(${JSON.stringify(root)})})
          const keep = []
          let code
          try {
            for (let n = 0; ; n++) keep.push(m.map(4096, n & 1 ? m.PROT_READ : m.PROT_READ | m.PROT_WRITE, m.MAP_PRIVATE | m.MAP_ANONYMOUS, -1))
          } catch (err) { code = err.code }
          globalThis.keep = keep
          parentPort.postMessage({ n: keep.length, code })
          parentPort.once('message', () => parentPort.close())
        \`, { eval: true })
        let main, inWorker
        const go = () => {
          if (!main || !inWorker) return
          // WebAssembly takes room the last count saw (V8's headroom allows it).
          const wasm = []
          for (let i = 0; i < 50; i++) wasm.push(new WebAssembly.Memory({ initial: 1 }))
          const started = Date.now()
          worker.on('exit', () => {
            const ms = Date.now() - started
            const junk = Array.from({ length: 200000 }, (_, i) => ({ i }))
            const intact = main.keep.every((b, i) => b.length === 4096 && b[0] === 0 && (i & 1 || (b[1] = 7) === 7))
            console.log(JSON.stringify({ ms, main: [main.keep.length, main.code], worker: [inWorker.n, inWorker.code], wasm: wasm.length, junk: junk.length, intact }))
          })
          if (${JSON.stringify(end)} === 'terminate') worker.terminate()
          else worker.postMessage('end')
        }
        worker.on('online', () => { main = fill(mmap); go() })
        worker.on('message', (m) => { inWorker = m; go() })
      `
      const env = { ...process.env, NODE_MMAP_SIMULATE_NO_PROCMAP_QUERY: kernel === 'this kernel' ? '0' : '1' }
      const child = spawnSync('/bin/sh', ['-c', 'ulimit -c 0 2>/dev/null; exec "$0" -e "$1"', process.execPath, script], {
        encoding: 'utf8',
        timeout: 180000,
        env,
      })
      assert.equal(child.signal, null, `child died by ${child.signal} (a hang if SIGTERM): ${child.stderr.slice(-2000)}`)
      assert.equal(child.status, 0, child.stderr.slice(-2000))
      const result = JSON.parse(child.stdout)
      assert.equal(result.main[1], 'ENOMEM', 'precondition: filled to the guard')
      assert.equal(result.worker[1], 'ENOMEM', 'precondition: filled to the guard')
      assert.equal(result.wasm, 50)
      // Ending took 34 s with a read of the list per Buffer, or forever. Now under one (measured
      // 0.6 s here); 10 s leaves a slow machine room.
      assert.ok(result.ms < 10000, `the worker took ${result.ms} ms to end`)
      assert.equal(result.junk, 200000)
      assert.equal(result.intact, true)
    })
  }
}

// Found by attack pass 8: a count read the kernel's list (some 30 ms at 60,000 lines) while
// workers kept mapping; the kernel places each new mapping below the last, where the read had
// passed, so thousands went uncounted and workers mapping at once took V8's room (the process
// aborted, or a worker ran out of memory). A count now holds this copy's reservations back.
test('workers mapping at once until ENOMEM stop at the guard, and V8 keeps its room', () => {
  const root = path.join(__dirname, '..')
  const script = `
    const { Worker } = require('worker_threads')
    const fs = require('fs'), os = require('os'), path = require('path')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-limits-'))
    const file = path.join(dir, 'page')
    fs.writeFileSync(file, Buffer.alloc(4096, 1))
    const W = 4
    const sab = new Int32Array(new SharedArrayBuffer(4 * (W + 1)))
    const vmas = () => fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).length - 1
    const results = []
    let exited = 0
    for (let i = 0; i < W; i++) {
      const worker = new Worker(\`
        const { parentPort, workerData: { file, sab, W, root } } = require('worker_threads')
        const fs = require('fs')
        const mmap = require(root)
        const fd = fs.openSync(file, 'r+')
        const keep = []
        let code
        Atomics.add(sab, 0, 1)
        while (Atomics.load(sab, 0) < W);
        try {
          for (let n = 0; ; n++) keep.push(mmap.map(4096, n & 1 ? mmap.PROT_READ : mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0))
        } catch (err) { code = err.code }
        // All stopped: the count is what they left.
        Atomics.add(sab, 1, 1)
        while (Atomics.load(sab, 1) < W);
        const vmas = fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).length - 1
        const junk = []
        for (let k = 0; k < 300000; k++) junk.push({ k, s: 'v' + k })
        parentPort.postMessage({ code, n: keep.length, vmas, junk: junk.length })
      \`, { eval: true, workerData: { file, sab, W, root: ${JSON.stringify(root)} } })
      worker.on('message', (m) => results.push(m))
      worker.on('error', (err) => results.push({ error: err.code || err.message }))
      worker.on('exit', () => {
        if (++exited === W) {
          const junk = Array.from({ length: 200000 }, (_, k) => ({ k }))
          fs.rmSync(dir, { recursive: true, force: true })
          console.log(JSON.stringify({ results, limit: Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8')), junk: junk.length }))
        }
      })
    }
  `
  const child = spawnSync('/bin/sh', ['-c', 'ulimit -c 0 2>/dev/null; exec "$0" -e "$1"', process.execPath, script], {
    encoding: 'utf8',
    timeout: 180000,
  })
  assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr.slice(-2000)}`)
  assert.equal(child.status, 0, child.stderr.slice(-2000))
  const { results, limit, junk } = JSON.parse(child.stdout)
  assert.equal(results.length, 4)
  for (const result of results) {
    assert.equal(result.error, undefined, `a worker failed: ${result.error}`)
    assert.equal(result.code, 'ENOMEM')
    assert.equal(result.junk, 300000)
    // At the guard (the limit less V8's 4096), give or take one in-flight mapping per thread
    // and what V8 made since; the race left a few hundred at most.
    assert.ok(result.vmas <= limit - 4096 + 64, `${result.vmas} kernel mappings of ${limit}`)
  }
  assert.equal(junk, 200000)
})

// Found by attack pass 9: when no descriptor was left (EMFILE), the guard could not read
// vm.max_map_count and kept "no limit" for good, or could not read /proc/self/maps and counted
// it as empty: map() then ran to the kernel's own limit and V8 aborted. Pass 10: it then failed
// closed, so unmap() threw EMFILE there, and a worker that ended with no descriptor free kept
// its mappings. The guard now keeps a descriptor of the list from the addon's load, and reads
// through it when none is left; a program that closes it gets EMFILE (closed), until a
// descriptor is free again.
for (const kernel of ['this kernel', 'a kernel without PROCMAP_QUERY']) {
  test(`with no file descriptor left, the guard still counts: ENOMEM at its limit, never mappings past it, unmap() works (${kernel})`, () => {
    const result = runChild(`${PRELUDE}
      const fill = () => { const fds = []; try { for (;;) fds.push(fs.openSync('/dev/null', 'r')) } catch (err) { return fds } }
      const free = (fds) => { for (const fd of fds) fs.closeSync(fd) }
      const attempt = (f) => { try { f(); return 'ok' } catch (err) { return err.code + ' ' + err.syscall } }
      const mapUntilError = (keep) => {
        try {
          for (;;) {
            const b = mmap.map(2 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
            mmap.protect(b, 0, P, mmap.PROT_READ)
            keep.push(b)
          }
        } catch (err) { return err.code }
      }
      // The first map() of the process, with every descriptor in use.
      let fds = fill()
      const first = attempt(() => mmap.unmap(mmap.map(P, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)))
      const keep = []
      const full = mapUntilError(keep)
      // At the limit, unmap() of part of a mapping (a hole: it may split a kernel mapping).
      const hole = attempt(() => mmap.unmap(keep[keep.length - 1].subarray(0, P)))
      const unmapped = attempt(() => keep.splice(0, 20000).forEach((b) => mmap.unmap(b)))
      const late = mapUntilError(keep)
      free(fds)
      const atLate = vmas()
      const limit = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8'))
      keep.forEach((b) => mmap.unmap(b))
      // A program that closes the guard's descriptor (it did not open it) gets EMFILE, closed.
      const reserve = fs.readdirSync('/proc/self/fd').map(Number).find((fd) => {
        try { const link = fs.readlinkSync('/proc/self/fd/' + fd); return link.startsWith('/proc/') && link.endsWith('/maps') } catch { return false }
      })
      fs.closeSync(reserve)
      fds = fill()
      const closed = mapUntilError([])
      free(fds)
      // A descriptor free again: the guard keeps one anew at its next read of the list.
      const again = []
      const refilled = mapUntilError(again)
      fds = fill()
      const afterReopen = attempt(() => again.forEach((b) => mmap.unmap(b)))
      free(fds)
      const junk = []
      for (let k = 0; k < 400; k++) junk.push(new Array(10000).fill(k))
      console.log(JSON.stringify({ first, full, hole, unmapped, late, atLate, limit, closed, refilled, afterReopen, junk: junk.length }))
    `, { descriptors: 256, env: kernel === 'this kernel' ? {} : { NODE_MMAP_SIMULATE_NO_PROCMAP_QUERY: '1' } })
    assert.equal(result.first, 'ok')
    assert.equal(result.full, 'ENOMEM')
    assert.equal(result.hole, 'ok')
    assert.equal(result.unmapped, 'ok')
    assert.equal(result.late, 'ENOMEM')
    assert.ok(result.atLate <= result.limit - 4096 + 64, `${result.atLate} kernel mappings of ${result.limit}`)
    assert.equal(result.closed, 'EMFILE')
    assert.equal(result.refilled, 'ENOMEM')
    assert.equal(result.afterReopen, 'ok')
    assert.equal(result.junk, 400)
  })
}

// Found by attack pass 10: a worker that ended while no descriptor was free kept its mappings,
// the file's, for the life of the process (the guard could not read the kernel's list).
for (const kernel of ['this kernel', 'a kernel without PROCMAP_QUERY']) {
  test(`a worker that ends while no descriptor is free leaves none of its mappings mapped (${kernel})`, () => {
    const result = runChild(`${PRELUDE}
      const { Worker } = require('worker_threads')
      const file = path.join(dir, 'pages')
      fs.writeFileSync(file, Buffer.alloc(64 * P, 1))
      const worker = new Worker(\`
        const { parentPort, workerData: { file, root } } = require('worker_threads')
        const mmap = require(root)
        const fd = require('fs').openSync(file, 'r')
        const P = mmap.PAGESIZE
        // Each its own kernel mapping: the same page of the file, mapped again and again.
        globalThis.keep = Array.from({ length: 2000 }, () => mmap.map(P, mmap.PROT_READ, mmap.MAP_SHARED, fd))
        require('fs').closeSync(fd)
        parentPort.postMessage('mapped')
        setInterval(() => {}, 1000)
      \`, { eval: true, workerData: { file, root: ${JSON.stringify(path.join(__dirname, '..'))} } })
      worker.once('message', () => {
        const before = linesOf(file)
        // The process at the guard's limit, where a worker's end must ask the kernel.
        const keep = []
        try {
          for (;;) {
            const b = mmap.map(2 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
            mmap.protect(b, 0, P, mmap.PROT_READ)
            keep.push(b)
          }
        } catch {}
        globalThis.keep = keep
        const fds = []
        try { for (;;) fds.push(fs.openSync('/dev/null', 'r')) } catch {}
        worker.terminate().then(() => {
          for (const fd of fds) fs.closeSync(fd)
          console.log(JSON.stringify({ before, after: linesOf(file) }))
        })
      })
    `, { descriptors: 256, env: kernel === 'this kernel' ? {} : { NODE_MMAP_SIMULATE_NO_PROCMAP_QUERY: '1' } })
    assert.ok(result.before >= 1000, `${result.before} kernel mappings of the file before the worker ended`)
    assert.equal(result.after, 0)
  })
}

// Found by attack pass 9: without PROCMAP_QUERY (Linux before 6.11) a worker's end reserved two
// kernel mappings on the bound for each placeholder, and the bound ran out long before the
// limit: a worker that ended holding 40,000 mappings left most of them mapped, the file's, for
// the life of the process. The end of a worker's env now reads the kernel's list once a second.
for (const kernel of ['this kernel', 'a kernel without PROCMAP_QUERY']) {
  test(`a worker that ends holding 40,000 mappings of a file leaves none of them mapped (${kernel})`, () => {
    const root = path.join(__dirname, '..')
    const script = `
      const { Worker } = require('worker_threads')
      const fs = require('fs'), os = require('os'), path = require('path')
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-limits-'))
      const file = path.join(dir, 'page')
      fs.writeFileSync(file, Buffer.alloc(8192, 1))
      const fileMaps = () => fs.readFileSync('/proc/self/maps', 'utf8').split(String.fromCharCode(10)).filter((l) => l.endsWith(' ' + file)).length
      const worker = new Worker(\`
        const { parentPort, workerData: { file, root } } = require('worker_threads')
        const mmap = require(root)
        const fd = require('fs').openSync(file, 'r')
        const keep = []
        while (keep.length < 40000) keep.push(mmap.map(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd))
        globalThis.keep = keep
        parentPort.postMessage(keep.length)
      \`, { eval: true, workerData: { file, root: ${JSON.stringify(root)} } })
      let made = 0
      worker.on('message', (n) => { made = n })
      worker.on('exit', () => {
        const left = fileMaps()
        fs.rmSync(dir, { recursive: true, force: true })
        console.log(JSON.stringify({ made, left }))
      })
    `
    const env = { ...process.env, NODE_MMAP_SIMULATE_NO_PROCMAP_QUERY: kernel === 'this kernel' ? '0' : '1' }
    const child = spawnSync('/bin/sh', ['-c', 'ulimit -c 0 2>/dev/null; exec "$0" -e "$1"', process.execPath, script], {
      encoding: 'utf8',
      timeout: 180000,
      env,
    })
    assert.equal(child.signal, null, `child died by ${child.signal}: ${child.stderr.slice(-2000)}`)
    assert.equal(child.status, 0, child.stderr.slice(-2000))
    assert.deepEqual(JSON.parse(child.stdout), { made: 40000, left: 0 })
  })
}

// Found by attack pass 12: unmap() leaves its range reserved (a placeholder) until the views
// are collected, and a loop of map() + unmap() gives the garbage collector no reason to run:
// the address space filled up, map() said ENOMEM as it should, and then V8 itself was refused a
// page and the process died (under `ulimit -v`, or with terabyte MAP_NORESERVE mappings and no
// limit at all). map() and remap() now leave the runtime a headroom of the address space.
test('map() + unmap() pairs under ulimit -v never leave the runtime without address space', () => {
  const base = Number(spawnSync(process.execPath, ['-e', "console.log(require('fs').readFileSync('/proc/self/status', 'latin1').match(/VmSize:\\s+(\\d+)/)[1])"], { encoding: 'utf8' }).stdout)
  assert.ok(base > 0, 'VmSize of a bare node')
  const script = `
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    let size = 2 ** 30, pairs = 0, refused = null
    while (size >= 4096) {
      let b
      try { b = mmap.map(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1) } catch (e) { refused = refused || e.code; size /= 2; continue }
      mmap.unmap(b)
      pairs++
    }
    // About 80 MB of new heap: well inside the headroom (at least 256 MiB, some of which the
    // runtime has taken since the last map()), and far more than the nothing that was left.
    const junk = []
    for (let i = 0; i < 100; i++) junk.push(new Array(100000).fill(i))
    console.log(JSON.stringify({ pairs, refused, junk: junk.length }))
  `
  const result = runUnderLimit(`ulimit -v ${base + 4 * 1024 * 1024}`, script)
  assert.equal(result.refused, 'ENOMEM')
  assert.ok(result.pairs >= 1, JSON.stringify(result))
  assert.equal(result.junk, 100)
})

// Found by attack pass 14: under ulimit -d, a map() of private writable memory that took all
// that was left of the data limit got through the kernel's check, and V8 aborted the process
// when it could not commit its next heap page. map() now leaves the runtime a headroom of the
// data limit (ENOMEM first).
test('map() of private writable memory under ulimit -d never leaves the runtime without room', (t) => {
  const { dataLimitUnavailable } = require('./helpers.js')
  const unavailable = dataLimitUnavailable(240000, 'const junk = []; for (let i = 0; i < 50; i++) junk.push(new Array(1 << 16).fill(i))')
  if (unavailable) return t.skip(unavailable)
  const script = `
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    let size = 2 ** 28, mapped = 0, refused = null
    const held = []
    while (size >= 2 ** 20) {
      try { held.push(mmap.map(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)); mapped += size } catch (e) { refused = refused || e.code; size /= 2 }
    }
    // About 25 MB of new heap, as a program goes on after its mappings.
    const junk = []
    for (let i = 0; i < 50; i++) junk.push(new Array(1 << 16).fill(i))
    console.log(JSON.stringify({ refused, mappedMiB: mapped / 2 ** 20, junk: junk.length, held: held.length }))
  `
  const result = runUnderLimit('ulimit -d 240000', script)
  assert.equal(result.refused, 'ENOMEM')
  assert.ok(result.mappedMiB >= 1, JSON.stringify(result))
  assert.equal(result.junk, 50)
})

// Found by attack pass 15: a read-only private mapping (which the data limit does not count)
// made writable by protect() took what map() refuses under ulimit -d, and V8 aborted at its
// next allocations. protect() keeps the same headroom (ENOMEM, syscall mprotect).
test('protect() adding write access under ulimit -d never leaves the runtime without room', (t) => {
  const { dataLimitUnavailable } = require('./helpers.js')
  const unavailable = dataLimitUnavailable(524288, 'const junk = []; for (let i = 0; i < 50; i++) junk.push(new Array(1 << 16).fill(i))')
  if (unavailable) return t.skip(unavailable)
  const script = `
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    const b = mmap.map(420 * 2 ** 20, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    let protectError = null
    try { mmap.protect(b, 0, b.length, mmap.PROT_READ | mmap.PROT_WRITE) } catch (e) { protectError = e.code + ' ' + e.syscall }
    const junk = []
    for (let i = 0; i < 100; i++) junk.push(new Array(1 << 16).fill(i))
    console.log(JSON.stringify({ protectError, junk: junk.length }))
  `
  assert.deepEqual(runUnderLimit('ulimit -d 524288', script), { protectError: 'ENOMEM mprotect', junk: 100 })
})

// Found by attack pass 15: the kernel merges neighbouring one-page mappings into one kernel
// mapping, and protect()/advise()/lock() of a whole mapping split it again; the guard counted
// splits only for part of a mapping, so a loop over 66,000 merged mappings reached the
// kernel's limit and V8 aborted. Every change of attributes now reserves its split.
for (const change of ['protect', 'advise', 'lock']) {
  test(`${change}() of whole merged one-page mappings stops before the kernel's limit of mappings (child)`, () => {
    const result = runChild(`${PRELUDE}
      const bufs = []
      for (let i = 0; i < 66000; i++) {
        try { bufs.push(mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)) } catch (e) { break }
      }
      const change = {
        protect: (b) => mmap.protect(b, 0, 4096, mmap.PROT_READ),
        advise: (b) => mmap.advise(b, mmap.MADV_RANDOM),
        lock: (b) => mmap.lock(b),
      }[${JSON.stringify(change)}]
      let stopped = null, changed = 0
      for (let i = 0; i < bufs.length; i += 2) {
        try { change(bufs[i]); changed++ } catch (e) { stopped = e.code; break }
      }
      const junk = []
      for (let i = 0; i < 300; i++) junk.push(new Array(1e5).fill(0.5))
      console.log(JSON.stringify({ mapped: bufs.length, changed, stopped, junk: junk.length }))
    `)
    assert.equal(result.stopped, 'ENOMEM', JSON.stringify(result))
    assert.ok(result.changed > 1000, JSON.stringify(result))
    assert.equal(result.junk, 300)
  })
}

test('terabyte MAP_NORESERVE mappings unmapped at once never leave the runtime without address space (no limit)', { skip: process.arch !== 'x64' && 'the user address space of x86-64 (128 TiB) is what this test fills' }, () => {
  const result = runChild(`${PRELUDE}
    let size = 2 ** 40, pairs = 0, refused = null
    while (size >= 4096) {
      let m
      try { m = new mmap.Mapping(size, mmap.PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_NORESERVE, -1) } catch (e) { refused = refused || e.code; size /= 2; continue }
      m.view(0, 1)
      m.unmap()
      pairs++
    }
    const junk = []
    for (let i = 0; i < 2000; i++) junk.push(new Array(100000).fill(i))
    console.log(JSON.stringify({ pairs, refused, junk: junk.length }))
  `)
  assert.equal(result.refused, 'ENOMEM')
  assert.ok(result.pairs >= 64, JSON.stringify(result))
  assert.equal(result.junk, 2000)
})

// The data the running Node uses before it does anything, in KiB (its VmData): ulimit -d is set
// above it, so that the same test fits Node 18 (~70 MiB) and Node 22+ (~1.6 GiB reserved).
function baselineDataKiB() {
  const probe = spawnSync(process.execPath, ['-e', "process.stdout.write(require('fs').readFileSync('/proc/self/status', 'latin1'))"], { encoding: 'utf8' })
  return Number(/VmData:\s+(\d+)/.exec(probe.stdout)[1])
}

// What the children below compute from their own limit and use (MiB): the limit, the data in
// use, and the runtime's headroom as README gives it (a quarter of the limit, 32 to 512 MiB).
const DATA_PRELUDE = `
  const fs = require('fs')
  const MiB = 2 ** 20
  const limit = Number(/Max data size\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/limits', 'latin1'))[1])
  const used = () => Number(/VmData:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'latin1'))[1]) * 1024
  const headroom = Math.min(Math.max(limit / 4, 32 * MiB), 512 * MiB)
`

// Found by attack pass 16: the data-limit check and the system call it guards were not one step
// across threads: two workers that protect()ed (or map()ped) at the same instant each saw the
// other's memory not yet counted, both passed, and together they left V8 nothing: the next
// allocations ended the process (V8 fatal OOM). Now the check holds a lock until the call returns.
// (map() shares the lock; it is not raced here: an unmap()ped range stays a placeholder, counted
// toward the limit, until its Buffer is collected, so the next rounds of map() would be refused.)
for (const mode of ['protect']) {
  test(`two workers ${mode}()ing private writable memory at once under ulimit -d: never both, and the runtime keeps its room`, () => {
    const worker = `
      const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
      const { workerData: { barrier, mode }, parentPort } = require('worker_threads')
      let b = null, size = 0, gen = 0, held = false
      parentPort.on('message', (message) => {
        if (typeof message === 'number') {
          size = message
          if (mode === 'protect') b = mmap.map(size, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
          return parentPort.postMessage('ready')
        }
        if (held) { if (mode === 'protect') mmap.protect(b, 0, b.length, mmap.PROT_READ); else mmap.unmap(b); held = false }
        gen += 2; Atomics.add(barrier, 0, 1); while (Atomics.load(barrier, 0) < gen) {} // both threads here
        try {
          if (mode === 'protect') mmap.protect(b, 0, b.length, mmap.PROT_READ | mmap.PROT_WRITE)
          else b = mmap.map(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
          held = true
          parentPort.postMessage('ok')
        } catch (e) { parentPort.postMessage(e.code + ' ' + e.syscall) }
      })
      parentPort.postMessage('started')
    `
    const script = `
      const fs = require('fs')
      const MiB = 2 ** 20
      const used = () => Number(/VmData:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'latin1'))[1]) * 1024
      const { Worker } = require('worker_threads')
      const barrier = new Int32Array(new SharedArrayBuffer(8))
      const workers = [0, 1].map(() => new Worker(${JSON.stringify(worker)}, { eval: true, workerData: { barrier, mode: ${JSON.stringify(mode)} } }))
      let started = 0, ready = 0, round = 0, answers = [], both = 0, one = 0, size = 0, sizing
      const refused = new Set()
      const go = () => workers.forEach((w) => w.postMessage('go'))
      for (const w of workers) w.on('message', (answer) => {
        if (answer === 'started') {
          if (++started < 2) return
          // With both workers running (their own data counts), the data limit is set here
          // (prlimit on this process) so that one call of 1000 MiB keeps the headroom (512 MiB
          // at this limit) with as much again to spare (Node 18's workers flip the rights of
          // large code ranges, which counts), two would not, and both would fit under the
          // kernel's own limit. Measured here, not guessed: each Node version reserves differently.
          size = 1000 * MiB
          const base = used()
          let limit = base + 1.5 * size + 512 * MiB
          for (let i = 0; i < 8; i++) limit = base + 1.5 * size + Math.min(Math.max(limit / 4, 32 * MiB), 512 * MiB)
          limit = Math.ceil(limit / MiB) * MiB
          require('child_process').execFileSync('prlimit', ['--pid', String(process.pid), '--data=' + limit + ':'])
          const h = Math.min(Math.max(limit / 4, 32 * MiB), 512 * MiB)
          sizing = { fits: base + 2 * size <= limit, oneKeeps: base + size + h <= limit, twoWouldNot: base + 2 * size + h > limit }
          return workers.forEach((w) => w.postMessage(size))
        }
        if (answer === 'ready') return ++ready === 2 && go()
        answers.push(answer)
        if (answers.length < 2) return
        const oks = answers.filter((a) => a === 'ok').length
        if (oks === 2) both++
        if (oks === 1) one++
        for (const a of answers) if (a !== 'ok') refused.add(a)
        answers = []
        if (++round < 1000) return go()
        // About 70 MiB of new heap and Buffers, as a program goes on.
        const junk = []
        for (let i = 0; i < 40; i++) junk.push(Buffer.alloc(MiB, 1), new Array(1e5).fill(i))
        console.log(JSON.stringify({ both, one, refused: [...refused], junk: junk.length, sizing }))
        process.exit(0)
      })
    `
    const result = runUnderLimit('true', script)
    const syscall = mode === 'protect' ? 'mprotect' : 'mmap'
    const sizing = { fits: true, oneKeeps: true, twoWouldNot: true }
    assert.deepEqual(result, { both: 0, one: 1000, refused: [`ENOMEM ${syscall}`], junk: 80, sizing })
  })
}

// Found by attack pass 16: each pending waitAsync() is a thread whose stack is private writable
// memory; thousands of them took all of ulimit -d and V8 aborted. A wait now keeps the runtime's
// headroom as map() does: past it, waitAsync() rejects with ENOMEM.
test('pending waitAsync() threads under ulimit -d leave the runtime its room (ENOMEM past it)', () => {
  const script = `${DATA_PRELUDE}
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    // More waits than the room left can hold (a thread's stack is 128 KiB).
    const count = Math.min(20000, Math.ceil((limit - used()) / (128 * 1024)) + 200)
    const buf = mmap.map(count * 4, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
    const view = new Int32Array(buf.buffer, buf.byteOffset, count)
    const waits = []
    for (let i = 0; i < count; i++) waits.push(mmap.waitAsync(view, i * 4, 0).then(() => 'woken', (e) => [e.name, e.message, e.code, e.errno, e.syscall].join(' | ')))
    // About 20 MB of new heap and Buffers, well inside the headroom (a quarter of the limit,
    // ~100 MiB here), which V8 also needs for its own work (Node 18 flips its code pages'
    // rights, which counts too).
    const junk = []
    for (let i = 0; i < 12; i++) junk.push(Buffer.alloc(MiB, 1), new Array(1e5).fill(i))
    for (let i = 0; i < count; i++) mmap.notify(view, i * 4)
    Promise.all(waits).then((outcomes) => {
      const counts = {}
      for (const o of outcomes) counts[o] = (counts[o] || 0) + 1
      console.log(JSON.stringify({ kinds: Object.keys(counts).sort(), junk: junk.length, underLimit: used() <= limit }))
    })
  `
  const result = runUnderLimit(`ulimit -d ${baselineDataKiB() + 400 * 1024}`, script)
  const refused = ['Error', 'ENOMEM: not enough memory, pthread_create', 'ENOMEM', -require('node:os').constants.errno.ENOMEM, 'pthread_create'].join(' | ')
  assert.deepEqual(result, { kinds: [refused, 'woken'], junk: 24, underLimit: true })
})

// Found with attack pass 16's tests: unmap() leaves a placeholder of private writable memory in
// the mapping's range, which counts toward ulimit -d. The placeholder of a mapping that did not
// count (read-only, or shared) took its whole size from the limit at once, the kernel let it
// through (a replacement of memory already mapped), and V8 then died at its next allocation or
// change of code rights (a worker's end unmaps its mappings too). Under a data limit the
// placeholder is now shared anonymous memory, which does not count.
test('unmap() of mappings that do not count toward ulimit -d (read-only, shared) takes nothing from it', () => {
  const script = `${DATA_PRELUDE}
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    const big = 1024 * MiB // far more than the limit leaves: only a mapping that does not count fits
    const before = used()
    const readOnly = mmap.map(big, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    const shared = mmap.map(big, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
    shared.fill(7, 0, 4096)
    mmap.unmap(readOnly)
    mmap.unmap(shared)
    const grew = used() - before
    shared[10] = 1 // a stale write lands in the placeholder
    const junk = []
    for (let i = 0; i < 12; i++) junk.push(Buffer.alloc(MiB, 1), new Array(1e5).fill(i))
    console.log(JSON.stringify({ grewMiB: Math.round(grew / MiB) < 64, zeros: readOnly[5] === 0 && shared[4] === 0, stale: shared[10], junk: junk.length }))
  `
  const result = runUnderLimit(`ulimit -d ${baselineDataKiB() + 300 * 1024}`, script)
  assert.deepEqual(result, { grewMiB: true, zeros: true, stale: 1, junk: 24 })
})
