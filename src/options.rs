//! Options objects (`{ offset, length, ... }`): read without coercion, unknown names refused.

use std::ptr;

use napi::bindgen_prelude::{Unknown, ValueType};
use napi::sys;
use napi::Env;

use crate::args;
use crate::errors::{self, Class};

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
    if args::type_of(value) != ValueType::Object {
      return Err(args::invalid_type(env, "options", "of type object", value));
    }
    let object = args::raw(value);
    for key in own_keys(env, object)? {
      if !known.contains(&key.as_str()) {
        let message = format!(
          "The argument 'options' has an unknown option \"{key}\"; known options are {}",
          known.join(", ")
        );
        return Err(errors::throw_coded(
          env,
          Class::TypeError,
          "ERR_INVALID_ARG_VALUE",
          &message,
        ));
      }
    }
    Ok(Options { object: Some(object) })
  }

  /// `options[name]`, or `None` when absent or `undefined`. A throwing getter's error propagates.
  pub fn get<'env>(&self, env: &'env Env, name: &str) -> napi::Result<Option<Unknown<'env>>> {
    let Some(object) = self.object else {
      return Ok(None);
    };
    let key = errors::js_string(env, name);
    let mut value = ptr::null_mut();
    // SAFETY: `object` is a live object of this env, `key` a string of it, `value` valid.
    let status = unsafe { sys::napi_get_property(env.raw(), object, key, &mut value) };
    if status != sys::Status::napi_ok {
      return Err(errors::pending());
    }
    // SAFETY: `value` was just returned by Node-API for this env.
    let value = unsafe { Unknown::from_raw_unchecked(env.raw(), value) };
    Ok((args::type_of(&value) != ValueType::Undefined).then_some(value))
  }
}

/// The object's own enumerable string keys.
fn own_keys(env: &Env, object: sys::napi_value) -> napi::Result<Vec<String>> {
  let mut names = ptr::null_mut();
  // SAFETY: `object` is a live object of this env; `names` a valid out-pointer.
  if unsafe { sys::napi_get_property_names(env.raw(), object, &mut names) } != sys::Status::napi_ok {
    return Err(errors::pending());
  }
  let mut count = 0u32;
  // SAFETY: `names` is an array of this env.
  unsafe { sys::napi_get_array_length(env.raw(), names, &mut count) };
  let mut keys = Vec::with_capacity(count as usize);
  for i in 0..count {
    let mut key = ptr::null_mut();
    // SAFETY: `i` is below the array's length.
    unsafe { sys::napi_get_element(env.raw(), names, i, &mut key) };
    // SAFETY: `key` was just returned by Node-API for this env.
    let key = unsafe { Unknown::from_raw_unchecked(env.raw(), key) };
    keys.push(args::string_value(env, &key).unwrap_or_default());
  }
  Ok(keys)
}
