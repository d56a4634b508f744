// File-level checks of what `npm run prebuild` made (bash .ci/prebuilt.sh runs this first), for
// every platform, including those no runtime here can load (musl, macOS):
//
// - each binary's format and CPU, that it exports the Node-API module entry point
//   (napi_register_module_v1) and leaves the napi_* functions to be found when Node loads it;
// - linux-*-gnu: no glibc symbol version newer than 2.17, and only glibc's own libraries needed;
// - linux-*-musl: needs musl's libc (soname libc.so) and nothing of glibc (no libc.so.6, no
//   GLIBC_* symbol versions);
// - darwin-*: a Mach-O dylib whose minimum macOS is the one scripts/prebuild.sh asks for, with
//   napi_* bound by dynamic lookup (not to a library that would have to exist);
// - win32-x64-gnu: a PE DLL that imports napi_* from node.exe and otherwise only Windows' own
//   DLLs (no MinGW runtime DLL a user would not have);
// - each platform package.json: npm's own platform check (npm-install-checks, bundled with npm)
//   accepts it on its platform and refuses it on every other;
// - the tarballs: the root one holds no binary and pins every platform package to its version;
//   each platform one holds its package.json and its binary only.
//
// Usage: node .ci/prebuilt/check-binaries.js   (from the repository root, after npm run prebuild)
'use strict'
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..', '..')
const { version, name } = require(path.join(root, 'package.json'))

const PLATFORMS = {
  'linux-x64-gnu': { os: 'linux', cpu: 'x64', libc: 'glibc', format: 'elf', machine: 'Advanced Micro Devices X86-64' },
  'linux-x64-musl': { os: 'linux', cpu: 'x64', libc: 'musl', format: 'elf', machine: 'Advanced Micro Devices X86-64' },
  'linux-arm64-gnu': { os: 'linux', cpu: 'arm64', libc: 'glibc', format: 'elf', machine: 'AArch64' },
  'linux-arm64-musl': { os: 'linux', cpu: 'arm64', libc: 'musl', format: 'elf', machine: 'AArch64' },
  'darwin-x64': { os: 'darwin', cpu: 'x64', format: 'macho', cputype: 0x01000007, minos: '10.13' },
  'darwin-arm64': { os: 'darwin', cpu: 'arm64', format: 'macho', cputype: 0x0100000c, minos: '11.0' },
  'win32-x64-gnu': { os: 'win32', cpu: 'x64', format: 'pe' },
}

let failures = 0
let passes = 0
function check(title, fn) {
  try {
    fn()
    passes++
    console.log(`ok - ${title}`)
  } catch (error) {
    failures++
    console.log(`not ok - ${title}\n  ${String(error.stack || error).split('\n').join('\n  ')}`)
  }
}

const run = (file, args) => execFileSync(file, args, { encoding: 'utf8', maxBuffer: 64 << 20 })

// --- ELF (readelf from binutils reads any architecture) ------------------------------------------

function checkElf(file, want) {
  const header = run('readelf', ['-h', '-W', file])
  assert.match(header, /Class:\s+ELF64/)
  assert.match(header, /Type:\s+DYN/)
  assert.equal(/Machine:\s+(.*)/.exec(header)[1].trim(), want.machine)
  const symbols = run('readelf', ['--dyn-syms', '-W', file]).split('\n')
  const entry = symbols.filter((l) => / napi_register_module_v1$/.test(l))
  assert.equal(entry.length, 1, 'one napi_register_module_v1 in the dynamic symbols')
  assert.match(entry[0], /FUNC\s+GLOBAL\s+DEFAULT\s+\d+ napi_register_module_v1$/, 'defined and exported')
  const napiUndefined = symbols.filter((l) => /\sUND napi_\w+/.test(l))
  assert.ok(napiUndefined.length > 20, `napi_* functions left to the loader (${napiUndefined.length})`)
  assert.ok(!symbols.some((l) => /\s\d+ napi_(create|get)_\w+$/.test(l)), 'no napi_* function of its own')
  const needed = [...run('readelf', ['-d', '-W', file]).matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1])
  const versions = run('readelf', ['-V', '-W', file])
  const glibcVersions = [...versions.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [+m[1], +m[2], +(m[3] || 0)])
  if (want.libc === 'glibc') {
    const glibcLibraries = /^(libc\.so\.6|libpthread\.so\.0|libdl\.so\.2|libm\.so\.6|librt\.so\.1|libgcc_s\.so\.1|ld-linux-[\w-]+\.so\.\d)$/
    for (const lib of needed) assert.match(lib, glibcLibraries, `needs only glibc's own libraries (${needed})`)
    assert.ok(needed.includes('libc.so.6'), `needs libc.so.6 (${needed})`)
    assert.ok(glibcVersions.length > 0, 'has glibc symbol versions')
    const newest = glibcVersions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]).at(-1)
    assert.ok(newest[0] === 2 && newest[1] <= 17, `newest glibc symbol version GLIBC_${newest.join('.')} is at most 2.17`)
    return `needs ${needed.join(', ')}; newest symbol version GLIBC_${newest.slice(0, newest[2] ? 3 : 2).join('.')}`
  }
  assert.deepEqual(needed, ['libc.so'], `needs musl's libc.so and nothing else (${needed})`)
  assert.equal(glibcVersions.length, 0, 'no GLIBC_* symbol version')
  assert.doesNotMatch(versions, /\.gnu\.version_r/, 'no version requirements at all')
  return `needs ${needed.join(', ')} (musl's soname; glibc's is libc.so.6); no symbol versions`
}

