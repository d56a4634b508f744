'use strict'
// map(size, protection, flags, fd, offset = 0, advise?): the bytes a mapping shows and where its
// writes go, checked against the file itself (fs.readFileSync / fs.readSync), another process,
// and the kernel's own list of mappings (/proc/self/maps).

const test = require('node:test')
const assert = require('node:assert/strict')
const { constants: bufferConstants } = require('node:buffer')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

const mmap = require('..')
const { tempDir, randomFileIn, mappingsOf, runScript, assertCleanExit, notOnWindows } = require('./helpers.js')

const { PAGESIZE, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE } = mmap
// The unit of map()'s offsets: PAGESIZE on Linux, 65536 on Windows (ALLOCATION_GRANULARITY).
const GRAIN = mmap.ALLOCATION_GRANULARITY
const RW = PROT_READ | PROT_WRITE
const dir = tempDir(test)
let serial = 0

/** A new file of `pages` pages of random bytes: { file, bytes } (bytes is the oracle's copy). */
function randomFile(pages = 8, extra = 0) {
  return randomFileIn(dir, `random-${++serial}.bin`, pages * PAGESIZE + extra)
}

/** A new file of `grains` offset units (ALLOCATION_GRANULARITY: pages on Linux) of random bytes. */
function randomGrains(grains) {
  return randomFileIn(dir, `random-${++serial}.bin`, grains * GRAIN)
}

/** Opens `file`, maps it, closes the fd (the mapping outlives it) and returns the Buffer. */
function mapFile(file, mode, size, protection, flags, offset, advise) {
  const fd = fs.openSync(file, mode)
  try {
    return mmap.map(size, protection, flags, fd, offset, advise)
  } finally {
    fs.closeSync(fd)
  }
}

test('a MAP_SHARED mapping shows the bytes of the file', () => {
  const { file, bytes } = randomFile(8, 123)
  const buf = mapFile(file, 'r+', bytes.length, RW, MAP_SHARED)
  assert.ok(Buffer.isBuffer(buf))
  assert.equal(buf.length, bytes.length)
  assert.ok(buf.equals(fs.readFileSync(file)), 'mapping differs from fs.readFileSync')
})

test('writes through a MAP_SHARED mapping reach the file', () => {
  const { file, bytes } = randomFile(4, 77)
  const expected = Buffer.from(bytes)
  // The fd is closed before any write: the mapping keeps the file.
  const buf = mapFile(file, 'r+', bytes.length, RW, MAP_SHARED)
  const patches = [
    [0, randomBytes(16)],
    [PAGESIZE - 3, randomBytes(7)], // across a page boundary
    [2 * PAGESIZE + 100, randomBytes(PAGESIZE)], // a whole page's worth, unaligned
    [bytes.length - 1, randomBytes(1)], // the last byte
  ]
  for (const [at, patch] of patches) {
    patch.copy(buf, at)
    patch.copy(expected, at)
  }
  buf.writeUInt32BE(0xdeadbeef, 40)
  expected.writeUInt32BE(0xdeadbeef, 40)
  assert.ok(fs.readFileSync(file).equals(expected), 'the file does not hold the writes')
})

test('non-zero offsets (multiples of ALLOCATION_GRANULARITY: PAGESIZE on Linux) show the right bytes', () => {
  const { file, bytes } = randomGrains(8)
  for (const pages of [1, 2, 5, 7]) {
    for (const size of [1, 5000, GRAIN, (8 - pages) * GRAIN]) {
      if (pages * GRAIN + size > bytes.length) continue
      const offset = pages * GRAIN
      const buf = mapFile(file, 'r', size, PROT_READ, MAP_SHARED, offset)
      assert.equal(buf.length, size)
      assert.ok(
        buf.equals(bytes.subarray(offset, offset + size)),
        `map(${size}, ..., offset ${offset}) shows the wrong bytes`,
      )
    }
  }
  // A write at an offset mapping lands at offset + index in the file.
  const offset = 3 * GRAIN
  const buf = mapFile(file, 'r+', 2 * GRAIN, RW, MAP_SHARED, offset)
  const patch = randomBytes(300)
  patch.copy(buf, GRAIN - 150)
  const expected = Buffer.from(bytes)
  patch.copy(expected, offset + GRAIN - 150)
  assert.ok(fs.readFileSync(file).equals(expected))
})

