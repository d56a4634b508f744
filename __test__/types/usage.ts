// The whole public API of node-mmap, used with the types a TypeScript user gets from the
// package (index.d.ts through "exports"). Type-checked, never run: __test__/types.test.js runs
// `tsc --noEmit -p __test__/types`. Each `// @ts-expect-error` line is a wrong call that must be
// an error; if it were accepted, tsc would fail with "Unused '@ts-expect-error' directive".

import mmap = require('node-mmap')
import mmapDefault from 'node-mmap' // esModuleInterop (the default with module node16)
import {
  map,
  unmap,
  remap,
  advise,
  incore,
  sync,
  flush,
  wait,
  waitAsync,
  notify,
  lock,
  unlock,
  protect,
  openSync,
  open,
  externalBuffersAllowed,
  Mapping,
  PAGESIZE,
  ALLOCATION_GRANULARITY,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  PROT_EXEC,
  MAP_SHARED,
  MAP_PRIVATE,
  MAP_ANONYMOUS,
  MAP_ANON,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_NONBLOCK,
  MAP_HUGETLB,
  MAP_HUGE_2MB,
  MAP_HUGE_1GB,
  MAP_LOCKED,
  MAP_SHARED_VALIDATE,
  MAP_STACK,
  MAP_SYNC,
  MADV_NORMAL,
  MADV_RANDOM,
  MADV_SEQUENTIAL,
  MADV_WILLNEED,
  MADV_DONTNEED,
  MADV_FREE,
  MADV_REMOVE,
  MADV_DONTFORK,
  MADV_DOFORK,
  MADV_MERGEABLE,
  MADV_UNMERGEABLE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_DONTDUMP,
  MADV_DODUMP,
  MADV_WIPEONFORK,
  MADV_KEEPONFORK,
  MADV_COLD,
  MADV_PAGEOUT,
  MS_ASYNC,
  MS_SYNC,
  MS_INVALIDATE,
} from 'node-mmap'
import type { OpenOptions, SystemValue } from 'node-mmap'
import * as fs from 'node:fs'

