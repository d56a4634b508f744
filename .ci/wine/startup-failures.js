'use strict'
// Reads the TAP output of `node --test` (node.exe under Wine, one process per file) and prints
// the failed files, as __test__/<name> paths, when every failure is a file whose process ended
// with STATUS_DLL_INIT_FAILED (exit code 3221225794): Wine failed to start node.exe, and no test
// of the file ran. Exits 1, printing what failed otherwise, when any failure is of another kind
// (or none is found: the run failed for a reason this cannot see).
const fs = require('node:fs')

const DLL_INIT_FAILED = 3221225794
const lines = fs.readFileSync(process.argv[2], 'utf8').split(/\r?\n/)
const startup = []
const other = []
for (let i = 0; i < lines.length; i++) {
  // A top-level failure: "not ok N - <name>" at the start of the line.
  const failed = /^not ok \d+ - (.*)$/.exec(lines[i])
  if (!failed || /# TODO\b/.test(failed[1])) continue
  const name = failed[1].replace(/\\\\/g, '\\')
  let exitCode = null
  for (let j = i + 1; j < lines.length && !/^\s*\.\.\.\s*$/.test(lines[j]); j++) {
    const code = /^\s+exitCode: (\d+)/.exec(lines[j])
    if (code) exitCode = Number(code[1])
  }
  const file = /^__test__\\([\w.-]+\.test\.js)$/.exec(name)
  if (file && exitCode === DLL_INIT_FAILED) startup.push(`__test__/${file[1]}`)
  else other.push(`${name} (exit code ${exitCode})`)
}
if (other.length > 0 || startup.length === 0) {
  process.stderr.write(`failures that are not Wine start-up failures: ${other.join(', ') || 'none found'}\n`)
  process.exit(1)
}
process.stdout.write(startup.join(' '))
