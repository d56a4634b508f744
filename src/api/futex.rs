//! `wait`, `waitAsync` and `notify`: futex-style sleeping on a 32-bit word of a mapping, the
//! semaphores and mutexes the seed's shared memory lacked. On a `MAP_SHARED` file mapping the
//! word is the file's, so a process waits until another one that maps the same file notifies.
//! Linux only (futex(2)); elsewhere the calls throw `ENOTSUP`. The waits themselves (the word,
//! the registry of this process's waiters, the kernel sleeps) are in [`crate::core::futex`];
//! here are the exports, their arguments, and `waitAsync`'s thread and Promise.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use napi::bindgen_prelude::Unknown;
use napi::ScopedTask;
use napi::{sys as napi_sys, Env};
use napi_derive::napi;

use crate::core::futex::{later, Registration, Waiter, Word};
use crate::core::mapping::{self, Failure};
use crate::js::args::{self, Optional};
use crate::js::errors;
use crate::js::raw;
use crate::js::view::{self, Resolved};
use crate::sys::{self, Wait};

/// The stack of a `waitAsync` thread, which only sleeps in the kernel and hands the outcome on.
const SLEEPER_STACK: usize = 128 * 1024;

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
  Ok(Some(Word::new(mapping, offset)))
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
/// already unmapped throws it; a `protect()` that takes read access away ends it with
/// `ERR_MMAP_ACCESS`. `worker.terminate()` and `process.exit()` end the wait within a
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
  ts_args_type = "view: ArrayBufferView | ArrayBufferLike, byteOffset: number, expected: number, timeout?: number",
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
    return Err(errors::unmapped(env));
  };
  // Asked before sleeping too: a loop of `wait()`s goes on for a while after a worker is told to
  // end (V8 acts on `terminate()` only at some of the loop's turns), and a slice slept at each
  // of those turns made `terminate()` and `process.exit()` take half a minute.
  if crate::js::buffer::env_stopping(env.raw()) {
    return Err(errors::pending());
  }
  let registration = Registration::new(&word);
  let slept = word.sleep(expected, deadline, &registration.waiter, true, || {
    crate::js::buffer::env_stopping(env.raw())
  });
  drop(registration);
  match slept {
    // The env is being torn down: nothing will see a result, and JavaScript cannot resume.
    Ok(Wait::Cancelled) => Err(errors::pending()),
    Ok(wait) => Ok(outcome(wait)),
    Err(failure) => Err(errors::throw_failure(env, failure, "futex")),
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
  sleeper.waiter.stop();
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
    unsafe { raw::remove_cleanup_hook(&Env::from_raw(env), abandon, arg) };
    // SAFETY: the reference the hook held, now that it cannot run.
    drop(unsafe { Arc::from_raw(Arc::as_ptr(&sleeper)) });
  }
  // The thread queued this as its last act but for returning.
  sleeper.join();
  let env = Env::from_raw(env);
  match result {
    // SAFETY: `deferred` was made in this env by `wait_async` and is settled once, here.
    Ok(wait) => unsafe { raw::resolve(&env, deferred, errors::js_string(&env, &outcome(wait))) },
    // SAFETY: as above.
    Err(failure) => unsafe { raw::reject(&env, deferred, errors::failure(&env, &failure, "futex")) },
  }
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
/// another process that does not change the word may be missed). A `protect()` that takes read
/// access away rejects it with `ERR_MMAP_ACCESS`. The wait does not keep its mapping alive:
/// once the last view of it (and its `Mapping` handle) is collected, or released by
/// `ArrayBuffer.prototype.transfer()`, the Promise rejects with `ERR_MMAP_UNMAPPED`. When the
/// thread cannot be had, it rejects with a system error (`syscall: 'pthread_create'`): `EAGAIN`
/// at a thread limit, `ENOMEM` where its stack would leave the runtime less than its headroom
/// of the data limit (`ulimit -d`, as for `map()`).
///
/// @param view - A Buffer returned by `map()` or any view of the same memory.
/// @param byteOffset - Where the word is in the view: it must be 4-byte aligned in the mapping.
/// @param expected - The value (int32 or uint32) the word must hold for the wait to begin.
/// @param timeout - Milliseconds to wait at most. Default: `Infinity`.
/// @returns A Promise of `'ok'`, `'not-equal'` or `'timed-out'`.
#[napi(
  ts_args_type = "view: ArrayBufferView | ArrayBufferLike, byteOffset: number, expected: number, timeout?: number",
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
    Ok((word.ok_or_else(|| errors::unmapped(env))?, expected, deadline))
  })();
  let (word, expected, deadline) = match checked {
    Ok(checked) => checked,
    Err(err) => return errors::promise::<()>(env, Err(err)),
  };
  // What the kernel would answer at once needs no thread: a word that differs, or no time left.
  let now = match word.load() {
    Ok(now) => now,
    Err(failure) => return errors::promise::<()>(env, Err(errors::throw_failure(env, failure, "futex"))),
  };
  let expired = deadline.is_some_and(|deadline| !later(&deadline, &sys::deadline_after(0.0)));
  let (deferred, promise) =
    raw::promise(env).map_err(|status| errors::pending_or(env, "napi_create_promise", status))?;
  if now != expected || expired {
    let wait = if now != expected {
      Wait::NotEqual
    } else {
      Wait::TimedOut
    };
    // SAFETY: `deferred` was just made and is settled once, here.
    unsafe { raw::resolve(env, deferred, errors::js_string(env, &outcome(wait))) };
    // SAFETY: `promise` is a live value of this env.
    return Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) });
  }
  let reject = |error: raw::Value| {
    // SAFETY: `deferred` was just made and is settled once, here, as nothing else got it.
    unsafe { raw::reject(env, deferred, error) };
    // SAFETY: `promise` is a live value of this env.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
  };
  let name = errors::js_string(env, "node-mmap waitAsync");
  // SAFETY: no JS function (Node-API 5: `settle` instead), no finalizer, no context; `settle`
  // takes the data of each call, a `Settle`, as it is. One hold, the thread's, released by it.
  // Referenced: the event loop lives while the wait is pending.
  let made =
    unsafe { raw::threadsafe_function(env, ptr::null_mut(), name, ptr::null_mut(), None, Some(settle)) };
  let tsfn = match made {
    Ok(tsfn) => tsfn,
    Err(status) => {
      let _thrown = errors::pending_or(env, "napi_create_threadsafe_function", status);
      // The exception just thrown is taken back to reject with it.
      return reject(raw::take_exception(env));
    }
  };
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
  start_thread_pool(env);
  // A thread's stack and its guard page are two more kernel mappings, counted as ours are; its
  // stack is private writable memory, so under `ulimit -d` the runtime keeps its headroom there
  // too (thousands of pending waits took all of it and V8 aborted, attack pass 16).
  let spawned = mapping::reserve_vmas(2).and_then(|()| {
    let _data = mapping::reserve_data(SLEEPER_STACK, true)?;
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
          let status = raw::call_threadsafe_function(handles.tsfn, data.cast());
          if status != napi_sys::Status::napi_ok {
            drop(Box::from_raw(data));
          }
          raw::release_threadsafe_function(handles.tsfn);
        }
      })
  });
  let thread = match spawned {
    Ok(thread) => thread,
    Err(err) => {
      // SAFETY: the hold the thread would have had: nothing calls the function.
      unsafe { raw::release_threadsafe_function(tsfn) };
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
  let status = unsafe { raw::add_cleanup_hook(env, abandon, arg) };
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

/// An empty task for the runtime's thread pool (see [`start_thread_pool`]).
struct StartPool;

impl<'env> ScopedTask<'env> for StartPool {
  type Output = ();
  type JsValue = ();

  fn compute(&mut self) -> napi::Result<()> {
    Ok(())
  }

  fn resolve(&mut self, _env: &'env Env, _output: ()) -> napi::Result<()> {
    Ok(())
  }
}

/// Starts the runtime's thread pool, once, before the first `waitAsync()` makes its thread.
/// libuv starts its pool with its first task and aborts the process when it cannot make the
/// threads; each pending `waitAsync()` is a thread, and at a thread limit (`ulimit -u`, a
/// cgroup's `pids.max`) the waits took every thread left, so the next `fs`, `zlib` or `crypto`
/// call ended the process (attack pass 8). Once started, the pool makes no more threads.
fn start_thread_pool(env: &Env) {
  static STARTED: AtomicBool = AtomicBool::new(false);
  if !STARTED.swap(true, Ordering::Relaxed) {
    // The task's promise is not wanted: nothing waits for it.
    let _ = env.spawn(StartPool);
  }
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
/// @param count - How many waiters to wake at most (any integer up to `Number.MAX_SAFE_INTEGER`;
///   past what the kernel takes, all). Default: `Infinity` (all).
#[napi(ts_args_type = "view: ArrayBufferView | ArrayBufferLike, byteOffset: number, count?: number")]
pub fn notify(env: &Env, view: Unknown, byte_offset: Unknown, count: Optional) -> napi::Result<u32> {
  let word = word(env, &view, &byte_offset)?;
  // `Optional` already leaves `undefined` out.
  let count = match count.as_ref() {
    None => i32::MAX,
    Some(count) if args::number_value(env, count) == Some(f64::INFINITY) => i32::MAX,
    // Any count up to Number.MAX_SAFE_INTEGER; more than the kernel takes wakes all, as
    // `Atomics.notify` does with a large count (2 ** 31 was refused: attack pass 12).
    Some(count) => args::integer(env, count, "count", 0, (1i64 << 53) - 1)?.min(i64::from(i32::MAX)) as i32,
  };
  let Some(word) = word.filter(|word| !word.is_unmapped()) else {
    return Ok(0); // nothing waits on memory that is gone (its waits end ERR_MMAP_UNMAPPED)
  };
  if count == 0 {
    return Ok(0); // FUTEX_WAKE with 0 wakes one waiter all the same
  }
  let woken = word.notify(count as usize);
  woken
    .map(|n| n as u32)
    .map_err(|err| errors::throw_system(env, &err, "futex", None))
}
