//! Zero-copy Buffers over a [`Mapping`], made with the raw `napi_create_external_buffer`.
//!
//! napi-rs's high-level constructors copy the bytes when the runtime forbids external buffers
//! (Electron 21+, status `napi_no_external_buffers_allowed`); for a mapping that would silently
//! lose every write. Here that status becomes the error `ERR_MMAP_NO_EXTERNAL_BUFFERS` and
//! nothing is copied.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use napi::sys;
use napi::Env;

use crate::core::mapping::Mapping;
use crate::core::mapping::Shared;
use crate::core::registry;
use crate::js::errors::{self, Class};
use crate::js::flusher;
use crate::js::raw;

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
) -> (sys::napi_status, sys::napi_value) {
  if simulate_no_external_buffers() {
    return (sys::Status::napi_no_external_buffers_allowed, ptr::null_mut());
  }
  // SAFETY: forwarded from this function's contract.
  unsafe { raw::external_buffer(env, data, len, finalize, hint) }
}

/// The finalizer of the memory of every Buffer made by [`create`]: Node calls it (from an
/// immediate) once V8 has freed the Buffer's memory, when its ArrayBuffer is garbage-collected.
/// Nothing detaches these ArrayBuffers (`unmap()` swaps the memory for zeros instead), so this is
/// the first moment at which no JavaScript and no native work can reach the range any more.
///
/// Except at the end of a worker thread. A Buffer's memory can move to another ArrayBuffer
/// without a copy (`ArrayBuffer.prototype.transfer()`, a byte stream's `enqueue()` or BYOB
/// `read()`), which `postMessage` can hand to another thread. When the worker that made the
/// Buffer ends, Node calls this finalizer from its env cleanup (node_buffer.cc,
/// `CallbackInfo::CleanupHook`) whether or not the memory lives on elsewhere, and tells nobody
/// when the last holder lets go; by then it has detached the worker's own ArrayBuffer, so whether
/// the memory had moved before can no longer be told. Unmapping would leave the other thread a
/// pointer into unmapped memory (SIGSEGV), or into whatever the kernel maps there next (silent
/// corruption). So a finalizer that runs while a worker's env is being torn down takes the
/// user's memory away (the zero-filled placeholder of `unmap()`: the file is no longer mapped)
/// and keeps the range, with its registry record, for the life of the process. That costs
/// address space, not memory (the placeholder's pages are never touched unless written), and
/// only for Buffers a worker still held when it ended: `unmap()` them, or let them be collected,
/// to give the range back. The main thread needs none of this: Node stops every worker before
/// it tears down the main thread's env.
unsafe extern "C" fn finalize_memory(env: sys::napi_env, data: *mut c_void, hint: *mut c_void) {
  if worker_env_ending(env) {
    // SAFETY: `hint` is the registry's reference for this Buffer (`create`); it stays alive,
    // with its record, since the record is never forgotten from here on.
    let mapping = unsafe { &*hint.cast_const().cast::<Mapping>() };
    mapping.unmap_at_env_end();
    return;
  }
  // The mappings it drops may wait to be unmapped with their neighbours (src/core/reclaim.rs).
  flusher::finalizing(env, || {
    // SAFETY: `data` is the Buffer's first byte and `hint` the reference `create` recorded for
    // it (`registry::record_buffer`); Node calls a Buffer's finalizer once. The last one unmaps.
    unsafe { registry::forget_buffer(data as usize, hint.cast_const().cast::<Mapping>()) }
  });
}

