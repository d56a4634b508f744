'use strict'
// incore(buf) -> [unmappedPages, mappedPages] (mincore(2)), as mmap-io.
// Oracle: the Rss that /proc/self/smaps reports for the same mapping. An anonymous mapping has
// no name, so it is mapped between two PROT_NONE guard pages, which make its smaps entry its
// own and findable by size; a file mapping is found by its unique path.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')

const mmap = require('..')
const {
  tempDir,
  tempFile,
  pattern,
  smapsOf,
  guardedAnonymous,
  guardedSmaps,
  assertThrowsExactly,
  runScript,
  assertCleanExit,
  straceUnavailable,
  straceScript,
  assertExited,
  dataLimitUnavailable,
  notOnWindows,
} = require('./helpers.js')

const NO_SMAPS = notOnWindows('compares with the Rss of /proc/self/smaps: Windows has no such file')

const P = mmap.PAGESIZE
const KB = P / 1024
const RW = mmap.PROT_READ | mmap.PROT_WRITE

function assertShape(result, pages) {
  assert.ok(Array.isArray(result))
  assert.equal(result.length, 2)
  assert.ok(result.every(Number.isInteger))
  assert.equal(result[0] + result[1], pages, `[unmapped, mapped] sums to the ${pages} pages of the view`)
}

