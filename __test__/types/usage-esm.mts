// The ESM import forms, type-checked as an ES module (.mts) against the same index.d.ts.
import mmap, { map, unmap, Mapping, PAGESIZE, PROT_READ, PROT_WRITE, MAP_SHARED } from 'node-mmap'
import type { OpenOptions } from 'node-mmap'

const buf: Buffer = map(PAGESIZE, PROT_READ | PROT_WRITE, MAP_SHARED, 3)
unmap(buf)
const same: typeof map = mmap.map
const opts: OpenOptions = { mode: 'r' }
const handle: Mapping = mmap.Mapping.open('/tmp/x', opts)
const viaDefault: number = mmap.PAGESIZE
// @ts-expect-error no such export
mmap.mmap(1)

export { same, handle, viaDefault }
