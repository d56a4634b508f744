//! `map()`: the seed's API (`map(size, protection, flags, fd, offset)`), plus mmap-io's optional
//! sixth argument `advise`.

use std::sync::atomic::{AtomicU64, Ordering};

use napi::bindgen_prelude::Unknown;
use napi::Env;
use napi_derive::napi;

use crate::core::mapping::Shared;
use crate::js::args::Optional;

use crate::api::constants::{self as c, ADVICE, PLACEMENT_FLAGS};
use crate::core::mapping::Mapping;
use crate::js::args::{self, MAX_SAFE_INTEGER};
use crate::js::buffer;
use crate::js::errors;
use crate::sys;

/// `buffer.constants.MAX_LENGTH` of the runtime, told by `index.js` when it loads; until then
/// the smallest value current Node versions use (4 GiB, Node 18 and 20).
static BUFFER_MAX_LENGTH: AtomicU64 = AtomicU64::new(1 << 32);

/// Called once by `index.js` with `require('buffer').constants.MAX_LENGTH`.
#[napi(js_name = "__setBufferMaxLength", skip_typescript)]
pub fn set_buffer_max_length(max_length: f64) {
  if max_length.is_finite() && max_length >= 1.0 {
    BUFFER_MAX_LENGTH.store(max_length.min(MAX_SAFE_INTEGER) as u64, Ordering::Relaxed);
  }
}

/// Called by `index.js` where the running Node describes an instance of an anonymous class with
/// `util.inspect(value, { depth: -1 })`, with that function (see `args::set_describe_anonymous`).
#[napi(js_name = "__setDescribeAnonymous", skip_typescript)]
pub fn set_describe_anonymous(env: Env, describe: Unknown) {
  args::set_describe_anonymous(&env, &describe);
}

/// The largest Buffer the runtime can make.
pub fn buffer_max_length() -> u64 {
  BUFFER_MAX_LENGTH.load(Ordering::Relaxed)
}

/// Maps `size` bytes of the file `fd` (or of anonymous memory) starting at `offset` and returns
/// a Buffer that is the mapping itself: no copy is made, writes through a `MAP_SHARED` mapping
/// reach the file. The mapping is unmapped when the Buffer is garbage-collected.
///
/// @param size - Bytes to map: an integer from 1 to `buffer.constants.MAX_LENGTH`.
/// @param protection - `PROT_NONE` or a bitwise OR of `PROT_READ`, `PROT_WRITE`, `PROT_EXEC`.
/// @param flags - `MAP_SHARED` or `MAP_PRIVATE`, OR'ed with optional `MAP_*` flags.
///   Flags that place the mapping at an address (`MAP_FIXED`, ...) are refused.
/// @param fd - An open file descriptor, or -1 with `MAP_ANONYMOUS`.
/// @param offset - Where in the file the mapping starts: a multiple of `ALLOCATION_GRANULARITY`.
///   Default: `0`.
/// @param advise - A `MADV_*` value applied with `madvise` right after mapping. Default: none.
/// @throws {TypeError} `ERR_INVALID_ARG_TYPE` when an argument is not a number.
/// @throws {RangeError} `ERR_OUT_OF_RANGE` / `ERR_INVALID_ARG_VALUE` for a bad value.
/// @throws {Error} with `code`, `errno`, `syscall` when `mmap` or `madvise` fails, and
///   `ERR_MMAP_NO_EXTERNAL_BUFFERS` where the runtime forbids external buffers (use `Mapping`),
///   after the argument checks and before any system call.
#[napi(
  ts_args_type = "size: number, protection: number, flags: number, fd: number, offset?: number, advise?: number",
  ts_return_type = "Buffer"
)]
pub fn map<'env>(
  env: &'env Env,
  size: Unknown<'env>,
  protection: Unknown<'env>,
  flags: Unknown<'env>,
  fd: Unknown<'env>,
  offset: Optional<'env>,
  advise: Optional<'env>,
) -> napi::Result<Unknown<'env>> {
  let buffer = map_from_arguments(
    env,
    &size,
    &protection,
    &flags,
    &fd,
    offset.as_ref(),
    advise.as_ref(),
  )?;
  // SAFETY: `buffer` was just created in this env's current scope.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), buffer) })
}

