//! The constants on the module: the OS's own numbers, read from `libc` (through the OS layer)
//! or from `sysconf` when the addon loads; none is typed in. A flag the platform lacks is 0
//! there, so portable code keeps working ("no effect on this platform").

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;
use napi_derive::napi;

use crate::sys::consts as os;

/// A number the OS reports when the addon loads, rather than one fixed at compile time.
// Exists only to name the type in index.d.ts (`export type SystemValue = number`).
#[allow(dead_code)]
#[napi(js_name = "SystemValue")]
pub type SystemValueNumber = u32;

/// The values behind [`SystemValueNumber`].
pub enum SystemValue {
  PageSize,
  AllocationGranularity,
}

impl ToNapiValue for SystemValue {
  unsafe fn to_napi_value(env: sys::napi_env, value: Self) -> napi::Result<sys::napi_value> {
    let number = match value {
      SystemValue::PageSize => crate::sys::page_size(),
      SystemValue::AllocationGranularity => crate::sys::allocation_granularity(),
    };
    let number = u32::try_from(number).unwrap_or(u32::MAX);
    // SAFETY: forwarded from this function's contract (a valid env on its own thread).
    unsafe { <u32 as ToNapiValue>::to_napi_value(env, number) }
  }
}

/// The size of a memory page in bytes (`sysconf(_SC_PAGESIZE)`).
#[napi]
pub const PAGESIZE: SystemValue = SystemValue::PageSize;
/// The alignment that `offset` must have: `PAGESIZE` on POSIX systems.
#[napi]
pub const ALLOCATION_GRANULARITY: SystemValue = SystemValue::AllocationGranularity;

/// Pages may not be accessed.
#[napi]
pub const PROT_NONE: i32 = os::PROT_NONE;
/// Pages may be read.
#[napi]
pub const PROT_READ: i32 = os::PROT_READ;
/// Pages may be written.
#[napi]
pub const PROT_WRITE: i32 = os::PROT_WRITE;
/// Pages may be executed.
#[napi]
pub const PROT_EXEC: i32 = os::PROT_EXEC;

/// Share the mapping: writes reach the file and other processes that map it.
#[napi]
pub const MAP_SHARED: i32 = os::MAP_SHARED;
/// A private copy-on-write mapping: writes are never carried to the file.
#[napi]
pub const MAP_PRIVATE: i32 = os::MAP_PRIVATE;
/// Like `MAP_SHARED`, but the kernel refuses flags it does not know (Linux; 0 elsewhere).
#[napi]
pub const MAP_SHARED_VALIDATE: i32 = os::MAP_SHARED_VALIDATE;
/// Memory not backed by a file, zero-filled; `fd` must be -1.
#[napi]
pub const MAP_ANONYMOUS: i32 = os::MAP_ANONYMOUS;
/// Alias of `MAP_ANONYMOUS`.
#[napi]
pub const MAP_ANON: i32 = os::MAP_ANON;
/// Do not reserve swap space for the mapping.
#[napi]
pub const MAP_NORESERVE: i32 = os::MAP_NORESERVE;
/// Read the whole mapping into memory up front (Linux; 0, no effect, elsewhere).
#[napi]
pub const MAP_POPULATE: i32 = os::MAP_POPULATE;
/// With `MAP_POPULATE`, do not block on reads (Linux; 0, no effect, elsewhere).
#[napi]
pub const MAP_NONBLOCK: i32 = os::MAP_NONBLOCK;
/// Back the mapping with huge pages (Linux; 0, no effect, elsewhere).
#[napi]
pub const MAP_HUGETLB: i32 = os::MAP_HUGETLB;
/// With `MAP_HUGETLB`, use 2 MiB pages (Linux; 0 elsewhere).
#[napi]
pub const MAP_HUGE_2MB: i32 = os::MAP_HUGE_2MB;
/// With `MAP_HUGETLB`, use 1 GiB pages (Linux; 0 elsewhere).
#[napi]
pub const MAP_HUGE_1GB: i32 = os::MAP_HUGE_1GB;
/// Lock the mapping's pages in memory, like `mlock` (Linux; 0, no effect, elsewhere).
#[napi]
pub const MAP_LOCKED: i32 = os::MAP_LOCKED;
/// A hint that the mapping is a stack (Linux; 0, no effect, elsewhere).
#[napi]
pub const MAP_STACK: i32 = os::MAP_STACK;
/// With `MAP_SHARED_VALIDATE`, synchronous page faults for DAX files (Linux; 0 elsewhere).
#[napi]
pub const MAP_SYNC: i32 = os::MAP_SYNC;

