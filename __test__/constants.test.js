'use strict'
// The constants on the module: numbers, read-only, and the C library's own values (a C program
// compiled at test time is the oracle).

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const mmap = require('..')
const { tempDir } = require('./helpers.js')

const dir = tempDir(test)

/** Every constant the module must export on Linux, with the C expression that gives its value. */
const EXPECTED = {
  PROT_NONE: 'PROT_NONE',
  PROT_READ: 'PROT_READ',
  PROT_WRITE: 'PROT_WRITE',
  PROT_EXEC: 'PROT_EXEC',
  MAP_SHARED: 'MAP_SHARED',
  MAP_PRIVATE: 'MAP_PRIVATE',
  MAP_SHARED_VALIDATE: 'MAP_SHARED_VALIDATE',
  MAP_ANONYMOUS: 'MAP_ANONYMOUS',
  MAP_ANON: 'MAP_ANON',
  MAP_NORESERVE: 'MAP_NORESERVE',
  MAP_POPULATE: 'MAP_POPULATE',
  MAP_NONBLOCK: 'MAP_NONBLOCK',
  MAP_HUGETLB: 'MAP_HUGETLB',
  MAP_HUGE_2MB: 'MAP_HUGE_2MB',
  MAP_HUGE_1GB: 'MAP_HUGE_1GB',
  MAP_LOCKED: 'MAP_LOCKED',
  MAP_STACK: 'MAP_STACK',
  MAP_SYNC: 'MAP_SYNC',
  MADV_NORMAL: 'MADV_NORMAL',
  MADV_RANDOM: 'MADV_RANDOM',
  MADV_SEQUENTIAL: 'MADV_SEQUENTIAL',
  MADV_WILLNEED: 'MADV_WILLNEED',
  MADV_DONTNEED: 'MADV_DONTNEED',
  MADV_FREE: 'MADV_FREE',
  MADV_REMOVE: 'MADV_REMOVE',
  MADV_DONTFORK: 'MADV_DONTFORK',
  MADV_DOFORK: 'MADV_DOFORK',
  MADV_MERGEABLE: 'MADV_MERGEABLE',
  MADV_UNMERGEABLE: 'MADV_UNMERGEABLE',
  MADV_HUGEPAGE: 'MADV_HUGEPAGE',
  MADV_NOHUGEPAGE: 'MADV_NOHUGEPAGE',
  MADV_DONTDUMP: 'MADV_DONTDUMP',
  MADV_DODUMP: 'MADV_DODUMP',
  MADV_WIPEONFORK: 'MADV_WIPEONFORK',
  MADV_KEEPONFORK: 'MADV_KEEPONFORK',
  MADV_COLD: 'MADV_COLD',
  MADV_PAGEOUT: 'MADV_PAGEOUT',
  MS_ASYNC: 'MS_ASYNC',
  MS_SYNC: 'MS_SYNC',
  MS_INVALIDATE: 'MS_INVALIDATE',
  PAGESIZE: 'sysconf(_SC_PAGESIZE)',
  ALLOCATION_GRANULARITY: 'sysconf(_SC_PAGESIZE)', // the offset alignment: PAGESIZE on Linux
}

/** The names of the module's constants (its non-function exports). */
const constantNames = () => Object.keys(mmap).filter((name) => typeof mmap[name] !== 'function')

/** Compiles and runs a C program printing `NAME value` for each entry; returns { NAME: value }. */
function valuesFromC(entries) {
  const source = [
    '#define _GNU_SOURCE',
    '#include <stdio.h>',
    '#include <unistd.h>',
    '#include <sys/mman.h>',
    '#include <linux/mman.h>',
    'int main(void) {',
    ...entries.map(([name, expr]) => `  printf("%s %lld\\n", "${name}", (long long)(${expr}));`),
    '  return 0;',
    '}',
    '',
  ].join('\n')
  const src = path.join(dir, 'constants.c')
  const exe = path.join(dir, 'constants')
  fs.writeFileSync(src, source)
  const cc = process.env.CC || 'cc'
  const built = spawnSync(cc, ['-Wall', '-o', exe, src], { encoding: 'utf8' })
  if (built.error && built.error.code === 'ENOENT') {
    assert.fail(
      `No C compiler: \`${cc}\` was not found. This test compiles a C program to read the C ` +
        "library's own values of the constants; install one (Debian/Ubuntu: apt-get install gcc) " +
        'or point $CC at it.',
    )
  }
  if (built.error) throw built.error
  assert.equal(built.status, 0, `\`${cc}\` failed on the constants program:\n${built.stderr}\n${source}`)
  const ran = spawnSync(exe, { encoding: 'utf8' })
  assert.equal(ran.status, 0, ran.stderr)
  const values = {}
  for (const line of ran.stdout.trim().split('\n')) {
    const [name, value] = line.split(' ')
    values[name] = Number(value)
  }
  return values
}

