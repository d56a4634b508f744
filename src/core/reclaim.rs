//! Unmapping in batches what the garbage collector frees.
//!
//! A garbage collection frees Buffers by the hundred, and their finalizers then drop the
//! mappings one after another. The kernel placed those mappings next to each other (each new one
//! just below the last), so their ranges are mostly adjacent, and one `munmap` of the joined
//! range does the work of many: for a small mapping, the system call's entry and exit and the
//! address-space lock are most of what unmapping it costs (bench/PROFILE.md: `map` alone, whose
//! loop includes the finalizers, took about 0.85x the time).
//!
//! Each JS thread keeps one run of adjacent ranges whose mappings a finalizer has dropped. A
//! range that touches the run at either end joins it; any other range, or one more than
//! [`MAX_RANGES`], first has the run unmapped and starts a new one. The run left at the end of a
//! batch is unmapped on the thread's next event-loop turn (by the thread's "flusher", which the
//! JavaScript boundary makes when the addon loads: `crate::js::flusher`), when the env is torn
//! down, or when the thread exits.
//!
//! No Node-API here: an env is known by an opaque identity (a `usize`, never 0), and the flusher
//! by what [`enable`] was given: a handle, a token, and a function that asks it for a call.
//!
//! Only ranges of at most [`MAX_LEN`] wait (larger ones cost their pages, not the system call),
//! only ranges their mapping allows (not huge pages, not memory that was ever locked), only
//! when a finalizer drops them ([`finalizing`]: an explicit `unmap()`, `close()` or a failed
//! call still unmaps at once), and only when that finalizer runs on the thread of its own env
//! (the one [`enable`] gave a flusher when it loaded the addon): the libuv pool dropping a
//! mapping after a `flush`, or a runtime that runs finalizers on a collector thread, unmaps at
//! once.
//!
//! # Safety
//! A range waits here only once its [`crate::core::mapping::Mapping`] has dropped: nothing refers to it
//! any more (no ArrayBuffer, handle or task), it is out of the fault table, and while it stays
//! mapped the kernel gives none of it to another mapping. A run is the exact union of such
//! ranges, adjacent end to end, so unmapping it unmaps nothing else.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Ranges up to this length (rounded up to whole pages) may wait.
const MAX_LEN: usize = 1 << 20;

/// The most ranges in one run (so at most 64 MiB and 64 kernel mappings wait per thread, far
/// inside the headroom `mapping::reserve_vmas` leaves the runtime).
const MAX_RANGES: usize = 64;

/// A run `(first, last, count)` with `start..end` joined to it, if that range touches it at
/// either end and the run has room.
fn join(
  (first, last, count): (usize, usize, usize),
  start: usize,
  end: usize,
) -> Option<(usize, usize, usize)> {
  let touches = end == first || last == start;
  (count > 0 && count < MAX_RANGES && touches).then(|| (first.min(start), last.max(end), count + 1))
}

/// One thread's waiting run and the means to have it unmapped later.
struct Waiting {
  /// The run: its first byte, one past its last, and how many ranges it joins (0: no run).
  run: Cell<(usize, usize, usize)>,
  /// The env of `flusher`, which loaded the addon on this thread ([`enable`]), or 0: only
  /// its finalizers' ranges wait.
  home: Cell<usize>,
  /// The env of the finalizer running now on this thread, or 0 outside finalizers.
  finalizing: Cell<usize>,
  /// The flusher of `home`, which unmaps the run when called ([`flushed`]); none: handle 0.
  flusher: Cell<Flusher>,
  /// A call of the flusher is queued and has not run yet.
  asked: Cell<bool>,
}

impl Waiting {
  /// No run, no flusher, no finalizer running: a thread's state before `enable`.
  const fn idle() -> Waiting {
    Waiting {
      run: Cell::new((0, 0, 0)),
      home: Cell::new(0),
      finalizing: Cell::new(0),
      flusher: Cell::new(Flusher::NONE),
      asked: Cell::new(false),
    }
  }

