//! The OS layer, chosen by `cfg` (as memmap2 chooses its `os` module): each platform file
//! exports the same functions, the same `consts` module and the same `signals` module, so the
//! rest of the crate never names an OS. Nothing here imports from the crate.
//!
//! - `unix.rs`: Linux, macOS and the BSDs (Linux-only calls are `cfg`-gated inside it and
//!   refused with `ENOTSUP`, or 0 for a flag, on the others), with [`signals`]: the SIGBUS and
//!   SIGSEGV handlers and the async-signal-safe primitives their hook uses.
//! - `windows.rs`: Windows (issue 14, in progress): mapping, unmapping and the toolkit over
//!   sections and views; what is not ported yet is `stub.rs`'s, re-exported (`ENOTSUP`).
//! - `stub.rs`: every other target: compiles, and every operation fails with `ENOTSUP`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;
#[cfg(unix)]
pub mod signals;

// On Windows only the parts not ported yet are used (re-exported by windows.rs).
#[cfg(not(unix))]
#[cfg_attr(windows, allow(dead_code))]
mod stub;
#[cfg(windows)]
mod windows;
#[cfg(not(any(unix, windows)))]
pub use stub::*;
#[cfg(windows)]
pub use windows::*;

/// Asks the CPU to bring the cache line at `address` in, ready to be written, while other work
/// goes on. The hot paths use it on memory that is usually out of cache by the time it is needed
/// (a garbage collection runs between a `map()` and the finalizer of its Buffer): without it the
/// first write into such a line stalls the next locked instruction until the line arrives. A
/// hint only: a no-op off x86_64.
#[inline(always)]
pub fn prefetch_for_write(address: *const i8) {
  #[cfg(target_arch = "x86_64")]
  // SAFETY: a prefetch never faults and reads or writes nothing, whatever the address.
  unsafe {
    std::arch::x86_64::_mm_prefetch(address, std::arch::x86_64::_MM_HINT_ET0)
  };
  #[cfg(not(target_arch = "x86_64"))]
  let _ = address;
}
