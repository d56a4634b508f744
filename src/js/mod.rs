//! The JavaScript boundary: everything that turns JS values into the core's terms and back.
//!
//! - [`args`], [`options`]: argument validation, in Node's words.
//! - [`raw`]: every raw Node-API call, each in a small wrapper.
//! - [`errors`]: Node-style errors (`ERR_*` codes, system errors with `errno` and `syscall`).
//! - [`view`]: any view (Buffer, TypedArray, DataView, ArrayBuffer) -> its mapping and range;
//!   [`view::Target`], what every ranged operation works on, whether a view or a `Mapping`
//!   named it; the one bounds check.
//! - [`flusher`]: the thread-safe function that has [`crate::core::reclaim`] unmap a thread's
//!   waiting run of dropped mappings on its next event-loop turn.
//! - [`buffer`]: zero-copy Buffers via the raw `napi_create_external_buffer`, and their
//!   finalizer (the last one releases the mapping; nothing is ever detached).

pub mod args;
pub mod buffer;
pub mod errors;
pub mod flusher;
pub mod options;
pub mod raw;
pub mod view;
