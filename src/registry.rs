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
  table().insert(mapping.start(), Arc::downgrade(mapping));
}

pub fn remove(mapping: &Mapping) {
  let mut table = table();
  if let Some(entry) = table.get(&mapping.start()) {
    if std::ptr::eq(entry.as_ptr(), mapping) {
      table.remove(&mapping.start());
    }
  }
}

/// The live mapping whose range contains `addr`.
#[allow(dead_code)]
pub fn find(addr: usize) -> Option<Arc<Mapping>> {
  let table = table();
  let (_, entry) = table.range(..=addr).next_back()?;
  entry.upgrade().filter(|mapping| mapping.contains(addr))
}

/// How many mappings are registered (alive or awaiting their last drop).
#[allow(dead_code)]
pub fn count() -> usize {
  table().len()
}
