//! node-mmap: mmap(2) for Node.js as a Node-API addon.
//!
//! A file, or anonymous memory, mapped straight into a `Buffer` with no copy.
//!
//! Module map:
//! - [`map`]: the `map()` export: argument checks, then the core.
//! - [`mapping`]: [`mapping::Mapping`], the owner of one OS mapping, unmapped exactly once.
//! - [`registry`]: address -> mapping, to find the mapping behind any view.
//! - [`buffer`]: zero-copy Buffers via the raw `napi_create_external_buffer`, and their finalizer.
//! - [`constants`]: `PROT_*`, `MAP_*`, `MADV_*`, `MS_*`, `PAGESIZE`, `ALLOCATION_GRANULARITY`.
//! - [`args`], [`errors`]: argument validation and Node-style errors.
//! - [`sys`]: the only code that calls the OS, one file per platform.
#![deny(clippy::all)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
// Under `cargo test` the #[napi] exports compile to nothing, so their helpers look unused.
#![cfg_attr(test, allow(dead_code))]

mod args;
mod buffer;
mod constants;
mod errors;
mod faults;
mod handle;
mod map;
mod mapping;
mod open;
mod ops;
mod options;
mod registry;
mod sys;
mod view;
