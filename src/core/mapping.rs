//! The owner of one OS mapping.
//!
//! A [`Mapping`] is shared (through [`Shared`], an `Arc`) by the
//! finalizer of every ArrayBuffer that shows it, by `Mapping` handles, and by work in flight (a
//! `flush` on the thread pool). The OS range is given back exactly once, when the last reference
//! drops; nothing else ever unmaps it.
//!
//! # Safety model
//! `addr..addr + len` (rounded up to whole pages) is a range that this value alone owns from
//! [`Mapping::new`] until its `Drop`: nothing else in the crate unmaps it, and the kernel gives
//! no part of it to anyone else while it is mapped. Every `unsafe` OS call on the range relies on
//! this, and on callers passing offsets within `len` (checked by the JavaScript boundary's bounds check, `js::view::bounds`).
//!
//! `unmap()` cannot give the range back at once: the Buffers that show it live on, and native
//! code (zlib, an `fs.write` in flight) may still hold the pointer. So `unmap()` swaps the
//! user's memory for a zero-filled placeholder over the same range, which stays reserved, and so
//! cannot be handed to another mapping, until the last reference drops (the last Buffer's
//! finalizer). Nothing is detached: Node's own JavaScript re-reads a Buffer's length and offset
//! while native work on it is under way (zlib between chunks), and aborts the process if they
//! shrank.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::core::faults;
use crate::core::reclaim;
use crate::core::recovery;
use crate::core::registry;
use crate::sys;

/// Advice that discards data in the range (so it is never applied to bytes outside it).
pub const DISCARDING_ADVICE: [i32; 3] = [
  sys::consts::MADV_DONTNEED,
  sys::consts::MADV_FREE,
  sys::consts::MADV_REMOVE,
];

/// A counted reference to a [`Mapping`]: every Buffer finalizer, `Mapping` handle and work in
/// flight holds one; the last one dropped unmaps. A plain `Arc`: a hand-written one that
/// recycled its blocks per thread gained nothing measurable over it (bench/PROFILE.md, issue
/// 13's section).
pub type Shared = Arc<Mapping>;

/// The range holds the file (or anonymous memory) the user mapped.
const LIVE: u8 = 0;
/// `unmap()` (or `remap()`) took the user's memory away; the placeholder holds the range.
const UNMAPPED: u8 = 1;

