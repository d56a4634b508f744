//! [`Shared`]: a counted reference to a [`Mapping`], as `Arc<Mapping>` would be, whose memory is
//! recycled by each thread instead of going back to `malloc` at once.
//!
//! A program that maps in a loop makes and drops a `Mapping` per `map()`, by the thousand
//! between two garbage collections, each freed by a finalizer long after it was made. With
//! `Arc`, that was one `malloc` and one `free` per `map()` amid Node's own allocations for the
//! Buffer: glibc's per-thread cache holds 7 blocks of a size, so most of them went through its
//! shared bins (atomic operations, consolidation). Here a thread keeps up to [`KEEP`] freed
//! blocks on a stack of its own and takes new ones from it first: no atomic operation, no lock.
//! A block freed by one thread may be reused by another; past [`KEEP`], and when a thread ends,
//! blocks go back to the global allocator.
//!
//! The counting is `Arc`'s: increments `Relaxed` (a new reference is made from one that exists),
//! the decrement `Release`, and the last holder's `Acquire` fence before the value is dropped,
//! so every use of the value by other holders happens before its drop.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::mem::offset_of;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::atomic::{self, AtomicUsize, Ordering};

use crate::core::mapping::Mapping;

/// What one block holds: the count and the value.
struct Inner {
  strong: AtomicUsize,
  value: Mapping,
}

/// The most freed blocks a thread keeps (at most ~450 KiB of blocks with a `Mapping` of about
/// 100 bytes, and 32 KiB of stack): more than a `map()` loop makes between two garbage
/// collections of a small young generation.
const KEEP: usize = 4096;

/// A thread's freed blocks, as a stack of pointers. Not a list threaded through the blocks: a
/// garbage collection runs between the finalizers that free them and the `map()`s that reuse
/// them and leaves the blocks out of cache, so reading a list's next pointer out of the block on
/// top stalled every `map()` (a third of `Mapping::adopt`'s samples in a profile), where the
/// stack's pointers sit in a few hot lines. (Measured: `map` alone 0.98x, at the edge of the
/// noise; and nothing is ever written into a freed block.)
struct FreeBlocks {
  blocks: RefCell<Vec<NonNull<Inner>>>,
}

impl Drop for FreeBlocks {
  fn drop(&mut self) {
    for block in self.blocks.get_mut().drain(..) {
      // SAFETY: every block on the stack is a free block from `alloc::alloc(LAYOUT)`, on the
      // stack once (see `give_back`), and taken off it here.
      unsafe { alloc::dealloc(block.as_ptr().cast(), LAYOUT) };
    }
  }
}

thread_local! {
  static FREE: FreeBlocks = const {
    FreeBlocks {
      blocks: RefCell::new(Vec::new()),
    }
  };
}

const LAYOUT: Layout = Layout::new::<Inner>();

/// A block for one `Inner`: one of this thread's freed blocks, or a new one.
fn take() -> NonNull<Inner> {
  // `try_borrow_mut`: nothing here calls back into the stack, but should it ever, the block
  // comes from the allocator instead of a panic.
  let reused = FREE
    .try_with(|free| {
      let mut blocks = free.blocks.try_borrow_mut().ok()?;
      let block = blocks.pop()?;
      if let Some(next) = blocks.last() {
        prefetch_block(next.as_ptr());
      }
      Some(block)
    })
    .ok()
    .flatten();
  reused.unwrap_or_else(|| {
    // SAFETY: `Inner` is not zero-sized.
    let block = unsafe { alloc::alloc(LAYOUT) }.cast::<Inner>();
    NonNull::new(block).unwrap_or_else(|| alloc::handle_alloc_error(LAYOUT))
  })
}

/// Starts fetching, for writing, every cache line of a block (two or three of 64 bytes): from its
/// first byte in steps of 64, and its last byte.
fn prefetch_block(block: *const Inner) {
  let first = block.cast::<i8>();
  for offset in (0..LAYOUT.size()).step_by(64).chain([LAYOUT.size() - 1]) {
    crate::sys::prefetch_for_write(first.wrapping_add(offset));
  }
}

