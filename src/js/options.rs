//! Options objects (`{ offset, length, ... }`): read without coercion, unknown names refused.
//!
//! An options argument is `undefined`, `null` or an ordinary object: an object literal, a
//! null-prototype object, an instance of a class. Objects that hold something else than
//! properties are refused with `ERR_INVALID_ARG_TYPE` as Node's `validateObject` refuses them:
//! functions and arrays (as Node does), and also typed arrays, `DataView`s, `ArrayBuffer`s and
//! boxed primitives (`new String('r+')`), which Node's `fs` would read as empty options: an
//! array or a boxed string passed where options belong is a mistake, never "all defaults".

use napi::bindgen_prelude::{Unknown, ValueType};
use napi::sys;
use napi::Env;

use crate::js::args;
use crate::js::errors::{self, Class};
use crate::js::raw;

/// An options argument: `undefined` (all defaults) or a plain object.
pub struct Options {
  object: Option<sys::napi_value>,
}

impl Options {
  /// Checks `value` is `undefined`, `null` (both: all defaults, as in `fs`) or an object whose
  /// own keys are all in `known`.
  pub fn new(env: &Env, value: Option<&Unknown>, known: &[&str]) -> napi::Result<Self> {
    let absent = |v: &&Unknown| matches!(args::type_of(v), ValueType::Undefined | ValueType::Null);
    let Some(value) = value.filter(|v| !absent(v)) else {
      return Ok(Options { object: None });
    };
    if args::type_of(value) != ValueType::Object || !ordinary(env, args::raw(value)) {
      return Err(args::invalid_type(env, "options", "of type object", value));
    }
    let object = args::raw(value);
    if let Some(key) = first_unknown_key(env, object, known)? {
      let message = format!(
        "The argument 'options' has an unknown option {key}; known options are {}",
        known.join(", ")
      );
      return Err(errors::throw_coded(
        env,
        Class::TypeError,
        "ERR_INVALID_ARG_VALUE",
        &message,
      ));
    }
    Ok(Options { object: Some(object) })
  }

  /// `options[name]`, or `None` when absent or `undefined`. A throwing getter's error propagates.
  pub fn get<'env>(&self, env: &'env Env, name: &str) -> napi::Result<Option<Unknown<'env>>> {
    let Some(object) = self.object else {
      return Ok(None);
    };
    let key = errors::js_string(env, name);
    let Ok(value) = raw::get_property(env, object, key) else {
      return Err(errors::pending());
    };
    // SAFETY: `value` was just returned by Node-API for this env.
    let value = unsafe { Unknown::from_raw_unchecked(env.raw(), value) };
    Ok((args::type_of(&value) != ValueType::Undefined).then_some(value))
  }
}

/// The built-in constructors whose instances are refused as options, besides what Node-API
/// recognises itself (arrays, ArrayBuffer views): boxed primitives, raw memory, and objects that
/// inherit from `Array.prototype` (whose inherited `length` would read as `options.length`).
const REFUSED: &[&std::ffi::CStr] = &[
  c"Array",
  c"DataView",
  c"String",
  c"Number",
  c"Boolean",
  c"Symbol",
  c"BigInt",
  c"ArrayBuffer",
  c"SharedArrayBuffer",
];

/// The tags `Object.prototype.toString` gives what is refused as options, in any realm (from
/// internal slots, or the prototypes' `Symbol.toStringTag`): boxed primitives and
/// SharedArrayBuffers first.
const TAGS: &[&str] = &[
  "[object String]",
  "[object Number]",
  "[object Boolean]",
  "[object Symbol]",
  "[object BigInt]",
  "[object SharedArrayBuffer]",
  // And objects made from these prototypes (Object.create(DataView.prototype)).
  "[object ArrayBuffer]",
  "[object DataView]",
  // A Proxy of an array, of any realm (napi_is_array says false of a Proxy).
  "[object Array]",
  // A function's `arguments`: its own `length` would read as options.length (attack pass 18c).
  "[object Arguments]",
];

/// How many prototypes [`inherits_array`] looks at: real chains are a few long; a Proxy's
/// trap could make one without end.
const PROTOTYPES_LOOKED_AT: usize = 64;

/// Whether an array or a function is on `object`'s prototype chain: `Array.prototype` is
/// itself an array, in every realm, so this finds `Object.create(Array.prototype)` of another
/// realm too, whose inherited `length` (0) would read as `options.length` (it mapped 0 bytes,
/// attack pass 18).
fn inherits_array(env: &Env, object: raw::Value) -> bool {
  let mut current = object;
  for _ in 0..PROTOTYPES_LOOKED_AT {
    let Ok(prototype) = raw::prototype_of(env, current) else {
      raw::clear_exception(env);
      return false;
    };
    match raw::type_of(env, prototype) {
      sys::ValueType::napi_object => {}
      // Object.create(function (a, b) {}) inherits the function's `length` (2), which would
      // read as options.length (attack pass 18b): refused as an array's is.
      sys::ValueType::napi_function => return true,
      _ => return false, // null: the end of the chain
    }
    if raw::is(env, prototype, raw::Kind::Array) {
      return true;
    }
    current = prototype;
  }
  false
}

