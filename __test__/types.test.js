'use strict'
// index.d.ts covers the whole API: __test__/types/usage.ts and usage-esm.mts use all of it (every
// call form, the constants OR'ed together, Mapping and `using`) and must type-check with
// `tsc --noEmit` against the package's own types, resolved by name through "exports". Each
// `// @ts-expect-error` line there is a wrong call that must stay an error; the last two tests
// prove that the check can fail.

const test = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { PACKAGE } = require('./helpers.js')

const TYPES = path.join(__dirname, 'types')
const TSC = path.join(PACKAGE, 'node_modules', 'typescript', 'bin', 'tsc')

/** Runs the local tsc with `args`; returns { status, lines } (stdout lines). */
function tsc(args) {
  assert.ok(fs.existsSync(TSC), `${TSC} is missing: run npm install (typescript is a devDependency)`)
  const result = spawnSync(process.execPath, [TSC, ...args], { cwd: PACKAGE, encoding: 'utf8', timeout: 120_000 })
  if (result.error) throw result.error
  return { status: result.status, output: result.stdout + result.stderr, lines: result.stdout.split('\n').filter(Boolean) }
}

/** The diagnostics in tsc output (--pretty false): { file, line, code }. */
function diagnostics(lines) {
  const out = []
  for (const line of lines) {
    const match = /^(.+?)\((\d+),(\d+)\): error (TS\d+):/.exec(line)
    if (match) out.push({ file: path.basename(match[1]), line: Number(match[2]), code: match[4] })
  }
  return out
}

test('usage.ts and usage-esm.mts type-check against index.d.ts (tsc --noEmit exits 0)', () => {
  const { status, output, lines } = tsc(['--noEmit', '--pretty', 'false', '--listFiles', '-p', TYPES])
  assert.equal(status, 0, output)
  assert.deepEqual(diagnostics(lines), [])
  // The types came from the package itself (through "exports"), not from anywhere else.
  // tsc lists paths with '/' and ends lines with os.EOL ('\r\n' on Windows): normalized, they
  // compare there too.
  const listed = lines.map((line) => path.normalize(line.trimEnd()))
  assert.ok(listed.includes(path.join(PACKAGE, 'index.d.ts')), `index.d.ts was not checked:\n${output}`)
  assert.ok(listed.includes(path.join(TYPES, 'usage.ts')))
  assert.ok(listed.includes(path.join(TYPES, 'usage-esm.mts')))
})

test('tsc fails on a file with type errors (the harness can fail)', () => {
  const { status, output, lines } = tsc(['--noEmit', '--pretty', 'false', '-p', path.join(TYPES, 'tsconfig.broken.json')])
  assert.notEqual(status, 0, output)
  assert.deepEqual(diagnostics(lines), [
    { file: 'broken.ts', line: 4, code: 'TS2345' }, // map('4096', ...)
    { file: 'broken.ts', line: 5, code: 'TS2322' }, // mode: 'w'
  ])
})

test('every @ts-expect-error line in usage.ts/usage-esm.mts marks a real error', (t) => {
  // Copies of the two files without the directives, checked against the same index.d.ts: each
  // line after a removed directive must have an error, and no other line may.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-types-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const expected = []
  for (const name of ['usage.ts', 'usage-esm.mts']) {
    const lines = fs.readFileSync(path.join(TYPES, name), 'utf8').split('\n')
    const stripped = lines.map((line, i) => {
      if (!/^\s*\/\/ @ts-expect-error/.test(line)) return line
      expected.push(`${name}:${i + 2}`)
      return '// (directive removed)'
    })
    fs.writeFileSync(path.join(dir, name), stripped.join('\n'))
  }
  assert.ok(expected.length >= 20, `only ${expected.length} directives`)
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      extends: path.join(TYPES, 'tsconfig.json'),
      compilerOptions: {
        paths: { 'node-mmap': [path.join(PACKAGE, 'index.d.ts')] },
        typeRoots: [path.join(PACKAGE, 'node_modules', '@types')],
      },
      files: ['usage.ts', 'usage-esm.mts'],
    }),
  )
  const { status, output, lines } = tsc(['--noEmit', '--pretty', 'false', '-p', dir])
  assert.notEqual(status, 0, output)
  const found = [...new Set(diagnostics(lines).map((d) => `${d.file}:${d.line}`))]
  assert.deepEqual(found.sort(), [...expected].sort(), output)
})

