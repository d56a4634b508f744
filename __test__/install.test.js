'use strict'
// `npm install git+<url>` from another project: the install path the README gives.
//
// The repository's HEAD (commit first: uncommitted changes are not in it) is cloned to a temp
// dir, then a fresh project runs `npm init -y && npm install git+file://<clone>`. npm clones it
// again, installs its devDependencies, runs `prepare` (a full, clean cargo build of the addon)
// and packs the result with package.json's "files"; the package arrives from that tarball.
// So this proves the clean build works and that "files" carries the built *.node. Slow: a
// release build with LTO, about half a minute here, minutes on a cold cargo registry.

const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const TIMEOUT = 10 * 60 * 1000

// The child's environment: none of the outer npm's npm_* variables (`npm test` sets them, and
// npm_config_* ones would steer the inner npm), and no CARGO_TARGET_DIR, so the build starts
// from nothing.
const env = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name) && name !== 'CARGO_TARGET_DIR'),
)

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: TIMEOUT })
  assert.equal(result.error, undefined, `${command} ${args.join(' ')}: ${result.error}`)
  assert.equal(
    result.status,
    0,
    `${command} ${args.join(' ')} in ${cwd} exited with ${result.status} (signal ${result.signal}):\n` +
      `${result.stdout}\n${result.stderr}`,
  )
  return result
}

const top = spawnSync('git', ['-C', __dirname, 'rev-parse', '--show-toplevel'], { encoding: 'utf8' })
const repo = top.status === 0 ? top.stdout.trim() : null

// `npm` runs on the first `node` on PATH, and so does the build it starts (prepare: napi build),
// which needs what @napi-rs/cli 3 declares: Node ^20.17.0 || ^22.13.0 || >= 23.5.0. Another Node
// (18, say, put first on PATH to run this suite) cannot build the package, so the test says so.
const pathNode = spawnSync('node', ['--version'], { env, encoding: 'utf8' })
const [major, minor] = (pathNode.stdout || '').replace(/^v/, '').split('.').map(Number)
const canBuild = major === 20 ? minor >= 17 : major === 22 ? minor >= 13 : major === 23 ? minor >= 5 : major >= 24
const skip = !repo
  ? 'not in a git checkout'
  : !canBuild
    ? `the build needs Node ^20.17.0 || ^22.13.0 || >= 23.5.0 (@napi-rs/cli 3); \`node\` on PATH is ${pathNode.stdout.trim() || pathNode.error}`
    : false
const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-install-'))
after(() => fs.rmSync(temp, { recursive: true, force: true }))

test(
  'npm install git+file://<clone> builds the addon and require("node-mmap") maps a file',
  { timeout: TIMEOUT, skip },
  () => {
    const clone = path.join(temp, 'clone')
    run('git', ['clone', '--quiet', repo, clone], temp)
    assert.ok(!fs.readdirSync(clone).some((f) => f.endsWith('.node')), 'the clone holds no built addon')

    const project = path.join(temp, 'project') // npm init names it "project", not "node-mmap"
    fs.mkdirSync(project)
    run('npm', ['init', '-y'], project)
    run('npm', ['install', '--no-audit', '--no-fund', `git+file://${clone}`], project)

    // What arrived is the packed tarball, cut down to package.json's "files": the built addon
    // is there, the sources are not.
    const installed = path.join(project, 'node_modules', 'node-mmap')
    assert.ok(!fs.lstatSync(installed).isSymbolicLink(), 'installed from a tarball, not linked')
    const files = fs.readdirSync(installed)
    assert.ok(files.includes('index.js'), `index.js in ${files}`)
    assert.ok(files.includes('index.d.ts'), `index.d.ts in ${files}`)
    assert.ok(files.includes('package.json'), `package.json in ${files}`)
    assert.ok(
      files.some((f) => /^node-mmap\..+\.node$/.test(f)),
      `the built node-mmap.<platform>.node in ${files}`,
    )
    for (const absent of ['src', 'Cargo.toml', 'target', 'node_modules', '__test__']) {
      assert.ok(!files.includes(absent), `${absent} is not packed: ${files}`)
    }

    // Map a file from the project and check it against fs (the oracle), both ways.
    const script = `
      const fs = require('fs')
      const mmap = require('node-mmap')
      const file = ${JSON.stringify(path.join(temp, 'data'))}
      fs.writeFileSync(file, Buffer.from('hello from a file on disk'))
      const fd = fs.openSync(file, 'r+')
      const size = fs.fstatSync(fd).size
      const buf = mmap.map(size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd)
      fs.closeSync(fd)
      if (!buf.equals(fs.readFileSync(file))) throw new Error('mapping differs from the file')
      buf.write('HELLO', 0)
      console.log(fs.readFileSync(file, 'latin1'))
      console.log(require.resolve('node-mmap'))
    `
    const result = run(process.execPath, ['-e', script], project)
    assert.equal(
      result.stdout,
      `HELLO from a file on disk\n${path.join(installed, 'index.js')}\n`,
    )
  },
)