// --- Mach-O (read here: nothing on a Linux machine lists its load commands) ----------------------

const LC_SYMTAB = 0x2
const LC_VERSION_MIN_MACOSX = 0x24
const LC_BUILD_VERSION = 0x32
const LC_DYLD_INFO_ONLY = 0x80000022
const MH_DYLIB = 6
const N_EXT = 0x01
const N_TYPE = 0x0e
const N_UNDF = 0x0
const N_SECT = 0xe
const BIND_SPECIAL_DYLIB_FLAT_LOOKUP = -2

// The library ordinal that dyld's bind opcodes (normal and lazy) give each symbol they bind.
function bindOrdinals(b, streams) {
  const ordinals = new Map()
  const uleb = (state) => {
    let value = 0n
    let shift = 0n
    for (;;) {
      const byte = b[state.at++]
      value |= BigInt(byte & 0x7f) << shift
      shift += 7n
      if (!(byte & 0x80)) return value
    }
  }
  for (const [start, size] of streams) {
    const state = { at: start }
    let ordinal = 0
    let symbol = null
    while (state.at < start + size) {
      const byte = b[state.at++]
      const op = byte & 0xf0
      const imm = byte & 0x0f
      if (op === 0x00) continue // DONE (the lazy stream has one after each symbol)
      else if (op === 0x10) ordinal = imm
      else if (op === 0x20) ordinal = Number(uleb(state))
      else if (op === 0x30) ordinal = imm === 0 ? 0 : imm - 16 // SPECIAL: sign-extended
      else if (op === 0x40) {
        const end = b.indexOf(0, state.at)
        symbol = b.toString('latin1', state.at, end)
        state.at = end + 1
      } else if (op === 0x50 || op === 0x90 || op === 0xb0) {
        if (op !== 0x50 && symbol !== null) ordinals.set(symbol, ordinal)
      } else if (op === 0x60 || op === 0x70 || op === 0x80) uleb(state)
      else if (op === 0xa0) {
        if (symbol !== null) ordinals.set(symbol, ordinal)
        uleb(state)
      } else if (op === 0xc0) {
        if (symbol !== null) ordinals.set(symbol, ordinal)
        uleb(state)
        uleb(state)
      } else throw new Error(`bind opcode 0x${byte.toString(16)} not understood`)
    }
  }
  return ordinals
}

function checkMachO(file, want) {
  const b = fs.readFileSync(file)
  assert.equal(b.readUInt32LE(0), 0xfeedfacf, 'a 64-bit little-endian Mach-O file')
  assert.equal(b.readUInt32LE(4), want.cputype, 'cputype')
  assert.equal(b.readUInt32LE(12), MH_DYLIB, 'filetype MH_DYLIB')
  const ncmds = b.readUInt32LE(16)
  let offset = 32
  let minos = null
  let symtab = null
  let binds = null
  for (let i = 0; i < ncmds; i++) {
    const cmd = b.readUInt32LE(offset)
    const size = b.readUInt32LE(offset + 4)
    if (cmd === LC_BUILD_VERSION || cmd === LC_VERSION_MIN_MACOSX) {
      const v = b.readUInt32LE(offset + (cmd === LC_BUILD_VERSION ? 12 : 8))
      minos = `${v >>> 16}.${(v >> 8) & 0xff}`
    }
    if (cmd === LC_SYMTAB) {
      symtab = { symoff: b.readUInt32LE(offset + 8), nsyms: b.readUInt32LE(offset + 12), stroff: b.readUInt32LE(offset + 16) }
    }
    if (cmd === LC_DYLD_INFO_ONLY) {
      const at = (k) => b.readUInt32LE(offset + k)
      binds = bindOrdinals(b, [
        [at(16), at(20)],
        [at(32), at(36)],
      ])
    }
    offset += size
  }
  assert.equal(minos, want.minos, 'minimum macOS version')
  assert.ok(symtab, 'has a symbol table')
  const symbols = []
  for (let i = 0; i < symtab.nsyms; i++) {
    const at = symtab.symoff + i * 16
    const strx = b.readUInt32LE(at)
    const type = b[at + 4]
    const end = b.indexOf(0, symtab.stroff + strx)
    symbols.push({ name: b.toString('latin1', symtab.stroff + strx, end), type })
  }
  const entry = symbols.filter((s) => s.name === '_napi_register_module_v1')
  assert.equal(entry.length, 1, 'one _napi_register_module_v1')
  assert.equal(entry[0].type & N_TYPE, N_SECT, 'defined in a section')
  assert.ok(entry[0].type & N_EXT, 'external')
  const napi = symbols.filter((s) => /^_napi_(?!register_module_v1$)/.test(s.name))
  assert.ok(napi.length > 20, `napi_* functions referenced (${napi.length})`)
  for (const s of napi) {
    assert.equal(s.type & N_TYPE, N_UNDF, `${s.name} undefined`)
    assert.equal(binds?.get(s.name), BIND_SPECIAL_DYLIB_FLAT_LOOKUP, `${s.name} bound by flat lookup (found in whatever loaded it)`)
  }
  return `minimum macOS ${minos}; ${napi.length} napi_* functions bound by flat lookup`
}

