// Under Wine (bash .ci/wine.sh node .ci/wine/two-process.js): two live node.exe processes share
// one MAP_SHARED mapping of a file. The parent maps it and writes 0xDEADBEEF; a child node.exe
// (spawned while the parent's view is alive) maps the same file, checks the parent's word,
// writes its own word beside it, and exits; the parent then sees the child's word in its own
// view, without re-reading the file. The child's result comes back in its exit code (a pipe
// from node.exe gives EBADF under Wine, DESIGN §3).
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const mmap = require('../..')

if (process.argv[2] === 'child') {
  const fd = fs.openSync(process.argv[3], 'r+')
  const buf = mmap.map(1024, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
  fs.closeSync(fd)
  if (buf.readUInt32BE(0) !== 0xdeadbeef) process.exit(2)
  buf.writeUInt32BE(0xcafef00d, 4)
  mmap.unmap(buf)
  process.exit(0)
}

const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-two-')), 'shared')
const fd = fs.openSync(file, 'w+')
fs.writeSync(fd, '\0', 1023) // size 1024
const buf = mmap.map(1024, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
fs.closeSync(fd)
buf.writeUInt32BE(0xdeadbeef, 0)
const child = spawnSync(process.execPath, [__filename, 'child', file], { stdio: 'ignore' })
console.log(`child exit code: ${child.status} (0: it saw 0xdeadbeef)`)
console.log(`parent's view at 4 after the child: 0x${buf.readUInt32BE(4).toString(16)}`)
console.log(`file at 4: 0x${fs.readFileSync(file).readUInt32BE(4).toString(16)}`)
const ok = child.status === 0 && buf.readUInt32BE(4) === 0xcafef00d
mmap.unmap(buf)
fs.rmSync(path.dirname(file), { recursive: true, force: true })
console.log(ok ? 'two processes: ok' : 'two processes: FAIL')
process.exitCode = ok ? 0 : 1
