// The ES module entry of node-mmap, as a user's project imports it after installing the prebuilt
// tarballs (run from that project's folder by .ci/prebuilt.sh): the default export and the
// named ones are the same functions as require() gives.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import mmap, { map, unmap, PAGESIZE } from 'node-mmap'

const required = createRequire(import.meta.url)('node-mmap')
assert.equal(mmap.map, required.map)
assert.equal(map, required.map)
assert.equal(PAGESIZE, required.PAGESIZE)
const buf = map(PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
buf[PAGESIZE - 1] = 7
assert.equal(buf[PAGESIZE - 1], 7)
unmap(buf)
console.log(`ok - import of node-mmap (${process.version} ${process.platform}-${process.arch})`)
