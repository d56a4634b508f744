'use strict'
// The loader: finds the native addon built for this platform, then adds what only JavaScript
// knows (buffer.constants.MAX_LENGTH) and makes the constants read-only. Everything else lives
// in the Rust crate (src/); its `///` docs become index.d.ts.

const { existsSync } = require('node:fs')
const { join } = require('node:path')
const { constants: bufferConstants } = require('node:buffer')

function libc() {
  if (process.platform !== 'linux') return ''
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
  const header = report && (typeof report === 'string' ? JSON.parse(report).header : report.header)
  return header && header.glibcVersionRuntime ? '-gnu' : '-musl'
}

function platformName() {
  const abi = process.platform === 'win32' ? '-msvc' : libc()
  return `${process.platform}-${process.arch}${abi}`
}

// The addon files to look for beside this one, best first. On Windows x64 the MSVC build comes
// first (what a Windows machine builds); then the MinGW one (x86_64-pc-windows-gnu), which is
// what a Linux machine can cross-build (.ci/wine.sh) and which the official node.exe loads too.
function localFiles(platform) {
  const files = [`node-mmap.${platform}.node`]
  if (process.platform === 'win32' && process.arch === 'x64') files.push('node-mmap.win32-x64-gnu.node')
  return files
}

function load() {
  const platform = platformName()
  const tried = []
  for (const file of localFiles(platform)) {
    const local = join(__dirname, file)
    tried.push(local)
    if (existsSync(local)) return require(local)
  }
  const pkg = `node-mmap-${platform}`
  tried.push(pkg)
  try {
    return require(pkg)
  } catch (err) {
    if (err && err.code !== 'MODULE_NOT_FOUND') throw err
  }
  const looked = tried.length > 2 ? `${tried.slice(0, -1).join(', ')} and ${tried.at(-1)}` : tried.join(' and ')
  const error = new Error(
    `node-mmap: no native addon for ${platform}. Looked for ${looked}. ` +
      'Build it from a clone of the repository with `npm install` (needs Rust and Cargo), ' +
      'or `npm run build` after changing the Rust sources.',
  )
  error.code = 'ERR_MMAP_NO_BINARY'
  throw error
}

const binding = load()
binding.__setBufferMaxLength(bufferConstants.MAX_LENGTH)

// Methods and getters called on something that is not a Mapping throw Node's
// ERR_INVALID_THIS, as Node's own classes do, instead of V8's "Illegal invocation" or
// napi-rs's uncoded unwrap error (what `Object.create(Mapping.prototype)` gets).
function invalidThis() {
  const error = new TypeError('Value of "this" must be of type Mapping')
  error.code = 'ERR_INVALID_THIS'
  return error
}
function isForeignReceiver(error) {
  if (!error || error.code !== undefined && error.code !== 'InvalidArg') return false
  // napi-rs's messages: a method's unwrap, or a getter's check of the class (an object another
  // addon wrapped, given Mapping.prototype, passes `instanceof` and fails there).
  return (
    error.message === 'Illegal invocation' ||
    /^Failed to unwrap .*`Mapping`/.test(error.message) ||
    error.message === 'Value is not an instance of class `Mapping`'
  )
}
for (const name of Object.getOwnPropertyNames(binding.Mapping.prototype)) {
  if (name === 'constructor') continue
  const descriptor = Object.getOwnPropertyDescriptor(binding.Mapping.prototype, name)
  for (const kind of ['value', 'get']) {
    const native = descriptor[kind]
    if (typeof native !== 'function') continue
    descriptor[kind] = {
      [name](...args) {
        if (!(this instanceof binding.Mapping)) throw invalidThis()
        try {
          return Reflect.apply(native, this, args)
        } catch (error) {
          throw isForeignReceiver(error) ? invalidThis() : error
        }
      },
    }[name]
  }
  Object.defineProperty(binding.Mapping.prototype, name, descriptor)
}

// A class constructor called without `new` must throw, as JavaScript's own classes do; the
// native constructor would map anyway and attach the mapping to whatever `this` was.
const Mapping = new Proxy(binding.Mapping, {
  apply() {
    const error = new TypeError("Class constructor Mapping cannot be invoked without 'new'")
    error.code = 'ERR_CONSTRUCT_CALL_REQUIRED'
    throw error
  },
})
// The prototype's `constructor` is that guarded one too (an instance's `constructor` would
// otherwise hand out the native function).
Object.defineProperty(binding.Mapping.prototype, 'constructor', {
  value: Mapping,
  writable: true,
  enumerable: false,
  configurable: true,
})

const mmap = {}
for (const name of Object.keys(binding)) {
  if (name.startsWith('__')) continue
  const value = name === 'Mapping' ? Mapping : binding[name]
  Object.defineProperty(mmap, name, {
    value,
    enumerable: true,
    writable: typeof value === 'function',
    configurable: false,
  })
}

// `using m = Mapping.open(path)` unmaps at the end of the block, where the runtime has
// explicit resource management.
if (typeof Symbol.dispose === 'symbol') {
  Object.defineProperty(binding.Mapping.prototype, Symbol.dispose, {
    value: function dispose() {
      if (!(this instanceof binding.Mapping)) throw invalidThis()
      this.unmap()
    },
    writable: true,
    configurable: true,
  })
}

module.exports = mmap
