//! node-mmap: mmap(2) for Node.js as a Node-API addon.
//!
//! A file, or anonymous memory, mapped straight into a `Buffer` with no copy.
//!
//! Module map:
//! - The exports: [`map`] (`map()`), [`open`] (`openSync`/`open`), [`ops`] (`unmap`, `remap`,
//!   `advise`, `incore`, `sync`, `flush`, `lock`, `unlock`, `protect`, `faults`,
//!   `setSigbusRecovery`), [`futex`] (`wait`, `waitAsync`, `notify`), [`handle`] (the `Mapping`
//!   class), [`constants`].
//! - [`mapping`]: [`mapping::Mapping`], the owner of one OS mapping, unmapped exactly once; and
//!   the guard that keeps the process under `vm.max_map_count`.
//! - [`fast`]: plain Node-API entry points for `map` and `unmap`, installed over napi-rs's glue
//!   (the same hook gives each env its `reclaim` flusher).
//! - [`registry`]: ArrayBuffer start -> mapping, to find the mapping behind any view; placeholder
//!   runs.
//! - [`faults`]: the lock-free table of live mappings that the signal handlers read.
//! - [`reclaim`]: what finalizers drop, unmapped in runs of adjacent ranges (one munmap for many).
//! - [`buffer`]: zero-copy Buffers via the raw `napi_create_external_buffer`, and their
//!   finalizer (the last one releases the mapping; nothing is ever detached).
//! - [`view`]: any view -> its mapping and range; the one bounds check.
//! - [`args`], [`options`], [`errors`]: argument validation and Node-style errors.
//! - [`sys`]: the only code that calls the OS (`sys::unix`, `sys::signals`).
#![deny(clippy::all)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
// Under `cargo test` the #[napi] exports compile to nothing, so their helpers look unused.
#![cfg_attr(test, allow(dead_code))]

mod args;
mod buffer;
mod constants;
mod errors;
mod fast;
mod faults;
mod futex;
mod handle;
mod map;
mod mapping;
mod open;
mod ops;
mod options;
mod reclaim;
mod registry;
mod shared;
mod sys;
mod view;
