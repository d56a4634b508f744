//! The toolkit over an existing mapping: `unmap`, `remap`, `advise`, `incore`, `sync`, `flush`,
//! `lock`, `unlock`, `protect`. Every function takes any view of a mapping (a Buffer, a
//! `subarray`, a TypedArray or DataView over the same ArrayBuffer, or that ArrayBuffer), and
//! ranges are byte ranges within that view; they go through the one bounds check in
//! [`view::bounds`], and are rounded out to whole pages for the system call.

use napi::bindgen_prelude::{AsyncTask, Unknown, ValueType};
use napi::Env;
use napi::ScopedTask;
use napi_derive::napi;

use crate::core::mapping::Shared;
use crate::js::args::Optional;

use crate::api::constants::{self as c};
use crate::api::map::{buffer_max_length, check_advice};
use crate::core::mapping::Failure;
use crate::js::args;
use crate::js::buffer;
use crate::js::errors;
use crate::js::options;
use crate::js::view::{self, Resolved, Target};

/// Bytes of address space that unmapped mappings still hold as placeholders (until their last
/// view is collected): for the tests, which cannot tell node-mmap's placeholders from the
/// runtime's own mappings in /proc/self/maps. Not exported by index.js.
#[napi(js_name = "__placeholderBytes", skip_typescript)]
pub fn placeholder_bytes() -> f64 {
  crate::core::registry::placeholder_bytes() as f64
}

/// Bytes of dropped mappings still mapped because their `munmap` would have cut a kernel mapping
/// in two with none to spare (see `reclaim::release`): for the tests. Not exported by index.js.
#[napi(js_name = "__deferredBytes", skip_typescript)]
pub fn deferred_bytes() -> f64 {
  crate::core::reclaim::deferred_bytes() as f64
}

/// Unmaps the mapping behind `buffer` now, instead of when it is garbage-collected: the file (or
/// anonymous memory) is no longer mapped once it returns. Every view of the mapping keeps its
/// length, and from then on reads zeros; what is written to it never reaches the file. Nothing is
/// detached, so native work that still holds the memory (`zlib`, `crypto`, `fs.write`, a socket
/// write), and Node's own JavaScript that re-reads a Buffer's length while it works, never
/// fault and never see a Buffer shrink under them. The address range itself is released when
/// the last view is collected. Calling it again, or on any view of an unmapped mapping, does
/// nothing.
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
#[napi(ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike")]
pub fn unmap(env: &Env, buffer: Unknown) -> napi::Result<()> {
  let Resolved::View(view) = view::resolve(env, &buffer, "buffer")? else {
    return Ok(());
  };
  // Placeholder first: if that fails, nothing has changed and the views still work.
  view
    .mapping
    .unmap()
    .map_err(|err| errors::throw_system(env, &err, "mmap", None))?;
  Ok(())
}

/// Resizes the mapping behind `buffer` so that it ends `newSize` bytes after the start of
/// `buffer`, and returns a new Buffer of `newSize` bytes that starts at the same byte (the same
/// byte of the file) as `buffer` did: for a Buffer from `openSync(path, { offset: 100 })`, file
/// byte 100; for a `subarray` or a `Mapping#view()` Buffer, the first byte of that view (bytes
/// of the mapping after the end of the new Buffer are let go; those before its start are kept,
/// unseen). The old Buffer and every view of it keep their length and read zeros (as after
/// `unmap`), and the `Mapping` handle a `view()` Buffer came from reports `unmapped`. The contents are kept
/// up to the smaller size; a file mapping goes on mapping the same file from the same offset
/// (growing past the end of the file needs the file to be grown first); the pages keep the
/// rights `protect()` gave them. Shared memory with no regular file behind it (`MAP_SHARED |
/// MAP_ANONYMOUS`, a `MAP_SHARED` mapping of `/dev/zero`) cannot grow: `ERR_OUT_OF_RANGE`. Uses
/// `mremap(2)`; Linux only (elsewhere it throws `ENOTSUP`).
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
/// @param newSize - The new Buffer's size in bytes, from 1 to `buffer.constants.MAX_LENGTH`.
#[napi(
  ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike, newSize: number",
  ts_return_type = "Buffer"
)]
pub fn remap<'env>(env: &'env Env, buffer: Unknown, new_size: Unknown) -> napi::Result<Unknown<'env>> {
  let max = buffer_max_length().min(args::MAX_SAFE_INTEGER as u64) as i64;
  let resolved = view::resolve(env, &buffer, "buffer")?;
  let new_size_value = new_size;
  let new_size = args::integer(env, &new_size_value, "newSize", 1, max)? as usize;
  let Resolved::View(view) = resolved else {
    let message = "The view is empty or was unmapped: there is no mapping to resize";
    return Err(errors::throw_coded(
      env,
      errors::Class::Error,
      "ERR_MMAP_UNMAPPED",
      message,
    ));
  };
  // The view's place in the mapping is kept: the mapping ends `new_size` bytes after it.
  let new_len = view.offset + new_size;
  if new_len > view.mapping.len() && !view.mapping.can_grow() {
    let range = format!(
      "<= {} (shared memory with no regular file behind it cannot grow: its size is fixed)",
      view.mapping.len() - view.offset
    );
    return Err(args::out_of_range(env, "newSize", &range, &new_size_value));
  }
  // The runtime must take a Buffer of the new size: asked before the move, which a refusal after
  // would leave with the bytes moved into a mapping no Buffer shows (see `accepts_length`).
  buffer::accepts_length(env, view.mapping.addr(), new_size)?;
  let moved = view
    .mapping
    .remap(new_len)
    .map_err(|failure| errors::throw_failure(env, failure, "mremap"))?;
  let buffer = buffer::create(env, moved, view.offset, new_size)?;
  // SAFETY: `buffer` was just created in this env's current scope.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), buffer) })
}

