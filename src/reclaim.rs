//! Unmapping in batches what the garbage collector frees.
//!
//! A garbage collection frees Buffers by the hundred, and their finalizers then drop the
//! mappings one after another. The kernel placed those mappings next to each other (each new one
//! just below the last), so their ranges are mostly adjacent, and one `munmap` of the joined
//! range does the work of many: for a small mapping, the system call's entry and exit and the
//! address-space lock are most of what unmapping it costs (bench/PROFILE.md: `map` alone, whose
//! loop includes the finalizers, took about 0.8x the time).
//!
//! Each JS thread keeps one run of adjacent ranges whose mappings a finalizer has dropped. A
//! range that touches the run at either end joins it; any other range, or one more than
//! [`MAX_RANGES`], first has the run unmapped and starts a new one. The run left at the end of a
//! batch is unmapped on the thread's next event-loop turn (a thread-safe function, unreferenced
//! so that it never keeps a program alive), when the env is torn down, or when the thread exits.
//!
//! Only ranges of at most [`MAX_LEN`] wait (larger ones cost their pages, not the system call),
//! only when a finalizer drops them ([`finalizing`]: an explicit `unmap()`, `close()` or a
//! failed call still unmaps at once), and only on a thread whose env has the thread-safe
//! function (the libuv pool dropping a mapping after a `flush`, or a runtime that runs
//! finalizers on a collector thread, unmaps at once).
//!
//! # Safety
//! A range waits here only once its [`crate::mapping::Mapping`] has dropped: nothing refers to it
//! any more (no ArrayBuffer, handle or task), it is out of the fault table, and while it stays
//! mapped the kernel gives none of it to another mapping. A run is the exact union of such
//! ranges, adjacent end to end, so unmapping it unmaps nothing else.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;

use napi::{sys, Env};

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
  /// The thread-safe function of this thread's env that unmaps the run, or null (then nothing
  /// waits).
  flusher: Cell<sys::napi_threadsafe_function>,
  /// A call of the flusher is queued and has not run yet.
  asked: Cell<bool>,
  /// A buffer or handle finalizer is running on this thread: the mappings it drops may wait.
  finalizing: Cell<bool>,
}

impl Waiting {
  /// Takes `start..end` into the run; `false` if it cannot wait (the caller unmaps it).
  fn take(&self, start: usize, end: usize) -> bool {
    let flusher = self.flusher.get();
    if flusher.is_null() || !self.finalizing.get() {
      return false;
    }
    let run = self.run.get();
    if let Some(joined) = join(run, start, end) {
      self.run.set(joined);
      return true;
    }
    self.run.set((0, 0, 0));
    unmap_run(run);
    if !self.asked.get() {
      if !ask(flusher) {
        // Closing (the env is being torn down): nothing would unmap a run later.
        return false;
      }
      self.asked.set(true);
    }
    self.run.set((start, end, 1));
    true
  }
}

impl Drop for Waiting {
  /// The thread exits: its run is unmapped now.
  fn drop(&mut self) {
    unmap_run(self.run.take());
  }
}

thread_local! {
  static WAITING: Waiting = const {
    Waiting {
      run: Cell::new((0, 0, 0)),
      flusher: Cell::new(ptr::null_mut()),
      asked: Cell::new(false),
      finalizing: Cell::new(false),
    }
  };
}

/// Queues a call of `flusher`, a live thread-safe function of this thread's env (`closed` clears
/// it before Node frees it); `false` if Node refused (the env is closing).
fn ask(flusher: sys::napi_threadsafe_function) -> bool {
  // Unit tests link no Node-API (and make no flusher): there, nothing can be queued.
  #[cfg(test)]
  {
    let _ = flusher;
    false
  }
  #[cfg(not(test))]
  {
    // SAFETY: `flusher` is live (this function's contract); calling one is allowed from any
    // thread, and runs no JS here.
    let status = unsafe {
      sys::napi_call_threadsafe_function(
        flusher,
        ptr::null_mut(),
        sys::ThreadsafeFunctionCallMode::nonblocking,
      )
    };
    status == sys::Status::napi_ok
  }
}

/// Unmaps a run (nothing when its count is 0).
fn unmap_run((first, last, count): (usize, usize, usize)) {
  if count == 0 {
    return;
  }
  // SAFETY: a run is the union of ranges of dropped mappings, adjacent end to end (module docs):
  // this crate owns all of it and nothing refers to any of it.
  if let Err(err) = unsafe { crate::sys::unmap(first as *mut u8, last - first) } {
    debug_assert!(false, "munmap of a waiting run failed: {err}");
  }
}

