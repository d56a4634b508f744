//! Zero-copy Buffers over a [`Mapping`], made with the raw `napi_create_external_buffer`.
//!
//! napi-rs's high-level constructors copy the bytes when the runtime forbids external buffers
//! (Electron 21+, status `napi_no_external_buffers_allowed`); for a mapping that would silently
//! lose every write. Here that status becomes the error `ERR_MMAP_NO_EXTERNAL_BUFFERS` and
//! nothing is copied.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use napi::sys;
use napi::Env;

use crate::errors::{self, Class};
use crate::mapping::Mapping;

/// The environment variable that makes every Buffer creation act as if the runtime forbade
/// external buffers: the switch that tests the Electron 21+ path on plain Node.
pub const SIMULATE_NO_EXTERNAL_BUFFERS: &str = "NODE_MMAP_SIMULATE_NO_EXTERNAL_BUFFERS";

fn simulate_no_external_buffers() -> bool {
  static SIMULATE: OnceLock<bool> = OnceLock::new();
  *SIMULATE.get_or_init(|| std::env::var_os(SIMULATE_NO_EXTERNAL_BUFFERS).is_some_and(|v| v == "1"))
}

/// `napi_create_external_buffer`, or the status an Electron 21+ runtime returns when the
/// switch is on. Every Buffer this crate makes goes through here.
///
/// # Safety
/// Same contract as `napi_create_external_buffer`: `data..data + len` stays valid until
/// `finalize(env, data, hint)` is called.
unsafe fn create_external_buffer(
  env: &Env,
  data: *mut u8,
  len: usize,
  finalize: sys::napi_finalize,
  hint: *mut c_void,
  result: &mut sys::napi_value,
) -> sys::napi_status {
  if simulate_no_external_buffers() {
    return sys::Status::napi_no_external_buffers_allowed;
  }
  // SAFETY: forwarded from this function's contract.
  unsafe { sys::napi_create_external_buffer(env.raw(), len, data.cast(), finalize, hint, result) }
}

/// The finalizer attached to the ArrayBuffer object of every Buffer made by [`create`]: drops
/// that ArrayBuffer's strong reference to the mapping.
///
/// It is tied to the JS object, not to the memory: after `unmap()` detaches the ArrayBuffer,
/// V8 frees the backing store at once, but native code that still reads or writes the memory
/// (zlib, an `fs.write` in flight) keeps the JS object alive as Node's APIs do, so the object's
/// finalizer is the first moment at which nothing can touch the range any more.
unsafe extern "C" fn finalize_arraybuffer(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: `data` is the `Arc::into_raw` made for exactly this ArrayBuffer in `create`, and
  // Node calls an object's finalizer once.
  drop(unsafe { Arc::from_raw(data.cast_const().cast::<Mapping>()) }); // the last one unmaps
}

fn no_external_buffers(env: &Env) -> napi::Error {
  errors::throw_coded(
    env,
    Class::Error,
    "ERR_MMAP_NO_EXTERNAL_BUFFERS",
    "This runtime does not allow external buffers (Electron 21+ and other V8 memory-cage builds), \
     so a mapping cannot be shown as a zero-copy Buffer, and a copy would lose every write. \
     Use mmap.Mapping (Mapping.open(path) or new Mapping(...)), which reads \
     and writes the mapping by copying; mmap.externalBuffersAllowed() tells which to use.",
  )
}

/// A Buffer of `len` bytes at `offset` into `mapping`, sharing its memory.
pub fn create(env: &Env, mapping: &Arc<Mapping>, offset: usize, len: usize) -> napi::Result<sys::napi_value> {
  debug_assert!(offset <= mapping.len() && len <= mapping.len() - offset);
  let mut buffer = ptr::null_mut();
  // SAFETY: the range lies inside the mapping, which the finalizer added below keeps mapped
  // for as long as the Buffer's ArrayBuffer object lives; the memory needs no finalizer.
  let status = unsafe {
    create_external_buffer(
      env,
      mapping.addr().add(offset),
      len,
      None,
      ptr::null_mut(),
      &mut buffer,
    )
  };
  match status {
    sys::Status::napi_ok => EXTERNAL_ALLOWED.store(ALLOWED, Ordering::Relaxed),
    sys::Status::napi_no_external_buffers_allowed => {
      EXTERNAL_ALLOWED.store(FORBIDDEN, Ordering::Relaxed);
      return Err(no_external_buffers(env));
    }
    _ => return Err(napi_failure(env, "napi_create_external_buffer", status)),
  }
  let arraybuffer = crate::view::arraybuffer_of(env, buffer)
    .ok_or_else(|| napi_failure(env, "napi_get_typedarray_info", -1))?;
  let owner = Arc::into_raw(Arc::clone(mapping)).cast_mut().cast::<c_void>();
  // SAFETY: `arraybuffer` is a live object of this env; `owner` is released by the finalizer.
  let status = unsafe {
    sys::napi_add_finalizer(
      env.raw(),
      arraybuffer,
      owner,
      Some(finalize_arraybuffer),
      ptr::null_mut(),
      ptr::null_mut(),
    )
  };
  if status != sys::Status::napi_ok {
    // The Buffer shows the memory but nothing would ever release it: leaking `owner` (the
    // mapping stays mapped for the life of the process) is the only safe choice.
    return Err(napi_failure(env, "napi_add_finalizer", status));
  }
  Ok(buffer)
}

fn napi_failure(env: &Env, call: &str, status: sys::napi_status) -> napi::Error {
  errors::pending_or(env, call, status)
}

const UNKNOWN: u8 = 0;
const ALLOWED: u8 = 1;
const FORBIDDEN: u8 = 2;
static EXTERNAL_ALLOWED: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether this runtime lets a mapping be shown as a zero-copy Buffer. Learned from the first
/// Buffer made, or from a probe: an empty external Buffer over a static byte.
pub fn external_buffers_allowed(env: &Env) -> bool {
  match EXTERNAL_ALLOWED.load(Ordering::Relaxed) {
    ALLOWED => return true,
    FORBIDDEN => return false,
    _ => {}
  }
  static PROBE: u8 = 0;
  let mut result = ptr::null_mut();
  // SAFETY: a zero-length Buffer over a static that lives forever, with no finalizer.
  let status = unsafe {
    create_external_buffer(
      env,
      ptr::addr_of!(PROBE).cast_mut(),
      0,
      None,
      ptr::null_mut(),
      &mut result,
    )
  };
  let allowed = status == sys::Status::napi_ok;
  EXTERNAL_ALLOWED.store(if allowed { ALLOWED } else { FORBIDDEN }, Ordering::Relaxed);
  allowed
}
