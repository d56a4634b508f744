//! Plain Node-API entry points for the calls a program makes millions of times: `map` and
//! `unmap`.
//!
//! For every function with arguments, napi-rs's generated glue opens a "native borrow scope"
//! (an `Arc`'d mutex and thread-local pushes and pops) whether or not an argument borrows
//! anything. Measured 2026-12-07 (issue 13) with bench/ab.js, this build against the same source
//! with this file gone (`map`/`unmap` through napi-rs's glue, the export hook only installing
//! the flusher), CPU-time medians of 15 runs of 40,000 calls, six runs with the builds' order
//! alternated, on a 2-core host shared with other work (load 4-21): without these entry points
//! `map` alone (4 KiB) took 1.034x (0.93-1.12x) and `map` + `unmap` pairs 1.060x (0.98-1.13x) the
//! CPU time; the same build against itself read 0.98-1.01x and 0.92-1.01x.
//! These callbacks read the arguments (`js::raw::callback_arguments`) and call the very same Rust
//! functions, so they behave as the napi-rs exports did. (One difference: an exception that user
//! code throws while an error is being built, say a `code` setter on `Object.prototype`, now
//! reaches the caller, where napi-rs's glue replaced it with an error of its own.) The module's export hook puts them in place
//! of the napi-rs ones when the addon loads; `index.d.ts` still comes from those functions' `///`
//! docs.

use std::ffi::CStr;
use std::ptr;

use napi::bindgen_prelude::{Object, Unknown};
use napi::{sys, Env, JsError, JsValue, Status};

use crate::js::raw;
use napi_derive::napi;

/// Reads up to `N` arguments (missing ones are `undefined`, as Node-API fills them), runs
/// `body` with them and the number the caller passed, and turns its `Err` into the pending JS
/// exception, as napi-rs's glue does.
///
/// # Safety
/// `env` and `info` are the ones Node-API passed to the running callback.
unsafe fn call<const N: usize>(
  env: sys::napi_env,
  info: sys::napi_callback_info,
  body: impl FnOnce(&Env, [sys::napi_value; N], usize) -> napi::Result<sys::napi_value>,
) -> sys::napi_value {
  // SAFETY: forwarded from this function's contract.
  let arguments = unsafe { raw::callback_arguments::<N>(env, info) };
  let wrapped = Env::from_raw(env);
  let result = match arguments {
    Ok((argv, argc)) => body(&wrapped, argv, argc),
    Err(status) => Err(crate::js::errors::pending_or(
      &wrapped,
      "napi_get_cb_info",
      status,
    )),
  };
  match result {
    Ok(value) => value,
    Err(error) if error.status == Status::PendingException => ptr::null_mut(),
    Err(error) => {
      // SAFETY: `env` is the live env of this callback; `throw_into` checks for a pending
      // exception itself and leaves it in place.
      unsafe { JsError::from(error).throw_into(env) };
      ptr::null_mut()
    }
  }
}

/// A value of this callback's env as napi-rs's `Unknown`.
///
/// # Safety
/// `value` is an argument of the running callback of `env`.
unsafe fn unknown<'env>(env: &'env Env, value: sys::napi_value) -> Unknown<'env> {
  // SAFETY: forwarded from the caller: a live value of this env.
  unsafe { Unknown::from_raw_unchecked(env.raw(), value) }
}

/// `map(size, protection, flags, fd[, offset[, advise]])`: [`crate::api::map::map`].
unsafe extern "C" fn map(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: Node-API calls this with its own `env` and `info`; every value read is an argument.
  unsafe {
    call::<6>(env, info, |env, argv, argc| {
      let [size, protection, flags, fd, offset, advise] = argv.map(|value| unknown(env, value));
      // An optional argument the caller left out is not even asked for its type; one passed
      // as `undefined` reaches the checks, which take it as absent.
      let (offset, advise) = ((argc > 4).then_some(offset), (argc > 5).then_some(advise));
      crate::api::map::map_from_arguments(
        env,
        &size,
        &protection,
        &flags,
        &fd,
        offset.as_ref(),
        advise.as_ref(),
      )
    })
  }
}

/// `unmap(buffer)`: [`crate::api::ops::unmap`].
unsafe extern "C" fn unmap(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  // SAFETY: Node-API calls this with its own `env` and `info`; the value read is an argument,
  // and `undefined` a valid out-pointer.
  unsafe {
    call::<1>(env, info, |env, [buffer], _| {
      crate::api::ops::unmap(env, unknown(env, buffer))?;
      Ok(raw::undefined(env))
    })
  }
}

/// Replaces the export `name` with a function that calls `callback`.
fn install(env: &Env, exports: &Object, name: &CStr, callback: sys::napi_callback) -> napi::Result<()> {
  let function = raw::function(env, name, callback)
    .map_err(|status| crate::js::errors::pending_or(env, "napi_create_function", status))?;
  match raw::set_named(env, exports.raw(), name, function) {
    sys::Status::napi_ok => Ok(()),
    status => Err(crate::js::errors::pending_or(
      env,
      "napi_set_named_property",
      status,
    )),
  }
}

/// Runs once per env after napi-rs has set the exports: readies the kernel-mapping guard while
/// descriptors are free (`mapping::prepare_guard`), gives the env's thread its flusher of
/// mappings that finalizers drop (`flusher::enable`), then puts the fast entry points in place.
#[napi(module_exports)]
pub fn install_fast_entry_points(exports: Object, env: Env) -> napi::Result<()> {
  crate::core::mapping::prepare_guard();
  crate::js::flusher::enable(&env);
  crate::js::buffer::release_at_env_end(&env);
  install(&env, &exports, c"map", Some(map))?;
  install(&env, &exports, c"unmap", Some(unmap))
}
