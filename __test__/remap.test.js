'use strict'
// remap(buf, newSize): grows or shrinks a mapping, keeps the bytes up to the smaller size,
// returns a new Buffer; the old one keeps its length and reads zeros (as after unmap()).
// Oracles: the bytes written before, fs.readFileSync of the file, /proc/self/maps.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const { constants: bufferConstants } = require('node:buffer')

const mmap = require('..')
const {
  mapTempFile,
  pattern,
  mappingsOf,
  assertThrowsExactly,
  nodeReceived,
  runScript,
  assertCleanExit,
  assertExited,
} = require('./helpers.js')

const P = mmap.PAGESIZE
const RW = mmap.PROT_READ | mmap.PROT_WRITE
const MAX = Math.min(bufferConstants.MAX_LENGTH, Number.MAX_SAFE_INTEGER)

function sharedFile(t, name, size) {
  return mapTempFile(t, mmap, name, size, { seed: 3 })
}

/** Bytes of the file mapped, by its maps entries. */
function mappedBytes(file) {
  return mappingsOf(file).reduce((sum, e) => sum + Number(e.end - e.start), 0)
}

/** The old Buffer after remap(): its length kept, and zeros where the bytes were. */
function assertZeroed(view, length, what = 'the old Buffer') {
  assert.equal(view.length, length, `${what} keeps its length`)
  assert.ok(Buffer.from(view.buffer, view.byteOffset, view.byteLength).every((b) => b === 0), `${what} reads zeros`)
}