/// Why an operation on a mapping could not run.
#[derive(Debug)]
pub enum Failure {
  /// The mapping was unmapped before.
  Unmapped,
  /// The system call failed.
  Os(io::Error),
  /// The memory lacks the rights a native access needs (`PROT_WRITE` with `write`, else
  /// `PROT_READ`): mapped so, or `protect()`ed so, possibly by another thread since the
  /// arguments were checked. `name` is the argument the memory came in.
  Access { write: bool, name: &'static str },
}

impl From<io::Error> for Failure {
  fn from(err: io::Error) -> Self {
    Failure::Os(err)
  }
}

pub struct Mapping {
  /// The range, the size of its pages, its protection, its path and its fault counters: what
  /// the signal handlers read (see [`faults::Record`]). The fault table points at it while the
  /// mapping is live.
  record: faults::Record,
  state: AtomicU8,
  /// Rights every byte of the mapping has now: the protection asked for, narrowed by each
  /// `protect()` of part of it, set again by a `protect()` of all of it; after `unmap()`, the
  /// placeholder's.
  guaranteed_prot: AtomicI32,
  /// Native reads and writes of the memory in flight ([`Mapping::accessing`]), and changes of
  /// what the memory is (`protect()`, `unmap()`, `remap()`: [`Mapping::changing`]) in flight.
  /// A change waits for the accesses to end; an access waits for the changes to end.
  accesses: AtomicUsize,
  changes: AtomicUsize,
  /// Held by the change in flight: changes of one mapping run one at a time (a `protect()`
  /// racing `unmap()` would otherwise change the placeholder's rights behind its guarantee).
  change_lock: Mutex<()>,
  /// For futex words: the identity of the mapping's first byte ([`sys::shared_identity`]),
  /// looked up once, at the first `wait`/`notify` on it.
  identity: OnceLock<Option<(u64, u64, u64)>>,
  /// Shared memory with no regular file behind it (`MAP_SHARED | MAP_ANONYMOUS`, or a shared
  /// mapping of `/dev/zero` or another device): an object of fixed size that `remap` cannot
  /// grow (the grown pages would be private to this process, and lost).
  fixed_size: bool,
  /// Our slot in the fault table while live, or `NO_SLOT`.
  slot: AtomicUsize,
  /// Whether the range may wait, once dropped, to be unmapped with its neighbours
  /// (`reclaim::release`): not for huge pages, nor for memory that was ever locked
  /// (`MAP_LOCKED` or `lock()`), whose charge against `RLIMIT_MEMLOCK` would linger.
  batchable: AtomicBool,
  /// The parts of the mapping that may be locked (`MAP_LOCKED`, `lock()`): sorted, disjoint
  /// `(start, end)` byte offsets from [`Mapping::addr`], whole granules. A discarding advice
  /// over any of them is refused before it starts (see [`Mapping::advise`]).
  locked: Mutex<Vec<(usize, usize)>>,
  /// The futex word that wakes `wait`s and `waitAsync`s of the mapping: 0 while live and
  /// readable, [`CANCEL_UNMAPPED`] once unmapped, [`CANCEL_UNREADABLE`] while `protect()` has
  /// taken read access away (see [`Mapping::with_cancel_word`]).
  cancel: AtomicU32,
  /// How many threads may be sleeping on `cancel` now: `unmap()` wakes them only if any (a
  /// futex syscall on every unmap was about 9% of a `map` + `unmap` pair's CPU time).
  cancel_waiters: AtomicU32,
  /// How many futex words ([`crate::core::futex::Word`]) hold the mapping now: a wait holds its
  /// word for as long as it sleeps (see [`Mapping::held_by_words_alone`]).
  words: AtomicUsize,
}

const NO_SLOT: usize = usize::MAX;

/// [`Mapping`]'s cancel word once `unmap()` took the memory away.
const CANCEL_UNMAPPED: u32 = 1;
/// [`Mapping`]'s cancel word while the mapping does not guarantee read access (`protect()`):
/// no `notify()` can reach its words then (it needs read access), so their waits must end.
const CANCEL_UNREADABLE: u32 = 2;

/// What `adopt` needs to know of a range besides its address, length and rights.
struct Layout {
  fixed_size: bool,
  file_pages: bool,
  granule: usize,
  batchable: bool,
  /// Made with `MAP_LOCKED`: the whole mapping is locked.
  locked: bool,
}

/// Adds `start..end` to `ranges` (sorted, disjoint), merging what it touches.
fn add_range(ranges: &mut Vec<(usize, usize)>, start: usize, end: usize) {
  if start >= end {
    return;
  }
  let (mut start, mut end) = (start, end);
  ranges.retain(|&(a, b)| {
    if b < start || a > end {
      return true;
    }
    start = start.min(a);
    end = end.max(b);
    false
  });
  let at = ranges.partition_point(|&(a, _)| a < start);
  ranges.insert(at, (start, end));
}

/// Takes `start..end` out of `ranges` (sorted, disjoint), splitting what it cuts.
fn remove_range(ranges: &mut Vec<(usize, usize)>, start: usize, end: usize) {
  if start >= end {
    return;
  }
  let mut kept = Vec::with_capacity(ranges.len() + 1);
  for &(a, b) in ranges.iter() {
    if b <= start || a >= end {
      kept.push((a, b));
      continue;
    }
    if a < start {
      kept.push((a, start));
    }
    if b > end {
      kept.push((end, b));
    }
  }
  *ranges = kept;
}

/// Whether any of `ranges` shares a byte with `start..end`.
fn overlaps(ranges: &[(usize, usize)], start: usize, end: usize) -> bool {
  start < end && ranges.iter().any(|&(a, b)| a < end && start < b)
}

/// The size of the pages of a mapping made with `flags` and `fd` at `addr`.
///
/// A file's pages are its filesystem's: huge pages on hugetlbfs, where the kernel ignores the
/// size bits of the flags (and refuses `MAP_HUGETLB` for any other file). The kernel aligns such
/// a mapping to its pages, so only a mapping aligned to the smallest huge page size asks the
/// filesystem (`fstatfs`); the others cost nothing more. Anonymous memory gets huge pages with
/// `MAP_HUGETLB`: the size `MAP_HUGE_2MB`/`MAP_HUGE_1GB` ask for (log2 in the bits at
/// `MAP_HUGE_SHIFT`), else the system's default huge page size. Where that default cannot be
/// read, the system's page size: a granule too small only leaks the mapping (its munmap fails),
/// one too large would unmap memory that is not ours.
fn granule(flags: i32, fd: i32, addr: usize) -> usize {
  use crate::sys::consts::{MAP_HUGETLB, MAP_HUGE_MASK, MAP_HUGE_SHIFT};
  let page = sys::page_size();
  if flags & sys::consts::MAP_ANONYMOUS == 0 {
    let aligned = sys::smallest_huge_page().is_some_and(|huge| addr.is_multiple_of(huge));
    return match aligned {
      true => sys::huge_page_size_of_file(fd).unwrap_or(page),
      false => page,
    };
  }
  // MAP_HUGETLB is 0 where there are no huge pages (macOS): then no mapping has them.
  #[allow(clippy::bad_bit_mask)]
  if MAP_HUGETLB == 0 || flags & MAP_HUGETLB == 0 {
    return page;
  }
  #[allow(clippy::bad_bit_mask)]
  let log2 = (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
  if log2 != 0 {
    return 1usize << log2;
  }
  static DEFAULT: OnceLock<usize> = OnceLock::new();
  *DEFAULT.get_or_init(|| {
    // "Hugepagesize:       2048 kB" in /proc/meminfo (Linux, the only system with MAP_HUGETLB).
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = meminfo
      .lines()
      .find_map(|line| line.strip_prefix("Hugepagesize:"))
      .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<usize>().ok());
    kib.map_or(page, |kib| kib * 1024)
  })
}

/// Kernel mappings (VMAs) left for the runtime itself. The kernel allows `vm.max_map_count`
/// (65530 by default) per process; when node-mmap's mappings, or the pieces `protect()` and
/// `lock()` split them into, take the last ones, V8's next allocation fails and it aborts the
/// process ("Zone Allocation failed", `std::bad_alloc`). So node-mmap refuses, with `ENOMEM`,
/// any call that could leave fewer than this many; only `unmap()` (a quarter of them, see
/// [`UNMAP_GRACE`]) and SIGBUS recovery (half, see [`reserve_vmas_in_handler`]) may use some,
/// as refusing there would keep a program at the limit from freeing memory, or end it.
const RUNTIME_HEADROOM: usize = 4096;

/// `vm.max_map_count` less [`RUNTIME_HEADROOM`], once read (`usize::MAX`: the kernel tells no
/// limit); 0 until then.
static LIMIT: AtomicUsize = AtomicUsize::new(0);

/// The kernel's default `vm.max_map_count` less [`RUNTIME_HEADROOM`]: the limit while the real
/// one cannot be read for the moment (no descriptor left: `EMFILE`). Keeping "no limit" after
/// such a failure turned the guard off for good, and V8 aborted at the kernel's limit (attack
/// pass 9).
const DEFAULT_LIMIT: usize = 65530 - RUNTIME_HEADROOM;

/// The most kernel mappings node-mmap lets the process reach: `vm.max_map_count` less
/// [`RUNTIME_HEADROOM`] (no limit where the kernel tells none; [`DEFAULT_LIMIT`] while it cannot
/// be read, asked again at the next call).
fn vma_limit() -> usize {
  let known = LIMIT.load(Ordering::Relaxed);
  if known != 0 {
    return known;
  }
  match std::fs::read_to_string("/proc/sys/vm/max_map_count") {
    Ok(text) => {
      let limit = text
        .trim()
        .parse::<usize>()
        .map_or(DEFAULT_LIMIT, |max| max.saturating_sub(RUNTIME_HEADROOM).max(1));
      LIMIT.store(limit, Ordering::Relaxed);
      limit
    }
    // No such file: no procfs, or not Linux. The kernel tells no limit.
    Err(err) if err.kind() == io::ErrorKind::NotFound => {
      LIMIT.store(usize::MAX, Ordering::Relaxed);
      usize::MAX
    }
    Err(_) => DEFAULT_LIMIT,
  }
}

/// Reads the limit now, so that [`reserve_vmas_in_handler`] finds it without reading a file
/// (`recovery::install` calls this before installing the handlers), and keeps a descriptor of
/// the kernel's list for when no descriptor is left (`sys::keep_maps_descriptor`). Called when
/// the addon loads in an env too: while descriptors are free.
pub fn prepare_guard() {
  sys::keep_maps_descriptor();
  vma_limit();
}

/// [`reserve_vmas`] for a signal handler (SIGBUS recovery): atomics only, no lock, no
/// allocation. Where the bound says the mappings may not fit, `count` (which must be
/// async-signal-safe: it reads `/proc/self/maps` into a small buffer) gives the real number. A
/// handler may go half way into [`RUNTIME_HEADROOM`]: refusing ends the process, so it gets
/// what V8 can spare, and V8 keeps the other half. Returns whether the mappings may be added.
pub fn reserve_vmas_in_handler(extra: usize, count: impl FnOnce() -> Option<usize>) -> bool {
  let limit = match LIMIT.load(Ordering::Relaxed) {
    0 => DEFAULT_LIMIT, // not read yet (no descriptor was left): the kernel's default
    limit => limit,
  };
  let limit = limit.saturating_add(RUNTIME_HEADROOM / 2);
  let added = ADDED.fetch_add(extra, Ordering::Relaxed).saturating_add(extra);
  // Trusted for half the room the last count left, as in `reserve_vmas_beyond`.
  let counted = COUNTED.load(Ordering::Relaxed);
  if counted != 0 && added <= limit.saturating_sub(counted) / 2 {
    return true;
  }
  // Counted here without storing the count: the mutex that keeps `COUNTED`, `ADDED` and
  // `GENERATION` consistent cannot be taken in a handler. What was added to `ADDED` stays: the
  // bound only grows until the next count.
  count().is_some_and(|counted| counted.saturating_add(extra) <= limit)
}

/// The process's kernel mappings at the last count (lines of `/proc/self/maps`).
static COUNTED: AtomicUsize = AtomicUsize::new(0);
/// An upper bound of the kernel mappings our calls added since: 1 per mapping, 2 per call that
/// may split one (`protect`, `lock`, `advise`), and the unused part of each thread's
/// allowance. Unmapped ranges merge, or vanish, so they are not subtracted: the bound only
/// grows until the next count.
static ADDED: AtomicUsize = AtomicUsize::new(0);
/// When the last count was taken ([`now_ms`]).
static COUNTED_AT: AtomicU64 = AtomicU64::new(0);
/// How old a count may be and still refill an allowance (see `reserve_vmas_beyond`).
const STALE_MS: u64 = 100;

/// Milliseconds on the monotonic clock since node-mmap first asked.
fn now_ms() -> u64 {
  static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
  let elapsed = EPOCH.get_or_init(std::time::Instant::now).elapsed();
  u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// Bumped by every count: allowances taken before it are void.
static GENERATION: AtomicUsize = AtomicUsize::new(0);
static RECOUNT: Mutex<()> = Mutex::new(());

/// Set while a count reads the kernel's list (see [`recounting`]).
static RECOUNTING: AtomicBool = AtomicBool::new(false);

/// Takes [`RECOUNT`] to read the kernel's list, and holds back this copy's new mappings while it
/// does: the list is read a page at a time, and the kernel places a new mapping below the last
/// (at an address the read has passed), so mappings made meanwhile are not counted. Reading
/// 60,000 lines takes some 30 ms, long enough for workers mapping at once to make thousands,
/// which then went uncounted: they took V8's room and the process aborted (attack pass 8).
/// A reservation waits while this is held ([`reserve_vmas_beyond`]); a mapping already past its
/// reservation (one per thread at most) may still be missed, far inside the headroom.
fn recounting() -> impl Drop {
  struct Recounting(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);
  impl Drop for Recounting {
    fn drop(&mut self) {
      RECOUNTING.store(false, Ordering::SeqCst);
    }
  }
  let guard = RECOUNT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
  RECOUNTING.store(true, Ordering::SeqCst);
  Recounting(guard)
}

/// How many more kernel mappings replacing `addr..addr + len` (page-aligned) with a new mapping
/// could make: 1 for each end that falls inside a kernel mapping (which the replacement cuts in
/// two). From two lookups by address where the kernel has them; else, if `may_read_list`, from
/// `/proc/self/maps`, whose count then becomes the bound's (as after a recount: so a loop of
/// `unmap()` at the limit reads it until the count shows room, not at every call). `None` if
/// neither tells.
fn vmas_split_by(addr: usize, len: usize, may_read_list: bool) -> Option<usize> {
  let end = addr + len;
  if let Some([first, last]) = sys::kernel_mappings_at([addr, end - 1]) {
    let start_inside = first.is_some_and(|(from, _)| from < addr);
    let end_inside = last.is_some_and(|(_, to)| end < to);
    return Some(usize::from(start_inside) + usize::from(end_inside));
  }
  if !may_read_list {
    return None;
  }
  let _recounting = recounting();
  let maps = sys::read_maps().ok()?;
  let (mut start_inside, mut end_inside) = (false, false);
  for (from, to) in maps.split(|&b| b == b'\n').filter_map(maps_range) {
    start_inside |= from < addr && addr < to;
    end_inside |= from < end && end < to;
  }
  counted_now(maps.iter().filter(|&&b| b == b'\n').count(), 0);
  Some(usize::from(start_inside) + usize::from(end_inside))
}

/// How long a thread's [`SNAPSHOT`] of the kernel's list serves.
const SNAPSHOT_MS: u64 = 1000;

/// The kernel's mappings (ranges in address order) as read at a time ([`now_ms`]).
type Snapshot = (u64, Vec<(usize, usize)>);

thread_local! {
  /// The kernel's mappings as this thread last read them: for [`vmas_split_by_snapshot`].
  static SNAPSHOT: RefCell<Option<Snapshot>> = const { RefCell::new(None) };
}

/// [`vmas_split_by`] for the end of a worker's env where the kernel cannot be asked by address:
/// from one read of the kernel's list per [`SNAPSHOT_MS`] on this thread, not one per mapping
/// (some 30 ms each at 60,000 lines). The read also becomes the bound's count. Mappings the
/// process made since the read are not in it: a range it shows as a kernel mapping of its own
/// may since have merged with a new neighbour (rare at a worker's end; far inside the
/// headroom). Without it, every placeholder reserved two kernel mappings on the bound, which
/// ran out long before the limit: a worker that ended with 40,000 mappings left most of them
/// mapped, the file's, for the life of the process (attack pass 9). `None` if the list cannot
/// be read.
fn vmas_split_by_snapshot(addr: usize, len: usize) -> Option<usize> {
  let fresh = |taken: u64| now_ms().saturating_sub(taken) <= SNAPSHOT_MS;
  let stale = SNAPSHOT
    .try_with(|snapshot| !snapshot.borrow().as_ref().is_some_and(|(taken, _)| fresh(*taken)))
    .ok()?;
  if stale {
    let (ranges, _) = kernel_mappings()?;
    SNAPSHOT
      .try_with(|snapshot| *snapshot.borrow_mut() = Some((now_ms(), ranges)))
      .ok()?;
  }
  let end = addr + len;
  SNAPSHOT
    .try_with(|snapshot| {
      let snapshot = snapshot.borrow();
      let (_, ranges) = snapshot.as_ref()?;
      let holding = |at: usize| {
        let after = ranges.partition_point(|&(from, _)| from <= at);
        (after > 0).then(|| ranges[after - 1]).filter(|&(_, to)| at < to)
      };
      let start_inside = holding(addr).is_some_and(|(from, _)| from < addr);
      let end_inside = holding(end - 1).is_some_and(|(_, to)| end < to);
      Some(usize::from(start_inside) + usize::from(end_inside))
    })
    .ok()
    .flatten()
}

/// Makes `counted` (lines of `/proc/self/maps`, just read under [`RECOUNT`]) the bound's count,
/// with `added` more on top (what the caller reserves).
fn counted_now(counted: usize, added: usize) {
  // At least 1, so that a list that cannot be read counts as read (as before: on the bound alone).
  COUNTED.store(counted.max(1), Ordering::Relaxed);
  COUNTED_AT.store(now_ms(), Ordering::Relaxed);
  FREES_AT_COUNT.store(FREES.load(Ordering::Relaxed), Ordering::Relaxed);
  GENERATION.fetch_add(1, Ordering::Relaxed);
  ADDED.store(added, Ordering::Relaxed);
}

/// Bumped each time node-mmap gives kernel mappings back (a `munmap`, a placeholder that may
/// merge with its neighbours): a count taken before may be too high.
static FREES: AtomicUsize = AtomicUsize::new(0);
/// [`FREES`] when the last count was taken.
static FREES_AT_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Notes that node-mmap gave kernel mappings back (see [`FREES`]).
pub fn note_freed() {
  FREES.fetch_add(1, Ordering::Relaxed);
}

/// Whether `extra` more kernel mappings might not fit `grace` past [`vma_limit`] by the bound
/// (no reservation is made).
fn near_limit(extra: usize, grace: usize) -> bool {
  let bound = COUNTED
    .load(Ordering::Relaxed)
    .saturating_add(ADDED.load(Ordering::Relaxed));
  bound.saturating_add(extra) > vma_limit().saturating_add(grace)
}

/// Bytes of address space node-mmap's mappings hold: their extents, placeholders included
/// (an `unmap()`ed range stays reserved until its views are collected).
static HELD: AtomicUsize = AtomicUsize::new(0);
/// The rest of the process's address space (`VmSize` less [`HELD`]) at the last reading;
/// `usize::MAX` before the first.
static OTHERS: AtomicUsize = AtomicUsize::new(usize::MAX);
/// [`HELD`] at the last reading.
static HELD_AT_READ: AtomicUsize = AtomicUsize::new(0);
/// The address space the process may use, at the last reading (0: not read yet; `usize::MAX`:
/// no guard on this system), and the headroom left of it ([`address_headroom`]).
static AS_LIMIT: AtomicUsize = AtomicUsize::new(0);
static AS_HEADROOM: AtomicUsize = AtomicUsize::new(0);

/// What node-mmap leaves free of the address space the process may use, for the runtime: a
/// sixteenth of it, between 256 MiB and 1 GiB under `ulimit -v`.
fn address_headroom(limit: usize, limited: bool) -> usize {
  match limited {
    true => (limit / 16).clamp(256 << 20, 1 << 30),
    false => limit / 16,
  }
}

/// Makes sure a new range of `len` bytes leaves the runtime its headroom of the address space
/// ([`address_headroom`]): else `ENOMEM` before the system call. Placeholders stay reserved
/// until the garbage collector finds their views, which a loop of `map()` and `unmap()` gives
/// it no reason to do: the address space filled up, `map()` said `ENOMEM` as it should, and
/// then V8 itself was refused a page and the process died (attack pass 12: under `ulimit -v`,
/// or with terabyte `MAP_NORESERVE` mappings). On our own count alone while it is far from the
/// limit and has not grown by a headroom since the last reading of `VmSize`; else `VmSize` is
/// read (a few microseconds).
fn reserve_address_space(len: usize) -> io::Result<()> {
  // The limit as last read (a system call: not on every map()); read again with `VmSize`.
  let (limit, headroom) = (
    AS_LIMIT.load(Ordering::Relaxed),
    AS_HEADROOM.load(Ordering::Relaxed),
  );
  if limit == usize::MAX {
    return Ok(()); // no guard on this system
  }
  let held = HELD.load(Ordering::Relaxed);
  let others = OTHERS.load(Ordering::Relaxed);
  let estimate = held.saturating_add(len).saturating_add(others);
  let trusted = limit != 0
    && others != usize::MAX
    && held < HELD_AT_READ.load(Ordering::Relaxed).saturating_add(headroom)
    && estimate.saturating_add(2 * headroom) <= limit;
  if trusted {
    return Ok(());
  }
  let Some((limit, limited)) = sys::address_space_limit() else {
    AS_LIMIT.store(usize::MAX, Ordering::Relaxed);
    return Ok(()); // no guard on this system
  };
  let headroom = address_headroom(limit, limited);
  AS_LIMIT.store(limit, Ordering::Relaxed);
  AS_HEADROOM.store(headroom, Ordering::Relaxed);
  let Some(used) = sys::address_space_used() else {
    return Ok(()); // cannot be read: the kernel decides, as before
  };
  OTHERS.store(used.saturating_sub(held), Ordering::Relaxed);
  HELD_AT_READ.store(held, Ordering::Relaxed);
  if used.saturating_add(len).saturating_add(headroom) > limit {
    return Err(io::Error::from_raw_os_error(libc::ENOMEM));
  }
  Ok(())
}

/// What node-mmap leaves free of the process's data limit (`ulimit -d`) for the runtime: a
/// quarter of it, between 32 and 512 MiB.
fn data_headroom(limit: usize) -> usize {
  (limit / 4).clamp(32 << 20, 512 << 20)
}

/// Serializes each data-limit check with the system call it guards, across threads: two
/// `protect()`s (or `map()`s) on two workers each saw the other's memory not yet counted, both
/// passed, and together they left V8 less than its headroom (attack pass 16). Taken only when a
/// data limit is set.
static DATA_LOCK: Mutex<()> = Mutex::new(());

thread_local! {
  /// Whether this thread holds [`DATA_LOCK`] (a nested check then does not take it again).
  static HOLDS_DATA_LOCK: Cell<bool> = const { Cell::new(false) };
}

/// What [`reserve_data`] gives back: while it lives, no other thread's check can pass on the
/// room this one counted. Keep it until the system call that takes the room has returned.
#[must_use = "hold it until the system call that takes the room has returned"]
pub struct DataReservation(Option<std::sync::MutexGuard<'static, ()>>);

impl Drop for DataReservation {
  fn drop(&mut self) {
    if self.0.is_some() {
      HOLDS_DATA_LOCK.with(|held| held.set(false));
    }
  }
}

/// Makes sure a new range of `len` bytes that counts toward the data limit (`charged`: private
/// and writable) leaves the runtime its headroom of it ([`data_headroom`]): else `ENOMEM` before
/// the system call. Under `ulimit -d`, a `map()` that took all that was left got through the
/// kernel's check, and V8 then aborted the process when it could not commit its next heap page
/// ("Committing semi space failed", attack pass 14). Nothing to do without a limit (one
/// getrlimit); with one, the data the process uses is read (`/proc/self/statm`), under
/// [`DATA_LOCK`] until the reservation is dropped.
pub fn reserve_data(len: usize, charged: bool) -> io::Result<DataReservation> {
  if !charged {
    return Ok(DataReservation(None));
  }
  let Some(limit) = sys::data_limit() else {
    return Ok(DataReservation(None));
  };
  let reservation = if HOLDS_DATA_LOCK.with(Cell::get) {
    DataReservation(None)
  } else {
    let guard = DATA_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    HOLDS_DATA_LOCK.with(|held| held.set(true));
    DataReservation(Some(guard))
  };
  let Some(used) = sys::data_used() else {
    return Ok(reservation); // cannot be read: the kernel decides, as before
  };
  if used.saturating_add(len).saturating_add(data_headroom(limit)) > limit {
    return Err(io::Error::from_raw_os_error(libc::ENOMEM));
  }
  Ok(reservation)
}

/// Kernel mappings a thread reserves at once, so that most calls touch no shared counter.
const ALLOWANCE: usize = 64;

thread_local! {
  /// This thread's reserved kernel mappings not used yet, and the count they belong to.
  static LEFT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Makes sure `extra` more kernel mappings stay under [`vma_limit`]. Cheap until the bound has
/// used half the room the last count of `/proc/self/maps` left (a thread-local allowance,
/// refilled [`ALLOWANCE`] at a time with one atomic add); then the list is counted again, which
/// also sees the kernel mappings that other code made meanwhile. Allowances make the
/// bound at most [`ALLOWANCE`] per thread too high, never too low, except for a thread that
/// took one just as another counted: it may add that many uncounted, far inside
/// [`RUNTIME_HEADROOM`].
pub fn reserve_vmas(extra: usize) -> io::Result<()> {
  reserve_vmas_beyond(extra, 0)
}

/// What `unmap()` may take of [`RUNTIME_HEADROOM`]: a program at the limit frees memory by
/// unmapping, and a placeholder cut out of a mapping the kernel had merged with its neighbours
/// adds one. A quarter: SIGBUS recovery may use half, and V8 keeps the rest.
const UNMAP_GRACE: usize = RUNTIME_HEADROOM / 4;

/// [`reserve_vmas`] that may go `grace` kernel mappings past [`vma_limit`].
fn reserve_vmas_beyond(extra: usize, grace: usize) -> io::Result<()> {
  if RECOUNTING.load(Ordering::SeqCst) {
    // A count is reading the list: wait for it (its generation voids this thread's allowance).
    drop(RECOUNT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
  }
  let generation = GENERATION.load(Ordering::Relaxed);
  let from_allowance = LEFT
    .try_with(|left| match left.get() {
      (taken, count) if taken == generation && count >= extra => {
        left.set((taken, count - extra));
        true
      }
      _ => false,
    })
    .unwrap_or(false);
  if from_allowance {
    return Ok(());
  }
  let limit = vma_limit().saturating_add(grace);
  if limit == usize::MAX {
    return Ok(()); // the kernel tells no limit
  }
  // What the bound may add before the next count: half the room the last count left. Other
  // code makes kernel mappings this bound never sees (V8's heap, WebAssembly memories, a second
  // copy of node-mmap loaded from another path), and only a count tells them; so the bound is
  // trusted for half the room, then the list is counted again. Far from the limit that is
  // rarely (the room halves from one count to the next only as the process fills up); near it,
  // as before, at every call that would pass it.
  //
  // And for no longer than [`STALE_MS`]: another copy of node-mmap (a second version in
  // `node_modules`, with statics of its own) may fill the room this count saw, at a few hundred
  // thousand mappings a second, without this bound moving. So an allowance is refilled from a
  // count at most that old; a program mapping now and then reads the list at most once per
  // [`STALE_MS`] (well under a millisecond for a few thousand mappings, a few at 60,000).
  let fresh = now_ms().saturating_sub(COUNTED_AT.load(Ordering::Relaxed)) <= STALE_MS;
  let fits = |added: usize| {
    let counted = COUNTED.load(Ordering::Relaxed);
    // 0: never counted yet (a process has some mappings before it loads node-mmap).
    counted != 0 && fresh && added <= limit.saturating_sub(counted) / 2
  };
  let added = ADDED.fetch_add(extra, Ordering::Relaxed) + extra;
  if fits(added) {
    // Far from the limit, also take an allowance for the calls to come.
    if fits(added + ALLOWANCE) {
      ADDED.fetch_add(ALLOWANCE, Ordering::Relaxed);
      let _ = LEFT.try_with(|left| left.set((generation, ALLOWANCE)));
    }
    return Ok(());
  }
  // Refused by a count that is fresh, with nothing given back since: refused again without
  // reading the list, which at the limit is long (some 30 ms at 60,000 kernel mappings), and
  // which a worker ending there, taking the memory out of each of its 40,000 Buffers, read once
  // per Buffer (attack pass 7: the worker took most of an hour to end).
  let counted = COUNTED.load(Ordering::Relaxed);
  let unchanged = FREES.load(Ordering::Relaxed) == FREES_AT_COUNT.load(Ordering::Relaxed);
  if counted != 0 && fresh && unchanged && counted.saturating_add(added) > limit {
    ADDED.fetch_sub(extra.min(added), Ordering::Relaxed);
    return Err(io::Error::from_raw_os_error(libc::ENOMEM));
  }
  let _recounting = recounting();
  // A list that cannot be read (no descriptor left: EMFILE) refuses: counting it as empty let
  // mappings run to the kernel's limit, and V8 aborted (attack pass 9).
  let counted = match sys::read_maps() {
    Ok(maps) => maps.iter().filter(|&&b| b == b'\n').count(),
    Err(err) => {
      ADDED.fetch_sub(extra.min(added), Ordering::Relaxed);
      return Err(err);
    }
  };
  if counted + extra > limit {
    counted_now(counted, 0);
    return Err(io::Error::from_raw_os_error(libc::ENOMEM));
  }
  counted_now(counted, extra);
  Ok(())
}

/// For `reclaim::release`, and the end of a worker's env: reserves `extra` kernel mappings that
/// a `munmap` of dropped memory, or a placeholder, may add (when the range is a hole in the
/// middle of a kernel mapping: the kernel had merged it with neighbours that stay), as `unmap()`
/// may, up to [`UNMAP_GRACE`] past the limit. On the bound alone, never reading the kernel's
/// list: `false` (nothing reserved) when the bound says they might not fit. `reclaim` then
/// defers the `munmap`, and [`kernel_mappings`] settles the deferred ones with one read of the
/// list. (Reading it here, as `reserve_vmas` does once half the room is used, read it once per
/// finalizer near the limit: some 30 ms each at 60,000 kernel mappings, so a worker ending with
/// 40,000 Buffers took most of an hour to end. Attack pass 7.)
pub fn reserve_on_bound(extra: usize) -> bool {
  let limit = vma_limit().saturating_add(UNMAP_GRACE);
  let added = ADDED.fetch_add(extra, Ordering::Relaxed).saturating_add(extra);
  let counted = COUNTED.load(Ordering::Relaxed);
  // Never counted: nothing was mapped through the guard yet.
  let fits = counted == 0 || counted.saturating_add(added) <= limit;
  if !fits {
    ADDED.fetch_sub(extra, Ordering::Relaxed);
  }
  fits
}

/// The process's kernel mappings at the last count (0: never counted).
pub fn counted_mappings() -> usize {
  COUNTED.load(Ordering::Relaxed)
}

/// For `reclaim`'s deferred releases (and a worker's end: [`vmas_split_by_snapshot`]): the process's kernel mappings now (their ranges, in
/// address order, from one read of `/proc/self/maps`), and how many more `munmap`s of dropped
/// memory may add ([`UNMAP_GRACE`] past the limit, less what is there). The count becomes the
/// bound's (as after a recount); the caller reports what it then adds with [`note_added`].
/// `None` when the list cannot be read, or held.
pub fn kernel_mappings() -> Option<(Vec<(usize, usize)>, usize)> {
  let _recounting = recounting();
  let maps = sys::read_maps().ok()?;
  let lines = maps.iter().filter(|&&b| b == b'\n').count();
  let mut ranges = Vec::new();
  ranges.try_reserve_exact(lines).ok()?;
  ranges.extend(maps.split(|&b| b == b'\n').filter_map(maps_range));
  counted_now(lines, 0);
  let room = vma_limit().saturating_add(UNMAP_GRACE).saturating_sub(lines);
  Some((ranges, room))
}

/// Counts `added` kernel mappings that [`kernel_mappings`] said there was room for.
pub fn note_added(added: usize) {
  ADDED.fetch_add(added, Ordering::Relaxed);
}

/// The address range at the start of a line of `/proc/self/maps` (`start-end ...`, in hex).
fn maps_range(line: &[u8]) -> Option<(usize, usize)> {
  let hex = |digits: &[u8]| {
    digits.iter().try_fold(0usize, |value, &digit| {
      let nibble = (digit as char).to_digit(16)? as usize;
      value.checked_mul(16)?.checked_add(nibble)
    })
  };
  let range = line.split(|&b| b == b' ').next()?;
  let dash = range.iter().position(|&b| b == b'-')?;
  Some((hex(&range[..dash])?, hex(&range[dash + 1..])?))
}

/// The whole pages of `page` bytes that lie entirely inside `offset..offset + len`, as
/// `(offset, len)`; `None` when not one does.
fn whole_pages_inside(offset: usize, len: usize, page: usize) -> Option<(usize, usize)> {
  let start = offset.checked_next_multiple_of(page)?;
  let end = (offset + len) / page * page;
  (end > start).then(|| (start, end - start))
}

impl Mapping {
  /// Maps `len` bytes (see [`sys::map`]) and enters the new mapping in the fault table (the
  /// registry learns of it when a Buffer shows it). Fails with `ENOMEM`
  /// before the system call when the runtime would be left too few kernel mappings.
  // A `Mapping` lives only behind a `Shared`, so that is what `new` makes.
  #[allow(clippy::new_ret_no_self)]
  pub fn new(
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    offset: u64,
    path: Option<&[u8]>,
  ) -> io::Result<Shared> {
    reserve_vmas(1)?;
    reserve_address_space(len)?;
    let private = flags & sys::consts::MAP_TYPE_MASK == sys::consts::MAP_PRIVATE;
    let _data = reserve_data(len, private && prot & sys::consts::PROT_WRITE != 0)?;
    recovery::install();
    let anonymous = flags & sys::consts::MAP_ANONYMOUS != 0;
    // Asked before the system call: some descriptors must not be mapped (see `sys::file_kind`).
    let regular = !anonymous && sys::file_kind(fd)?;
    let addr = sys::map(len, prot, flags, fd, offset)?;
    // A Buffer over it will be recorded at this address soon (`buffer::create`).
    registry::prefetch(addr as usize);
    let shared = flags & sys::consts::MAP_TYPE_MASK != sys::consts::MAP_PRIVATE;
    // The kernel turns a shared mapping of /dev/zero into shared anonymous memory; other
    // devices have no size to grow either. Only a regular file (memfd and shm files too) grows.
    let fixed_size = shared && !regular;
    let granule = granule(flags, fd, addr as usize);
    // MAP_LOCKED is 0 where mappings cannot be made locked (macOS): then none is.
    #[allow(clippy::bad_bit_mask)]
    let batchable = granule == sys::page_size() && flags & sys::consts::MAP_LOCKED == 0;
    let file_pages = flags & sys::consts::MAP_ANONYMOUS == 0 && granule == sys::page_size();
    // MAP_LOCKED is 0 where mappings cannot be made locked (macOS): then none is.
    #[allow(clippy::bad_bit_mask)]
    let locked = flags & sys::consts::MAP_LOCKED != 0;
    Self::adopt(
      addr,
      len,
      prot,
      path.map(Box::from),
      Layout {
        fixed_size,
        file_pages,
        granule,
        batchable,
        locked,
      },
    )
  }

  /// Takes ownership of a range just mapped for us and enters it in the fault table. Fails with
  /// `ENOMEM` (the range given back) if the table cannot grow.
  fn adopt(
    addr: *mut u8,
    len: usize,
    prot: i32,
    path: Option<Box<[u8]>>,
    layout: Layout,
  ) -> io::Result<Shared> {
    let Layout {
      fixed_size,
      file_pages,
      granule,
      batchable,
      locked,
    } = layout;
    let extent = len.div_ceil(granule) * granule;
    let mapping = Shared::new(Mapping {
      record: faults::Record::new(addr as usize, len, prot, granule, file_pages, path),
      state: AtomicU8::new(LIVE),
      guaranteed_prot: AtomicI32::new(prot),
      accesses: AtomicUsize::new(0),
      changes: AtomicUsize::new(0),
      change_lock: Mutex::new(()),
      identity: OnceLock::new(),
      fixed_size,
      slot: AtomicUsize::new(NO_SLOT),
      batchable: AtomicBool::new(batchable),
      locked: Mutex::new(if locked { vec![(0, extent)] } else { Vec::new() }),
      cancel: AtomicU32::new(0),
      cancel_waiters: AtomicU32::new(0),
      words: AtomicUsize::new(0),
    });
    HELD.fetch_add(mapping.extent(), Ordering::Relaxed);
    // Dropped on failure: unmapped at once (it holds no slot).
    let slot = faults::register(&mapping.record)?;
    mapping.slot.store(slot, Ordering::Release);
    if let Some(made) = made_here() {
      made.note(&mapping);
    }
    Ok(mapping)
  }

  /// The protection the mapping was made with.
  pub fn prot(&self) -> i32 {
    self.record.prot()
  }

  /// Whether `protect()` ever changed part of the mapping's rights.
  pub fn reprotected(&self) -> bool {
    self.record.reprotected()
  }

  /// Rights that every byte of the mapping has now (see the field).
  pub fn guaranteed_prot(&self) -> i32 {
    self.guaranteed_prot.load(Ordering::Acquire)
  }

  /// Runs `access` (native code reading the memory, or, with `PROT_WRITE` in `needs`, writing
  /// it) if every byte has the rights `needs` (after `unmap()`, the zero-filled placeholder's:
  /// read and write); `None`, running nothing, otherwise. While `access`
  /// runs, neither the rights nor the memory change: a `protect()`, `unmap()` or `remap()` of
  /// this mapping on another thread waits for it to end (so what [`Mapping::is_unmapped`] says
  /// inside `access` stays true until it returns). Without this, a check of the rights and the
  /// access after it race a `protect(PROT_NONE)` on another thread (a worker holding the
  /// memory): a SIGSEGV inside node-mmap; and a copy racing `unmap()` is part file, part zeros.
  ///
  /// `access` must be short (a copy, a read of a word: a change waits for it), and must not
  /// run JavaScript, nor anything that may change this mapping or wait for a thread that might
  /// (that would wait for itself), nor an access of this same mapping. An access of another
  /// mapping inside it is allowed when every thread nests them in one order (by address): an
  /// access may wait for a change, and a change for the accesses of its own mapping only, so
  /// waits then always go from lower to higher addresses, never round in a cycle.
  pub fn accessing<R>(&self, needs: i32, access: impl FnOnce() -> R) -> Option<R> {
    struct Done<'a>(&'a AtomicUsize);
    impl Drop for Done<'_> {
      fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
      }
    }
    // Counted, then the changes read (SeqCst both here and in `changing`, which counts itself,
    // then reads the accesses): either this access sees the change and steps back until it is
    // done, or the change sees this access and waits for it.
    loop {
      self.accesses.fetch_add(1, Ordering::SeqCst);
      if self.changes.load(Ordering::SeqCst) == 0 {
        break;
      }
      self.accesses.fetch_sub(1, Ordering::SeqCst);
      while self.changes.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
      }
    }
    let _done = Done(&self.accesses);
    let allowed = self.guaranteed_prot.load(Ordering::SeqCst) & needs == needs;
    allowed.then(access)
  }

  /// Runs `change` (a change of the pages' rights, or of the memory behind the range) once no
  /// [`Mapping::accessing`] is in flight and no other change of this mapping; none starts until
  /// it returns. Changes do not nest.
  fn changing<R>(&self, change: impl FnOnce() -> R) -> R {
    let _one_at_a_time = self
      .change_lock
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    struct Done<'a>(&'a AtomicUsize);
    impl Drop for Done<'_> {
      fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
      }
    }
    self.changes.fetch_add(1, Ordering::SeqCst);
    let _done = Done(&self.changes);
    while self.accesses.load(Ordering::SeqCst) != 0 {
      std::thread::yield_now();
    }
    change()
  }

  /// The object and offset that the kernel's shared futex key of the byte at `offset` comes
  /// from, for a shared mapping: the same for every mapping of that byte of a file (see
  /// [`sys::shared_identity`]). `None` for a private mapping, whose bytes are its own.
  pub fn shared_identity(&self, offset: usize) -> Option<(u64, u64, u64)> {
    let first = *self
      .identity
      .get_or_init(|| sys::shared_identity(self.record.addr()));
    first.map(|(device, inode, at)| (device, inode, at + offset as u64))
  }

  /// Whether `remap` may grow the mapping past its current length: not for shared memory with
  /// no regular file behind it, whose object has a fixed size (see the field).
  pub fn can_grow(&self) -> bool {
    !self.fixed_size
  }

  /// Runs `sleep` with the futex word that is 0 while the mapping is live and readable, and
  /// not 0 once `unmap()` took it away or while `protect()` has taken read access away; each of
  /// them wakes the threads sleeping on it (see `sys::wait_or_cancel`), which then look at
  /// [`Mapping::is_unmapped`] and [`Mapping::guaranteed_prot`]. `sleep` must read the word in
  /// the kernel (futex), which is ordered after this call's count of sleepers: either the
  /// change sees the count and wakes, or the kernel sees the word set.
  pub fn with_cancel_word<R>(&self, sleep: impl FnOnce(*const u32) -> R) -> R {
    self.cancel_waiters.fetch_add(1, Ordering::SeqCst);
    std::sync::atomic::fence(Ordering::SeqCst);
    let result = sleep(self.cancel.as_ptr());
    self.cancel_waiters.fetch_sub(1, Ordering::Relaxed);
    result
  }

  /// Counts a futex word that holds the mapping (`futex::Word::new`), or one less (its drop).
  pub fn word_held(&self, held: bool) {
    match held {
      true => self.words.fetch_add(1, Ordering::SeqCst),
      false => self.words.fetch_sub(1, Ordering::SeqCst),
    };
  }

  /// Whether only futex words hold `mapping` besides the caller's own reference (`others`
  /// more are the caller's too): no view of it is left anywhere, so nothing could ever
  /// `notify()` through this mapping again, nor `unmap()` it.
  pub fn held_by_words_alone(mapping: &Shared, others: usize) -> bool {
    let words = mapping.words.load(Ordering::SeqCst);
    words > 0 && Arc::strong_count(mapping) == 1 + others + words
  }

  /// What the last view's release does to a mapping that waits still hold
  /// ([`Mapping::held_by_words_alone`]): the memory taken away as by `unmap()`, so that the
  /// waits end with `ERR_MMAP_UNMAPPED` and let it go. They held it for ever before: with
  /// anonymous memory nothing could reach the word again, the Promise kept the process alive,
  /// and the mapping stayed mapped and resident (attack pass 12: `buffer.transfer()` released
  /// the last view while a `waitAsync()` slept). On the bound alone, as at a worker's end.
  pub fn release_to_waits(&self) {
    let _ = self.unmap_reading(false);
  }

  /// How many lost pages (SIGBUS) were replaced with zeros.
  pub fn faults(&self) -> usize {
    self.record.faults()
  }

  /// Where the lost tail starts, as far as SIGBUS recovery learned: every page from there on
  /// is lost, replaced with zeros or to be replaced when touched (see [`faults::Record`]).
  pub fn lost_from(&self) -> usize {
    self.record.lost_tail()
  }

  /// Leaves the fault table: afterwards no signal handler looks at this mapping.
  fn leave_fault_table(&self) {
    let slot = self.slot.swap(NO_SLOT, Ordering::AcqRel);
    if slot != NO_SLOT {
      faults::unregister(slot);
    }
  }

  /// The first byte of the mapping (page-aligned).
  pub fn addr(&self) -> *mut u8 {
    self.record.addr() as *mut u8
  }

  /// The mapping's length in bytes, as asked for (the OS rounds up to whole pages).
  pub fn len(&self) -> usize {
    self.record.len()
  }

  /// The size of the pages behind the mapping (see [`faults::Record`]).
  pub fn granule(&self) -> usize {
    self.record.granule()
  }

  /// The length of the range the OS actually mapped: whole pages (whole huge pages with
  /// `MAP_HUGETLB` or on hugetlbfs).
  pub fn extent(&self) -> usize {
    self.record.extent()
  }

  /// Whether `unmap()` or `remap()` took the user's memory away.
  pub fn is_unmapped(&self) -> bool {
    self.state.load(Ordering::Acquire) != LIVE
  }

  /// The page-aligned span covering `offset..offset + len`: its address and length.
  fn span(&self, offset: usize, len: usize) -> (*mut u8, usize) {
    debug_assert!(offset <= self.len() && len <= self.len() - offset);
    let start = offset - offset % sys::page_size();
    // SAFETY: `start <= offset <= self.len()`, so the pointer stays inside the mapping.
    (unsafe { self.addr().add(start) }, offset + len - start)
  }

  /// Runs `op` on the page span of a range, refusing an unmapped mapping. An empty range spans
  /// no page, wherever it starts: `op` is not run (rounding `offset..offset` out to pages would
  /// name the page around an unaligned `offset`, which the range does not include).
  fn on_span(
    &self,
    offset: usize,
    len: usize,
    op: impl FnOnce(*mut u8, usize) -> io::Result<()>,
  ) -> Result<(), Failure> {
    if self.is_unmapped() {
      return Err(Failure::Unmapped);
    }
    if len == 0 {
      return Ok(());
    }
    let (addr, span) = self.span(offset, len);
    Ok(op(addr, span)?)
  }

  /// Changing the attributes of a range (`protect`, `lock`, `advise`) splits the kernel mapping
  /// holding it into up to three: reserve the two new ones. Also for the whole mapping: the
  /// kernel merges neighbouring mappings of the same kind into one, which a change of one of
  /// them splits again (66,000 one-page mappings merged into a few hundred kernel mappings, then
  /// protect() of every second one reached the kernel's limit and V8 aborted, attack pass 15).
  fn reserve_split(&self, _offset: usize, len: usize) -> Result<(), Failure> {
    if len == 0 {
      return Ok(());
    }
    Ok(reserve_vmas(2)?)
  }

  /// `madvise` over `offset..offset + len`. `advice` is from the exported set (none of it leaves
  /// memory inaccessible). A hint is rounded out to whole pages. An advice that discards data
  /// (`MADV_DONTNEED`, `MADV_FREE`, `MADV_REMOVE`) is rounded in, to the whole pages (whole huge
  /// pages, see [`Mapping::granule`]) that lie entirely inside the range, so that no byte outside
  /// it is lost: the rest of a partial page is the user's file (or bytes of the mapping the range
  /// did not name). When no whole page fits, nothing is discarded and the call succeeds.
  pub fn advise(&self, offset: usize, len: usize, advice: i32) -> Result<(), Failure> {
    let discarding = advice != sys::consts::MADV_NORMAL && DISCARDING_ADVICE.contains(&advice);
    let (offset, len) = if discarding {
      match whole_pages_inside(offset, len, self.granule()) {
        Some(range) => range,
        None if self.is_unmapped() => return Err(Failure::Unmapped),
        None => return Ok(()),
      }
    } else {
      (offset, len)
    };
    // MADV_REMOVE punches holes in the file, kernel mapping by kernel mapping, and refuses
    // anonymous memory: after SIGBUS recovery replaced pages of the range, it punched the file's
    // pages before the first replaced one and then failed (EINVAL), a call that threw having
    // changed the file (attack pass 17). Refused before anything changes.
    // (MADV_REMOVE is 0, no advice, where there is no hole punching: never refused there.)
    // The check and the punching run with no recovery in flight: a recovery on another thread
    // (a worker reading the truncated file) between the two made the check pass and the punch
    // fail after all (attack pass 18b).
    let removing = advice == sys::consts::MADV_REMOVE && advice != 0;
    // The same for locked pages: madvise(2) discards kernel mapping by kernel mapping and stops
    // with EINVAL at a locked one, so `advise(buf, MADV_DONTNEED)` over a range with a
    // `lock()`ed page in it zeroed the pages before that page, then threw (attack pass 18).
    // Refused first, with the kernel's own error. The record stays held until madvise returns:
    // a lock() on another thread in between (memory moved to a worker) beat the check, and the
    // pages went anyway (attack pass 18b).
    let held = discarding.then(|| self.locked_record());
    if held
      .as_ref()
      .is_some_and(|ranges| overlaps(ranges, offset, offset + len))
    {
      return Err(Failure::Os(io::Error::from_raw_os_error(libc::EINVAL)));
    }
    self.reserve_split(offset, len)?;
    let apply = || {
      if removing && self.faults() > 0 {
        return Err(Failure::Os(io::Error::from_raw_os_error(libc::EINVAL)));
      }
      // SAFETY: the span lies inside our own mapping (safety model).
      self.on_span(offset, len, |addr, span| unsafe {
        sys::advise(addr, span, advice)
      })
    };
    // Nothing in `apply` faults (madvise reads no byte in user space), as excluding_recovery asks.
    let advised = if removing {
      recovery::excluding_recovery(apply)
    } else {
      apply()
    };
    drop(held);
    advised
  }

  /// `msync` over `offset..offset + len` (rounded out to pages).
  pub fn sync(&self, offset: usize, len: usize, flags: i32) -> Result<(), Failure> {
    // SAFETY: the span lies inside our own mapping (safety model).
    self.on_span(offset, len, |addr, span| unsafe { sys::sync(addr, span, flags) })
  }

  /// `mlock`/`munlock` over `offset..offset + len` (rounded out to pages).
  pub fn lock(&self, offset: usize, len: usize, lock: bool) -> Result<(), Failure> {
    self.reserve_split(offset, len)?;
    // Nothing of the mapping was ever locked (ordinary pages, no `MAP_LOCKED`, no `lock()`).
    let never_locked = self.batchable.load(Ordering::Relaxed);
    if lock && len > 0 {
      // Before the call: even a partly locked range must not wait once dropped.
      self.batchable.store(false, Ordering::Relaxed);
    }
    // What the call may leave locked, in whole granules: on success, or after a failure that
    // is not undone below, a lock() may have locked any of it (counted as locked, to be safe);
    // only an unlock() that succeeds clears it.
    let granule = self.granule();
    let start = offset - offset % granule;
    let range = (start, (offset + len).div_ceil(granule) * granule);
    // The record is held from before mlock until it is up to date, so that a discarding advice
    // on another thread sees either neither or both (see `advise`).
    let mut ranges = self.locked_record();
    // SAFETY: the span lies inside our own mapping (safety model).
    let locked = self.on_span(offset, len, |addr, span| unsafe { sys::lock(addr, span, lock) });
    // A failed lock() of a never-locked mapping is undone below: it leaves nothing locked.
    let undone = lock && locked.is_err() && never_locked;
    // An empty range spans no page (and locks nothing), wherever it starts.
    if len > 0 && lock && !undone {
      add_range(&mut ranges, range.0, range.1);
    } else if len > 0 && !lock && locked.is_ok() {
      remove_range(&mut ranges, range.0, range.1);
    }
    if undone {
      // mlock(2) that fails (past RLIMIT_MEMLOCK, a page it cannot fault in) leaves the pages it
      // got to locked: a call that throws should change nothing, and where nothing was locked
      // before, unlocking the span puts it back. (Pages locked by earlier calls stay locked.)
      // SAFETY: as above; munlock only clears the lock.
      let _ = self.on_span(offset, len, |addr, span| unsafe { sys::lock(addr, span, false) });
      // Never locked still: a retry that fails is undone too.
      self.batchable.store(true, Ordering::Relaxed);
    }
    locked
  }

  /// [`Mapping::locked`], held.
  fn locked_record(&self) -> std::sync::MutexGuard<'_, Vec<(usize, usize)>> {
    self
      .locked
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  /// After a `remap()` that failed: locks again what the mapping had locked (the move unlocks
  /// the whole mapping first, and a failed move left it unlocked: a call that threw had changed
  /// what stays resident, attack pass 18b). Best effort: a range the kernel now refuses to lock
  /// stays unlocked (and recorded as locked, so that discarding advice stays refused).
  fn lock_again(&self) {
    if self.batchable.load(Ordering::Relaxed) {
      return; // never locked: nothing was unlocked
    }
    let ranges = self.locked_record();
    for &(start, end) in ranges.iter() {
      let len = end.min(self.len()).saturating_sub(start);
      // SAFETY: the span lies inside our own mapping (safety model); mlock changes no byte.
      let _ = self.on_span(start, len, |addr, span| unsafe { sys::lock(addr, span, true) });
    }
  }

  /// `mprotect` over `offset..offset + len` (rounded out to pages).
  pub fn protect(&self, offset: usize, len: usize, prot: i32) -> Result<(), Failure> {
    if len == 0 {
      // No page: nothing to change, and the rights guaranteed to copies stay as they are.
      return self.on_span(offset, len, |_, _| Ok(()));
    }
    self.reserve_split(offset, len)?;
    // Write access makes private memory count toward the data limit: as for `map()`, the
    // runtime keeps its headroom (a read-only private mapping made writable by `protect()` took
    // what `map()` had refused, and V8 aborted, attack pass 15). Counted for any mapping whose
    // rights may lack write now (shared memory does not count: the guard errs on the safe side).
    let adds_write =
      prot & sys::consts::PROT_WRITE != 0 && self.guaranteed_prot() & sys::consts::PROT_WRITE == 0;
    let _data = reserve_data(len, adds_write)?;
    self.record.set_reprotected(true);
    // No native access is in flight meanwhile (`changing`): none began on the rights the range
    // is about to lose, and the next ones see the narrowed guarantee.
    self.changing(|| {
      if self.is_unmapped() {
        return Err(Failure::Unmapped); // the placeholder's rights stay as they are
      }
      if offset == 0 && len == self.len() {
        self.guaranteed_prot.store(prot, Ordering::SeqCst);
      } else {
        self.guaranteed_prot.fetch_and(prot, Ordering::SeqCst);
      }
      let changed = recovery::excluding_recovery(|| {
        // SAFETY: the span lies inside our own mapping (safety model).
        self.on_span(offset, len, |addr, span| unsafe {
          sys::protect(addr, span, prot)
        })
      });
      self.rights_changed();
      changed
    })
  }

  /// After `protect()`: sets the cancel word to [`CANCEL_UNREADABLE`] and wakes the waits of
  /// the mapping when it no longer guarantees read access, back to 0 when it does again. A
  /// wait on a word that became unreadable slept on for ever (attack pass 11): `notify()`
  /// refuses such a word (`ERR_MMAP_ACCESS`), so nothing could wake it. Its waits now end
  /// with `ERR_MMAP_ACCESS`, as a wait begun on it does.
  fn rights_changed(&self) {
    let readable = self.guaranteed_prot() & sys::consts::PROT_READ != 0;
    let (from, to) = match readable {
      true => (CANCEL_UNREADABLE, 0),
      false => (0, CANCEL_UNREADABLE),
    };
    // Never over `CANCEL_UNMAPPED`: unmapped stays so.
    let set = self
      .cancel
      .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
      .is_ok();
    // SeqCst store, then SeqCst load of the sleepers, as in `taken_away`.
    if set && !readable && self.cancel_waiters.load(Ordering::SeqCst) != 0 {
      // SAFETY: `cancel` is an aligned word of this value, alive for the call.
      unsafe { sys::wake_private(self.cancel.as_ptr()) };
    }
  }

  /// `mincore` over `offset..offset + len`: `(resident pages, pages spanned)`.
  pub fn resident_pages(&self, offset: usize, len: usize) -> Result<(usize, usize), Failure> {
    let mut result = (0, 0);
    self.on_span(offset, len, |addr, span| {
      // SAFETY: the span lies inside our own mapping (safety model).
      result = unsafe { sys::resident_pages(addr, span) }?;
      Ok(())
    })?;
    Ok(result)
  }

  /// Takes the user's memory away: the range becomes a zero-filled placeholder that stays
  /// reserved until the last reference drops. Returns `false` if it was already unmapped.
  ///
  /// The placeholder splits the kernel mapping it is cut from when the kernel had merged this
  /// mapping with its neighbours (consecutive pages of one file): that may go [`UNMAP_GRACE`]
  /// past the limit of [`reserve_vmas`], and fails with `ENOMEM` beyond (the mapping stays as
  /// it was). A mapping that is a kernel mapping of its own never fails so.
  pub fn unmap(&self) -> io::Result<bool> {
    self.unmap_reading(true)
  }

  /// What the end of a worker's env does to a mapping it made, from a finalizer or a cleanup
  /// hook: the user's memory taken away as by [`Mapping::unmap`], and the pages written to the
  /// placeholder since an earlier `unmap()` given back. Best effort: without a placeholder
  /// (`ENOMEM` at the limit) the user's memory stays mapped, which is as safe. Never reads the
  /// kernel's whole list for one mapping (a worker ending at the limit with 40,000 Buffers would
  /// read it 40,000 times, some 30 ms each).
  pub fn unmap_at_env_end(&self) {
    let _ = self.unmap_reading(false);
    self.clear_placeholder();
  }

  /// [`Mapping::unmap`]; `exact`: whether it may read the kernel's whole list, to learn whether
  /// the placeholder splits a kernel mapping where the kernel cannot be asked by address, and to
  /// count the room; else it goes by the bound alone ([`reserve_on_bound`]).
  fn unmap_reading(&self, exact: bool) -> io::Result<bool> {
    if self.is_unmapped() {
      return Ok(false);
    }
    // Near the limit, the kernel tells whether the placeholder splits anything (most mappings
    // are kernel mappings of their own: then it adds none).
    let (addr, extent) = (self.record.addr(), self.extent());
    let splits = match near_limit(2, UNMAP_GRACE) {
      true => vmas_split_by(addr, extent, exact)
        .or_else(|| (!exact).then(|| vmas_split_by_snapshot(addr, extent)).flatten())
        .unwrap_or(2),
      false => 2,
    };
    if splits > 0 {
      match exact {
        true => reserve_vmas_beyond(splits, UNMAP_GRACE)?,
        false if reserve_on_bound(splits) => {}
        false => return Err(io::Error::from_raw_os_error(libc::ENOMEM)),
      }
    }
    // No native access is in flight while the memory goes (`changing`): a copy is all of the
    // user's bytes or, after, none of them.
    let replaced = self.changing(|| recovery::excluding_recovery(|| self.take_away()))?;
    if replaced {
      // The placeholder may merge with placeholders beside it: fewer kernel mappings.
      note_freed();
      self.taken_away();
    }
    Ok(replaced)
  }

  /// [`Mapping::unmap`]'s change, under [`Mapping::changing`]: the placeholder in place of the
  /// user's memory. `false` if it was unmapped already.
  fn take_away(&self) -> io::Result<bool> {
    if self.state.swap(UNMAPPED, Ordering::AcqRel) != LIVE {
      return Ok(false);
    }
    // SAFETY: the range is ours (safety model); the placeholder replaces it in one step.
    if let Err(err) = unsafe { sys::replace_with_placeholder(self.addr(), self.extent()) } {
      // Nothing changed: the user's memory is still there, and still ours to unmap.
      self.state.store(LIVE, Ordering::Release);
      return Err(err);
    }
    // The placeholder is readable and writable, whatever the mapping was: what is written to a
    // view afterwards stays there (README, `unmap()`).
    let placeholder = sys::consts::PROT_READ | sys::consts::PROT_WRITE;
    self.guaranteed_prot.store(placeholder, Ordering::SeqCst);
    Ok(true)
  }

  /// What follows [`Mapping::take_away`]: out of the fault table, the placeholder recorded, and
  /// the waits on the user's memory woken.
  fn taken_away(&self) {
    self.leave_fault_table();
    registry::placeholder_added(self.record.addr(), self.extent());
    // Wake the `wait`s and `waitAsync`s sleeping on the user's memory, which is gone: they see
    // the word set.
    // SeqCst store, then SeqCst load of the sleepers (`with_cancel_word` counts, then sleeps):
    // a sleeper this load misses counted itself later, so its futex sees the word already set.
    self.cancel.store(CANCEL_UNMAPPED, Ordering::SeqCst);
    if self.cancel_waiters.load(Ordering::SeqCst) != 0 {
      // SAFETY: `cancel` is an aligned word of this value, alive for the call.
      unsafe { sys::wake_private(self.cancel.as_ptr()) };
    }
  }

  /// Hands back to the system the pages of the placeholder that were written after `unmap()`
  /// (they read as zeros again): for a range kept for good (a worker's end, see
  /// `buffer::finalize_memory`), whose writes would otherwise stay resident until the process
  /// ends. Nothing on a live mapping.
  fn clear_placeholder(&self) {
    if !self.is_unmapped() {
      return;
    }
    // SAFETY: the range is ours (safety model) and holds the placeholder, anonymous memory of
    // nobody's data: discarding its pages leaves it readable, as zeros.
    unsafe { sys::clear_placeholder(self.addr(), self.extent()) };
  }

  /// Moves the mapping's memory into a new mapping of `new_len` bytes, then takes it away from
  /// this one (as [`Mapping::unmap`]). The new mapping shares the same file pages.
  pub fn remap(&self, new_len: usize) -> Result<Shared, Failure> {
    if self.is_unmapped() {
      return Err(Failure::Unmapped);
    }
    // The moved range is a new kernel mapping, and moving part of a mapping the kernel had
    // merged with its neighbours splits that one in three.
    reserve_vmas(3)?;
    reserve_address_space(new_len)?;
    // Counted as charged whatever the mapping: the placeholder left behind is private, writable
    // memory, as the moved range of a private writable mapping is.
    let _data = reserve_data(new_len, true)?;
    // No native access is in flight while the pages move (`changing`): a copy from the old range
    // is all of the user's bytes or, after, none of them.
    // The locked-ranges record is held through the move, so that no `lock()` on another thread
    // runs between the move's munlock and the placeholder taking the range's place: one that did
    // locked the placeholder, whose pages then stayed locked and charged against
    // RLIMIT_MEMLOCK for the life of the process (attack pass 18c). Taken before the recovery
    // exclusion, as `advise()` takes the two (no deadlock between them).
    let moved = self.changing(|| {
      let _record = self.locked_record();
      recovery::excluding_recovery(|| self.move_to(new_len))
    });
    let (moved, replaced) = moved.inspect_err(|_| self.lock_again())?;
    // Out of the fault table only after the exclusion, as for `unmap()`: leaving it waits for
    // the signal handlers using the record, and one of them may be waiting for the exclusion
    // (SIGBUS recovery of the old range on another thread: both spun for ever, attack pass 9).
    if replaced {
      self.taken_away();
    }
    Ok(moved)
  }

  /// [`Mapping::remap`]'s work, with no native access in flight: the moved mapping, and whether
  /// the old range was taken away (the caller finishes that with [`Mapping::taken_away`]).
  fn move_to(&self, new_len: usize) -> Result<(Shared, bool), Failure> {
    if self.is_unmapped() {
      return Err(Failure::Unmapped); // on another thread, since `remap` looked
    }
    if !self.batchable.load(Ordering::Relaxed) {
      // Ever locked (or huge pages, where this is a no-op): unlocked before the move. The
      // kernel clears the lock of the range `MREMAP_DONTUNMAP` leaves behind without giving
      // back its share of `RLIMIT_MEMLOCK`, which stayed taken for the life of the process, so
      // that `lock()` failed after a few rounds (attack pass 8). The moved mapping is unlocked.
      // SAFETY: the whole range is ours (safety model); munlock changes no byte.
      let _ = unsafe { sys::lock(self.addr(), self.extent(), false) };
    }
    // A `MAP_PRIVATE` mapping of a file: the range `MREMAP_DONTUNMAP` leaves behind reads the
    // file's own bytes (the pages the mapping held go with the move) until the placeholder
    // replaces it, milliseconds later for a large mapping: work on another thread reading it
    // meanwhile saw bytes the mapping never held (attack pass 11). The range loses its rights
    // first, so that such a read faults instead; the handler sees `moving`, waits for this
    // change (it holds the recovery lock), and the access runs again on the placeholder's
    // zeros, or, if the move fails, on the mapping with its rights back.
    // Only where one kernel mapping holds the whole range: a range `protect()`, `advise()` or
    // `lock()` split into several cannot move (mremap fails with `EFAULT`, changing nothing),
    // and taking the rights of all of it away merged the parts, which then got one part's
    // rights back on every page (attack pass 13: the next read of a page nobody protected
    // ended the process, after a remap() that threw too).
    let hidden = match self.record.file_pages() && self.shared_identity(0).is_none() {
      true => self.rights_if_one_kernel_mapping(),
      false => None,
    };
    if hidden.is_some() {
      self.record.set_moving(true);
      // SAFETY: the whole range is ours (safety model); no native access of ours is in flight
      // (`changing`), and others' faults wait (see above).
      if let Err(err) = unsafe { sys::protect(self.addr(), self.extent(), sys::consts::PROT_NONE) } {
        self.record.set_moving(false);
        return Err(err.into());
      }
    }
    // SAFETY: the whole range is ours (safety model) and both lengths are non-zero.
    let moved = unsafe {
      sys::remap(
        self.addr(),
        self.extent(),
        new_len.next_multiple_of(self.granule()),
      )
    };
    let addr = match (moved, hidden) {
      (Ok(addr), Some(prot)) => {
        // The moved pages have no rights either (mremap keeps them): theirs again, before
        // anyone knows the new range.
        // SAFETY: `addr` is the new range the kernel just made for us, of the new length.
        let new_extent = new_len.next_multiple_of(self.granule());
        // SAFETY: `addr..addr + new_extent` is the new range, ours alone.
        let restored = unsafe { sys::protect(addr, new_extent, prot) };
        if let Err(err) = restored {
          // Not expected (the rights it had, over one whole kernel mapping: no split, and the
          // memory stays charged as it was). Should it fail, the pages go back where they were
          // and keep their bytes, and remap() fails.
          // SAFETY: `addr..addr + new_extent` is ours alone; the old range is ours (safety
          // model) and holds nothing the move did not take.
          let _ = unsafe { sys::move_back(addr, new_extent, self.addr(), self.extent()) };
          // SAFETY: the old range is ours (safety model).
          let _ = unsafe { sys::protect(self.addr(), self.extent(), prot) };
          self.record.set_moving(false);
          return Err(err.into());
        }
        addr
      }
      (Ok(addr), None) => addr,
      (Err(err), hidden) => {
        if let Some(prot) = hidden {
          // SAFETY: the whole range is ours; a failed move left the pages in it.
          let _ = unsafe { sys::protect(self.addr(), self.extent(), prot) };
          self.record.set_moving(false);
        }
        return Err(err.into());
      }
    };
    let layout = Layout {
      fixed_size: self.fixed_size,
      file_pages: self.record.file_pages(),
      granule: self.granule(),
      batchable: self.batchable.load(Ordering::Relaxed),
      // Unlocked before the move (above).
      locked: false,
    };
    let path = self.record.path().map(Box::from);
    let moved = Self::adopt(addr, new_len, self.record.prot(), path, layout)?;
    // mremap keeps the pages' rights, and a grown tail takes those of the pages before it: so
    // what `protect()` left guaranteed here holds there too. Starting over from `prot` would let
    // native copies write into pages `protect()` made read-only (a SIGSEGV, not an error).
    moved
      .guaranteed_prot
      .store(self.guaranteed_prot(), Ordering::Release);
    moved.record.set_reprotected(self.reprotected());
    let replaced = self.take_away();
    self.record.set_moving(false);
    Ok((moved, replaced?))
  }

  /// The rights of the one kernel mapping that holds the whole range, as the kernel tells
  /// (`/proc/self/maps`); `None` when the range is split into several (`protect()`,
  /// `advise()` or `lock()` of part of it), or the list cannot be read.
  fn rights_if_one_kernel_mapping(&self) -> Option<i32> {
    let addr = self.record.addr();
    sys::signals::maps_region(addr, |_| {})
      .filter(|&(start, end, _)| start <= addr && addr + self.extent() <= end)
      .map(|(_, _, prot)| prot)
  }
}

