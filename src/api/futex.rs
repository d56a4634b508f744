//! `wait`, `waitAsync` and `notify`: futex-style sleeping on a 32-bit word of a mapping, the
//! semaphores and mutexes the seed's shared memory lacked. On a `MAP_SHARED` file mapping the
//! word is the file's, so a process waits until another one that maps the same file notifies.
//! Linux only (futex(2)); elsewhere the calls throw `ENOTSUP`.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use napi::bindgen_prelude::Unknown;
use napi::{sys as napi_sys, Env};
use napi_derive::napi;

use crate::core::mapping::{self, Failure};
use crate::core::shared::Shared;
use crate::js::args::{self, Optional};
use crate::js::errors;
use crate::js::view::{self, Resolved};
use crate::sys::{self, Wait};

/// How long a wait sleeps at a time before it looks whether it should stop: `wait` whether its
/// env is being torn down (`worker.terminate()`, `process.exit()`), and, on kernels without
/// futex_waitv(2), every wait whether its mapping was unmapped, a `notify` of this process
/// marked it, or its env was torn down.
const SLICE_MS: f64 = 100.0;

/// The stack of a `waitAsync` thread, which only sleeps in the kernel and hands the outcome on.
const SLEEPER_STACK: usize = 128 * 1024;

/// The environment variable that makes `waitAsync` act as on a kernel without futex_waitv
/// (before Linux 5.16): the switch that tests the sliced wait here.
pub const SIMULATE_NO_FUTEX_WAITV: &str = "NODE_MMAP_SIMULATE_NO_FUTEX_WAITV";

/// The kernel refused futex_waitv(2) once (`ENOSYS`): it lacks it (before Linux 5.16).
static NO_FUTEX_WAITV: AtomicBool = AtomicBool::new(false);

/// Whether waits sleep with futex_waitv(2): not where the kernel lacks it, or is made to look so.
fn futex_waitv() -> bool {
  static SIMULATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
  let simulated =
    *SIMULATE.get_or_init(|| std::env::var_os(SIMULATE_NO_FUTEX_WAITV).is_some_and(|v| v == "1"));
  !simulated && !NO_FUTEX_WAITV.load(Ordering::Relaxed)
}

/// A waiter's state: waiting.
const PENDING: u32 = 0;
/// A waiter's state: a `notify` of this process woke it and counted it.
const NOTIFIED: u32 = 1;
/// A waiter's state: its env is being torn down (`waitAsync`'s cleanup hook).
const STOPPED: u32 = 2;
/// A waiter's state: it ended on its own (woken in the kernel, timed out, unmapped, ...).
const DONE: u32 = 3;

/// A `wait` or `waitAsync` of this process, from the call until it ends: what `notify` finds in
/// [`WAITERS`], so that a wait counts as a waiter from the moment the call returns (or blocks),
/// as with `Atomics.waitAsync`, and not only once its thread sleeps in the kernel.
struct Waiter {
  /// `PENDING`, then one of the others, set once (compare-exchange from `PENDING`): a
  /// process-private futex word the wait sleeps on too, which `notify` and the cleanup hook
  /// set and wake.
  state: AtomicU32,
  /// 0 while the wait may be queued in the kernel on its word; 1 once it left for good.
  gone: AtomicU32,
  /// A `notify` waits for `gone` (and is to be woken when it is set).
  watched: AtomicBool,
  /// It sleeps with futex_waitv, so it leaves the kernel (all its queues) as soon as `state` is
  /// woken; otherwise it sleeps in slices on the word alone and sees `state` between slices.
  exact: AtomicBool,
}

impl Waiter {
  /// Moves the state from `PENDING` to `to`; returns the state before (`PENDING` if moved).
  fn mark(&self, to: u32) -> u32 {
    match self
      .state
      .compare_exchange(PENDING, to, Ordering::SeqCst, Ordering::SeqCst)
    {
      Ok(before) | Err(before) => before,
    }
  }

  /// Marks the wait as ended on its own, unless something marked it first; returns the state
  /// before.
  fn claim(&self) -> u32 {
    self.mark(DONE)
  }

  /// Marks the wait `to` and wakes it, if it was pending.
  fn interrupt(&self, to: u32) {
    if self.mark(to) == PENDING {
      // SAFETY: `state` is an aligned word of this value, alive for the call.
      unsafe { sys::wake_private(self.state.as_ptr()) };
    }
  }

