//! The JavaScript boundary: everything that turns JS values into the core's terms and back.
//!
//! - [`args`], [`options`]: argument validation, in Node's words.
//! - [`errors`]: Node-style errors (`ERR_*` codes, system errors with `errno` and `syscall`).
//! - [`view`]: any view (Buffer, TypedArray, DataView, ArrayBuffer) -> its mapping and range;
//!   the one bounds check.
//! - [`buffer`]: zero-copy Buffers via the raw `napi_create_external_buffer`, and their
//!   finalizer (the last one releases the mapping; nothing is ever detached).

pub mod args;
pub mod buffer;
pub mod errors;
pub mod options;
pub mod view;
