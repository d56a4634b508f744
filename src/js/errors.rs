//! JS errors shaped like Node's own, thrown directly through Node-API.
//!
//! Each builder throws the error with `napi_throw` and returns a [`napi::Error`] whose status is
//! `PendingException`; napi-rs then leaves the pending exception alone, so what JavaScript catches
//! is exactly the object built here: its class, `code`, and for system errors `errno` (negative,
//! as in `fs`), `syscall` and `path`.

use std::io;
use std::ptr;

use napi::Env;
use napi::Status;

use crate::core::mapping::Failure;
use crate::js::raw::{self, Value};

pub use crate::js::raw::Class;

/// The `Err` every builder returns once the JS exception is pending.
pub fn pending() -> napi::Error {
  napi::Error::new(Status::PendingException, String::new())
}

/// The pending exception if a Node-API call left one, else an error naming the failed call.
pub fn pending_or(env: &Env, call: &str, status: raw::Status) -> napi::Error {
  if raw::is_exception_pending(env) {
    return pending();
  }
  throw_coded(
    env,
    Class::Error,
    "ERR_MMAP_NAPI",
    &format!("{call} failed with status {status}"),
  )
}

/// A JS string, or null when even that fails (the env is tearing down).
pub fn js_string(env: &Env, text: &str) -> Value {
  raw::string(env, text)
}

/// Builds an error object of `class` with `code` and `message`, without throwing it.
pub fn create(env: &Env, class: Class, code_text: &str, message_text: &str) -> Value {
  let message = js_string(env, message_text);
  // `code` is defined after, not given to napi_create_error, which assigns it: a setter for
  // `code` on Error.prototype (a program's, or a library's) ran, and when it threw, the error
  // never reached its Promise, which stayed pending for ever (attack pass 16).
  let error = raw::error(env, class, ptr::null_mut(), message);
  set(env, error, c"code", js_string(env, code_text));
  tag_stack(env, error, class, code_text, message_text);
  error
}

/// Node prints its own coded errors as `TypeError [ERR_X]: message`; so do ours. And every error
/// has a `stack`: Bun gives none to an error made while no JavaScript runs (the ones that reject
/// `open()`'s and `waitAsync()`'s Promises, made when the work ends): there it is the first line
/// that Node prints for such an error, which has no frames either.
fn tag_stack(env: &Env, error: Value, class: Class, code: &str, message: &str) {
  let name = match class {
    Class::Error => "Error",
    Class::TypeError => "TypeError",
    Class::RangeError => "RangeError",
  };
  if error.is_null() {
    return;
  }
  let tag = if code.starts_with("ERR_") {
    format!(" [{code}]")
  } else {
    String::new()
  };
  let Ok(stack) = raw::get_named(env, error, c"stack") else {
    // The program's `Error.prepareStackTrace` threw. Left pending, its exception replaced this
    // error (no `code`) or, where the error rejects a Promise when work ends, kept the Promise
    // from settling: the process exited in the middle of an `await`, and Deno aborted (attack
    // pass 11). The error gets the first line Node prints instead.
    raw::clear_exception(env);
    assign(
      env,
      error,
      c"stack",
      js_string(env, &format!("{name}{tag}: {message}")),
    );
    return;
  };
  match crate::js::args::string_contents(env, stack) {
    Some(text) if !text.is_empty() => {
      if tag.is_empty() {
        return;
      }
      if let Some(rest) = text.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")) {
        assign(
          env,
          error,
          c"stack",
          js_string(env, &format!("{name}{tag}: {rest}")),
        );
      }
    }
    _ => assign(
      env,
      error,
      c"stack",
      js_string(env, &format!("{name}{tag}: {message}")),
    ),
  }
}

/// Defines `object[name]` as an own data property (the shape `object[name] = value` gives a new
/// property, without running a setter that the program put on a prototype: one that threw kept
/// errors from their Promises, attack pass 16), ignoring failure (best effort while the env
/// tears down: an exception is cleared, so that the error still goes where it was going).
pub fn set(env: &Env, object: Value, name: &std::ffi::CStr, value: Value) {
  if object.is_null() || value.is_null() {
    return;
  }
  if raw::define_named(env, object, name, value) != raw::OK {
    raw::clear_exception(env);
  }
}