/// The mappings made for one worker's env, weakly (they keep nothing alive), for its end
/// ([`MadeFor::release`]): those its thread makes, and those the thread pool makes for its
/// `open()`s. Pruned of the dropped ones whenever it is full.
#[derive(Clone)]
pub struct MadeFor(Arc<Mutex<Made>>);

/// What a [`MadeFor`] holds.
#[derive(Default)]
pub struct Made {
  list: Vec<Weak<Mapping>>,
  /// The env has ended: a mapping noted from now on (an `open()` the pool finished after it)
  /// is released at once.
  released: bool,
}

impl MadeFor {
  /// Notes `mapping`. Best effort: with no memory for the note, the mapping is only left to its
  /// finalizers, as before.
  pub fn note(&self, mapping: &Shared) {
    let mut made = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if made.released {
      drop(made);
      release_one(mapping);
      return;
    }
    let list = &mut made.list;
    if list.len() == list.capacity() {
      list.retain(|weak| weak.strong_count() > 0);
    }
    if list.try_reserve(1).is_ok() {
      list.push(Arc::downgrade(mapping));
    }
  }

  /// The end of the worker's env: takes the user's memory out of every mapping noted that is
  /// still alive (the zero-filled placeholder in its place, its pages given back), as `unmap()`
  /// does. For runtimes that finalize none of a worker's objects when it ends with native work
  /// pending (Deno, with a `flush()` or `open()` in flight): without this, all it mapped stayed
  /// mapped and resident for the life of the process. What is still alive keeps its range
  /// reserved until its last reference drops, which there may never be: address space, not
  /// memory, as for a worker's Buffers everywhere (README, Caveats). Where the finalizers did
  /// run (Node, Bun), little or nothing is alive by then.
  pub fn release(&self) {
    let list = {
      let mut made = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
      made.released = true;
      std::mem::take(&mut made.list)
    };
    for mapping in list.iter().filter_map(Weak::upgrade) {
      release_one(&mapping);
    }
  }

