// Under Wine (bash .ci/wine.sh node .ci/wine/map-basics.js): the first slice of the Windows
// port, end to end through the real node.exe. Each check prints "ok" or "FAIL" with the values;
// the oracle is always fs.readFileSync / plain arithmetic, never the addon. Exit code 1 on any FAIL.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const mmap = require('../..')

const { check, equal, systemError, runAll } = require('./harness')

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-wine-'))
const file = (name, bytes) => {
  const p = path.join(dir, name)
  fs.writeFileSync(p, bytes)
  return p
}

console.log(`node ${process.version} ${process.platform}-${process.arch}`)
console.log(`PAGESIZE=${mmap.PAGESIZE} ALLOCATION_GRANULARITY=${mmap.ALLOCATION_GRANULARITY}`)
console.log(
  `PROT_READ=${mmap.PROT_READ} PROT_WRITE=${mmap.PROT_WRITE} PROT_EXEC=${mmap.PROT_EXEC} ` +
    `MAP_SHARED=${mmap.MAP_SHARED} MAP_PRIVATE=${mmap.MAP_PRIVATE} MAP_ANONYMOUS=${mmap.MAP_ANONYMOUS} ` +
    `MAP_POPULATE=${mmap.MAP_POPULATE} MS_SYNC=${mmap.MS_SYNC}`,
)