  /// Waits (a second at most) until the wait left the kernel's queue of its word, so that a
  /// kernel wake after this cannot find it there and count it again. Called with [`WAITERS`]
  /// locked: the wait sets `gone` before it takes that lock.
  fn wait_gone(&self) {
    self.watched.store(true, Ordering::SeqCst);
    let deadline = sys::deadline_after(1000.0);
    while self.gone.load(Ordering::SeqCst) == 0 {
      // SAFETY: `gone` is an aligned word of this value, alive for the call.
      match unsafe { sys::wait(self.gone.as_ptr(), 0, Some(deadline), true) } {
        Ok(Wait::TimedOut) | Err(_) => return,
        Ok(_) => {}
      }
    }
  }
}

/// The pending waits of this process, by the address of their word, oldest first.
static WAITERS: Mutex<BTreeMap<usize, VecDeque<Arc<Waiter>>>> = Mutex::new(BTreeMap::new());

fn waiters() -> MutexGuard<'static, BTreeMap<usize, VecDeque<Arc<Waiter>>>> {
  WAITERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A waiter in [`WAITERS`], taken out when dropped (after its sleep).
struct Registration {
  key: usize,
  waiter: Arc<Waiter>,
}

impl Registration {
  fn new(word: &Word) -> Self {
    let waiter = Arc::new(Waiter {
      state: AtomicU32::new(PENDING),
      gone: AtomicU32::new(0),
      watched: AtomicBool::new(false),
      exact: AtomicBool::new(futex_waitv()),
    });
    let key = word.addr() as usize;
    waiters().entry(key).or_default().push_back(Arc::clone(&waiter));
    Registration { key, waiter }
  }
}

impl Drop for Registration {
  fn drop(&mut self) {
    // `gone` first: a `notify` that holds the lock may wait for it.
    // SeqCst store, then SeqCst load (`wait_gone` sets `watched`, then loads `gone`): either
    // this sees the watcher, or the watcher sees the wait gone.
    self.waiter.gone.store(1, Ordering::SeqCst);
    if self.waiter.watched.load(Ordering::SeqCst) {
      // SAFETY: `gone` is an aligned word of the waiter, alive for the call.
      unsafe { sys::wake_private(self.waiter.gone.as_ptr()) };
    }
    let mut waiters = waiters();
    if let Some(list) = waiters.get_mut(&self.key) {
      list.retain(|waiter| !Arc::ptr_eq(waiter, &self.waiter));
      if list.is_empty() {
        waiters.remove(&self.key);
      }
    }
  }
}

/// One aligned 32-bit word of a live mapping.
struct Word {
  mapping: Shared,
  /// From the start of the mapping; a multiple of 4.
  offset: usize,
}

impl Word {
  fn addr(&self) -> *const u32 {
    // SAFETY: `offset + 4 <= len` was checked when the word was resolved.
    unsafe { self.mapping.addr().add(self.offset) }
      .cast_const()
      .cast()
  }

  /// Sleeps while the word holds `expected`, until a notify or `deadline`.
  fn wait(&self, expected: u32, deadline: Option<libc::timespec>) -> Result<Wait, Failure> {
    if self.mapping.is_unmapped() {
      return Err(Failure::Unmapped);
    }
    let sleep = |private| {
      // SAFETY: the word is aligned and inside the mapping, which `self.mapping` keeps reserved.
      unsafe { sys::wait(self.addr(), expected, deadline, private) }
    };
    // SAFETY: the word is aligned, inside the mapping `self.mapping` keeps reserved, and
    // readable: `word()` checked the mapping's rights.
    Ok(unsafe { with_key(self.addr(), sleep) }?)
  }

  /// The wait of a registered waiter (`wait`, `waitAsync`): as [`Word::wait`], but it also
  /// ends when a `notify` of this process marks the waiter (`Woken`), when its state is set
  /// otherwise (`Cancelled`: its env is being torn down), when `unmap()` takes the mapping away
  /// (`Unmapped`: unmapping swaps the page the futex sleeps on, and no notify could reach it
  /// any more), and, with `slices`, when `stop()` is true between two slices of a tenth of a
  /// second (`Cancelled`). It sleeps on the word, the mapping's cancel word (which `unmap()`
  /// sets and wakes) and the waiter's state (futex_waitv, Linux 5.16); before that kernel, in
  /// slices on the word alone, looking at the rest in between.
  ///
  /// The outcome is claimed at the end: a waiter that a `notify` counted ends `Woken`,
  /// whatever else ended its sleep.
  fn sleep(
    &self,
    expected: u32,
    deadline: Option<libc::timespec>,
    waiter: &Waiter,
    slices: bool,
    stop: impl Fn() -> bool,
  ) -> Result<Wait, Failure> {
    let slept = self.sleep_unclaimed(expected, deadline, waiter, slices, stop);
    match waiter.claim() {
      PENDING => slept,
      NOTIFIED => Ok(Wait::Woken),
      _ => Ok(Wait::Cancelled),
    }
  }