/** `true` only when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
function assertType<T extends true>(): T | void {}

// --- Constants: plain numbers, so bitwise ORs type-check (mmap-io's literal types did not).
const protection: number = PROT_READ | PROT_WRITE
const anonymous: number = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
const allConstants: number[] = [
  PAGESIZE, ALLOCATION_GRANULARITY, PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC,
  MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_ANON, MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK,
  MAP_HUGETLB, MAP_HUGE_2MB, MAP_HUGE_1GB, MAP_LOCKED, MAP_SHARED_VALIDATE, MAP_STACK, MAP_SYNC,
  MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE, MADV_REMOVE,
  MADV_DONTFORK, MADV_DOFORK, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE,
  MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_COLD, MADV_PAGEOUT,
  MS_ASYNC, MS_SYNC, MS_INVALIDATE,
]
const pageSize: SystemValue = PAGESIZE
assertType<Equal<typeof PAGESIZE, number>>()
// @ts-expect-error constants are read-only bindings
PAGESIZE = 8192
// @ts-expect-error no such export
mmap.PROT_EXECUTE

// --- map(size, protection, flags, fd, offset?, advise?)
const fd = fs.openSync('/tmp/node-mmap-types', 'r+')
const a: Buffer = map(4096, protection, MAP_SHARED, fd)
const b: Buffer = map(4096, PROT_READ, MAP_SHARED, fd, 0)
const c: Buffer = map(PAGESIZE * 2, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PAGESIZE, MADV_SEQUENTIAL)
const d: Buffer = mmap.map(4096, PROT_READ | PROT_WRITE, anonymous, -1)
const e: Buffer = mmapDefault.map(4096, mmapDefault.PROT_READ, mmapDefault.MAP_SHARED, fd, 0, mmapDefault.MADV_NORMAL)
assertType<Equal<ReturnType<typeof map>, Buffer>>()
// @ts-expect-error size must be a number
map('4096', PROT_READ, MAP_SHARED, fd)
// @ts-expect-error fd is required
map(4096, PROT_READ, MAP_SHARED)
// @ts-expect-error at most six arguments
map(4096, PROT_READ, MAP_SHARED, fd, 0, MADV_NORMAL, 0)

// --- unmap / remap: any view of the memory
unmap(a)
unmap(new Uint8Array(b.buffer, b.byteOffset, b.length))
unmap(new DataView(c.buffer))
// An ArrayBuffer works too, as Buffer#buffer types it (ArrayBufferLike: the runtime says
// ERR_MMAP_NOT_A_MAPPING for a SharedArrayBuffer, as for any memory it did not map). Attack pass
// 8: `unmap(buf.buffer)` and `remap(buf.buffer, n)` needed a cast.
unmap(c.buffer)
unmap(c.buffer as ArrayBuffer)
remap(map(4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1).buffer, 8192)
const plain: ArrayBuffer = new ArrayBuffer(8)
unmap(plain)
const grown: Buffer = remap(d, 8192)
// @ts-expect-error not a view
unmap('buffer')
// @ts-expect-error newSize is required
remap(d)

// --- advise(buf, advice) / advise(buf, offset, length, advice)
advise(grown, MADV_RANDOM)
advise(grown, 1, 100, MADV_RANDOM)
advise(grown.subarray(10), 0, 10, MADV_WILLNEED)
advise(grown, undefined, undefined, MADV_WILLNEED) // the defaults, as the runtime takes them
advise(grown, 4096, undefined, MADV_WILLNEED)
// @ts-expect-error three numbers are neither form
advise(grown, 0, 100)
// @ts-expect-error advice is a number
advise(grown, 'random')

// --- incore(buf): [unmappedPages, mappedPages]
const [notResident, resident] = incore(grown)
const pages: number = notResident + resident
assertType<Equal<ReturnType<typeof incore>, [number, number]>>()
// @ts-expect-error a pair, nothing at index 2
incore(grown)[2]

// --- sync: every mmap-io call form
sync(grown)
sync(grown, 0)
sync(grown, 0, 4096)
sync(grown, 0, 4096, true)
sync(grown, 0, 4096, true, false)
sync(grown, true)
sync(grown, true, true)
sync(grown, undefined, undefined, false)
// @ts-expect-error invalidate is a boolean
sync(grown, true, 1)
// @ts-expect-error blocking is a boolean
sync(grown, 0, 4096, 'yes')

// --- flush(buf, options?): Promise<void>
const flushed: Promise<void> = flush(grown)
void flush(grown, { offset: 0, length: 4096, invalidate: true })
void flush(grown, {})
void flush(grown, null)
// @ts-expect-error unknown option
void flush(grown, { blocking: true })

// --- wait / waitAsync / notify
const waited: 'ok' | 'not-equal' | 'timed-out' = wait(grown, 0, 0, 10)
const waitedAsync: Promise<'ok' | 'not-equal' | 'timed-out'> = waitAsync(new Int32Array(4), 4, -1)
const woken: number = notify(grown, 0) + notify(grown, 4, 1)
// @ts-expect-error the expected value is needed
wait(grown, 0)
// @ts-expect-error wait returns one of three strings, not a boolean
const waitedBool: boolean = wait(grown, 0, 0)

// --- lock / unlock / protect
lock(grown)
lock(grown, 0)
lock(grown, 0, 4096)
unlock(grown)
unlock(grown, 0, 4096)
protect(grown, 0, 4096, PROT_READ)
protect(grown, 0, 4096, PROT_READ | PROT_WRITE)
// @ts-expect-error protection is required
protect(grown, 0, 4096)

// --- openSync / open
const options: OpenOptions = {
  mode: 'r+',
  size: 1 << 20,
  offset: 4097,
  length: 100,
  shared: true,
  populate: false,
  advise: MADV_SEQUENTIAL,
}
const whole: Buffer = openSync('/tmp/node-mmap-types')
const part: Buffer = openSync('/tmp/node-mmap-types', options)
const byBytes: Buffer = openSync(Buffer.from('/tmp/node-mmap-types'), { mode: 'r' })
const byUint8: Buffer = openSync(new Uint8Array(4), { shared: false })
const created: Buffer = openSync('/tmp/node-mmap-types-2', { mode: 'w+', size: 4096 })
const later: Promise<Buffer> = open('/tmp/node-mmap-types')
const laterWith: Promise<Buffer> = open('/tmp/node-mmap-types', { offset: 1, length: 2 })
const withNull: Buffer = openSync('/tmp/node-mmap-types', null)
const laterNull: Promise<Buffer> = open('/tmp/node-mmap-types', null)
async function useOpen(): Promise<number> {
  const buf = await open('/tmp/node-mmap-types', { mode: 'r' })
  return buf.length
}
// @ts-expect-error mode is 'r', 'r+' or 'w+'
openSync('/tmp/x', { mode: 'w' })
// @ts-expect-error unknown option
openSync('/tmp/x', { flags: 'r' })
// @ts-expect-error shared is a boolean
openSync('/tmp/x', { shared: 'yes' })
// @ts-expect-error path is a string or bytes
openSync(42)

// --- externalBuffersAllowed
const allowed: boolean = externalBuffersAllowed()

// --- Mapping
const m1 = new Mapping(4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd)
const m2 = new Mapping(8 * 2 ** 30, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
const m5 = new Mapping(4096, PROT_READ, MAP_SHARED, fd, 0, MADV_RANDOM)
const m6: Mapping = Mapping.open('/tmp/node-mmap-types', null)
const m3: Mapping = Mapping.open('/tmp/node-mmap-types', { mode: 'r+', offset: 5 })
const m4: Mapping = mmap.Mapping.open(Buffer.from('/tmp/node-mmap-types'))
const len: number = m1.length
const gone: boolean = m1.unmapped
const copy: Buffer = m3.read()
const copy2: Buffer = m3.read(1)
const copy3: Buffer = m3.read(1, 2)
const n1: number = m3.readInto(Buffer.alloc(4))
const n2: number = m3.readInto(new Float64Array(2), 8)
const n3: number = m3.readInto(new DataView(new ArrayBuffer(8)), 8)
const w1: number = m3.write(Buffer.from('x'))
const w2: number = m3.write(new Uint32Array(2), 4)
const v1: Buffer = m3.view()
const v2: Buffer = m3.view(0, 10)
m3.sync()
m3.sync(0, 10)
m3.sync(0, 10, true, false)
const mf: Promise<void> = m3.flush()
void m3.flush({ offset: 0, length: 4096, invalidate: false })
void m3.flush(null)
m3.advise(MADV_RANDOM)
m3.advise(0, 4096, MADV_WILLNEED)
m3.advise(undefined, undefined, MADV_WILLNEED)
const mi: [number, number] = m3.incore()
m3.lock()
m3.lock(0, 4096)
m3.unlock()
m3.unlock(0, 4096)
m3.unmap()
m4[Symbol.dispose]()
const disposable: Disposable = m2
function scoped(): number {
  using m = Mapping.open('/tmp/node-mmap-types')
  return m.read(0, 1)[0]
}
// @ts-expect-error length is read-only
m1.length = 5
// @ts-expect-error read returns a Buffer
const wrongRead: string = m1.read()
// @ts-expect-error write takes bytes, not a string
m1.write('text')
// @ts-expect-error the constructor needs size, protection, flags and fd
new Mapping(4096)
// @ts-expect-error advise with two numbers is neither form
m1.advise(0, 4096)
// @ts-expect-error the advice itself cannot be left out
m1.advise(0, 4096, undefined)
// @ts-expect-error advise (the constructor's 6th argument) is a number
new Mapping(4096, PROT_READ, MAP_SHARED, fd, 0, 'random')

export {
  allConstants, pageSize, e, grown, pages, flushed, whole, part, byBytes, byUint8, created, later, laterWith,
  withNull, laterNull, m5, m6,
  useOpen, allowed, len, gone, copy, copy2, copy3, n1, n2, n3, w1, w2, v1, v2, mf, mi, disposable, scoped,
  wrongRead, waited, waitedAsync, woken, waitedBool,
}
