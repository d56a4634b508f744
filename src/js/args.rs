//! Argument checks, all in one place and all before any system call.
//!
//! The messages follow Node's own validators word for word where Node has one:
//! `ERR_INVALID_ARG_TYPE` (`The "size" argument must be of type number. Received ...`),
//! `ERR_OUT_OF_RANGE` (`The value of "size" is out of range. It must be ... Received ...`) and
//! `ERR_INVALID_ARG_VALUE` (`The argument 'flags' ... Received ...`). Numbers are never coerced
//! (no `valueOf`), never truncated: a JS number is used only when it is an exact integer within
//! the stated range.

use std::ffi::CStr;

use napi::bindgen_prelude::{FromNapiValue, JsValue, TypeName, Unknown, ValidateNapiValue, ValueType};
use napi::sys;
use napi::Env;

use crate::js::errors::{self, Class};
use crate::js::raw;

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// An optional argument. `undefined` (or a missing argument) is `None`; anything else, `null`
/// included, is `Some` and gets checked: napi-rs's own `Option<T>` would take `null` as absent.
pub struct Optional<'env>(pub Option<Unknown<'env>>);

impl<'env> Optional<'env> {
  pub fn into_inner(self) -> Option<Unknown<'env>> {
    self.0
  }
}

impl<'env> std::ops::Deref for Optional<'env> {
  type Target = Option<Unknown<'env>>;
  fn deref(&self) -> &Self::Target {
    &self.0
  }
}

impl FromNapiValue for Optional<'_> {
  unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
    // SAFETY: Node-API hands the callback this value for this env.
    let value = unsafe { Unknown::from_raw_unchecked(env, value) };
    Ok(Optional(
      (type_of(&value) != ValueType::Undefined).then_some(value),
    ))
  }
}

impl TypeName for Optional<'_> {
  fn type_name() -> &'static str {
    "unknown"
  }
  fn value_type() -> ValueType {
    ValueType::Unknown
  }
}

impl ValidateNapiValue for Optional<'_> {}

/// The JS type of a value.
pub fn type_of(value: &Unknown) -> ValueType {
  value.get_type().unwrap_or(ValueType::Unknown)
}

/// The raw handle of a value.
pub fn raw(value: &Unknown) -> sys::napi_value {
  value.value().value
}

/// `undefined`, as an argument.
pub fn undefined(env: &Env) -> Unknown<'_> {
  // SAFETY: `undefined` of this env.
  unsafe { Unknown::from_raw_unchecked(env.raw(), raw::undefined(env)) }
}

/// The number 0, as an argument.
pub fn zero(env: &Env) -> Unknown<'_> {
  // SAFETY: a number of this env.
  unsafe { Unknown::from_raw_unchecked(env.raw(), raw::uint32(env, 0)) }
}

/// A JS number's value, or `None` when `value` is not a number.
pub fn number_value(env: &Env, value: &Unknown) -> Option<f64> {
  raw::number(env, raw(value))
}

/// `ERR_INVALID_ARG_TYPE`: `The "name" argument must be of type <expected>. Received ...`.
pub fn invalid_type(env: &Env, name: &str, expected: &str, value: &Unknown) -> napi::Error {
  let message = format!(
    "The \"{name}\" argument must be {expected}. Received {}",
    describe(env, value)
  );
  errors::throw_coded(env, Class::TypeError, "ERR_INVALID_ARG_TYPE", &message)
}

/// `ERR_OUT_OF_RANGE`: `The value of "name" is out of range. It must be <range>. Received <n>`.
pub fn out_of_range(env: &Env, name: &str, range: &str, value: &Unknown) -> napi::Error {
  let message = format!(
    "The value of \"{name}\" is out of range. It must be {range}. Received {}",
    received_number(env, value)
  );
  errors::throw_coded(env, Class::RangeError, "ERR_OUT_OF_RANGE", &message)
}

/// `ERR_INVALID_ARG_VALUE` (a RangeError): `The argument 'name' <reason>. Received <value>`.
pub fn invalid_value(env: &Env, name: &str, reason: &str, received: &str) -> napi::Error {
  let message = format!("The argument '{name}' {reason}. Received {received}");
  errors::throw_coded(env, Class::RangeError, "ERR_INVALID_ARG_VALUE", &message)
}