  /// The list as a pointer, for a cleanup hook's argument; back with [`MadeFor::from_raw`].
  pub fn into_raw(self) -> *const Mutex<Made> {
    Arc::into_raw(self.0)
  }

  /// # Safety
  /// `raw` came from [`MadeFor::into_raw`], and is taken back once.
  pub unsafe fn from_raw(raw: *const Mutex<Made>) -> MadeFor {
    // SAFETY: forwarded from this function's contract.
    MadeFor(unsafe { Arc::from_raw(raw) })
  }
}

/// What [`MadeFor::release`] does to each mapping.
fn release_one(mapping: &Mapping) {
  mapping.unmap_at_env_end();
}

thread_local! {
  /// This thread's [`MadeFor`], once [`watch_made_here`] gave it one (a worker's env thread).
  static MADE_HERE: RefCell<Option<MadeFor>> = const { RefCell::new(None) };
}

/// The list of the mappings made for this thread's env, if it has one (see [`MadeFor`]).
pub fn made_here() -> Option<MadeFor> {
  MADE_HERE
    .try_with(|made| made.try_borrow().ok().and_then(|made| made.clone()))
    .ok()
    .flatten()
}

/// Gives this thread a [`MadeFor`] (unless it has one) and returns it: from now on the mappings
/// made here are noted in it.
pub fn watch_made_here() -> Option<MadeFor> {
  MADE_HERE
    .try_with(|made| {
      let mut made = made.try_borrow_mut().ok()?;
      Some(
        made
          .get_or_insert_with(|| MadeFor(Arc::new(Mutex::new(Made::default()))))
          .clone(),
      )
    })
    .ok()
    .flatten()
}