/// Gives back the range `addr..addr + len` of a dropped mapping: at once, or with the run it
/// joins (module docs).
///
/// # Safety
/// The range (rounded up to whole pages) is owned by this crate, and nothing refers to it any
/// more: nothing else will unmap it or read or write it.
pub unsafe fn release(addr: *mut u8, len: usize) {
  let start = addr as usize;
  let end = start + len.next_multiple_of(crate::sys::page_size());
  let waits = len <= MAX_LEN
    && WAITING
      .try_with(|waiting| waiting.take(start, end))
      .unwrap_or(false);
  if !waits {
    // SAFETY: forwarded from this function's contract.
    if let Err(err) = unsafe { crate::sys::unmap(addr, len) } {
      // munmap fails only for ranges that are not ours, which the contract rules out.
      debug_assert!(false, "munmap of an owned range failed: {err}");
    }
  }
}

/// Runs `f` (a finalizer's work) with the mappings it drops allowed to wait.
pub fn finalizing<R>(f: impl FnOnce() -> R) -> R {
  let set = |on: bool| {
    let _ = WAITING.try_with(|waiting| waiting.finalizing.set(on));
  };
  set(true);
  let result = f();
  set(false);
  result
}

/// The flusher's call: unmaps this thread's run.
unsafe extern "C" fn flush(
  _env: sys::napi_env,
  _callback: sys::napi_value,
  _context: *mut c_void,
  _data: *mut c_void,
) {
  let _ = WAITING.try_with(|waiting| {
    waiting.asked.set(false);
    unmap_run(waiting.run.take());
  });
}

/// The flusher is being freed (its env is torn down): unmaps the run, and from now on nothing
/// waits on this thread.
unsafe extern "C" fn closed(_env: sys::napi_env, _data: *mut c_void, _hint: *mut c_void) {
  let _ = WAITING.try_with(|waiting| {
    waiting.flusher.set(ptr::null_mut());
    waiting.asked.set(false);
    unmap_run(waiting.run.take());
  });
}

/// Gives this thread's env a flusher, unless the thread has one. Without one (the runtime
/// refused it) every range is unmapped at once, as before.
pub fn start(env: &Env) {
  let has_one = WAITING
    .try_with(|waiting| !waiting.flusher.get().is_null())
    .unwrap_or(true);
  if has_one {
    return;
  }
  let name = c"node-mmap unmap";
  let mut resource_name = ptr::null_mut();
  // SAFETY: `name` is valid for its length; `resource_name` is a valid out-pointer.
  let status = unsafe {
    sys::napi_create_string_utf8(
      env.raw(),
      name.as_ptr(),
      name.to_bytes().len() as isize,
      &mut resource_name,
    )
  };
  if status != sys::Status::napi_ok {
    return;
  }
  let mut flusher = ptr::null_mut();
  // SAFETY: no JS function (Node-API 5: `call_js_cb` is given instead); one thread holds it and
  // never releases it, so it lives until the env is torn down, when `closed` runs.
  let status = unsafe {
    sys::napi_create_threadsafe_function(
      env.raw(),
      ptr::null_mut(),
      ptr::null_mut(),
      resource_name,
      0,
      1,
      ptr::null_mut(),
      Some(closed),
      ptr::null_mut(),
      Some(flush),
      &mut flusher,
    )
  };
  if status != sys::Status::napi_ok {
    return;
  }
  // SAFETY: `flusher` was just made in this env. Unreferenced, it never keeps the event loop
  // alive: a run left when the program ends goes with the process.
  if unsafe { sys::napi_unref_threadsafe_function(env.raw(), flusher) } != sys::Status::napi_ok {
    // SAFETY: the one hold on `flusher`, given up: Node frees it (calling `closed`), so it can
    // never keep the event loop alive.
    unsafe { sys::napi_release_threadsafe_function(flusher, sys::ThreadsafeFunctionReleaseMode::release) };
    return;
  }
  let _ = WAITING.try_with(|waiting| waiting.flusher.set(flusher));
}

#[cfg(test)]
mod tests {
  use super::*;

  const PAGE: usize = 4096;
  const BASE: usize = 0x7000_0000_0000;

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

  #[test]
  fn nothing_waits_without_a_flusher_or_outside_a_finalizer() {
    let waiting = Waiting {
      run: Cell::new((0, 0, 0)),
      flusher: Cell::new(ptr::null_mut()),
      asked: Cell::new(false),
      finalizing: Cell::new(true),
    };
    assert!(!waiting.take(BASE, BASE + PAGE), "no flusher");
    waiting.flusher.set(ptr::NonNull::dangling().as_ptr());
    waiting.finalizing.set(false);
    assert!(!waiting.take(BASE, BASE + PAGE), "not in a finalizer");
    assert_eq!(waiting.run.get(), (0, 0, 0));
    waiting.flusher.set(ptr::null_mut());
  }
}
