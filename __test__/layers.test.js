'use strict'
// The source's layers (issue 13), checked file by file: src/sys (the OS) imports nothing from
// the crate; src/core (mappings and their safety) knows nothing of Node-API or of the layers
// above it; src/js (the JavaScript boundary) does not reach up into src/api (the exports); and
// raw Node-API calls (`napi_*` functions) are made in one module of the boundary only.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const src = path.join(__dirname, '..', 'src')

/** Every .rs file under `dir` (relative to src/), with its text. */
function files(dir) {
  const out = []
  for (const entry of fs.readdirSync(path.join(src, dir), { withFileTypes: true })) {
    const rel = path.posix.join(dir, entry.name) // '/' on every platform, as the tests match it
    if (entry.isDirectory()) out.push(...files(rel))
    else if (entry.name.endsWith('.rs')) out.push({ rel, text: fs.readFileSync(path.join(src, rel), 'utf8') })
  }
  return out
}

/** The lines of `text` that are code (comments and doc comments left out), numbered. */
function codeLines(text) {
  return text
    .split('\n')
    .map((line, i) => ({ n: i + 1, code: line.replace(/\/\/.*$/, '') }))
    .filter(({ code }) => code.trim() !== '')
}

/** `file:line: code` for each code line of the files under `dir` that matches `pattern`. */
function offending(dir, pattern) {
  const found = []
  for (const { rel, text } of files(dir)) {
    for (const { n, code } of codeLines(text)) if (pattern.test(code)) found.push(`src/${rel}:${n}: ${code.trim()}`)
  }
  return found
}

test('the four layers exist as folders, and lib.rs declares exactly them', () => {
  for (const layer of ['sys', 'core', 'js', 'api']) assert.ok(fs.statSync(path.join(src, layer)).isDirectory(), layer)
  const mods = [...fs.readFileSync(path.join(src, 'lib.rs'), 'utf8').matchAll(/^mod (\w+);/gm)].map((m) => m[1])
  assert.deepEqual(mods.sort(), ['api', 'core', 'js', 'sys'])
  const loose = fs.readdirSync(src).filter((name) => name.endsWith('.rs') && name !== 'lib.rs')
  assert.deepEqual(loose, [], 'no module outside a layer')
})

test('src/sys imports nothing from the crate', () => {
  assert.deepEqual(offending('sys', /\bcrate::/), [])
})

test('src/core imports neither Node-API nor the layers above it', () => {
  assert.deepEqual(offending('core', /\bnapi\b|crate::(js|api)\b/), [])
})

test('src/js does not reach up into src/api', () => {
  assert.deepEqual(offending('js', /crate::api\b/), [])
})

test('raw Node-API calls are made in src/js/raw.rs only', () => {
  const raw = /\bnapi_[a-z0-9_]+\s*\(/
  const found = []
  for (const layer of ['sys', 'core', 'js', 'api']) found.push(...offending(layer, raw))
  assert.deepEqual(found.filter((line) => !line.startsWith('src/js/raw.rs:')), [])
})
