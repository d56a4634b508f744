// Loads node-mmap as a user's project would after installing the prebuilt tarballs (run from
// that project's folder by .ci/prebuilt.sh), and checks that the binary came from the platform
// package and works: PAGESIZE, ALLOCATION_GRANULARITY, map/openSync/unmap, an offset refused
// when it is not a multiple of the page size. Prints one line per check; exit code 1 on a failure.
//
//   node use.js PLATFORM PAGESIZE
'use strict'
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const [platform, pageSize] = [process.argv[2], Number(process.argv[3])]
let failed = 0
function check(title, fn) {
  try {
    fn()
    console.log(`ok - ${title}`)
  } catch (error) {
    failed++
    console.log(`not ok - ${title}\n  ${String(error.stack || error).split('\n').join('\n  ')}`)
  }
}

// The loader dlopens the addon itself (no require(), so require.cache does not list it): the
// files it opens are recorded here.
const opened = []
const dlopen = process.dlopen
process.dlopen = function (module, file, ...rest) {
  opened.push(file)
  return Reflect.apply(dlopen, this, [module, file, ...rest])
}
const mmap = require('node-mmap')
process.dlopen = dlopen

check(`the addon came from the package node-mmap-${platform}, and node-mmap itself holds no binary`, () => {
  const loaded = opened.filter((file) => file.endsWith('.node'))
  assert.equal(loaded.length, 1, `one .node loaded: ${loaded}`)
  const expected = path.join('node_modules', `node-mmap-${platform}`, `node-mmap.${platform}.node`)
  assert.ok(loaded[0].endsWith(expected), `${loaded[0]} ends with ${expected}`)
  const own = fs.readdirSync(path.dirname(require.resolve('node-mmap'))).filter((f) => f.endsWith('.node'))
  assert.deepEqual(own, [])
})

check(`PAGESIZE and ALLOCATION_GRANULARITY are ${pageSize}`, () => {
  assert.equal(mmap.PAGESIZE, pageSize)
  assert.equal(mmap.ALLOCATION_GRANULARITY, process.platform === 'win32' ? 65536 : pageSize)
})

check('map() of anonymous memory: written and read back; unmap()', () => {
  const buf = mmap.map(3 * pageSize, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
  assert.equal(buf.length, 3 * pageSize)
  buf.fill(0xa5)
  buf.writeUInt32LE(0xdeadbeef, pageSize + 1)
  assert.equal(buf.readUInt32LE(pageSize + 1), 0xdeadbeef)
  assert.equal(buf[3 * pageSize - 1], 0xa5)
  mmap.unmap(buf)
  // After unmap() the Buffer keeps its length and reads zeros (README, "unmap").
  assert.equal(buf[pageSize + 1], 0)
})

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-prebuilt-'))
const file = path.join(dir, 'data')
try {
  check('openSync() of a file: bytes written through the mapping reach the file', () => {
    // The file is made by fs, then opened 'r+': 'w+' maps the new file before sizing it, and
    // qemu-user with 64 KiB guest pages on a 4 KiB host refuses MAP_SHARED past the end of a file
    // (EINVAL), which a real kernel allows. open.test.js covers 'w+' on x64.
    fs.writeFileSync(file, Buffer.alloc(2 * pageSize))
    const buf = mmap.openSync(file, { mode: 'r+' })
    buf.write('prebuilt', pageSize + 3)
    mmap.sync(buf)
    mmap.unmap(buf)
    const bytes = fs.readFileSync(file)
    assert.equal(bytes.length, 2 * pageSize)
    assert.equal(bytes.toString('latin1', pageSize + 3, pageSize + 11), 'prebuilt')
  })

  check('an offset that is not a multiple of ALLOCATION_GRANULARITY is refused (ERR_INVALID_ARG_VALUE)', () => {
    const fd = fs.openSync(file, 'r')
    try {
      const granularity = mmap.ALLOCATION_GRANULARITY
      const offset = granularity === 4096 ? 100 : 4096 // 4096: a page on x64, not on a 64 KiB-page kernel
      assert.throws(() => mmap.map(pageSize, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset), {
        code: 'ERR_INVALID_ARG_VALUE',
        message: `The argument 'offset' must be a multiple of ALLOCATION_GRANULARITY (${granularity}). Received ${offset}`,
      })
      const whole = mmap.map(2 * pageSize, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
      assert.equal(whole.toString('latin1', pageSize + 3, pageSize + 11), 'prebuilt')
      mmap.unmap(whole)
    } finally {
      fs.closeSync(fd)
    }
  })
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}

console.log(`use.js (${process.version} ${process.platform}-${process.arch}): ${failed === 0 ? 'all passed' : `${failed} failed`}`)
process.exitCode = failed === 0 ? 0 : 1