/// [`map`] from its arguments as the caller passed them: `offset` and `advise` are `None` when
/// left out, and may also be `undefined` (which counts as left out).
pub fn map_from_arguments(
  env: &Env,
  size: &Unknown,
  protection: &Unknown,
  flags: &Unknown,
  fd: &Unknown,
  offset: Option<&Unknown>,
  advise: Option<&Unknown>,
) -> napi::Result<napi::sys::napi_value> {
  let limit = SizeLimit::Buffer;
  let mapping = map_checked(env, size, protection, flags, fd, offset, advise, limit)?;
  let len = mapping.len();
  buffer::create(env, mapping, 0, len)
}

/// How large a mapping may be.
#[derive(Clone, Copy)]
pub enum SizeLimit {
  /// At most `buffer.constants.MAX_LENGTH`: the mapping becomes one Buffer (so the runtime
  /// must allow external buffers: checked before any system call).
  Buffer,
  /// Any size JS numbers hold exactly (a `Mapping` handle, read through windows).
  SafeInteger,
}

/// The seed's arguments, checked, then `mmap` and the optional `madvise`.
#[allow(clippy::too_many_arguments)]
pub fn map_checked(
  env: &Env,
  size: &Unknown,
  protection: &Unknown,
  flags: &Unknown,
  fd: &Unknown,
  offset: Option<&Unknown>,
  advise: Option<&Unknown>,
  limit: SizeLimit,
) -> napi::Result<Shared> {
  let size = check_size(env, size, limit)?;
  let protection = check_protection(env, protection)?;
  let flags = check_flags(env, flags)?;
  let anonymous = flags & c::MAP_ANONYMOUS != 0;
  let fd = args::integer(env, fd, "fd", -1, i32::MAX as i64)? as i32;
  if anonymous && fd != -1 {
    return Err(args::invalid_value(
      env,
      "fd",
      "must be -1 with MAP_ANONYMOUS",
      &fd.to_string(),
    ));
  }
  if !anonymous && fd == -1 {
    let reason = "must be an open file descriptor (>= 0) unless flags include MAP_ANONYMOUS";
    return Err(args::invalid_value(env, "fd", reason, "-1"));
  }
  let offset = check_offset(env, offset)?;
  let advice = check_advice(env, advise, "advise")?;
  if let SizeLimit::Buffer = limit {
    buffer::refuse_without_external_buffers(env)?;
  }

  let mapping = Mapping::new(size, protection, flags, fd, offset, None)
    .map_err(|err| errors::throw_system(env, &err, "mmap", None))?;
  if let Some(advice) = advice {
    // On failure `mapping` drops here, which unmaps it: nothing leaks.
    mapping
      .advise(0, size, advice)
      .map_err(|failure| crate::js::errors::throw_failure(env, failure, "madvise"))?;
  }
  Ok(mapping)
}

fn check_size(env: &Env, value: &Unknown, limit: SizeLimit) -> napi::Result<usize> {
  let max = match limit {
    SizeLimit::Buffer => buffer_max_length(),
    SizeLimit::SafeInteger => MAX_SAFE_INTEGER as u64,
  };
  let Some(number) = args::number_value(env, value) else {
    return Err(args::invalid_type(env, "size", "of type number", value));
  };
  if !args::is_integer(number) {
    return Err(args::out_of_range(env, "size", "an integer", value));
  }
  if number < 1.0 {
    return Err(args::out_of_range(
      env,
      "size",
      &format!(">= 1 && <= {max}"),
      value,
    ));
  }
  if number > max as f64 {
    let range = match limit {
      SizeLimit::Buffer => format!(
        ">= 1 && <= {max} (buffer.constants.MAX_LENGTH, the largest Buffer this runtime can make); \
         map the file in windows with \"offset\", or use Mapping, which has no such limit"
      ),
      SizeLimit::SafeInteger => format!(">= 1 && <= {max}"),
    };
    return Err(args::out_of_range(env, "size", &range, value));
  }
  usize::try_from(number as u64)
    .map_err(|_| args::out_of_range(env, "size", "addressable on this platform", value))
}