/// Gives back a block whose value has been dropped.
///
/// # Safety
/// `block` came from [`take`], its value is dropped, and nothing refers to it any more.
unsafe fn give_back(block: NonNull<Inner>) {
  let kept = FREE
    .try_with(|free| {
      let Ok(mut blocks) = free.blocks.try_borrow_mut() else {
        return false;
      };
      if blocks.len() >= KEEP {
        return false;
      }
      if blocks.capacity() == 0 {
        // Room for all of them at once: the stack never grows while finalizers run.
        blocks.reserve_exact(KEEP);
      }
      blocks.push(block);
      true
    })
    .unwrap_or(false);
  if !kept {
    // SAFETY: allocated with LAYOUT (by `take`), free, and not kept on any stack.
    unsafe { alloc::dealloc(block.as_ptr().cast(), LAYOUT) };
  }
}

/// A counted reference to a [`Mapping`]: cloning adds a reference, dropping the last one drops
/// the `Mapping` (which unmaps it). `Send` and `Sync` as `Arc<Mapping>` is.
pub struct Shared {
  inner: NonNull<Inner>,
}

// The two `unsafe impl`s below rest on this: the build fails if `Mapping` ever stops being both.
const _: fn() = || {
  fn send_and_sync<T: Send + Sync>() {}
  send_and_sync::<Mapping>();
};

// SAFETY: a `Shared` gives out only `&Mapping`, and `Mapping` is `Send + Sync` (checked above: its
// mutable state is atomics and mutexes); the count is atomic, so references may move and drop on
// any thread, and the last one drops the value wherever it is.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
  pub fn new(value: Mapping) -> Self {
    let inner = take();
    // SAFETY: `take` returns a block for one `Inner`, which nothing else uses.
    unsafe {
      inner.as_ptr().write(Inner {
        strong: AtomicUsize::new(1),
        value,
      })
    };
    Shared { inner }
  }

  fn inner(&self) -> &Inner {
    // SAFETY: this reference keeps the block's value alive.
    unsafe { self.inner.as_ref() }
  }

  /// Gives up this reference as a raw pointer to the `Mapping`; [`Shared::from_raw`] takes it
  /// back.
  pub fn into_raw(this: Self) -> *const Mapping {
    // Through the block's raw pointer, not `&Inner`: a pointer derived from a shared reference
    // may only read, and `from_raw`'s holder will write (the last one drops the value and
    // recycles the block).
    // SAFETY: `inner` points to a live block (this reference keeps it alive); no reference is
    // made, only the field's address computed.
    let value = unsafe { ptr::addr_of!((*this.inner.as_ptr()).value) };
    std::mem::forget(this);
    value
  }

  /// Takes back a reference given up with [`Shared::into_raw`].
  ///
  /// # Safety
  /// `value` came from [`Shared::into_raw`] (or was counted by
  /// [`Shared::increment_strong_count`]), and that reference is taken back once.
  pub unsafe fn from_raw(value: *const Mapping) -> Self {
    // SAFETY: `value` is the `value` field of an `Inner` (the caller's contract), so the block
    // starts `offset_of!(Inner, value)` bytes before it.
    let inner = unsafe { value.byte_sub(offset_of!(Inner, value)) }.cast::<Inner>();
    Shared {
      // SAFETY: derived from a non-null pointer into a live block.
      inner: unsafe { NonNull::new_unchecked(inner.cast_mut()) },
    }
  }

  /// Adds a reference to the `Mapping` at `value`, for a later [`Shared::from_raw`].
  ///
  /// # Safety
  /// `value` came from [`Shared::into_raw`] and that reference is still held, so the block is
  /// alive while the count goes up.
  pub unsafe fn increment_strong_count(value: *const Mapping) {
    // SAFETY: forwarded: a reference given up with `into_raw` is still held.
    let borrowed = std::mem::ManuallyDrop::new(unsafe { Shared::from_raw(value) });
    std::mem::forget(Shared::clone(&borrowed));
  }

  /// Starts fetching the block behind a reference given up with [`Shared::into_raw`] (a
  /// finalizer's, usually out of cache by the time it runs). Any pointer is harmless: the
  /// address is only computed.
  pub fn prefetch_raw(value: *const Mapping) {
    prefetch_block(value.wrapping_byte_sub(offset_of!(Inner, value)).cast());
  }

  /// Whether two references are to the same `Mapping`.
  #[cfg(test)]
  pub fn ptr_eq(a: &Self, b: &Self) -> bool {
    a.inner == b.inner
  }

  /// How many references there are now.
  #[cfg(test)]
  pub fn strong_count(this: &Self) -> usize {
    this.inner().strong.load(Ordering::Acquire)
  }
}

