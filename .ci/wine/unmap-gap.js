// unmap() on Windows takes two steps (DESIGN §4: Wine has no placeholders): the view is unmapped,
// then zero-filled memory is committed at the same address. Another thread that touches the
// range between the two (the thread pool's crypto.randomFill writing into the Buffer, zlib
// reading it) met an access violation there, and node-mmap's diagnostic ended the process
// ("a read of memory mapped without PROT_READ"). Now the exception handler waits for the zeros
// and the access runs again.
//
// (An access whose exception was handled only after the gap had closed, and after more unmaps,
// also ended the process, with no diagnostic: the handler now also looks up the last 1024
// ranges replaced and lets the access run again where the page allows it now.)
//
// Run under Wine by .ci/run: bash .ci/wine.sh node .ci/wine/unmap-gap.js
// Prints one line per check; exit code 1 if any failed (a crash ends it with 0xC0000005).
'use strict'
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const zlib = require('node:zlib')
const mmap = require(path.join(__dirname, '..', '..'))

const SIZE = 1 << 20
const ROUNDS = 300
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-gap-'))
const file = path.join(dir, 'data.bin')
const original = crypto.randomBytes(SIZE)
fs.writeFileSync(file, original)
const fd = fs.openSync(file, 'r+')

let failed = 0
async function check(title, fn) {
  try {
    await fn()
    console.log(`ok - ${title}`)
  } catch (error) {
    failed++
    console.log(`not ok - ${title}\n  ${String(error.stack || error).split('\n').join('\n  ')}`)
  }
}

// Unmaps at a random moment: at once, on the next tick, on the next turn of the loop, or later.
const whenever = (f) => [f, process.nextTick, setImmediate, (g) => setTimeout(g, 1)][Math.floor(Math.random() * 4)](f)

async function main() {
  await check(`crypto.randomFill() writing a private mapping from the thread pool while unmap() replaces it (${ROUNDS} rounds)`, async () => {
    const pending = []
    for (let i = 0; i < ROUNDS; i++) {
      const buf = mmap.map(SIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, fd, 0)
      pending.push(new Promise((resolve, reject) => crypto.randomFill(buf, (err) => (err ? reject(err) : resolve()))))
      whenever(() => mmap.unmap(buf))
      if (pending.length >= 8) await pending.shift()
    }
    await Promise.all(pending)
  })

  await check(`zlib.deflate() reading a shared mapping from the thread pool while unmap() replaces it (${ROUNDS} rounds)`, async () => {
    const pending = []
    for (let i = 0; i < ROUNDS; i++) {
      const buf = mmap.map(SIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
      pending.push(new Promise((resolve, reject) => zlib.deflate(buf, { level: 1 }, (err) => (err ? reject(err) : resolve()))))
      whenever(() => mmap.unmap(buf))
      if (pending.length >= 8) await pending.shift()
    }
    await Promise.all(pending)
  })

  await check('the file is unchanged by the private writes', () => {
    assert.ok(fs.readFileSync(file).equals(original))
  })
}

main().finally(() => {
  fs.closeSync(fd)
  fs.rmSync(dir, { recursive: true, force: true })
  console.log(`unmap-gap: ${failed === 0 ? 'all passed' : `${failed} failed`}`)
  process.exitCode = failed === 0 ? 0 : 1
})
