//! `Mapping`: a handle that owns one mapping and works where zero-copy Buffers cannot: in
//! runtimes without external buffers (Electron 21+) and above `buffer.constants.MAX_LENGTH`.
//! `read`/`readInto`/`write` copy; `view` gives a zero-copy Buffer of a window where allowed.

use std::cell::{Cell, RefCell};
use std::ptr;

use napi::bindgen_prelude::{AsyncTask, Unknown};
use napi::Env;
use napi_derive::napi;

use crate::core::mapping::Shared;
use crate::js::args::Optional;

use crate::api::map::{map_checked, SizeLimit};
use crate::api::open::Request;
use crate::api::ops::{AdviseRequest, Flush, FlushOptions, SyncRequest};
use crate::core::mapping::Mapping as Core;
use crate::js::args::{self, MAX_SAFE_INTEGER};
use crate::js::buffer;
use crate::js::errors::{self, Class};
use crate::js::raw;
use crate::js::view::{self, Target};

/// A memory mapping owned by a handle. Unlike a Buffer from `map()`, it works in runtimes that
/// forbid external buffers (Electron 21+; there `view()` throws but everything else works) and
/// for mappings larger than `buffer.constants.MAX_LENGTH`. Offsets and lengths are bytes from the
/// start of the mapping. Call `unmap()` (or let `using` do it) when done; otherwise the mapping
/// is unmapped when the handle and every view of it have been garbage-collected.
#[napi]
pub struct Mapping {
  /// `None` for an empty mapping (an empty file), and after `unmap()`. Interior mutability:
  /// every method takes `&self`, so a getter of an options object that calls `unmap()` in the
  /// middle of another call finds an unmapped handle instead of a borrow conflict.
  mapping: RefCell<Option<Shared>>,
  /// Where the user's bytes start within the OS mapping (`Mapping.open` at any offset).
  start: usize,
  len: usize,
  unmapped: Cell<bool>,
}

impl Drop for Mapping {
  /// The handle collected while waits still sleep on its memory and no view of it is left: the
  /// memory goes as the last view's release takes it (`core::registry::forget_buffer`), and the
  /// waits end with `ERR_MMAP_UNMAPPED` rather than hold it for ever.
  fn drop(&mut self) {
    if let Some(shared) = self.mapping.get_mut().take() {
      if crate::core::mapping::Mapping::held_by_words_alone(&shared, 0) {
        shared.release_to_waits();
      }
    }
  }
}