describe('incore', () => {
  it('counts the pages the view spans', () => {
    const buf = mmap.map(5 * P + 1, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    assertShape(mmap.incore(buf), 6)
    assertShape(mmap.incore(buf.subarray(P - 1, P + 1)), 2)
    assertShape(mmap.incore(buf.subarray(1, 2)), 1)
    assertShape(mmap.incore(buf.subarray(P, 3 * P)), 2)
    assertShape(mmap.incore(new DataView(buf.buffer, 2 * P + 5, P)), 2)
    assertShape(mmap.incore(buf.buffer), 6)
    assert.deepEqual(mmap.incore(buf.subarray(0, 0)), [0, 0])
    mmap.unmap(buf)
    assert.deepEqual(mmap.incore(buf), [0, 0], 'an unmapped view has no pages')
  })

  // An empty range spans no page, wherever it starts: incore(b.subarray(5, 5)) said [0, 1] (the
  // page around byte 5) where b.subarray(0, 0) said [0, 0].
  it('counts no page for an empty view, at any offset', () => {
    const b = mmap.map(4 * P, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    b.fill(1)
    for (const at of [0, 5, P - 1, P, P + 1, 4 * P - 1, 4 * P]) {
      assert.deepEqual(mmap.incore(b.subarray(at, at)), [0, 0], `incore(b.subarray(${at}, ${at}))`)
    }
    assert.deepEqual(mmap.incore(b.subarray(5, 6)), [0, 1], 'one byte is one page')
    mmap.unmap(b)
  })

  it('makes no system call for an empty range at an unaligned offset, in any operation (strace)', { skip: straceUnavailable() ?? false }, (t) => {
    const dir = tempDir(t)
    const L = 4 * P
    const { path } = tempFile(t, dir, 'incore-empty-strace.bin', L)
    const { result, lines } = straceScript(
      `
      const mmap = require(MMAP)
      const fs = require('node:fs')
      const fd = fs.openSync(${JSON.stringify(path)}, 'r+')
      const m = new mmap.Mapping(${L}, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
      const buf = m.view()
      const empty = buf.subarray(${P + 5}, ${P + 5})
      ;(async () => {
        const [start, end] = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.endsWith(' ' + ${JSON.stringify(path)})).split(' ')[0].split('-')
        console.log('RANGE ' + start + ' ' + end)
        console.log('INCORE ' + JSON.stringify([mmap.incore(empty), mmap.incore(buf.subarray(5, 5))]))
        mmap.sync(empty)
        mmap.sync(empty, true)
        mmap.lock(empty)
        mmap.unlock(empty)
        mmap.lock(buf, 5, 0)
        mmap.unlock(buf, ${P + 5}, 0)
        mmap.protect(buf, 5, 0, mmap.PROT_READ)
        mmap.protect(empty, 0, 0, mmap.PROT_NONE)
        mmap.advise(empty, mmap.MADV_WILLNEED)
        mmap.advise(buf, 5, 0, mmap.MADV_WILLNEED)
        mmap.advise(buf, ${P + 5}, 0, mmap.MADV_DONTNEED)
        await mmap.flush(empty)
        await mmap.flush(buf, { offset: 5, length: 0 })
        m.lock(5, 0)
        m.unlock(${P + 5}, 0)
        m.advise(5, 0, mmap.MADV_WILLNEED)
        m.advise(${2 * P + 1}, 0, mmap.MADV_DONTNEED)
        await m.flush({ offset: 5, length: 0 })
        // Nothing was protected: a copy into the first page still works.
        m.write(Buffer.from('ok'), 0)
        buf.write('ok', 5)
        console.log('DONE')
      })()
    `,
      'madvise,msync,mlock,munlock,mprotect,mincore',
      { threads: true },
    )
    assertExited(result)
    const stdout = result.stdout
    // Every thread is traced (flush runs on the libuv pool): calls of the runtime's own threads
    // interleave, so lines are matched by their address alone, finished or not.
    const [start, end] = /^RANGE ([0-9a-f]+) ([0-9a-f]+)$/m.exec(stdout).slice(1).map((h) => BigInt('0x' + h))
    const calls = lines.filter((line) => {
      const call = /^(\w+)\((0x[0-9a-f]+),/.exec(line)
      return call && BigInt(call[2]) >= start && BigInt(call[2]) < end
    })
    assert.match(stdout, /INCORE \[\[0,0\],\[0,0\]\]/)
    assert.match(stdout, /DONE/)
    assert.deepEqual(calls, [])
  })

  it('agrees with smaps Rss for an anonymous mapping: none, some, all touched, then MADV_DONTNEED', { skip: NO_SMAPS }, () => {
    const N = 123 // pages: a size nothing else in the process is likely to have, between guards
    const { view } = guardedAnonymous(mmap, N)
    const rssPages = () => guardedSmaps(N * KB).fields.Rss / KB

    assert.deepEqual(mmap.incore(view), [N, 0])
    assert.equal(rssPages(), 0)

    for (let page = 0; page < N; page += 3) view[page * P] = 1 // writing faults in a real page
    const some = Math.ceil(N / 3)
    assert.deepEqual(mmap.incore(view), [N - some, some])
    assert.equal(rssPages(), some)

    view.fill(7)
    assert.deepEqual(mmap.incore(view), [0, N])
    assert.equal(rssPages(), N)
    assert.deepEqual(mmap.incore(view.subarray(P + 1, 3 * P)), [0, 2])

    mmap.advise(view, mmap.MADV_DONTNEED)
    const after = mmap.incore(view) // before reading: a read maps the shared zero page
    assert.equal(rssPages(), 0)
    assert.deepEqual(after, [N, 0])
    assert.ok(view.every((b) => b === 0))
  })

  it('agrees with smaps Rss for a file mapping once every page is touched (and counts cached pages before)', { skip: NO_SMAPS }, (t) => {
    const dir = tempDir(t)
    const pages = 37
    const bytes = pattern(pages * P)
    const { path, fd } = tempFile(t, dir, 'incore-file.bin', bytes)
    const buf = mmap.map(pages * P, RW, mmap.MAP_SHARED, fd, 0)
    // mincore reports page-cache residency for a file: the pages fs.writeFileSync just wrote
    // count as resident before this process touched any (smaps Rss is still 0).
    assert.equal(smapsOf(path)[0].fields.Rss, 0)
    assert.deepEqual(mmap.incore(buf), [0, pages])
    let sum = 0
    for (let page = 0; page < pages; page++) sum += buf[page * P]
    assert.ok(sum >= 0)
    const entries = smapsOf(path)
    assert.equal(entries.length, 1)
    assert.equal(entries[0].fields.Rss, pages * KB)
    assert.deepEqual(mmap.incore(buf), [0, pages])
  })

  it('refuses what is not a mapping', () => {
    assertThrowsExactly(() => mmap.incore(new Uint8Array(8)), TypeError, {
      code: 'ERR_MMAP_NOT_A_MAPPING',
      message: 'The "buffer" argument must be a view of memory mapped by node-mmap. Received an instance of Uint8Array',
    })
    assertThrowsExactly(() => mmap.incore(), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "buffer" argument must be an instance of Buffer, TypedArray, DataView or ArrayBuffer. Received undefined',
    })
  })

  // incore() of a huge reservation allocated one byte per page (4 GiB for 16 TiB) and aborted
  // when that failed; now it asks mincore about 65,536 pages at a time, in a fixed buffer. A
  // child with a small data limit (RLIMIT_DATA counts private writable memory, not a PROT_NONE
  // reservation) shows it; the counts pass 2^32 pages, so they are numbers, not uint32s.
  it('counts the pages of a 16 TiB PROT_NONE reservation in bounded memory: Mapping#incore and incore (child)', {
    skip: notOnWindows('needs ulimit -d through /bin/sh, and a 16 TiB MAP_NORESERVE reservation: Windows commits an anonymous section whole (MAP_NORESERVE is 0)'),
  }, (t) => {
    const script = `
      const mmap = require(MMAP)
      const { constants } = require('node:buffer')
      const P = mmap.PAGESIZE
      const size = 2 ** 44 + P
      const flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_NORESERVE
      const m = new mmap.Mapping(size, mmap.PROT_NONE, flags, -1)
      console.log('Mapping#incore ' + JSON.stringify(m.incore()))
      m.unmap()
      // The module function needs a Buffer that large: Node 22+ (buffer.constants.MAX_LENGTH).
      if (constants.MAX_LENGTH >= size) {
        const buf = mmap.map(size, mmap.PROT_NONE, flags, -1)
        console.log('incore ' + JSON.stringify(mmap.incore(buf)))
        mmap.unmap(buf)
      } else {
        console.log('incore ' + JSON.stringify([size / P, 0]))
      }
    `
    const unavailable = dataLimitUnavailable(262144, '0')
    if (unavailable) return t.skip(unavailable)
    const result = runScript(script, { shell: 'ulimit -d 262144' })
    assertCleanExit(result)
    const pages = (2 ** 44 + P) / P
    assert.equal(result.stdout, `Mapping#incore [${pages},0]\nincore [${pages},0]\n`)
    assert.ok(pages > 2 ** 32)
  })
})
