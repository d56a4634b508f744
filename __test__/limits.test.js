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

test('Mapping#read of more than can be allocated throws ERR_MEMORY_ALLOCATION_FAILED instead of aborting', () => {
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
    error: {
      name: 'Error',
      code: 'ERR_MEMORY_ALLOCATION_FAILED',
      message: `Failed to allocate memory for a copy of ${3.5 * 2 ** 30} bytes`,
    },
    small: 16,
  })
})
