'use strict'
// protect(buf, offset, length, protection): mprotect(2) over a byte range of any view, rounded
// out to whole pages.
// Oracles: the permissions /proc/self/maps shows for the file's mapping (found by its unique
// path), fs.readFileSync of the file, and a child's exit signal.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const mmap = require('..')
const {
  tempDir,
  tempFile,
  mapTempFile,
  pattern,
  mappingsOf,
  assertThrowsExactly,
  runScript,
  notOnWindows,
} = require('./helpers.js')

const NO_PROC_MAPS = notOnWindows('reads the permissions /proc/self/maps shows: Windows has no such file')
const windows = process.platform === 'win32'

const P = mmap.PAGESIZE
const RW = mmap.PROT_READ | mmap.PROT_WRITE

function mappedFile(t, name, pages, flags = mmap.MAP_SHARED) {
  return mapTempFile(t, mmap, name, pages * P, { seed: 19, flags, unmap: true })
}

/** The permissions of each page of a file's mapping, from /proc/self/maps: ['r--s', 'rw-s', ...]. */
function pagePerms(file) {
  const perms = []
  for (const e of mappingsOf(file).sort((a, b) => (a.start < b.start ? -1 : 1))) {
    for (let at = e.start; at < e.end; at += BigInt(P)) perms.push(e.perms)
  }
  return perms
}

