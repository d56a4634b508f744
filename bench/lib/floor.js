'use strict'
// The C floor (bench/floor.c): compiled at bench time with `cc -O2` into bench/.build/, and
// run as a child process that times itself, so process start-up is never part of a figure.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

/** Compiles floor.c unless an up-to-date binary exists; returns `{ ok, bin, reason }`. */
function buildFloor(source, buildDir) {
  const bin = path.join(buildDir, 'floor')
  try {
    if (fs.statSync(bin).mtimeMs >= fs.statSync(source).mtimeMs)
      return { ok: true, bin, reason: null }
  } catch {
    // not built yet
  }
  fs.mkdirSync(buildDir, { recursive: true })
  const cc = process.env.CC || 'cc'
  const result = spawnSync(cc, ['-O2', '-Wall', '-o', bin, source], { encoding: 'utf8' })
  if (result.error) return { ok: false, bin, reason: `${cc}: ${result.error.message}` }
  if (result.status !== 0) {
    const first =
      (result.stderr || '').split('\n').find((line) => /error/.test(line)) ||
      `exit ${result.status}`
    return { ok: false, bin, reason: `${cc} -O2 failed: ${first.trim()}` }
  }
  return { ok: true, bin, reason: null }
}

function run(bin, args) {
  const result = spawnSync(bin, args, { encoding: 'utf8', timeout: 120000 })
  if (result.error) throw result.error
  if (result.status !== 0)
    throw new Error((result.stderr || `floor exited ${result.status}`).trim())
  return result.stdout.trim()
}

/** Nanoseconds per mmap + munmap pair of `size` bytes of `file`, over `count` pairs. */
function floorPairs(bin, file, size, count) {
  return Number(run(bin, ['pairs', file, String(size), String(count)]))
}

/** fdatasync + posix_fadvise(POSIX_FADV_DONTNEED) over `file`. */
function dropPageCache(bin, file) {
  run(bin, ['drop', file])
}

module.exports = { buildFloor, floorPairs, dropPageCache }