/// `object[name] = value` (an assignment: the error's own `stack` keeps the attributes V8
/// gave it, not enumerable), ignoring failure as [`set`] does.
fn assign(env: &Env, object: Value, name: &std::ffi::CStr, value: Value) {
  if object.is_null() || value.is_null() {
    return;
  }
  if raw::set_named(env, object, name, value) != raw::OK {
    raw::clear_exception(env);
  }
}

/// Throws `error` and returns the pending-exception marker.
pub fn throw(env: &Env, error: Value) -> napi::Error {
  raw::throw(env, error);
  pending()
}

/// Throws a `TypeError`/`RangeError`/`Error` with a Node-style `code`.
pub fn throw_coded(env: &Env, class: Class, code: &str, message: &str) -> napi::Error {
  throw(env, create(env, class, code, message))
}

/// Throws an error for a failed system call, shaped like Node's `fs` errors:
/// `EACCES: permission denied, mmap 'path'` with `errno` (negative), `code`, `syscall`, `path`.
pub fn throw_system(env: &Env, err: &io::Error, syscall: &str, path: Option<&str>) -> napi::Error {
  throw(env, system(env, err, syscall, path))
}

/// Builds (without throwing) the error [`throw_system`] throws.
pub fn system(env: &Env, err: &io::Error, syscall: &str, path: Option<&str>) -> Value {
  let os_error = err.raw_os_error().unwrap_or(0);
  let (code, description) = errno_name(os_error);
  let code = code.map_or_else(|| format!("E{os_error}"), str::to_owned);
  let description = description.map_or_else(|| err.to_string().to_lowercase(), str::to_owned);
  let message = match path {
    Some(path) => format!("{code}: {description}, {syscall} '{path}'"),
    None => format!("{code}: {description}, {syscall}"),
  };
  let error = create(env, Class::Error, &code, &message);
  set(
    env,
    error,
    c"errno",
    raw::int32(env, crate::sys::node_errno(os_error)),
  );
  set(env, error, c"syscall", js_string(env, syscall));
  if let Some(path) = path {
    set(env, error, c"path", js_string(env, path));
  }
  error
}

/// Builds (without throwing) the JS error for a mapping's `failure` in `syscall`: the one place
/// a `core::mapping::Failure` becomes a JS error (thrown by [`throw_failure`], or rejecting a
/// Promise).
pub fn failure(env: &Env, failure: &Failure, syscall: &str) -> Value {
  match failure {
    Failure::Unmapped => unmapped_error(env),
    Failure::Os(err) => system(env, err, syscall, None),
    Failure::Access { write, name } => access_error(env, *write, name),
  }
}

/// `ERR_MMAP_ACCESS` for the argument `name`, memory that native code cannot read (or, with
/// `write`, write): mapped so, or `protect()`ed so.
pub fn access_error(env: &Env, write: bool, name: &str) -> Value {
  let what = if write {
    "written: it is mapped without PROT_WRITE"
  } else {
    "read: it is mapped without PROT_READ"
  };
  let message = format!("The \"{name}\" argument is memory that cannot be {what} (or protect()ed so)");
  create(env, Class::Error, "ERR_MMAP_ACCESS", &message)
}

/// Throws the error [`failure`] builds.
pub fn throw_failure(env: &Env, failure: Failure, syscall: &str) -> napi::Error {
  throw(env, self::failure(env, &failure, syscall))
}

/// `ERR_MMAP_UNMAPPED`: the operation needs memory that `unmap()` took away.
pub fn unmapped(env: &Env) -> napi::Error {
  throw(env, unmapped_error(env))
}

/// Builds (without throwing) the error [`unmapped`] throws.
pub fn unmapped_error(env: &Env) -> Value {
  create(env, Class::Error, "ERR_MMAP_UNMAPPED", "The mapping was unmapped")
}