check('MAP_SHARED: writes reach the file', () => {
  const p = file('shared.bin', Buffer.alloc(8192, 0x61))
  const fd = fs.openSync(p, 'r+')
  const buf = mmap.map(8192, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  fs.closeSync(fd) // the mapping outlives the descriptor
  equal(buf.length, 8192, 'length')
  equal(buf[0], 0x61, 'first byte as read from the file')
  buf.write('hello from a view', 100)
  buf[8191] = 0x7a
  mmap.sync(buf, true)
  const disk = fs.readFileSync(p)
  equal(disk.toString('latin1', 100, 117), 'hello from a view', 'file bytes 100..117')
  equal(disk[8191], 0x7a, 'file byte 8191')
  equal(disk.length, 8192, 'file size')
  mmap.unmap(buf)
  return `file reads '${disk.toString('latin1', 100, 117)}'`
})

check('MAP_SHARED read-only of a file opened "r"', () => {
  const p = file('ro.bin', Buffer.from('read only bytes'))
  const fd = fs.openSync(p, 'r')
  const buf = mmap.map(15, mmap.PROT_READ, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  equal(buf.toString(), 'read only bytes', 'content')
  mmap.unmap(buf)
})

check('MAP_SHARED read-only, size rounded up to PAGESIZE past EOF: the tail reads zeros', () => {
  const p = file('tail.bin', Buffer.from('short'))
  const fd = fs.openSync(p, 'r')
  const buf = mmap.map(mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  equal(buf.toString('latin1', 0, 5), 'short', 'content')
  equal(buf.subarray(5).every((b) => b === 0), true, 'tail all zeros')
  equal(fs.statSync(p).size, 5, 'file size unchanged')
  mmap.unmap(buf)
})

check('PROT_WRITE on a file opened "r" is EACCES', () => {
  const p = file('ro2.bin', Buffer.alloc(4096))
  const fd = fs.openSync(p, 'r')
  try {
    mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
    throw new Error('no error')
  } catch (err) {
    systemError(err, 'EACCES')
    return `${err.message}; errno ${err.errno}; syscall ${err.syscall}`
  } finally {
    fs.closeSync(fd)
  }
})

check('a bad fd is EBADF', () => {
  try {
    mmap.map(4096, mmap.PROT_READ, mmap.MAP_SHARED, 9999)
    throw new Error('no error')
  } catch (err) {
    systemError(err, 'EBADF')
    let fsErrno
    try { fs.fstatSync(9999) } catch (e) { fsErrno = e.errno }
    equal(err.errno, fsErrno, "errno, as fs.fstatSync(9999)'s")
    return `${err.message}; errno ${err.errno}`
  }
})

check('MAP_PRIVATE: writes stay private', () => {
  const p = file('private.bin', Buffer.alloc(4096, 0x62))
  const fd = fs.openSync(p, 'r')
  const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, fd)
  fs.closeSync(fd)
  buf.fill(0x63, 0, 100)
  equal(buf[0], 0x63, 'the view sees its write')
  mmap.sync(buf, true)
  const disk = fs.readFileSync(p)
  equal(disk[0], 0x62, 'the file does not')
  mmap.unmap(buf)
})

check('MAP_ANONYMOUS: zeroed, readable and writable', () => {
  const buf = mmap.map(1 << 20, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  equal(buf.length, 1 << 20, 'length')
  equal(buf.every((b) => b === 0), true, 'zeroed')
  buf.fill(7)
  equal(buf[12345], 7, 'write read back')
  mmap.unmap(buf)
})

check('MAP_SHARED | MAP_ANONYMOUS', () => {
  const buf = mmap.map(65536, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
  buf[65535] = 1
  equal(buf[65535], 1, 'last byte')
  mmap.unmap(buf)
})

check('unmap(): the old Buffer reads zeros (no crash), writes go nowhere, the file is free', () => {
  const p = file('unmap.bin', Buffer.alloc(8192, 0x64))
  const fd = fs.openSync(p, 'r+')
  const buf = mmap.map(8192, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  const tail = buf.subarray(4096)
  equal(buf[10], 0x64, 'before')
  mmap.unmap(buf)
  equal(buf.length, 8192, 'the Buffer keeps its length (nothing is detached)')
  equal(buf.every((b) => b === 0), true, 'the old Buffer reads zeros')
  equal(tail.every((b) => b === 0), true, 'a subarray taken before reads zeros')
  buf.fill(0x55)
  equal(fs.readFileSync(p).every((b) => b === 0x64), true, 'a write after unmap() does not reach the file')
  // The file is no longer referenced: it can be shrunk (Windows refuses while a view exists).
  fs.truncateSync(p, 100)
  equal(fs.statSync(p).size, 100, 'file shrunk after unmap')
  return 'zeros; file unchanged and shrinkable afterwards'
})

check('unmap() while zlib still works through the memory: no crash', async () => {
  const zlib = require('node:zlib')
  const buf = mmap.map(1 << 20, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  require('node:crypto').randomFillSync(buf) // does not compress: zlib works in several chunks
  const done = new Promise((resolve, reject) => zlib.deflate(buf, (err, out) => (err ? reject(err) : resolve(out))))
  setImmediate(() => mmap.unmap(buf))
  const out = await done
  return `deflate finished with ${out.length} bytes; unmap() ran while it worked`
})

check('incore(): the pages of an anonymous mapping become resident when written', () => {
  const buf = mmap.map(65536, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  const before = mmap.incore(buf)
  buf.fill(1)
  const after = mmap.incore(buf)
  mmap.unmap(buf)
  equal(after[1], 16, 'resident pages after writing all 16')
  return `before [${before}], after [${after}]`
})

check('PROT_NONE, PROT_EXEC (anonymous), PROT_READ|PROT_EXEC of a file', () => {
  const none = mmap.map(4096, mmap.PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  mmap.protect(none, 0, 4096, mmap.PROT_READ)
  equal(none[0], 0, 'readable after protect(PROT_READ)')
  mmap.unmap(none)
  const exec = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  exec[0] = 0xc3
  mmap.unmap(exec)
  const p = file('exec.bin', Buffer.alloc(4096, 0x90))
  const fd = fs.openSync(p, 'r')
  let fileExec
  try {
    const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_EXEC, mmap.MAP_SHARED, fd)
    fileExec = `file PROT_EXEC mapped, byte 0x${buf[0].toString(16)}`
    mmap.unmap(buf)
  } catch (err) {
    fileExec = `file PROT_EXEC: ${err.message}`
  } finally {
    fs.closeSync(fd)
  }
  return fileExec
})

check('protect(): read-only then read-write again', () => {
  const buf = mmap.map(8192, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
  mmap.protect(buf, 0, 4096, mmap.PROT_READ)
  equal(buf[0], 0, 'read under PROT_READ')
  mmap.protect(buf, 0, 4096, mmap.PROT_READ | mmap.PROT_WRITE)
  buf[0] = 9
  equal(buf[0], 9, 'write after widening')
  mmap.unmap(buf)
})

check('protect() widening a PROT_READ shared view of an "r+" file', () => {
  const p = file('widen.bin', Buffer.alloc(4096, 1))
  const fd = fs.openSync(p, 'r+')
  const buf = mmap.map(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  mmap.protect(buf, 0, 4096, mmap.PROT_READ | mmap.PROT_WRITE)
  buf[1] = 2
  mmap.sync(buf)
  equal(fs.readFileSync(p)[1], 2, 'file byte 1')
  mmap.unmap(buf)
})

check('sync() async and blocking, lock()/unlock(), advise(), incore()', () => {
  const p = file('toolkit.bin', Buffer.alloc(65536 * 2, 3))
  const fd = fs.openSync(p, 'r+')
  const buf = mmap.map(65536 * 2, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  buf[70000] = 4
  mmap.sync(buf, false)
  mmap.sync(buf, 0, 4096, true)
  equal(fs.readFileSync(p)[70000], 4, 'file byte 70000')
  mmap.lock(buf)
  mmap.unlock(buf)
  mmap.advise(buf, mmap.MADV_WILLNEED)
  mmap.advise(buf, mmap.MADV_SEQUENTIAL)
  mmap.advise(buf, mmap.MADV_DONTNEED)
  const [notResident, resident] = mmap.incore(buf)
  equal(notResident + resident, 32, 'pages')
  mmap.unmap(buf)
  return `incore: [${notResident} not resident, ${resident} resident]`
})

check('a writable shared mapping past EOF grows the file (Windows)', () => {
  const p = file('grow.bin', Buffer.from('abc'))
  const fd = fs.openSync(p, 'r+')
  const buf = mmap.map(10000, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  const size = fs.statSync(p).size
  mmap.unmap(buf)
  return `file size ${size} after mapping 10000 bytes of a 3-byte file`
})

check('a read-only mapping more than a page past EOF is refused', () => {
  const p = file('ro3.bin', Buffer.from('abc'))
  const fd = fs.openSync(p, 'r')
  try {
    mmap.map(3 * mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd)
    throw new Error('no error')
  } catch (err) {
    systemError(err, 'EINVAL')
    return err.message
  } finally {
    fs.closeSync(fd)
  }
})

check('an offset that is not a multiple of ALLOCATION_GRANULARITY is refused', () => {
  const p = file('off.bin', Buffer.alloc(65536 * 2))
  const fd = fs.openSync(p, 'r')
  try {
    mmap.map(4096, mmap.PROT_READ, mmap.MAP_SHARED, fd, 4096)
    throw new Error('no error')
  } catch (err) {
    return `${err.code}: ${err.message}`
  } finally {
    fs.closeSync(fd)
  }
})

check('a mapping at offset ALLOCATION_GRANULARITY', () => {
  const bytes = Buffer.alloc(65536 * 2)
  bytes.write('second chunk', 65536)
  const p = file('off2.bin', bytes)
  const fd = fs.openSync(p, 'r')
  const buf = mmap.map(12, mmap.PROT_READ, mmap.MAP_SHARED, fd, mmap.ALLOCATION_GRANULARITY)
  fs.closeSync(fd)
  equal(buf.toString(), 'second chunk', 'content')
  mmap.unmap(buf)
})

check('many map/unmap cycles (placeholders released by the finalizers)', () => {
  for (let i = 0; i < 2000; i++) {
    const buf = mmap.map(65536, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1)
    buf[i] = 1
    mmap.unmap(buf)
  }
  return '2000 cycles'
})

check('wait() is ENOTSUP for now', () => {
  const buf = mmap.map(4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1)
  try {
    mmap.wait(buf, 0, 1, 0)
    throw new Error('no error')
  } catch (err) {
    return `${err.code}: ${err.message}`
  } finally {
    mmap.unmap(buf)
  }
})

runAll(() => fs.rmSync(dir, { recursive: true, force: true }))