// --- PE (the mingw objdump that .ci/wine.sh setup installs) --------------------------------------

function checkPe(file) {
  const dump = run('x86_64-w64-mingw32-objdump', ['-p', file])
  assert.match(dump, /file format pei-x86-64/)
  assert.match(dump, /Characteristics [^\n]*\n(?:\s+.*\n)*?\s+DLL\b/, 'a DLL')
  assert.match(dump, /\[\s*\d+\] napi_register_module_v1\b/, 'exports napi_register_module_v1')
  const dlls = [...dump.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1].toLowerCase())
  assert.ok(dlls.includes('node.exe'), `imports from node.exe (${dlls})`)
  const windowsOwn = /^(node\.exe|kernel32\.dll|ntdll\.dll|msvcrt\.dll|advapi32\.dll|ws2_32\.dll|userenv\.dll|bcryptprimitives\.dll|api-ms-win-[\w-]+\.dll)$/
  for (const dll of dlls) assert.match(dll, windowsOwn, `imports only from node.exe and Windows' own DLLs (${dlls})`)
  const nodeImports = dump.split(/DLL Name: /i).find((part) => /^node\.exe/i.test(part))
  assert.match(nodeImports, /\bnapi_create_buffer\b/, 'napi_* imported from node.exe')
  return `imports ${[...new Set(dlls)].join(', ')}`
}

// --- packages -------------------------------------------------------------------------------------

function npmInstallChecks() {
  const npmRoot = run('npm', ['root', '-g']).trim()
  return require(path.join(npmRoot, 'npm', 'node_modules', 'npm-install-checks'))
}

function tarList(file) {
  return run('tar', ['-tzf', file]).split('\n').filter(Boolean).sort()
}

const { checkPlatform } = npmInstallChecks()

for (const [platform, want] of Object.entries(PLATFORMS)) {
  const dir = path.join(root, 'npm', platform)
  const binary = path.join(dir, `${name}.${platform}.node`)
  check(`${platform}: the binary (${want.format})`, () => {
    const said = want.format === 'elf' ? checkElf(binary, want) : want.format === 'macho' ? checkMachO(binary, want) : checkPe(binary)
    console.log(`  ${path.relative(root, binary)}: ${said}`)
  })
  check(`${platform}: package.json, and npm's platform check accepts it there and nowhere else`, () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
    assert.equal(pkg.name, `${name}-${platform}`)
    assert.equal(pkg.version, version)
    assert.equal(pkg.main, `${name}.${platform}.node`)
    for (const [other, env] of Object.entries(PLATFORMS)) {
      const environment = { os: env.os, cpu: env.cpu, libc: env.os === 'linux' ? env.libc : undefined }
      const accepted = (() => {
        try {
          checkPlatform(pkg, false, environment)
          return true
        } catch {
          return false
        }
      })()
      assert.equal(accepted, other === platform, `npm on ${other} ${accepted ? 'accepts' : 'refuses'} ${pkg.name}`)
    }
  })
  check(`${platform}: dist/${name}-${platform}-${version}.tgz holds its package.json and binary only`, () => {
    const files = tarList(path.join(root, 'dist', `${name}-${platform}-${version}.tgz`))
    assert.deepEqual(files.filter((f) => f !== 'package/README.md'), [`package/${name}.${platform}.node`, 'package/package.json'])
  })
}

check(`dist/${name}-${version}.tgz: no binary; optionalDependencies pin every platform package to ${version}`, () => {
  const file = path.join(root, 'dist', `${name}-${version}.tgz`)
  const files = tarList(file)
  for (const f of ['package/index.js', 'package/index.mjs', 'package/index.d.ts', 'package/package.json', 'package/README.md']) {
    assert.ok(files.includes(f), `${f} in ${files}`)
  }
  assert.deepEqual(files.filter((f) => f.endsWith('.node')), [])
  const pkg = JSON.parse(run('tar', ['-xzOf', file, 'package/package.json']))
  assert.deepEqual(pkg.optionalDependencies, Object.fromEntries(Object.keys(PLATFORMS).map((p) => [`${name}-${p}`, version])))
})

console.log(`\ncheck-binaries: ${passes} passed, ${failures} failed`)
process.exitCode = failures > 0 ? 1 : 0