#[napi]
impl Mapping {
  /// Maps like `map()` (same arguments, same checks) but returns a handle; `size` may exceed
  /// `buffer.constants.MAX_LENGTH`.
  ///
  /// @param size - Bytes to map: an integer from 1 to `Number.MAX_SAFE_INTEGER`.
  /// @param protection - `PROT_NONE` or a bitwise OR of `PROT_READ`, `PROT_WRITE`, `PROT_EXEC`.
  /// @param flags - `MAP_SHARED` or `MAP_PRIVATE`, OR'ed with optional `MAP_*` flags.
  /// @param fd - An open file descriptor, or -1 with `MAP_ANONYMOUS`.
  /// @param offset - A multiple of `ALLOCATION_GRANULARITY`. Default: `0`.
  /// @param advise - A `MADV_*` value applied with `madvise` right after mapping, checked and
  ///   applied exactly as by `map()`. Default: none.
  #[napi(
    constructor,
    ts_args_type = "size: number, protection: number, flags: number, fd: number, offset?: number, advise?: number"
  )]
  pub fn new(
    env: &Env,
    size: Unknown,
    protection: Unknown,
    flags: Unknown,
    fd: Unknown,
    offset: Optional,
    advise: Optional,
  ) -> napi::Result<Self> {
    let mapping = map_checked(
      env,
      &size,
      &protection,
      &flags,
      &fd,
      offset.as_ref(),
      advise.as_ref(),
      SizeLimit::SafeInteger,
    )?;
    let len = mapping.len();
    Ok(Mapping::owning(Some(mapping), 0, len))
  }

  /// Opens and maps a file like `openSync` (same options, same checks) and returns a handle;
  /// the range may exceed `buffer.constants.MAX_LENGTH`. A plain static function: it ignores
  /// `this`, so `const { open } = Mapping; open(path)` works too.
  ///
  /// @param path - The file's path.
  /// @param options - As for `openSync`.
  #[napi(
    ts_args_type = "path: string | Buffer | Uint8Array, options?: OpenOptions | null",
    ts_return_type = "Mapping"
  )]
  pub fn open(env: &Env, path: Unknown, options: Optional) -> napi::Result<Self> {
    let request = Request::parse(env, &path, options.as_ref(), MAX_SAFE_INTEGER as u64)?;
    let opened = request
      .run()
      .map_err(|failure| errors::throw(env, request.error(env, &failure)))?;
    Ok(Mapping::owning(opened.mapping, opened.start, opened.len))
  }

  /// The mapping's length in bytes; 0 after `unmap()`.
  #[napi(getter)]
  pub fn length(&self) -> f64 {
    if self.unmapped() {
      0.0
    } else {
      self.len as f64
    }
  }

  /// Pages lost under the mapping (the file was truncated) and replaced with zeros; see the
  /// module's `faults()`.
  #[napi(getter)]
  pub fn faults(&self) -> f64 {
    self.core().map_or(0.0, |m| m.faults() as f64)
  }

  /// Whether `unmap()` has been called.
  #[napi(getter)]
  pub fn unmapped(&self) -> bool {
    self.unmapped.get() || self.core().is_some_and(|m| m.is_unmapped())
  }

  /// Copies `length` bytes from `offset` into a new Buffer. Throws `ERR_MMAP_LOST_PAGES` when
  /// some of them lie on pages lost to truncation of the file (see `write`): they would read as
  /// zeros that are not in the file.
  ///
  /// @param offset - Default: `0`.
  /// @param length - Default: to the end of the mapping.
  #[napi(ts_args_type = "offset?: number, length?: number", ts_return_type = "Buffer")]
  pub fn read<'env>(
    &self,
    env: &'env Env,
    offset: Optional,
    length: Optional,
  ) -> napi::Result<Unknown<'env>> {
    let (mapping, offset, length) = self.range(env, offset.as_ref(), length.as_ref())?;
    check_buffer_length(env, length)?;
    base(env, mapping.as_deref(), length, READ)?;
    check_allocation(env, length)?;
    let faults = mapping.as_deref().map_or(0, Core::faults);
    // The Buffer first (allocating may collect garbage and run finalizers), then the copy, a
    // native access of the mapping that nothing changes meanwhile (`Core::accessing`).
    let (result, data) =
      raw::new_buffer(env, length).map_err(|status| errors::pending_or(env, "napi_create_buffer", status))?;
    if let Some(mapping) = mapping.as_deref().filter(|_| length > 0) {
      let copied = mapping.accessing(READ.0, || {
        if mapping.is_unmapped() {
          return false; // unmapped on another thread since `range` looked
        }
        // SAFETY: `offset..offset + length` lies inside the mapping (`range`), live and readable
        // while this access runs (`accessing`); `data` is the new Buffer's `length` bytes.
        unsafe { ptr::copy_nonoverlapping(mapping.addr().add(offset).cast_const(), data, length) };
        true
      });
      match copied {
        Some(true) => {}
        Some(false) => return Err(errors::unmapped(env)),
        None => return Err(not_allowed(env, READ.1, "PROT_READ")),
      }
    }
    check_not_lost(env, mapping.as_deref(), faults, offset, length, READ)?;
    // SAFETY: `result` was just created in this env's current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), result) })
  }

  /// Copies bytes from `offset` into `target` (as many as fit, up to the end of the mapping) and
  /// returns how many were copied. Throws `ERR_MMAP_LOST_PAGES`, as `read` does, when some of
  /// them lie on pages lost to truncation (`target` then holds the copy, zeros for those).
  ///
  /// @param target - Where to copy to.
  /// @param offset - Where in the mapping to start. Default: `0`.
  #[napi(ts_args_type = "target: ArrayBufferView, offset?: number")]
  pub fn read_into(&self, env: &Env, target: Unknown, offset: Optional) -> napi::Result<f64> {
    self.copy(env, &target, "target", offset, READ)
  }

  /// Copies `source` into the mapping at `offset` (as much as fits) and returns how many bytes
  /// were written. When some of them land on pages lost to truncation of the file (past its new
  /// end; see `faults`), throws an `Error` with `code: 'ERR_MMAP_LOST_PAGES'` instead of a count:
  /// those bytes are in the anonymous page that replaced the lost one (a read of the mapping
  /// gives them back) and never reach the file. The bytes before the lost pages were written.
  /// Told by the lost tail overlapping the range, or by a page lost during the copy (anywhere in
  /// the mapping); a page lost earlier to an I/O error shows only in `faults`.
  ///
  /// @param source - The bytes to write.
  /// @param offset - Where in the mapping to start. Default: `0`.
  #[napi(ts_args_type = "source: ArrayBufferView, offset?: number")]
  pub fn write(&self, env: &Env, source: Unknown, offset: Optional) -> napi::Result<f64> {
    self.copy(env, &source, "source", offset, WRITE)
  }

  /// A zero-copy Buffer over `length` bytes from `offset`. Throws `ERR_MMAP_NO_EXTERNAL_BUFFERS`
  /// where the runtime forbids external buffers, and a RangeError above
  /// `buffer.constants.MAX_LENGTH`. After `unmap()` a view keeps its length and reads zeros.
  ///
  /// @param offset - Default: `0`.
  /// @param length - Default: to the end of the mapping.
  #[napi(ts_args_type = "offset?: number, length?: number", ts_return_type = "Buffer")]
  pub fn view<'env>(
    &self,
    env: &'env Env,
    offset: Optional,
    length: Optional,
  ) -> napi::Result<Unknown<'env>> {
    let (mapping, offset, length) = self.range(env, offset.as_ref(), length.as_ref())?;
    check_buffer_length(env, length)?;
    let Some(mapping) = mapping.filter(|_| length > 0) else {
      return self.read(env, Optional(None), Optional(Some(args::zero(env))));
    };
    let buffer = buffer::create(env, mapping, offset, length)?;
    // SAFETY: `buffer` was just created in this env's current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), buffer) })
  }

  /// Like the module's `sync`, on the mapping, with the same forms and defaults:
  /// `sync([offset[, length[, blocking[, invalidate]]]])` or `sync(blocking[, invalidate])`; an
  /// `offset` or `length` of 0 or omitted means the whole mapping (its start; to its end).
  #[napi(
    ts_args_type = "...args: [offset?: number, length?: number, blocking?: boolean, invalidate?: boolean] | [blocking: boolean, invalidate?: boolean]"
  )]
  pub fn sync(
    &self,
    env: &Env,
    offset: Optional,
    length: Optional,
    blocking: Optional,
    invalidate: Optional,
  ) -> napi::Result<()> {
    let request = SyncRequest::parse(env, offset, length, blocking, invalidate)?;
    request.apply(env, &self.target(env)?)
  }

  /// Like the module's `flush(buffer, options)`: `msync(MS_SYNC)` on the thread pool.
  #[napi(
    ts_args_type = "options?: { offset?: number, length?: number, invalidate?: boolean } | null",
    ts_return_type = "Promise<void>"
  )]
  pub fn flush<'env>(&self, env: &'env Env, options: Optional) -> napi::Result<Unknown<'env>> {
    errors::promise(env, self.flush_task(env, options))
  }
}