test('every constant is a number (a non-negative integer)', () => {
  const names = constantNames()
  assert.ok(names.length >= Object.keys(EXPECTED).length)
  for (const name of names) {
    assert.equal(typeof mmap[name], 'number', name)
    assert.ok(Number.isInteger(mmap[name]) && mmap[name] >= 0, `${name} = ${mmap[name]}`)
  }
  for (const name of Object.keys(EXPECTED)) assert.ok(name in mmap, `${name} is not exported`)
})

test('the constants are read-only', () => {
  // This file is strict mode: assigning to a read-only property throws.
  for (const name of constantNames()) {
    const before = mmap[name]
    assert.throws(
      () => {
        mmap[name] = before + 1
      },
      { name: 'TypeError', message: `Cannot assign to read only property '${name}' of object '#<Object>'` },
      name,
    )
    assert.throws(
      () => {
        delete mmap[name]
      },
      TypeError,
      name,
    )
    assert.throws(() => Object.defineProperty(mmap, name, { value: before + 1 }), TypeError, name)
    assert.equal(mmap[name], before, `${name} changed`)
  }
  // In sloppy mode the assignment is ignored, and the value stays.
  const sloppy = new Function('m', 'm.PROT_READ = 12345; return m.PROT_READ')
  assert.equal(sloppy(mmap), 1)
})

test('the constants are the C library\'s own values (cc, <sys/mman.h>, <unistd.h>)', {
  skip: process.platform === 'win32' && "Windows has no <sys/mman.h> (nor cc): its numbers are Linux's basic set and 0 (README)",
}, () => {
  // Every exported PROT_/MAP_/MADV_/MS_ name is checked too, not only the expected list, so a
  // constant added to the module without a C counterpart fails here.
  const entries = new Map(Object.entries(EXPECTED))
  for (const name of constantNames()) {
    if (/^(PROT|MAP|MADV|MS)_/.test(name) && !entries.has(name)) entries.set(name, name)
  }
  const c = valuesFromC([...entries])
  const mismatches = []
  for (const [name] of entries) {
    assert.ok(name in c, `the C program printed no ${name}`)
    if (mmap[name] !== c[name]) mismatches.push(`${name}: module ${mmap[name]}, C ${c[name]}`)
  }
  assert.deepEqual(mismatches, [])
  // Sanity of the oracle itself: these are Linux's documented values.
  assert.equal(c.PROT_READ, 1)
  assert.equal(c.MAP_SHARED, 1)
  assert.equal(c.MAP_PRIVATE, 2)
  assert.equal(c.MAP_HUGE_2MB, 21 << 26)
})

test('ALLOCATION_GRANULARITY equals PAGESIZE on Linux (65536 on Windows)', () => {
  // Windows places views at multiples of its allocation granularity, 64 KiB (README).
  assert.equal(mmap.ALLOCATION_GRANULARITY, process.platform === 'win32' ? 65536 : mmap.PAGESIZE)
  assert.ok(mmap.PAGESIZE >= 4096 && (mmap.PAGESIZE & (mmap.PAGESIZE - 1)) === 0)
})

test('externalBuffersAllowed() is true on plain Node', () => {
  assert.equal(typeof mmap.externalBuffersAllowed, 'function')
  assert.equal(mmap.externalBuffersAllowed(), true)
  // And still true once a mapping was made (the answer is then learned from it).
  mmap.map(1, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  assert.equal(mmap.externalBuffersAllowed(), true)
})