impl Drop for Mapping {
  fn drop(&mut self) {
    HELD.fetch_sub(self.extent(), Ordering::Relaxed);
    // A run of placeholders is ordinary pages, but it may stand where huge or locked pages
    // were: it waits only if this mapping could have.
    let batchable = *self.batchable.get_mut();
    let (addr, len) = if self.is_unmapped() {
      // A placeholder is given back with the run of placeholders it belongs to, once all of
      // them are released (see `registry::placeholder_released`).
      match registry::placeholder_released(self.record.addr()) {
        Some((start, len)) => (start as *mut u8, len),
        None => return,
      }
    } else {
      // `&mut self`: nobody else can take the slot now, so no atomic swap is needed.
      let slot = std::mem::replace(self.slot.get_mut(), NO_SLOT);
      if slot != NO_SLOT {
        faults::unregister(slot);
      }
      (self.addr(), self.extent())
    };
    // SAFETY: this value owns the range (safety model) and is being dropped: no ArrayBuffer,
    // handle or task refers to it any more, so nothing can reach the memory after this. A run
    // of placeholders is given back only when every mapping in it has dropped.
    unsafe { reclaim::release(addr, len, batchable) };
  }
}

// Unix-only until the Windows port (issue 14): these tests map through the OS layer and name
// libc's Unix constants and calls, which the stub target has not got.
#[cfg(all(test, unix))]
mod tests {
  #[test]
  fn locked_ranges_merge_split_and_overlap() {
    use super::{add_range, overlaps, remove_range};
    let mut ranges = Vec::new();
    add_range(&mut ranges, 8, 12);
    add_range(&mut ranges, 0, 4);
    assert_eq!(ranges, [(0, 4), (8, 12)]);
    add_range(&mut ranges, 4, 8); // touching both: one range
    assert_eq!(ranges, [(0, 12)]);
    remove_range(&mut ranges, 4, 6);
    assert_eq!(ranges, [(0, 4), (6, 12)]);
    assert!(!overlaps(&ranges, 4, 6));
    assert!(overlaps(&ranges, 3, 5));
    assert!(overlaps(&ranges, 5, 7));
    assert!(!overlaps(&ranges, 12, 20));
    assert!(!overlaps(&ranges, 3, 3)); // empty
    remove_range(&mut ranges, 0, 100);
    assert!(ranges.is_empty());
    add_range(&mut ranges, 5, 5); // empty: nothing
    assert!(ranges.is_empty());
  }