/// The Promise a promise-returning function gives back: `result`'s, or, when `result` is an
/// error (a bad argument), a Promise rejected with it, as Node's promise APIs never throw.
pub fn promise<'env, T: napi::bindgen_prelude::ToNapiValue>(
  env: &'env Env,
  result: napi::Result<T>,
) -> napi::Result<napi::bindgen_prelude::Unknown<'env>> {
  let value = match result {
    // SAFETY: `env` is the current env on its own thread.
    Ok(value) => unsafe { T::to_napi_value(env.raw(), value) }?,
    Err(err) => {
      let error = if raw::is_exception_pending(env) {
        raw::take_exception(env)
      } else {
        create(env, Class::Error, err.status.as_ref(), &err.reason)
      };
      rejected(env, error)
    }
  };
  // SAFETY: `value` is a live value of this env.
  Ok(unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), value) })
}

/// A new Promise, rejected with `error` (null should the Promise not be made).
pub fn rejected(env: &Env, error: Value) -> Value {
  match raw::promise(env) {
    Ok((deferred, promise)) => {
      // SAFETY: `deferred` was just made and is settled once, here.
      unsafe { raw::reject(env, deferred, error) };
      promise
    }
    Err(_) => std::ptr::null_mut(),
  }
}

/// An `Err` that makes napi-rs reject a Promise with exactly `error` (an object built here).
pub fn reject_with(env: &Env, error: Value) -> napi::Error {
  // SAFETY: `error` is a live value of this env.
  napi::Error::from(unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), error) })
}

/// The symbolic name of an errno value and the short description Node prints for it.
pub fn errno_name(errno: i32) -> (Option<&'static str>, Option<&'static str>) {
  let entry = match errno {
    libc::EACCES => ("EACCES", "permission denied"),
    libc::EAGAIN => ("EAGAIN", "resource temporarily unavailable"),
    libc::EBADF => ("EBADF", "bad file descriptor"),
    libc::EBUSY => ("EBUSY", "resource busy or locked"),
    libc::EEXIST => ("EEXIST", "file already exists"),
    libc::EFAULT => ("EFAULT", "bad address in system call argument"),
    libc::EFBIG => ("EFBIG", "file too large"),
    libc::EINTR => ("EINTR", "interrupted system call"),
    libc::EINVAL => ("EINVAL", "invalid argument"),
    libc::EIO => ("EIO", "i/o error"),
    libc::EISDIR => ("EISDIR", "illegal operation on a directory"),
    libc::ELOOP => ("ELOOP", "too many symbolic links encountered"),
    libc::EMFILE => ("EMFILE", "too many open files"),
    libc::ENAMETOOLONG => ("ENAMETOOLONG", "name too long"),
    libc::ENFILE => ("ENFILE", "file table overflow"),
    libc::ENODEV => ("ENODEV", "no such device"),
    libc::ENOENT => ("ENOENT", "no such file or directory"),
    libc::ENOMEM => ("ENOMEM", "not enough memory"),
    libc::ENOSPC => ("ENOSPC", "no space left on device"),
    libc::ENOSYS => ("ENOSYS", "function not implemented"),
    libc::ENOTDIR => ("ENOTDIR", "not a directory"),
    libc::ENOTSUP => ("ENOTSUP", "operation not supported"),
    libc::ENXIO => ("ENXIO", "no such device or address"),
    libc::EOVERFLOW => ("EOVERFLOW", "value too large for defined data type"),
    libc::EPERM => ("EPERM", "operation not permitted"),
    libc::EROFS => ("EROFS", "read-only file system"),
    libc::ESPIPE => ("ESPIPE", "invalid seek"),
    libc::ETXTBSY => ("ETXTBSY", "text file is busy"),
    _ => return (None, None),
  };
  (Some(entry.0), Some(entry.1))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn errno_name_knows_the_mmap_errors() {
    for errno in [
      libc::EACCES,
      libc::EBADF,
      libc::EINVAL,
      libc::ENODEV,
      libc::ENOMEM,
      libc::EPERM,
      libc::EOVERFLOW,
    ] {
      let (code, text) = errno_name(errno);
      let code = code.unwrap();
      assert!(code.starts_with('E'), "{code}");
      assert!(!text.unwrap().is_empty());
    }
    assert_eq!(
      errno_name(libc::EACCES),
      (Some("EACCES"), Some("permission denied"))
    );
  }

  #[test]
  fn errno_name_unknown_is_none() {
    assert_eq!(errno_name(100_000), (None, None));
  }
}
