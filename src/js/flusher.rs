//! The flusher: the thread-safe function that has `crate::core::reclaim` unmap a thread's
//! waiting run of dropped mappings on the thread's next event-loop turn.
//!
//! [`enable`] makes one when the addon loads on a thread (in the env loading it); it is
//! unreferenced, so that it never keeps a program alive, and its async resource says so:
//! `hasRef()` is false. The core knows it only by a handle, a token and [`ask`], and knows envs
//! only by an identity (the `napi_env` as a `usize`): [`finalizing`] and [`is_home`] translate.

use std::ffi::c_void;
#[cfg(not(test))]
use std::ptr;
#[cfg(not(test))]
use std::sync::atomic::{AtomicUsize, Ordering};

use napi::sys;
use napi::Env;

use crate::core::reclaim::{self, Flusher};

/// The async resource of a flusher: an object whose `hasRef()` returns false, as a handle that
/// does not keep the event loop alive says (`Timeout#hasRef`). Tools that list what is left
/// open at the end of a test run from async_hooks (Jest's `--detectOpenHandles`) ask it.
#[cfg(not(test))]
fn unreferenced_resource(env: sys::napi_env) -> Option<sys::napi_value> {
  unsafe extern "C" fn has_ref(env: sys::napi_env, _info: sys::napi_callback_info) -> sys::napi_value {
    let mut result = ptr::null_mut();
    // SAFETY: `env` is the env of this call; the out-pointer is valid. On failure `result`
    // stays null, which Node-API reads as `undefined` (falsy too).
    unsafe { sys::napi_get_boolean(env, false, &mut result) };
    result
  }
  let mut resource = ptr::null_mut();
  let mut function = ptr::null_mut();
  let name = c"hasRef";
  // SAFETY: `env` is the live env running the module's init on this thread; the out-pointers are
  // valid, and `name` is valid for its length.
  unsafe {
    (sys::napi_create_object(env, &mut resource) == sys::Status::napi_ok
      && sys::napi_create_function(
        env,
        name.as_ptr(),
        name.to_bytes().len() as isize,
        Some(has_ref),
        ptr::null_mut(),
        &mut function,
      ) == sys::Status::napi_ok
      && sys::napi_set_named_property(env, resource, name.as_ptr(), function) == sys::Status::napi_ok)
      .then_some(resource)
  }
}

/// Makes a flusher in `env`, which is loading the addon on this thread: the thread-safe function
/// and its token; `None` if the runtime refused (then every range is unmapped at once).
fn make_flusher(env: sys::napi_env) -> Option<Flusher> {
  // Unit tests link no Node-API: there, no flusher can be made.
  #[cfg(test)]
  {
    let _ = env;
    None
  }
  #[cfg(not(test))]
  {
    let name = c"node-mmap unmap";
    let mut resource_name = ptr::null_mut();
    // SAFETY: `env` is the live env running the module's init on this thread; `name` is valid
    // for its length; the out-pointer is valid.
    let status = unsafe {
      sys::napi_create_string_utf8(
        env,
        name.as_ptr(),
        name.to_bytes().len() as isize,
        &mut resource_name,
      )
    };
    if status != sys::Status::napi_ok {
      return None;
    }
    let resource = unreferenced_resource(env)?;
    static TOKENS: AtomicUsize = AtomicUsize::new(1);
    let token = TOKENS.fetch_add(1, Ordering::Relaxed);
    let mut flusher = ptr::null_mut();
    // SAFETY: as above. No JS function (Node-API 5: `call_js_cb` instead); `token` is handed to
    // `closed` as its data. One hold, never released: it lives until its env is torn down.
    let status = unsafe {
      sys::napi_create_threadsafe_function(
        env,
        ptr::null_mut(),
        resource,
        resource_name,
        0,
        1,
        token as *mut c_void,
        Some(closed),
        ptr::null_mut(),
        Some(flush),
        &mut flusher,
      )
    };
    if status != sys::Status::napi_ok {
      return None;
    }
    // SAFETY: `flusher` was just made in `env`, on its thread. Unreferenced, it never keeps the
    // event loop alive: a run left when the program ends goes with the process.
    if unsafe { sys::napi_unref_threadsafe_function(env, flusher) } != sys::Status::napi_ok {
      // SAFETY: the one hold on `flusher`, given up: Node frees it (its `closed` call carries a
      // token no thread holds, so it changes nothing).
      unsafe { sys::napi_release_threadsafe_function(flusher, sys::ThreadsafeFunctionReleaseMode::release) };
      return None;
    }
    Some(Flusher {
      handle: flusher as usize,
      token,
      ask,
    })
  }
}

/// Queues a call of `flusher`, a live thread-safe function of this thread's env (`closed`
/// clears it in the core before Node frees it, and a refusal clears it there before Node may);
/// `false` if Node refused (the env is closing).
fn ask(flusher: usize) -> bool {
  let flusher = flusher as sys::napi_threadsafe_function;
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
  let env = env.raw();
  reclaim::enable(env as usize, || make_flusher(env));
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
