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
  for (const parent of [os.tmpdir(), path.join(PACKAGE, 'target')]) {
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

test('a write the file system refuses on a readable page keeps the file\'s bytes in view (a private copy), counted by faults()', (t) => {
  const { dir, reason } = immutableDir()
  if (reason) return t.skip(reason)
  const file = path.join(dir, 'data.bin')
  try {
    const result = runScript(
      `
      const mmap = require(MMAP)
      const fs = require('fs'), { execFileSync } = require('child_process')
      const file = process.argv.at(-1), P = mmap.PAGESIZE
      fs.writeFileSync(file, Buffer.concat([Buffer.alloc(P, 'A'), Buffer.alloc(P, 'B'), Buffer.alloc(P, 'C')]))
      const buf = mmap.openSync(file, { mode: 'r+' })
      const m = mmap.Mapping.open(file, { mode: 'r+' })
      execFileSync('chattr', ['+i', file])
      try {
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
      } finally {
        execFileSync('chattr', ['-i', file])
      }
      `,
      { args: [file] },
    )
    assertExited(result)
    assert.deepEqual(JSON.parse(result.stdout), {
      page: 'B!BB', // the file's bytes, and the write, in the private copy
      rest: true,
      first: 'AA',
      third: 'CCCzzC', // Mapping#write: the bytes land in the copy, and the call says they are lost
      writeError: 'ERR_MMAP_LOST_PAGES',
      faults: 2,
      file: 'BBBB', // the file never saw the write
    })
  } finally {
    spawnSync('chattr', ['-i', file])
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
