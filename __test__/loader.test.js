'use strict'
// The loader (index.js) against platforms this machine is not: in a child process whose
// process.platform / process.arch / process.execPath say otherwise, a copy of index.js in a
// scratch folder looks for the builds a folder holds. What it loads, or the error it throws,
// is checked; process.report.getReport() throws in every child, so a loader that asked it
// (slow everywhere, and it crashed Node itself with 64 KiB pages on arm64) fails.
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.join(__dirname, '..')
const built = fs.readdirSync(root).find((name) => /^node-mmap\.linux-x64-gnu\.node$/.test(name))

/** A 64-bit little-endian ELF header with one program header, PT_INTERP, naming `interpreter`. */
function fakeElf(interpreter) {
  const text = Buffer.from(`${interpreter}\0`, 'latin1')
  const bytes = Buffer.alloc(64 + 56 + text.length)
  bytes.writeUInt32BE(0x7f454c46, 0) // \x7fELF
  bytes[4] = 2 // ELFCLASS64
  bytes[5] = 1 // little-endian
  bytes[6] = 1 // version
  bytes.writeUInt16LE(2, 16) // ET_EXEC
  bytes.writeUInt16LE(62, 18) // x86-64
  bytes.writeBigUInt64LE(64n, 0x20) // e_phoff
  bytes.writeUInt16LE(64, 0x34) // e_ehsize
  bytes.writeUInt16LE(56, 0x36) // e_phentsize
  bytes.writeUInt16LE(1, 0x38) // e_phnum
  bytes.writeUInt32LE(3, 64) // p_type PT_INTERP
  bytes.writeBigUInt64LE(BigInt(64 + 56), 64 + 0x08) // p_offset
  bytes.writeBigUInt64LE(BigInt(text.length), 64 + 0x20) // p_filesz
  text.copy(bytes, 64 + 56)
  return bytes
}

/**
 * A scratch folder holding index.js and package.json, plus `files` (name -> 'addon' for a copy
 * of the real build, or bytes) and `packages` (names under node_modules, each a copy of the
 * build as its main). Runs index.js there as `platform`/`arch`, with `execPath` if given;
 * returns { loaded } (the .node file, relative to the folder) or { code, message }.
 */
function loadAs({ platform, arch, execPath, files = {}, packages = [] }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-mmap-loader-'))
  try {
    fs.copyFileSync(path.join(root, 'index.js'), path.join(dir, 'index.js'))
    fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'))
    for (const [name, content] of Object.entries(files)) {
      if (content === 'addon') fs.copyFileSync(path.join(root, built), path.join(dir, name))
      else if (content === 'fifo') assert.equal(spawnSync('mkfifo', [path.join(dir, name)]).status, 0, 'mkfifo')
      else fs.writeFileSync(path.join(dir, name), content)
    }
    for (const name of packages) {
      const pkg = path.join(dir, 'node_modules', name)
      fs.mkdirSync(pkg, { recursive: true })
      fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name, main: 'addon.node' }))
      fs.copyFileSync(path.join(root, built), path.join(pkg, 'addon.node'))
    }
    const script = `
      const fakes = ${JSON.stringify({ platform, arch, execPath: execPath ? path.join(dir, execPath) : null })}
      process.report.getReport = () => { throw new Error('the loader called process.report.getReport()') }
      Object.defineProperty(process, 'platform', { value: fakes.platform })
      Object.defineProperty(process, 'arch', { value: fakes.arch })
      if (fakes.execPath) process.execPath = fakes.execPath
      const opened = []
      const dlopen = process.dlopen
      process.dlopen = function (module, file, ...rest) {
        opened.push(file)
        return Reflect.apply(dlopen, this, [module, file, ...rest])
      }
      let out
      try {
        require(${JSON.stringify(dir)})
        out = { loaded: opened.map((f) => require('path').relative(${JSON.stringify(dir)}, f)) }
      } catch (err) {
        out = { code: err.code, message: err.message }
      }
      process.stdout.write(JSON.stringify(out))
    `
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })
    assert.equal(child.signal, null, `the child did not end (${child.signal}): ${child.stderr}`)
    assert.equal(child.status, 0, child.stderr)
    const result = JSON.parse(child.stdout)
    if (result.message) result.message = result.message.split(dir).join('<dir>')
    return result
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const linuxOnly = { skip: !built && 'needs the linux-x64-gnu build (npm run compile) to copy' }

