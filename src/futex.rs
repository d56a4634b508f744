//! `wait`, `waitAsync` and `notify`: futex-style sleeping on a 32-bit word of a mapping, the
//! semaphores and mutexes the seed's shared memory lacked. On a `MAP_SHARED` file mapping the
//! word is the file's, so a process waits until another one that maps the same file notifies.
//! Linux only (futex(2)); elsewhere the calls throw `ENOTSUP`.

use napi::bindgen_prelude::{AsyncTask, Unknown};
use napi::{Env, ScopedTask};
use napi_derive::napi;

use crate::args::{self, Optional};
use crate::errors;
use crate::mapping::Failure;
use crate::shared::Shared;
use crate::sys::{self, Wait};
use crate::view::{self, Resolved};

/// How long `waitAsync` sleeps at a time before it looks whether its mapping was unmapped, on
/// kernels without futex_waitv(2).
const ASYNC_SLICE_MS: f64 = 100.0;

/// The environment variable that makes `waitAsync` act as on a kernel without futex_waitv
/// (before Linux 5.16): the switch that tests the sliced wait here.
pub const SIMULATE_NO_FUTEX_WAITV: &str = "NODE_MMAP_SIMULATE_NO_FUTEX_WAITV";

fn simulate_no_futex_waitv() -> bool {
  static SIMULATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
  *SIMULATE.get_or_init(|| std::env::var_os(SIMULATE_NO_FUTEX_WAITV).is_some_and(|v| v == "1"))
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
    // SAFETY: the word is aligned and inside the mapping, which `self.mapping` keeps reserved.
    Ok(unsafe { sys::wait(self.addr(), expected, deadline) }?)
  }

  /// As [`Word::wait`], but an `unmap()` meanwhile ends it (`Unmapped`): unmapping swaps the
  /// page the futex sleeps on, and no notify could reach it any more. The wait also sleeps on
  /// the mapping's cancel word, which `unmap()` sets and wakes (futex_waitv, Linux 5.16);
  /// before that kernel it waits in slices and looks in between.
  fn wait_or_unmap(&self, expected: u32, deadline: Option<libc::timespec>) -> Result<Wait, Failure> {
    if self.mapping.is_unmapped() {
      return Err(Failure::Unmapped);
    }
    if simulate_no_futex_waitv() {
      return self.wait_in_slices(expected, deadline);
    }
    let waited = self.mapping.with_cancel_word(|cancel| {
      // SAFETY: the word is aligned and inside the mapping, which `self.mapping` keeps
      // reserved; the cancel word is an aligned field of the same mapping.
      unsafe { sys::wait_or_cancel(self.addr(), expected, cancel, deadline) }
    });
    match waited {
      Ok(Wait::Cancelled) => Err(Failure::Unmapped),
      Ok(wait) => Ok(wait),
      Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => self.wait_in_slices(expected, deadline),
      Err(err) => Err(Failure::Os(err)),
    }
  }

  /// As [`Word::wait`], in slices, so that an `unmap()` meanwhile ends it within a slice. A
  /// notify that lands between two slices without changing the word is missed: notifiers that
  /// change the word first, as they should, are never missed.
  fn wait_in_slices(&self, expected: u32, deadline: Option<libc::timespec>) -> Result<Wait, Failure> {
    let mut first = true;
    loop {
      let slice = sys::deadline_after(ASYNC_SLICE_MS);
      let last = deadline.is_some_and(|deadline| !later(&deadline, &slice));
      match self.wait(expected, if last { deadline } else { Some(slice) })? {
        Wait::TimedOut if !last => first = false,
        // After a slice, a changed word means a notifier changed it: as good as a wake.
        Wait::NotEqual if !first => return Ok(Wait::Woken),
        done => return Ok(done),
      }
    }
  }
}

/// Whether `a` is after `b`.
fn later(a: &libc::timespec, b: &libc::timespec) -> bool {
  (a.tv_sec, a.tv_nsec) > (b.tv_sec, b.tv_nsec)
}