impl Mapping {
  fn flush_task(&self, env: &Env, options: Optional) -> napi::Result<AsyncTask<Flush>> {
    let options = FlushOptions::parse(env, &options)?;
    Ok(AsyncTask::new(options.task(env, self.target(env)?)?))
  }
}

#[napi]
impl Mapping {
  /// Like the module's `advise`, with the same two forms and checks: exactly `advise(advice)`
  /// or `advise(offset, length, advice)` (`offset` and `length` may be `undefined`); anything
  /// else throws `ERR_INVALID_ARG_TYPE` naming the missing `advice`.
  #[napi(
    ts_args_type = "...args: [advice: number] | [offset: number | undefined, length: number | undefined, advice: number]"
  )]
  pub fn advise(&self, env: &Env, a: Optional, b: Optional, advice: Optional) -> napi::Result<()> {
    let request = AdviseRequest::parse(env, a, b, advice)?;
    request.apply(env, &self.target(env)?)
  }

  /// Like the module's `incore`: `[pagesNotResident, pagesResident]`.
  #[napi(ts_return_type = "[number, number]")]
  pub fn incore(&self, env: &Env) -> napi::Result<Vec<f64>> {
    crate::api::ops::page_counts(env, &self.target(env)?)
  }

  /// Like the module's `lock`: `mlock` over a range (default: all of it).
  #[napi(ts_args_type = "offset?: number, length?: number")]
  pub fn lock(&self, env: &Env, offset: Optional, length: Optional) -> napi::Result<()> {
    crate::api::ops::lock_target(env, &self.target(env)?, offset, length, true)
  }

  /// Like the module's `unlock`: `munlock` over a range (default: all of it).
  #[napi(ts_args_type = "offset?: number, length?: number")]
  pub fn unlock(&self, env: &Env, offset: Optional, length: Optional) -> napi::Result<()> {
    crate::api::ops::lock_target(env, &self.target(env)?, offset, length, false)
  }

  /// Unmaps now: every `view()` Buffer keeps its length and reads zeros from then on (as after
  /// the module's `unmap()`), and later calls throw `ERR_MMAP_UNMAPPED` (except `unmap()`
  /// itself, which may be called again).
  #[napi]
  pub fn unmap(&self, env: &Env) -> napi::Result<()> {
    if let Some(mapping) = self.core() {
      mapping
        .unmap()
        .map_err(|err| errors::throw_system(env, &err, "mmap", None))?;
    }
    self.mapping.replace(None);
    self.unmapped.set(true);
    Ok(())
  }
}