test('with nothing to load, ERR_MMAP_NO_BINARY names the platform, every file and package tried, and what to do', () => {
  const expected = {
    'linux x64': ['linux-x64-gnu', 'linux-x64-musl'],
    'linux arm64': ['linux-arm64-gnu', 'linux-arm64-musl'],
    'win32 x64': ['win32-x64-msvc', 'win32-x64-gnu'],
    'darwin arm64': ['darwin-arm64'],
    'darwin x64': ['darwin-x64'],
    'freebsd x64': ['freebsd-x64'],
  }
  for (const [key, names] of Object.entries(expected)) {
    const [platform, arch] = key.split(' ')
    const result = loadAs({ platform, arch })
    assert.equal(result.code, 'ERR_MMAP_NO_BINARY', key)
    const files = names.map((name) => path.join('<dir>', `node-mmap.${name}.node`))
    const packages = names.map((name) => `node-mmap-${name}`)
    const list = (items) => (items.length > 1 ? `${items.slice(0, -1).join(', ')} and ${items.at(-1)}` : items[0])
    assert.equal(
      result.message,
      `node-mmap: no native addon for ${platform}-${arch}. Looked for the files ${list(files)}, and the packages ${list(packages)}. ` +
        'Install node-mmap with optional dependencies on (npm installs the package for this platform unless told ' +
        '--omit=optional or --no-optional), or build it from source: a clone of the repository and `npm install` ' +
        '(needs Rust and Cargo), or `npm run compile` after changing the Rust sources.',
      key,
    )
  }
})

test('one build beside index.js is loaded without asking which C library runs (glibc or musl)', linuxOnly, () => {
  for (const name of ['node-mmap.linux-x64-gnu.node', 'node-mmap.linux-x64-musl.node']) {
    const result = loadAs({ platform: 'linux', arch: 'x64', files: { [name]: 'addon' } })
    assert.deepEqual(result, { loaded: [name] })
  }
})

test('with both a glibc and a musl build, the one for the interpreter process.execPath names is loaded', linuxOnly, () => {
  const files = { 'node-mmap.linux-x64-gnu.node': 'addon', 'node-mmap.linux-x64-musl.node': 'addon' }
  const cases = [
    [null, 'node-mmap.linux-x64-gnu.node'], // the real node of this (glibc) machine
    ['musl-node', 'node-mmap.linux-x64-musl.node', fakeElf('/lib/ld-musl-x86_64.so.1')],
    ['glibc-node', 'node-mmap.linux-x64-gnu.node', fakeElf('/lib64/ld-linux-x86-64.so.2')],
    ['static-node', 'node-mmap.linux-x64-gnu.node', Buffer.from('\x7fELF not really')],
    // A FIFO: never read (it would block for a writer, attack pass 15), the glibc build taken.
    ['fifo-node', 'node-mmap.linux-x64-gnu.node', 'fifo'],
  ]
  for (const [execPath, expected, bytes] of cases) {
    const result = loadAs({ platform: 'linux', arch: 'x64', execPath, files: execPath ? { ...files, [execPath]: bytes } : files })
    assert.deepEqual(result, { loaded: [expected] }, execPath || 'this node')
  }
})

test('the platform package npm installed is loaded; a build beside index.js wins over it', linuxOnly, () => {
  assert.deepEqual(loadAs({ platform: 'linux', arch: 'x64', packages: ['node-mmap-linux-x64-musl'] }), {
    loaded: [path.join('node_modules', 'node-mmap-linux-x64-musl', 'addon.node')],
  })
  assert.deepEqual(
    loadAs({
      platform: 'linux',
      arch: 'x64',
      execPath: 'musl-node',
      files: { 'musl-node': fakeElf('/lib/ld-musl-x86_64.so.1') },
      packages: ['node-mmap-linux-x64-gnu', 'node-mmap-linux-x64-musl'],
    }),
    { loaded: [path.join('node_modules', 'node-mmap-linux-x64-musl', 'addon.node')] },
  )
  assert.deepEqual(
    loadAs({ platform: 'linux', arch: 'x64', files: { 'node-mmap.linux-x64-gnu.node': 'addon' }, packages: ['node-mmap-linux-x64-gnu'] }),
    { loaded: ['node-mmap.linux-x64-gnu.node'] },
  )
  // Windows: the MinGW build's package when that is the one installed.
  assert.deepEqual(loadAs({ platform: 'win32', arch: 'x64', packages: ['node-mmap-win32-x64-gnu'] }), {
    loaded: [path.join('node_modules', 'node-mmap-win32-x64-gnu', 'addon.node')],
  })
})