  fn sleep_unclaimed(
    &self,
    expected: u32,
    deadline: Option<libc::timespec>,
    waiter: &Waiter,
    slices: bool,
    stop: impl Fn() -> bool,
  ) -> Result<Wait, Failure> {
    let marked = || waiter.state.load(Ordering::SeqCst) != PENDING;
    let sliced = || self.wait_in_slices(expected, deadline, || marked() || stop());
    if !waiter.exact.load(Ordering::Relaxed) {
      return sliced();
    }
    let mut first = true;
    loop {
      if self.mapping.is_unmapped() {
        return Err(Failure::Unmapped);
      }
      let (until, last) = match slices {
        true => {
          let slice = sys::deadline_after(SLICE_MS);
          let last = deadline.is_some_and(|deadline| !later(&deadline, &slice));
          (if last { deadline } else { Some(slice) }, last)
        }
        false => (deadline, true),
      };
      let waited = self.mapping.with_cancel_word(|cancel| {
        let sleep = |private| {
          let cancels = [cancel, waiter.state.as_ptr().cast_const()];
          // SAFETY: the word is aligned and inside the mapping, which `self.mapping` keeps
          // reserved; the cancel word is an aligned field of the same mapping, and the state an
          // aligned atomic of `waiter`, which the caller keeps alive during the call.
          unsafe { sys::wait_or_cancel(self.addr(), expected, private, &cancels, until) }
        };
        // SAFETY: as in `Word::wait`.
        unsafe { with_key(self.addr(), sleep) }
      });
      match waited {
        Ok(Wait::TimedOut) if !last => {
          if stop() {
            return Ok(Wait::Cancelled);
          }
          first = false;
        }
        // After a slice, a changed word means a notifier changed it: as good as a wake.
        Ok(Wait::NotEqual) if !first => return Ok(Wait::Woken),
        // The state or the cancel word: the first is `sleep`'s to sort out, the second is unmap's.
        Ok(Wait::Cancelled) if marked() => return Ok(Wait::Cancelled),
        Ok(Wait::Cancelled) => return Err(Failure::Unmapped),
        Ok(wait) => return Ok(wait),
        Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => {
          NO_FUTEX_WAITV.store(true, Ordering::Relaxed);
          waiter.exact.store(false, Ordering::Relaxed);
          return sliced();
        }
        Err(err) => return Err(Failure::Os(err)),
      }
    }
  }

  /// As [`Word::wait`], in slices, so that an `unmap()` meanwhile ends it within a slice
  /// (`Unmapped`), and `stop()` true between two slices ends it with `Cancelled`. A notify from
  /// another process that lands between two slices without changing the word is missed:
  /// notifiers that change the word first, as they should, are never missed.
  fn wait_in_slices(
    &self,
    expected: u32,
    deadline: Option<libc::timespec>,
    stop: impl Fn() -> bool,
  ) -> Result<Wait, Failure> {
    let mut first = true;
    loop {
      let slice = sys::deadline_after(SLICE_MS);
      let last = deadline.is_some_and(|deadline| !later(&deadline, &slice));
      match self.wait(expected, if last { deadline } else { Some(slice) })? {
        Wait::TimedOut if !last && stop() => return Ok(Wait::Cancelled),
        Wait::TimedOut if !last => first = false,
        // After a slice, a changed word means a notifier changed it: as good as a wake.
        Wait::NotEqual if !first => return Ok(Wait::Woken),
        done => return Ok(done),
      }
    }
  }
}

/// How many waits sleep now with the process-private futex key ([`with_key`]): while there are
/// any, `notify` wakes that key too.
static PRIVATE_SLEEPERS: AtomicUsize = AtomicUsize::new(0);

/// Runs `sleep` with the shared futex key, the one every process that maps the page uses; if
/// the kernel refuses it with `EFAULT`, with this process's private key instead. The kernel
/// refuses the shared key of a read-only page of anonymous memory (a `PROT_READ` mapping of
/// `MAP_PRIVATE | MAP_ANONYMOUS`, or a `MAP_PRIVATE` page that was written, then `protect()`ed
/// read-only): such a page belongs to this process alone, so the private key loses nothing.
///
/// Both keys fail on a page lost to truncation (past the end of the file), where the kernel's
/// read of the word fails and a JavaScript read would be answered by SIGBUS recovery: then the
/// word is read here as JavaScript would read it (recovery puts zeros there, or, turned off,
/// ends the process with its diagnostic), and the wait tried again.
///
/// # Safety
/// `addr` is the word `sleep` sleeps on: aligned, inside a mapping the caller keeps reserved,
/// and readable (`view::check_rights`).
unsafe fn with_key(addr: *const u32, sleep: impl Fn(bool) -> std::io::Result<Wait>) -> std::io::Result<Wait> {
  let efault =
    |result: &std::io::Result<Wait>| matches!(result, Err(err) if err.raw_os_error() == Some(libc::EFAULT));
  let keyed = || {
    let shared = sleep(false);
    if !efault(&shared) {
      return shared;
    }
    // Counted before the kernel looks at the word: a `notify` after the word changed either
    // sees the count or finds the word changed (the kernel compares it in the futex call).
    PRIVATE_SLEEPERS.fetch_add(1, Ordering::SeqCst);
    std::sync::atomic::fence(Ordering::SeqCst);
    let private = sleep(true);
    PRIVATE_SLEEPERS.fetch_sub(1, Ordering::SeqCst);
    private
  };
  let result = keyed();
  if !efault(&result) {
    return result;
  }
  // SAFETY: the word is aligned, reserved and readable (this function's contract); a lost page
  // raises SIGBUS, which the handler answers as for any read of the mapping.
  unsafe { ptr::read_volatile(addr) };
  keyed()
}

