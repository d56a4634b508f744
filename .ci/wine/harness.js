// The checks' runner for the scripts in .ci/wine/ (run by node.exe under Wine): `check(name, fn)`
// queues a check; `runAll(cleanup)` runs them in order, prints "ok" (with what fn returned) or
// "FAIL" (with the stack) for each, then a summary, and sets exit code 1 on any FAIL.
'use strict'
const util = require('node:util')

const checks = []
const check = (name, fn) => checks.push([name, fn])

function equal(a, b, what) {
  if (a !== b) throw new Error(`${what}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`)
}

// A system error as Node's own: its code, an errno that Node's table on this platform names by
// that code (libuv's numbers on Windows: EBADF is -4083, not -9), a message led by the code,
// and `syscall` when one is given.
function systemError(err, code, syscall) {
  equal(err.code, code, 'code')
  equal(util.getSystemErrorName(err.errno), code, `the name Node gives errno ${err.errno}`)
  equal(err.message.startsWith(`${code}: `), true, `message ${JSON.stringify(err.message)} leads with the code`)
  if (syscall) equal(err.syscall, syscall, 'syscall')
}

async function runAll(cleanup) {
  let failed = 0
  for (const [name, fn] of checks) {
    try {
      const detail = await fn()
      console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`)
    } catch (err) {
      failed++
      console.log(`FAIL ${name}: ${err && err.stack ? err.stack : err}`)
    }
  }
  if (cleanup) cleanup()
  console.log(failed ? `${failed} FAILED` : `all ${checks.length} passed`)
  process.exitCode = failed ? 1 : 0
}

module.exports = { check, equal, systemError, runAll }