/// Gives the kernel advice about how a range of the mapping will be used (`madvise(2)`).
/// Called exactly as `advise(buffer, advice)` for the whole view, or `advise(buffer, offset,
/// length, advice)` for a byte range of it (`offset` and `length` may be `undefined`: their
/// defaults); an unaligned start is rounded down to its page. Any other form is refused before
/// any system call: `advise(buffer, offset, advice)` throws `ERR_INVALID_ARG_TYPE` for the
/// missing `advice` (it is never read as an advice). An advice that discards data
/// (`MADV_DONTNEED`, `MADV_FREE`, `MADV_REMOVE`) changes no byte outside the range: it covers
/// only the whole pages inside it, and does nothing when none fits; over a range with a locked
/// page in it (`lock()`, `MAP_LOCKED`) it throws `EINVAL` before anything is discarded. An
/// empty range makes no system call.
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
/// @param offset - Start of the range within the view. Default: `0`.
/// @param length - Bytes in the range. Default: to the end of the view.
/// @param advice - One of the `MADV_*` constants.
#[napi(
  ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike, ...args: [advice: number] | [offset: number | undefined, length: number | undefined, advice: number]"
)]
pub fn advise(env: &Env, buffer: Unknown, a: Optional, b: Optional, advice: Optional) -> napi::Result<()> {
  let resolved = view::resolve(env, &buffer, "buffer")?;
  let request = AdviseRequest::parse(env, a, b, advice)?;
  match resolved {
    Resolved::View(view) => request.apply(env, &view.into()),
    Resolved::Empty => request.apply(env, &Target::of_empty(env, &buffer)),
  }
}

/// The arguments of `advise` (the module function and `Mapping#advise`), read and checked: the
/// one implementation both go through. Exactly two forms: `(advice)`, or `(offset, length,
/// advice)` with `offset` and `length` optional (`undefined`). A missing argument and
/// `undefined` are the same to Node-API, so the form is told by which arguments are given:
/// only the first is the short form; anything after it makes the long form, whose third
/// argument must then be the advice (`advise(0, MADV_DONTNEED)` is a missing advice, not
/// `MADV_NORMAL` over an offset).
pub struct AdviseRequest<'env> {
  offset: Option<Unknown<'env>>,
  length: Option<Unknown<'env>>,
  advice: i32,
}

impl<'env> AdviseRequest<'env> {
  pub fn parse(
    env: &'env Env,
    a: Optional<'env>,
    b: Optional<'env>,
    c: Optional<'env>,
  ) -> napi::Result<Self> {
    let (offset, length, advice) = if b.is_none() && c.is_none() {
      (None, None, a.into_inner())
    } else {
      (a.into_inner(), b.into_inner(), c.into_inner())
    };
    let Some(advice) = check_advice(env, advice.as_ref(), "advice")? else {
      return Err(args::invalid_type(
        env,
        "advice",
        "of type number",
        &args::undefined(env),
      ));
    };
    Ok(AdviseRequest {
      offset,
      length,
      advice,
    })
  }

  /// `madvise` over the range of `target` the request names (checked against its length).
  pub fn apply(&self, env: &Env, target: &Target) -> napi::Result<()> {
    let (offset, length) = target.range(env, self.offset.as_ref(), self.length.as_ref())?;
    let Some(mapping) = &target.mapping else {
      return Ok(());
    };
    mapping
      .advise(offset, length, self.advice)
      .map_err(|f| errors::throw_failure(env, f, "madvise"))
  }
}

