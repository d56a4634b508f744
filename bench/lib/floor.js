'use strict'
// The C floor (bench/floor.c): compiled at bench time with `cc -O2` into bench/.build/, and
// run as a child process that times itself, so process start-up is never part of a figure.
// The Node-API floor (bench/napi-floor.c) is compiled there too, as an addon that map-cost loads.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

/**
 * Compiles the C file `source` into `bin` with `cc -O2 -Wall` and the extra `flags`, unless an
 * up-to-date `bin` exists; returns `{ ok, bin, reason }`.
 */
function compile(source, bin, flags = []) {
  try {
    if (fs.statSync(bin).mtimeMs >= fs.statSync(source).mtimeMs)
      return { ok: true, bin, reason: null }
  } catch {
    // not built yet
  }
  fs.mkdirSync(path.dirname(bin), { recursive: true })
  const cc = process.env.CC || 'cc'
  const result = spawnSync(cc, ['-O2', '-Wall', ...flags, '-o', bin, source], { encoding: 'utf8' })
  if (result.error) return { ok: false, bin, reason: `${cc}: ${result.error.message}` }
  if (result.status !== 0) {
    const first =
      (result.stderr || '').split('\n').find((line) => /error/.test(line)) ||
      `exit ${result.status}`
    return { ok: false, bin, reason: `${cc} -O2 failed: ${first.trim()}` }
  }
  return { ok: true, bin, reason: null }
}

/** The C floor (floor.c) in `buildDir`. */
function buildFloor(source, buildDir) {
  return compile(source, path.join(buildDir, 'floor'))
}

/**
 * The Node-API floor (napi-floor.c): a Node-API addon in `buildDir`. Its Node-API symbols are
 * left undefined, to be resolved from the node binary when it loads (macOS needs a flag for it).
 */
function buildNapiFloor(source, buildDir) {
  const flags = ['-shared', '-fPIC']
  if (process.platform === 'darwin') flags.push('-undefined', 'dynamic_lookup')
  return compile(source, path.join(buildDir, 'napi-floor.node'), flags)
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

/**
 * `count` reads at random.js's record offsets of `file`, in place from a mapping and by pread:
 * `{ inPlace, pread, sum }`, nanoseconds per read (each timed from open to close) and the sum
 * of the bytes read.
 */
function floorRandom(bin, file, count) {
  const [inPlace, pread, sum] = run(bin, ['random', file, String(count)]).split(' ').map(Number)
  return { inPlace, pread, sum }
}

/** fdatasync + posix_fadvise(POSIX_FADV_DONTNEED) over `file`. */
function dropPageCache(bin, file) {
  run(bin, ['drop', file])
}

module.exports = { buildFloor, buildNapiFloor, floorPairs, floorRandom, dropPageCache }
