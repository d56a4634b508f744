'use strict'
// Node's own consumers of Buffers racing unmap(): zlib (one-shot and streams, compressing and
// decompressing), crypto (hashes, ciphers, randomFill writing from the thread pool), fs
// (write, read into the Buffer, streams, promises), sockets and child stdin, each fed mapped
// memory of RANDOM bytes (incompressible: zlib works through it chunk by chunk, re-reading the
// Buffer's length and offset between chunks) and unmapped at a random moment: in the same tick,
// on the next tick, on the next turn of the loop, or a little later.
//
// What must hold: the process never dies (zlib's C++ checks the Buffer's bounds on every chunk
// and aborts if they shrank: what detaching the ArrayBuffer used to cause), every callback
// comes, and what native code read is, byte for byte, the file's byte or the zero that unmap()
// left in its place: never garbage.
// Oracles: the child's exit status, the bytes the data was made from, and zlib's own inverse.

const { test } = require('node:test')
const assert = require('node:assert/strict')

const { runScript, assertExited } = require('./helpers.js')

const CHILD = `
const mmap = require(process.env.NODE_MMAP_ROOT)
const fs = require('node:fs'), os = require('node:os'), path = require('node:path')
const zlib = require('node:zlib'), crypto = require('node:crypto'), net = require('node:net')
const { spawn } = require('node:child_process')
const { pipeline } = require('node:stream')

const SIZE = 256 << 10
const ROUNDS = Number(process.argv.at(-1))
const data = crypto.randomBytes(SIZE)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-consumers-'))
const src = path.join(dir, 'src.bin')
fs.writeFileSync(src, data)
const gz = path.join(dir, 'src.gz')
const gzData = zlib.gzipSync(data)
fs.writeFileSync(gz, gzData)
const fd = fs.openSync(src, 'r+')
const gzFd = fs.openSync(gz, 'r')
const sink = fs.openSync(path.join(dir, 'sink.bin'), 'w+')

// Every byte native code saw is the file's or a zero.
const fileOrZero = (bytes, from = data) => {
  if (bytes.length > from.length) return false
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0 && bytes[i] !== from[i]) return false
  return true
}
const mapSrc = () => mmap.map(SIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
// Writers get a private copy-on-write mapping, so the file stays the oracle for the readers.
const mapPrivate = () => mmap.map(SIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, fd, 0)
const mapGz = () => mmap.map(gzData.length, mmap.PROT_READ, mmap.MAP_SHARED, gzFd, 0)

// When to unmap, chosen at random for each call.
const later = [
  (f) => f(),
  (f) => process.nextTick(f),
  (f) => setImmediate(f),
  (f) => setTimeout(f, Math.floor(Math.random() * 3)),
]
const whenever = (f) => later[Math.floor(Math.random() * later.length)](f)

const counts = {}
const bad = []
let gapErrors = 0
const windowsGap = (err) => process.platform === 'win32' && err.code === 'EFAULT' && ++gapErrors > 0
let pending = 0
function started() { pending++ }
function finished(name, ok = true) {
  counts[name] = (counts[name] || 0) + 1
  if (!ok) bad.push(name)
  if (--pending === 0) report()
}

let server, port
const consumers = {
  // One-shot zlib: the output, inflated, shows what zlib read.
  deflate(done) {
    const buf = mapSrc()
    zlib.deflate(buf, (err, z) => done(!err && fileOrZero(zlib.inflateSync(z))))
    whenever(() => mmap.unmap(buf))
  },
  gzip(done) {
    const buf = mapSrc()
    zlib.gzip(buf, (err, z) => done(!err && fileOrZero(zlib.gunzipSync(z))))
    whenever(() => mmap.unmap(buf))
  },
  brotli(done) {
    const buf = mapSrc().subarray(0, 64 << 10)
    zlib.brotliCompress(buf, (err, z) => done(!err && fileOrZero(zlib.brotliDecompressSync(z))))
    whenever(() => mmap.unmap(buf))
  },
  // Decompressing a mapped .gz file: once unmapped, zlib meets zeros where the stream was and
  // fails with a zlib error, or finishes first. Either is an answer; neither is a crash.
  gunzip(done) {
    const buf = mapGz()
    zlib.gunzip(buf, (err, out) => done(err ? typeof err.code === 'string' : out.equals(data)))
    whenever(() => mmap.unmap(buf))
  },
  gzipStream(done) {
    const buf = mapSrc()
    const chunks = []
    const gzip = zlib.createGzip({ chunkSize: 16 << 10 })
    gzip.on('data', (c) => chunks.push(c))
    gzip.on('end', () => done(fileOrZero(zlib.gunzipSync(Buffer.concat(chunks)))))
    gzip.on('error', () => done(false))
    gzip.write(buf.subarray(0, SIZE / 2))
    gzip.end(buf.subarray(SIZE / 2))
    whenever(() => mmap.unmap(buf))
  },
  inflateStream(done) {
    const buf = mapGz()
    const gunzip = zlib.createGunzip()
    gunzip.on('data', () => {})
    gunzip.on('end', () => done(true))
    gunzip.on('error', (err) => done(typeof err.code === 'string'))
    gunzip.end(buf)
    whenever(() => mmap.unmap(buf))
  },
  // crypto: hashing on the JS thread, and a random fill written from the thread pool.
  hashStream(done) {
    const buf = mapSrc()
    const hash = crypto.createHash('sha256')
    hash.on('readable', () => { if (hash.read()) done(true) })
    hash.on('error', () => done(false))
    hash.write(buf.subarray(0, 1000))
    whenever(() => { mmap.unmap(buf); hash.end(buf.subarray(1000)) })
  },
  cipher(done) {
    const buf = mapSrc()
    const cipher = crypto.createCipheriv('aes-128-ctr', Buffer.alloc(16, 1), Buffer.alloc(16, 2))
    const parts = []
    cipher.on('data', (c) => parts.push(c))
    cipher.on('end', () => {
      const decipher = crypto.createDecipheriv('aes-128-ctr', Buffer.alloc(16, 1), Buffer.alloc(16, 2))
      done(fileOrZero(Buffer.concat([decipher.update(Buffer.concat(parts)), decipher.final()])))
    })
    cipher.write(buf.subarray(0, 4096))
    whenever(() => { mmap.unmap(buf); cipher.end(buf.subarray(4096)) })
  },
  randomFill(done) {
    const buf = mapPrivate()
    crypto.randomFill(buf, (err) => done(!err))
    whenever(() => mmap.unmap(buf))
  },
  // fs: writes read the memory on the pool, reads write into it. On Windows unmap() takes two
  // steps (the view goes, then zeros come at the same address: no placeholders on Wine), and
  // the kernel's own copy for a ReadFile/WriteFile in between fails with EFAULT instead of
  // faulting (README, Windows): an error, never a crash.
  fsWrite(done) {
    const buf = mapSrc()
    fs.write(sink, buf, 0, buf.length, 0, (err) => done(!err || windowsGap(err)))
    whenever(() => mmap.unmap(buf))
  },
  fsRead(done) {
    const buf = mapPrivate()
    fs.read(gzFd, buf, 0, Math.min(buf.length, gzData.length), 0, (err) => done(!err || windowsGap(err)))
    whenever(() => mmap.unmap(buf))
  },
  writeStream(done) {
    const buf = mapSrc()
    const out = fs.createWriteStream(path.join(dir, 'stream.bin'))
    out.on('finish', () => done(fileOrZero(fs.readFileSync(path.join(dir, 'stream.bin')))))
    out.on('error', () => done(false))
    out.write(buf.subarray(0, SIZE / 2))
    out.end(buf.subarray(SIZE / 2))
    whenever(() => mmap.unmap(buf))
  },
  promisesWrite(done) {
    const buf = mapSrc()
    fs.promises.writeFile(path.join(dir, 'promise.bin'), buf).then(
      () => done(fileOrZero(fs.readFileSync(path.join(dir, 'promise.bin')))),
      () => done(false),
    )
    whenever(() => mmap.unmap(buf))
  },
  // A socket on loopback and a child's stdin: the bytes go out of the process from the memory.
  socket(done) {
    const buf = mapSrc()
    const client = net.connect(port, '127.0.0.1', () => {
      client.end(buf)
      whenever(() => mmap.unmap(buf))
    })
    client.on('close', () => done(true))
    client.on('error', () => done(false))
  },
  stdin(done) {
    const buf = mapSrc()
    const child = spawn(process.execPath, ['-e', 'process.stdin.resume()'], { stdio: ['pipe', 'ignore', 'ignore'] })
    child.stdin.on('error', () => {})
    child.on('exit', (code) => done(code === 0))
    child.stdin.end(buf)
    whenever(() => mmap.unmap(buf))
  },
  // Synchronous consumers after unmap see the Buffer's full length and zeros.
  sync(done) {
    const buf = mapSrc()
    const view = new DataView(buf.buffer, buf.byteOffset, buf.length)
    mmap.unmap(buf)
    const ok = buf.length === SIZE && buf.toString('base64').length > 0 && buf.indexOf(1) === -1 &&
      Buffer.compare(buf, Buffer.alloc(SIZE)) === 0 && view.getUint32(SIZE - 4) === 0 &&
      crypto.createHash('md5').update(buf).digest('hex') === crypto.createHash('md5').update(Buffer.alloc(SIZE)).digest('hex')
    done(ok)
  },
}

function report() {
  server.close()
  // After the unmap()s still queued (a timer of up to 2 ms): Windows keeps a mapped file from
  // being deleted.
  setTimeout(() => {
    fs.closeSync(fd); fs.closeSync(gzFd); fs.closeSync(sink)
    fs.rmSync(dir, { recursive: true, force: true })
    console.log(JSON.stringify({ counts, bad, gapErrors }))
  }, 20)
}

server = net.createServer((socket) => socket.resume())
server.listen(0, '127.0.0.1', () => {
  port = server.address().port
  started() // held until every consumer has started
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, consumer] of Object.entries(consumers)) {
      started()
      consumer((ok) => finished(name, ok))
    }
  }
  finished('start')
})
`

test('Node\'s Buffer consumers racing unmap() of random mapped data: no crash, every callback, only file bytes or zeros (child)', () => {
  const rounds = 20
  const result = runScript(CHILD, { args: [String(rounds)], timeout: 170_000 })
  assertExited(result)
  const { counts, bad, gapErrors } = JSON.parse(result.stdout.trim().split('\n').pop())
  if (process.platform !== 'win32') assert.equal(gapErrors, 0)
  assert.deepEqual(bad, [], `consumers that saw garbage or failed: ${bad.join(', ')}`)
  const names = Object.keys(counts).filter((name) => name !== 'start')
  assert.equal(names.length, 16, `every consumer ran: ${names.join(', ')}`)
  for (const name of names) assert.equal(counts[name], rounds, `${name}: every callback came`)
})