/// Has `env`'s end (a worker's: nothing on the main thread, whose end is the process's) take
/// the user's memory out of every mapping made for it that is still alive
/// ([`crate::core::mapping::MadeFor`]). Once per thread: Node refuses the same cleanup hook
/// twice (it aborts), and the addon may load again in the same env.
pub fn release_at_env_end(env: &Env) {
  if crate::sys::is_main_thread() || crate::core::mapping::made_here().is_some() {
    return;
  }
  let Some(made) = crate::core::mapping::watch_made_here() else {
    return;
  };
  let arg = made.into_raw().cast_mut().cast::<c_void>();
  // SAFETY: the hook takes back the list `arg` points to, once, when it is called.
  let status = unsafe { raw::add_cleanup_hook(env, release_made, arg) };
  if status != sys::Status::napi_ok {
    // SAFETY: `arg` came from `into_raw` above and the hook will not run.
    drop(unsafe { crate::core::mapping::MadeFor::from_raw(arg.cast_const().cast()) });
  }
}

/// The cleanup hook of [`release_at_env_end`].
unsafe extern "C" fn release_made(arg: *mut c_void) {
  // SAFETY: `arg` came from `MadeFor::into_raw` in `release_at_env_end`; Node calls the hook once.
  let made = unsafe { crate::core::mapping::MadeFor::from_raw(arg.cast_const().cast()) };
  made.release();
}

/// Whether `env` is a worker's env being torn down, asked on its own thread (see
/// [`finalize_memory`]).
fn worker_env_ending(env: sys::napi_env) -> bool {
  !crate::sys::is_main_thread() && flusher::is_home(env) && env_stopping(env)
}

