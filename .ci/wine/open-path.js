// Under Wine (bash .ci/wine.sh node .ci/wine/open-path.js): openSync(), open() and Mapping.open()
// by path through the real node.exe: non-ASCII names (UTF-16), paths longer than MAX_PATH,
// the modes and `size`, and a failing call that leaves no file behind. The oracle is always
// Node's own fs. Each check prints "ok" or "FAIL"; exit code 1 on any FAIL.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const mmap = require('../..')

const { check, equal, systemError, runAll } = require('./harness')

function throwsSystem(fn, code, syscall) {
  try {
    fn()
  } catch (err) {
    systemError(err, code, syscall)
    return err
  }
  throw new Error(`no error (wanted ${code})`)
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-path-'))
const pattern = (n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff))

check("'r' of a file with a non-ASCII name reads what fs wrote", () => {
  const p = path.join(dir, 'données-日本-😀.bin')
  fs.writeFileSync(p, pattern(70000))
  const buf = mmap.openSync(p)
  equal(buf.equals(fs.readFileSync(p)), true, 'bytes')
  equal(buf.length, 70000, 'length')
  mmap.unmap(buf)
  return p
})

check('a path longer than MAX_PATH (260) maps', () => {
  let deep = dir
  while (deep.length < 300) deep = path.join(deep, 'a-rather-long-directory-name')
  fs.mkdirSync(deep, { recursive: true })
  const p = path.join(deep, 'long.bin')
  fs.writeFileSync(p, pattern(5000))
  const buf = mmap.openSync(p, { mode: 'r+' })
  equal(buf.equals(fs.readFileSync(p)), true, 'bytes')
  buf[0] = 0xab
  mmap.unmap(buf)
  equal(fs.readFileSync(p)[0], 0xab, 'a write through the mapping, read back by fs')
  return `${p.length} characters`
})

check("'r+' writes reach the file; offset and length pick the range", () => {
  const p = path.join(dir, 'rw.bin')
  fs.writeFileSync(p, pattern(200000))
  const buf = mmap.openSync(p, { mode: 'r+', offset: 70001, length: 1000 })
  equal(buf.equals(pattern(200000).subarray(70001, 71001)), true, 'the range')
  buf.fill(0x5a)
  mmap.unmap(buf)
  const back = fs.readFileSync(p)
  equal(back.subarray(70001, 71001).every((b) => b === 0x5a), true, 'written range')
  equal(back[70000], pattern(200000)[70000], 'the byte before it is untouched')
  equal(back[71001], pattern(200000)[71001], 'the byte after it is untouched')
})

check("'r+' with size grows the file, with zeros", () => {
  const p = path.join(dir, 'grow.bin')
  fs.writeFileSync(p, Buffer.from('head'))
  const buf = mmap.openSync(p, { mode: 'r+', size: 100000 })
  equal(buf.length, 100000, 'length')
  equal(fs.statSync(p).size, 100000, 'file size')
  equal(buf.toString('latin1', 0, 4), 'head', 'old bytes')
  equal(buf.subarray(4).every((b) => b === 0), true, 'the rest is zeros')
  mmap.unmap(buf)
})

check("'w+' of an existing file: zeros, at the size asked (larger and smaller)", () => {
  const p = path.join(dir, 'wplus.bin')
  fs.writeFileSync(p, pattern(300000))
  let buf = mmap.openSync(p, { mode: 'w+', size: 400000 })
  equal(fs.statSync(p).size, 400000, 'grown')
  equal(buf.every((b) => b === 0), true, 'all zeros')
  equal(fs.readFileSync(p).every((b) => b === 0), true, 'the file is all zeros')
  mmap.unmap(buf)
  fs.writeFileSync(p, pattern(300000))
  buf = mmap.openSync(p, { mode: 'w+', size: 5000 })
  equal(fs.statSync(p).size, 5000, 'shrunk')
  equal(fs.readFileSync(p).every((b) => b === 0), true, 'the file is all zeros')
  mmap.unmap(buf)
  fs.writeFileSync(p, pattern(3000))
  buf = mmap.openSync(p, { mode: 'w+' })
  equal(buf.length, 0, 'no size: empty')
  equal(fs.statSync(p).size, 0, 'the file is empty')
})

check("'w+' creates a missing file", () => {
  const p = path.join(dir, 'new-ñ.bin')
  const buf = mmap.openSync(p, { mode: 'w+', size: 8192 })
  buf.write('created', 100)
  mmap.unmap(buf)
  equal(fs.readFileSync(p).toString('latin1', 100, 107), 'created', 'fs reads it')
  equal(fs.statSync(p).size, 8192, 'size')
})

check('a failing call that created the file removes it', () => {
  const p = path.join(dir, 'never.bin')
  try {
    mmap.openSync(p, { mode: 'w+', size: 4096, offset: 8192 })
    throw new Error('no error')
  } catch (err) {
    equal(err.code, 'ERR_OUT_OF_RANGE', 'code')
  }
  equal(fs.existsSync(p), false, 'no file left')
})

