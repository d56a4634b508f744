'use strict'
// advise(buf, advice) / advise(buf, offset, length, advice): madvise(2) over a byte range of
// any view, the start rounded down to its page.
// Oracles: strace of a child (the exact madvise calls made), the bytes of a private mapping
// after MADV_DONTNEED, the file on disk.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')

const mmap = require('..')
const {
  tempDir,
  tempFile,
  pattern,
  assertThrowsExactly,
  straceUnavailable,
  traceCalls,
  notOnWindows,
  runScript,
  assertCleanExit,
} = require('./helpers.js')

// On Windows the advice other than MADV_WILLNEED are hints (README): MADV_DONTNEED drops no page
// of a view (anonymous memory is a pagefile section's view there), MADV_REMOVE and MADV_FREE are 0.
const windows = process.platform === 'win32'
const NO_REMOVE = notOnWindows('MADV_REMOVE is 0 on Windows (no hole punching: README)')

const P = mmap.PAGESIZE
const RW = mmap.PROT_READ | mmap.PROT_WRITE
const MADV_HWPOISON = 100

function anonymous(pages) {
  const buf = mmap.map(pages * P, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  const bytes = pattern(pages * P, 5)
  bytes.copy(buf)
  return { buf, bytes }
}

describe('advise', () => {
  it(
    'makes the madvise calls asked for: both forms, unaligned starts, subarrays, DataViews (strace)',
    { skip: straceUnavailable() ?? false },
    (t) => {
      const dir = tempDir(t)
      const { path } = tempFile(t, dir, 'advise-strace.bin', 4 * P)
      const L = 4 * P
      const { calls } = traceCalls(
        `
        const fd = fs.openSync(${JSON.stringify(path)}, 'r+')
        const buf = mmap.map(${L}, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        report(${JSON.stringify(path)})
        mmap.advise(buf, mmap.MADV_RANDOM)
        mmap.advise(buf, 1, 100, mmap.MADV_RANDOM)
        mmap.advise(buf, ${P}, ${P}, mmap.MADV_SEQUENTIAL)
        mmap.advise(buf, ${P + 10}, undefined, mmap.MADV_WILLNEED)
        mmap.advise(buf, undefined, undefined, mmap.MADV_NORMAL)
        mmap.advise(buf.subarray(${P + 10}), 5, 10, mmap.MADV_SEQUENTIAL)
        mmap.advise(buf.subarray(${2 * P - 1}, ${3 * P}), mmap.MADV_WILLNEED)
        mmap.advise(new DataView(buf.buffer, ${3 * P + 1}), mmap.MADV_NORMAL)
        mmap.advise(buf.buffer, 0, ${P}, mmap.MADV_RANDOM)
      `,
        ['madvise'],
      )
      const m = (offset, length, arg) => ({ name: 'madvise', offset, length, arg, result: 0 })
      assert.deepEqual(calls, [
        m(0, L, 'MADV_RANDOM'),
        m(0, 101, 'MADV_RANDOM'),
        m(P, P, 'MADV_SEQUENTIAL'),
        m(P, L - P, 'MADV_WILLNEED'),
        m(0, L, 'MADV_NORMAL'),
        m(P, 25, 'MADV_SEQUENTIAL'),
        m(P, 2 * P, 'MADV_WILLNEED'),
        m(3 * P, P, 'MADV_NORMAL'),
        m(0, P, 'MADV_RANDOM'),
      ])
    },
  )

  it('accepts an unaligned start: advise(buf, 1, 100, MADV_RANDOM)', () => {
    const { buf, bytes } = anonymous(2)
    mmap.advise(buf, 1, 100, mmap.MADV_RANDOM)
    mmap.advise(buf.subarray(P + 7), 3, 4, mmap.MADV_SEQUENTIAL)
    assert.deepEqual(buf, bytes)
  })

  it('MADV_DONTNEED drops the pages of a MAP_PRIVATE anonymous mapping: they read back as 0', () => {
    const { buf, bytes } = anonymous(4)
    mmap.advise(buf, mmap.MADV_DONTNEED)
    if (windows) return assert.deepEqual(buf, bytes, 'a hint on Windows: every byte stays (README)')
    assert.ok(buf.every((b) => b === 0), 'every byte is 0 after MADV_DONTNEED')
    assert.ok(!bytes.every((b) => b === 0))
  })

  it('MADV_DONTNEED over a range drops only the pages of that range', () => {
    const { buf, bytes } = anonymous(4)
    mmap.advise(buf, P, 2 * P, mmap.MADV_DONTNEED)
    if (windows) return assert.deepEqual(buf, bytes, 'a hint on Windows: every byte stays (README)')
    assert.deepEqual(buf.subarray(0, P), bytes.subarray(0, P))
    assert.ok(buf.subarray(P, 3 * P).every((b) => b === 0))
    assert.deepEqual(buf.subarray(3 * P), bytes.subarray(3 * P))

    const { buf: other, bytes: otherBytes } = anonymous(3)
    mmap.advise(other.subarray(2 * P), mmap.MADV_DONTNEED)
    assert.deepEqual(other.subarray(0, 2 * P), otherBytes.subarray(0, 2 * P))
    assert.ok(other.subarray(2 * P).every((b) => b === 0))
  })

  it(
    'a destructive advice with an unaligned range leaves the bytes outside that range alone',
    (t) => {
      const dir = tempDir(t)
      const bytes = Buffer.alloc(3 * P, 0xab)
      const { path, fd } = tempFile(t, dir, 'advise-remove.bin', bytes)
      const buf = mmap.map(3 * P, RW, mmap.MAP_SHARED, fd, 0)
      mmap.advise(buf, P + 100, 10, mmap.MADV_REMOVE)
      const disk = fs.readFileSync(path)
      let changedOutside = 0
      for (let i = 0; i < disk.length; i++) if ((i < P + 100 || i >= P + 110) && disk[i] !== bytes[i]) changedOutside++
      assert.equal(changedOutside, 0, 'bytes of the file outside offset..offset+length changed')
    },
  )

  // Destructive advice reaches no byte outside the range it was given: the range is rounded in
  // to the whole pages inside it, and nothing is discarded when none fits. The rest of a page
  // is the user's file (it was: advise(buf, MADV_REMOVE) on openSync(f, { length: 100 }) zeroed
  // file bytes 100-4095; with { offset: 100, length: 50 } bytes 0-4095). Oracle: the file.
  describe('destructive advice changes no byte outside its range (file oracle)', () => {
    /** A file of 4 pages of a pattern, and `check(zeroed, what)`, which compares it with fs.readFileSync. */
    function patternFile(t, name) {
      const dir = tempDir(t)
      const bytes = pattern(4 * P, 7)
      const { path, fd } = tempFile(t, dir, name, bytes)
      /** The file must be `bytes` with zeros in each `[from, to)` of `zeroed`. */
      const check = (zeroed, what) => {
        const expected = Buffer.from(bytes)
        for (const [from, to] of zeroed) expected.fill(0, from, to)
        const disk = fs.readFileSync(path)
        const changed = []
        for (let i = 0; i < disk.length; i++) if (disk[i] !== expected[i]) changed.push(i)
        assert.deepEqual(
          changed.length === 0 ? [] : [changed[0], changed.at(-1), changed.length],
          [],
          `${what}: file bytes that differ from the expected (first, last, count)`,
        )
      }
      return { path, fd, bytes, check }
    }

    it('advise(buf, advice) and advise(buf, offset, length, advice) on openSync() Buffers', { skip: NO_REMOVE }, (t) => {
      const { path, check } = patternFile(t, 'advise-remove-open.bin')
      const head = mmap.openSync(path, { mode: 'r+', length: 100 })
      mmap.advise(head, mmap.MADV_REMOVE)
      check([], 'advise(openSync({ length: 100 }), MADV_REMOVE)')
      mmap.advise(head, 0, 100, mmap.MADV_REMOVE)
      mmap.advise(head, 10, 50, mmap.MADV_DONTNEED)
      check([], 'advise(openSync({ length: 100 }), 0, 100, MADV_REMOVE)')
      const inner = mmap.openSync(path, { mode: 'r+', offset: 100, length: 50 })
      mmap.advise(inner, mmap.MADV_REMOVE)
      mmap.advise(inner, 0, 50, mmap.MADV_REMOVE)
      check([], 'advise(openSync({ offset: 100, length: 50 }), MADV_REMOVE)')
      const unaligned = mmap.openSync(path, { mode: 'r+', offset: 100, length: 3 * P })
      mmap.advise(unaligned.subarray(0, 2 * P), mmap.MADV_REMOVE)
      check([[P, 2 * P]], 'advise(subarray over file bytes 100..2P+100, MADV_REMOVE): only page 1')
      mmap.advise(unaligned, 10, 3 * P - 10, mmap.MADV_REMOVE)
      check([[P, 3 * P]], 'advise(file bytes 110..3P+100, MADV_REMOVE): only pages 1 and 2')
      for (const buf of [head, inner, unaligned]) mmap.unmap(buf)
    })

    it("the advise option of openSync(), open() and Mapping.open()", { skip: NO_REMOVE }, async (t) => {
      const { path, check } = patternFile(t, 'advise-remove-option.bin')
      const ranges = [{ length: 100 }, { offset: 100, length: 50 }, { offset: P - 1, length: P }, { offset: 3 * P + 1 }]
      for (const range of ranges) {
        const options = { mode: 'r+', ...range, advise: mmap.MADV_REMOVE }
        mmap.unmap(mmap.openSync(path, options))
        check([], `openSync(${JSON.stringify(range)})`)
        mmap.unmap(await mmap.open(path, options))
        check([], `open(${JSON.stringify(range)})`)
        mmap.Mapping.open(path, options).unmap()
        check([], `Mapping.open(${JSON.stringify(range)})`)
      }
      mmap.unmap(mmap.openSync(path, { mode: 'r+', offset: 100, length: 2 * P, advise: mmap.MADV_REMOVE }))
      check([[P, 2 * P]], 'openSync({ offset: 100, length: 2P }): only page 1')
    })

    it("map()'s sixth argument and Mapping#advise", { skip: NO_REMOVE }, (t) => {
      const { path, fd, check } = patternFile(t, 'advise-remove-map.bin')
      mmap.unmap(mmap.map(100, RW, mmap.MAP_SHARED, fd, 0, mmap.MADV_REMOVE))
      mmap.unmap(mmap.map(P + 100, RW, mmap.MAP_SHARED, fd, 2 * P, mmap.MADV_REMOVE))
      check([[2 * P, 3 * P]], 'map(P + 100, ..., offset 2P, MADV_REMOVE): page 2 only')
      const m = mmap.Mapping.open(path, { mode: 'r+', offset: 100, length: 50 })
      m.advise(mmap.MADV_REMOVE)
      m.advise(0, 50, mmap.MADV_REMOVE)
      m.advise(10, 20, mmap.MADV_DONTNEED)
      check([[2 * P, 3 * P]], 'Mapping#advise over file bytes 100..150')
      m.unmap()
      const whole = new mmap.Mapping(P + 1, RW, mmap.MAP_SHARED, fd, 0)
      whole.advise(1, P, mmap.MADV_REMOVE)
      whole.advise(mmap.MADV_REMOVE)
      check([[0, P], [2 * P, 3 * P]], 'new Mapping(P + 1).advise(MADV_REMOVE): page 0 only')
      whole.unmap()
    })

    it('MADV_DONTNEED keeps the private copies of the bytes outside the range (MAP_PRIVATE file)', {
      skip: notOnWindows("MADV_DONTNEED is a hint on Windows (README): it cannot drop a private view's copies"),
    }, (t) => {
      const { fd, bytes } = patternFile(t, 'advise-dontneed-private.bin')
      const buf = mmap.map(2 * P, RW, mmap.MAP_PRIVATE, fd, 0)
      const written = pattern(2 * P, 99)
      written.copy(buf)
      mmap.advise(buf, 10, P + 20, mmap.MADV_DONTNEED)
      assert.deepEqual(buf, written, 'no whole page inside 10..P+30: nothing discarded')
      mmap.advise(buf, 10, 2 * P - 10, mmap.MADV_DONTNEED)
      const expected = Buffer.concat([written.subarray(0, P), bytes.subarray(P, 2 * P)])
      assert.deepEqual(buf, expected, 'page 1 reads the file again; page 0 keeps what was written')
      mmap.unmap(buf)
    })
  })

  it('refuses advice values outside the exported MADV_* set before the call (MADV_HWPOISON)', () => {
    const { buf, bytes } = anonymous(1)
    const message = `The argument 'advice' must be one of the MADV_* constants. Received ${MADV_HWPOISON}`
    assertThrowsExactly(() => mmap.advise(buf, MADV_HWPOISON), RangeError, { code: 'ERR_INVALID_ARG_VALUE', message })
    assertThrowsExactly(() => mmap.advise(buf, 0, P, MADV_HWPOISON), RangeError, { code: 'ERR_INVALID_ARG_VALUE', message })
    assertThrowsExactly(() => mmap.advise(buf, -1), RangeError, {
      code: 'ERR_INVALID_ARG_VALUE',
      message: "The argument 'advice' must be one of the MADV_* constants. Received -1",
    })
    assert.deepEqual(buf, bytes, 'the page is still there')
  })

  it('refuses advice of the wrong type, or none', () => {
    const { buf } = anonymous(1)
    assertThrowsExactly(() => mmap.advise(buf, 'random'), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: `The "advice" argument must be of type number. Received type string ('random')`,
    })
    assertThrowsExactly(() => mmap.advise(buf, 1.5), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: 'The value of "advice" is out of range. It must be an integer. Received 1.5',
    })
    assertThrowsExactly(() => mmap.advise(buf), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "advice" argument must be of type number. Received undefined',
    })
    assertThrowsExactly(() => mmap.advise(buf, 0, 10), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "advice" argument must be of type number. Received undefined',
    })
  })

  // Exactly advise(advice) or advise(offset, length, advice): a two-argument call was read as
  // advise(advice) with the offset as the advice (Mapping#advise(0, MADV_DONTNEED) ran
  // madvise(MADV_NORMAL) and succeeded), and advise(offset, length, undefined) named the
  // offset as the advice received. One rule, one implementation, for both.
  it('takes exactly (advice) or (offset, length, advice), the module function and Mapping#advise alike', () => {
    const { buf, bytes } = anonymous(2)
    const m = new mmap.Mapping(2 * P, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    m.write(bytes)
    const missing = {
      code: 'ERR_INVALID_ARG_TYPE',
      message: 'The "advice" argument must be of type number. Received undefined',
    }
    const forms = [
      [0, mmap.MADV_DONTNEED],
      [P, P],
      [P, P, undefined],
      [undefined, mmap.MADV_DONTNEED],
      [undefined, undefined, undefined],
      [],
    ]
    for (const form of forms) {
      assertThrowsExactly(() => mmap.advise(buf, ...form), TypeError, missing)
      assertThrowsExactly(() => m.advise(...form), TypeError, missing)
    }
    // No discarding advice ran under any of them.
    assert.deepEqual(buf, bytes)
    assert.deepEqual(m.read(), bytes)
    // The two forms still work, the same way on both; undefined offset/length are defaults.
    for (const advise of [(...a) => mmap.advise(buf, ...a), (...a) => m.advise(...a)]) {
      advise(mmap.MADV_NORMAL)
      advise(mmap.MADV_NORMAL, undefined, undefined)
      advise(undefined, undefined, mmap.MADV_NORMAL)
      advise(P, undefined, mmap.MADV_DONTNEED)
      advise(undefined, P, mmap.MADV_RANDOM)
    }
    assert.deepEqual(buf.subarray(0, P), bytes.subarray(0, P))
    // MADV_DONTNEED is a hint on Windows (README): page 1 stays there.
    const page1 = windows ? bytes.subarray(P) : Buffer.alloc(P)
    assert.deepEqual(buf.subarray(P), page1, 'advise(P, undefined, MADV_DONTNEED) dropped page 1')
    assert.deepEqual(m.read(P), page1)
    // The long form checks its range like the short form's view.
    assertThrowsExactly(() => m.advise(3 * P, 0, mmap.MADV_NORMAL), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "offset" is out of range. It must be >= 0 && <= ${2 * P}. Received ${3 * P}`,
    })
    m.unmap()
  })

  it('refuses ranges past the view: ERR_OUT_OF_RANGE', () => {
    const { buf } = anonymous(2)
    const L = 2 * P
    const cases = [
      [[L + 1, 0], `The value of "offset" is out of range. It must be >= 0 && <= ${L}. Received ${L + 1}`],
      [[-1, 1], `The value of "offset" is out of range. It must be >= 0 && <= ${L}. Received -1`],
      [[0, L + 1], `The value of "length" is out of range. It must be >= 0 && <= ${L}. Received ${L + 1}`],
      [[1, L], `The value of "length" is out of range. It must be >= 0 && <= ${L - 1}. Received ${L}`],
      [[P, P + 1], `The value of "length" is out of range. It must be >= 0 && <= ${P}. Received ${P + 1}`],
      [[0.5, 1], 'The value of "offset" is out of range. It must be an integer. Received 0.5'],
    ]
    for (const [[offset, length], message] of cases) {
      assertThrowsExactly(() => mmap.advise(buf, offset, length, mmap.MADV_NORMAL), RangeError, {
        code: 'ERR_OUT_OF_RANGE',
        message,
      })
    }
    // Relative to the view: a subarray of P bytes has room for P bytes only.
    assertThrowsExactly(() => mmap.advise(buf.subarray(P), 1, P, mmap.MADV_NORMAL), RangeError, {
      code: 'ERR_OUT_OF_RANGE',
      message: `The value of "length" is out of range. It must be >= 0 && <= ${P - 1}. Received ${P}`,
    })
    assertThrowsExactly(() => mmap.advise(buf, '1', 1, mmap.MADV_NORMAL), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message: `The "offset" argument must be of type number. Received type string ('1')`,
    })
  })

  it('reports a failed madvise as a system error (MADV_REMOVE on private memory: EINVAL)', {
    skip: notOnWindows('MADV_REMOVE is 0 on Windows (README): no advice fails there'),
  }, () => {
    const { buf } = anonymous(1)
    assertThrowsExactly(() => mmap.advise(buf, mmap.MADV_REMOVE), Error, {
      code: 'EINVAL',
      errno: -22,
      syscall: 'madvise',
      message: 'EINVAL: invalid argument, madvise',
    })
  })

  it('refuses what is not a mapping', () => {
    assertThrowsExactly(() => mmap.advise(Buffer.alloc(10), mmap.MADV_NORMAL), TypeError, {
      code: 'ERR_MMAP_NOT_A_MAPPING',
      message: 'The "buffer" argument must be a view of memory mapped by node-mmap. Received an instance of Buffer',
    })
    assertThrowsExactly(() => mmap.advise(7, mmap.MADV_NORMAL), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message:
        'The "buffer" argument must be an instance of Buffer, TypedArray, DataView or ArrayBuffer. Received type number (7)',
    })
  })
})

// Found by attack pass 17: after SIGBUS recovery replaced pages of a shared file mapping with
// anonymous memory, advise(MADV_REMOVE) punched the file's pages before the first replaced one
// and then failed (EINVAL: madvise refuses to punch anonymous memory): a call that threw had
// changed the file. It is now refused before anything changes.
describe('MADV_REMOVE after SIGBUS recovery', () => {
  it('is refused with EINVAL and leaves every byte of the file', { skip: NO_REMOVE || notOnWindows('a mapped file cannot be truncated on Windows') }, () => {
    const dir = fs.mkdtempSync(require('node:path').join(require('node:os').tmpdir(), 'node-mmap-remove-'))
    const file = require('node:path').join(dir, 'data.bin')
    try {
      fs.writeFileSync(file, Buffer.alloc(4 * P, 0x44))
      const buf = mmap.openSync(file, { mode: 'r+' })
      fs.truncateSync(file, 2 * P) // as another process might
      assert.equal(buf[2 * P], 0) // lost: the tail is replaced with zeros
      assert.equal(mmap.faults(buf), 2)
      assert.throws(() => mmap.advise(buf, mmap.MADV_REMOVE), {
        name: 'Error',
        message: 'EINVAL: invalid argument, madvise',
        code: 'EINVAL',
        errno: -require('node:os').constants.errno.EINVAL,
        syscall: 'madvise',
      })
      assert.deepEqual(fs.readFileSync(file), Buffer.alloc(2 * P, 0x44), 'the file keeps its bytes')
      mmap.unmap(buf)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

// Found by attack pass 18: madvise(2) discards kernel mapping by kernel mapping and stops with
// EINVAL at a locked one, so a discarding advice over a range with a lock()ed page in it zeroed
// the pages before that page (or punched them out of the file), then threw. It is now refused
// before anything changes, with the kernel's own error (on Windows too, for the same code).
describe('a discarding advice over lock()ed pages', () => {
  const errnoOf = (name) => [...require('node:util').getSystemErrorMap()].find(([, [code]]) => code === name)[0]
  const einval = () => ({
    name: 'Error',
    message: 'EINVAL: invalid argument, madvise',
    code: 'EINVAL',
    errno: errnoOf('EINVAL'),
    syscall: 'madvise',
  })
  const bytesOf = (buf) => [0, 1, 2, 3].map((page) => buf[page * P + 7])

  it('MADV_DONTNEED is refused whole, then works once the pages are unlocked', () => {
    const buf = mmap.map(4 * P, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    buf.fill(0x55)
    mmap.lock(buf, 2 * P, P)
    assert.throws(() => mmap.advise(buf, mmap.MADV_DONTNEED), einval())
    assert.deepEqual(bytesOf(buf), [0x55, 0x55, 0x55, 0x55], 'no page was discarded')
    // The pages around the locked one are not locked: advice over them alone is carried out.
    mmap.advise(buf, 0, 2 * P, mmap.MADV_DONTNEED)
    mmap.advise(buf, 3 * P, P, mmap.MADV_DONTNEED)
    if (!windows) assert.deepEqual(bytesOf(buf), [0, 0, 0x55, 0], 'only the unlocked pages went')
    // The same through a Mapping, and after unlock() the whole range takes the advice.
    buf.fill(0x66)
    assert.throws(() => mmap.advise(buf, P, 2 * P, mmap.MADV_DONTNEED), einval())
    assert.deepEqual(bytesOf(buf), [0x66, 0x66, 0x66, 0x66])
    mmap.unlock(buf, 2 * P, P)
    mmap.advise(buf, mmap.MADV_DONTNEED)
    if (!windows) assert.deepEqual(bytesOf(buf), [0, 0, 0, 0])
    mmap.unmap(buf)
  })

  it('a partial unlock() leaves the rest refused', () => {
    const buf = mmap.map(4 * P, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    buf.fill(0x77)
    mmap.lock(buf)
    mmap.unlock(buf, 0, 2 * P)
    assert.throws(() => mmap.advise(buf, P, 2 * P, mmap.MADV_DONTNEED), einval())
    assert.deepEqual(bytesOf(buf), [0x77, 0x77, 0x77, 0x77])
    mmap.advise(buf, 0, 2 * P, mmap.MADV_DONTNEED)
    if (!windows) assert.deepEqual(bytesOf(buf), [0, 0, 0x77, 0x77])
    mmap.unmap(buf)
  })

  it('MADV_FREE keeps the pages before the locked one', { skip: notOnWindows('MADV_FREE is 0 on Windows (README)') }, () => {
    const buf = mmap.map(4 * P, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    buf.fill(0x55)
    mmap.lock(buf, 2 * P, P)
    assert.throws(() => mmap.advise(buf, mmap.MADV_FREE), einval())
    // Pages marked free go at the next reclaim, which MADV_PAGEOUT forces; unmarked ones keep
    // their bytes (swapped out and back, or never taken where there is no swap).
    mmap.advise(buf, 0, 2 * P, mmap.MADV_PAGEOUT)
    assert.deepEqual(bytesOf(buf), [0x55, 0x55, 0x55, 0x55])
    mmap.unmap(buf)
  })

  it('MADV_REMOVE punches nothing out of the file', { skip: NO_REMOVE }, () => {
    const dir = fs.mkdtempSync(require('node:path').join(require('node:os').tmpdir(), 'node-mmap-locked-'))
    const file = require('node:path').join(dir, 'data.bin')
    try {
      fs.writeFileSync(file, Buffer.alloc(4 * P, 0x44))
      const buf = mmap.openSync(file, { mode: 'r+' })
      mmap.lock(buf, 2 * P, P)
      assert.throws(() => mmap.advise(buf, mmap.MADV_REMOVE), einval())
      const m = mmap.Mapping.open(file, { mode: 'r+' })
      m.lock(3 * P, P)
      assert.throws(() => m.advise(0, 4 * P, mmap.MADV_REMOVE), einval())
      m.unmap()
      assert.deepEqual(fs.readFileSync(file), Buffer.alloc(4 * P, 0x44), 'the file keeps its bytes')
      mmap.unmap(buf)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a mapping made with MAP_LOCKED is refused whole', { skip: notOnWindows('MAP_LOCKED is 0 on Windows') }, () => {
    const buf = mmap.map(4 * P, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_LOCKED, -1)
    buf.fill(0x55)
    assert.throws(() => mmap.advise(buf, 2 * P, 2 * P, mmap.MADV_DONTNEED), einval())
    assert.deepEqual(bytesOf(buf), [0x55, 0x55, 0x55, 0x55])
    mmap.unlock(buf)
    mmap.advise(buf, mmap.MADV_DONTNEED)
    assert.deepEqual(bytesOf(buf), [0, 0, 0, 0])
    mmap.unmap(buf)
  })
})

// Found by attack pass 18b: the check of the locked ranges and madvise were not one step, so a
// lock() on another thread (the mapping's memory moved to a worker) in between beat the check,
// and the pages before the locked one went anyway. The record is now held until madvise returns.
describe('a discarding advice racing lock() on another thread', () => {
  for (const kind of ['file', 'anon']) {
    it(`${kind}: never discards and then throws`, { skip: notOnWindows('MADV_REMOVE is 0 and MADV_DONTNEED drops nothing on Windows (README)') }, (t) => {
      const dir = tempDir(t)
      const result = runScript(
        `const fs = require('node:fs')
         const { Worker } = require('node:worker_threads')
         const mmap = require(MMAP)
         const P = mmap.PAGESIZE
         const [kind, file] = process.argv.slice(1)
         let m, advice
         if (kind === 'file') {
           fs.writeFileSync(file, Buffer.alloc(8 * P, 0x5a))
           m = mmap.Mapping.open(file, { mode: 'r+' })
           advice = mmap.MADV_REMOVE
         } else {
           m = new mmap.Mapping(8 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
           advice = mmap.MADV_DONTNEED
         }
         // The memory moves to the worker without a copy: transfer() (Node 21+), or a byte
         // stream's enqueue() (Node 18, 20).
         const moved = typeof ArrayBuffer.prototype.transfer === 'function'
           ? Promise.resolve(m.view().buffer.transfer())
           : new ReadableStream({ type: 'bytes', start(c) { c.enqueue(m.view()); c.close() } })
               .getReader().read().then(({ value }) => value.buffer)
         moved.then((memory) => {
           const stop = new Int32Array(new SharedArrayBuffer(4))
           const worker = new Worker(\`
             const { parentPort, workerData } = require('node:worker_threads')
             const mmap = require(\${JSON.stringify(MMAP)})
             parentPort.once('message', (memory) => {
               const view = new Uint8Array(memory)
               const P = mmap.PAGESIZE
               parentPort.postMessage('ready')
               while (!Atomics.load(workerData.stop, 0)) { mmap.lock(view, 2 * P, P); mmap.unlock(view, 2 * P, P) }
             })\`, { eval: true, workerData: { stop } })
           worker.postMessage(memory, [memory])
           worker.once('message', () => {
             const out = { ok: 0, refused: 0, lost: 0 }
             const t0 = Date.now()
             while (Date.now() - t0 < 400) {
               m.write(Buffer.alloc(3 * P, 0x5a), 0)
               try { m.advise(0, 3 * P, advice); out.ok++; continue } catch (e) { if (e.code !== 'EINVAL') throw e }
               out.refused++
               const back = m.read(0, 2 * P)
               const disk = kind === 'file' ? fs.readFileSync(file).subarray(0, 2 * P) : back
               if (back.some((b) => b !== 0x5a) || disk.some((b) => b !== 0x5a)) out.lost++
             }
             Atomics.store(stop, 0, 1)
             worker.once('exit', () => process.stdout.write(JSON.stringify(out)))
           })
         })`,
        { args: [kind, require('node:path').join(dir, 'race.bin')] },
      )
      assertCleanExit(result)
      const out = JSON.parse(result.stdout)
      assert.ok(out.refused > 0, `the race never met a locked page: ${result.stdout}`)
      assert.equal(out.lost, 0, `advise() threw EINVAL after discarding pages: ${result.stdout}`)
    })
  }
})

// Found by attack pass 18b: pass 17's refusal of MADV_REMOVE after SIGBUS recovery was checked
// before the punching, so a recovery on another thread in between (a worker reading the
// truncated file) let it punch the file's pages and then fail with EINVAL. The check and the
// punching now run with no recovery in flight.
describe('MADV_REMOVE racing SIGBUS recovery on another thread', () => {
  it('never punches and then throws', { skip: NO_REMOVE || notOnWindows('a mapped file cannot be truncated on Windows') }, (t) => {
    const dir = tempDir(t)
    const result = runScript(
      `const fs = require('node:fs')
       const { Worker } = require('node:worker_threads')
       const mmap = require(MMAP)
       const P = mmap.PAGESIZE
       const file = process.argv[1]
       const control = new Int32Array(new SharedArrayBuffer(8))
       // The worker reads page 7 (lost to the truncation: recovered) until told the round ended.
       const worker = new Worker(\`
         const { parentPort, workerData } = require('node:worker_threads')
         const P = \${mmap.PAGESIZE}
         parentPort.on('message', (memory) => {
           const view = new Uint8Array(memory)
           const round = Atomics.load(workerData.control, 1)
           parentPort.postMessage('go')
           let sum = 0
           while (Atomics.load(workerData.control, 1) === round) sum += view[7 * P]
         })\`, { eval: true, workerData: { control } })
       // transfer() on Node 21+; a byte stream's enqueue() moves the memory on Node 18 and 20.
       const move = (m) => typeof ArrayBuffer.prototype.transfer === 'function'
         ? Promise.resolve(m.view().buffer.transfer())
         : new ReadableStream({ type: 'bytes', start(c) { c.enqueue(m.view()); c.close() } })
             .getReader().read().then(({ value }) => value.buffer)
       const out = { refused: 0, ok: 0, lost: 0, other: [] }
       ;(async () => {
         for (let round = 1; round <= 3000; round++) {
           fs.writeFileSync(file, Buffer.alloc(8 * P, 0x5a))
           const m = mmap.Mapping.open(file, { mode: 'r+' })
           const memory = await move(m)
           const going = new Promise((resolve) => worker.once('message', resolve))
           worker.postMessage(memory, [memory])
           await going
           fs.truncateSync(file, 6 * P) // as another process might
           let code = 'ok'
           try { m.advise(0, 8 * P, mmap.MADV_REMOVE) } catch (e) { code = e.code }
           Atomics.store(control, 1, round)
           const disk = fs.readFileSync(file)
           if (code === 'ok') out.ok++
           else if (disk.some((b) => b !== 0x5a)) out.lost++
           else if (code === 'EINVAL') out.refused++
           else out.other.push(code)
           m.unmap()
         }
         Atomics.store(control, 1, -1)
         await worker.terminate()
         process.stdout.write(JSON.stringify(out))
       })()`,
      { args: [require('node:path').join(dir, 'race.bin')] },
    )
    assertCleanExit(result)
    const out = JSON.parse(result.stdout)
    assert.equal(out.lost, 0, `advise(MADV_REMOVE) punched the file and then threw: ${result.stdout}`)
    assert.deepEqual(out.other, [])
    assert.ok(out.refused > 0, `no round met a recovery: ${result.stdout}`)
  })
})
