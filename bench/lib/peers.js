'use strict'
// The peer packages the benchmarks compare against: installed by the bench itself into
// bench/.peers/ (gitignored), never dependencies of node-mmap. Installed once and reused.
//
// Both are NAN addons without prebuilt binaries for this Node: their install script tries a
// download (fails offline), then node-gyp compiles them, which needs C++17 and Node's headers.
// npm 11 blocks dependency install scripts unless allowed: --dangerously-allow-all-scripts here
// (each install is into a throwaway prefix holding only that peer). An npm that does not
// know that setting runs install scripts by default, so it is passed only when npm knows it.

const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const PEERS = [
  { name: 'mmap-io', version: '1.1.7' },
  { name: '@riaskov/mmap-io', version: '1.4.3' },
]

const INSTALL_TIMEOUT_MS = 10 * 60 * 1000

function packageDir(prefix, name) {
  return path.join(prefix, 'node_modules', ...name.split('/'))
}

function installedVersion(prefix, name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(packageDir(prefix, name), 'package.json'), 'utf8'))
      .version
  } catch {
    return null
  }
}

function hasBinary(prefix, name) {
  const release = path.join(packageDir(prefix, name), 'build', 'Release')
  try {
    return fs.readdirSync(release).some((file) => file.endsWith('.node'))
  } catch {
    return false
  }
}

/** A Node source/headers directory matching this Node, for node-gyp: none means it downloads. */
function nodeDir() {
  const candidates = [path.dirname(path.dirname(process.execPath)), '/usr', '/usr/local']
  for (const dir of candidates) {
    try {
      const header = fs.readFileSync(path.join(dir, 'include', 'node', 'node_version.h'), 'utf8')
      const version = ['MAJOR', 'MINOR', 'PATCH']
        .map((part) => new RegExp(`#define NODE_${part}_VERSION (\\d+)`).exec(header)[1])
        .join('.')
      if (`v${version}` === process.version) return dir
    } catch {
      // not here
    }
  }
  return null
}

/** The flag that lets install scripts run, if this npm needs one. */
function allowScriptsFlags() {
  const probe = spawnSync('npm', ['config', 'get', 'dangerously-allow-all-scripts'], {
    encoding: 'utf8',
  })
  const value = (probe.stdout || '').trim()
  // `false`/`true`: npm knows the setting (npm 11+, which blocks scripts by default).
  // `undefined`: an older npm, which runs install scripts anyway.
  return value === 'false' || value === 'true' ? ['--dangerously-allow-all-scripts'] : []
}

function tail(text, lines = 6) {
  return String(text || '')
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line && !/^npm (notice|warn)/i.test(line))
    .slice(-lines)
    .join(' | ')
}

/** The line of npm's output that says why a build failed, most telling first. */
function failureReason(text) {
  const lines = String(text || '')
    .split('\n')
    .map((line) => line.replace(/^npm (error|ERR!) ?/, '').trim())
  const patterns = [
    /\berror: .+/,
    /fatal error: .+/,
    /make: \*\*\* .+/,
    /ERR! stack Error: .+/,
    /^code E\w+/,
    /^\S.*\b(ENOTFOUND|ETIMEDOUT|E404|EAI_AGAIN)\b.*/,
  ]
  for (const pattern of patterns) {
    const line = lines.find((l) => pattern.test(l))
    if (line) return line.length > 240 ? `${line.slice(0, 239)}…` : line
  }
  return tail(text, 3)
}

function npmInstall(prefix, specs, log) {
  const env = { ...process.env, CXXFLAGS: `${process.env.CXXFLAGS || ''} -std=c++17`.trim() }
  const dir = nodeDir()
  if (dir) env.npm_config_nodedir = dir
  const args = [
    'install',
    '--prefix',
    prefix,
    '--no-save',
    '--no-package-lock',
    '--no-audit',
    '--no-fund',
    ...allowScriptsFlags(),
    ...specs,
  ]
  fs.appendFileSync(log, `\n$ npm ${args.join(' ')}  (npm_config_nodedir=${dir || '(unset)'})\n`)
  const result = spawnSync('npm', args, { env, encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS })
  fs.appendFileSync(log, `${result.stdout || ''}${result.stderr || ''}`)
  if (result.error) return { ok: false, reason: `npm: ${result.error.message}` }
  if (result.status !== 0)
    return { ok: false, reason: `npm exited ${result.status}: ${failureReason(result.stderr)}` }
  return { ok: true }
}

/** Loads a peer in a child process: a broken addon must not take the bench down. */
function loadCheck(dir) {
  const script = `const p = require(${JSON.stringify(dir)}); if (typeof p.map !== 'function') throw new Error('no map()')`
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 })
  if (result.status === 0) return null
  const line = tail(result.stderr, 40)
    .split(' | ')
    .find((l) => /^\w*Error\b/.test(l))
  return `does not load: ${line || tail(result.stderr, 2) || `exit ${result.status} ${result.signal || ''}`}`
}

/**
 * Makes sure each peer is installed and loads; returns one entry per peer:
 * `{ name, version, dir, ok, reason }`. Each peer gets its own prefix (bench/.peers/<slug>/):
 * npm prunes what its command line does not name, and one peer that fails to build must not
 * take the other down.
 */
function ensurePeers(root, say) {
  fs.mkdirSync(root, { recursive: true })
  const log = path.join(root, 'install.log')
  return PEERS.map((peer) => {
    const prefix = path.join(root, peer.name.replace(/^@/, '').replace(/\//g, '+'))
    const dir = packageDir(prefix, peer.name)
    const ready = () =>
      installedVersion(prefix, peer.name) === peer.version && hasBinary(prefix, peer.name)
    let reason = null
    if (!ready()) {
      say(
        `installing ${peer.name}@${peer.version} into ${path.relative(process.cwd(), prefix)} (once; log: ${path.relative(process.cwd(), log)})`,
      )
      fs.mkdirSync(prefix, { recursive: true })
      const result = npmInstall(prefix, [`${peer.name}@${peer.version}`], log)
      if (!result.ok) reason = result.reason
      else if (!ready())
        reason = 'not built: npm finished without a compiled addon (install scripts skipped?)'
    }
    if (!reason) reason = loadCheck(dir)
    return { name: peer.name, version: peer.version, dir, ok: !reason, reason }
  })
}

module.exports = { PEERS, ensurePeers, loadCheck, failureReason }