test('PROT_READ mappings of a read-only fd read correctly (shared and private)', () => {
  const { file, bytes } = randomFile(3, 1000)
  for (const flags of [MAP_SHARED, MAP_PRIVATE]) {
    const buf = mapFile(file, 'r', bytes.length, PROT_READ, flags)
    assert.ok(buf.equals(bytes), `flags ${flags}`)
    // Every byte individually, not only through memcmp.
    for (let i = 0; i < bytes.length; i += 997) assert.equal(buf[i], bytes[i])
    assert.equal(buf[bytes.length - 1], bytes[bytes.length - 1])
  }
})

test('MAP_SHARED writes are seen by a second process', () => {
  const { file, bytes } = randomGrains(4)
  const buf = mapFile(file, 'r+', bytes.length, RW, MAP_SHARED)
  const patch = randomBytes(2 * GRAIN)
  patch.copy(buf, GRAIN) // no msync: the other process sees the same page cache
  // The other process maps with the seed's API, word for word.
  const child = runScript(
    `const fs = require('fs')
     const mmap = require(MMAP)
     const [file, offset, length] = process.argv.slice(1)
     const fd = fs.openSync(file, 'r')
     const buffer = mmap.map(Number(length), mmap.PROT_READ, mmap.MAP_SHARED, fd, Number(offset))
     process.stdout.write(buffer.toString('hex'))`,
    { args: [file, String(GRAIN), String(2 * GRAIN)] },
  )
  assertCleanExit(child)
  assert.equal(child.stdout, patch.toString('hex'))
  assert.ok(buf.subarray(GRAIN, 3 * GRAIN).equals(patch))
})

test('writes by a second process show in a live MAP_SHARED Buffer', () => {
  const { file, bytes } = randomFile(2)
  const buf = mapFile(file, 'r', bytes.length, PROT_READ, MAP_SHARED)
  assert.ok(buf.equals(bytes))
  const patch = randomBytes(500)
  const child = runScript(
    `const fs = require('fs')
     const mmap = require(MMAP)
     const [file, at, hex] = process.argv.slice(1)
     const fd = fs.openSync(file, 'r+')
     const size = fs.fstatSync(fd).size
     const buffer = mmap.map(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
     Buffer.from(hex, 'hex').copy(buffer, Number(at))`,
    { args: [file, '4000', patch.toString('hex')] },
  )
  assertCleanExit(child)
  const expected = Buffer.from(bytes)
  patch.copy(expected, 4000)
  assert.ok(buf.equals(expected), 'the live mapping does not show the other process\'s write')
  assert.ok(fs.readFileSync(file).equals(expected))
})

test('MAP_PRIVATE is copy-on-write: writes show in the Buffer, never in the file', () => {
  const { file, bytes } = randomFile(4)
  // Writable private mappings work even over a read-only fd (the copy is ours).
  const shared = mapFile(file, 'r', bytes.length, PROT_READ, MAP_SHARED)
  const other = mapFile(file, 'r', bytes.length, PROT_READ, MAP_PRIVATE)
  const buf = mapFile(file, 'r', bytes.length, RW, MAP_PRIVATE)
  const patch = randomBytes(PAGESIZE + 10)
  patch.copy(buf, PAGESIZE - 5)
  buf[0] ^= 0xff
  const mine = Buffer.from(bytes)
  patch.copy(mine, PAGESIZE - 5)
  mine[0] ^= 0xff
  assert.ok(buf.equals(mine), 'the private mapping does not show its own writes')
  assert.ok(fs.readFileSync(file).equals(bytes), 'a private write reached the file')
  assert.ok(shared.equals(bytes), 'a shared mapping of the file sees the private write')
  assert.ok(other.equals(bytes), 'another private mapping sees the private write')
  // Same with a read-write fd.
  const rw = mapFile(file, 'r+', bytes.length, RW, MAP_PRIVATE)
  rw.fill(0x5a)
  assert.ok(rw.equals(Buffer.alloc(bytes.length, 0x5a)))
  assert.ok(fs.readFileSync(file).equals(bytes), 'a private write reached the file')
})

