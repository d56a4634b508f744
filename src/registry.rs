//! Address -> mapping: finds the [`Mapping`] behind any view a user passes in.
//!
//! Rust statics are shared by every worker thread, so the map sits behind a mutex. Entries are
//! weak: the registry never keeps a mapping alive, and an entry is removed by identity, so a
//! newer mapping the kernel placed at a reused address is never removed by an older one's drop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::mapping::Mapping;

static MAPPINGS: Mutex<BTreeMap<usize, Weak<Mapping>>> = Mutex::new(BTreeMap::new());

fn table() -> MutexGuard<'static, BTreeMap<usize, Weak<Mapping>>> {
  // A panic while holding the lock cannot leave the map half-updated (each operation is one
  // BTreeMap call), so a poisoned lock is still safe to use.
  MAPPINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn insert(mapping: &Arc<Mapping>) {
  table().insert(mapping.addr() as usize, Arc::downgrade(mapping));
}

pub fn remove(mapping: &Mapping) {
  let mut table = table();
  if let Some(entry) = table.get(&(mapping.addr() as usize)) {
    if std::ptr::eq(entry.as_ptr(), mapping) {
      table.remove(&(mapping.addr() as usize));
    }
  }
}

/// The live mapping whose range contains `addr`.
pub fn find(addr: usize) -> Option<Arc<Mapping>> {
  let table = table();
  let (_, entry) = table.range(..=addr).next_back()?;
  entry.upgrade().filter(|mapping| mapping.contains(addr))
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
  // As for `table()`: each update leaves the map consistent, so poisoning is harmless.
  PLACEHOLDERS
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
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