/// Whether `env` is being torn down (`worker.terminate()`, `process.exit()`, the end of a
/// worker): Node-API calls that may run JavaScript are refused from then on (Node returns
/// `napi_pending_exception`, Bun too). Neither V8's termination nor Node's stop reaches native
/// code asleep in the kernel, as they reach `Atomics.wait`: `wait` asks between slices. Only on
/// `env`'s own thread.
pub fn env_stopping(env: sys::napi_env) -> bool {
  // SAFETY: the caller is on `env`'s own thread, where the env is alive (its finalizers and
  // calls run there).
  unsafe { raw::env_refuses_js(env) }
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

/// `ERR_MMAP_NO_EXTERNAL_BUFFERS` now, where the runtime forbids external buffers: what
/// `map()`, `openSync()` and `open()` call once their arguments are checked and before any
/// system call, so that a call refused for this reason has opened, created, resized, punched or
/// mapped nothing.
pub fn refuse_without_external_buffers(env: &Env) -> napi::Result<()> {
  if external_buffers_allowed(env) {
    Ok(())
  } else {
    Err(no_external_buffers(env))
  }
}

/// A Buffer of `len` bytes at `offset` into `mapping`, sharing its memory; the Buffer's finalizer
/// owns `mapping` (pass a clone to keep one).
///
/// V8 counts an external Buffer's length as external memory, and once that passes half its
/// old-space limit it runs a full garbage collection for every new one: on Node 20 (V8 11.3)
/// with the default limit here, every Buffer of more than 2 GiB (measured: none up to 2047 MiB,
/// one per Buffer from 2049 MiB; about 3 ms on a small heap; none with
/// `--max-old-space-size=12288`). Lowering the count with `napi_adjust_external_memory` first
/// does not help: it also lowers the limit V8 checks. A `Mapping` handle, with `read`/`view`
/// windows, avoids it.
pub fn create(env: &Env, mapping: Shared, offset: usize, len: usize) -> napi::Result<sys::napi_value> {
  assert!(
    offset <= mapping.len() && len <= mapping.len() - offset,
    "a Buffer past its mapping"
  );
  // SAFETY: `offset <= mapping.len()`, so the pointer stays inside the mapping.
  let data = unsafe { mapping.addr().add(offset) };
  // Refused here, `mapping` is dropped (unmapped) with nothing else to undo.
  accepts_length(env, data, len)?;
  let hold = registry::record_buffer(mapping, data as usize).cast_mut();
  // SAFETY: the range lies inside the mapping, which `hold` keeps mapped until the finalizer
  // releases it.
  let (status, buffer) =
    unsafe { create_external_buffer(env, data, len, Some(finalize_memory), hold.cast()) };
  match status {
    sys::Status::napi_ok => {
      EXTERNAL_ALLOWED.store(ALLOWED, Ordering::Relaxed);
      Ok(buffer)
    }
    sys::Status::napi_no_external_buffers_allowed => {
      EXTERNAL_ALLOWED.store(FORBIDDEN, Ordering::Relaxed);
      // SAFETY: this status comes back before Node takes the finalizer: `hold` is still ours,
      // and recorded for `data` by `record_buffer` above.
      unsafe { registry::forget_buffer(data as usize, hold.cast_const()) };
      Err(no_external_buffers(env))
    }
    // The env refuses to run JavaScript (a worker being terminated, `process.exit()`: Node
    // returns napi_pending_exception, or napi_cannot_run_js to addons built for a newer
    // Node-API), or an exception is pending, or an argument is null: Node returns these from
    // its first checks, before it takes the finalizer (node_api.cc: NAPI_PREAMBLE and
    // CHECK_ARG come before `BufferFinalizer::New`), and Bun returns them, and any failure,
    // without calling it. `hold` is still ours: releasing it unmaps the mapping, which
    // nothing else refers to, so a worker terminated in the middle of `map()` leaks nothing.
    sys::Status::napi_pending_exception | sys::Status::napi_cannot_run_js | sys::Status::napi_invalid_arg => {
      // SAFETY: as for napi_no_external_buffers_allowed above: Node did not take the
      // finalizer, so `hold` is still ours, recorded for `data`.
      unsafe { registry::forget_buffer(data as usize, hold.cast_const()) };
      Err(errors::pending_or(env, "napi_create_external_buffer", status))
    }
    // Past those checks Node owns the finalizer: on napi_generic_failure (the Buffer could not
    // be made, e.g. above buffer.constants.MAX_LENGTH, which is checked before) it has called
    // it already or will when the ArrayBuffer it made goes; releasing `hold` here too would
    // free it twice.
    _ => Err(errors::pending_or(env, "napi_create_external_buffer", status)),
  }
}

/// Every runtime makes Buffers of 4 GiB (Node 18 and 20, Bun: their largest; Node 22+ and Deno:
/// 2^53 - 1).
const ALWAYS_ACCEPTED: usize = 1 << 32;

/// Makes sure the runtime will make a Buffer of `len` bytes, before anything is done that a
/// refusal would leave half done: past [`ALWAYS_ACCEPTED`] it is asked, with a Buffer of that
/// length over `data` (the mapping's first byte: an address it never reads) that has no
/// finalizer and is garbage at once. `buffer.constants.MAX_LENGTH`, which the checks before
/// use, can be changed by the program on Bun and Deno: raised past what Bun makes, a `map()`
/// kept its mapping when Bun then refused the Buffer, and `remap()` lost the moved bytes (attack
/// pass 14). The runtime's own error when it refuses.
pub fn accepts_length(env: &Env, data: *mut u8, len: usize) -> napi::Result<()> {
  if len <= ALWAYS_ACCEPTED {
    return Ok(());
  }
  // SAFETY: no finalizer and no hint: the runtime keeps nothing of ours; the Buffer is never
  // read, and unreachable once this call returns.
  let (status, _) = unsafe { create_external_buffer(env, data, len, None, ptr::null_mut()) };
  match status {
    sys::Status::napi_ok => Ok(()),
    sys::Status::napi_no_external_buffers_allowed => Err(no_external_buffers(env)),
    status => Err(errors::pending_or(env, "napi_create_external_buffer", status)),
  }
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
  // SAFETY: a zero-length Buffer over a static that lives forever, with no finalizer.
  let (status, _) =
    unsafe { create_external_buffer(env, ptr::addr_of!(PROBE).cast_mut(), 0, None, ptr::null_mut()) };
  let allowed = status == sys::Status::napi_ok;
  EXTERNAL_ALLOWED.store(if allowed { ALLOWED } else { FORBIDDEN }, Ordering::Relaxed);
  allowed
}