test('anonymous mappings (fd -1) are zero-filled and writable', () => {
  const kinds = {
    'MAP_PRIVATE | MAP_ANONYMOUS': MAP_PRIVATE | mmap.MAP_ANONYMOUS,
    'MAP_SHARED | MAP_ANONYMOUS': MAP_SHARED | mmap.MAP_ANONYMOUS,
    'MAP_PRIVATE | MAP_ANON': MAP_PRIVATE | mmap.MAP_ANON,
  }
  for (const [name, flags] of Object.entries(kinds)) {
    const bufs = []
    for (const size of [1, 100, PAGESIZE, 10_000, 1 << 20]) {
      const buf = mmap.map(size, RW, flags, -1)
      assert.equal(buf.length, size, name)
      assert.ok(buf.equals(Buffer.alloc(size)), `${name} ${size}: not zero-filled`)
      const pattern = randomBytes(size)
      pattern.copy(buf)
      assert.ok(buf.equals(pattern), `${name} ${size}: writes do not read back`)
      bufs.push([buf, pattern])
    }
    // Each mapping is its own memory.
    for (const [buf, pattern] of bufs) assert.ok(buf.equals(pattern), name)
  }
  // offset 0 given explicitly is the same.
  assert.ok(mmap.map(PAGESIZE, RW, MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0).equals(Buffer.alloc(PAGESIZE)))
})

test('the advise argument (6th) is applied without changing the data', () => {
  const { file, bytes } = randomGrains(16)
  const advice = ['MADV_NORMAL', 'MADV_RANDOM', 'MADV_SEQUENTIAL', 'MADV_WILLNEED', 'MADV_DONTNEED']
  const expected = Buffer.from(bytes)
  for (const [i, name] of advice.entries()) {
    assert.equal(typeof mmap[name], 'number', name)
    const buf = mapFile(file, 'r+', bytes.length, RW, MAP_SHARED, 0, mmap[name])
    assert.ok(buf.equals(expected), `${name}: wrong bytes`)
    buf[i * PAGESIZE] = i + 1
    expected[i * PAGESIZE] = i + 1
    assert.ok(fs.readFileSync(file).equals(expected), `${name}: write lost`)
  }
  // With an offset, read-only, and explicit undefineds.
  const buf = mapFile(file, 'r', 4 * GRAIN, PROT_READ, MAP_SHARED, 8 * GRAIN, mmap.MADV_SEQUENTIAL)
  assert.ok(buf.equals(expected.subarray(8 * GRAIN, 12 * GRAIN)))
  assert.ok(mapFile(file, 'r', PAGESIZE, PROT_READ, MAP_PRIVATE, undefined, undefined).equals(expected.subarray(0, PAGESIZE)))
  // On anonymous memory.
  const anon = mmap.map(1 << 20, RW, MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0, mmap.MADV_SEQUENTIAL)
  assert.ok(anon.equals(Buffer.alloc(1 << 20)))
  anon.fill(7)
  assert.equal(anon[(1 << 20) - 1], 7)
})

test('buf.buffer is an ArrayBuffer of exactly size bytes over the same memory (no copy)', () => {
  for (const size of [100, PAGESIZE + 1, 3 * PAGESIZE]) {
    const { file, bytes } = randomFile(4)
    const buf = mapFile(file, 'r+', size, RW, MAP_SHARED)
    assert.ok(buf.buffer instanceof ArrayBuffer, 'buf.buffer is not an ArrayBuffer')
    assert.equal(buf.buffer.byteLength, size, 'buf.buffer is not exactly the mapping (pooled or copied?)')
    assert.equal(buf.byteOffset, 0)
    const view = new Uint8Array(buf.buffer)
    // Write through the Buffer, read through the view.
    buf[0] = bytes[0] ^ 0x55
    buf[size - 1] = bytes[size - 1] ^ 0xaa
    assert.equal(view[0], bytes[0] ^ 0x55)
    assert.equal(view[size - 1], bytes[size - 1] ^ 0xaa)
    // Write through the view, read through the file.
    view[1] = bytes[1] ^ 0x0f
    const expected = Buffer.from(bytes)
    expected[0] ^= 0x55
    expected[size - 1] ^= 0xaa
    expected[1] ^= 0x0f
    assert.ok(fs.readFileSync(file).equals(expected), 'writes through buf.buffer do not reach the file')
  }
})

