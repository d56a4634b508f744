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

/// Whether `addr` was the address of the last few faults taken for resolved (a fault that the
/// handler lets run again because the page now allows the access: Linux's
/// `signals::resolved_meanwhile`, Windows' `signals::handler`) and that faulted all the same:
/// never seen, but bounded, so that it could not loop. Async-signal-safe: two atomics.
#[cfg_attr(
  not(any(target_os = "linux", target_os = "android", windows)),
  allow(dead_code)
)]
pub(crate) fn retried_too_often(addr: usize) -> bool {
  use std::sync::atomic::{AtomicUsize, Ordering};
  static LAST: AtomicUsize = AtomicUsize::new(0);
  static REPEATS: AtomicUsize = AtomicUsize::new(0);
  if LAST.swap(addr, Ordering::Relaxed) != addr {
    REPEATS.store(1, Ordering::Relaxed);
    return false;
  }
  REPEATS.fetch_add(1, Ordering::Relaxed) >= 8
}

/// Where a [`LineOut`] writes: `write_some` writes a prefix of `bytes` and returns how many
/// bytes it wrote (0: it cannot write, and the rest is dropped).
pub trait RawWrite {
  fn write_some(&mut self, bytes: &[u8]) -> usize;
}

/// A writer for fault diagnostics through a 64-byte buffer: no allocation, and no large buffer
/// on a signal stack. Nothing is written before [`LineOut::flush`] or a full buffer.
pub struct LineOut<W: RawWrite> {
  sink: W,
  buf: [u8; 64],
  len: usize,
}

#[cfg_attr(not(any(unix, windows)), allow(dead_code))]
impl<W: RawWrite> LineOut<W> {
  /// A writer to `sink`.
  pub fn to(sink: W) -> Self {
    LineOut {
      sink,
      buf: [0; 64],
      len: 0,
    }
  }

  /// Writes `text`.
  pub fn push(&mut self, text: &[u8]) {
    for &b in text {
      if self.len == self.buf.len() {
        self.flush();
      }
      self.buf[self.len] = b;
      self.len += 1;
    }
  }

  /// Writes `n` in decimal.
  pub fn number(&mut self, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
      at -= 1;
      digits[at] = b'0' + (n % 10) as u8;
      n /= 10;
      if n == 0 {
        break;
      }
    }
    self.push(&digits[at..]);
  }

  /// Writes out what is buffered.
  pub fn flush(&mut self) {
    let mut from = 0;
    while from < self.len {
      let wrote = self.sink.write_some(&self.buf[from..self.len]);
      if wrote == 0 {
        break;
      }
      from += wrote;
    }
    self.len = 0;
  }
}