  use super::*;

  #[cfg(target_os = "linux")]
  #[test]
  fn anonymous_memory_gets_the_huge_page_size_its_flags_ask_for() {
    let page = sys::page_size();
    let anonymous = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    assert_eq!(granule(anonymous, -1, 2 << 20), page);
    let huge = anonymous | libc::MAP_HUGETLB;
    assert_eq!(granule(huge | libc::MAP_HUGE_2MB, -1, 0), 2 << 20);
    assert_eq!(granule(huge | libc::MAP_HUGE_1GB, -1, 0), 1 << 30);
    // An ordinary file, even at a 2 MiB-aligned address, has ordinary pages.
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(granule(libc::MAP_SHARED, file.as_raw_fd(), 2 << 20), page);
  }

  /// A file on hugetlbfs (here a memfd made with MFD_HUGETLB) is mapped in huge pages even
  /// without MAP_HUGETLB: the mapping must know it, or its munmap (of less than a huge page)
  /// fails and it leaks. Needs a free huge page (`.ci/run` reserves some); without one it says
  /// so and checks nothing.
  #[cfg(target_os = "linux")]
  #[test]
  fn a_hugetlbfs_file_is_mapped_and_given_back_in_whole_huge_pages() {
    let free = || {
      let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
      let line = meminfo.lines().find_map(|l| l.strip_prefix("HugePages_Free:"));
      line
        .and_then(|rest| rest.trim().parse::<usize>().ok())
        .unwrap_or(0)
    };
    let name = c"node-mmap-granule-test";
    // SAFETY: a new anonymous file; `name` is a valid C string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_HUGETLB | libc::MFD_CLOEXEC) };
    if fd < 0 || free() == 0 {
      eprintln!("skipped: no hugetlbfs memfd or no free huge page here");
      return;
    }
    let huge = sys::huge_page_size_of_file(fd).expect("a memfd made with MFD_HUGETLB is on hugetlbfs");
    // SAFETY: our own new file descriptor.
    assert_eq!(unsafe { libc::ftruncate(fd, huge as libc::off_t) }, 0);
    let lines = || {
      let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
      maps
        .lines()
        .filter(|l| l.contains("node-mmap-granule-test"))
        .count()
    };
    let mapping = Mapping::new(
      4096,
      libc::PROT_READ | libc::PROT_WRITE,
      libc::MAP_SHARED,
      fd,
      0,
      None,
    )
    .unwrap();
    assert_eq!((mapping.granule(), mapping.extent()), (huge, huge));
    assert!(
      !mapping.batchable.load(Ordering::Relaxed),
      "huge pages never wait in a run"
    );
    // SAFETY: the first byte of our own live read-write mapping.
    unsafe { *mapping.addr() = 1 };
    assert_eq!(lines(), 1);
    drop(mapping);
    assert_eq!(lines(), 0, "the mapping is given back whole");
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
  }

