//! The fault table: which address ranges are live mappings of ours, readable from a signal
//! handler without locks or allocation.
//!
//! The registry (a hash table behind a mutex) cannot be read from a signal handler: the faulting
//! thread may hold its lock. So every live mapping also takes a slot in this table of atomics. A
//! handler scans the slots in use; a slot being given up waits until no handler is looking at it
//! (`busy`), so the mapping a handler found stays alive while it works.
//!
//! The table grows: it is a list of segments, each twice the size of the one before, allocated
//! by `register` (never by a handler), published with one atomic store and never freed, so a
//! handler may read any segment it sees published. There is no count of mappings a program can
//! outgrow: consecutive pages of a file merge into one kernel mapping, so a process may hold far
//! more mappings than `vm.max_map_count`, and each of them is protected. Which slots are free is
//! kept in a list behind a mutex (only `register` and `unregister` use it, never a handler), so
//! taking a slot costs the same whether the table is nearly empty or nearly full.

use std::alloc::Layout;
use std::io;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::core::mapping::Mapping;

struct Slot {
  /// The mapping's first byte; 0 while the slot is free.
  start: AtomicUsize,
  len: AtomicUsize,
  mapping: AtomicPtr<Mapping>,
  /// Signal handlers using this slot right now.
  busy: AtomicUsize,
}

/// Slots in the first segment; segment `k` holds `FIRST << k`.
const FIRST: usize = 1 << 12;
/// Segments: room for `FIRST * (2^SEGMENTS - 1)` slots, more than any address space can hold
/// mappings (the smallest mapping is a page).
const SEGMENTS: usize = 40;

/// The segments published so far (null: not allocated yet). Never freed.
static SEGMENT: [AtomicPtr<Slot>; SEGMENTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SEGMENTS];
/// One past the highest slot ever used: handlers scan no further.
static HIGH: AtomicUsize = AtomicUsize::new(0);

/// Slots given back, and the lowest slot never used (all slots from it on are free).
struct Free {
  given_back: Vec<usize>,
  never_used: usize,
}

static FREE: Mutex<Free> = Mutex::new(Free {
  given_back: Vec::new(),
  never_used: 0,
});

/// The segment holding slot `index`, and the slot's place in it.
fn locate(index: usize) -> (usize, usize) {
  // Segment k starts at FIRST * (2^k - 1): k = log2(index / FIRST + 1).
  let segment = (index / FIRST + 1).ilog2() as usize;
  (segment, index - FIRST * ((1 << segment) - 1))
}

/// The slot at `index`, if its segment is published.
fn slot(index: usize) -> Option<&'static Slot> {
  let (segment, at) = locate(index);
  let base = SEGMENT.get(segment)?.load(Ordering::Acquire);
  // SAFETY: a published segment is `FIRST << segment` zero-initialised slots that are never
  // freed (see `publish`), and `at` is below that size (see `locate`).
  (!base.is_null()).then(|| unsafe { &*base.add(at) })
}

/// Allocates segment `segment` unless it is there. Called with `FREE` locked, so by one thread
/// at a time; a handler sees either null or the whole zeroed segment (Release/Acquire).
fn publish(segment: usize) -> io::Result<()> {
  let enomem = || io::Error::from_raw_os_error(libc::ENOMEM);
  let Some(entry) = SEGMENT.get(segment) else {
    return Err(enomem());
  };
  if !entry.load(Ordering::Acquire).is_null() {
    return Ok(());
  }
  let layout = Layout::array::<Slot>(FIRST << segment).map_err(|_| enomem())?;
  // SAFETY: the layout is non-zero in size. All-zero bytes are a free slot (atomics of 0 and a
  // null pointer), and large zeroed allocations come as untouched pages of the OS.
  let base = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Slot>();
  if base.is_null() {
    return Err(enomem());
  }
  entry.store(base, Ordering::Release);
  Ok(())
}