/// Reports which pages of the view are resident in memory (`mincore(2)`), as mmap-io does:
/// `[pagesNotResident, pagesResident]`. Any size works in bounded memory: the pages are asked
/// about 65,536 at a time.
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
/// @returns `[unmappedPages, mappedPages]`.
#[napi(
  ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike",
  ts_return_type = "[number, number]"
)]
pub fn incore(env: &Env, buffer: Unknown) -> napi::Result<Vec<f64>> {
  let Resolved::View(view) = view::resolve(env, &buffer, "buffer")? else {
    return Ok(vec![0.0, 0.0]);
  };
  page_counts(env, &view.into())
}

/// `[pagesNotResident, pagesResident]` of `target`, as numbers (a count of pages can pass
/// 2^32): what `incore` and `Mapping#incore` return.
pub fn page_counts(env: &Env, target: &Target) -> napi::Result<Vec<f64>> {
  let Some(mapping) = &target.mapping else {
    return Ok(vec![0.0, 0.0]);
  };
  let (resident, total) = mapping
    .resident_pages(target.offset, target.len)
    .map_err(|f| errors::throw_failure(env, f, "mincore"))?;
  Ok(vec![(total - resident) as f64, resident as f64])
}

/// Writes changed pages of the view back to the file (`msync(2)`), as mmap-io's `sync`:
/// `sync(buffer[, offset[, length[, blocking[, invalidate]]]])` or
/// `sync(buffer, blocking[, invalidate])`. Without `blocking` it only schedules the write-back
/// (`MS_ASYNC`); with it, it waits (`MS_SYNC`) and blocks the event loop meanwhile: prefer
/// `flush()` for that. An `offset` or `length` of 0 or omitted means the whole view.
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
/// @param offset - Start of the range within the view. Default: `0`.
/// @param length - Bytes in the range; `0` means to the end of the view. Default: `0`.
/// @param blocking - Wait for the write-back (`MS_SYNC`). Default: `false`.
/// @param invalidate - Add `MS_INVALIDATE`. Default: `false`.
#[napi(
  ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike, ...args: [offset?: number, length?: number, blocking?: boolean, invalidate?: boolean] | [blocking: boolean, invalidate?: boolean]"
)]
pub fn sync(
  env: &Env,
  buffer: Unknown,
  a: Optional,
  b: Optional,
  c: Optional,
  d: Optional,
) -> napi::Result<()> {
  let resolved = view::resolve(env, &buffer, "buffer")?;
  let request = SyncRequest::parse(env, a, b, c, d)?;
  match resolved {
    Resolved::View(view) => request.apply(env, &view.into()),
    Resolved::Empty => request.apply(env, &Target::of_empty(env, &buffer)),
  }
}

/// The arguments of `sync` (the module function and `Mapping#sync`), read and checked: the one
/// implementation both go through. Forms: `(offset, length, blocking, invalidate)`, each
/// optional, or `(blocking, invalidate)`; an `offset` or `length` of 0 means the default (the
/// start; to the end), as mmap-io's.
pub struct SyncRequest<'env> {
  offset: Option<Unknown<'env>>,
  length: Option<Unknown<'env>>,
  /// `msync` flags.
  flags: i32,
}

impl<'env> SyncRequest<'env> {
  pub fn parse(
    env: &'env Env,
    a: Optional<'env>,
    b: Optional<'env>,
    c: Optional<'env>,
    d: Optional<'env>,
  ) -> napi::Result<Self> {
    let boolean_form = a.as_ref().is_some_and(|a| args::type_of(a) == ValueType::Boolean);
    let (offset, length, blocking, invalidate) = if boolean_form {
      (None, None, a.into_inner(), b.into_inner())
    } else {
      (a.into_inner(), b.into_inner(), c.into_inner(), d.into_inner())
    };
    let blocking = args::optional_boolean(env, blocking.as_ref(), "blocking")?.unwrap_or(false);
    let invalidate = args::optional_boolean(env, invalidate.as_ref(), "invalidate")?.unwrap_or(false);
    let zero = |v: &Unknown| args::number_value(env, v) == Some(0.0);
    Ok(SyncRequest {
      offset: offset.filter(|v| !zero(v)),
      length: length.filter(|v| !zero(v)),
      flags: msync_flags(blocking, invalidate),
    })
  }

  /// `msync` over the range of `target` the request names (checked against its length).
  pub fn apply(&self, env: &Env, target: &Target) -> napi::Result<()> {
    let (offset, length) = target.range(env, self.offset.as_ref(), self.length.as_ref())?;
    let Some(mapping) = &target.mapping else {
      return Ok(());
    };
    mapping
      .sync(offset, length, self.flags)
      .map_err(|f| errors::throw_failure(env, f, "msync"))
  }
}