/// Whether `a` is after `b`.
fn later(a: &libc::timespec, b: &libc::timespec) -> bool {
  (a.tv_sec, a.tv_nsec) > (b.tv_sec, b.tv_nsec)
}

/// `view` + `byteOffset` -> the word, checked: the word inside the view, aligned, and readable.
/// `None` for a view of a mapping that `unmap()` took away (such a view keeps its length, and is
/// checked against it); an empty view, or one the user detached, has no room for a word.
fn word(env: &Env, view: &Unknown, byte_offset: &Unknown) -> napi::Result<Option<Word>> {
  // `start`: where the view starts, from the start of its mapping, or, unmapped, its address
  // (the mapping starts on a page: either tells the word's alignment).
  let (mapping, start, len) = match view::resolve(env, view, "view")? {
    Resolved::View(view) => (Some(view.mapping), view.offset, view.len),
    Resolved::Empty => match view::raw_view(env, args::raw(view)) {
      Some(raw) if !raw.data.is_null() => (None, raw.data as usize, raw.len),
      _ => (None, 0, 0),
    },
  };
  let Some(number) = args::number_value(env, byte_offset) else {
    return Err(args::invalid_type(
      env,
      "byteOffset",
      "of type number",
      byte_offset,
    ));
  };
  if len < 4 || !args::is_integer(number) || number < 0.0 || number > (len - 4) as f64 {
    let range = if len < 4 {
      format!("within the view, which has no room for a 32-bit word (its length is {len})")
    } else {
      format!(">= 0 && <= {} (the view's length less 4)", len - 4)
    };
    return Err(args::out_of_range(env, "byteOffset", &range, byte_offset));
  }
  let offset = start + number as usize;
  if !offset.is_multiple_of(4) {
    return Err(args::invalid_value(
      env,
      "byteOffset",
      "must point at a 4-byte aligned word of the mapping",
      &(number as u64).to_string(),
    ));
  }
  let Some(mapping) = mapping else {
    return Ok(None);
  };
  view::check_rights(env, &mapping, false, "view")?;
  Ok(Some(Word { mapping, offset }))
}

/// The word's expected value: an int32 or uint32, as the bits of the word.
fn expected(env: &Env, value: &Unknown) -> napi::Result<u32> {
  let value = args::integer(env, value, "expected", i32::MIN as i64, u32::MAX as i64)?;
  Ok(value as u32)
}

/// `timeout` in milliseconds: `None` (no limit) when absent (`Optional` leaves `undefined` out)
/// or `Infinity`.
fn deadline(env: &Env, timeout: Option<&Unknown>) -> napi::Result<Option<libc::timespec>> {
  let Some(timeout) = timeout else {
    return Ok(None);
  };
  let Some(millis) = args::number_value(env, timeout) else {
    return Err(args::invalid_type(env, "timeout", "of type number", timeout));
  };
  if millis.is_nan() || millis < 0.0 {
    let range = ">= 0 (milliseconds; Infinity: no limit)";
    return Err(args::out_of_range(env, "timeout", range, timeout));
  }
  Ok((millis != f64::INFINITY).then(|| sys::deadline_after(millis)))
}

fn outcome(wait: Wait) -> String {
  match wait {
    Wait::Woken => "ok",
    Wait::NotEqual => "not-equal",
    // `Cancelled` ends otherwise before it gets here (the env is going: nothing sees it).
    Wait::TimedOut | Wait::Cancelled => "timed-out",
  }
  .to_string()
}

