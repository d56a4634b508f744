//! ArrayBuffer -> mapping: finds the [`Mapping`] behind any view a user passes in; and the runs
//! of placeholders that `unmap()` leaves.
//!
//! Every ArrayBuffer over a mapping is made by `buffer::create`, which records the address of
//! its first byte here before the ArrayBuffer exists; the ArrayBuffer's finalizer forgets it.
//! A view is resolved through its ArrayBuffer's first byte: one exact lookup. (Two ArrayBuffers
//! may start at the same byte, two windows of one mapping: the record counts them.)
//!
//! Each count of a record stands for one `Shared` that an ArrayBuffer's finalizer holds
//! and releases only after forgetting its count, under the lock: so while a record exists, its
//! mapping is alive, and [`find`] may take a new reference from the raw pointer. No record is ever older
//! than its mapping, so an address the kernel reuses is never matched to a mapping that is gone.
//!
//! Rust statics are shared by every worker thread, so the table sits behind a mutex; it is taken
//! once when a Buffer is made, once when it is collected, and by every lookup. It is an
//! open-addressing hash table that never allocates per record, with the likely slot prefetched
//! before the lock. Measured 2026-12-07 (issue 13) against std's `HashMap` with a one-multiply
//! hasher of the address, the same source otherwise, with bench/ab.js (CPU-time medians of 15
//! runs of 40,000 calls, six runs with the builds' order alternated, 2-core host shared with
//! other work): with `HashMap`, `map` + `unmap` pairs (4 KiB) took 1.038x (1.013-1.072x) the CPU
//! time, `map` alone 1.002x (0.97-1.05x); lookups among 10,000 live mappings
//! (bench/find-ab.js, `faults(view)`) 0.97x, 0.97x and 1.05x, inside that script's noise (the
//! same build against itself read 0.88-1.19x). (Against a `BTreeMap`, earlier: about 10% of a
//! 4 KiB `map`.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::core::mapping::{Mapping, Shared};

/// One ArrayBuffer start: the mapping behind it, and how many live ArrayBuffers start there.
/// `start == 0` marks a free slot (no mapping of ours starts at 0: node-mmap never asks for a
/// fixed address, and the kernel does not place others at page 0).
#[derive(Clone, Copy)]
struct Record {
  start: usize,
  mapping: *const Mapping,
  count: usize,
}

const FREE: Record = Record {
  start: 0,
  mapping: std::ptr::null(),
  count: 0,
};

// SAFETY: `mapping` points at a `Shared`'s value (which is `Sync`) that the record's
// holders keep alive; it is only dereferenced under the table's lock (see the module docs).
unsafe impl Send for Record {}

/// The records: an open-addressing hash table (linear probing, deletion by shifting back, so no
/// tombstones) of a power-of-two size, at most half full, halved when under 1/16 full. Every
/// operation is one short probe and never allocates, except when the table doubles or halves.
struct Records {
  slots: Vec<Record>,
  len: usize,
}

/// The smallest table: 4,096 slots (96 KiB, made with the first record). Small enough to keep,
/// and large enough that a program making and dropping a few thousand Buffers between two
/// garbage collections never resizes it (a table that shrinks as soon as it empties would be
/// rehashed on every such cycle: 10% of a `map` in the bench's map-alone loop).
const MIN_SLOTS: usize = 4096;

