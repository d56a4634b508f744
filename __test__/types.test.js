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
  assert.ok(lines.includes(path.join(PACKAGE, 'index.d.ts')), `index.d.ts was not checked:\n${output}`)
  assert.ok(lines.includes(path.join(TYPES, 'usage.ts')))
  assert.ok(lines.includes(path.join(TYPES, 'usage-esm.mts')))
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