/// Sleeps while the 32-bit word at `byteOffset` of `view` holds `expected`, until `notify` wakes
/// it (from this process or any other that maps the same file with `MAP_SHARED`) or `timeout`
/// milliseconds pass; blocks the calling thread meanwhile, as `Atomics.wait` does. Linux only
/// (futex(2)); elsewhere it throws `ENOTSUP`. `Atomics.wait`/`Atomics.notify` do not see these
/// waits: use `wait`/`notify` on both sides. As with futexes, `'ok'` may come without a notify:
/// check the word again in a loop. Read-only memory works too (on pages that are this process's
/// alone, with its private futex, which every thread shares); a word on a page lost to truncation
/// reads as 0, as in JavaScript. A `notify` of this process wakes and counts the wait as soon as
/// it began. An `unmap()` of the mapping meanwhile (from another thread) ends it at once with
/// `ERR_MMAP_UNMAPPED` (before Linux 5.16, within a tenth of a second), and a view of a mapping
/// already unmapped throws it. `worker.terminate()` and `process.exit()` end the wait within a
/// tenth of a second, as they end `Atomics.wait`: it sleeps in slices and looks in between, so
/// a `notify` from another process that lands between two slices without changing the word is
/// missed (change the word, then notify).
///
/// @param view - A Buffer returned by `map()` or any view of the same memory.
/// @param byteOffset - Where the word is in the view: it must be 4-byte aligned in the mapping.
/// @param expected - The value (int32 or uint32) the word must hold for the wait to begin.
/// @param timeout - Milliseconds to wait at most. Default: `Infinity`.
/// @returns `'ok'` when woken, `'not-equal'` when the word did not hold `expected`, `'timed-out'`.
#[napi(
  ts_args_type = "view: ArrayBufferView | ArrayBuffer, byteOffset: number, expected: number, timeout?: number",
  ts_return_type = "'ok' | 'not-equal' | 'timed-out'"
)]
pub fn wait(
  env: &Env,
  view: Unknown,
  byte_offset: Unknown,
  expected_value: Unknown,
  timeout: Optional,
) -> napi::Result<String> {
  let word = word(env, &view, &byte_offset)?;
  let expected = expected(env, &expected_value)?;
  let deadline = deadline(env, timeout.as_ref())?;
  let Some(word) = word else {
    return Err(view::unmapped(env));
  };
  let registration = Registration::new(&word);
  let slept = word.sleep(expected, deadline, &registration.waiter, true, || {
    crate::js::buffer::env_stopping(env.raw())
  });
  drop(registration);
  match slept {
    // The env is being torn down: nothing will see a result, and JavaScript cannot resume.
    Ok(Wait::Cancelled) => Err(errors::pending()),
    Ok(wait) => Ok(outcome(wait)),
    Err(failure) => Err(view::failure(env, failure, "futex")),
  }
}