pub fn check_protection(env: &Env, value: &Unknown) -> napi::Result<i32> {
  let protection = args::integer(env, value, "protection", 0, i32::MAX as i64)? as i32;
  let known = c::PROT_READ | c::PROT_WRITE | c::PROT_EXEC;
  if protection & !known != 0 {
    return Err(args::invalid_value(
      env,
      "protection",
      "must be PROT_NONE or a bitwise OR of PROT_READ, PROT_WRITE and PROT_EXEC",
      &protection.to_string(),
    ));
  }
  Ok(protection)
}

// Some flags are 0 on platforms that lack them (macOS: MAP_HUGETLB), which clippy sees as masks
// that cannot match; the checks stay right there.
#[allow(clippy::bad_bit_mask)]
fn check_flags(env: &Env, value: &Unknown) -> napi::Result<i32> {
  let flags = args::integer(env, value, "flags", 0, i32::MAX as i64)? as i32;
  for (name, flag) in PLACEMENT_FLAGS {
    if *flag != 0 && flags & flag != 0 {
      let reason = format!("must not include {name}: there is no address to place the mapping at, and a fixed mapping could overwrite the process's own memory");
      return Err(args::invalid_value(env, "flags", &reason, &flags.to_string()));
    }
  }
  let kind = flags & c::MAP_TYPE_MASK;
  let shared_validate = c::MAP_SHARED_VALIDATE != 0 && kind == c::MAP_SHARED_VALIDATE;
  if kind != c::MAP_SHARED && kind != c::MAP_PRIVATE && !shared_validate {
    return Err(args::invalid_value(
      env,
      "flags",
      "must include one of MAP_SHARED, MAP_PRIVATE and MAP_SHARED_VALIDATE",
      &flags.to_string(),
    ));
  }
  let mut allowed = c::MAP_TYPE_MASK | c::OPTIONAL_FLAGS;
  if c::MAP_HUGETLB != 0 && flags & c::MAP_HUGETLB != 0 {
    allowed |= c::MAP_HUGE_MASK << c::MAP_HUGE_SHIFT;
  }
  if flags & !allowed != 0 {
    return Err(args::invalid_value(
      env,
      "flags",
      &format!(
        "has bits that are not MAP_* flags node-mmap knows ({:#x})",
        flags & !allowed
      ),
      &flags.to_string(),
    ));
  }
  Ok(flags)
}

fn check_offset(env: &Env, value: Option<&Unknown>) -> napi::Result<u64> {
  let Some(offset) = args::optional_integer(env, value, "offset", 0, MAX_SAFE_INTEGER as i64)? else {
    return Ok(0);
  };
  let granularity = sys::allocation_granularity() as i64;
  if offset % granularity != 0 {
    return Err(args::invalid_value(
      env,
      "offset",
      &format!("must be a multiple of ALLOCATION_GRANULARITY ({granularity})"),
      &offset.to_string(),
    ));
  }
  Ok(offset as u64)
}

/// The optional `advise` argument: `None` when absent or `undefined`.
pub fn check_advice(env: &Env, value: Option<&Unknown>, name: &str) -> napi::Result<Option<i32>> {
  let range = (i32::MIN as i64, i32::MAX as i64);
  let Some(advice) = args::optional_integer(env, value, name, range.0, range.1)? else {
    return Ok(None);
  };
  let advice = advice as i32;
  if !ADVICE.iter().any(|(_, known)| *known == advice) {
    return Err(args::invalid_value(
      env,
      name,
      "must be one of the MADV_* constants",
      &advice.to_string(),
    ));
  }
  Ok(Some(advice))
}

/// Whether this runtime allows zero-copy Buffers over external memory. It is `false` in
/// Electron 21+ and other builds with V8's memory cage: there `map()` throws
/// `ERR_MMAP_NO_EXTERNAL_BUFFERS`; use `Mapping`, which copies, instead.
#[napi]
pub fn external_buffers_allowed(env: &Env) -> bool {
  buffer::external_buffers_allowed(env)
}
