'use strict'
// The loader: finds the native addon built for this platform, then adds what only JavaScript
// knows (buffer.constants.MAX_LENGTH) and makes the constants read-only. Everything else lives
// in the Rust crate (src/); its `///` docs become index.d.ts.

const { closeSync, constants, existsSync, fstatSync, openSync, readSync } = require('node:fs')
const { sep, toNamespacedPath } = require('node:path')
const { constants: bufferConstants } = require('node:buffer')

// The builds that could serve this process, best first: on Linux the glibc and the musl one, on
// Windows x64 the MSVC build (what a Windows machine makes) and the MinGW one (what a Linux
// machine cross-builds, .ci/wine.sh; the official node.exe loads both).
function platforms() {
  const { platform, arch } = process
  if (platform === 'linux') return [`linux-${arch}-gnu`, `linux-${arch}-musl`]
  if (platform === 'win32') return [`win32-${arch}-msvc`, `win32-${arch}-gnu`]
  return [`${platform}-${arch}`]
}

// The C library the running executable was linked against, asked only when both a glibc and a
// musl build are there to choose from: the ELF interpreter (PT_INTERP) that process.execPath
// names, read from its first page (/lib/ld-musl-x86_64.so.1, /lib64/ld-linux-x86-64.so.2).
// A few microseconds, where process.report.getReport() (which also tells) takes milliseconds
// and has crashed Node itself with 64 KiB pages on arm64. 'gnu' when the file says nothing.
function runtimeLibc() {
  let fd = -1
  try {
    // Without blocking (process.execPath can be set to a FIFO), and only a regular file is read.
    fd = openSync(process.execPath, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0))
    if (!fstatSync(fd).isFile()) return 'gnu'
    const head = Buffer.alloc(4096)
    const length = readSync(fd, head, 0, head.length, 0)
    const interpreter = elfInterpreter(head.subarray(0, length), (at, size) => {
      const bytes = Buffer.alloc(size)
      return bytes.subarray(0, readSync(fd, bytes, 0, size, at))
    })
    return interpreter !== null && interpreter.includes('musl') ? 'musl' : 'gnu'
  } catch {
    return 'gnu'
  } finally {
    if (fd >= 0) closeSync(fd)
  }
}

// The PT_INTERP path of the ELF file whose first bytes are `head` (`read(at, size)` reads
// further), or null (not ELF, or no interpreter: a static executable).
function elfInterpreter(head, read) {
  if (head.length < 52 || head.readUInt32BE(0) !== 0x7f454c46) return null
  const wide = head[4] === 2 // ELFCLASS64
  const little = head[5] === 1 // ELFDATA2LSB
  const u16 = (b, at) => (little ? b.readUInt16LE(at) : b.readUInt16BE(at))
  const u32 = (b, at) => (little ? b.readUInt32LE(at) : b.readUInt32BE(at))
  const word = (b, at) => (wide ? Number(little ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at)) : u32(b, at))
  const phoff = word(head, wide ? 0x20 : 0x1c)
  const phentsize = u16(head, wide ? 0x36 : 0x2a)
  const phnum = u16(head, wide ? 0x38 : 0x2c)
  const table = phoff + phentsize * phnum <= head.length ? head.subarray(phoff) : read(phoff, phentsize * phnum)
  for (let i = 0; i < phnum && (i + 1) * phentsize <= table.length; i++) {
    const entry = table.subarray(i * phentsize)
    if (u32(entry, 0) !== 3) continue // PT_INTERP
    const offset = word(entry, wide ? 0x08 : 0x04)
    const size = Math.min(word(entry, wide ? 0x20 : 0x10), 4096)
    const bytes = offset + size <= head.length ? head.subarray(offset, offset + size) : read(offset, size)
    return bytes.toString('latin1').replace(/\0.*$/s, '')
  }
  return null
}