/// 2^64 divided by the golden ratio: the multiplier of Fibonacci hashing.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Records {
  /// The slot where a probe for `start` begins: Fibonacci hashing of the address, so mappings
  /// laid out at power-of-two strides (2 MiB-aligned, say) still spread over the table.
  fn home(&self, start: usize) -> usize {
    let bits = self.slots.len().trailing_zeros();
    ((start as u64).wrapping_mul(FIBONACCI) >> (64 - bits)) as usize
  }

  fn mask(&self) -> usize {
    self.slots.len() - 1
  }

  /// The slot holding `start`, or the free slot where it would go. The table has slots.
  fn probe(&self, start: usize) -> usize {
    let mut i = self.home(start);
    while self.slots[i].start != 0 && self.slots[i].start != start {
      i = (i + 1) & self.mask();
    }
    i
  }

  /// The slot holding `start`, if any.
  fn position(&self, start: usize) -> Option<usize> {
    if self.len == 0 {
      return None;
    }
    let i = self.probe(start);
    (self.slots[i].start == start).then_some(i)
  }

  fn get(&self, start: usize) -> Option<&Record> {
    self.position(start).map(|i| &self.slots[i])
  }

  /// The record of `start`, made (count 0, over `mapping`) if there is none.
  fn entry(&mut self, start: usize, mapping: *const Mapping) -> &mut Record {
    // A record at 0 would look like a free slot: lost, and the table's count wrong for good.
    assert_ne!(start, 0, "an ArrayBuffer at address 0");
    if self.slots.is_empty() {
      self.resize(MIN_SLOTS);
    }
    let mut i = self.probe(start);
    if self.slots[i].start == 0 {
      // A new record: first make room, so the table stays at most half full.
      if (self.len + 1) * 2 > self.slots.len() {
        self.resize(self.slots.len() * 2);
        i = self.probe(start);
      }
      self.slots[i] = Record {
        start,
        mapping,
        count: 0,
      };
      self.len += 1;
    }
    &mut self.slots[i]
  }

  /// Empties slot `i`, moving later records of its probe run back so that every record stays
  /// reachable from its home slot.
  fn remove_at(&mut self, i: usize) {
    let mask = self.mask();
    let mut hole = i;
    let mut j = i;
    loop {
      j = (j + 1) & mask;
      let start = self.slots[j].start;
      if start == 0 {
        break;
      }
      let home = self.home(start);
      // The record at `j` may fill the hole unless its home lies cyclically in (hole, j].
      let stays = if hole <= j {
        hole < home && home <= j
      } else {
        hole < home || home <= j
      };
      if !stays {
        self.slots[hole] = self.slots[j];
        hole = j;
      }
    }
    self.slots[hole] = FREE;
    self.len -= 1;
    if self.slots.len() > MIN_SLOTS && self.len * 16 < self.slots.len() {
      self.resize(self.slots.len() / 2);
    }
  }

  /// Rehashes every record into a table of `slots` slots (a power of two).
  fn resize(&mut self, slots: usize) {
    let old = std::mem::replace(&mut self.slots, vec![FREE; slots]);
    TABLE_HINT.store(self.slots.as_mut_ptr(), Ordering::Relaxed);
    TABLE_BITS.store(self.slots.len().trailing_zeros(), Ordering::Relaxed);
    for record in old.into_iter().filter(|record| record.start != 0) {
      let mut i = self.home(record.start);
      while self.slots[i].start != 0 {
        i = (i + 1) & self.mask();
      }
      self.slots[i] = record;
    }
  }
}

/// Where the table is and its size (as a power of two), copied out of `RECORDS` at each resize
/// for [`prefetch`], which reads them without the lock: a stale copy only makes a prefetch miss.
static TABLE_HINT: AtomicPtr<Record> = AtomicPtr::new(std::ptr::null_mut());
static TABLE_BITS: AtomicU32 = AtomicU32::new(0);

/// Starts bringing in the table slot where the record of `start` probably is (its home slot),
/// before the lock is taken: the slot, at a random place in a table of 96 KiB or more, is
/// usually out of cache, and fetching it under the lock made every record and removal wait.
pub fn prefetch(start: usize) {
  let (base, bits) = (
    TABLE_HINT.load(Ordering::Relaxed),
    TABLE_BITS.load(Ordering::Relaxed),
  );
  if base.is_null() || bits == 0 {
    return;
  }
  let home = ((start as u64).wrapping_mul(FIBONACCI) >> (64 - bits)) as usize;
  // `wrapping_add`: the address is only computed, never dereferenced (the table may even have
  // been replaced since).
  crate::sys::prefetch_for_write(base.wrapping_add(home).cast());
}

static RECORDS: Mutex<Records> = Mutex::new(Records {
  slots: Vec::new(),
  len: 0,
});

fn records() -> MutexGuard<'static, Records> {
  // Each operation leaves the table consistent (one insert, update or removal), so a poisoned
  // lock is still safe to use.
  RECORDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records an ArrayBuffer about to be made at `start` over `mapping`, and returns the
/// reference its finalizer holds (`Shared::into_raw`): pass it back to [`forget_buffer`].
pub fn record_buffer(mapping: Shared, start: usize) -> *const Mapping {
  let hold = Shared::into_raw(mapping);
  let mut records = records();
  let record = records.entry(start, hold);
  debug_assert!(
    std::ptr::eq(record.mapping, hold),
    "two live mappings share {start:#x}"
  );
  record.count += 1;
  hold
}

