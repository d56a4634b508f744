//! The fault table: which address ranges are live mappings of ours, readable from a signal
//! handler without locks or allocation, and what the handler needs to know of each: its
//! [`Record`] (range, size of its pages, protection, path, and the counters SIGBUS recovery
//! keeps): a small part of the `Mapping`, so that what runs in a signal handler
//! (`core::recovery`, the hook of `sys::signals`) reads only atomics and plain fields, and this
//! table knows nothing of the rest of a mapping.
//!
//! The registry (a hash table behind a mutex) cannot be read from a signal handler: the faulting
//! thread may hold its lock. So every live mapping also takes a slot in this table of atomics. A
//! handler scans the slots in use; a slot being given up waits until no handler is looking at it
//! (`busy`), so the record a handler found stays alive while it works.
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
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// What the signal handlers know of one mapping (a field of `Mapping`, which enters it in the
/// table while it is live): its range, the size of its pages, its protection, its file's path,
/// and the pages SIGBUS recovery replaced. The handlers read it and update its counters with
/// atomics only.
pub struct Record {
  addr: usize,
  len: usize,
  /// The protection asked for (what a recovered page gets).
  prot: i32,
  /// Whether `protect()` ever ran on the mapping: then its pages' rights may differ from `prot`.
  reprotected: AtomicBool,
  /// The file's path, where known, for diagnostics.
  path: Option<Box<[u8]>>,
  /// The size of the pages behind the range: the system's page size, or a huge page size
  /// (`MAP_HUGETLB`, or a file on hugetlbfs). The kernel maps, unmaps and replaces such a range
  /// only in whole huge pages.
  granule: usize,
  /// A file in ordinary pages: a lost page there is past the end of a truncated file, and so
  /// are the lost pages after it, which SIGBUS recovery may replace at once (not for anonymous
  /// or huge pages, which a huge page pool that runs dry loses one by one).
  file_pages: bool,
  /// Pages lost under the mapping (SIGBUS) and replaced with zeros.
  faults: AtomicUsize,
  /// The offset from which SIGBUS recovery replaced the rest of the mapping with zeros (a lost
  /// tail), or `usize::MAX`: a later recovery below it replaces only up to it.
  lost_from: AtomicUsize,
  /// The offset from which every page is lost, as far as SIGBUS recovery learned, or
  /// `usize::MAX`: at most [`Record::lost_from`], and below it where recovery replaced the start
  /// of a lost tail longer than it replaces at once (the rest is replaced as it is touched).
  lost_tail: AtomicUsize,
  /// Set while `remap()` moves the pages of a `MAP_PRIVATE` file mapping, whose range has no
  /// rights meanwhile: a fault there waits for the move to end, then the access runs again
  /// (see `Mapping::move_to`).
  moving: AtomicBool,
}

impl Record {
  /// The record of `len` bytes mapped at `addr` with `prot`, in pages of `granule` bytes; no
  /// fault yet.
  pub fn new(
    addr: usize,
    len: usize,
    prot: i32,
    granule: usize,
    file_pages: bool,
    path: Option<Box<[u8]>>,
  ) -> Record {
    Record {
      addr,
      len,
      prot,
      reprotected: AtomicBool::new(false),
      path,
      granule,
      file_pages,
      faults: AtomicUsize::new(0),
      lost_from: AtomicUsize::new(usize::MAX),
      lost_tail: AtomicUsize::new(usize::MAX),
      moving: AtomicBool::new(false),
    }
  }

  /// Whether `remap()` is moving the pages (see the field).
  pub fn moving(&self) -> bool {
    self.moving.load(Ordering::SeqCst)
  }

  /// Sets whether `remap()` is moving the pages (see the field).
  pub fn set_moving(&self, moving: bool) {
    self.moving.store(moving, Ordering::SeqCst);
  }

  /// The first byte of the mapping (page-aligned).
  pub fn addr(&self) -> usize {
    self.addr
  }

  /// The mapping's length in bytes, as asked for (the OS rounds up to whole pages).
  pub fn len(&self) -> usize {
    self.len
  }

  /// The size of the pages behind the mapping (see the field).
  pub fn granule(&self) -> usize {
    self.granule
  }

  /// The length of the range the OS actually mapped: whole pages (whole huge pages with
  /// `MAP_HUGETLB` or on hugetlbfs).
  pub fn extent(&self) -> usize {
    self.len.next_multiple_of(self.granule)
  }

  /// The protection the mapping was made with.
  pub fn prot(&self) -> i32 {
    self.prot
  }

  /// The mapped file's path, where known.
  pub fn path(&self) -> Option<&[u8]> {
    self.path.as_deref()
  }

  /// Whether a lost page's lost successors may be replaced with it (see the field).
  pub fn file_pages(&self) -> bool {
    self.file_pages
  }

  /// Whether `protect()` ever changed part of the mapping's rights.
  pub fn reprotected(&self) -> bool {
    self.reprotected.load(Ordering::Acquire)
  }