describe('remap', () => {
  it('grows a MAP_SHARED file mapping (after ftruncate) and keeps the bytes', (t) => {
    const { path, fd, bytes, buf } = sharedFile(t, 'remap-grow.bin', 2 * P)
    const sub = buf.subarray(10, 20)
    fs.ftruncateSync(fd, 5 * P + 123)
    const grown = mmap.remap(buf, 5 * P + 123)

    assert.equal(grown.length, 5 * P + 123)
    assert.deepEqual(grown.subarray(0, 2 * P), bytes, 'bytes kept')
    assert.ok(grown.subarray(2 * P).every((b) => b === 0), 'the grown part shows the zeros ftruncate added')
    assertZeroed(buf, 2 * P, 'the old Buffer')
    assertZeroed(sub, 10, 'a view of the old Buffer')

    grown[0] = bytes[0] ^ 0xff
    grown[5 * P + 122] = 0xee
    grown.write('grown', 3 * P)
    const disk = fs.readFileSync(path)
    assert.equal(disk[0], bytes[0] ^ 0xff, 'a write to the kept part reaches the file')
    assert.equal(disk[5 * P + 122], 0xee, 'a write to the grown part reaches the file')
    assert.equal(disk.toString('latin1', 3 * P, 3 * P + 5), 'grown')
    assert.equal(mappedBytes(path), 6 * P, 'the file is mapped once, at the new size in pages')
  })

  it('shrinks a MAP_SHARED file mapping and keeps the bytes up to the new size', (t) => {
    const { path, bytes, buf } = sharedFile(t, 'remap-shrink.bin', 4 * P)
    const small = mmap.remap(buf, P + 10)
    assert.equal(small.length, P + 10)
    assert.deepEqual(small, bytes.subarray(0, P + 10))
    assertZeroed(buf, 4 * P)
    small[P + 9] = bytes[P + 9] ^ 0xff
    const disk = fs.readFileSync(path)
    assert.equal(disk.length, 4 * P, 'the file keeps its size')
    assert.equal(disk[P + 9], bytes[P + 9] ^ 0xff, 'writes through the new Buffer reach the file')
    assert.deepEqual(disk.subarray(P + 10), bytes.subarray(P + 10), 'the rest of the file is untouched')
    assert.equal(mappedBytes(path), 2 * P)
  })

  it('grows and shrinks a MAP_PRIVATE anonymous mapping and keeps the bytes', () => {
    const buf = mmap.map(3 * P, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    const bytes = pattern(3 * P, 9)
    bytes.copy(buf)
    const grown = mmap.remap(buf, 10 * P + 1)
    assertZeroed(buf, 3 * P)
    assert.equal(grown.length, 10 * P + 1)
    assert.deepEqual(grown.subarray(0, 3 * P), bytes)
    assert.ok(grown.subarray(3 * P).every((b) => b === 0), 'new anonymous memory is zero')
    grown[10 * P] = 42
    assert.equal(grown[10 * P], 42)

    const small = mmap.remap(grown, 100)
    assertZeroed(grown, 10 * P + 1)
    assert.equal(small.length, 100)
    assert.deepEqual(small, bytes.subarray(0, 100))
    mmap.unmap(small)
  })

  it('remaps to the same size: a new Buffer over the same bytes', (t) => {
    const { path, bytes, buf } = sharedFile(t, 'remap-same.bin', 2 * P)
    const again = mmap.remap(buf, 2 * P)
    assertZeroed(buf, 2 * P)
    assert.deepEqual(again, bytes)
    again[1] = 7
    assert.equal(fs.readFileSync(path)[1], 7)
  })

  // The new Buffer starts at the byte the given view started at (it did start at the page below
  // an openSync offset, or at the mapping's start for a subarray: wrong data, silently), with
  // the length asked for. Oracle: the file.
  it('keeps the start of the view given: openSync at an offset, subarrays, DataViews (file oracle)', (t) => {
    const { path, fd, bytes, buf } = sharedFile(t, 'remap-via-view.bin', 3 * P)
    const sub = mmap.remap(buf.subarray(100, 200), P)
    assertZeroed(buf, 3 * P)
    assert.equal(sub.length, P)
    assert.deepEqual(sub, bytes.subarray(100, 100 + P), 'a subarray: starts at its first byte')
    const again = mmap.remap(new DataView(sub.buffer, sub.byteOffset + 5, 10), 50)
    assertZeroed(sub, P, 'the remapped subarray')
    assert.deepEqual(again, bytes.subarray(105, 155), 'a DataView: starts at its first byte')
    mmap.unmap(again)

    const opened = mmap.openSync(path, { mode: 'r+', offset: 100 })
    assert.deepEqual(opened, bytes.subarray(100))
    const shrunk = mmap.remap(opened, 50)
    assert.deepEqual(shrunk, bytes.subarray(100, 150), 'openSync({ offset: 100 }): starts at file byte 100')
    fs.ftruncateSync(fd, 4 * P)
    const grown = mmap.remap(shrunk, 4 * P - 100)
    const disk = fs.readFileSync(path)
    assert.equal(grown.length, 4 * P - 100)
    assert.deepEqual(grown, disk.subarray(100), 'grown: file bytes 100 to the new end')
    grown.write('at 200', 100, 'latin1')
    assert.equal(fs.readFileSync(path).toString('latin1', 200, 206), 'at 200', 'writes land at the same file bytes')
    mmap.unmap(grown)
  })

  it("remap() of a Mapping#view() Buffer starts at the view's first byte and retires the Mapping", (t) => {
    const { path, bytes } = sharedFile(t, 'remap-mapping-view.bin', 3 * P)
    const m = mmap.Mapping.open(path, { mode: 'r+', offset: 10 })
    const view = m.view(100, 50)
    const moved = mmap.remap(view, 2 * P)
    assert.deepEqual(moved, bytes.subarray(110, 110 + 2 * P))
    assert.equal(m.unmapped, true, 'the Mapping no longer owns the memory')
    assert.equal(m.length, 0)
    mmap.unmap(moved)
  })

  // A MAP_SHARED mapping of /dev/zero is shared anonymous memory in the kernel's eyes: grown, its
  // new pages were private to this process and lost at once. Refused as MAP_SHARED |
  // MAP_ANONYMOUS is, with the same error; shrinking still works.
  it('refuses to grow shared memory with no regular file behind it: MAP_ANONYMOUS and /dev/zero', (t) => {
    const zero = fs.openSync('/dev/zero', 'r+')
    t.after(() => fs.closeSync(zero))
    for (const [name, flags, fd] of [
      ['MAP_SHARED | MAP_ANONYMOUS', mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1],
      ['MAP_SHARED of /dev/zero', mmap.MAP_SHARED, zero],
    ]) {
      const buf = mmap.map(2 * P, RW, flags, fd)
      buf.fill(9)
      for (const [view, size, limit] of [
        [buf, 2 * P + 1, 2 * P],
        [buf.subarray(P), P + 1, P],
      ]) {
        assertThrowsExactly(() => mmap.remap(view, size), RangeError, {
          code: 'ERR_OUT_OF_RANGE',
          message:
            `The value of "newSize" is out of range. It must be <= ${limit} (shared memory with no regular file ` +
            `behind it cannot grow: its size is fixed). Received ${size}`,
        })
      }
      assert.equal(buf.length, 2 * P, `${name}: still attached`)
      const small = mmap.remap(buf, P)
      assert.equal(small.length, P)
      assert.ok(small.every((b) => b === 9), `${name}: shrinking keeps the bytes`)
      mmap.unmap(small)
    }
  })

  it('refuses a detached Buffer: ERR_MMAP_UNMAPPED', (t) => {
    const { buf } = sharedFile(t, 'remap-detached.bin', P)
    const sub = buf.subarray(1, 2)
    const moved = mmap.remap(buf, P)
    for (const stale of [buf, sub, buf.buffer]) {
      assertThrowsExactly(() => mmap.remap(stale, P), Error, {
        code: 'ERR_MMAP_UNMAPPED',
        message: 'The view is empty or was unmapped: there is no mapping to resize',
      })
    }
    mmap.unmap(moved)
    assertThrowsExactly(() => mmap.remap(moved, P), Error, {
      code: 'ERR_MMAP_UNMAPPED',
      message: 'The view is empty or was unmapped: there is no mapping to resize',
    })
  })

  it('refuses a bad newSize, and leaves the mapping alone', (t) => {
    const { path, bytes, buf } = sharedFile(t, 'remap-bad-size.bin', P)
    const range = `>= 1 && <= ${MAX}`
    const cases = [
      [0, RangeError, 'ERR_OUT_OF_RANGE', `The value of "newSize" is out of range. It must be ${range}. Received 0`],
      [-1, RangeError, 'ERR_OUT_OF_RANGE', `The value of "newSize" is out of range. It must be ${range}. Received -1`],
      [1.5, RangeError, 'ERR_OUT_OF_RANGE', 'The value of "newSize" is out of range. It must be an integer. Received 1.5'],
      [NaN, RangeError, 'ERR_OUT_OF_RANGE', 'The value of "newSize" is out of range. It must be an integer. Received NaN'],
      [
        MAX + 1,
        RangeError,
        'ERR_OUT_OF_RANGE',
        `The value of "newSize" is out of range. It must be ${range}. Received ${nodeReceived(MAX + 1)}`,
      ],
      ['x', TypeError, 'ERR_INVALID_ARG_TYPE', `The "newSize" argument must be of type number. Received type string ('x')`],
      [10n, TypeError, 'ERR_INVALID_ARG_TYPE', 'The "newSize" argument must be of type number. Received type bigint (10n)'],
      [undefined, TypeError, 'ERR_INVALID_ARG_TYPE', 'The "newSize" argument must be of type number. Received undefined'],
    ]
    for (const [value, Class, code, message] of cases) {
      assertThrowsExactly(() => mmap.remap(buf, value), Class, { code, message })
    }
    assert.equal(buf.length, P, 'still attached')
    assert.deepEqual(buf, bytes)
    assert.equal(mappingsOf(path).length, 1)
  })

  it('refuses what is not a mapping', () => {
    assertThrowsExactly(() => mmap.remap(Buffer.alloc(10), 20), TypeError, {
      code: 'ERR_MMAP_NOT_A_MAPPING',
      message: 'The "buffer" argument must be a view of memory mapped by node-mmap. Received an instance of Buffer',
    })
    assertThrowsExactly(() => mmap.remap('abc', 20), TypeError, {
      code: 'ERR_INVALID_ARG_TYPE',
      message:
        "The \"buffer\" argument must be an instance of Buffer, TypedArray, DataView or ArrayBuffer. Received type string ('abc')",
    })
  })

  // protect() of the whole mapping narrows what native copies may do with it; remap() keeps the
  // pages' rights, so the new mapping must keep that too. (It did not: a copy into a remapped
  // read-only Buffer ended the process with SIGSEGV.) In a child, so a regression fails here.
  it('keeps the rights protect() set: a copy into the remapped read-only Buffer is refused, not a crash', (t) => {
    const { path } = sharedFile(t, 'remap-rights.bin', 2 * P)
    const result = runScript(
      `
      const mmap = require(MMAP)
      const P = mmap.PAGESIZE
      const source = mmap.Mapping.open(process.argv[1])
      for (const [name, flags, fd] of [
        ['shared anonymous', mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1],
        ['private anonymous', mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1],
      ]) {
        const buf = mmap.map(P, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd)
        buf[0] = 42
        mmap.protect(buf, 0, P, mmap.PROT_READ)
        const moved = mmap.remap(buf, P)
        let code = 'no error'
        try {
          source.readInto(moved, 0)
        } catch (err) {
          code = err.code
        }
        process.stdout.write(name + ': ' + code + ', ' + moved[0] + '\\n')
        mmap.unmap(moved)
      }
      source.unmap()
    `,
      { args: [path] },
    )
    assertCleanExit(result)
    assert.equal(result.stdout, 'shared anonymous: ERR_MMAP_ACCESS, 42\nprivate anonymous: ERR_MMAP_ACCESS, 42\n')
  })
})

// Found by attack pass 6: remap() moves the pages to a fresh range first, then grows that; when
// the grow failed, the fresh range was given back with the pages in it, and a private mapping's
// Buffer read zeros after a call that threw.
describe('a remap() that fails', () => {
  it('loses nothing: the Buffer of a private mapping keeps its bytes (grow refused under ulimit -v, child)', () => {
    const result = runScript(
      `const mmap = require(MMAP)
       const out = {}
       for (const [name, make] of [
         ['anonymous', () => mmap.map(1 << 20, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)],
         ['file, private, written', () => {
           const file = require('node:path').join(require('node:os').tmpdir(), 'node-mmap-remapfail-' + process.pid)
           require('node:fs').writeFileSync(file, Buffer.alloc(1 << 20, 1))
           const b = mmap.openSync(file, { shared: false, mode: 'r+' })
           require('node:fs').rmSync(file)
           return b
         }],
       ]) {
         const b = make()
         for (let i = 0; i < b.length; i++) b[i] = (i * 31 + 7) & 255
         let error
         try { mmap.remap(b, 3.5 * 2 ** 30) } catch (err) { error = err.code + ' ' + err.syscall }
         let same = true
         for (let i = 0; i < b.length; i++) if (b[i] !== ((i * 31 + 7) & 255)) { same = false; break }
         b[0] = 9 // still writable: the rights a move takes away for a while are back
         same = same && b[0] === 9
         out[name] = { error, same, length: b.length }
       }
       console.log(JSON.stringify(out))`,
      { shell: 'ulimit -v 3000000' },
    )
    assertExited(result)
    const out = JSON.parse(result.stdout)
    for (const name of ['anonymous', 'file, private, written']) {
      assert.deepEqual(out[name], { error: 'ENOMEM mremap', same: true, length: 1 << 20 }, name)
    }
  })
})

// Found by attack pass 11: remap() of a MAP_PRIVATE file mapping left the old range mapped to
// the FILE for the milliseconds between the move and the placeholder: zlib reading it on the
// thread pool compressed the file's original bytes, which the mapping never held (2 in 24 runs
// of this test on the build before). Now such a read waits for the move, then reads zeros.
describe('remap() racing a reader on another thread', () => {
  it('of a MAP_PRIVATE file mapping: the reader sees the mapping\'s bytes, then zeros, never the file\'s', { timeout: 240_000 }, () => {
    const result = runScript(`
      const mmap = require(MMAP)
      const fs = require('fs'), os = require('os'), path = require('path'), zlib = require('zlib')
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-remap-'))
      const file = path.join(dir, 'f')
      const SIZE = 32 << 20
      fs.writeFileSync(file, Buffer.alloc(SIZE, 0x46)) // 'F': the file's bytes
      ;(async () => {
        const counts = { P: 0, zero: 0, F: 0, other: 0 }
        for (let trial = 0; trial < 24; trial++) {
          const b = mmap.openSync(file, { shared: false })
          b.fill(0x50) // 'P': the mapping's own bytes; the file keeps 'F'
          const done = new Promise((resolve, reject) => zlib.deflateRaw(b, { level: 1 }, (e, out) => (e ? reject(e) : resolve(out))))
          await new Promise((resolve) => setTimeout(resolve, 2 + 3 * (trial % 8)))
          const grown = mmap.remap(b, trial % 2 ? SIZE + 4096 : SIZE / 2)
          for (const x of zlib.inflateRawSync(await done)) {
            if (x === 0x50) counts.P++
            else if (x === 0) counts.zero++
            else if (x === 0x46) counts.F++
            else counts.other++
          }
          // The moved mapping kept the bytes and its rights.
          if (grown[0] !== 0x50 || grown[grown.length / 2 - 1] !== 0x50) throw new Error('the moved mapping lost its bytes')
          grown[0] = 1
          mmap.unmap(grown)
        }
        fs.rmSync(dir, { recursive: true, force: true })
        console.log(JSON.stringify(counts))
      })()
    `, { timeout: 230_000 })
    assertCleanExit(result)
    const counts = JSON.parse(result.stdout)
    assert.equal(counts.F, 0, `the reader saw ${counts.F} bytes of the file the mapping never held`)
    assert.equal(counts.other, 0)
    assert.ok(counts.P > 0 && counts.zero > 0, JSON.stringify(counts))
  })

  it('of a MAP_PRIVATE file mapping: the moved mapping keeps its rights, those protect() set too', () => {
    const file = require('node:path').join(require('node:os').tmpdir(), `node-mmap-remap-ro-${process.pid}`)
    fs.writeFileSync(file, Buffer.alloc(4 * P, 0x46))
    try {
      const plain = mmap.openSync(file, { shared: false })
      plain.fill(0x50)
      const movedPlain = mmap.remap(plain, 8 * P)
      const readOnly = mmap.openSync(file, { shared: false })
      readOnly.fill(0x51)
      mmap.protect(readOnly, 0, readOnly.length, mmap.PROT_READ)
      const movedReadOnly = mmap.remap(readOnly, 2 * P)
      assert.equal(movedPlain[0], 0x50)
      assert.equal(movedPlain[4 * P - 1], 0x50)
      assert.equal(movedReadOnly[0], 0x51)
      movedPlain[0] = 1 // writable, as before
      // Two kernel mappings of the file now: rw-p (8 pages) and r--p (2 pages).
      const entries = mappingsOf(file).map((e) => `${e.perms} ${e.length / P}`).sort()
      assert.deepEqual(entries, ['r--p 2', 'rw-p 8'])
      mmap.unmap(movedPlain)
      mmap.unmap(movedReadOnly)
    } finally {
      fs.rmSync(file, { force: true })
    }
  })
})

// Found by attack pass 13: the rights a private file mapping's range loses while its pages
// move (pass 11) were taken from all of it at once, which merged a range protect() had split;
// it then got one part's rights back on every page, so the next read of a page nobody
// protected ended the process, even after a remap() that threw EFAULT.
describe('remap() of a MAP_PRIVATE file mapping split by protect(), advise() or lock()', () => {
  it('fails with EFAULT as for any split mapping, and leaves every page its own rights (child)', () => {
    const result = runScript(`
      const mmap = require(MMAP)
      const fs = require('fs'), os = require('os'), path = require('path')
      const P = mmap.PAGESIZE
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-split-')), 'f')
      fs.writeFileSync(file, Buffer.alloc(4 * P, 0x41))
      const out = {}
      for (const [name, split] of [
        ['PROT_NONE page', (b) => mmap.protect(b, 2 * P, P, mmap.PROT_NONE)],
        ['PROT_READ page', (b) => mmap.protect(b, 2 * P, P, mmap.PROT_READ)],
        ['advise', (b) => { mmap.protect(b, 2 * P, P, mmap.PROT_NONE); mmap.protect(b, 2 * P, P, mmap.PROT_READ | mmap.PROT_WRITE); mmap.advise(b, P, P, mmap.MADV_RANDOM) }],
      ]) {
        const b = mmap.openSync(file, { mode: 'r+', shared: false })
        split(b)
        let error = null
        try { mmap.remap(b, 8 * P) } catch (e) { error = e.code + ' ' + e.syscall }
        // Pages nobody protected: read and written (a wrong right ends the process here).
        const read = b[0] + b[3 * P]
        b[0] = 0x42
        b[3 * P] = 0x43
        out[name] = { error, read, written: b[0] === 0x42 && b[3 * P] === 0x43 }
        mmap.unmap(b)
      }
      fs.rmSync(path.dirname(file), { recursive: true, force: true })
      console.log(JSON.stringify(out))
    `)
    assertCleanExit(result)
    const out = JSON.parse(result.stdout)
    for (const name of ['PROT_NONE page', 'PROT_READ page', 'advise']) {
      assert.deepEqual(out[name], { error: 'EFAULT mremap', read: 0x82, written: true }, name)
    }
  })
})

// Found by attack pass 14: a thread that touched a private file mapping's range while remap()
// moved its pages faulted there (the range has no rights during the move) and, scheduled only
// after the move had ended, found the mapping gone from the table the signal handler looks in:
// the process died of SIGSEGV with no diagnostic, although the range was by then a placeholder
// it could write. The handler now lets an access run again when the kernel says the page
// allows it. crypto.randomFill() writes the mapping on the libuv pool while the main thread
// remaps it (about 6 runs in 10 died before).
describe('remap() of a MAP_PRIVATE file mapping while the thread pool writes it', () => {
  it('never ends the process: the writes land in the mapping or the placeholder (child, 3 runs)', () => {
    for (let run = 0; run < 3; run++) {
      const result = runScript(`
        const mmap = require(MMAP)
        const fs = require('fs'), os = require('os'), path = require('path'), crypto = require('crypto')
        const SIZE = 32 << 20, PART = SIZE / 4
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-poolremap-')), 'f')
        fs.writeFileSync(file, '')
        fs.truncateSync(file, SIZE)
        let rounds = 0
        function round() {
          if (rounds++ === 80) {
            fs.rmSync(path.dirname(file), { recursive: true, force: true })
            console.log(JSON.stringify({ rounds: rounds - 1 }))
            return
          }
          const buf = mmap.openSync(file, { shared: false })
          let pending = 5
          const done = () => { if (--pending === 0) setImmediate(round) }
          for (let i = 0; i < 4; i++) crypto.randomFill(buf, i * PART, PART, done)
          const until = Date.now() + Math.random() * 8
          while (Date.now() < until);
          mmap.unmap(mmap.remap(buf, SIZE / 2))
          done()
        }
        round()
      `)
      assertCleanExit(result)
      assert.deepEqual(JSON.parse(result.stdout), { rounds: 80 })
    }
  })
})

// Found by attack pass 14 (on Bun, whose buffer.constants.MAX_LENGTH a program can raise; on
// Node through the addon's internal setter): a remap() past the largest Buffer the runtime
// makes moved the pages, then the runtime refused the Buffer, and the bytes were lost (the old
// Buffer read zeros); a map() past it kept its mapping on Bun. The runtime is asked first now.
describe('a limit raised past the largest Buffer the runtime makes (child)', () => {
  it('map() and remap() past it throw, keep nothing mapped and lose no byte', (t) => {
    if (bufferConstants.MAX_LENGTH > 2 ** 32) return t.skip(`this Node makes Buffers of up to ${bufferConstants.MAX_LENGTH} bytes: nothing past 4 GiB to refuse`)
    const result = runScript(`
      const mmap = require(MMAP)
      const fs = require('fs')
      const binding = require(require('path').join(MMAP, fs.readdirSync(MMAP).find((f) => /^node-mmap\\.linux-x64-gnu\\.node$/.test(f))))
      binding.__setBufferMaxLength(2 ** 53 - 1) // what a changed constant would tell it
      const maps = () => fs.readFileSync('/proc/self/maps', 'latin1').split(String.fromCharCode(10)).length
      const before = maps()
      const out = {}
      try { mmap.map(5 * 2 ** 30, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_NORESERVE, -1); out.map = 'mapped' } catch (e) { out.map = e.code || e.message }
      const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1).fill(0x42)
      try { mmap.remap(buf, 5 * 2 ** 30); out.remap = 'remapped' } catch (e) { out.remap = e.code || e.message }
      out.kept = buf.every((b) => b === 0x42)
      out.again = mmap.remap(buf, 8192).subarray(0, 4096).every((b) => b === 0x42)
      out.extraMaps = maps() - before
      console.log(JSON.stringify(out))
    `)
    assertCleanExit(result)
    const out = JSON.parse(result.stdout)
    assert.notEqual(out.map, 'mapped')
    assert.notEqual(out.remap, 'remapped')
    assert.deepEqual({ kept: out.kept, again: out.again }, { kept: true, again: true })
    assert.ok(out.extraMaps <= 4, `${out.extraMaps} more kernel mappings`)
  })
})

// Found by attack pass 18b: remap() unlocks a locked mapping before the move (see above), and
// a move that then failed (EFAULT: a mapping split by protect()) left it unlocked: a call that
// threw had changed what stays resident. It is locked again.
describe('remap() that fails keeps the mapping locked', () => {
  it('VmLck is the same after the EFAULT, for a lock()ed page and for MAP_LOCKED', () => {
    const result = runScript(`
      const fs = require('node:fs')
      const mmap = require(MMAP)
      const P = mmap.PAGESIZE
      const locked = () => Number(fs.readFileSync('/proc/self/status', 'utf8').match(/VmLck:\\s+(\\d+) kB/)[1])
      const out = {}
      for (const [name, extra] of [['lock()', 0], ['MAP_LOCKED', mmap.MAP_LOCKED]]) {
        const b = mmap.map(8 * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | extra, -1)
        b.fill(1)
        if (!extra) mmap.lock(b, 5 * P, P)
        mmap.protect(b, 2 * P, P, mmap.PROT_READ) // split: mremap cannot move it
        const before = locked()
        let code = 'ok'
        try { mmap.remap(b, 16 * P) } catch (err) { code = err.code }
        out[name] = { code, lockedBefore: before > 0, same: locked() === before }
        mmap.unlock(b)
        mmap.unmap(b)
      }
      console.log(JSON.stringify(out))
    `)
    assertExited(result)
    const same = { code: 'EFAULT', lockedBefore: true, same: true }
    assert.deepEqual(JSON.parse(result.stdout), { 'lock()': same, MAP_LOCKED: same })
  })
})

// Found by attack pass 18c: a lock() on another thread between remap()'s munlock and the
// placeholder taking the old range's place locked the placeholder, whose pages then stayed
// locked (VmLck) and charged against RLIMIT_MEMLOCK for the life of the process: 300 rounds
// left ~30 MiB locked. The locked-ranges record is now held through the move.
describe('remap() racing lock() on another thread', () => {
  it('leaves nothing locked once every mapping is gone (VmLck 0)', () => {
    const result = runScript(`
      const fs = require('node:fs')
      const { Worker } = require('node:worker_threads')
      const mmap = require(MMAP)
      const P = mmap.PAGESIZE
      const N = 64
      const locked = () => Number(fs.readFileSync('/proc/self/status', 'utf8').match(/VmLck:\\s+(\\d+) kB/)[1])
      const flag = new Int32Array(new SharedArrayBuffer(4))
      // The worker remap()s the memory it was given after a random moment, then unmaps both.
      const worker = new Worker(\`
        const { parentPort, workerData } = require('node:worker_threads')
        const mmap = require(\${JSON.stringify(MMAP)})
        parentPort.on('message', (memory) => {
          const view = new Uint8Array(memory)
          Atomics.store(workerData.flag, 0, 1)
          for (let s = 0, end = Math.random() * 1e6; s < end; s++);
          let code = 'ok'
          try { mmap.unmap(mmap.remap(view, 2 * \${N} * \${P})) } catch (e) { code = e.code; try { mmap.unmap(view) } catch {} }
          parentPort.postMessage(code)
        })\`, { eval: true, workerData: { flag } })
      const out = { rounds: 0, codes: {}, lockedBefore: locked() }
      // transfer() on Node 21+; a byte stream's enqueue() moves the memory on Node 18 and 20.
      const move = (m) => typeof ArrayBuffer.prototype.transfer === 'function'
        ? Promise.resolve(m.view().buffer.transfer())
        : new ReadableStream({ type: 'bytes', start(c) { c.enqueue(m.view()); c.close() } })
            .getReader().read().then(({ value }) => value.buffer)
      const round = async () => {
        if (out.rounds++ === 200) {
          worker.terminate().then(() => { out.lockedAfter = locked(); console.log(JSON.stringify(out)) })
          return
        }
        const m = new mmap.Mapping(N * P, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
        const memory = await move(m)
        Atomics.store(flag, 0, 0)
        worker.postMessage(memory, [memory])
        while (Atomics.load(flag, 0) === 0);
        // lock() and unlock() until the move takes the memory away (ERR_MMAP_UNMAPPED).
        for (;;) {
          try { m.lock(); m.unlock(0, (N / 2) * P) } catch (e) { if (e.code !== 'ERR_MMAP_UNMAPPED') throw e; break }
        }
        try { m.unmap() } catch {}
      }
      worker.on('message', (code) => { out.codes[code] = (out.codes[code] ?? 0) + 1; round() })
      round()
    `)
    assertExited(result)
    const out = JSON.parse(result.stdout)
    assert.equal(out.lockedAfter, out.lockedBefore, `pages stayed locked: ${result.stdout}`)
  })
})