/// No special treatment (the default).
#[napi]
pub const MADV_NORMAL: i32 = os::MADV_NORMAL;
/// Expect page references in random order: read ahead less.
#[napi]
pub const MADV_RANDOM: i32 = os::MADV_RANDOM;
/// Expect page references in sequential order: read ahead more, drop pages sooner.
#[napi]
pub const MADV_SEQUENTIAL: i32 = os::MADV_SEQUENTIAL;
/// Expect access soon: start reading the pages in now.
#[napi]
pub const MADV_WILLNEED: i32 = os::MADV_WILLNEED;
/// Do not expect access soon: the kernel may drop the pages (private changes are lost).
#[napi]
pub const MADV_DONTNEED: i32 = os::MADV_DONTNEED;
/// The pages' contents may be freed lazily (private anonymous memory; 0 where unsupported).
#[napi]
pub const MADV_FREE: i32 = os::MADV_FREE;
/// Free the range and its backing store: punches a hole in a shared file (Linux; 0 elsewhere).
#[napi]
pub const MADV_REMOVE: i32 = os::MADV_REMOVE;
/// Do not make the range available to a child after `fork` (Linux; 0 elsewhere).
#[napi]
pub const MADV_DONTFORK: i32 = os::MADV_DONTFORK;
/// Undo `MADV_DONTFORK` (Linux; 0 elsewhere).
#[napi]
pub const MADV_DOFORK: i32 = os::MADV_DOFORK;
/// Allow same-page merging (KSM) of the range (Linux; 0 elsewhere).
#[napi]
pub const MADV_MERGEABLE: i32 = os::MADV_MERGEABLE;
/// Undo `MADV_MERGEABLE` (Linux; 0 elsewhere).
#[napi]
pub const MADV_UNMERGEABLE: i32 = os::MADV_UNMERGEABLE;
/// Back the range with transparent huge pages (Linux; 0 elsewhere).
#[napi]
pub const MADV_HUGEPAGE: i32 = os::MADV_HUGEPAGE;
/// Do not use transparent huge pages for the range (Linux; 0 elsewhere).
#[napi]
pub const MADV_NOHUGEPAGE: i32 = os::MADV_NOHUGEPAGE;
/// Leave the range out of core dumps (Linux; 0 elsewhere).
#[napi]
pub const MADV_DONTDUMP: i32 = os::MADV_DONTDUMP;
/// Undo `MADV_DONTDUMP` (Linux; 0 elsewhere).
#[napi]
pub const MADV_DODUMP: i32 = os::MADV_DODUMP;
/// A child gets the range zero-filled after `fork` (private anonymous memory; Linux; 0 elsewhere).
#[napi]
pub const MADV_WIPEONFORK: i32 = os::MADV_WIPEONFORK;
/// Undo `MADV_WIPEONFORK` (Linux; 0 elsewhere).
#[napi]
pub const MADV_KEEPONFORK: i32 = os::MADV_KEEPONFORK;
/// Deactivate the range: reclaim it sooner under pressure (Linux 5.4+; 0 elsewhere).
#[napi]
pub const MADV_COLD: i32 = os::MADV_COLD;
/// Reclaim the range now, writing dirty pages back (Linux 5.4+; 0 elsewhere).
#[napi]
pub const MADV_PAGEOUT: i32 = os::MADV_PAGEOUT;

