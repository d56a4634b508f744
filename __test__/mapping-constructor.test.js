'use strict'
// new Mapping(size, protection, flags, fd, offset, advise): the sixth argument is checked and
// applied exactly as map()'s (one implementation: map_checked). The kernel is the oracle for
// "applied" (VmFlags in /proc/self/smaps: rr = MADV_RANDOM, sr = MADV_SEQUENTIAL), and map()'s
// own error is the oracle for each bad value.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const mmap = require('..')
const { tempDir, randomFileIn, mappingsOf, notOnWindows } = require('./helpers.js')

const { Mapping, PAGESIZE, PROT_READ, MAP_SHARED } = mmap
const dir = tempDir(test)
let serial = 0

/** The VmFlags of each mapping of `file` in /proc/self/smaps. */
function vmFlagsOf(file) {
  const out = []
  let inFile = false
  for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inFile = line.endsWith(` ${file}`)
    else if (inFile && line.startsWith('VmFlags:')) out.push(line.slice('VmFlags:'.length).trim().split(/\s+/))
  }
  return out
}

/** A file of 4 pages, open read-only: { file, fd }. */
function fixture(t) {
  const { file } = randomFileIn(dir, `ctor-${++serial}.bin`, 4 * PAGESIZE)
  const fd = fs.openSync(file, 'r')
  t.after(() => fs.closeSync(fd))
  return { file, fd }
}

test('the advice is applied, as by map() (VmFlags rr / sr)', {
  skip: notOnWindows('reads VmFlags from /proc/self/smaps: Windows has no such file (and these advice are hints there)'),
}, (t) => {
  const { file, fd } = fixture(t)
  for (const [advice, flag] of [
    [mmap.MADV_RANDOM, 'rr'],
    [mmap.MADV_SEQUENTIAL, 'sr'],
  ]) {
    const handle = new Mapping(4 * PAGESIZE, PROT_READ, MAP_SHARED, fd, 0, advice)
    const [flags] = vmFlagsOf(file)
    assert.ok(flags.includes(flag), `Mapping: ${flags}`)
    handle.unmap()
    const buf = mmap.map(4 * PAGESIZE, PROT_READ, MAP_SHARED, fd, 0, advice)
    assert.ok(vmFlagsOf(file)[0].includes(flag), 'map() agrees')
    mmap.unmap(buf)
  }
  for (const advise of [undefined]) {
    const handle = new Mapping(4 * PAGESIZE, PROT_READ, MAP_SHARED, fd, 0, advise)
    const [flags] = vmFlagsOf(file)
    assert.ok(!flags.includes('rr') && !flags.includes('sr'), `no advice: ${flags}`)
    handle.unmap()
  }
})

test("a bad advice is the same error as map()'s, and nothing stays mapped", (t) => {
  const { file, fd } = fixture(t)
  const bad = ['x', 1.5, 12345, -1, null, 10n, {}]
  // A Linux advice that fails on a file mapping (EINVAL); 0, no effect, on Windows (README).
  if (mmap.MADV_WIPEONFORK !== 0) bad.push(mmap.MADV_WIPEONFORK)
  for (const advise of bad) {
    let expected = null
    try {
      mmap.map(4 * PAGESIZE, PROT_READ, MAP_SHARED, fd, 0, advise)
    } catch (err) {
      expected = err
    }
    assert.ok(expected, `map() refuses ${String(advise)}`)
    assert.throws(
      () => new Mapping(4 * PAGESIZE, PROT_READ, MAP_SHARED, fd, 0, advise),
      (err) => {
        assert.equal(err.constructor, expected.constructor)
        for (const key of ['code', 'errno', 'syscall', 'message']) assert.equal(err[key], expected[key], `${key} for ${String(advise)}`)
        return true
      },
    )
    assert.deepEqual(mappingsOf(file), [], `nothing stays mapped after ${String(advise)}`)
  }
})