/// Checks that `value` is a number holding an integer in `min..=max`, the way Node's
/// `validateInteger` does, and returns it.
pub fn integer(env: &Env, value: &Unknown, name: &str, min: i64, max: i64) -> napi::Result<i64> {
  let number = number_value(env, value);
  in_range(number, min, max).ok_or_else(|| not_integer(env, value, name, min, max, number))
}

/// `number` as an integer, if it is one in `min..=max`.
fn in_range(number: Option<f64>, min: i64, max: i64) -> Option<i64> {
  // The checks make the cast exact: an integral f64 within i64-representable bounds.
  number
    .filter(|&n| is_integer(n) && n >= min as f64 && n <= max as f64)
    .map(|n| n as i64)
}

/// The error [`integer`] throws for `value` (whose number, if it is one, is `number`). Kept out
/// of line: `map` reads four integers per call.
#[cold]
#[inline(never)]
fn not_integer(
  env: &Env,
  value: &Unknown,
  name: &str,
  min: i64,
  max: i64,
  number: Option<f64>,
) -> napi::Error {
  match number {
    None => invalid_type(env, name, "of type number", value),
    Some(number) if !is_integer(number) => out_of_range(env, name, "an integer", value),
    Some(_) => out_of_range(env, name, &format!(">= {min} && <= {max}"), value),
  }
}

/// `Number.isInteger`. Without a `trunc` call (not an instruction on baseline x86-64): below
/// 2^53 a round trip through `i64` is exact for integers only; above it every finite double is
/// an integer.
pub fn is_integer(number: f64) -> bool {
  const EXACT: f64 = (1u64 << 53) as f64;
  if number.abs() < EXACT {
    number == number as i64 as f64
  } else {
    number.is_finite()
  }
}

/// Like [`integer`], but `undefined` gives `None`.
pub fn optional_integer(
  env: &Env,
  value: Option<&Unknown>,
  name: &str,
  min: i64,
  max: i64,
) -> napi::Result<Option<i64>> {
  let Some(value) = value else {
    return Ok(None);
  };
  let number = number_value(env, value);
  match in_range(number, min, max) {
    Some(integer) => Ok(Some(integer)),
    // Asked only when the value is no integer in range: a number needs one Node-API call.
    None if type_of(value) == ValueType::Undefined => Ok(None),
    None => Err(not_integer(env, value, name, min, max, number)),
  }
}

/// `undefined` gives `None`; otherwise `value` must be a boolean.
pub fn optional_boolean(env: &Env, value: Option<&Unknown>, name: &str) -> napi::Result<Option<bool>> {
  let Some(value) = value.filter(|v| type_of(v) != ValueType::Undefined) else {
    return Ok(None);
  };
  if type_of(value) != ValueType::Boolean {
    return Err(invalid_type(env, name, "of type boolean", value));
  }
  Ok(Some(raw::bool_value(env, raw(value))))
}

/// How Node's `ERR_OUT_OF_RANGE` shows a received number: JS's own formatting, `-0` kept,
/// and `_` separators for integers beyond 2^32 (`5_368_709_120`).
pub fn received_number(env: &Env, value: &Unknown) -> String {
  let Some(number) = number_value(env, value) else {
    return describe(env, value);
  };
  let text = number_text(env, value, number);
  if number.fract() == 0.0
    && number.abs() > 4_294_967_296.0
    && text.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit())
  {
    return with_separators(&text);
  }
  text
}

/// `1234567` -> `1_234_567`, as Node's `addNumericalSeparator`.
fn with_separators(digits: &str) -> String {
  let (sign, digits) = digits.strip_prefix('-').map_or(("", digits), |rest| ("-", rest));
  let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
  for (i, ch) in digits.chars().enumerate() {
    if i > 0 && (digits.len() - i) % 3 == 0 {
      out.push('_');
    }
    out.push(ch);
  }
  format!("{sign}{out}")
}