  fn anonymous(len: usize) -> Shared {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    Mapping::new(len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0, None).unwrap()
  }

  #[test]
  fn the_end_of_an_env_takes_its_mappings_memory_and_what_is_noted_after() {
    let made = MadeFor(Arc::new(Mutex::new(Made::default())));
    let (kept, dropped) = (anonymous(4096), anonymous(4096));
    made.note(&kept);
    made.note(&dropped);
    drop(dropped);
    made.release();
    assert!(kept.is_unmapped(), "a live mapping noted before the end");
    let late = anonymous(4096); // an open() the pool finished after the end
    made.note(&late);
    assert!(late.is_unmapped(), "a mapping noted after the end");
    let other = anonymous(4096);
    assert!(!other.is_unmapped(), "a mapping never noted");
  }

  #[test]
  fn a_recorded_buffer_finds_its_mapping_until_forgotten() {
    let mapping = anonymous(8192);
    let start = mapping.addr() as usize + 100;
    let hold = registry::record_buffer(Shared::clone(&mapping), start);
    let again = registry::record_buffer(Shared::clone(&mapping), start);
    assert!(Shared::ptr_eq(&registry::find(start).unwrap(), &mapping));
    assert!(
      registry::find(mapping.addr() as usize).is_none(),
      "lookups are exact"
    );
    // SAFETY: `hold` was recorded for `start` above and is forgotten once.
    unsafe { registry::forget_buffer(start, hold) };
    assert!(
      registry::find(start).is_some(),
      "one ArrayBuffer still starts there"
    );
    // SAFETY: as above, for the second record.
    unsafe { registry::forget_buffer(start, again) };
    assert!(registry::find(start).is_none());
    assert_eq!(Shared::strong_count(&mapping), 1);
  }