test("index.d.ts declares exactly the values require('node-mmap') exports", () => {
  const dts = fs.readFileSync(path.join(PACKAGE, 'index.d.ts'), 'utf8')
  const declared = [...dts.matchAll(/^export declare (?:function|const|class) (\w+)/gm)].map((m) => m[1])
  assert.deepEqual([...new Set(declared)].sort(), Object.keys(require('node-mmap')).sort())
})

/**
 * A consumer project that has never heard of @types/node: the package as npm installs it
 * (package.json and index.d.ts in node_modules/node-mmap), no @types anywhere up the tree.
 * Returns tsc's result for `source` checked with `lib`.
 */
function checkWithoutNodeTypes(t, source, lib, dts = fs.readFileSync(path.join(PACKAGE, 'index.d.ts'), 'utf8')) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-consumer-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const pkg = path.join(dir, 'node_modules', 'node-mmap')
  fs.mkdirSync(pkg, { recursive: true })
  fs.copyFileSync(path.join(PACKAGE, 'package.json'), path.join(pkg, 'package.json'))
  fs.writeFileSync(path.join(pkg, 'index.d.ts'), dts)
  fs.writeFileSync(path.join(dir, 'consumer.ts'), source)
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'es2022',
        module: 'node16',
        moduleResolution: 'node16',
        lib,
        skipLibCheck: false,
      },
      files: ['consumer.ts'],
    }),
  )
  const result = tsc(['--noEmit', '--pretty', 'false', '--listFiles', '-p', dir])
  // The check really ran without Node's types.
  assert.ok(!result.lines.some((line) => line.includes('/node_modules/@types/')), result.output)
  return result
}

const CONSUMER = `import { openSync, open, map, flush, advise, Mapping, PROT_READ, MAP_SHARED, MADV_RANDOM } from 'node-mmap'

const buf = openSync('/tmp/x', null)
const bytes: Uint8Array = buf
const first: number | undefined = buf[0]
const later: Promise<Uint8Array> = open(new Uint8Array([47]), { mode: 'r', offset: 1 })
const mapped: Uint8Array = map(4096, PROT_READ, MAP_SHARED, 3, 0, MADV_RANDOM)
void flush(buf, null)
void flush(buf, { offset: 0, length: 1 })
advise(buf, undefined, undefined, MADV_RANDOM)
const handle = new Mapping(4096, PROT_READ, MAP_SHARED, 3, 0, MADV_RANDOM)
const copy: Uint8Array = handle.read(0, 1)
handle[Symbol.dispose]()
const opened: Mapping = Mapping.open('/tmp/x', null)
// @ts-expect-error mode is 'r', 'r+' or 'w+'
openSync('/tmp/x', { mode: 'w' })
export { bytes, first, later, mapped, copy, opened }
`

test('index.d.ts type-checks in a project without @types/node (lib es2022 only)', (t) => {
  const { status, output, lines } = checkWithoutNodeTypes(t, CONSUMER, ['es2022'])
  assert.equal(status, 0, output)
  assert.deepEqual(diagnostics(lines), [])
})

test('... and with `using` where the lib has explicit resource management', (t) => {
  const source = `${CONSUMER}
export function scoped(): number {
  using m = Mapping.open('/tmp/x')
  return m.length
}
`
  const { status, output } = checkWithoutNodeTypes(t, source, ['es2022', 'esnext.disposable'])
  assert.equal(status, 0, output)
})

test('the check without @types/node can fail: an index.d.ts that needs them does (TS2688)', (t) => {
  const needsNode = `/// <reference types="node" />\nexport declare function f(): Buffer\n`
  const source = `import { f } from 'node-mmap'\nexport const b = f()\n`
  const { status, output, lines } = checkWithoutNodeTypes(t, source, ['es2022'], needsNode)
  assert.notEqual(status, 0, output)
  // TS2688: Cannot find type definition file for 'node'; TS2591: Cannot find name 'Buffer'.
  assert.deepEqual(diagnostics(lines).map((d) => d.code), ['TS2688', 'TS2591'], output)
})

test("index.d.ts exports no type of its own named Buffer (the global one stays the user's)", (t) => {
  const source = `import type { Buffer as B } from 'node-mmap'\nexport type X = B\n`
  const { status, output, lines } = checkWithoutNodeTypes(t, source, ['es2022'])
  assert.notEqual(status, 0, output)
  assert.deepEqual(diagnostics(lines).map((d) => d.code), ['TS2459'], output)
})
