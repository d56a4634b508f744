//! The owner of one OS mapping.
//!
//! A [`Mapping`] is shared (`Arc`) by every Buffer that shows it (each Buffer's finalizer holds
//! one strong reference) and by native calls that look it up in the [registry](crate::registry).
//! The OS range is given back exactly once, when the last reference drops.
//!
//! # Safety model
//! `addr..addr + len` is a range that this value alone owns from [`Mapping::new`] until its
//! `Drop`: nothing else in the crate unmaps or remaps it, and the kernel gives no part of it to
//! anyone else while it is mapped. Every `unsafe` OS call on the range relies on this.

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::registry;
use crate::sys;

/// The range holds the file (or anonymous memory) the user mapped.
const LIVE: u8 = 0;
/// `unmap()` detached every view and swapped the range for a zero-filled placeholder, which is
/// kept (so the address cannot be reused under native code still holding it) until `Drop`.
const PLACEHOLDER: u8 = 1;

pub struct Mapping {
  addr: usize,
  len: usize,
  state: AtomicU8,
  /// External Buffers created over this mapping whose finalizer has not run yet.
  buffers: AtomicUsize,
}

impl Mapping {
  /// Maps `len` bytes (see [`sys::map`]) and registers the new mapping.
  pub fn new(len: usize, prot: i32, flags: i32, fd: i32, offset: u64) -> io::Result<std::sync::Arc<Self>> {
    let addr = sys::map(len, prot, flags, fd, offset)?;
    let mapping = std::sync::Arc::new(Mapping {
      addr: addr as usize,
      len,
      state: AtomicU8::new(LIVE),
      buffers: AtomicUsize::new(0),
    });
    registry::insert(&mapping);
    Ok(mapping)
  }

  /// The first byte of the mapping.
  pub fn addr(&self) -> *mut u8 {
    self.addr as *mut u8
  }

  /// The mapping's length in bytes (as asked for; the OS rounds up to whole pages).
  pub fn len(&self) -> usize {
    self.len
  }

  /// Whether `unmap()` has already taken the user's memory away.
  pub fn is_unmapped(&self) -> bool {
    self.state.load(Ordering::Acquire) != LIVE
  }

  /// `madvise` over `len` bytes from `offset` (page-aligned; the caller checked the bounds).
  pub fn advise(&self, offset: usize, len: usize, advice: i32) -> io::Result<()> {
    // SAFETY: the range lies inside our own mapping (safety model; bounds checked by the
    // caller), and `advice` is from the exported, non-destructive MADV_* set.
    unsafe { sys::advise(self.addr().add(offset), len, advice) }
  }

  /// Counts a new Buffer over this mapping (its finalizer calls [`Mapping::buffer_finalized`]).
  pub fn buffer_created(&self) {
    self.buffers.fetch_add(1, Ordering::AcqRel);
  }

  /// Counts a Buffer whose finalizer ran.
  pub fn buffer_finalized(&self) {
    self.buffers.fetch_sub(1, Ordering::AcqRel);
  }

  /// How many Buffers over this mapping have not been finalized.
  pub fn live_buffers(&self) -> usize {
    self.buffers.load(Ordering::Acquire)
  }
}

impl Drop for Mapping {
  fn drop(&mut self) {
    // Forget the address first, so a new mapping the kernel places here is never confused
    // with this one; removal is by identity, so a newer entry at this address is left alone.
    registry::remove(self);
    // SAFETY: this value owns the range (safety model) and is being dropped: no Buffer or
    // handle refers to it any more, so no JS view can reach the memory after this.
    if let Err(err) = unsafe { sys::unmap(self.addr(), self.len) } {
      // munmap fails only for ranges that are not ours, which the safety model rules out.
      debug_assert!(false, "munmap of an owned range failed: {err}");
    }
  }
}

/// Exposed for the registry's identity checks.
impl Mapping {
  pub fn contains(&self, addr: usize) -> bool {
    addr >= self.addr && addr - self.addr < self.len.max(1)
  }

  pub fn start(&self) -> usize {
    self.addr
  }

  #[allow(dead_code)]
  pub(crate) fn mark_placeholder(&self) -> bool {
    self
      .state
      .compare_exchange(LIVE, PLACEHOLDER, Ordering::AcqRel, Ordering::Acquire)
      .is_ok()
  }
}