/// What a `waitAsync` thread shares with its env's cleanup hook.
struct Sleeper {
  /// The wait, which the cleanup hook marks `STOPPED` to stop the thread.
  waiter: Arc<Waiter>,
  /// The cleanup hook is registered (with a reference to this), and has neither run nor been
  /// removed. Read and written on the env's thread only.
  hooked: AtomicBool,
  /// The thread, joined by whichever of the hook and [`settle`] runs.
  thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sleeper {
  fn join(&self) {
    let thread = self
      .thread
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .take();
    if let Some(thread) = thread {
      let _ = thread.join();
    }
  }
}

/// A `waitAsync` outcome on its way to the env's thread.
struct Settle {
  outcome: Result<Wait, Failure>,
  deferred: napi_sys::napi_deferred,
  sleeper: Arc<Sleeper>,
}

/// The raw Node-API handles a `waitAsync` thread carries: the thread-safe function is made to be
/// called from any thread, and the deferred is only passed back through it.
struct Handles {
  tsfn: napi_sys::napi_threadsafe_function,
  deferred: napi_sys::napi_deferred,
}

// SAFETY: see the type: neither handle is used on the thread but to be handed back.
unsafe impl Send for Handles {}

/// The env's cleanup hook of one pending `waitAsync` (its env is being torn down: a worker
/// terminated or ending, `process.exit()` in a worker): stops the thread and waits for it, so
/// that nothing of the env outlives it (the thread holds the mapping).
unsafe extern "C" fn abandon(arg: *mut c_void) {
  // SAFETY: `arg` is the `Arc::into_raw` that `wait_async` registered with this hook, which
  // Node calls once, unless `settle` removed it first (then `hooked` is false and this never
  // runs).
  let sleeper = unsafe { Arc::from_raw(arg.cast_const().cast::<Sleeper>()) };
  sleeper.hooked.store(false, Ordering::Relaxed);
  sleeper.waiter.interrupt(STOPPED);
  sleeper.join();
}

/// The thread-safe function's call, on the env's thread: settles the Promise. With a null `env`
/// (Node empties the queue with such calls while it tears the env down) nothing is settled.
unsafe extern "C" fn settle(
  env: napi_sys::napi_env,
  _callback: napi_sys::napi_value,
  _context: *mut c_void,
  data: *mut c_void,
) {
  // SAFETY: `data` is the `Box::into_raw` the thread queued, handed over once.
  let Settle {
    outcome: result,
    deferred,
    sleeper,
  } = *unsafe { Box::from_raw(data.cast::<Settle>()) };
  if env.is_null() {
    return;
  }
  if sleeper.hooked.swap(false, Ordering::Relaxed) {
    let arg = Arc::as_ptr(&sleeper).cast_mut().cast::<c_void>();
    // SAFETY: the hook is registered with exactly this function and argument, and has not run.
    unsafe { napi_sys::napi_remove_env_cleanup_hook(env, Some(abandon), arg) };
    // SAFETY: the reference the hook held, now that it cannot run.
    drop(unsafe { Arc::from_raw(Arc::as_ptr(&sleeper)) });
  }
  // The thread queued this as its last act but for returning.
  sleeper.join();
  let env = Env::from_raw(env);
  let (settle, value): (unsafe extern "C" fn(_, _, _) -> _, _) = match result {
    Ok(wait) => (
      napi_sys::napi_resolve_deferred,
      errors::js_string(&env, &outcome(wait)),
    ),
    Err(Failure::Unmapped) => (napi_sys::napi_reject_deferred, view::unmapped_error(&env)),
    Err(Failure::Os(err)) => (
      napi_sys::napi_reject_deferred,
      errors::system(&env, &err, "futex", None),
    ),
  };
  // SAFETY: `deferred` was made in this env by `wait_async` and is settled once, here.
  unsafe { settle(env.raw(), deferred, value) };
}

/// Like `wait`, without blocking: the wait sleeps in a thread of its own, and the Promise settles
/// with its outcome. The thread is not one of the libuv pool's, which `fs`, `zlib` and `flush`
/// need; each pending wait holds one (128 KiB of stack, two kernel mappings), and a word that
/// already differs settles at once without one. The wait is a waiter from the moment the call
/// returns, as with `Atomics.waitAsync`: a `notify` of this process right after it (same tick,
/// word unchanged) wakes it and counts it, whether its thread sleeps in the kernel yet or not.
/// A pending `waitAsync` keeps the event loop alive, as pending I/O does, and
/// `worker.terminate()` and `process.exit()` end it at once. An `unmap()` of the mapping
/// meanwhile rejects the Promise with `ERR_MMAP_UNMAPPED` at once, as does a view of a mapping
/// already unmapped (before Linux 5.16, within a tenth of a second, and there a `notify()` from
/// another process that does not change the word may be missed).
///
/// @param view - A Buffer returned by `map()` or any view of the same memory.
/// @param byteOffset - Where the word is in the view: it must be 4-byte aligned in the mapping.
/// @param expected - The value (int32 or uint32) the word must hold for the wait to begin.
/// @param timeout - Milliseconds to wait at most. Default: `Infinity`.
/// @returns A Promise of `'ok'`, `'not-equal'` or `'timed-out'`.
#[napi(
  ts_args_type = "view: ArrayBufferView | ArrayBuffer, byteOffset: number, expected: number, timeout?: number",
  ts_return_type = "Promise<'ok' | 'not-equal' | 'timed-out'>"
)]
pub fn wait_async<'env>(
  env: &'env Env,
  view: Unknown,
  byte_offset: Unknown,
  expected_value: Unknown,
  timeout: Optional,
) -> napi::Result<Unknown<'env>> {
  let checked = (|| {
    let word = word(env, &view, &byte_offset)?;
    let expected = expected(env, &expected_value)?;
    let deadline = deadline(env, timeout.as_ref())?;
    Ok((word.ok_or_else(|| view::unmapped(env))?, expected, deadline))
  })();
  let (word, expected, deadline) = match checked {
    Ok(checked) => checked,
    Err(err) => return errors::promise::<()>(env, Err(err)),
  };
  // What the kernel would answer at once needs no thread: a word that differs, or no time left.
  // SAFETY: the word is aligned, inside the mapping `word` keeps reserved, and readable (`word()`
  // checked the rights); read as the atomic other threads and processes write.
  let now = unsafe { &*word.addr().cast::<AtomicU32>() }.load(Ordering::SeqCst);
  let expired = deadline.is_some_and(|deadline| !later(&deadline, &sys::deadline_after(0.0)));
  let (mut deferred, mut promise) = (ptr::null_mut(), ptr::null_mut());
  // SAFETY: both out-pointers are valid.
  let status = unsafe { napi_sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
  if status != napi_sys::Status::napi_ok {
    return Err(errors::pending_or(env, "napi_create_promise", status));
  }
  if now != expected || expired {
    let wait = if now != expected {
      Wait::NotEqual
    } else {
      Wait::TimedOut
    };
    // SAFETY: `deferred` was just made and is settled once, here.
    unsafe { napi_sys::napi_resolve_deferred(env.raw(), deferred, errors::js_string(env, &outcome(wait))) };
    // SAFETY: `promise` is a live value of this env.
    return Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) });
  }
  let reject = |error: napi_sys::napi_value| {
    // SAFETY: `deferred` was just made and is settled once, here, as nothing else got it.
    unsafe { napi_sys::napi_reject_deferred(env.raw(), deferred, error) };
    // SAFETY: `promise` is a live value of this env.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
  };
  let name = errors::js_string(env, "node-mmap waitAsync");
  let mut tsfn = ptr::null_mut();
  // SAFETY: no JS function (Node-API 5: `settle` instead), no finalizer, no context; one hold,
  // the thread's, released by it. Referenced: the event loop lives while the wait is pending.
  let status = unsafe {
    napi_sys::napi_create_threadsafe_function(
      env.raw(),
      ptr::null_mut(),
      ptr::null_mut(),
      name,
      0,
      1,
      ptr::null_mut(),
      None,
      ptr::null_mut(),
      Some(settle),
      &mut tsfn,
    )
  };
  if status != napi_sys::Status::napi_ok {
    let _thrown = errors::pending_or(env, "napi_create_threadsafe_function", status);
    let mut error = ptr::null_mut();
    // SAFETY: a valid out-pointer; the exception just thrown is taken back to reject with it.
    unsafe { napi_sys::napi_get_and_clear_last_exception(env.raw(), &mut error) };
    return reject(error);
  }
  // A waiter from now on: a `notify` after this call returns wakes it and counts it, asleep in
  // the kernel or not yet.
  let registration = Registration::new(&word);
  let sleeper = Arc::new(Sleeper {
    waiter: Arc::clone(&registration.waiter),
    hooked: AtomicBool::new(false),
    thread: Mutex::new(None),
  });
  let handles = Handles { tsfn, deferred };
  let theirs = Arc::clone(&sleeper);
  // A thread's stack and its guard page are two more kernel mappings, counted as ours are.
  let spawned = mapping::reserve_vmas(2).and_then(|()| {
    std::thread::Builder::new()
      .name("node-mmap waitAsync".into())
      .stack_size(SLEEPER_STACK)
      .spawn(move || {
        let handles = handles;
        let outcome = match word.sleep(expected, deadline, &registration.waiter, false, || false) {
          // Stopped by the cleanup hook: nobody is left to see the outcome.
          Ok(Wait::Cancelled) => Err(Failure::Unmapped),
          outcome => outcome,
        };
        drop(registration); // before anything that may wait: a `notify` may wait for this
        drop(word); // the mapping may go before the env's thread looks at the outcome
        let data = Box::into_raw(Box::new(Settle {
          outcome,
          deferred: handles.deferred,
          sleeper: theirs,
        }));
        // SAFETY: the thread holds the thread-safe function until the release below; `data` is
        // handed over to `settle` unless Node refuses the call (the env is closing).
        unsafe {
          let status = napi_sys::napi_call_threadsafe_function(
            handles.tsfn,
            data.cast(),
            napi_sys::ThreadsafeFunctionCallMode::nonblocking,
          );
          if status != napi_sys::Status::napi_ok {
            drop(Box::from_raw(data));
          }
          napi_sys::napi_release_threadsafe_function(
            handles.tsfn,
            napi_sys::ThreadsafeFunctionReleaseMode::release,
          );
        }
      })
  });
  let thread = match spawned {
    Ok(thread) => thread,
    Err(err) => {
      // SAFETY: the hold the thread would have had: nothing calls the function.
      unsafe {
        napi_sys::napi_release_threadsafe_function(tsfn, napi_sys::ThreadsafeFunctionReleaseMode::release)
      };
      return reject(errors::system(env, &err, "pthread_create", None));
    }
  };
  *sleeper
    .thread
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(thread);
  // The outcome is settled on this thread, later than now: the hook is in place before it.
  let arg = Arc::into_raw(Arc::clone(&sleeper)).cast_mut().cast::<c_void>();
  // SAFETY: `abandon` takes `arg`, a reference released by whichever of it and `settle` runs.
  let status = unsafe { napi_sys::napi_add_env_cleanup_hook(env.raw(), Some(abandon), arg) };
  if status == napi_sys::Status::napi_ok {
    sleeper.hooked.store(true, Ordering::Relaxed);
  } else {
    // The env is already being torn down: stop the thread now.
    // SAFETY: not registered, so `arg` is still ours, and `abandon` is called once.
    unsafe { abandon(arg) };
  }
  // SAFETY: `promise` is a live value of this env.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
}

