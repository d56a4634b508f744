//! The OS layer, chosen by `cfg`: each platform file exports the same functions and the same
//! `consts` module, so the rest of the crate never names an OS.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;
#[cfg(unix)]
pub mod signals;

#[cfg(not(unix))]
compile_error!("node-mmap supports Unix-like systems (Linux, macOS, the BSDs) so far");