pub fn msync_flags(blocking: bool, invalidate: bool) -> i32 {
  (if blocking { c::MS_SYNC } else { c::MS_ASYNC }) | if invalidate { c::MS_INVALIDATE } else { 0 }
}

/// `msync(MS_SYNC)` on the libuv thread pool.
pub struct Flush {
  /// `None` for an empty or detached view: nothing to write back.
  mapping: Option<Shared>,
  offset: usize,
  len: usize,
  flags: i32,
}

impl Flush {
  pub fn new(mapping: Option<Shared>, offset: usize, len: usize, flags: i32) -> Self {
    Flush {
      mapping,
      offset,
      len,
      flags,
    }
  }
}

impl<'env> ScopedTask<'env> for Flush {
  type Output = Result<(), Failure>;
  type JsValue = ();

  fn compute(&mut self) -> napi::Result<Self::Output> {
    match &self.mapping {
      Some(mapping) => Ok(mapping.sync(self.offset, self.len, self.flags)),
      None => Ok(Ok(())),
    }
  }

  fn resolve(&mut self, env: &'env Env, output: Self::Output) -> napi::Result<()> {
    output.map_err(|failure| errors::reject_with(env, errors::failure(env, &failure, "msync")))
  }
}

/// Writes changed pages of the view back to the file and waits until they are on the storage
/// (`msync(2)` with `MS_SYNC`), on the libuv thread pool: the event loop keeps turning while
/// gigabytes are written back.
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
/// @param options - `offset` (default `0`) and `length` (default: to the end of the view) pick a
///   byte range of the view; `invalidate` (default `false`) adds `MS_INVALIDATE`.
/// @returns A Promise that fulfills with `undefined`, or rejects with a Node-style system error.
#[napi(
  ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike, options?: { offset?: number, length?: number, invalidate?: boolean } | null",
  ts_return_type = "Promise<void>"
)]
pub fn flush<'env>(env: &'env Env, buffer: Unknown, options: Optional) -> napi::Result<Unknown<'env>> {
  errors::promise(env, flush_task(env, buffer, options))
}

/// `flush`'s options object, read and checked (the range still goes through `bounds_named`).
pub struct FlushOptions<'env> {
  pub offset: Option<Unknown<'env>>,
  pub length: Option<Unknown<'env>>,
  /// `msync` flags: `MS_SYNC`, with `MS_INVALIDATE` when asked.
  pub flags: i32,
}

impl<'env> FlushOptions<'env> {
  pub fn parse(env: &'env Env, options: &Optional) -> napi::Result<Self> {
    let options = options::Options::new(env, options.as_ref(), &["offset", "length", "invalidate"])?;
    let invalidate = options.get(env, "invalidate")?;
    let invalidate = args::optional_boolean(env, invalidate.as_ref(), "options.invalidate")?;
    Ok(FlushOptions {
      offset: options.get(env, "offset")?,
      length: options.get(env, "length")?,
      flags: msync_flags(true, invalidate.unwrap_or(false)),
    })
  }

  /// The write-back of the range of `target` the options name (checked against its length),
  /// for the thread pool.
  pub fn task(&self, env: &Env, target: Target) -> napi::Result<Flush> {
    let offset = (self.offset.as_ref(), "options.offset");
    let (offset, len) = target.range_named(env, offset, (self.length.as_ref(), "options.length"))?;
    Ok(Flush::new(target.mapping, offset, len, self.flags))
  }
}

fn flush_task(env: &Env, buffer: Unknown, options: Optional) -> napi::Result<AsyncTask<Flush>> {
  let resolved = view::resolve(env, &buffer, "buffer")?;
  let options = FlushOptions::parse(env, &options)?;
  let flush = match resolved {
    Resolved::View(view) => options.task(env, view.into())?,
    Resolved::Empty => options.task(env, Target::of_empty(env, &buffer))?,
  };
  Ok(AsyncTask::new(flush))
}

/// Locks a range of the view in memory (`mlock(2)`): its pages stay resident until `unlock`.
/// Fails with `EPERM` or `ENOMEM` when the process may not lock that much (`ulimit -l`).
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
/// @param offset - Start of the range within the view. Default: `0`.
/// @param length - Bytes in the range. Default: to the end of the view.
#[napi(ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike, offset?: number, length?: number")]
pub fn lock(env: &Env, buffer: Unknown, offset: Optional, length: Optional) -> napi::Result<()> {
  lock_range(env, buffer, offset, length, true)
}