impl Mapping {
  fn owning(mapping: Option<Shared>, start: usize, len: usize) -> Self {
    Mapping {
      mapping: RefCell::new(mapping),
      start,
      len,
      unmapped: Cell::new(false),
    }
  }

  /// The mapping, if there is one (not empty, not unmapped through this handle).
  fn core(&self) -> Option<Shared> {
    self.mapping.borrow().clone()
  }

  /// What the toolkit's operations work on (the same [`Target`] a view resolves to); an
  /// `ERR_MMAP_UNMAPPED` error after `unmap()`.
  fn target(&self, env: &Env) -> napi::Result<Target> {
    if self.unmapped() {
      return Err(errors::unmapped(env));
    }
    Ok(Target {
      mapping: self.core(),
      offset: self.start,
      len: self.len,
    })
  }

  /// The one bounds check, then the range as bytes from the start of the OS mapping.
  fn range(
    &self,
    env: &Env,
    offset: Option<&Unknown>,
    length: Option<&Unknown>,
  ) -> napi::Result<(Option<Shared>, usize, usize)> {
    let target = self.target(env)?;
    let (offset, length) = target.range(env, offset, length)?;
    Ok((target.mapping, offset, length))
  }

  /// `readInto` (`READ`: mapping to `view`) and `write` (`WRITE`: `view` to mapping): as many
  /// bytes as both sides hold from `offset`.
  fn copy(
    &self,
    env: &Env,
    view: &Unknown,
    name: &str,
    offset: Optional,
    direction: (i32, &str),
  ) -> napi::Result<f64> {
    let writes_view = direction == READ;
    let (view_ptr, view_len, view_mapping) = view_bytes(env, view, name, writes_view)?;
    let (mapping, offset, available) = self.range(env, offset.as_ref(), None)?;
    let count = available.min(view_len);
    base(env, mapping.as_deref(), count, direction)?;
    let faults = mapping.as_deref().map_or(0, Core::faults);
    let (Some(mapping), true) = (mapping.as_deref(), count > 0) else {
      return Ok(0.0); // nothing to copy (an empty mapping has no bytes)
    };
    let copy = || {
      if mapping.is_unmapped() {
        return Copied::Unmapped; // unmapped on another thread since `range` looked
      }
      // SAFETY: `offset..offset + count` lies in the mapping (`range`), and the view's `count`
      // bytes in the view (`view_bytes`); both are live and have the rights the copy needs
      // while the accesses around this run (`accessing`); `ptr::copy` (memmove) handles a view
      // of this same mapping.
      let mapped = unsafe { mapping.addr().add(offset) };
      if writes_view {
        // SAFETY: as above.
        unsafe { ptr::copy(mapped.cast_const(), view_ptr, count) };
      } else {
        // SAFETY: as above.
        unsafe { ptr::copy(view_ptr.cast_const(), mapped, count) };
      }
      Copied::Done
    };
    // Both sides are native accesses: of the mapping, and of the view's mapping if it is one of
    // ours (once, with both rights, when it is the same one: an access never nests in another
    // of the same mapping).
    let view_needs = if writes_view { WRITE.0 } else { READ.0 };
    let outcome = match view_mapping.as_deref() {
      Some(other) if ptr::eq(other, mapping) => mapping
        .accessing(direction.0 | view_needs, copy)
        .unwrap_or(Copied::Denied),
      // The one at the lower address first, in every thread: an access that waits for a change
      // of the second while holding the first then never closes a cycle with another thread.
      Some(other) if (other.addr() as usize) < (mapping.addr() as usize) => other
        .accessing(view_needs, || {
          mapping.accessing(direction.0, copy).unwrap_or(Copied::Denied)
        })
        .unwrap_or(Copied::ViewDenied),
      Some(other) => mapping
        .accessing(direction.0, || {
          other.accessing(view_needs, copy).unwrap_or(Copied::ViewDenied)
        })
        .unwrap_or(Copied::Denied),
      None => mapping.accessing(direction.0, copy).unwrap_or(Copied::Denied),
    };
    match outcome {
      Copied::Done => {}
      Copied::Unmapped => return Err(errors::unmapped(env)),
      Copied::Denied => {
        let needs = if direction == READ {
          "PROT_READ"
        } else {
          "PROT_WRITE"
        };
        // Same mapping: the view's side may be the one without the rights.
        return Err(
          match view_mapping.is_some_and(|other| ptr::eq(&*other, mapping)) {
            true if mapping.guaranteed_prot() & direction.0 != 0 => {
              errors::throw(env, errors::access_error(env, writes_view, name))
            }
            _ => not_allowed(env, direction.1, needs),
          },
        );
      }
      Copied::ViewDenied => return Err(errors::throw(env, errors::access_error(env, writes_view, name))),
    }
    check_not_lost(env, Some(mapping), faults, offset, count, direction)?;
    Ok(count as f64)
  }
}

