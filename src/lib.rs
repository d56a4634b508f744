//! node-mmap: mmap(2) for Node.js as a Node-API addon.
//!
//! A file, or anonymous memory, mapped straight into a `Buffer` with no copy.
//!
//! Layers, each importing only from those below it:
//! - [`api`]: the exports (`map`, `openSync`/`open`, the toolkit, `wait`/`notify`, the `Mapping`
//!   class, the constants), thin adapters with one implementation per operation.
//! - [`js`]: the JavaScript boundary: every raw Node-API call (`js::raw`), argument checks,
//!   Node-style errors, views resolved to mappings, zero-copy Buffers and their finalizers, the
//!   flusher of batched unmapping.
//! - [`core`]: mappings and their safety model, the kernel-mapping guard, the fault table and
//!   the signal handlers' hook (SIGBUS recovery, the fatal diagnostic), the registry of
//!   ArrayBuffers, batched unmapping, futex words; no Node-API.
//! - [`sys`]: the only code that calls the OS, importing nothing from the crate: `sys::unix`
//!   with `sys::signals` (the SIGBUS/SIGSEGV handlers, which ask one hook of the core), or
//!   `sys::stub` (every other target: compiles, and every operation fails with `ENOTSUP`).
#![deny(clippy::all)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
// Under `cargo test` the #[napi] exports compile to nothing, so their helpers look unused.
#![cfg_attr(test, allow(dead_code))]

mod api;
mod core;
mod js;
mod sys;