/// Whether `object` is a boxed primitive or a SharedArrayBuffer of any realm: one that
/// `instanceof` this realm's constructors misses (`vm.runInNewContext('new Number(5)')` was
/// read as empty options, attack pass 18). Told by `Object.prototype.toString`, one call that
/// throws nothing (a brand check by each built-in's own method throws for every other object,
/// and six throws cost ~60 µs per options object); an object that sets its own
/// `Symbol.toStringTag` to one of those names is refused too.
fn branded(env: &Env, global: raw::Value, object: raw::Value) -> bool {
  let to_string = raw::get_named(env, global, c"Object")
    .and_then(|constructor| raw::get_named(env, constructor, c"prototype"))
    .and_then(|prototype| raw::get_named(env, prototype, c"toString"));
  let Ok(to_string) = to_string else {
    raw::clear_exception(env);
    return false;
  };
  if raw::type_of(env, to_string) != sys::ValueType::napi_function {
    return false;
  }
  let Ok(tag) = raw::call_on(env, to_string, object, &[]) else {
    raw::clear_exception(env);
    return false;
  };
  // SAFETY: `tag` was just returned by Node-API for this env.
  let tag = unsafe { Unknown::from_raw_unchecked(env.raw(), tag) };
  args::string_start(env, &tag).is_some_and(|tag| TAGS.contains(&tag.as_str()))
}

/// Whether `object` (of type object) is an ordinary object: not an array, not an ArrayBuffer
/// view, not an instance of one of the [`REFUSED`] built-ins.
fn ordinary(env: &Env, object: sys::napi_value) -> bool {
  let kinds = [
    raw::Kind::Array,
    raw::Kind::TypedArray,
    raw::Kind::DataView,
    raw::Kind::ArrayBuffer,
  ];
  if kinds.into_iter().any(|kind| raw::is(env, object, kind)) {
    return false;
  }
  let Ok(global) = raw::global(env) else {
    return true;
  };
  if branded(env, global, object) || inherits_array(env, object) {
    return false;
  }
  for name in REFUSED {
    let Ok(constructor) = raw::get_named(env, global, name) else {
      raw::clear_exception(env);
      continue;
    };
    if raw::type_of(env, constructor) != sys::ValueType::napi_function {
      continue;
    }
    match raw::instance_of(env, object, constructor) {
      Err(_) => raw::clear_exception(env),
      Ok(true) => return false,
      Ok(false) => {}
    }
  }
  true
}

/// The first of the object's own enumerable string keys that is not in `known`, as an error
/// message shows it (quoted, cut to 128 characters). Keys are looked at one at a time, and only
/// their start is copied: an object with millions of keys, or a key of hundreds of megabytes,
/// costs no memory of its own.
fn first_unknown_key(env: &Env, object: sys::napi_value, known: &[&str]) -> napi::Result<Option<String>> {
  let Ok(names) = raw::property_names(env, object) else {
    return Err(errors::pending());
  };
  let count = raw::array_length(env, names);
  for i in 0..count {
    let Ok(key) = raw::element(env, names, i) else {
      return Err(errors::pending());
    };
    // SAFETY: `key` was just returned by Node-API for this env.
    let key = unsafe { Unknown::from_raw_unchecked(env.raw(), key) };
    // Property names are strings here (napi_get_property_names gives numbers as strings).
    let start = args::string_start(env, &key).unwrap_or_default();
    let whole = args::string_length(env, &key) == Some(start.len());
    if whole && known.contains(&start.as_str()) {
      continue;
    }
    return Ok(Some(quoted_key(&start, whole)));
  }
  Ok(None)
}

/// A key as the unknown-option message shows it: in double quotes, cut to 128 characters.
fn quoted_key(start: &str, whole: bool) -> String {
  if whole && start.chars().count() <= 128 {
    return format!("\"{start}\"");
  }
  let cut: String = start.chars().take(128).collect();
  format!("\"{cut}...\"")
}

#[cfg(test)]
mod tests {
  use super::quoted_key;

  #[test]
  fn unknown_keys_are_shown_cut() {
    assert_eq!(quoted_key("lenght", true), "\"lenght\"");
    let long = "k".repeat(1024);
    assert_eq!(quoted_key(&long, false), format!("\"{}...\"", "k".repeat(128)));
  }
}
