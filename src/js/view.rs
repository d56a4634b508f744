//! Finds the mapping behind whatever view a user passes: a Buffer, any TypedArray, a DataView
//! or an ArrayBuffer, at any offset into the mapping. Ranges are relative to that view.

use std::ffi::c_void;

use napi::bindgen_prelude::{Unknown, ValueType};
use napi::sys;
use napi::Env;

use crate::core::mapping::Mapping;
use crate::core::mapping::Shared;
use crate::core::registry;
use crate::js::args;
use crate::js::errors::{self, Class};
use crate::js::raw::{self, Kind, Value};

/// A view over part of a mapping.
pub struct View {
  pub mapping: Shared,
  /// Where the view starts, in bytes from the start of the mapping.
  pub offset: usize,
  /// The view's length in bytes.
  pub len: usize,
}

/// What a ranged operation works on, whichever way it was named: a view (the module's
/// functions, through [`resolve`]) or a `Mapping` handle. The mapping (`None` for an empty
/// `Mapping`, which has none), where the named bytes start in it, and how many there are: what
/// an operation's `offset` and `length` are checked against ([`Target::range`], the one bounds
/// check). Each operation is written once, over a `Target`.
pub struct Target {
  pub mapping: Option<Shared>,
  pub offset: usize,
  pub len: usize,
}

impl Target {
  /// `offset` and `length` (default: to the end) checked against the target's length, and the
  /// range they name as bytes from the start of the mapping.
  pub fn range(
    &self,
    env: &Env,
    offset: Option<&Unknown>,
    length: Option<&Unknown>,
  ) -> napi::Result<(usize, usize)> {
    self.range_named(env, (offset, "offset"), (length, "length"))
  }

  /// [`Target::range`] for arguments with other names (`options.offset`, ...).
  pub fn range_named(
    &self,
    env: &Env,
    offset: (Option<&Unknown>, &str),
    length: (Option<&Unknown>, &str),
  ) -> napi::Result<(usize, usize)> {
    let (offset, length) = bounds_named(env, self.len, offset, length)?;
    Ok((self.offset + offset, length))
  }
}

impl Target {
  /// A target with no mapping behind it (an empty or unmapped view, `Resolved::Empty`), with
  /// the user's value's length: operations on it check their arguments as on a live view, then
  /// do nothing (attack pass 16: a bad offset or length passed silently on an unmapped view).
  pub fn of_empty(env: &Env, value: &Unknown) -> Target {
    Target {
      mapping: None,
      offset: 0,
      len: raw_view(env, crate::js::args::raw(value)).map_or(0, |view| view.len),
    }
  }
}

impl From<View> for Target {
  fn from(view: View) -> Target {
    Target {
      mapping: Some(view.mapping),
      offset: view.offset,
      len: view.len,
    }
  }
}

/// What a user's value turned out to be.
pub enum Resolved {
  /// A view of a live mapping.
  View(View),
  /// A view with no bytes (empty, or detached by the user), or a view of a mapping that
  /// `unmap()` took away. Every operation on it is a no-op.
  Empty,
}

/// What Node-API tells about a TypedArray, DataView or ArrayBuffer.
pub struct RawView {
  pub arraybuffer: Value,
  /// Where the view starts in its ArrayBuffer.
  pub byte_offset: usize,
  /// The view's length in bytes.
  pub len: usize,
  /// The view's first byte (null once detached).
  pub data: *mut u8,
}

/// The one place that reads a view: `None` if `value` is no TypedArray, DataView or
/// ArrayBuffer, or is a TypedArray of a kind whose element size is unknown here.
pub fn raw_view(env: &Env, value: Value) -> Option<RawView> {
  let (arraybuffer, byte_offset, len, data);
  if raw::is(env, value, Kind::TypedArray) {
    let elements;
    let kind;
    (kind, elements, data, arraybuffer, byte_offset) = raw::typedarray_info(env, value).ok()?;
    len = elements.checked_mul(element_size(kind)?)?;
  } else if raw::is(env, value, Kind::DataView) {
    (len, data, arraybuffer, byte_offset) = raw::dataview_info(env, value).ok()?;
  } else if raw::is(env, value, Kind::ArrayBuffer) {
    (arraybuffer, byte_offset) = (value, 0);
    (data, len) = arraybuffer_len(env, value)?;
  } else {
    return None;
  }
  Some(RawView {
    arraybuffer,
    byte_offset,
    len,
    data: data.cast(),
  })
}

/// Bytes per element of a TypedArray kind; `None` for a kind this build does not know.
fn element_size(kind: sys::napi_typedarray_type) -> Option<usize> {
  use sys::TypedarrayType as T;
  /// `Float16Array` (Node 24+); not in napi-sys's list yet.
  const FLOAT16_ARRAY: sys::napi_typedarray_type = 11;
  Some(match kind {
    T::int8_array | T::uint8_array | T::uint8_clamped_array => 1,
    T::int16_array | T::uint16_array | FLOAT16_ARRAY => 2,
    T::int32_array | T::uint32_array | T::float32_array => 4,
    T::float64_array | T::bigint64_array | T::biguint64_array => 8,
    _ => return None,
  })
}