check('a failing call leaves an existing file as it was', () => {
  const p = path.join(dir, 'kept.bin')
  fs.writeFileSync(p, pattern(10000))
  try {
    mmap.openSync(p, { mode: 'r+', size: 20000, offset: 30000, length: 10 })
    throw new Error('no error')
  } catch (err) {
    equal(err.code, 'ERR_OUT_OF_RANGE', 'code')
  }
  equal(fs.readFileSync(p).equals(pattern(10000)), true, 'unchanged')
})

check("shared: false with a size past the end is EINVAL (a private view cannot pass it), file unchanged", () => {
  const p = path.join(dir, 'private-size.bin')
  fs.writeFileSync(p, 'abc')
  throwsSystem(() => mmap.openSync(p, { mode: 'r+', size: 8192, shared: false }), 'EINVAL', 'mmap')
  equal(fs.readFileSync(p).toString(), 'abc', 'the file')
  const q = path.join(dir, 'private-new.bin')
  throwsSystem(() => mmap.openSync(q, { mode: 'w+', size: 8192, shared: false }), 'EINVAL', 'mmap')
  equal(fs.existsSync(q), false, 'no file made')
})

check("'r' of an empty file is an empty Buffer, and the file stays empty", () => {
  const p = path.join(dir, 'empty.bin')
  fs.writeFileSync(p, '')
  equal(mmap.openSync(p).length, 0, "'r' length")
  equal(mmap.openSync(p, { mode: 'r+' }).length, 0, "'r+' length")
  equal(fs.statSync(p).size, 0, 'size')
})

check('shared: false is copy-on-write: writes never reach the file', () => {
  const p = path.join(dir, 'cow.bin')
  fs.writeFileSync(p, pattern(9000))
  const buf = mmap.openSync(p, { shared: false })
  buf.fill(1)
  equal(fs.readFileSync(p).equals(pattern(9000)), true, 'the file')
  mmap.unmap(buf)
})

check('a missing file is ENOENT with its path; a directory is EISDIR', () => {
  const p = path.join(dir, 'missing.bin')
  const err = throwsSystem(() => mmap.openSync(p), 'ENOENT', 'open')
  equal(err.path, p, 'path')
  let fsErrno
  try { fs.openSync(p, 'r') } catch (e) { fsErrno = e.errno }
  equal(err.errno, fsErrno, "errno, as fs.openSync's")
  throwsSystem(() => mmap.openSync(dir), 'EISDIR')
  return err.message
})

check("a read-only file: 'r+' does what fs.openSync(path, 'r+') does; 'r' maps it", () => {
  const p = path.join(dir, 'ro.bin')
  fs.writeFileSync(p, pattern(100))
  fs.chmodSync(p, 0o444) // the read-only attribute on Windows
  try {
    // Windows refuses to open it for writing (EACCES); Wine run as root lets root write it, as
    // Linux does: the oracle is Node's own fs, either way.
    let fsCode = null
    try { fs.closeSync(fs.openSync(p, 'r+')) } catch (e) { fsCode = e.code }
    let ours = null
    try { mmap.unmap(mmap.openSync(p, { mode: 'r+' })) } catch (e) { ours = e; equal(e.syscall, 'open', 'syscall') }
    equal(ours && ours.code, fsCode, "the error, as fs.openSync(path, 'r+')'s")
    if (ours) throwsSystem(() => { throw ours }, fsCode, 'open')
    const buf = mmap.openSync(p)
    equal(buf.equals(pattern(100)), true, "'r' maps it")
    mmap.unmap(buf) // Wine refuses to change the attributes of a mapped file (EBUSY)
    return `fs.openSync 'r+': ${fsCode || 'opens'}`
  } finally {
    fs.chmodSync(p, 0o666)
  }
})

check('open() resolves the same mapping on the thread pool', async () => {
  const p = path.join(dir, 'async.bin')
  fs.writeFileSync(p, pattern(123456))
  const buf = await mmap.open(p, { mode: 'r+' })
  equal(buf.equals(fs.readFileSync(p)), true, 'bytes')
  mmap.unmap(buf)
  await mmap.open(path.join(dir, 'missing.bin')).then(
    () => { throw new Error('no rejection') },
    (err) => equal(err.code, 'ENOENT', 'rejection code'),
  )
})

check('Mapping.open() reads and writes through windows', () => {
  const p = path.join(dir, 'handle.bin')
  fs.writeFileSync(p, pattern(300000))
  const m = mmap.Mapping.open(p, { mode: 'r+' })
  equal(m.length, 300000, 'length')
  equal(m.read(250000, 10).equals(pattern(300000).subarray(250000, 250010)), true, 'read')
  m.write(Buffer.from('windows'), 299000)
  m.unmap()
  equal(fs.readFileSync(p).toString('latin1', 299000, 299007), 'windows', 'fs reads the write')
})

console.log(`node ${process.version} ${process.platform}-${process.arch}`)
runAll(() => fs.rmSync(dir, { recursive: true, force: true }))