impl Clone for Shared {
  fn clone(&self) -> Self {
    // Relaxed, as `Arc`: a new reference is made from one that exists, which orders it.
    let old = self.inner().strong.fetch_add(1, Ordering::Relaxed);
    // A count that could overflow means references are leaked by the billion: stop, as `Arc`
    // does, rather than free the value while references remain.
    if old > isize::MAX as usize {
      std::process::abort();
    }
    Shared { inner: self.inner }
  }
}

impl Deref for Shared {
  type Target = Mapping;

  fn deref(&self) -> &Mapping {
    &self.inner().value
  }
}

impl Drop for Shared {
  fn drop(&mut self) {
    if self.inner().strong.fetch_sub(1, Ordering::Release) != 1 {
      return;
    }
    // Every other holder's uses (before their Release decrements) happen before the drop.
    atomic::fence(Ordering::Acquire);
    // SAFETY: this was the last reference: nothing else can reach the value, which is dropped
    // once, here; then the block is free to reuse.
    unsafe {
      ptr::drop_in_place(ptr::addr_of_mut!((*self.inner.as_ptr()).value));
      give_back(self.inner);
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn anonymous() -> Shared {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    Mapping::new(4096, libc::PROT_READ, flags, -1, 0, None).unwrap()
  }

  #[test]
  fn the_last_reference_unmaps_and_the_block_is_reused() {
    let first = anonymous();
    let block = first.inner;
    let second = first.clone();
    assert_eq!(Shared::strong_count(&first), 2);
    drop(first);
    assert_eq!(Shared::strong_count(&second), 1);
    drop(second);
    // The freed block heads this thread's list: the next `Shared` gets it.
    let again = anonymous();
    assert_eq!(again.inner, block);
  }

  #[test]
  fn raw_round_trips_keep_the_count() {
    let mapping = anonymous();
    let raw = Shared::into_raw(mapping.clone());
    // SAFETY: `raw` came from `into_raw` and is still held.
    unsafe { Shared::increment_strong_count(raw) };
    assert_eq!(Shared::strong_count(&mapping), 3);
    // SAFETY: two references were given up as `raw`; each is taken back once.
    let (a, b) = unsafe { (Shared::from_raw(raw), Shared::from_raw(raw)) };
    assert!(Shared::ptr_eq(&a, &mapping) && std::ptr::eq(&*a, &*mapping));
    drop((a, b));
    assert_eq!(Shared::strong_count(&mapping), 1);
  }

  #[test]
  fn a_thread_keeps_at_most_keep_blocks() {
    std::thread::spawn(|| {
      let many: Vec<Shared> = (0..KEEP + 10).map(|_| anonymous()).collect();
      drop(many);
      assert_eq!(FREE.with(|free| free.blocks.borrow().len()), KEEP);
    })
    .join()
    .unwrap();
  }

  #[test]
  fn references_move_between_threads() {
    let mapping = anonymous();
    let clones: Vec<Shared> = (0..8).map(|_| mapping.clone()).collect();
    let threads: Vec<_> = clones
      .into_iter()
      .map(|clone| std::thread::spawn(move || clone.len()))
      .collect();
    for thread in threads {
      assert_eq!(thread.join().unwrap(), 4096);
    }
    assert_eq!(Shared::strong_count(&mapping), 1);
  }
}