/// Unlocks a range of the view (`munlock(2)`), undoing `lock`.
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
/// @param offset - Start of the range within the view. Default: `0`.
/// @param length - Bytes in the range. Default: to the end of the view.
#[napi(ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike, offset?: number, length?: number")]
pub fn unlock(env: &Env, buffer: Unknown, offset: Optional, length: Optional) -> napi::Result<()> {
  lock_range(env, buffer, offset, length, false)
}

fn lock_range(
  env: &Env,
  buffer: Unknown,
  offset: Optional,
  length: Optional,
  lock: bool,
) -> napi::Result<()> {
  match view::resolve(env, &buffer, "buffer")? {
    Resolved::View(view) => lock_target(env, &view.into(), offset, length, lock),
    Resolved::Empty => lock_target(env, &Target::of_empty(env, &buffer), offset, length, lock),
  }
}

/// `mlock` (`lock`) or `munlock` over the range of `target` that `offset` and `length` name
/// (checked against its length): what `lock`/`unlock` and `Mapping#lock`/`unlock` do.
pub fn lock_target(
  env: &Env,
  target: &Target,
  offset: Optional,
  length: Optional,
  lock: bool,
) -> napi::Result<()> {
  let (offset, length) = target.range(env, offset.as_ref(), length.as_ref())?;
  let Some(mapping) = &target.mapping else {
    return Ok(());
  };
  let syscall = if lock { "mlock" } else { "munlock" };
  mapping
    .lock(offset, length, lock)
    .map_err(|f| errors::throw_failure(env, f, syscall))
}

/// Changes the access rights of a range of the view (`mprotect(2)`), rounded out to whole pages.
/// Careful: touching memory the new rights forbid (writing after `PROT_READ`, reading after
/// `PROT_NONE`) ends the process, as it does in C.
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
/// @param offset - Start of the range within the view.
/// @param length - Bytes in the range.
/// @param protection - `PROT_NONE` or a bitwise OR of `PROT_READ`, `PROT_WRITE`, `PROT_EXEC`.
#[napi(
  ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike, offset: number, length: number, protection: number"
)]
pub fn protect(
  env: &Env,
  buffer: Unknown,
  offset: Unknown,
  length: Unknown,
  protection: Unknown,
) -> napi::Result<()> {
  let resolved = view::resolve(env, &buffer, "buffer")?;
  let protection = crate::api::map::check_protection(env, &protection)?;
  let Resolved::View(view) = resolved else {
    // Checked as on a live view, then nothing to do.
    view::bounds(
      env,
      Target::of_empty(env, &buffer).len,
      Some(&offset),
      Some(&length),
    )?;
    return Ok(());
  };
  let (offset, length) = view::bounds(env, view.len, Some(&offset), Some(&length))?;
  view
    .mapping
    .protect(view.offset + offset, length, protection)
    .map_err(|f| errors::throw_failure(env, f, "mprotect"))
}

/// How many pages of the mapping behind `buffer` were lost under it and replaced with zeros:
/// when another process truncates a mapped file, touching the pages past its new end raises
/// SIGBUS, which kills the process with every other mmap binding. node-mmap (on Linux) replaces
/// such a page with zero-filled memory, lets the access complete, and counts it here, so a
/// program can tell that what it read is no longer the file. The lost pages after it, to the end
/// of the mapping, are replaced (and counted) with it, at the first fault: a file grown again
/// later does not show there. 0 for a healthy mapping.
///
/// @param buffer - A Buffer returned by `map()` or any view of the same memory.
#[napi(ts_args_type = "buffer: ArrayBufferView | ArrayBufferLike")]
pub fn faults(env: &Env, buffer: Unknown) -> napi::Result<f64> {
  match view::resolve(env, &buffer, "buffer")? {
    Resolved::View(view) => Ok(view.mapping.faults() as f64),
    Resolved::Empty => Ok(0.0),
  }
}

/// Turns the SIGBUS recovery described under `faults()` on (the default) or off. Off, an access
/// to a lost page ends the process, after a line on stderr naming the mapping and the offset:
/// the choice for programs that would rather die than read zeros that are not in the file.
///
/// @param enabled - Whether to recover.
#[napi(ts_args_type = "enabled: boolean")]
pub fn set_sigbus_recovery(env: &Env, enabled: Unknown) -> napi::Result<()> {
  let Some(enabled) = args::optional_boolean(env, Some(&enabled), "enabled")? else {
    return Err(args::invalid_type(env, "enabled", "of type boolean", &enabled));
  };
  crate::core::recovery::set_sigbus_recovery(enabled);
  Ok(())
}
