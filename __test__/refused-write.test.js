'use strict'
// A write into a shared file mapping that the file system refuses, on a page that holds the
// file's bytes and can be read: the file made immutable meanwhile (`chattr +i`, by an admin or
// another process), a full copy-on-write file system (btrfs cannot reserve the copy), a hole
// on a full disk. The kernel raises SIGBUS for the write. SIGBUS recovery used to swap in a page
// of zeros, as for a page lost to truncation, so every later read of that page showed zeros
// where the file holds data (attack pass 16). Now the page becomes a private copy of the
// file's bytes: reads keep showing them, the write lands in the copy (the file never sees it,
// as it could not), and faults() counts the page.
//
// Needs root and a file system with the immutable attribute (ext4, xfs, btrfs, tmpfs on recent
// kernels); elsewhere the test is skipped with that reason.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { runScript, assertExited, PACKAGE } = require('./helpers.js')

// A folder where `chattr +i` works, or why there is none.
function immutableDir() {
  if (process.platform !== 'linux') return { reason: 'chattr is Linux' }
  const tried = []
  for (const parent of [path.join(PACKAGE, 'target'), os.tmpdir()]) {
    fs.mkdirSync(parent, { recursive: true })
    const dir = fs.mkdtempSync(path.join(parent, 'node-mmap-immutable-'))
    const probe = path.join(dir, 'probe')
    fs.writeFileSync(probe, 'x')
    const set = spawnSync('chattr', ['+i', probe], { encoding: 'utf8' })
    spawnSync('chattr', ['-i', probe])
    if (set.status === 0) return { dir }
    tried.push(`${parent}: ${(set.error?.message || set.stderr || `status ${set.status}`).trim()}`)
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return { reason: `chattr +i works in none of ${tried.join('; ')}` }
}

// The checks below run each in a child with the file made immutable after it was opened for
// writing (every write to it is refused, SIGBUS), as the first test does.
function withImmutableFile(t, size, body) {
  const { dir, reason } = immutableDir()
  if (reason) return t.skip(reason)
  const file = path.join(dir, 'data.bin')
  try {
    const result = runScript(
      `
      const mmap = require(MMAP)
      const fs = require('fs'), { execFileSync } = require('child_process')
      const file = process.argv.at(-1), P = mmap.PAGESIZE
      fs.writeFileSync(file, Buffer.alloc(${size}, 0x44))
      const fd = fs.openSync(file, 'r+')
      execFileSync('chattr', ['+i', file])
      try {
        ${body}
      } finally {
        execFileSync('chattr', ['-i', file])
      }
      `,
      { args: [file], timeout: 170_000 },
    )
    assertExited(result)
    return JSON.parse(result.stdout)
  } finally {
    spawnSync('chattr', ['-i', file])
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

test('a write the file system refuses on a readable page keeps the file\'s bytes in view (a copy), counted by faults()', (t) => {
  const result = withImmutableFile(t, 3 * 4096, `
    const A = Buffer.alloc(P, 'A'), B = Buffer.alloc(P, 'B'), C = Buffer.alloc(P, 'C')
    execFileSync('chattr', ['-i', file])
    fs.writeSync(fd, Buffer.concat([A, B, C]), 0, 3 * P, 0)
    execFileSync('chattr', ['+i', file])
    const buf = mmap.map(3 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    const m = new mmap.Mapping(3 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    buf[P + 1] = 0x21 // refused by the file system: SIGBUS
    let writeError = null
    try { m.write(Buffer.from('zz'), 2 * P + 3) } catch (e) { writeError = e.code }
    console.log(JSON.stringify({
      page: buf.toString('latin1', P, P + 4),
      rest: buf.subarray(P + 2, 2 * P).every((b) => b === 0x42),
      first: buf.toString('latin1', 0, 2),
      third: m.read(2 * P, 6).toString('latin1'),
      writeError,
      faults: mmap.faults(buf) + mmap.faults(m.view()),
      file: fs.readFileSync(file).toString('latin1', P, P + 4),
    }))
  `)
  if (result === undefined) return
  assert.deepEqual(result, {
    page: 'B!BB', // the file's bytes, and the write, in the copy
    rest: true,
    first: 'AA',
    third: 'CCCzzC', // Mapping#write: the bytes land in the copy, and the call says they are lost
    writeError: 'ERR_MMAP_LOST_PAGES',
    faults: 2,
    file: 'BBBB', // the file never saw the write
  })
})

// Found by attack pass 17: a refused write on a thread-pool thread (crypto.randomFill) whose
// handler ran after the main thread's unmap() had put the placeholder there found no mapping,
// passed the fault on, and the default action of SIGBUS came back: the next lost page anywhere
// killed the process. Now a fault on memory that is anonymous and allows the access by the time
// it is handled runs again.
test('thread-pool writes refused by the file system racing unmap() leave node-mmap\'s SIGBUS handler in place (child)', (t) => {
  const result = withImmutableFile(t, 64 << 20, `
    const crypto = require('crypto')
    const caught = () => (BigInt('0x' + /SigCgt:\\s*([0-9a-f]+)/.exec(fs.readFileSync('/proc/self/status', 'latin1'))[1]) >> 6n) & 1n
    let round = 0
    const next = () => {
      if (round > 0 && !caught()) return console.log(JSON.stringify({ handler: 'gone', round }))
      if (++round > 2000) return after()
      const b = mmap.map(65536 * (1 + (round % 8)), mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, (round % 56) * 1048576)
      let pending = 2
      const done = () => --pending === 0 && setImmediate(next)
      crypto.randomFill(b, done)
      mmap.unmap(b)
      done()
    }
    // Then a page lost to truncation still reads as zeros, counted.
    const after = () => {
      const other = file + '.lost'
      fs.writeFileSync(other, Buffer.alloc(4 * P, 1))
      const b = mmap.openSync(other)
      fs.truncateSync(other, P)
      console.log(JSON.stringify({ handler: 'kept', lost: b[2 * P], faults: mmap.faults(b) }))
      fs.rmSync(other)
    }
    next()
  `)
  if (result === undefined) return
  assert.deepEqual(result, { handler: 'kept', lost: 0, faults: 2 })
})

// Found by attack pass 17: a refused write on a PROT_WRITE mapping (which the kernel's copy,
// process_vm_readv, cannot read) was taken for a lost page, and so was every page after it that
// the probe could not read either: pages that hold the file read zeros and their writes never
// reached it. Now the faulting page is made readable for the look, and only it is replaced.
test('a refused write on a PROT_WRITE mapping replaces that page only: the pages after it keep the file (child)', (t) => {
  const result = withImmutableFile(t, 8 * 4096, `
    const b = mmap.map(8 * P, mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    b[1] = 1 // refused
    const faults = mmap.faults(b)
    mmap.protect(b, 0, b.length, mmap.PROT_READ | mmap.PROT_WRITE)
    console.log(JSON.stringify({ faults, first: [b[0], b[1]], fifth: b[5 * P + 3] }))
  `)
  if (result === undefined) return
  assert.deepEqual(result, { faults: 1, first: [0x44, 1], fifth: 0x44 })
})

// Found by attack pass 17: the copy of a refused page was private memory, which
// advise(MADV_DONTNEED) turns into zeros, where the file's pages keep their bytes through it.
test('advise(MADV_DONTNEED) keeps a refused page\'s copy of the file\'s bytes (child)', (t) => {
  const result = withImmutableFile(t, 2 * 4096, `
    const b = mmap.map(2 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    b[1] = 1 // refused: the page becomes a copy
    mmap.advise(b, mmap.MADV_DONTNEED)
    console.log(JSON.stringify({ copy: [b[0], b[1]], next: b[P + 1], faults: mmap.faults(b) }))
  `)
  if (result === undefined) return
  assert.deepEqual(result, { copy: [0x44, 1], next: 0x44, faults: 1 })
})