/// Wakes up to `count` waiters (`wait`, `waitAsync`) of the 32-bit word at `byteOffset` of
/// `view`, and returns how many woke: first the waits of this process on this word, oldest
/// first, each counted from the moment its call returned (or blocked), asleep yet or not, as
/// with `Atomics.notify`; then, for what is left of `count`, the waits asleep in the kernel on
/// that word: those of other processes (and of this process through another mapping of the
/// same file). A wait in another process that has not reached the kernel yet cannot be woken
/// nor counted: change the word, then notify. With `count` left for the kernel after waking
/// waits of this process, it first waits for their threads to leave the kernel (as long as a
/// thread takes to be scheduled), so that no wait is counted twice. Linux only (futex(2));
/// elsewhere it throws `ENOTSUP`. On a view of a mapping that `unmap()` took away it does
/// nothing and returns 0.
///
/// @param view - A Buffer returned by `map()` or any view of the same memory.
/// @param byteOffset - Where the word is in the view: it must be 4-byte aligned in the mapping.
/// @param count - How many waiters to wake at most. Default: `Infinity` (all).
#[napi(ts_args_type = "view: ArrayBufferView | ArrayBuffer, byteOffset: number, count?: number")]
pub fn notify(env: &Env, view: Unknown, byte_offset: Unknown, count: Optional) -> napi::Result<u32> {
  let word = word(env, &view, &byte_offset)?;
  // `Optional` already leaves `undefined` out.
  let count = match count.as_ref() {
    None => i32::MAX,
    Some(count) if args::number_value(env, count) == Some(f64::INFINITY) => i32::MAX,
    Some(count) => args::integer(env, count, "count", 0, i64::from(i32::MAX))? as i32,
  };
  let Some(word) = word.filter(|word| !word.mapping.is_unmapped()) else {
    return Ok(0); // nothing waits on memory that is gone (its waits end ERR_MMAP_UNMAPPED)
  };
  if count == 0 {
    return Ok(0); // FUTEX_WAKE with 0 wakes one waiter all the same
  }
  let count = count as usize;
  let wake = |count: usize, private| {
    let count = count.min(i32::MAX as usize) as i32;
    // SAFETY: the word is aligned and inside the mapping, which `word.mapping` keeps reserved.
    match unsafe { sys::wake(word.addr(), count, private) } {
      // The shared key of a word whose page refuses it (see `with_key`): nobody waits with it.
      Err(err) if err.raw_os_error() == Some(libc::EFAULT) && !private => Ok(0),
      woken => woken,
    }
    .map_err(|err| errors::throw_system(env, &err, "futex", None))
  };
  // This process's waits, marked and counted under the lock: each one once, by one notify. The
  // lock is held to the end, so that no wait of this word registers meanwhile: the kernel wake
  // below cannot reach a wait of this process (by this address) that another notify could
  // mark too, and count again.
  let waiters = waiters();
  let (mut woken, mut leaving) = (Vec::new(), Vec::new());
  for waiter in waiters.get(&(word.addr() as usize)).into_iter().flatten() {
    if woken.len() == count {
      break; // nothing goes to the kernel: `leaving` is not needed
    }
    if waiter.mark(NOTIFIED) == PENDING {
      woken.push(Arc::clone(waiter));
    } else if waiter.state.load(Ordering::SeqCst) != PENDING {
      leaving.push(Arc::clone(waiter));
    }
  }
  for waiter in &woken {
    // SAFETY: `state` is an aligned word of the waiter, alive for the call.
    unsafe { sys::wake_private(waiter.state.as_ptr()) };
  }
  let here = woken.len();
  if here == count {
    return Ok(count as u32);
  }
  // The kernel tells only how many it woke, not whom: a wait of this process that was marked
  // (by this notify or another) but is still queued on the word would be woken and counted
  // twice. Those that sleep with futex_waitv leave the queue as soon as their thread runs: wait
  // for them (they set `gone` before they take the lock). The others (sleeping in slices,
  // before Linux 5.16) may still be there: what the kernel reports is counted less as many, so
  // that it may count fewer than woke, never more.
  let marked: Vec<_> = woken.into_iter().chain(leaving).collect();
  for waiter in &marked {
    if waiter.exact.load(Ordering::Relaxed) {
      waiter.wait_gone();
    }
  }
  let stale = marked
    .iter()
    .filter(|waiter| waiter.gone.load(Ordering::SeqCst) == 0)
    .count();
  let mut kernel = wake(count - here, false)?;
  std::sync::atomic::fence(Ordering::SeqCst);
  if kernel < count - here && PRIVATE_SLEEPERS.load(Ordering::SeqCst) != 0 {
    kernel += wake(count - here - kernel, true)?;
  }
  drop(waiters);
  Ok((here + kernel.saturating_sub(stale)).min(count) as u32)
}