/// How Node's `ERR_INVALID_ARG_TYPE` describes what it received:
/// `undefined`, `null`, `function f`, `an instance of Foo`, or `type string ('abc')`.
pub fn describe(env: &Env, value: &Unknown) -> String {
  let handle = raw(value);
  match type_of(value) {
    ValueType::Undefined => "undefined".to_owned(),
    ValueType::Null => "null".to_owned(),
    ValueType::Boolean => format!("type boolean ({})", shown_string(env, handle).unwrap_or_default()),
    ValueType::BigInt => format!("type bigint ({}n)", shown_string(env, handle).unwrap_or_default()),
    ValueType::Number => {
      let number = number_value(env, value).unwrap_or(f64::NAN);
      format!("type number ({})", number_text(env, value, number))
    }
    ValueType::String => {
      let text = shown_string(env, handle).unwrap_or_default();
      format!("type string ({})", quote_string(&text))
    }
    ValueType::Symbol => {
      let description = shown_property(env, to_object(env, handle), c"description");
      format!("type symbol (Symbol({}))", description.unwrap_or_default())
    }
    ValueType::Function => {
      let name = shown_property(env, handle, c"name").unwrap_or_default();
      if name.is_empty() {
        "function ".to_owned()
      } else {
        format!("function {name}")
      }
    }
    _ => {
      let constructor =
        property(env, handle, c"constructor").filter(|&c| kind_of(env, c) == sys::ValueType::napi_function);
      match constructor {
        Some(constructor) => {
          let name = shown_property(env, constructor, c"name").unwrap_or_default();
          match name.is_empty() {
            true => describe_anonymous(env, handle).unwrap_or_else(|| "an instance of ".to_owned()),
            false => format!("an instance of {name}"),
          }
        }
        None => "[Object: null prototype] {}".to_owned(),
      }
    }
  }
}

thread_local! {
  /// The function `index.js` gave [`set_describe_anonymous`] in this thread's env, with that env
  /// (an env lives on one thread): `(env, reference)`, as addresses.
  static DESCRIBE_ANONYMOUS: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
}

/// Keeps `describe` for this env: how the running Node describes an object whose constructor
/// has no name (an instance of an anonymous class). Node 20 to 24 say `an instance of ` (the
/// default here, and what a `describe` that returns no string leaves); Node 18 and 26 show what
/// `util.inspect(value, { depth: -1 })` shows (`{}`), which `index.js`'s `describe` returns
/// there.
pub fn set_describe_anonymous(env: &Env, describe: &Unknown) {
  let describe = raw(describe);
  if kind_of(env, describe) != sys::ValueType::napi_function {
    return;
  }
  if let Some(reference) = raw::reference(env, describe) {
    DESCRIBE_ANONYMOUS.with(|cell| cell.set(Some((env.raw() as usize, reference as usize))));
  }
}

/// What the function given to [`set_describe_anonymous`] says of `value`, when this env gave
/// one and it returns a string; a throw is cleared (the default wording is used).
fn describe_anonymous(env: &Env, value: sys::napi_value) -> Option<String> {
  let (owner, reference) = DESCRIBE_ANONYMOUS.with(std::cell::Cell::get)?;
  if owner != env.raw() as usize {
    return None;
  }
  // SAFETY: the reference was made in this env (checked above), which is running this call.
  let describe = unsafe { raw::reference_value(env, reference as sys::napi_ref) };
  if describe.is_null() {
    return None;
  }
  match raw::call(env, describe, value) {
    Ok(text) if kind_of(env, text) == sys::ValueType::napi_string => string_prefix(env, text, SHOWN_BYTES),
    Ok(_) => None,
    Err(_) => {
      raw::clear_exception(env);
      None
    }
  }
}

/// A string as Node quotes it in error messages: past 28 characters cut to 25 and `...`, in
/// single quotes, or double quotes (then backticks) when the text holds single quotes.
fn quote_string(text: &str) -> String {
  let shown: String = if text.chars().count() > 28 {
    text.chars().take(25).chain("...".chars()).collect()
  } else {
    text.to_owned()
  };
  quote_whole(&shown)
}

/// `text` in single quotes, or double quotes (then backticks) when it holds single quotes.
fn quote_whole(shown: &str) -> String {
  if !shown.contains('\'') {
    format!("'{shown}'")
  } else if !shown.contains('"') {
    format!("\"{shown}\"")
  } else if !shown.contains('`') {
    format!("`{shown}`")
  } else {
    format!("'{}'", shown.replace('\'', "\\'"))
  }
}

fn kind_of(env: &Env, value: sys::napi_value) -> sys::napi_valuetype {
  raw::type_of(env, value)
}