/// Takes a slot for `mapping` (which must stay alive until [`unregister`]). Fails with `ENOMEM`
/// only when memory for a new segment cannot be had.
pub fn register(mapping: &Mapping) -> io::Result<usize> {
  let mut free = FREE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
  let index = match free.given_back.pop() {
    Some(index) => index,
    None => {
      let index = free.never_used;
      publish(locate(index).0)?;
      free.never_used += 1;
      index
    }
  };
  drop(free);
  let slot = slot(index).expect("a slot handed out lies in a published segment");
  slot.len.store(mapping.extent(), Ordering::Relaxed);
  slot
    .mapping
    .store(std::ptr::from_ref(mapping).cast_mut(), Ordering::Relaxed);
  // Release: a handler that reads this start (SeqCst, so also Acquire) sees `len` and `mapping`
  // above. HIGH is raised before: a handler that sees the start also scans this far.
  if index >= HIGH.load(Ordering::Relaxed) {
    HIGH.fetch_max(index + 1, Ordering::SeqCst);
  }
  slot.start.store(mapping.addr() as usize, Ordering::Release);
  Ok(index)
}

/// Gives the slot back; returns once no signal handler can still be using its mapping.
pub fn unregister(index: usize) {
  let slot = slot(index).expect("a registered slot lies in a published segment");
  // Start 1 (no mapping starts at address 1): no new handler takes it as a match.
  slot.start.store(1, Ordering::SeqCst);
  while slot.busy.load(Ordering::SeqCst) != 0 {
    std::hint::spin_loop();
  }
  slot.mapping.store(std::ptr::null_mut(), Ordering::Relaxed);
  slot.start.store(0, Ordering::Release);
  let mut free = FREE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
  // The list holds at most one entry per slot ever used; if it cannot grow, the slot is lost
  // (a later `register` takes a new one) rather than the process aborted.
  if free.given_back.try_reserve(1).is_ok() {
    free.given_back.push(index);
  }
}

/// Calls `f` with the live mapping containing `addr` and the offset of `addr` in it.
/// Async-signal-safe: atomics only, no locks, no allocation.
pub fn with_mapping_at<R>(addr: usize, f: impl FnOnce(&Mapping, usize) -> R) -> Option<R> {
  let high = HIGH.load(Ordering::SeqCst);
  let mut f = Some(f);
  let mut index = 0;
  for (segment, entry) in SEGMENT.iter().enumerate() {
    if index >= high {
      break;
    }
    let base = entry.load(Ordering::Acquire);
    let size = FIRST << segment;
    if base.is_null() {
      index += size;
      continue;
    }
    // SAFETY: a published segment holds `size` slots and is never freed (see `publish`).
    let slots = unsafe { std::slice::from_raw_parts(base, size) };
    for slot in &slots[..size.min(high - index)] {
      if let Some(result) = try_slot(slot, addr, &mut f) {
        return Some(result);
      }
    }
    index += size;
  }
  None
}

/// Runs `f` (taken from the option) if `slot` holds the live mapping containing `addr`.
fn try_slot<R, F: FnOnce(&Mapping, usize) -> R>(slot: &Slot, addr: usize, f: &mut Option<F>) -> Option<R> {
  let start = slot.start.load(Ordering::SeqCst);
  if start <= 1 || addr < start || addr - start >= slot.len.load(Ordering::Relaxed) {
    return None;
  }
  slot.busy.fetch_add(1, Ordering::SeqCst);
  // Read the slot again, whole, under `busy`: `unregister` changes `start` before it waits for
  // `busy`, so a slot that still shows `start` cannot be given up while we look, and its `len`
  // and `mapping` (written before `start` was published) belong to that `start`. The slot may
  // have been freed and taken again at the same address since the first look: then this is the
  // new mapping, with its own length.
  let current = slot.start.load(Ordering::SeqCst);
  let len = slot.len.load(Ordering::Relaxed);
  let mapping = slot.mapping.load(Ordering::Acquire);
  let result = match (
    current != start || mapping.is_null() || addr - start >= len,
    f.take(),
  ) {
    (false, Some(f)) => {
      // SAFETY: the slot still holds this mapping and `busy` is raised, so `unregister` (which
      // runs before the mapping is freed) waits until we are done with it.
      Some(f(unsafe { &*mapping }, addr - start))
    }
    (_, taken) => {
      *f = taken;
      None
    }
  };
  slot.busy.fetch_sub(1, Ordering::SeqCst);
  result
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn slots_are_located_in_doubling_segments() {
    assert_eq!(locate(0), (0, 0));
    assert_eq!(locate(FIRST - 1), (0, FIRST - 1));
    assert_eq!(locate(FIRST), (1, 0));
    assert_eq!(locate(3 * FIRST - 1), (1, 2 * FIRST - 1));
    assert_eq!(locate(3 * FIRST), (2, 0));
    assert_eq!(locate(7 * FIRST), (3, 0));
  }
}