/// The bytes of a TypedArray or DataView as a raw range (not copied), checked for the access
/// the copy needs (see `view::check_access`).
fn view_bytes(
  env: &Env,
  value: &Unknown,
  name: &str,
  write: bool,
) -> napi::Result<(*mut u8, usize, Option<Shared>)> {
  let expected = "an instance of Buffer, TypedArray or DataView";
  let raw = view::raw_view(env, args::raw(value)).filter(|view| view.arraybuffer != args::raw(value));
  let Some(view) = raw.filter(|_| args::type_of(value) == napi::bindgen_prelude::ValueType::Object) else {
    return Err(args::invalid_type(env, name, expected, value));
  };
  if view.data.is_null() {
    return Ok((ptr::null_mut(), 0, None));
  }
  let mapping = view::check_access(env, &view, write, name)?;
  Ok((view.data, view.len, mapping))
}

/// Node-API's Buffer constructors abort the process when the memory cannot be had (Node 18–22,
/// Deno: V8's fatal out-of-memory handler) where JavaScript's own `Buffer.alloc` throws a
/// `RangeError` ("Array buffer allocation failed"). So a large copy first asks the allocator for
/// as much, untouched, and gives it back: when even that fails, it throws what `Buffer.alloc`
/// throws (a `RangeError` with V8's message), with the code `ERR_MEMORY_ALLOCATION_FAILED`.
fn check_allocation(env: &Env, length: usize) -> napi::Result<()> {
  const PROBE_FROM: usize = 1 << 20;
  if length < PROBE_FROM || Vec::<u8>::new().try_reserve_exact(length).is_ok() {
    return Ok(());
  }
  let message = format!("Array buffer allocation failed (a copy of {length} bytes)");
  Err(errors::throw_coded(
    env,
    Class::RangeError,
    "ERR_MEMORY_ALLOCATION_FAILED",
    &message,
  ))
}