  /// Takes `start..end` into the run; `false` if it cannot wait (the caller unmaps it).
  fn take(&self, start: usize, end: usize) -> bool {
    let (env, flusher) = (self.finalizing.get(), self.flusher.get());
    if env == 0 || env != self.home.get() || flusher.handle == 0 {
      return false;
    }
    let run = self.run.get();
    if let Some(joined) = join(run, start, end) {
      self.run.set(joined);
      return true;
    }
    // The new run, and the call that will unmap it, are set before the call is queued (should a
    // runtime ever run it at once, it finds them), and undone if Node refuses.
    self.run.set((start, end, 1));
    unmap_run(run);
    if !self.asked.replace(true) && !flusher.ask() {
      // Closing (the env is being torn down): a flusher that refused once is never used again,
      // and nothing waits on this thread any more.
      self.forget_flusher();
      self.run.set((0, 0, 0));
      return false;
    }
    true
  }

  /// From now on nothing waits on this thread.
  fn forget_flusher(&self) {
    self.flusher.set(Flusher::NONE);
    self.home.set(0);
    self.asked.set(false);
  }
}

impl Drop for Waiting {
  /// The thread exits: its run is unmapped now.
  fn drop(&mut self) {
    unmap_run(self.run.take());
  }
}

thread_local! {
  static WAITING: Waiting = const { Waiting::idle() };
}

/// A thread's flusher, as the JavaScript boundary made it ([`enable`]): something that, asked,
/// has [`flushed`] called on this thread on a later event-loop turn.
#[derive(Clone, Copy)]
pub struct Flusher {
  /// The flusher itself (a thread-safe function, to the boundary); 0: none.
  pub handle: usize,
  /// Which flusher this is, as [`closed`] is told when one is freed; never 0.
  pub token: usize,
  /// Queues a call of the flusher `handle`, live (the boundary calls [`closed`] before it frees
  /// it, and a refusal clears it here before it may); `false` if refused (the env is closing).
  pub ask: fn(usize) -> bool,
}

impl Flusher {
  /// No flusher: nothing waits.
  const NONE: Flusher = Flusher {
    handle: 0,
    token: 0,
    ask: |_| false,
  };

  /// Queues a call of this flusher; `false` if refused.
  fn ask(self) -> bool {
    (self.ask)(self.handle)
  }
}

/// Unmaps a run (nothing when its count is 0).
fn unmap_run((first, last, count): (usize, usize, usize)) {
  if count == 0 {
    return;
  }
  // SAFETY: a run is the union of ranges of dropped mappings, adjacent end to end (module docs):
  // this crate owns all of it and nothing refers to any of it.
  unsafe { unmap_or_defer(first, last - first) };
}