/// A JS number as `util.inspect` shows it: JavaScript's own formatting, and `-0` kept.
fn number_text(env: &Env, value: &Unknown, number: f64) -> String {
  if number == 0.0 && number.is_sign_negative() {
    return "-0".to_owned();
  }
  shown_string(env, raw(value)).unwrap_or_else(|| number.to_string())
}

fn to_object(env: &Env, value: sys::napi_value) -> sys::napi_value {
  raw::coerce_to_object(env, value).unwrap_or_else(|_| {
    raw::clear_exception(env);
    std::ptr::null_mut()
  })
}

fn property(env: &Env, object: sys::napi_value, name: &CStr) -> Option<sys::napi_value> {
  if object.is_null() {
    return None;
  }
  let result = raw::get_named(env, object, name);
  if result.is_err() {
    raw::clear_exception(env);
  }
  result.ok()
}

/// The first [`SHOWN_BYTES`] of a property that is a string (a name, a description).
fn shown_property(env: &Env, object: sys::napi_value, name: &CStr) -> Option<String> {
  string_prefix(env, property(env, object, name)?, SHOWN_BYTES)
}

/// A JS string's contents (any other value is converted with `String(value)`).
pub fn string_value(env: &Env, value: &Unknown) -> Option<String> {
  coerce_to_string(env, raw(value))
}

/// The bytes of a Uint8Array (a Buffer) used as a path: `(prefix, len, nul)`, the first
/// `max` bytes at most, copied, the view's whole length, and whether any of its bytes is NUL
/// (looked for in place, in the whole view, as Node's `fs` does); `Ok(None)` for any other
/// value, and an error when the bytes are memory that cannot be read (see
/// `view::check_access`). Only a prefix is copied: a mapping of many GiB passed as a path was
/// copied whole before its length was checked, blocking the thread for seconds and taking as
/// much memory (attack pass 14).
pub fn path_bytes(
  env: &Env,
  value: &Unknown,
  name: &str,
  max: usize,
) -> napi::Result<Option<(Vec<u8>, usize, bool)>> {
  let is_typedarray = raw::is(env, raw(value), raw::Kind::TypedArray);
  let kind = match is_typedarray {
    true => raw::typedarray_info(env, raw(value)).map_or(0, |(kind, ..)| kind),
    false => 0,
  };
  let view = crate::js::view::raw_view(env, raw(value));
  let Some(view) = view.filter(|_| is_typedarray && kind == sys::TypedarrayType::uint8_array) else {
    return Ok(None);
  };
  if view.len == 0 || view.data.is_null() {
    return Ok(Some((Vec::new(), 0, false)));
  }
  let mapping = crate::js::view::check_access(env, &view, false, name)?;
  let mut copy = Vec::with_capacity(view.len.min(max));
  let mut nul = false;
  let mut read = || {
    // SAFETY: Node-API reported `len` readable bytes at `data`; when they are one of our
    // mappings, they stay readable while the access around this runs (`accessing`, after the
    // rights were checked above), and no JavaScript runs meanwhile.
    let bytes = unsafe { std::slice::from_raw_parts(view.data, view.len) };
    copy.extend_from_slice(&bytes[..bytes.len().min(max)]);
    nul = bytes.contains(&0);
  };
  match mapping {
    None => read(),
    Some(mapping) => {
      if mapping.accessing(crate::sys::consts::PROT_READ, read).is_none() {
        // protect()ed on another thread since the check above.
        return Err(crate::js::errors::throw(
          env,
          crate::js::errors::access_error(env, false, name),
        ));
      }
    }
  }
  Ok(Some((copy, view.len, nul)))
}

/// The length in bytes of a JS string's UTF-8, without copying it; `None` for any other value.
pub fn string_length(env: &Env, value: &Unknown) -> Option<usize> {
  raw::string_utf8_len(env, raw(value))
}

/// The first [`SHOWN_BYTES`] of a JS string (whole characters), for text that is compared
/// with short known words or shown in a message: never a copy of a huge string. `None` for any
/// other value.
pub fn string_start(env: &Env, value: &Unknown) -> Option<String> {
  string_prefix(env, raw(value), SHOWN_BYTES)
}

