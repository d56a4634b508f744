//! Every raw Node-API call of the crate (but `api::fast`'s entry points), each in a small
//! wrapper with its `SAFETY` line, so that the rest of `js/` and `api/` read as plain Rust.
//!
//! The contract these wrappers share, and every `SAFETY` line here leans on: an `env` is the
//! env of the callback (or finalizer) running now, on its own thread, and a [`Value`] passed in
//! is a handle of that env from the current handle scope (Node-API gave it to this callback, or
//! to a wrapper called in it). Node-API itself checks the type of each value and answers a
//! wrong one with a status, never a read; what a wrapper cannot check from its arguments alone
//! (a deferred settled once, a thread-safe function still alive, memory that outlives a
//! Buffer) makes it an `unsafe fn` with a `# Safety` section. Out-pointers are always locals.
//! A failure comes back as the `Status` (or as `None`, or a null [`Value`], where the callers
//! only need to know that it failed); nothing here throws.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use napi::sys;
use napi::Env;

/// A raw JS value handle.
pub type Value = sys::napi_value;

/// A raw Node-API status.
pub type Status = sys::napi_status;

/// `napi_ok`.
pub const OK: Status = sys::Status::napi_ok;

/// `Ok(value)` when `status` is `napi_ok`, else `Err(status)`.
fn ok<T>(status: Status, value: T) -> Result<T, Status> {
  if status == OK {
    Ok(value)
  } else {
    Err(status)
  }
}

// ---- exceptions ----

/// Whether a JS exception is pending.
pub fn is_exception_pending(env: &Env) -> bool {
  let mut pending = false;
  // SAFETY: `pending` is a valid out-pointer.
  unsafe { sys::napi_is_exception_pending(env.raw(), &mut pending) };
  pending
}

/// Takes the pending exception (to reject a Promise with it instead of throwing): with nothing
/// pending, `undefined` (or null, should even that fail).
pub fn take_exception(env: &Env) -> Value {
  let mut error = ptr::null_mut();
  // SAFETY: `error` is a valid out-pointer; with nothing pending it is set to undefined.
  unsafe { sys::napi_get_and_clear_last_exception(env.raw(), &mut error) };
  error
}

/// Clears any pending exception (one a getter threw while we were only describing a value).
pub fn clear_exception(env: &Env) {
  if is_exception_pending(env) {
    take_exception(env);
  }
}

/// Throws `error` (ignored when null).
pub fn throw(env: &Env, error: Value) {
  if !error.is_null() {
    // SAFETY: `error` is a live value of this env.
    unsafe { sys::napi_throw(env.raw(), error) };
  }
}

// ---- values ----

/// A JS string, or null when even that fails (the env is tearing down).
pub fn string(env: &Env, text: &str) -> Value {
  let mut value = ptr::null_mut();
  // SAFETY: `text` is valid UTF-8 of the given length and `value` is a valid out-pointer.
  let status = unsafe {
    sys::napi_create_string_utf8(
      env.raw(),
      text.as_ptr().cast::<c_char>(),
      text.len() as isize,
      &mut value,
    )
  };
  if status == OK {
    value
  } else {
    ptr::null_mut()
  }
}

/// `undefined` (null should the call fail).
pub fn undefined(env: &Env) -> Value {
  let mut value = ptr::null_mut();
  // SAFETY: `value` is a valid out-pointer.
  unsafe { sys::napi_get_undefined(env.raw(), &mut value) };
  value
}