test('a live mapping appears in /proc/self/maps with the file, offset, length and permissions', {
  skip: notOnWindows('Windows has no /proc/self/maps (the oracle this test reads)'),
}, () => {
  const { file } = randomFile(8)
  assert.deepEqual(mappingsOf(file), [], 'mapped before the test')
  const size = 3 * PAGESIZE + 100
  const shared = mapFile(file, 'r+', size, RW, MAP_SHARED, 2 * PAGESIZE)
  let maps = mappingsOf(file)
  assert.equal(maps.length, 1, `expected one mapping of ${file}: ${JSON.stringify(maps, (k, v) => (typeof v === 'bigint' ? v.toString(16) : v))}`)
  assert.equal(maps[0].offset, 2 * PAGESIZE)
  assert.equal(maps[0].length, 4 * PAGESIZE) // the kernel rounds up to whole pages
  assert.equal(maps[0].perms, 'rw-s')

  const priv = mapFile(file, 'r', PAGESIZE, PROT_READ, MAP_PRIVATE, 5 * PAGESIZE)
  maps = mappingsOf(file).filter((m) => m.perms === 'r--p')
  assert.equal(maps.length, 1)
  assert.equal(maps[0].offset, 5 * PAGESIZE)
  assert.equal(maps[0].length, PAGESIZE)
  assert.equal(mappingsOf(file).length, 2)
  // Keep both Buffers alive up to here.
  assert.equal(shared.length + priv.length, size + PAGESIZE)
})

test('sizes and offsets beyond 32 bits are used whole, never truncated', () => {
  // A sparse file a little over 4 GiB: no disk is used for the holes.
  const file = path.join(dir, 'sparse-big.bin')
  const fileSize = 2 ** 32 + 2 * GRAIN
  const fd = fs.openSync(file, 'w+')
  try {
    fs.ftruncateSync(fd, fileSize)
    // GRAIN is the offset unit: a page on Linux, 64 KiB on Windows.
    const high = randomBytes(64) // at 4 GiB + 1 grain: a 32-bit offset would read grain 1
    fs.writeSync(fd, high, 0, high.length, 2 ** 32 + GRAIN)
    const low = randomBytes(64) // at grain 1, what a truncated offset would show
    fs.writeSync(fd, low, 0, low.length, GRAIN)
    const at = mmap.map(PAGESIZE, PROT_READ, MAP_SHARED, fd, 2 ** 32 + GRAIN)
    assert.ok(at.subarray(0, 64).equals(high), 'offset 2^32 + GRAIN was truncated')

    // The largest Buffer this runtime makes (4 GiB on Node 20), or 4 GiB + 1 page if larger.
    const size = Math.min(bufferConstants.MAX_LENGTH, 2 ** 32 + PAGESIZE)
    const last = randomBytes(1)
    fs.writeSync(fd, last, 0, 1, size - 1)
    const mid = randomBytes(1)
    fs.writeSync(fd, mid, 0, 1, 2 ** 31 + 5) // past a signed 32-bit index
    const big = mmap.map(size, PROT_READ, MAP_SHARED, fd)
    assert.equal(big.length, size)
    assert.equal(big.buffer.byteLength, size)
    assert.equal(big[size - 1], last[0])
    assert.equal(big[2 ** 31 + 5], mid[0])
    assert.ok(big.subarray(GRAIN, GRAIN + 64).equals(low))
    if (process.platform !== 'win32') {
      // The kernel's own length (Windows has no /proc/self/maps).
      const [entry] = mappingsOf(file).filter((m) => m.offset === 0)
      assert.equal(entry.length, Math.ceil(size / PAGESIZE) * PAGESIZE)
    }
    // Windows deletes no file under a view: the temporary directory's removal needs them gone.
    mmap.unmap(at)
    mmap.unmap(big)
  } finally {
    fs.closeSync(fd)
  }
})

test('the advise argument does what it documents: MADV_REMOVE punches a hole in the mapped range only', {
  skip: notOnWindows('MADV_REMOVE is 0 on Windows (no hole punching: README)'),
}, () => {
  const { file, bytes } = randomFile(3)
  mapFile(file, 'r+', PAGESIZE, RW, MAP_SHARED, PAGESIZE, mmap.MADV_REMOVE)
  const expected = Buffer.from(bytes)
  expected.fill(0, PAGESIZE, 2 * PAGESIZE)
  assert.ok(fs.readFileSync(file).equals(expected), 'only page 1 should read as zeros')
})

test('MAP_SHARED_VALIDATE maps like MAP_SHARED (and equals MAP_SHARED | MAP_PRIVATE on Linux)', {
  skip: notOnWindows('MAP_SHARED_VALIDATE is a Linux flag, 0 on Windows (README: MAP_SHARED must be used there)'),
}, () => {
  const { file, bytes } = randomFile(2)
  assert.equal(mmap.MAP_SHARED_VALIDATE, MAP_SHARED | MAP_PRIVATE) // Linux's ABI: 3
  const buf = mapFile(file, 'r+', bytes.length, RW, mmap.MAP_SHARED_VALIDATE)
  assert.ok(buf.equals(bytes))
  buf[10] = bytes[10] ^ 1
  const expected = Buffer.from(bytes)
  expected[10] ^= 1
  assert.ok(fs.readFileSync(file).equals(expected), 'a MAP_SHARED_VALIDATE write did not reach the file')
})