/// How Node's `ERR_INVALID_ARG_VALUE` shows a received string: quoted (as `util.inspect`
/// quotes), and cut to 128 characters and `...` past that. `text` may be only the start of the
/// string (see [`string_start`]); `whole` says whether it is all of it.
pub fn inspected_string(text: &str, whole: bool) -> String {
  let quoted = quote_whole(text);
  if !whole || quoted.chars().count() > 128 {
    quoted.chars().take(128).chain("...".chars()).collect()
  } else {
    quoted
  }
}

/// `String(value)` for primitives that convert without running user code.
fn coerce_to_string(env: &Env, value: sys::napi_value) -> Option<String> {
  coerce_to_string_prefix(env, value, usize::MAX)
}

/// What an error message shows of a value's text at most, in bytes: enough for Node's 28
/// characters of a string and for any sensible name or number, and never a copy of a huge
/// string, BigInt or name just to describe it.
const SHOWN_BYTES: usize = 1024;

/// The first [`SHOWN_BYTES`] of `String(value)` (see [`coerce_to_string`]).
fn shown_string(env: &Env, value: sys::napi_value) -> Option<String> {
  coerce_to_string_prefix(env, value, SHOWN_BYTES)
}

fn coerce_to_string_prefix(env: &Env, value: sys::napi_value, max: usize) -> Option<String> {
  let Ok(string) = raw::coerce_to_string(env, value) else {
    raw::clear_exception(env);
    return None;
  };
  string_prefix(env, string, max)
}

/// The contents of a JS string; `None` for any other value (nothing is converted), and when
/// the memory for a copy cannot be had (a string can hold 1.5 GiB of UTF-8): never an abort.
pub fn string_contents(env: &Env, string: sys::napi_value) -> Option<String> {
  string_prefix(env, string, usize::MAX)
}

/// The first `max` bytes (or fewer: whole characters only) of a JS string's UTF-8, for text
/// that only needs its start (what an error message shows of a value); see [`string_contents`].
fn string_prefix(env: &Env, string: sys::napi_value, max: usize) -> Option<String> {
  let len = raw::string_utf8_len(env, string)?.min(max);
  let mut bytes = Vec::new();
  bytes.try_reserve_exact(len + 1).ok()?;
  bytes.resize(len + 1, 0u8);
  let len = raw::string_utf8_into(env, string, &mut bytes);
  bytes.truncate(len);
  match String::from_utf8(bytes) {
    Ok(text) => Some(text),
    // Cut inside a character: keep the whole ones.
    Err(err) => {
      let valid = err.utf8_error().valid_up_to();
      let mut bytes = err.into_bytes();
      bytes.truncate(valid);
      String::from_utf8(bytes).ok()
    }
  }
}

#[cfg(test)]
mod tests {
  use super::{inspected_string, is_integer, quote_string, with_separators};

  #[test]
  fn received_strings_are_cut_at_128_characters_like_node() {
    assert_eq!(inspected_string("rw", true), "'rw'");
    let long = "x".repeat(200);
    assert_eq!(inspected_string(&long, true), format!("'{}...", "x".repeat(127)));
    assert_eq!(inspected_string("abc", false), "'abc'...");
  }

  #[test]
  fn is_integer_is_number_is_integer() {
    for n in [
      0.0,
      -0.0,
      1.0,
      -7.0,
      4096.0,
      9007199254740991.0,
      9007199254740992.0,
      1e20,
      -1e300,
    ] {
      assert!(is_integer(n), "{n}");
    }
    for n in [
      0.5,
      -1.5,
      1e-300,
      4503599627370495.5,
      f64::NAN,
      f64::INFINITY,
      f64::NEG_INFINITY,
    ] {
      assert!(!is_integer(n), "{n}");
    }
  }

  #[test]
  fn strings_are_quoted_and_cut_like_node() {
    assert_eq!(quote_string("abc"), "'abc'");
    assert_eq!(quote_string("it's"), "\"it's\"");
    assert_eq!(quote_string(&"a".repeat(30)), format!("'{}...'", "a".repeat(25)));
    assert_eq!(quote_string(&"b".repeat(28)), format!("'{}'", "b".repeat(28)));
  }

  #[test]
  fn separators_group_by_three() {
    assert_eq!(with_separators("5368709120"), "5_368_709_120");
    assert_eq!(with_separators("-4294967297"), "-4_294_967_297");
    assert_eq!(with_separators("123"), "123");
    assert_eq!(with_separators("1234"), "1_234");
  }
}