/// Forgets one ArrayBuffer recorded at `start`, then releases the reference it held.
///
/// # Safety
/// `hold` is what [`record_buffer`] returned for `start`, passed here once.
pub unsafe fn forget_buffer(start: usize, hold: *const Mapping) {
  // Both are usually out of cache in a finalizer: start fetching them before the lock.
  prefetch(start);
  crate::sys::prefetch_for_write(hold.cast());
  {
    let mut records = records();
    // Node-API hands the finalizer the data pointer the Buffer was made with, which is `start`.
    // Should a runtime hand over another pointer, the record is found by its mapping instead
    // (a scan of the whole table, on that runtime only): a record left behind would outlive its
    // mapping. If the
    // mapping has several records (windows), which one is this Buffer's cannot be told: then
    // the reference is kept (the mapping leaks) rather than another window's record forgotten.
    let slot = match records.position(start) {
      Some(i) if std::ptr::eq(records.slots[i].mapping, hold) => i,
      _ => {
        let mut mine = (0..records.slots.len())
          .filter(|&i| records.slots[i].start != 0 && std::ptr::eq(records.slots[i].mapping, hold));
        match (mine.next(), mine.next()) {
          (Some(i), None) => i,
          _ => return,
        }
      }
    };
    let record = &mut records.slots[slot];
    record.count -= 1;
    if record.count == 0 {
      records.remove_at(slot);
    }
  }
  // SAFETY: `hold` came from `Shared::into_raw` in `record_buffer` and is released once (the
  // caller's contract), after the record is gone.
  let hold = unsafe { Shared::from_raw(hold) };
  // The last view gone while waits sleep on the mapping: they are all that holds it.
  if Mapping::held_by_words_alone(&hold, 0) {
    hold.release_to_waits();
  }
  drop(hold);
}

/// The mapping behind the ArrayBuffer whose first byte is at `start`.
pub fn find(start: usize) -> Option<Shared> {
  let records = records();
  let record = records.get(start)?;
  // SAFETY: the record exists, so a holder's reference keeps the mapping alive (module docs):
  // the strong count is at least 1 while we add one, under the lock.
  unsafe {
    Shared::increment_strong_count(record.mapping);
    Some(Shared::from_raw(record.mapping))
  }
}

/// A run of adjacent placeholders (the kernel merges them into one VMA) and how many of them
/// still belong to a live [`Mapping`].
struct Run {
  len: usize,
  alive: usize,
}

/// Placeholder runs by start address.
///
/// `unmap()` leaves a placeholder over each range until the mapping's last reference drops, and
/// the kernel merges adjacent placeholders into one VMA: a million `map` + `unmap` pairs use a
/// handful of VMAs. Giving each placeholder back on its own would split those VMAs in random
/// finalizer order, up to `vm.max_map_count` (then every mmap fails with ENOMEM). So a run is
/// given back whole, in one munmap, once every placeholder in it is released.
static PLACEHOLDERS: Mutex<BTreeMap<usize, Run>> = Mutex::new(BTreeMap::new());

fn placeholders() -> MutexGuard<'static, BTreeMap<usize, Run>> {
  // As for `records()`: each update leaves the map consistent, so poisoning is harmless.
  PLACEHOLDERS
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bytes of address space that placeholders hold now (runs not yet given back).
pub fn placeholder_bytes() -> usize {
  placeholders().values().map(|run| run.len).sum()
}

/// Records a new placeholder over `addr..addr + len`, joining the runs it touches.
pub fn placeholder_added(addr: usize, len: usize) {
  let mut runs = placeholders();
  let mut start = addr;
  let mut run = Run { len, alive: 1 };
  if let Some((&left, left_run)) = runs.range(..addr).next_back() {
    if left + left_run.len == addr {
      start = left;
      run.len += left_run.len;
      run.alive += left_run.alive;
    }
  }
  if let Some(right) = runs.remove(&(addr + len)) {
    run.len += right.len;
    run.alive += right.alive;
  }
  runs.insert(start, run);
}

/// Releases the placeholder at `addr`; returns the whole run to give back once none of it is
/// alive any more.
pub fn placeholder_released(addr: usize) -> Option<(usize, usize)> {
  let mut runs = placeholders();
  let (&start, run) = runs.range_mut(..=addr).next_back()?;
  if addr >= start + run.len {
    return None;
  }
  run.alive -= 1;
  if run.alive > 0 {
    return None;
  }
  let len = run.len;
  runs.remove(&start);
  Some((start, len))
}

#[cfg(test)]
mod tests {
  use super::*;

  // Addresses far from anything mapped: these tests only exercise the bookkeeping.
  const BASE: usize = 0x7000_0000_0000;