// Of `paths` (for each of `names`, its build, or null where there is none), the one to load:
// the only one, or, with both a glibc and a musl build, the running executable's; null when
// there is none. Plain loops: this runs on every load, in code V8 has not warmed up.
function choose(names, paths) {
  let first = -1
  let count = 0
  for (let i = 0; i < paths.length; i++) {
    if (paths[i] === null) continue
    if (first < 0) first = i
    count++
  }
  if (count < 2 || process.platform !== 'linux') return first < 0 ? null : paths[first]
  const suffix = `-${runtimeLibc()}`
  for (let i = 0; i < paths.length; i++) if (paths[i] !== null && names[i].endsWith(suffix)) return paths[i]
  return paths[first]
}

// A package's entry, without loading it; null when it is not installed.
function resolvePackage(name) {
  try {
    return require.resolve(name)
  } catch (err) {
    if (err && err.code === 'MODULE_NOT_FOUND') return null
    throw err
  }
}

// Loads the addon at `file`, as require() of a .node file does, without require's search
// (a third of the load: 1.0 ms for process.dlopen alone, 1.4 ms for require of the file).
function open(file) {
  const addon = { exports: {} }
  process.dlopen(addon, toNamespacedPath(file))
  return addon.exports
}

// A build beside this file wins (a source build, for developers), then the package npm
// installed for this platform (its `os`/`cpu`/`libc` fields let npm pick only the one that
// fits).
function load() {
  const names = platforms()
  const files = []
  for (let i = 0; i < names.length; i++) files.push(`${__dirname}${sep}node-mmap.${names[i]}.node`)
  const local = []
  for (let i = 0; i < files.length; i++) local.push(existsSync(files[i]) ? files[i] : null)
  const file = choose(names, local)
  if (file !== null) return open(file)
  const packages = names.map((platform) => `node-mmap-${platform}`)
  const entry = choose(names, packages.map(resolvePackage))
  if (entry !== null) return open(entry)
  const list = (items) => (items.length > 1 ? `${items.slice(0, -1).join(', ')} and ${items.at(-1)}` : items[0])
  const error = new Error(
    `node-mmap: no native addon for ${process.platform}-${process.arch}. ` +
      `Looked for the files ${list(files)}, and the packages ${list(packages)}. ` +
      'Install node-mmap with optional dependencies on (npm installs the package for this platform ' +
      'unless told --omit=optional or --no-optional), or build it from source: a clone of the ' +
      'repository and `npm install` (needs Rust and Cargo), or `npm run compile` after changing the Rust sources.',
  )
  error.code = 'ERR_MMAP_NO_BINARY'
  throw error
}

const binding = load()
// The largest Buffer the runtime makes (Bun and Deno let a program change the constant: the
// addon asks the runtime itself before it maps more than 4 GiB for one Buffer).
const maxLength = bufferConstants.MAX_LENGTH
binding.__setBufferMaxLength(typeof maxLength === 'number' ? maxLength : 2 ** 32)
// Node 20 to 24 say "Received an instance of " of an object whose class has no name; Node 18
// and 26 show it as util.inspect(value, { depth: -1 }) does ({}): errors word it as the
// running Node does. Node is asked at the first such error, not at load (its error takes about
// as long to make as the addon takes to load).
let inspectsAnonymous
binding.__setDescribeAnonymous((value) => {
  if (inspectsAnonymous === undefined) {
    try {
      Buffer.alloc(new (class {})())
      inspectsAnonymous = false
    } catch (err) {
      inspectsAnonymous = !String(err && err.message).endsWith('Received an instance of ')
    }
  }
  return inspectsAnonymous ? require('node:util').inspect(value, { depth: -1 }) : undefined
})

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

// The exports: every name the addon gives except its `__` helpers; none can be added, removed
// or redefined, and the constants are read-only (functions stay writable, for test doubles).
const mmap = {}
for (const name in binding) if (!name.startsWith('__')) mmap[name] = binding[name]
mmap.Mapping = Mapping
const readOnly = { writable: false }
for (const name in mmap) if (typeof mmap[name] !== 'function') Object.defineProperty(mmap, name, readOnly)
Object.seal(mmap)

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
