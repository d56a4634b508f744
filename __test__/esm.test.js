'use strict'
// ESM: `import mmap, { map, unmap, Mapping, PAGESIZE } from 'node-mmap'` works, from a module
// inside the package (resolved through the package's own name) and from this CommonJS test via
// dynamic import(); index.mjs's hand-written export list is exactly the keys of index.js.

const test = require('node:test')
const assert = require('node:assert/strict')
const { randomBytes } = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { pathToFileURL } = require('node:url')

const { PACKAGE, tempDir, runNode, assertCleanExit } = require('./helpers.js')

const cjs = require('node-mmap')
const dir = tempDir(test)

test("require('node-mmap') and import('node-mmap') resolve to index.js and index.mjs", async () => {
  assert.equal(require.resolve('node-mmap'), path.join(PACKAGE, 'index.js'))
  assert.equal(cjs, require('..'), 'the self-reference is the package itself')
  const esm = await import('node-mmap')
  assert.equal(esm.default, cjs, 'the default export is the CommonJS module object (one instance)')
})

test("index.mjs's named exports are exactly the keys of require('node-mmap'), same values", async () => {
  const esm = await import(pathToFileURL(path.join(PACKAGE, 'index.mjs')).href)
  const named = Object.keys(esm)
    .filter((key) => key !== 'default')
    .sort()
  assert.deepEqual(named, Object.keys(cjs).sort(), 'index.mjs export list vs index.js keys')
  for (const key of named) assert.equal(esm[key], cjs[key], key)
  // Nothing internal leaks through either door.
  assert.ok(!Object.keys(cjs).some((key) => key.startsWith('__')))
})

test('a module inside the package imports node-mmap by name and maps a file', () => {
  const file = path.join(dir, 'esm.bin')
  const bytes = randomBytes(3 * 4096 + 5)
  fs.writeFileSync(file, bytes)
  const result = runNode([path.join(__dirname, 'fixtures', 'esm-import.mjs'), file])
  assertCleanExit(result)
  const out = JSON.parse(result.stdout)
  assert.equal(out.resolved, path.join(PACKAGE, 'index.mjs'), 'import resolves to index.mjs')
  assert.equal(out.defaultIsCjs, true, 'default export === require() of the same package')
  assert.equal(out.namedAreCjs, true)
  assert.deepEqual(out.namespaceKeys, [...Object.keys(cjs), 'default'].sort())
  assert.equal(out.pagesize, cjs.PAGESIZE)
  assert.equal(out.mapped, bytes.toString('hex'), 'map() through ESM shows the file')
  assert.equal(out.afterUnmap, 0, 'unmap() through ESM took the bytes away (the Buffer reads zeros)')
  assert.equal(out.viaMapping, 'from esm')
  const expected = Buffer.from(bytes)
  expected.write('from esm', 0, 'latin1')
  assert.ok(fs.readFileSync(file).equals(expected), 'the write through the ESM-mapped Buffer reached the file')
})

test('an ES module outside the package importing index.mjs by absolute URL gets the same exports', () => {
  const url = pathToFileURL(path.join(PACKAGE, 'index.mjs')).href
  const source = `import mmap, { map, unmap, Mapping, PAGESIZE } from ${JSON.stringify(url)}
    process.stdout.write(JSON.stringify([typeof mmap, typeof map, typeof unmap, typeof Mapping, PAGESIZE, mmap.map === map]))`
  const result = runNode(['--input-type=module', '-e', source], { cwd: dir })
  assertCleanExit(result)
  assert.deepEqual(JSON.parse(result.stdout), ['object', 'function', 'function', 'function', cjs.PAGESIZE, true])
})