test('map and unmap are plain functions named as exported, in every worker too', async () => {
  // They are installed as plain Node-API callbacks over napi-rs's (src/api/fast.rs): per env, so a
  // worker's copy of the module gets them as well.
  for (const name of ['map', 'unmap']) {
    assert.equal(typeof mmap[name], 'function')
    assert.equal(mmap[name].name, name)
  }
  const { Worker } = require('node:worker_threads')
  const source = `
    const { parentPort } = require('node:worker_threads')
    const mmap = require(${JSON.stringify(path.join(__dirname, '..'))})
    const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    buf[0] = 7
    const seen = buf[0]
    mmap.unmap(buf)
    parentPort.postMessage([mmap.map.name, mmap.unmap.name, seen, buf.length, buf[0]])
  `
  const worker = new Worker(source, { eval: true })
  const [message] = await require('node:events').once(worker, 'message')
  // unmap() keeps the length and leaves zeros.
  assert.deepEqual(message, ['map', 'unmap', 7, 4096, 0])
})

// Found by attack pass 14: map() took any descriptor the kernel maps, libuv's own io_uring
// rings among them (Node 22+, or UV_USE_IO_URING=1): a write into the submission ring made
// libuv abort the process. Descriptors of anonymous inodes (io_uring, eventfd, epoll, perf
// events, ...) are ENODEV before any mmap.
test('descriptors of anonymous inodes (libuv io_uring rings, eventfd, epoll) are ENODEV (child)', { skip: notOnWindows('Windows has no anonymous inodes nor /proc/self/fd to list them') }, (t) => {
  const result = runScript(
    `
      const mmap = require(MMAP)
      const fs = require('fs')
      // Make libuv set up its rings: a file system call on its loop.
      fs.stat(MMAP, () => {
      const seen = {}
      for (const name of fs.readdirSync('/proc/self/fd')) {
        let link
        try { link = fs.readlinkSync('/proc/self/fd/' + name) } catch { continue }
        if (!link.startsWith('anon_inode:')) continue
        let outcome
        try {
          const b = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, Number(name), 0)
          outcome = 'mapped ' + b.length
        } catch (e) {
          outcome = e.code + ' ' + e.syscall
        }
        ;(seen[link] ||= []).push(outcome)
      }
      console.log(JSON.stringify(seen))
      })
    `,
    { env: { UV_USE_IO_URING: '1' } },
  )
  assertCleanExit(result)
  const seen = JSON.parse(result.stdout)
  for (const [kind, outcomes] of Object.entries(seen)) {
    for (const outcome of outcomes) assert.equal(outcome, 'ENODEV mmap', kind)
  }
  if (!seen['anon_inode:[io_uring]']) t.skip('libuv made no io_uring ring here (kernel.io_uring_disabled, or an old kernel): eventfd and epoll checked only')
})

// Found by attack pass 15: a TCP socket's descriptor mapped (the kernel allows it) as pages that
// read zeros, never the data waiting on the socket. Only regular files and devices are mapped.
test('a socket descriptor is ENODEV, as every descriptor that is not a file or a device (child)', { skip: notOnWindows("a socket's handle is no C-runtime descriptor on Windows: map() cannot be given one") }, () => {
  const result = runScript(`
    const mmap = require(MMAP)
    const net = require('net')
    const server = net.createServer((socket) => { socket.on('error', () => {}); socket.end(Buffer.alloc(1 << 16, 0x61)) }).listen(0, '127.0.0.1', () => {
      const client = net.connect(server.address().port, '127.0.0.1', () => {
        client.on('error', () => {})
        const out = {}
        for (const [name, fd] of [['listening', server._handle.fd], ['connected', client._handle.fd]]) {
          try { mmap.map(4 * mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd); out[name] = 'mapped' } catch (e) { out[name] = e.code + ' ' + e.syscall }
        }
        console.log(JSON.stringify(out))
        client.destroy()
        server.close()
      })
    })
  `)
  assertCleanExit(result)
  assert.deepEqual(JSON.parse(result.stdout), { listening: 'ENODEV mmap', connected: 'ENODEV mmap' })
})