/// Checks that native code may read (or, with `write`, write) the bytes of a user's `view`: a
/// view of one of our own mappings may lack the protection (`PROT_NONE`, a `protect()`ed
/// range), and copying from it would fault inside our code.
///
/// Returns the mapping behind the view, if it is one of ours: the copy itself must then be a
/// native access of it (`Mapping::accessing`), which a `protect()` on another thread cannot
/// race.
pub fn check_access(env: &Env, view: &RawView, write: bool, name: &str) -> napi::Result<Option<Shared>> {
  if view.len == 0 || view.data.is_null() {
    return Ok(None);
  }
  // The registry knows ArrayBuffers by their first byte.
  match registry::find(view.data as usize - view.byte_offset) {
    Some(mapping) => check_rights(env, &mapping, write, name).map(|()| Some(mapping)),
    None => Ok(None),
  }
}

/// `ERR_MMAP_ACCESS` unless every byte of `mapping` may be read (or, with `write`, written):
/// what native code that touches a user's mapping checks first.
pub fn check_rights(env: &Env, mapping: &Mapping, write: bool, name: &str) -> napi::Result<()> {
  let needed = if write {
    crate::sys::consts::PROT_WRITE
  } else {
    crate::sys::consts::PROT_READ
  };
  // After `unmap()`, the placeholder's rights (see `Mapping::accessing`).
  if mapping.guaranteed_prot() & needed != 0 {
    return Ok(());
  }
  Err(errors::throw(env, errors::access_error(env, write, name)))
}

/// `(data, byte length)` of an ArrayBuffer; `(null, 0)` once detached. `None` when Node-API
/// refuses the value (a `SharedArrayBuffer`, in Node versions that do).
fn arraybuffer_len(env: &Env, arraybuffer: Value) -> Option<(*mut c_void, usize)> {
  raw::arraybuffer_info(env, arraybuffer).ok()
}

/// Resolves `value` (the argument `name`) to the mapping behind it: the one resolver every
/// operation on a view goes through. An empty or detached view is `Empty` (a no-op); any view
/// of memory node-mmap did not map, a `SharedArrayBuffer`'s included, is
/// `ERR_MMAP_NOT_A_MAPPING`.
pub fn resolve(env: &Env, value: &Unknown, name: &str) -> napi::Result<Resolved> {
  let expected = "an instance of Buffer, TypedArray, DataView or ArrayBuffer";
  if args::type_of(value) != ValueType::Object {
    return Err(args::invalid_type(env, name, expected, value));
  }
  let Some(RawView {
    arraybuffer,
    byte_offset,
    len,
    ..
  }) = raw_view(env, args::raw(value))
  else {
    return Err(args::invalid_type(env, name, expected, value));
  };
  // A SharedArrayBuffer is never detached, so it is never "empty" here: it is not a mapping,
  // even with no bytes (some Node versions' napi_get_arraybuffer_info accept one).
  let shared = !raw::is(env, arraybuffer, Kind::ArrayBuffer);
  let Some((data, total)) = arraybuffer_len(env, arraybuffer).filter(|_| !shared) else {
    return Err(not_a_mapping(env, value, name));
  };
  if data.is_null() || total == 0 {
    return Ok(Resolved::Empty);
  }
  let Some(mapping) = registry::find(data as usize) else {
    return Err(not_a_mapping(env, value, name));
  };
  let offset = data as usize - mapping.addr() as usize + byte_offset;
  if mapping.is_unmapped() || offset > mapping.len() || len > mapping.len() - offset {
    return Ok(Resolved::Empty);
  }
  Ok(Resolved::View(View { mapping, offset, len }))
}

/// `ERR_MMAP_NOT_A_MAPPING` for the argument `name`.
fn not_a_mapping(env: &Env, value: &Unknown, name: &str) -> napi::Error {
  let message = format!(
    "The \"{name}\" argument must be a view of memory mapped by node-mmap. Received {}",
    args::describe(env, value)
  );
  errors::throw_coded(env, Class::TypeError, "ERR_MMAP_NOT_A_MAPPING", &message)
}

/// The one overflow-safe bounds check every ranged operation goes through: `offset` and
/// `length` (default: to the end) must lie within a view of `view_len` bytes.
pub fn bounds(
  env: &Env,
  view_len: usize,
  offset: Option<&Unknown>,
  length: Option<&Unknown>,
) -> napi::Result<(usize, usize)> {
  bounds_named(env, view_len, (offset, "offset"), (length, "length"))
}

/// [`bounds`] for arguments with other names (`options.offset`, ...).
pub fn bounds_named(
  env: &Env,
  view_len: usize,
  (offset, offset_name): (Option<&Unknown>, &str),
  (length, length_name): (Option<&Unknown>, &str),
) -> napi::Result<(usize, usize)> {
  let limit = view_len as i64;
  let offset = args::optional_integer(env, offset, offset_name, 0, limit)?.unwrap_or(0) as usize;
  let rest = view_len - offset;
  let length = args::optional_integer(env, length, length_name, 0, rest as i64)?;
  Ok((offset, length.map_or(rest, |n| n as usize)))
}