  #[test]
  fn a_record_is_forgotten_even_when_the_finalizer_is_told_another_address() {
    let mapping = anonymous(4096);
    let start = mapping.addr() as usize;
    let hold = registry::record_buffer(Shared::clone(&mapping), start);
    // SAFETY: `hold` was recorded above and is forgotten once; the address is wrong on purpose.
    unsafe { registry::forget_buffer(start + 1, hold) };
    assert!(registry::find(start).is_none());
    assert_eq!(Shared::strong_count(&mapping), 1);
  }

  #[test]
  fn an_ambiguous_wrong_address_keeps_the_mapping_rather_than_forget_a_window() {
    let mapping = anonymous(8192);
    let (first, second) = (mapping.addr() as usize, mapping.addr() as usize + 4096);
    let hold = registry::record_buffer(Shared::clone(&mapping), first);
    let other = registry::record_buffer(Shared::clone(&mapping), second);
    // SAFETY: `hold` was recorded above and is passed once; the address is wrong on purpose.
    unsafe { registry::forget_buffer(first + 1, hold) };
    assert!(registry::find(first).is_some() && registry::find(second).is_some());
    assert_eq!(
      Shared::strong_count(&mapping),
      3,
      "the reference is kept: the mapping leaks"
    );
    // SAFETY: `other` was recorded for `second` and is forgotten once.
    unsafe { registry::forget_buffer(second, other) };
    assert!(registry::find(second).is_none());
  }

  #[test]
  fn unmap_twice_is_a_no_op() {
    let mapping = anonymous(4096);
    assert!(mapping.unmap().unwrap());
    assert!(!mapping.unmap().unwrap());
    assert!(matches!(
      mapping.sync(0, 10, libc::MS_ASYNC),
      Err(Failure::Unmapped)
    ));
  }

  #[test]
  fn unmap_keeps_the_range_reserved_and_zeroed() {
    let mapping = anonymous(4096);
    // SAFETY: the mapping is writable and 4096 bytes long.
    unsafe { mapping.addr().write(9) };
    mapping.unmap().unwrap();
    // SAFETY: the placeholder is readable until the mapping drops.
    assert_eq!(unsafe { mapping.addr().read() }, 0);
  }

  #[test]
  fn span_rounds_down_to_the_page() {
    let page = sys::page_size();
    let mapping = anonymous(page * 3);
    let (addr, len) = mapping.span(page + 1, 100);
    assert_eq!(addr as usize, mapping.addr() as usize + page);
    assert_eq!(len, 101);
    mapping.advise(1, 100, libc::MADV_RANDOM).unwrap();
  }

  #[test]
  fn discarding_advice_rounds_in_to_whole_pages() {
    let page = 4096;
    assert_eq!(whole_pages_inside(0, 100, page), None);
    assert_eq!(whole_pages_inside(100, 50, page), None);
    assert_eq!(whole_pages_inside(0, page, page), Some((0, page)));
    assert_eq!(whole_pages_inside(1, 2 * page, page), Some((page, page)));
    assert_eq!(
      whole_pages_inside(page - 1, 3 * page, page),
      Some((page, 2 * page))
    );
    assert_eq!(whole_pages_inside(1, 2 * page - 2, page), None);
  }

  #[test]
  fn remap_grows_and_keeps_the_bytes() {
    let mapping = anonymous(4096);
    // SAFETY: writable, 4096 bytes.
    unsafe { mapping.addr().add(10).write(42) };
    let grown = mapping.remap(3 * 4096).unwrap();
    assert!(mapping.is_unmapped());
    // SAFETY: the grown mapping is 3 pages long and readable.
    assert_eq!(unsafe { grown.addr().add(10).read() }, 42);
    assert_eq!(grown.len(), 3 * 4096);
  }

  #[test]
  fn a_handler_reservation_counts_the_maps_and_keeps_the_runtime_half_its_headroom() {
    prepare_guard();
    let limit = vma_limit();
    if limit == usize::MAX {
      eprintln!("skipped: no vm.max_map_count here");
      return;
    }
    // Far more than the bound allows: the handler's count decides.
    let beyond = 1usize << 40;
    assert!(
      !reserve_vmas_in_handler(beyond, || Some(0)),
      "more than the limit"
    );
    let grace = RUNTIME_HEADROOM / 2;
    assert!(
      reserve_vmas_in_handler(2, || Some(limit + grace - 2)),
      "the last two of the grace"
    );
    assert!(
      !reserve_vmas_in_handler(2, || Some(limit + grace - 1)),
      "one past the grace"
    );
    assert!(!reserve_vmas_in_handler(2, || None), "maps that cannot be read");
    // Put the bound back for the other tests (a count resets it).
    reserve_vmas(1).unwrap();
  }

  #[test]
  fn fault_table_slots_are_reused_from_the_bottom() {
    let slot = |mapping: &Shared| mapping.slot.load(Ordering::Relaxed);
    let batch = || (0..1000).map(|_| anonymous(4096)).collect::<Vec<_>>();
    let mut first = batch();
    let highest = first.iter().map(slot).max().unwrap();
    // Dropped lowest slot first, as a garbage collector may finalize them: the last slot given
    // back is the highest, and the next batch must not start after it.
    first.sort_by_key(slot);
    drop(first);
    let second = batch();
    let again = second.iter().map(slot).max().unwrap();
    // Other tests take slots at the same time: a little room for them.
    assert!(
      again < highest + 100,
      "the table grew from slot {highest} to {again}"
    );
  }

  #[test]
  fn resident_pages_counts_touched_pages() {
    let page = sys::page_size();
    let mapping = anonymous(page * 4);
    // SAFETY: writable, 4 pages.
    unsafe { mapping.addr().add(page).write(1) };
    let (resident, total) = mapping.resident_pages(0, page * 4).unwrap();
    assert_eq!(total, 4);
    assert!(resident >= 1);
  }
}