/// The first `N` arguments of the running callback (missing ones are `undefined`, as Node-API
/// fills them) and how many the caller passed.
///
/// # Safety
/// `env` and `info` are the ones Node-API passed to the running callback.
pub unsafe fn callback_arguments<const N: usize>(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> Result<([Value; N], usize), Status> {
  let mut argc = N;
  let mut argv = [ptr::null_mut(); N];
  // SAFETY: forwarded from this function's contract; `argv` has room for `argc` values; `this`
  // and `data` are not asked for.
  let status = unsafe {
    sys::napi_get_cb_info(
      env,
      info,
      &mut argc,
      argv.as_mut_ptr(),
      ptr::null_mut(),
      ptr::null_mut(),
    )
  };
  ok(status, (argv, argc))
}

/// A JS boolean (null should the call fail, which Node-API reads as `undefined`).
pub fn boolean(env: &Env, value: bool) -> Value {
  let mut result = ptr::null_mut();
  // SAFETY: the out-pointer is valid.
  unsafe { sys::napi_get_boolean(env.raw(), value, &mut result) };
  result
}

/// A JS number from an `i32` (null should the call fail).
pub fn int32(env: &Env, value: i32) -> Value {
  let mut result = ptr::null_mut();
  // SAFETY: `result` is a valid out-pointer.
  unsafe { sys::napi_create_int32(env.raw(), value, &mut result) };
  result
}

/// A JS number from a `u32` (null should the call fail).
pub fn uint32(env: &Env, value: u32) -> Value {
  let mut result = ptr::null_mut();
  // SAFETY: `result` is a valid out-pointer.
  unsafe { sys::napi_create_uint32(env.raw(), value, &mut result) };
  result
}

/// A new empty object.
pub fn object(env: &Env) -> Result<Value, Status> {
  let mut object = ptr::null_mut();
  // SAFETY: `object` is a valid out-pointer.
  let status = unsafe { sys::napi_create_object(env.raw(), &mut object) };
  ok(status, object)
}

/// A JS function named `name` that runs `callback` (with no data).
pub fn function(env: &Env, name: &CStr, callback: sys::napi_callback) -> Result<Value, Status> {
  let mut function = ptr::null_mut();
  // SAFETY: `name` is valid for its length; the out-pointer is valid; `callback` takes no data.
  let status = unsafe {
    sys::napi_create_function(
      env.raw(),
      name.as_ptr(),
      name.to_bytes().len() as isize,
      callback,
      ptr::null_mut(),
      &mut function,
    )
  };
  ok(status, function)
}

/// Which JS class an error takes.
#[derive(Clone, Copy)]
pub enum Class {
  Error,
  TypeError,
  RangeError,
}

/// A new (not thrown) error of `class` with `code` and `message` (JS strings of this env, or
/// null, which Node-API rejects with a status instead of reading); null on failure.
pub fn error(env: &Env, class: Class, code: Value, message: Value) -> Value {
  let mut error = ptr::null_mut();
  let create = match class {
    Class::Error => sys::napi_create_error,
    Class::TypeError => sys::napi_create_type_error,
    Class::RangeError => sys::napi_create_range_error,
  };
  // SAFETY: `code` and `message` are JS strings of this env (or null, which Node-API rejects
  // with a status instead of reading), and `error` is a valid out-pointer.
  unsafe { create(env.raw(), code, message, &mut error) };
  error
}

// ---- reading values ----

/// The JS type of a value (`undefined` should the call fail).
pub fn type_of(env: &Env, value: Value) -> sys::napi_valuetype {
  let mut kind = sys::ValueType::napi_undefined;
  // SAFETY: `value` is a live value of this env and `kind` a valid out-pointer.
  unsafe { sys::napi_typeof(env.raw(), value, &mut kind) };
  kind
}

/// A JS number's value, or `None` when `value` is not a number (Node-API answers
/// `napi_number_expected`: one call instead of two).
pub fn number(env: &Env, value: Value) -> Option<f64> {
  let mut result = 0f64;
  // SAFETY: `value` is a live value of this env and `result` a valid out-pointer.
  let status = unsafe { sys::napi_get_value_double(env.raw(), value, &mut result) };
  (status == OK).then_some(result)
}

/// A JS boolean's value (`false` when `value` is no boolean).
pub fn bool_value(env: &Env, value: Value) -> bool {
  let mut result = false;
  // SAFETY: `value` is a live value of this env and `result` a valid out-pointer.
  unsafe { sys::napi_get_value_bool(env.raw(), value, &mut result) };
  result
}

/// The length in bytes of a JS string's UTF-8, without copying it; `None` for any other value.
pub fn string_utf8_len(env: &Env, value: Value) -> Option<usize> {
  let mut len = 0usize;
  // SAFETY: a null buffer asks only for the length; a non-string gives a status, not a read.
  let status = unsafe { sys::napi_get_value_string_utf8(env.raw(), value, ptr::null_mut(), 0, &mut len) };
  (status == OK).then_some(len)
}

/// Copies a JS string's UTF-8 into `buffer` (whole characters only, then a NUL, as room allows)
/// and returns how many bytes of text it wrote.
pub fn string_utf8_into(env: &Env, value: Value, buffer: &mut [u8]) -> usize {
  let mut len = 0usize;
  // SAFETY: `buffer` has room for `buffer.len()` bytes, the NUL Node-API writes included.
  unsafe {
    sys::napi_get_value_string_utf8(
      env.raw(),
      value,
      buffer.as_mut_ptr().cast(),
      buffer.len(),
      &mut len,
    )
  };
  len
}

/// `Object(value)` (may run user code: a failure leaves its exception pending).
pub fn coerce_to_object(env: &Env, value: Value) -> Result<Value, Status> {
  let mut object = ptr::null_mut();
  // SAFETY: `value` is a live value of this env; `object` is a valid out-pointer.
  let status = unsafe { sys::napi_coerce_to_object(env.raw(), value, &mut object) };
  ok(status, object)
}

/// `String(value)` (may run user code: a failure leaves its exception pending).
pub fn coerce_to_string(env: &Env, value: Value) -> Result<Value, Status> {
  let mut string = ptr::null_mut();
  // SAFETY: `value` is a live value of this env; `string` a valid out-pointer.
  let status = unsafe { sys::napi_coerce_to_string(env.raw(), value, &mut string) };
  ok(status, string)
}

/// Whether `env` is being torn down, asked on its own thread: coercing `undefined` to a
/// boolean, which runs no JavaScript and changes nothing, is refused from then on.
///
/// # Safety
/// `env` is alive: the caller is on its own thread (its finalizers and calls run there).
pub unsafe fn env_refuses_js(env: sys::napi_env) -> bool {
  let (mut undefined, mut result) = (ptr::null_mut(), ptr::null_mut());
  // SAFETY: `env` is alive (this function's contract); both out-pointers are valid. Coercing
  // `undefined` to a boolean runs no JavaScript and changes nothing.
  unsafe {
    sys::napi_get_undefined(env, &mut undefined);
    sys::napi_coerce_to_bool(env, undefined, &mut result) != OK
  }
}

// ---- references and calls ----

/// A reference that keeps `value` alive (count 1) until the env ends; `None` on failure.
pub fn reference(env: &Env, value: Value) -> Option<sys::napi_ref> {
  let mut reference = ptr::null_mut();
  // SAFETY: `value` is a live value of this env; `reference` is a valid out-pointer.
  let status = unsafe { sys::napi_create_reference(env.raw(), value, 1, &mut reference) };
  ok(status, reference).ok()
}

/// The value `reference` holds (null when it holds none).
///
/// # Safety
/// `reference` was made by [`reference`] in this env, which is still alive.
pub unsafe fn reference_value(env: &Env, reference: sys::napi_ref) -> Value {
  let mut value = ptr::null_mut();
  // SAFETY: the caller guarantees `reference` belongs to this live env; `value` is valid.
  let status = unsafe { sys::napi_get_reference_value(env.raw(), reference, &mut value) };
  ok(status, value).unwrap_or(ptr::null_mut())
}

/// `function(argument)` with `this` undefined: its result, or the status (a throw leaves its
/// exception pending).
pub fn call(env: &Env, function: Value, argument: Value) -> Result<Value, Status> {
  call_on(env, function, undefined(env), &[argument])
}

/// `function.call(this, ...arguments)`: its result, or the status (a throw leaves its exception
/// pending).
pub fn call_on(env: &Env, function: Value, this: Value, arguments: &[Value]) -> Result<Value, Status> {
  let mut result = ptr::null_mut();
  // SAFETY: `function`, `this` and every argument are live values of this env (Node-API checks
  // that `function` is one); `arguments` is a valid slice of `arguments.len()` values; `result`
  // is a valid out-pointer.
  let status = unsafe {
    sys::napi_call_function(
      env.raw(),
      this,
      function,
      arguments.len(),
      arguments.as_ptr(),
      &mut result,
    )
  };
  ok(status, result)
}

// ---- objects ----

/// The prototype of `object`, as V8's `Object::GetPrototype` gives it (of a Proxy, not
/// necessarily what its trap would say); a failure leaves its exception pending.
pub fn prototype_of(env: &Env, object: Value) -> Result<Value, Status> {
  let mut result = ptr::null_mut();
  // SAFETY: `object` is a live value of this env; `result` is a valid out-pointer.
  let status = unsafe { sys::napi_get_prototype(env.raw(), object, &mut result) };
  ok(status, result)
}

/// `object[name]` (may run a getter: a failure leaves its exception pending).
pub fn get_named(env: &Env, object: Value, name: &CStr) -> Result<Value, Status> {
  let mut result = ptr::null_mut();
  // SAFETY: `object` is a live value of this env, `name` is NUL-terminated, `result` valid.
  let status = unsafe { sys::napi_get_named_property(env.raw(), object, name.as_ptr(), &mut result) };
  ok(status, result)
}

/// `object[name] = value`.
pub fn set_named(env: &Env, object: Value, name: &CStr, value: Value) -> Status {
  // SAFETY: `object` and `value` are live values of this env, `name` is NUL-terminated.
  unsafe { sys::napi_set_named_property(env.raw(), object, name.as_ptr(), value) }
}

/// Defines `object[name]` as an own data property, writable, enumerable and configurable: the
/// shape an assignment gives a new property, but with no setter of the prototype chain run
/// (`Object.defineProperty`, not `[[Set]]`).
pub fn define_named(env: &Env, object: Value, name: &CStr, value: Value) -> Status {
  let property = sys::napi_property_descriptor {
    utf8name: name.as_ptr(),
    name: ptr::null_mut(),
    method: None,
    getter: None,
    setter: None,
    value,
    attributes: sys::PropertyAttributes::writable
      | sys::PropertyAttributes::enumerable
      | sys::PropertyAttributes::configurable,
    data: ptr::null_mut(),
  };
  // SAFETY: `object` and `value` are live values of this env; `property` lives for the call and
  // names a NUL-terminated `name` with no callbacks.
  unsafe { sys::napi_define_properties(env.raw(), object, 1, &property) }
}

/// `object[key]` (may run a getter: a failure leaves its exception pending).
pub fn get_property(env: &Env, object: Value, key: Value) -> Result<Value, Status> {
  let mut value = ptr::null_mut();
  // SAFETY: `object` is a live object of this env, `key` a value of it, `value` valid.
  let status = unsafe { sys::napi_get_property(env.raw(), object, key, &mut value) };
  ok(status, value)
}

/// The global object.
pub fn global(env: &Env) -> Result<Value, Status> {
  let mut global = ptr::null_mut();
  // SAFETY: `global` is a valid out-pointer.
  let status = unsafe { sys::napi_get_global(env.raw(), &mut global) };
  ok(status, global)
}

/// `object instanceof constructor` (may run user code: `Symbol.hasInstance`).
pub fn instance_of(env: &Env, object: Value, constructor: Value) -> Result<bool, Status> {
  let mut instance = false;
  // SAFETY: `constructor` and `object` are live values of this env; `instance` is valid.
  let status = unsafe { sys::napi_instanceof(env.raw(), object, constructor, &mut instance) };
  ok(status, instance)
}

/// The object's own enumerable string keys, as an array.
pub fn property_names(env: &Env, object: Value) -> Result<Value, Status> {
  let mut names = ptr::null_mut();
  // SAFETY: `object` is a live object of this env; `names` a valid out-pointer.
  let status = unsafe { sys::napi_get_property_names(env.raw(), object, &mut names) };
  ok(status, names)
}

/// An array's length (0 should the call fail).
pub fn array_length(env: &Env, array: Value) -> u32 {
  let mut count = 0u32;
  // SAFETY: `array` is a live value of this env; `count` a valid out-pointer.
  unsafe { sys::napi_get_array_length(env.raw(), array, &mut count) };
  count
}

/// `array[index]`.
pub fn element(env: &Env, array: Value, index: u32) -> Result<Value, Status> {
  let mut value = ptr::null_mut();
  // SAFETY: `array` is a live value of this env; `value` a valid out-pointer.
  let status = unsafe { sys::napi_get_element(env.raw(), array, index, &mut value) };
  ok(status, value)
}

// ---- views and buffers ----

/// A kind of value Node-API can tell (`napi_is_array`, `napi_is_typedarray`, ...).
#[derive(Clone, Copy)]
pub enum Kind {
  Array,
  TypedArray,
  DataView,
  ArrayBuffer,
}

/// Whether `value` is of `kind` (`false` should the call fail).
pub fn is(env: &Env, value: Value, kind: Kind) -> bool {
  let check = match kind {
    Kind::Array => sys::napi_is_array,
    Kind::TypedArray => sys::napi_is_typedarray,
    Kind::DataView => sys::napi_is_dataview,
    Kind::ArrayBuffer => sys::napi_is_arraybuffer,
  };
  let mut result = false;
  // SAFETY: `value` is a live value of this env and `result` a valid out-pointer.
  unsafe { check(env.raw(), value, &mut result) };
  result
}

/// What `napi_get_typedarray_info` tells of a TypedArray: its kind, its length in elements, its
/// first byte (null once detached), its ArrayBuffer and where it starts in it.
pub fn typedarray_info(
  env: &Env,
  value: Value,
) -> Result<(sys::napi_typedarray_type, usize, *mut c_void, Value, usize), Status> {
  let (mut kind, mut elements, mut data) = (0, 0usize, ptr::null_mut());
  let (mut arraybuffer, mut byte_offset) = (ptr::null_mut(), 0usize);
  // SAFETY: `value` is a live value of this env (Node-API checks it is a typed array, with a
  // status); every out-pointer is valid.
  let status = unsafe {
    sys::napi_get_typedarray_info(
      env.raw(),
      value,
      &mut kind,
      &mut elements,
      &mut data,
      &mut arraybuffer,
      &mut byte_offset,
    )
  };
  ok(status, (kind, elements, data, arraybuffer, byte_offset))
}

/// What `napi_get_dataview_info` tells of a DataView: its length, its first byte (null once
/// detached), its ArrayBuffer and where it starts in it.
pub fn dataview_info(env: &Env, value: Value) -> Result<(usize, *mut c_void, Value, usize), Status> {
  let (mut len, mut data, mut arraybuffer, mut byte_offset) =
    (0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
  // SAFETY: `value` is a live value of this env (Node-API checks it is a DataView, with a
  // status); every out-pointer is valid.
  let status = unsafe {
    sys::napi_get_dataview_info(
      env.raw(),
      value,
      &mut len,
      &mut data,
      &mut arraybuffer,
      &mut byte_offset,
    )
  };
  ok(status, (len, data, arraybuffer, byte_offset))
}

/// `(data, byte length)` of an ArrayBuffer; `(null, 0)` once detached.
pub fn arraybuffer_info(env: &Env, arraybuffer: Value) -> Result<(*mut c_void, usize), Status> {
  let mut data = ptr::null_mut();
  let mut len = 0usize;
  // SAFETY: `arraybuffer` is a live value of this env (Node-API checks that it is an
  // ArrayBuffer, with a status); both out-pointers are valid.
  let status = unsafe { sys::napi_get_arraybuffer_info(env.raw(), arraybuffer, &mut data, &mut len) };
  ok(status, (data, len))
}

/// A new Buffer of zero bytes.
pub fn empty_buffer(env: &Env) -> Result<Value, Status> {
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  // SAFETY: both out-pointers are valid; a zero-length Buffer owns no memory we touch.
  let status = unsafe { sys::napi_create_buffer(env.raw(), 0, &mut data, &mut buffer) };
  ok(status, buffer)
}

/// A new Buffer of `len` bytes (not zeroed: the caller fills it before JavaScript sees it), and
/// its first byte.
pub fn new_buffer(env: &Env, len: usize) -> Result<(Value, *mut u8), Status> {
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  // SAFETY: both out-pointers are valid.
  let status = unsafe { sys::napi_create_buffer(env.raw(), len, &mut data, &mut buffer) };
  ok(status, (buffer, data.cast()))
}

/// `napi_create_external_buffer`: a Buffer over `data..data + len`, and the status.
///
/// # Safety
/// Same contract as `napi_create_external_buffer`: `data..data + len` stays valid until
/// `finalize(env, data, hint)` is called.
pub unsafe fn external_buffer(
  env: &Env,
  data: *mut u8,
  len: usize,
  finalize: sys::napi_finalize,
  hint: *mut c_void,
) -> (Status, Value) {
  let mut buffer = ptr::null_mut();
  // SAFETY: forwarded from this function's contract; `buffer` is a valid out-pointer.
  let status =
    unsafe { sys::napi_create_external_buffer(env.raw(), len, data.cast(), finalize, hint, &mut buffer) };
  (status, buffer)
}

// ---- Promises ----

/// A new Promise and its deferred (to be settled once: [`resolve`], [`reject`]).
pub fn promise(env: &Env) -> Result<(sys::napi_deferred, Value), Status> {
  let (mut deferred, mut promise) = (ptr::null_mut(), ptr::null_mut());
  // SAFETY: both out-pointers are valid.
  let status = unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
  ok(status, (deferred, promise))
}

/// Resolves the Promise of `deferred` with `value`.
///
/// # Safety
/// `deferred` was made in `env` by [`promise`] and is settled once, here (Node frees it).
pub unsafe fn resolve(env: &Env, deferred: sys::napi_deferred, value: Value) {
  // SAFETY: forwarded from this function's contract; `value` is a live value of this env.
  unsafe { sys::napi_resolve_deferred(env.raw(), deferred, value) };
}

/// Rejects the Promise of `deferred` with `error`.
///
/// # Safety
/// As [`resolve`].
pub unsafe fn reject(env: &Env, deferred: sys::napi_deferred, error: Value) {
  // SAFETY: forwarded from this function's contract; `error` is a live value of this env.
  unsafe { sys::napi_reject_deferred(env.raw(), deferred, error) };
}

// ---- thread-safe functions and cleanup hooks ----

/// A new thread-safe function with no JS function (Node-API 5: `call_js` instead), no context,
/// an unlimited queue and one hold (the caller's); `finalize` gets `finalize_data`.
///
/// # Safety
/// `resource` is an object of `env` or null, `name` a JS string of it; `finalize` takes
/// `finalize_data`, and `call_js` the `data` of each call, as they are.
pub unsafe fn threadsafe_function(
  env: &Env,
  resource: Value,
  name: Value,
  finalize_data: *mut c_void,
  finalize: sys::napi_finalize,
  call_js: sys::napi_threadsafe_function_call_js,
) -> Result<sys::napi_threadsafe_function, Status> {
  let mut function = ptr::null_mut();
  // SAFETY: forwarded from this function's contract; the out-pointer is valid.
  let status = unsafe {
    sys::napi_create_threadsafe_function(
      env.raw(),
      ptr::null_mut(),
      resource,
      name,
      0,
      1,
      finalize_data,
      finalize,
      ptr::null_mut(),
      call_js,
      &mut function,
    )
  };
  ok(status, function)
}

/// Makes `function` not keep the event loop alive.
///
/// # Safety
/// `function` is a live thread-safe function of `env`, and this is `env`'s thread.
pub unsafe fn unref_threadsafe_function(env: &Env, function: sys::napi_threadsafe_function) -> Status {
  // SAFETY: forwarded from this function's contract.
  unsafe { sys::napi_unref_threadsafe_function(env.raw(), function) }
}

/// Queues a call of `function` with `data`, without blocking; allowed from any thread.
///
/// # Safety
/// `function` is live (a hold on it is held, or its finalizer has not run), and its `call_js`
/// takes `data` as it is.
pub unsafe fn call_threadsafe_function(function: sys::napi_threadsafe_function, data: *mut c_void) -> Status {
  // SAFETY: forwarded from this function's contract.
  unsafe { sys::napi_call_threadsafe_function(function, data, sys::ThreadsafeFunctionCallMode::nonblocking) }
}

/// Gives up one hold on `function`.
///
/// # Safety
/// The caller holds that hold (and uses `function` no more through it).
pub unsafe fn release_threadsafe_function(function: sys::napi_threadsafe_function) {
  // SAFETY: forwarded from this function's contract.
  unsafe { sys::napi_release_threadsafe_function(function, sys::ThreadsafeFunctionReleaseMode::release) };
}

/// The hook of an env's cleanup.
pub type CleanupHook = unsafe extern "C" fn(arg: *mut c_void);

/// Has Node call `hook(arg)` when `env` is torn down (unless removed first).
///
/// # Safety
/// `hook` takes `arg` as it is, whenever Node calls it.
pub unsafe fn add_cleanup_hook(env: &Env, hook: CleanupHook, arg: *mut c_void) -> Status {
  // SAFETY: forwarded from this function's contract.
  unsafe { sys::napi_add_env_cleanup_hook(env.raw(), Some(hook), arg) }
}

/// Removes a cleanup hook.
///
/// # Safety
/// `hook` and `arg` were registered with [`add_cleanup_hook`] in `env`, and the hook has not run.
pub unsafe fn remove_cleanup_hook(env: &Env, hook: CleanupHook, arg: *mut c_void) {
  // SAFETY: forwarded from this function's contract.
  unsafe { sys::napi_remove_env_cleanup_hook(env.raw(), Some(hook), arg) };
}