/// Ranges of dropped mappings whose `munmap` waits: it might cut a hole in a kernel mapping (the
/// kernel had merged them with neighbours that stay), adding one, with none left to spare (see
/// `mapping::reserve_on_bound`). A finalizer cannot throw, and V8 aborts when a mapping it
/// needs is refused: so such a range stays mapped, unused, until [`retry_deferred`] (the
/// flusher's next call, or a later release) finds room for it, or finds that it cuts nothing.
static DEFERRED: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// How many ranges [`DEFERRED`] holds: read without the lock by every release.
static DEFERRED_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Set when a reservation failed: releases defer without asking again (each failed ask reads
/// the kernel's list) until [`retry_deferred`] has read it once for all of them.
static PAUSED: AtomicBool = AtomicBool::new(false);

/// Releases since the last retry, so that threads without a flusher retry now and then.
static TICKS: AtomicUsize = AtomicUsize::new(0);

/// Unmaps `start..start + len` (page-aligned) of dropped memory now, if the kernel mapping it
/// may add is reserved; otherwise defers it (see [`DEFERRED`]; should even that list not grow,
/// the range stays mapped for good: address space, never a crash).
///
/// # Safety
/// As [`release`]: the range is owned by this crate and nothing refers to it.
unsafe fn unmap_or_defer(start: usize, len: usize) {
  let reserved = !PAUSED.load(Ordering::Relaxed) && crate::core::mapping::reserve_on_bound(1);
  // SAFETY: forwarded from this function's contract.
  let unmapped = reserved && unsafe { crate::sys::unmap(start as *mut u8, len) }.is_ok();
  if unmapped {
    crate::core::mapping::note_freed();
  }
  // munmap fails only for ranges that are not ours (ruled out), or with ENOMEM when a hole it
  // cuts would pass `vm.max_map_count`: code the bound never sees (WebAssembly memories, another
  // copy of node-mmap) took the room since the last count. The range waits for room then too.
  if !unmapped {
    PAUSED.store(true, Ordering::Relaxed);
    let mut deferred = DEFERRED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if deferred.try_reserve(1).is_ok() {
      deferred.push((start, len));
      DEFERRED_COUNT.store(deferred.len(), Ordering::Relaxed);
    }
    drop(deferred);
    // The flusher's next call settles them (this thread's, if it has one).
    let _ = WAITING.try_with(|waiting| {
      let flusher = waiting.flusher.get();
      if flusher.handle != 0 && !waiting.asked.replace(true) && !flusher.ask() {
        waiting.asked.set(false);
      }
    });
  }
}

/// Releases between two retries of [`DEFERRED`] on a thread without a flusher: at least 1024,
/// and half the kernel mappings at the last count. A retry reads the kernel's list, whose cost
/// grows with its length (33 ms at 61,000 kernel mappings, measured here): so it costs each
/// release about a microsecond however full the process is (a worker whose env ends at the limit
/// with 40,000 Buffers reads it 3 times, not 40).
fn retry_interval() -> usize {
  (crate::core::mapping::counted_mappings() / 2).max(1024)
}

/// Unmaps the [`DEFERRED`] ranges that fit now, with one read of the kernel's list for all of
/// them: those that cut no kernel mapping in two (they add none), and holes while there is room.
fn retry_deferred() {
  TICKS.store(0, Ordering::Relaxed);
  if DEFERRED_COUNT.load(Ordering::Relaxed) == 0 {
    return;
  }
  let Ok(mut deferred) = DEFERRED.try_lock() else {
    return; // another thread is at it
  };
  let Some((kernel, mut room)) = crate::core::mapping::kernel_mappings() else {
    return;
  };
  let (mut kept, mut added) = (0, 0);
  for i in 0..deferred.len() {
    let (start, len) = deferred[i];
    if cuts_hole(&kernel, start, start + len) {
      if room == 0 {
        deferred[kept] = (start, len);
        kept += 1;
        continue;
      }
      room -= 1;
      added += 1;
    }
    // SAFETY: a deferred range is memory of a dropped mapping (see `unmap_or_defer`), owned by
    // this crate; it leaves the list under the lock, so it is unmapped once.
    if unsafe { crate::sys::unmap(start as *mut u8, len) }.is_err() {
      // ENOMEM: code the count cannot see took the room meanwhile (see `unmap_or_defer`).
      deferred[kept] = (start, len);
      kept += 1;
    }
  }
  if kept < deferred.len() {
    crate::core::mapping::note_freed();
  }
  deferred.truncate(kept);
  crate::core::mapping::note_added(added);
  DEFERRED_COUNT.store(kept, Ordering::Relaxed);
  PAUSED.store(kept > 0, Ordering::Relaxed);
}

/// Whether unmapping `start..end` cuts one of the kernel mappings `kernel` (ranges in address
/// order) in two: both ends strictly inside it.
fn cuts_hole(kernel: &[(usize, usize)], start: usize, end: usize) -> bool {
  let after = kernel.partition_point(|&(from, _)| from <= start);
  after > 0 && {
    let (from, to) = kernel[after - 1];
    from < start && end < to
  }
}

/// Bytes of dropped mappings still mapped because their `munmap` waits for room (see
/// [`DEFERRED`]): for the tests.
pub fn deferred_bytes() -> usize {
  let deferred = DEFERRED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
  deferred.iter().map(|&(_, len)| len).sum()
}

/// Gives back the range `addr..addr + len` of a dropped mapping: at once, or with the run it
/// joins (module docs) if `batchable` (the mapping allows it: see `Mapping::batchable`).
///
/// # Safety
/// The range (rounded up to whole pages) is owned by this crate, and nothing refers to it any
/// more: nothing else will unmap it or read or write it.
///
/// The `munmap` never pushes the process past the kernel-mapping guard: when the range is a hole
/// in a kernel mapping (adding one) and none is left to spare, it waits in [`DEFERRED`] and is
/// unmapped by a later release once there is room.
pub unsafe fn release(addr: *mut u8, len: usize, batchable: bool) {
  if DEFERRED_COUNT.load(Ordering::Relaxed) != 0 && TICKS.fetch_add(1, Ordering::Relaxed) >= retry_interval()
  {
    retry_deferred();
  }
  let start = addr as usize;
  let end = start + len.next_multiple_of(crate::sys::page_size());
  let waits = batchable
    && len <= MAX_LEN
    && WAITING
      .try_with(|waiting| waiting.take(start, end))
      .unwrap_or(false);
  if !waits {
    // SAFETY: forwarded from this function's contract.
    unsafe { unmap_or_defer(start, end - start) };
  }
}

/// Runs `f`, the work of a finalizer of `env` (an env identity, never 0), with the mappings it
/// drops allowed to wait.
pub fn finalizing<R>(env: usize, f: impl FnOnce() -> R) -> R {
  let set = |env: usize| {
    let _ = WAITING.try_with(|waiting| waiting.finalizing.set(env));
  };
  set(env);
  let result = f();
  set(0);
  result
}

thread_local! {
  /// The env that loaded the addon on this thread ([`enable`]), for [`is_home`]. Apart from
  /// `WAITING`, which has a destructor: a runtime may finalize a worker's Buffers after the
  /// thread's destructors ran (Bun does), and a `const` cell with none is still readable then.
  /// Never cleared: the env stays this thread's while it is torn down.
  static HOME: Cell<usize> = const { Cell::new(0) };
}

/// Whether this thread runs `env`'s JavaScript (the env that loaded the addon here, given to
/// [`enable`]), also while the env is torn down.
pub fn is_home(env: usize) -> bool {
  env != 0 && HOME.with(|home| home.get() == env)
}

/// The flusher's call: unmaps this thread's run. (Node also calls it for a call still queued
/// when the env is torn down: the run is unmapped then too.)
pub fn flushed() {
  let _ = WAITING.try_with(|waiting| {
    waiting.asked.set(false);
    unmap_run(waiting.run.take());
  });
  retry_deferred();
}

/// A flusher is being freed (its env is torn down): if it is this thread's (`token`), the run
/// is unmapped, and from now on nothing waits on this thread.
pub fn closed(token: usize) {
  let _ = WAITING.try_with(|waiting| {
    if waiting.flusher.get().token != token {
      return;
    }
    waiting.forget_flusher();
    unmap_run(waiting.run.take());
  });
}

/// Gives this thread the flusher `make` makes in `env` (an env identity, never 0), which is
/// loading the addon here, unless the thread has one (the addon loaded again; `make` is not
/// called): from now on `env`'s finalizers' ranges may wait. With none made (`None`: the
/// runtime refused), every range is unmapped at once.
pub fn enable(env: usize, make: impl FnOnce() -> Option<Flusher>) {
  HOME.with(|home| {
    if home.get() == 0 {
      home.set(env);
    }
  });
  let _ = WAITING.try_with(|waiting| {
    if waiting.flusher.get().handle != 0 {
      return;
    }
    if let Some(flusher) = make() {
      waiting.flusher.set(flusher);
      waiting.home.set(env);
    }
  });
}

// Unix-only until the Windows port (issue 14): these tests map through the OS layer and name
// libc's Unix constants and calls, which the stub target has not got.
#[cfg(all(test, unix))]
mod tests {
  use super::*;
  use std::ffi::c_void;
  use std::ptr;

  const PAGE: usize = 4096;

  /// A flusher whose every call is refused, as a closing env refuses.
  const REFUSING: Flusher = Flusher {
    handle: 1,
    token: 7,
    ask: |_| false,
  };
  const BASE: usize = 0x7000_0000_0000;

  #[test]
  fn a_range_cuts_a_hole_only_strictly_inside_one_kernel_mapping() {
    let kernel = [(BASE, BASE + 10 * PAGE), (BASE + 10 * PAGE, BASE + 12 * PAGE)];
    assert!(cuts_hole(&kernel, BASE + PAGE, BASE + 2 * PAGE), "in the middle");
    assert!(
      !cuts_hole(&kernel, BASE, BASE + PAGE),
      "at the start: the mapping shrinks"
    );
    assert!(
      !cuts_hole(&kernel, BASE + 9 * PAGE, BASE + 10 * PAGE),
      "at the end"
    );
    assert!(
      !cuts_hole(&kernel, BASE + 9 * PAGE, BASE + 11 * PAGE),
      "across two: both shrink"
    );
    assert!(
      !cuts_hole(&kernel, BASE + 10 * PAGE, BASE + 12 * PAGE),
      "a whole one"
    );
    assert!(!cuts_hole(&kernel, BASE - 2 * PAGE, BASE - PAGE), "outside all");
    assert!(!cuts_hole(&[], BASE, BASE + PAGE));
  }

  #[test]
  fn ranges_join_a_run_only_end_to_end_and_up_to_the_cap() {
    let run = (BASE, BASE + PAGE, 1);
    // Below (the kernel places each new mapping under the last) and above.
    assert_eq!(
      join(run, BASE - 2 * PAGE, BASE),
      Some((BASE - 2 * PAGE, BASE + PAGE, 2))
    );
    assert_eq!(
      join(run, BASE + PAGE, BASE + 3 * PAGE),
      Some((BASE, BASE + 3 * PAGE, 2))
    );
    // A gap of one page, on either side, or no run at all: no join.
    assert_eq!(join(run, BASE - 2 * PAGE, BASE - PAGE), None);
    assert_eq!(join(run, BASE + 2 * PAGE, BASE + 3 * PAGE), None);
    assert_eq!(join((0, 0, 0), BASE, BASE + PAGE), None);
    // A run grows range by range up to MAX_RANGES, and no further.
    let mut run = (BASE, BASE + PAGE, 1);
    for n in 1..MAX_RANGES {
      run = join(run, run.0 - PAGE, run.0).expect("room left");
      assert_eq!(run, (BASE - n * PAGE, BASE + PAGE, n + 1));
    }
    assert_eq!(join(run, run.0 - PAGE, run.0), None);
  }

  /// `n` pages mapped from a file of their own (a new one for each call), and its path: other
  /// tests may map at an address these pages leave, but not that file.
  fn pages(n: usize) -> (usize, String) {
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let serial = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("node-mmap-reclaim-{}-{serial}", std::process::id()));
    let len = n * crate::sys::page_size();
    let file = std::fs::OpenOptions::new()
      .read(true)
      .write(true)
      .create_new(true)
      .open(&path)
      .unwrap();
    file.set_len(len as u64).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a new mapping of our own file at an address the kernel picks.
    let addr = unsafe {
      libc::mmap(
        ptr::null_mut(),
        len,
        libc::PROT_READ,
        libc::MAP_SHARED,
        file.as_raw_fd(),
        0,
      )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    let path = path.to_str().unwrap().to_owned();
    std::fs::remove_file(&path).unwrap();
    (addr as usize, path)
  }

  /// Bytes of the file at `path` mapped in this process now (/proc/self/maps).
  fn mapped(path: &str) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps
      .lines()
      .filter(|line| line.contains(path))
      .map(|line| {
        let range = line.split(' ').next().unwrap();
        let (start, end) = range.split_once('-').unwrap();
        usize::from_str_radix(end, 16).unwrap() - usize::from_str_radix(start, 16).unwrap()
      })
      .sum()
  }

  #[test]
  fn only_a_finalizer_of_the_home_env_with_a_flusher_makes_ranges_wait() {
    let (home, other) = (1, 8);
    let w = Waiting::idle();
    // A flusher whose call is queued already.
    w.flusher.set(REFUSING);
    w.asked.set(true);
    w.finalizing.set(home);
    assert!(!w.take(BASE, BASE + PAGE), "no home env");
    w.home.set(home);
    w.finalizing.set(other);
    assert!(!w.take(BASE, BASE + PAGE), "a finalizer of another env");
    w.finalizing.set(0);
    assert!(!w.take(BASE, BASE + PAGE), "not in a finalizer");
    w.finalizing.set(home);
    w.flusher.set(Flusher::NONE);
    assert!(!w.take(BASE, BASE + PAGE), "no flusher");
    assert_eq!(w.run.get(), (0, 0, 0));
    // All there: ranges start and join runs.
    w.flusher.set(REFUSING);
    assert!(w.take(BASE, BASE + PAGE));
    assert!(w.take(BASE - PAGE, BASE));
    assert_eq!(w.run.get(), (BASE - PAGE, BASE + PAGE, 2));
    w.run.set((0, 0, 0));
  }

  #[test]
  fn a_flusher_that_refuses_unmaps_the_run_and_is_never_used_again() {
    let page = crate::sys::page_size();
    let (start, file) = pages(3);
    let w = Waiting::idle();
    let home = 1;
    w.home.set(home);
    w.finalizing.set(home);
    w.flusher.set(REFUSING);
    w.run.set((start, start + 2 * page, 2));
    // The middle page of three: never next to the run (a single page could be mapped right
    // below it, and join it).
    let (other, _) = pages(3);
    let apart = other + page;
    assert!(
      !w.take(apart, apart + page),
      "refused: the caller unmaps the range"
    );
    assert_eq!(mapped(&file), page, "the run was unmapped, and nothing past it");
    assert_eq!(
      (w.run.get(), w.flusher.get().handle, w.asked.get()),
      ((0, 0, 0), 0, false)
    );
    // SAFETY: our own pages, unmapped once.
    unsafe {
      libc::munmap(other as *mut c_void, 3 * page);
      libc::munmap((start + 2 * page) as *mut c_void, page);
    }
  }

  #[test]
  fn closing_this_threads_flusher_unmaps_the_run_and_another_flusher_changes_nothing() {
    std::thread::spawn(|| {
      let page = crate::sys::page_size();
      let (start, file) = pages(2);
      WAITING.with(|w| {
        w.flusher.set(REFUSING);
        w.run.set((start, start + 2 * page, 2));
      });
      closed(8);
      assert_eq!(mapped(&file), 2 * page, "another flusher's close");
      closed(REFUSING.token);
      assert_eq!(mapped(&file), 0, "this thread's flusher closed: run unmapped");
      WAITING.with(|w| assert_eq!((w.flusher.get().handle, w.run.get()), (0, (0, 0, 0))));
    })
    .join()
    .unwrap();
  }

  #[test]
  fn a_thread_that_exits_unmaps_its_run() {
    let page = crate::sys::page_size();
    let (start, file) = pages(2);
    std::thread::spawn(move || WAITING.with(|w| w.run.set((start, start + 2 * page, 2))))
      .join()
      .unwrap();
    assert_eq!(mapped(&file), 0);
  }
}