  /// Records whether `protect()` ever changed part of the mapping's rights.
  pub fn set_reprotected(&self, reprotected: bool) {
    self.reprotected.store(reprotected, Ordering::Release);
  }

  /// How many lost pages (SIGBUS) were replaced with zeros.
  pub fn faults(&self) -> usize {
    self.faults.load(Ordering::Acquire)
  }

  /// Counts `pages` lost pages replaced with zeros (from the signal handler: one atomic add).
  pub fn record_fault(&self, pages: usize) {
    self.faults.fetch_add(pages, Ordering::AcqRel);
  }

  /// Where the lost tail replaced by SIGBUS recovery starts (see the field).
  pub fn lost_from(&self) -> usize {
    self.lost_from.load(Ordering::Acquire)
  }

  /// Records that everything from `offset` to the end was replaced (from the signal handler).
  pub fn lose_from(&self, offset: usize) {
    self.lost_from.fetch_min(offset, Ordering::AcqRel);
    self.lost_tail.fetch_min(offset, Ordering::AcqRel);
  }

  /// Where the lost tail starts, replaced or not yet (see the field).
  pub fn lost_tail(&self) -> usize {
    self.lost_tail.load(Ordering::Acquire)
  }

  /// Records that every page from `offset` on is lost, though only the first ones were replaced
  /// (from the signal handler).
  pub fn lose_tail_from(&self, offset: usize) {
    self.lost_tail.fetch_min(offset, Ordering::AcqRel);
  }
}

struct Slot {
  /// The mapping's first byte; 0 while the slot is free.
  start: AtomicUsize,
  len: AtomicUsize,
  record: AtomicPtr<Record>,
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

/// Takes a slot for `record` (which must stay alive, where it is, until [`unregister`]). Fails
/// with `ENOMEM` only when memory for a new segment cannot be had.
pub fn register(record: &Record) -> io::Result<usize> {
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
  slot.len.store(record.extent(), Ordering::Relaxed);
  slot
    .record
    .store(std::ptr::from_ref(record).cast_mut(), Ordering::Relaxed);
  // Release: a handler that reads this start (SeqCst, so also Acquire) sees `len` and `record`
  // above. HIGH is raised before: a handler that sees the start also scans this far.
  if index >= HIGH.load(Ordering::Relaxed) {
    HIGH.fetch_max(index + 1, Ordering::SeqCst);
  }
  slot.start.store(record.addr(), Ordering::Release);
  Ok(index)
}

/// Gives the slot back; returns once no signal handler can still be using its record.
pub fn unregister(index: usize) {
  let slot = slot(index).expect("a registered slot lies in a published segment");
  // Start 1 (no mapping starts at address 1): no new handler takes it as a match.
  slot.start.store(1, Ordering::SeqCst);
  while slot.busy.load(Ordering::SeqCst) != 0 {
    std::hint::spin_loop();
  }
  slot.record.store(std::ptr::null_mut(), Ordering::Relaxed);
  slot.start.store(0, Ordering::Release);
  let mut free = FREE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
  // The list holds at most one entry per slot ever used; if it cannot grow, the slot is lost
  // (a later `register` takes a new one) rather than the process aborted.
  if free.given_back.try_reserve(1).is_ok() {
    free.given_back.push(index);
  }
}

/// Calls `f` with the record of the live mapping containing `addr` and the offset of `addr` in
/// it. Async-signal-safe: atomics only, no locks, no allocation.
pub fn with_record_at<R>(addr: usize, f: impl FnOnce(&Record, usize) -> R) -> Option<R> {
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

/// Runs `f` (taken from the option) if `slot` holds the record of the live mapping containing
/// `addr`.
fn try_slot<R, F: FnOnce(&Record, usize) -> R>(slot: &Slot, addr: usize, f: &mut Option<F>) -> Option<R> {
  let start = slot.start.load(Ordering::SeqCst);
  if start <= 1 || addr < start || addr - start >= slot.len.load(Ordering::Relaxed) {
    return None;
  }
  slot.busy.fetch_add(1, Ordering::SeqCst);
  // Read the slot again, whole, under `busy`: `unregister` changes `start` before it waits for
  // `busy`, so a slot that still shows `start` cannot be given up while we look, and its `len`
  // and `record` (written before `start` was published) belong to that `start`. The slot may
  // have been freed and taken again at the same address since the first look: then this is the
  // new mapping, with its own length.
  let current = slot.start.load(Ordering::SeqCst);
  let len = slot.len.load(Ordering::Relaxed);
  let record = slot.record.load(Ordering::Acquire);
  let result = match (
    current != start || record.is_null() || addr - start >= len,
    f.take(),
  ) {
    (false, Some(f)) => {
      // SAFETY: the slot still holds this record and `busy` is raised, so `unregister` (which
      // runs before the record's mapping is freed) waits until we are done with it.
      Some(f(unsafe { &*record }, addr - start))
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