/// `msync`: schedule the write-back and return at once.
#[napi]
pub const MS_ASYNC: i32 = os::MS_ASYNC;
/// `msync`: write back and wait until the data is on the storage.
#[napi]
pub const MS_SYNC: i32 = os::MS_SYNC;
/// `msync`: invalidate other mappings of the file so they see the written data.
#[napi]
pub const MS_INVALIDATE: i32 = os::MS_INVALIDATE;

/// Every MADV_* value `advise` accepts: the exported set. Some discard data on request
/// (`MADV_DONTNEED` drops private changes, `MADV_REMOVE` punches a hole in the file), but none
/// leaves memory that faults when touched; values outside the set (`MADV_HWPOISON`, which
/// poisons pages so that the next access kills the process) are refused before the call.
pub const ADVICE: &[(&str, i32)] = &[
  ("MADV_NORMAL", MADV_NORMAL),
  ("MADV_RANDOM", MADV_RANDOM),
  ("MADV_SEQUENTIAL", MADV_SEQUENTIAL),
  ("MADV_WILLNEED", MADV_WILLNEED),
  ("MADV_DONTNEED", MADV_DONTNEED),
  ("MADV_FREE", MADV_FREE),
  ("MADV_REMOVE", MADV_REMOVE),
  ("MADV_DONTFORK", MADV_DONTFORK),
  ("MADV_DOFORK", MADV_DOFORK),
  ("MADV_MERGEABLE", MADV_MERGEABLE),
  ("MADV_UNMERGEABLE", MADV_UNMERGEABLE),
  ("MADV_HUGEPAGE", MADV_HUGEPAGE),
  ("MADV_NOHUGEPAGE", MADV_NOHUGEPAGE),
  ("MADV_DONTDUMP", MADV_DONTDUMP),
  ("MADV_DODUMP", MADV_DODUMP),
  ("MADV_WIPEONFORK", MADV_WIPEONFORK),
  ("MADV_KEEPONFORK", MADV_KEEPONFORK),
  ("MADV_COLD", MADV_COLD),
  ("MADV_PAGEOUT", MADV_PAGEOUT),
];

/// The `flags` bits `map` accepts besides the mapping type.
pub const OPTIONAL_FLAGS: i32 = MAP_ANONYMOUS
  | MAP_NORESERVE
  | MAP_POPULATE
  | MAP_NONBLOCK
  | MAP_HUGETLB
  | MAP_LOCKED
  | MAP_STACK
  | MAP_SYNC;

pub use os::{MAP_HUGE_MASK, MAP_HUGE_SHIFT, MAP_TYPE_MASK, PLACEMENT_FLAGS};

#[cfg(test)]
mod tests {
  use super::*;

  // On Unix the exported numbers are libc's own; the stub target has no libc MAP_*/PROT_*.
  #[cfg(unix)]
  #[test]
  fn constants_are_libcs_own() {
    assert_eq!(PROT_READ, libc::PROT_READ);
    assert_eq!(MAP_SHARED, libc::MAP_SHARED);
    assert_eq!(MAP_ANONYMOUS, libc::MAP_ANONYMOUS);
    assert_eq!(MADV_WILLNEED, libc::MADV_WILLNEED);
    assert_eq!(MS_SYNC, libc::MS_SYNC);
  }

  #[test]
  fn advice_set_leaves_out_page_destroyers() {
    #[cfg(target_os = "linux")]
    for (_, value) in ADVICE {
      assert_ne!(*value, libc::MADV_HWPOISON);
      assert_ne!(*value, libc::MADV_SOFT_OFFLINE);
    }
    assert!(ADVICE.iter().any(|(name, _)| *name == "MADV_SEQUENTIAL"));
  }

  #[test]
  fn optional_flags_hold_no_placement_flag() {
    for (_, flag) in PLACEMENT_FLAGS {
      assert_eq!(OPTIONAL_FLAGS & flag, 0);
    }
  }
}
