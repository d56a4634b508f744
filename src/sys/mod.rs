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
