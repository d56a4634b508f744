//! ArrayBuffer -> mapping: finds the [`Mapping`] behind any view a user passes in; and the runs
//! of placeholders that `unmap()` leaves.
//!
//! Every ArrayBuffer over a mapping is made by `buffer::create`, which records the address of
//! its first byte here before the ArrayBuffer exists; the ArrayBuffer's finalizer forgets it.
//! A view is resolved through its ArrayBuffer's first byte: one exact lookup. (Two ArrayBuffers
//! may start at the same byte, two windows of one mapping: the record counts them.)
//!
//! Each count of a record stands for one `Arc<Mapping>` that an ArrayBuffer's finalizer holds
//! and releases only after forgetting its count, under the lock: so while a record exists, its
//! mapping is alive, and [`find`] may take a new reference from the raw pointer. No record is ever older
//! than its mapping, so an address the kernel reuses is never matched to a mapping that is gone.
//!
//! Rust statics are shared by every worker thread, so the table sits behind a mutex; it is taken
//! once when a Buffer is made, once when it is collected, and by every lookup. It is a B-tree, not a hash map:
//! the kernel places new mappings next to the last ones and finalizers run in about the order
//! Buffers were made, so its updates touch a few warm nodes, where a hash table scatters them
//! (100,000 Buffers awaiting their finalizers in a `map` + `unmap` loop: the hash map's cache
//! misses made the pair 3-4% slower than the B-tree, measured in CPU time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::mapping::Mapping;

/// One ArrayBuffer start: the mapping behind it, and how many live ArrayBuffers start there.
struct Record {
  mapping: *const Mapping,
  count: usize,
}

// SAFETY: `mapping` points at an `Arc<Mapping>`'s value (which is `Sync`) that the record's
// holders keep alive; it is only dereferenced under the table's lock (see the module docs).
unsafe impl Send for Record {}

type Records = BTreeMap<usize, Record>;

static RECORDS: Mutex<Records> = Mutex::new(BTreeMap::new());

fn records() -> MutexGuard<'static, Records> {
  // Each operation leaves the table consistent (one insert, update or removal), so a poisoned
  // lock is still safe to use.
  RECORDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records an ArrayBuffer about to be made at `start` over `mapping`, and returns the
/// reference its finalizer holds (`Arc::into_raw`): pass it back to [`forget_buffer`].
pub fn record_buffer(mapping: Arc<Mapping>, start: usize) -> *const Mapping {
  let hold = Arc::into_raw(mapping);
  let mut records = records();
  let record = records.entry(start).or_insert(Record {
    mapping: hold,
    count: 0,
  });
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
  {
    let mut records = records();
    // Node-API hands the finalizer the data pointer the Buffer was made with, which is `start`.
    // Should a runtime hand over another pointer, the record is found by its mapping instead
    // (a scan, on that runtime only): a record left behind would outlive its mapping. If the
    // mapping has several records (windows), which one is this Buffer's cannot be told: then
    // the reference is kept (the mapping leaks) rather than another window's record forgotten.
    let key = match records.get(&start) {
      Some(record) if std::ptr::eq(record.mapping, hold) => Some(start),
      _ => {
        let mut mine = records
          .iter()
          .filter(|(_, record)| std::ptr::eq(record.mapping, hold));
        match (mine.next(), mine.next()) {
          (Some((&key, _)), None) => Some(key),
          _ => None,
        }
      }
    };
    let Some(key) = key else {
      return;
    };
    let record = records.get_mut(&key).expect("the key was just found");
    record.count -= 1;
    if record.count == 0 {
      records.remove(&key);
    }
  }
  // SAFETY: `hold` came from `Arc::into_raw` in `record_buffer` and is released once (the
  // caller's contract), after the record is gone.
  drop(unsafe { Arc::from_raw(hold) });
}

/// The mapping behind the ArrayBuffer whose first byte is at `start`.
pub fn find(start: usize) -> Option<Arc<Mapping>> {
  let records = records();
  let record = records.get(&start)?;
  // SAFETY: the record exists, so a holder's reference keeps the mapping alive (module docs):
  // the strong count is at least 1 while we add one, under the lock.
  unsafe {
    Arc::increment_strong_count(record.mapping);
    Some(Arc::from_raw(record.mapping))
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