/// `view` + `byteOffset` -> the word, checked: a view of a live mapping, the word inside it,
/// aligned, and readable.
fn word(env: &Env, view: &Unknown, byte_offset: &Unknown) -> napi::Result<Word> {
  let resolved = view::resolve(env, view, "view")?;
  let (mapping, view_offset, len) = match resolved {
    Resolved::View(view) => (Some(view.mapping), view.offset, view.len),
    Resolved::Empty => (None, 0, 0),
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
  let offset = view_offset + number as usize;
  if !offset.is_multiple_of(4) {
    return Err(args::invalid_value(
      env,
      "byteOffset",
      "must point at a 4-byte aligned word of the mapping",
      &(number as u64).to_string(),
    ));
  }
  let mapping = mapping.expect("a view with room for a word is a view of a mapping");
  view::check_rights(env, &mapping, false, "view")?;
  Ok(Word { mapping, offset })
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
    // `Cancelled` ends as ERR_MMAP_UNMAPPED before it gets here (`Word::wait_or_unmap`).
    Wait::TimedOut | Wait::Cancelled => "timed-out",
  }
  .to_string()
}

/// Sleeps while the 32-bit word at `byteOffset` of `view` holds `expected`, until `notify` wakes
/// it (from this process or any other that maps the same file with `MAP_SHARED`) or `timeout`
/// milliseconds pass; blocks the calling thread meanwhile, as `Atomics.wait` does. Linux only
/// (futex(2)); elsewhere it throws `ENOTSUP`. `Atomics.wait`/`Atomics.notify` do not see these
/// waits: use `wait`/`notify` on both sides. As with futexes, `'ok'` may come without a notify:
/// check the word again in a loop.
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
  word
    .wait(expected, deadline)
    .map(outcome)
    .map_err(|failure| view::failure(env, failure, "futex"))
}

/// `waitAsync` on the libuv thread pool.
pub struct WaitAsync {
  word: Word,
  expected: u32,
  deadline: Option<libc::timespec>,
}

impl<'env> ScopedTask<'env> for WaitAsync {
  type Output = Result<Wait, Failure>;
  type JsValue = String;

  fn compute(&mut self) -> napi::Result<Self::Output> {
    Ok(self.word.wait_or_unmap(self.expected, self.deadline))
  }

  fn resolve(&mut self, env: &'env Env, output: Self::Output) -> napi::Result<String> {
    match output {
      Ok(wait) => Ok(outcome(wait)),
      Err(Failure::Unmapped) => Err(errors::reject_with(env, view::unmapped_error(env))),
      Err(Failure::Os(err)) => Err(errors::reject_with(env, errors::system(env, &err, "futex", None))),
    }
  }
}

/// Like `wait`, without blocking: the wait runs on the libuv thread pool, and the Promise settles
/// with its outcome. Each pending `waitAsync` holds one of the pool's threads (4 unless
/// `UV_THREADPOOL_SIZE` says otherwise), which `fs`, `zlib` and `flush` also use: give long
/// waits a `timeout`, or wait with `wait` in a worker thread. An `unmap()` of the mapping meanwhile
/// rejects the Promise with `ERR_MMAP_UNMAPPED` at once (before Linux 5.16, within a tenth of a
/// second, and there a `notify()` that does not change the word may be missed).
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
  let task = (|| {
    Ok(AsyncTask::new(WaitAsync {
      word: word(env, &view, &byte_offset)?,
      expected: expected(env, &expected_value)?,
      deadline: deadline(env, timeout.as_ref())?,
    }))
  })();
  errors::promise(env, task)
}

/// Wakes up to `count` waiters (`wait`, `waitAsync`, in any process) of the 32-bit word at
/// `byteOffset` of `view`, and returns how many woke. Linux only (futex(2)); elsewhere it throws
/// `ENOTSUP`.
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
  if word.mapping.is_unmapped() {
    return Err(view::unmapped(env));
  }
  if count == 0 {
    return Ok(0); // FUTEX_WAKE with 0 wakes one waiter all the same
  }
  // SAFETY: the word is aligned and inside the mapping, which `word.mapping` keeps reserved.
  let woken =
    unsafe { sys::wake(word.addr(), count) }.map_err(|err| errors::throw_system(env, &err, "futex", None))?;
  Ok(woken.min(u32::MAX as usize) as u32)
}