  /// The records table against a `BTreeMap` model: random records and removals over starts
  /// that collide on purpose (power-of-two strides, several starts in one page), through
  /// growth past the minimum size and shrinking back.
  #[test]
  fn records_table_matches_a_model() {
    let mut table = Records {
      slots: Vec::new(),
      len: 0,
    };
    let mut model: BTreeMap<usize, usize> = BTreeMap::new();
    let mut x = 0x2545_f491_u64;
    let mut next = move || {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      x
    };
    let start_of = |n: u64| -> usize {
      let i = (n >> 8) as usize % 6000;
      match n % 4 {
        0 => BASE + i * 4096,
        1 => BASE + i * (2 << 20),
        2 => BASE + i * (1 << 30),
        _ => BASE + (i % 64) * 4096 + 1 + i / 64,
      }
    };
    let mapping = std::ptr::dangling::<Mapping>();
    let mut largest = 0;
    for round in 0..200_000 {
      // Mostly inserts in the first half, mostly removals in the second: the table grows to
      // thousands of records, then empties.
      let insert = next() % 100 < if round < 100_000 { 70 } else { 25 };
      if insert {
        let start = start_of(next());
        table.entry(start, mapping).count += 1;
        *model.entry(start).or_insert(0) += 1;
      } else if let Some((&start, _)) = model.range(start_of(next())..).next() {
        let i = table.position(start).expect("a recorded start is found");
        table.slots[i].count -= 1;
        if table.slots[i].count == 0 {
          table.remove_at(i);
        }
        let count = model.get_mut(&start).unwrap();
        *count -= 1;
        if *count == 0 {
          model.remove(&start);
        }
      }
      largest = largest.max(table.slots.len());
      if round % 1000 == 0 || model.len() < 50 {
        assert_eq!(table.len, model.len());
        assert!(table.len * 2 <= table.slots.len());
        for (&start, &count) in &model {
          assert_eq!(table.get(start).map(|r| r.count), Some(count), "{start:#x}");
        }
        let held = table.slots.iter().filter(|r| r.start != 0).count();
        assert_eq!(held, model.len());
      }
    }
    assert!(largest > MIN_SLOTS, "the table never grew ({largest} slots)");
    while let Some((&start, _)) = model.iter().next() {
      let i = table.position(start).unwrap();
      table.remove_at(i);
      model.remove(&start);
    }
    assert_eq!((table.len, table.slots.len()), (0, MIN_SLOTS));
    assert!(table.get(BASE).is_none());
  }

  /// Probe runs that wrap past the table's last slot: removing records before the wrap must
  /// move the wrapped ones back across it.
  #[test]
  fn records_table_wraps_around() {
    let mut table = Records {
      slots: vec![FREE; MIN_SLOTS],
      len: 0,
    };
    let last = MIN_SLOTS - 1;
    let homed = |home: usize, n: usize| -> Vec<usize> {
      (BASE..)
        .step_by(4096)
        .filter(|&start| table.home(start) == home)
        .take(n)
        .collect()
    };
    let at_end = homed(last, 4);
    let at_zero = homed(0, 2);
    let before_end = homed(last - 1, 1)[0];
    let mapping = std::ptr::dangling::<Mapping>();
    for &start in at_end.iter().chain(&at_zero) {
      table.entry(start, mapping).count = 1;
    }
    // at_end fill the last slot and slots 0 to 2; at_zero follow in 3 and 4.
    assert_eq!(table.position(at_end[1]), Some(0));
    for &gone in &at_end[..2] {
      let i = table.position(gone).unwrap();
      table.remove_at(i);
      assert!(table.get(gone).is_none());
    }
    for &start in at_end[2..].iter().chain(&at_zero) {
      assert!(table.get(start).is_some(), "{start:#x} lost");
    }
    // Each removal moved the rest of the run back by one, across the end of the table.
    assert_eq!(table.position(at_end[2]), Some(last));
    assert_eq!(table.position(at_end[3]), Some(0));
    assert_eq!(table.position(at_zero[0]), Some(1));

    // A record whose home is past the wrap stays where it is when a hole opens before the wrap.
    for (fill, remove) in [
      (vec![at_end[0], at_zero[0]], at_end[0]),
      (vec![before_end, at_end[0], at_end[1]], before_end),
    ] {
      let mut table = Records {
        slots: vec![FREE; MIN_SLOTS],
        len: 0,
      };
      for &start in &fill {
        table.entry(start, mapping).count = 1;
      }
      let i = table.position(remove).unwrap();
      table.remove_at(i);
      for &start in fill.iter().filter(|&&start| start != remove) {
        assert!(table.get(start).is_some(), "{start:#x} lost");
      }
    }
  }

  #[test]
  fn placeholder_runs_merge_and_release_whole() {
    let page = 4096;
    placeholder_added(BASE + page, page);
    placeholder_added(BASE, page); // joins on the left
    placeholder_added(BASE + 2 * page, page); // joins on the right
    assert_eq!(placeholder_released(BASE + page), None);
    assert_eq!(placeholder_released(BASE), None);
    assert_eq!(placeholder_released(BASE + 2 * page), Some((BASE, 3 * page)));
    assert_eq!(placeholder_released(BASE), None);
  }

  #[test]
  fn placeholder_apart_is_its_own_run() {
    let page = 4096;
    let base = BASE + 0x1000_0000;
    placeholder_added(base, page);
    placeholder_added(base + 3 * page, page);
    assert_eq!(
      placeholder_released(base + 3 * page),
      Some((base + 3 * page, page))
    );
    assert_eq!(placeholder_released(base), Some((base, page)));
  }
}