/// A Buffer of `length` bytes must fit `buffer.constants.MAX_LENGTH`.
fn check_buffer_length(env: &Env, length: usize) -> napi::Result<()> {
  let max = crate::api::map::buffer_max_length();
  if length as u64 > max {
    let message = format!(
      "The value of \"length\" is out of range. It must be <= {max} (buffer.constants.MAX_LENGTH). Received {length}"
    );
    return Err(errors::throw_coded(
      env,
      Class::RangeError,
      "ERR_OUT_OF_RANGE",
      &message,
    ));
  }
  Ok(())
}

/// How a copy under [`Core::accessing`] ended.
enum Copied {
  Done,
  /// The mapping was unmapped (on another thread) after the arguments were checked.
  Unmapped,
  /// The mapping lost the rights the copy needs (`protect()` on another thread).
  Denied,
  /// The view's mapping lost them.
  ViewDenied,
}

const READ: (i32, &str) = (crate::api::constants::PROT_READ, "read");
const WRITE: (i32, &str) = (crate::api::constants::PROT_WRITE, "write");

/// The mapping's first byte, for a copy of `count` bytes that needs the rights `needs`; an
/// `ERR_MMAP_ACCESS` error when some byte lacks them (made without them, or `protect()`ed):
/// the copy would fault inside our code.
fn base(
  env: &Env,
  mapping: Option<&Core>,
  count: usize,
  (needs, what): (i32, &str),
) -> napi::Result<*mut u8> {
  match mapping {
    _ if count == 0 => Ok(ptr::null_mut()),
    Some(mapping) if mapping.guaranteed_prot() & needs != 0 => Ok(mapping.addr()),
    _ => Err(not_allowed(
      env,
      what,
      if needs == READ.0 {
        "PROT_READ"
      } else {
        "PROT_WRITE"
      },
    )),
  }
}

/// After a copy of `count` bytes at `offset` (from the start of the OS mapping) that began when
/// the mapping had `faults_before` lost pages: `ERR_MMAP_LOST_PAGES` when some of those bytes
/// lie on pages lost to truncation, which SIGBUS recovery replaced with anonymous zero pages
/// (see `faults()`): a write there stays in that anonymous memory and never reaches the file;
/// a read there gives zeros (or what an earlier write left there) that are not in the file.
/// Told by the lost tail ([`Core::lost_from`]) overlapping the range, or by a page lost while
/// the copy ran (the fault count moved: possibly on another thread, elsewhere in the mapping,
/// which is also reported). An isolated page lost before the copy (an I/O error, not a
/// truncation) shows only in `faults`.
fn check_not_lost(
  env: &Env,
  mapping: Option<&Core>,
  faults_before: usize,
  offset: usize,
  count: usize,
  (_, what): (i32, &str),
) -> napi::Result<()> {
  let Some(mapping) = mapping.filter(|_| count > 0) else {
    return Ok(());
  };
  let lost_from = mapping.lost_from();
  let overlaps = lost_from < offset + count;
  if !overlaps && mapping.faults() == faults_before {
    return Ok(());
  }
  let detail = if what == "write" {
    "what lands there stays in anonymous memory and never reaches the file"
  } else {
    "what is read there is zeros, not the file"
  };
  let message = if overlaps {
    format!(
      "Cannot {what} {count} bytes: the bytes from {} of them on lie on pages past the end of the \
       file (lost to its truncation, or mapped past its end); {detail} (see faults)",
      lost_from.saturating_sub(offset)
    )
  } else {
    format!(
      "Cannot {what} {count} bytes: a page of the mapping was lost during the copy (the file was \
       truncated, or the page could not be read in: an I/O error, or a full file system); {detail} \
       (see faults)"
    )
  };
  Err(errors::throw_coded(
    env,
    Class::Error,
    "ERR_MMAP_LOST_PAGES",
    &message,
  ))
}

fn not_allowed(env: &Env, what: &str, needs: &str) -> napi::Error {
  // The rights known for the whole mapping are those every page has: after a protect() of part
  // of it, copies anywhere in it are refused (checking each page's rights would read
  // /proc/self/maps on every copy).
  let message = format!(
    "Cannot {what}: the mapping, or part of it, is without {needs} (mapped so, or protect()ed so; \
     a protect() of all of it gives it back)"
  );
  errors::throw_coded(env, Class::Error, "ERR_MMAP_ACCESS", &message)
}
