//! The flusher: the thread-safe function that has `crate::core::reclaim` unmap a thread's
//! waiting run of dropped mappings on the thread's next event-loop turn.
//!
//! [`enable`] makes one when the addon loads on a thread (in the env loading it); it is
//! unreferenced, so that it never keeps a program alive, and its async resource says so:
//! `hasRef()` is false. The core knows it only by a handle, a token and [`ask`], and knows envs
//! only by an identity (the `napi_env` as a `usize`): [`finalizing`] and [`is_home`] translate.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use napi::sys;
use napi::Env;

use crate::core::reclaim::{self, Flusher};
use crate::js::raw;

/// The async resource of a flusher: an object whose `hasRef()` returns false, as a handle that
/// does not keep the event loop alive says (`Timeout#hasRef`). Tools that list what is left
/// open at the end of a test run from async_hooks (Jest's `--detectOpenHandles`) ask it.
fn unreferenced_resource(env: &Env) -> Option<sys::napi_value> {
  unsafe extern "C" fn has_ref(env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    // `env` is the env of this call. On failure the result is null, which Node-API reads as
    // `undefined` (falsy too).
    raw::boolean(&Env::from_raw(env), false)
  }
  let name = c"hasRef";
  let resource = raw::object(env).ok()?;
  let function = raw::function(env, name, Some(has_ref)).ok()?;
  (raw::set_named(env, resource, name, function) == sys::Status::napi_ok).then_some(resource)
}

/// Makes a flusher in `env`, which is loading the addon on this thread: the thread-safe function
/// and its token; `None` if the runtime refused (then every range is unmapped at once).
fn make_flusher(env: &Env) -> Option<Flusher> {
  let resource_name = raw::string(env, "node-mmap unmap");
  if resource_name.is_null() {
    return None;
  }
  let resource = unreferenced_resource(env)?;
  static TOKENS: AtomicUsize = AtomicUsize::new(1);
  let token = TOKENS.fetch_add(1, Ordering::Relaxed);
  // SAFETY: `resource` is an object of `env` and `resource_name` a string of it; `closed` takes
  // `token` as its data and `flush` reads nothing. One hold, never released: it lives until its
  // env is torn down.
  let flusher = unsafe {
    raw::threadsafe_function(
      env,
      resource,
      resource_name,
      token as *mut c_void,
      Some(closed),
      Some(flush),
    )
  }
  .ok()?;
  // SAFETY: `flusher` was just made in `env`, on its thread. Unreferenced, it never keeps the
  // event loop alive: a run left when the program ends goes with the process.
  if unsafe { raw::unref_threadsafe_function(env, flusher) } != sys::Status::napi_ok {
    // SAFETY: the one hold on `flusher`, given up: Node frees it (its `closed` call carries a
    // token no thread holds, so it changes nothing).
    unsafe { raw::release_threadsafe_function(flusher) };
    return None;
  }
  Some(Flusher {
    handle: flusher as usize,
    token,
    ask,
  })
}

/// Queues a call of `flusher`, a live thread-safe function of this thread's env (`closed`
/// clears it in the core before Node frees it, and a refusal clears it there before Node may);
/// `false` if Node refused (the env is closing).
fn ask(flusher: usize) -> bool {
  // SAFETY: `flusher` is live (this function's contract); calling one is allowed from any
  // thread, and runs no JS here (`flush` reads no data).
  let status =
    unsafe { raw::call_threadsafe_function(flusher as sys::napi_threadsafe_function, ptr::null_mut()) };
  status == sys::Status::napi_ok
}

/// The flusher's call: unmaps this thread's run. (Node also calls it, with a null `env`, for a
/// call still queued when the env is torn down: the run is unmapped then too.)
unsafe extern "C" fn flush(
  _env: sys::napi_env,
  _callback: sys::napi_value,
  _context: *mut c_void,
  _data: *mut c_void,
) {
  reclaim::flushed();
}

/// A flusher is being freed (its env is torn down): if it is this thread's, the run is
/// unmapped, and from now on nothing waits on this thread.
unsafe extern "C" fn closed(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  reclaim::closed(data as usize);
}

/// Gives this thread a flusher in `env`, which is loading the addon here, unless the thread
/// has one (the addon loaded again): from now on `env`'s finalizers' ranges may wait.
pub fn enable(env: &Env) {
  reclaim::enable(env.raw() as usize, || make_flusher(env));
}

/// Runs `f`, the work of a finalizer of `env`, with the mappings it drops allowed to wait.
pub fn finalizing<R>(env: sys::napi_env, f: impl FnOnce() -> R) -> R {
  reclaim::finalizing(env as usize, f)
}

/// Whether this thread runs `env`'s JavaScript (the env that loaded the addon here): Node-API
/// calls on `env` are allowed from this thread.
pub fn is_home(env: sys::napi_env) -> bool {
  reclaim::is_home(env as usize)
}