describe('protect', () => {
  it('makes a page read-only (r--s), and read-write again; writes then reach the file', { skip: NO_PROC_MAPS }, (t) => {
    const { path, bytes, buf } = mappedFile(t, 'protect-shared.bin', 3)
    assert.deepEqual(pagePerms(path), ['rw-s', 'rw-s', 'rw-s'])
    mmap.protect(buf, 0, P, mmap.PROT_READ)
    assert.deepEqual(pagePerms(path), ['r--s', 'rw-s', 'rw-s'])
    assert.deepEqual(buf, bytes, 'still readable')
    buf[P] = 1 // the other pages stay writable

    mmap.protect(buf, 0, P, RW)
    assert.deepEqual(pagePerms(path), ['rw-s', 'rw-s', 'rw-s'])
    buf[0] = bytes[0] ^ 0xff
    buf.write('writable again', 100, 'latin1')
    const disk = fs.readFileSync(path)
    assert.equal(disk[0], bytes[0] ^ 0xff)
    assert.equal(disk.toString('latin1', 100, 114), 'writable again')
    assert.equal(disk[P], 1)
  })

  it('shows r--p for a MAP_PRIVATE mapping', { skip: NO_PROC_MAPS }, (t) => {
    const { path, buf } = mappedFile(t, 'protect-private.bin', 2, mmap.MAP_PRIVATE)
    mmap.protect(buf, P, P, mmap.PROT_READ)
    assert.deepEqual(pagePerms(path), ['rw-p', 'r--p'])
    mmap.protect(buf, 0, 2 * P, RW)
    assert.deepEqual(pagePerms(path), ['rw-p', 'rw-p'])
  })

  it('rounds ranges out to pages, relative to the view', { skip: NO_PROC_MAPS }, (t) => {
    const { path, buf } = mappedFile(t, 'protect-ranges.bin', 6)
    const cases = [
      [() => mmap.protect(buf, P + 1, 1, mmap.PROT_READ), ['rw-s', 'r--s', 'rw-s', 'rw-s', 'rw-s', 'rw-s']],
      [() => mmap.protect(buf, P - 1, 2, mmap.PROT_READ), ['r--s', 'r--s', 'rw-s', 'rw-s', 'rw-s', 'rw-s']],
      [() => mmap.protect(buf.subarray(2 * P + 7), 0, 10, mmap.PROT_NONE), ['rw-s', 'rw-s', '---s', 'rw-s', 'rw-s', 'rw-s']],
      [
        () => mmap.protect(new DataView(buf.buffer, 3 * P), 1, 2 * P, mmap.PROT_READ),
        ['rw-s', 'rw-s', 'rw-s', 'r--s', 'r--s', 'r--s'],
      ],
      [() => mmap.protect(buf.buffer, 5 * P, P, mmap.PROT_NONE), ['rw-s', 'rw-s', 'rw-s', 'rw-s', 'rw-s', '---s']],
      [() => mmap.protect(buf, 0, 0, mmap.PROT_READ), ['rw-s', 'rw-s', 'rw-s', 'rw-s', 'rw-s', 'rw-s']],
    ]
    for (const [fn, perms] of cases) {
      fn()
      assert.deepEqual(pagePerms(path), perms, `${fn}`)
      mmap.protect(buf, 0, 6 * P, RW)
    }
  })

  it('lets a write to a read-only page kill the process with SIGSEGV (current behaviour, child)', (t) => {
    const dir = tempDir(t)
    const { path } = tempFile(t, dir, 'protect-segv.bin', pattern(2 * P))
    const result = runScript(
      `
      const mmap = require(process.env.NODE_MMAP_ROOT)
      const fd = require('node:fs').openSync(process.argv[1], 'r+')
      const buf = mmap.map(${2 * P}, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
      mmap.protect(buf, 0, ${P}, mmap.PROT_READ)
      buf[${P}] = 1
      process.stdout.write('before ' + buf[0] + '\\n')
      buf[0] = 1
      process.stdout.write('after\\n')
    `,
      { args: [path] },
    )
    if (windows) {
      // An access violation: node-mmap's diagnostic, then Windows ends the process (README).
      assert.equal(result.status, 0xc0000005, `stdout: ${result.stdout} stderr: ${result.stderr}`)
      assert.equal(result.signal, null)
      assert.match(result.stderr, /node-mmap: EXCEPTION_ACCESS_VIOLATION at offset 0 of a \d+-byte mapping/)
    } else {
      assert.equal(result.signal, 'SIGSEGV', `stdout: ${result.stdout} stderr: ${result.stderr}`)
      assert.equal(result.status, null)
    }
    assert.equal(result.stdout, `before ${pattern(2 * P)[0]}\n`)
    assert.equal(fs.readFileSync(path)[P], 1, 'the write to the writable page landed')
  })

  it('refuses bad protection values before the call', (t) => {
    const { path, buf } = mappedFile(t, 'protect-bad-prot.bin', 1)
    const invalid = (n) => ({
      code: 'ERR_INVALID_ARG_VALUE',
      message: `The argument 'protection' must be PROT_NONE or a bitwise OR of PROT_READ, PROT_WRITE and PROT_EXEC. Received ${n}`,
    })
    assertThrowsExactly(() => mmap.protect(buf, 0, P, 8), RangeError, invalid(8))
    assertThrowsExactly(() => mmap.protect(buf, 0, P, mmap.PROT_READ | 0x10), RangeError, invalid(0x11))
    assertThrowsExactly(() => mmap.protect(buf, 0, P, -1), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: 'The value of "protection" is out of range. It must be >= 0 && <= 2147483647. Received -1',
    })
    assertThrowsExactly(() => mmap.protect(buf, 0, P, 1.5), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: 'The value of "protection" is out of range. It must be an integer. Received 1.5',
    })
    assertThrowsExactly(() => mmap.protect(buf, 0, P, 'r'), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: `The "protection" argument must be of type number. Received type string ('r')`,
    })
    assertThrowsExactly(() => mmap.protect(buf, 0, P), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "protection" argument must be of type number. Received undefined',
    })
    if (!windows) assert.deepEqual(pagePerms(path), ['rw-s']) // no /proc/self/maps on Windows
  })

  it('refuses ranges outside the view, and non-mappings', (t) => {
    const L = 2 * P
    const { path, buf } = mappedFile(t, 'protect-bad-range.bin', 2)
    assertThrowsExactly(() => mmap.protect(buf, L + 1, 0, mmap.PROT_READ), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "offset" is out of range. It must be >= 0 && <= ${L}. Received ${L + 1}`,
    })
    assertThrowsExactly(() => mmap.protect(buf, P, P + 1, mmap.PROT_READ), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "length" is out of range. It must be >= 0 && <= ${P}. Received ${P + 1}`,
    })
    assertThrowsExactly(() => mmap.protect(buf.subarray(P), 0, P + 1, mmap.PROT_READ), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "length" is out of range. It must be >= 0 && <= ${P}. Received ${P + 1}`,
    })
    assertThrowsExactly(() => mmap.protect(buf, '0', P, mmap.PROT_READ), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: `The "offset" argument must be of type number. Received type string ('0')`,
    })
    assertThrowsExactly(() => mmap.protect(new Uint8Array(4), 0, 4, mmap.PROT_READ), TypeError, {
      code: 'ERR_MMAP_NOT_A_MAPPING',
      message: 'The "buffer" argument must be a view of memory mapped by node-mmap. Received an instance of Uint8Array',
    })
    assertThrowsExactly(() => mmap.protect(undefined, 0, 4, mmap.PROT_READ), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "buffer" argument must be an instance of Buffer, TypedArray, DataView or ArrayBuffer. Received undefined',
    })
    if (!windows) assert.deepEqual(pagePerms(path), ['rw-s', 'rw-s']) // no /proc/self/maps on Windows
  })

  it('reports a failed mprotect as a system error (write access to a file opened read-only: EACCES)', (t) => {
    const dir = tempDir(t)
    const { path, fd } = tempFile(t, dir, 'protect-eacces.bin', pattern(P), 'r')
    const buf = mmap.map(P, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    t.after(() => mmap.unmap(buf))
    assertThrowsExactly(() => mmap.protect(buf, 0, P, RW), Error, {
      code: 'EACCES',
      errno: windows ? -4092 : -13, // libuv's UV_EACCES on Windows (README)
      syscall: 'mprotect',
      message: 'EACCES: permission denied, mprotect',
    })
    if (!windows) assert.deepEqual(pagePerms(path), ['r--s']) // no /proc/self/maps on Windows
  })

  it('does nothing on an unmapped view', (t) => {
    const { buf } = mappedFile(t, 'protect-detached.bin', 1)
    mmap.unmap(buf)
    mmap.protect(buf, 0, 0, mmap.PROT_NONE)
  })
})
