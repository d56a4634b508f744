//! The fault table: which address ranges are live mappings of ours, readable from a signal
//! handler without locks or allocation.
//!
//! The registry (a hash table behind a mutex) cannot be read from a signal handler: the faulting
//! thread may hold its lock. So every live mapping also takes a slot in this fixed array of
//! atomics. A handler scans the slots in use; a slot being given up waits until no handler is
//! looking at it (`busy`), so the mapping a handler found stays alive while it works.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::mapping::Mapping;

/// More than `vm.max_map_count` less the runtime's headroom (`mapping::reserve_vmas`), for the
/// default (65530) and for the 262144 that database hosts often set: every live mapping fits.
/// Free slots are zero pages of .bss; handlers scan only up to the highest slot ever used.
const SLOTS: usize = 1 << 18;

struct Slot {
  /// The mapping's first byte; 0 while the slot is free.
  start: AtomicUsize,
  len: AtomicUsize,
  mapping: AtomicPtr<Mapping>,
  /// Signal handlers using this slot right now.
  busy: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise `TABLE`
const FREE: Slot = Slot {
  start: AtomicUsize::new(0),
  len: AtomicUsize::new(0),
  mapping: AtomicPtr::new(std::ptr::null_mut()),
  busy: AtomicUsize::new(0),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
/// One past the highest slot ever used: handlers scan no further.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// Where the next search for a free slot starts: after the last slot taken, or at the lowest one
/// given back since. Only a hint: `register` claims slots with a compare-exchange.
static CURSOR: AtomicUsize = AtomicUsize::new(0);

/// Takes a slot for `mapping` (which must stay alive until [`unregister`]); `None` if the table
/// is full, and then faults in this mapping are not handled (the process dies as without us).
pub fn register(mapping: &Mapping) -> Option<usize> {
  let first = CURSOR.load(Ordering::Relaxed);
  for step in 0..SLOTS {
    let index = (first + step) % SLOTS;
    let slot = &TABLE[index];
    if slot.start.load(Ordering::Relaxed) != 0 {
      continue;
    }
    // Claim the slot with a placeholder start of 1 (no mapping starts at address 1), fill it,
    // then publish the real start: a handler never sees a half-written slot as a match.
    if slot
      .start
      .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
      .is_err()
    {
      continue;
    }
    slot.len.store(mapping.extent(), Ordering::Relaxed);
    slot
      .mapping
      .store(std::ptr::from_ref(mapping).cast_mut(), Ordering::Relaxed);
    // Release: a handler that reads this start (SeqCst, so also Acquire) sees `len` and
    // `mapping` above.
    slot.start.store(mapping.addr() as usize, Ordering::Release);
    if index >= HIGH.load(Ordering::Relaxed) {
      HIGH.fetch_max(index + 1, Ordering::SeqCst);
    }
    CURSOR.store((index + 1) % SLOTS, Ordering::Relaxed);
    return Some(index);
  }
  None
}

/// Gives the slot back; returns once no signal handler can still be using its mapping.
pub fn unregister(index: usize) {
  let slot = &TABLE[index];
  slot.start.store(1, Ordering::SeqCst);
  while slot.busy.load(Ordering::SeqCst) != 0 {
    std::hint::spin_loop();
  }
  slot.mapping.store(std::ptr::null_mut(), Ordering::Relaxed);
  slot.start.store(0, Ordering::Release);
  // The next `register` starts at the lowest slot given back since the last claim, so slots are
  // reused from the bottom and handlers scan few. (Moving the cursor to every slot given back
  // would leave it wherever the garbage collector's last finalizer was: a loop that makes and
  // drops mappings by the thousand then marched through the whole table, 8 MiB of slots out of
  // cache, and handlers scanned all of it.) A race between two threads only spoils the hint.
  if index < CURSOR.load(Ordering::Relaxed) {
    CURSOR.store(index, Ordering::Relaxed);
  }
}

/// Calls `f` with the live mapping containing `addr` and the offset of `addr` in it.
/// Async-signal-safe: atomics only, no locks, no allocation.
pub fn with_mapping_at<R>(addr: usize, f: impl FnOnce(&Mapping, usize) -> R) -> Option<R> {
  let high = HIGH.load(Ordering::SeqCst);
  for slot in &TABLE[..high] {
    let start = slot.start.load(Ordering::SeqCst);
    if start <= 1 || addr < start || addr - start >= slot.len.load(Ordering::Relaxed) {
      continue;
    }
    slot.busy.fetch_add(1, Ordering::SeqCst);
    // Read the slot again, whole, under `busy`: `unregister` changes `start` before it waits for
    // `busy`, so a slot that still shows `start` cannot be given up while we look, and its
    // `len` and `mapping` (written before `start` was published) belong to that `start`. The
    // slot may have been freed and taken again at the same address since the first look (freed
    // slots are reused first): then this is the new mapping, with its own length.
    let current = slot.start.load(Ordering::SeqCst);
    let len = slot.len.load(Ordering::Relaxed);
    let mapping = slot.mapping.load(Ordering::Acquire);
    if current != start || mapping.is_null() || addr - start >= len {
      slot.busy.fetch_sub(1, Ordering::SeqCst);
      continue;
    }
    // SAFETY: the slot still holds this mapping and `busy` is raised, so `unregister` (which
    // runs before the mapping is freed) waits until we are done with it.
    let result = f(unsafe { &*mapping }, addr - start);
    slot.busy.fetch_sub(1, Ordering::SeqCst);
    return Some(result);
  }
  None
}
