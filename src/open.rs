//! `openSync(path, options)` and `open(path, options)`: "stop slurping" in one call. Opens the
//! file, sizes it, maps it and closes the descriptor; any byte offset works (the mapping starts
//! at the page below it and the Buffer starts exactly at `offset`).

use std::io;
use std::path::PathBuf;

use napi::bindgen_prelude::{AsyncTask, Unknown, ValueType};
use napi::{Env, ScopedTask};
use napi_derive::napi;

use crate::args::Optional;
use crate::shared::Shared;

use crate::args::{self, MAX_SAFE_INTEGER};
use crate::constants as c;
use crate::errors::{self, Class};
use crate::map::{buffer_max_length, check_advice};
use crate::mapping::{Failure, Mapping};
use crate::options::Options;
use crate::{buffer, sys};

const OPTIONS: &[&str] = &["mode", "size", "offset", "length", "shared", "populate", "advise"];

/// Everything `open` needs, checked on the JS thread.
pub struct Request {
  path: PathBuf,
  /// The path as the user gave it, for error messages.
  shown: String,
  write: bool,
  create: bool,
  size: Option<u64>,
  offset: u64,
  length: Option<u64>,
  shared: bool,
  populate: bool,
  advice: Option<i32>,
  max_length: u64,
}

/// The result of the system calls: the mapping (none for zero bytes) and where the Buffer sits.
pub struct Opened {
  pub mapping: Option<Shared>,
  pub start: usize,
  pub len: usize,
}

/// Why the system calls stopped.
pub enum OpenFailure {
  Os {
    err: io::Error,
    syscall: &'static str,
  },
  /// `offset + length` lies past the end of a file of `file_len` bytes.
  PastEnd {
    file_len: u64,
  },
  /// The range is larger than the largest Buffer the runtime can make.
  TooLong {
    len: u64,
  },
}

fn os(syscall: &'static str) -> impl Fn(io::Error) -> OpenFailure {
  move |err| OpenFailure::Os { err, syscall }
}

impl Request {
  pub fn parse(
    env: &Env,
    path: &Unknown,
    options: Option<&Unknown>,
    max_length: u64,
  ) -> napi::Result<Request> {
    let (path, shown) = parse_path(env, path)?;
    let options = Options::new(env, options, OPTIONS)?;
    let mode = options.get(env, "mode")?;
    // Only a string is read as text: anything else is refused without converting it (String()
    // would run the caller's code, or read a view's memory).
    let text = |m: &Unknown| {
      (args::type_of(m) == ValueType::String)
        .then(|| args::string_value(env, m))
        .flatten()
    };
    let (write, create) = match mode.as_ref().map(|m| (args::type_of(m), text(m))) {
      None => (false, false),
      Some((ValueType::String, Some(mode))) if mode == "r" => (false, false),
      Some((ValueType::String, Some(mode))) if mode == "r+" => (true, false),
      Some((ValueType::String, Some(mode))) if mode == "w+" => (true, true),
      Some(_) => {
        let received = match mode.as_ref().map(|m| (args::type_of(m), text(m))) {
          Some((ValueType::String, Some(text))) => format!("'{text}'"),
          _ => mode.as_ref().map(|m| args::describe(env, m)).unwrap_or_default(),
        };
        return Err(args::invalid_value(
          env,
          "options.mode",
          "must be 'r', 'r+' or 'w+'",
          &received,
        ));
      }
    };
    let max = MAX_SAFE_INTEGER as i64;
    let size = args::optional_integer(env, options.get(env, "size")?.as_ref(), "options.size", 0, max)?;
    if size.is_some() && !write {
      let reason = "needs mode 'r+' or 'w+' (a file opened read-only cannot be resized)";
      return Err(args::invalid_value(
        env,
        "options.size",
        reason,
        &size.unwrap_or(0).to_string(),
      ));
    }
    let offset = args::optional_integer(
      env,
      options.get(env, "offset")?.as_ref(),
      "options.offset",
      0,
      max,
    )?;
    let length_limit = max_length.min(max as u64) as i64;
    let length = options.get(env, "length")?;
    let length = args::optional_integer(env, length.as_ref(), "options.length", 0, length_limit)?;
    let shared = args::optional_boolean(env, options.get(env, "shared")?.as_ref(), "options.shared")?;
    let populate = args::optional_boolean(env, options.get(env, "populate")?.as_ref(), "options.populate")?;
    let advice = check_advice(env, options.get(env, "advise")?.as_ref(), "options.advise")?;
    Ok(Request {
      path,
      shown,
      write,
      create,
      size: size.map(|n| n as u64),
      offset: offset.unwrap_or(0) as u64,
      length: length.map(|n| n as u64),
      shared: shared.unwrap_or(true),
      populate: populate.unwrap_or(false),
      advice,
      max_length,
    })
  }

  /// The protection the mapping gets: writable unless opened read-only and shared.
  fn protection(&self) -> i32 {
    if self.write || !self.shared {
      c::PROT_READ | c::PROT_WRITE
    } else {
      c::PROT_READ
    }
  }

  /// The system calls: open, grow, stat, map, advise. The file is closed on return.
  pub fn run(&self) -> Result<Opened, OpenFailure> {
    let file = sys::open(&self.path, self.write, self.create, self.create).map_err(os("open"))?;
    if let Some(size) = self.size {
      let current = file.metadata().map_err(os("fstat"))?.len();
      if current < size {
        file.set_len(size).map_err(os("ftruncate"))?;
      }
    }
    let file_len = file.metadata().map_err(os("fstat"))?.len();
    let available = file_len
      .checked_sub(self.offset)
      .ok_or(OpenFailure::PastEnd { file_len })?;
    let len = self.length.unwrap_or(available);
    if len > available {
      return Err(OpenFailure::PastEnd { file_len });
    }
    if len > self.max_length {
      return Err(OpenFailure::TooLong { len });
    }
    if len == 0 {
      return Ok(Opened {
        mapping: None,
        start: 0,
        len: 0,
      });
    }
    let granularity = sys::allocation_granularity() as u64;
    let start = (self.offset % granularity) as usize;
    let map_len = usize::try_from(len).map_err(|_| OpenFailure::TooLong { len })? + start;
    let prot = self.protection();
    let mut flags = if self.shared {
      c::MAP_SHARED
    } else {
      c::MAP_PRIVATE
    };
    if self.populate {
      flags |= c::MAP_POPULATE;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let path = std::os::unix::ffi::OsStrExt::as_bytes(self.path.as_os_str());
    let mapping =
      Mapping::new(map_len, prot, flags, fd, self.offset - start as u64, Some(path)).map_err(os("mmap"))?;
    let failed = |failure| match failure {
      Failure::Os(err) => OpenFailure::Os {
        err,
        syscall: "madvise",
      },
      Failure::Unmapped => OpenFailure::Os {
        err: io::Error::from_raw_os_error(libc::EINVAL),
        syscall: "madvise",
      },
    };
    if self.populate && c::MAP_POPULATE == 0 {
      mapping.advise(0, map_len, c::MADV_WILLNEED).map_err(failed)?;
    }
    if let Some(advice) = self.advice {
      // The user's range only: the bytes before `offset` on its first page are not theirs to
      // discard (a destructive advice is rounded in to whole pages of this range).
      mapping.advise(start, map_len - start, advice).map_err(failed)?;
    }
    Ok(Opened {
      mapping: Some(mapping),
      start,
      len: len as usize,
    })
  }

  /// The JS error for a failure, with `path`.
  pub fn error(&self, env: &Env, failure: &OpenFailure) -> napi::sys::napi_value {
    match failure {
      OpenFailure::Os { err, syscall } => errors::system(env, err, syscall, Some(&self.shown)),
      OpenFailure::PastEnd { file_len } => {
        let message = format!(
          "The value of \"options.offset + options.length\" is out of range. It must be <= {} (the size of \
           '{}'; pass options.size with mode 'r+' or 'w+' to grow the file). Received {}",
          file_len,
          self.shown,
          self.offset.saturating_add(self.length.unwrap_or(0)),
        );
        errors::create(env, Class::RangeError, "ERR_OUT_OF_RANGE", &message)
      }
      OpenFailure::TooLong { len } => {
        let message = format!(
          "The value of \"options.length\" is out of range. It must be <= {} (buffer.constants.MAX_LENGTH, the \
           largest Buffer this runtime can make); map the file in windows with options.offset and \
           options.length. Received {len}",
          self.max_length
        );
        errors::create(env, Class::RangeError, "ERR_OUT_OF_RANGE", &message)
      }
    }
  }

  fn finish<'env>(
    &self,
    env: &'env Env,
    result: Result<Opened, OpenFailure>,
  ) -> Result<Unknown<'env>, napi::sys::napi_value> {
    let opened = result.map_err(|failure| self.error(env, &failure))?;
    let buffer = match opened.mapping {
      Some(mapping) => {
        buffer::create(env, mapping, opened.start, opened.len).map_err(|_| take_exception(env))?
      }
      None => empty_buffer(env).ok_or_else(|| take_exception(env))?,
    };
    // SAFETY: `buffer` was just created in this env's current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), buffer) })
  }
}

/// A string path, or a Buffer/Uint8Array of path bytes; never with NUL bytes.
fn parse_path(env: &Env, value: &Unknown) -> napi::Result<(PathBuf, String)> {
  let bytes = match args::type_of(value) {
    ValueType::String => args::string_value(env, value).unwrap_or_default().into_bytes(),
    ValueType::Object => match args::uint8_bytes(env, value, "path")? {
      Some(bytes) => bytes,
      None => {
        return Err(args::invalid_type(
          env,
          "path",
          "of type string or an instance of Buffer",
          value,
        ))
      }
    },
    _ => {
      return Err(args::invalid_type(
        env,
        "path",
        "of type string or an instance of Buffer",
        value,
      ))
    }
  };
  let shown = String::from_utf8_lossy(&bytes).into_owned();
  if bytes.contains(&0) {
    let message = format!(
      "The argument 'path' must be a string or Uint8Array without null bytes. Received '{}'",
      shown.replace('\0', "\\x00")
    );
    return Err(errors::throw_coded(
      env,
      Class::TypeError,
      "ERR_INVALID_ARG_VALUE",
      &message,
    ));
  }
  let path: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(bytes);
  Ok((PathBuf::from(path), shown))
}

fn empty_buffer(env: &Env) -> Option<napi::sys::napi_value> {
  let mut data = std::ptr::null_mut();
  let mut buffer = std::ptr::null_mut();
  // SAFETY: both out-pointers are valid; a zero-length Buffer owns no memory we touch.
  let status = unsafe { napi::sys::napi_create_buffer(env.raw(), 0, &mut data, &mut buffer) };
  (status == napi::sys::Status::napi_ok).then_some(buffer)
}

/// Takes the pending exception (to reject a Promise with it instead of throwing).
fn take_exception(env: &Env) -> napi::sys::napi_value {
  let mut error = std::ptr::null_mut();
  // SAFETY: `error` is a valid out-pointer; with nothing pending it stays undefined.
  unsafe { napi::sys::napi_get_and_clear_last_exception(env.raw(), &mut error) };
  error
}

/// Opens the file at `path`, maps the part of it that `options` picks, closes the file and
/// returns a Buffer that is the mapping. An empty range gives an empty Buffer.
///
/// @param path - The file's path.
/// @param options - `mode`: `'r'` (read-only, the default), `'r+'` (read-write) or `'w+'`
///   (read-write, created or truncated). `size`: grow the file to at least this many bytes first
///   (`'r+'`/`'w+'` only). `offset`: the byte where the Buffer starts, any value (default `0`).
///   `length`: bytes to map (default: to the end of the file). `shared`: `MAP_SHARED` (default
///   `true`); with `false` writes stay private (copy-on-write, also allowed in mode `'r'`).
///   `populate`: read the whole range in now (default `false`). `advise`: a `MADV_*` value.
/// @throws {RangeError} `ERR_OUT_OF_RANGE` when the range reaches past the end of the file.
#[napi(
  ts_args_type = "path: string | Buffer | Uint8Array, options?: OpenOptions",
  ts_return_type = "Buffer"
)]
pub fn open_sync<'env>(env: &'env Env, path: Unknown, options: Optional) -> napi::Result<Unknown<'env>> {
  let request = Request::parse(env, &path, options.as_ref(), buffer_max_length())?;
  let result = request.run();
  request
    .finish(env, result)
    .map_err(|error| errors::throw(env, error))
}

/// `openSync` on the libuv thread pool: the Promise fulfills with the Buffer.
pub struct Open {
  request: Request,
}

impl<'env> ScopedTask<'env> for Open {
  type Output = Result<Opened, OpenFailure>;
  type JsValue = Unknown<'env>;

  fn compute(&mut self) -> napi::Result<Self::Output> {
    Ok(self.request.run())
  }

  fn resolve(&mut self, env: &'env Env, output: Self::Output) -> napi::Result<Unknown<'env>> {
    self
      .request
      .finish(env, output)
      .map_err(|error| errors::reject_with(env, error))
  }
}

/// Like `openSync`, but the system calls run on the libuv thread pool.
///
/// @param path - The file's path.
/// @param options - As for `openSync`.
/// @returns A Promise that fulfills with the Buffer, or rejects with a Node-style error.
#[napi(
  ts_args_type = "path: string | Buffer | Uint8Array, options?: OpenOptions",
  ts_return_type = "Promise<Buffer>"
)]
pub fn open<'env>(env: &'env Env, path: Unknown, options: Optional) -> napi::Result<Unknown<'env>> {
  let request = Request::parse(env, &path, options.as_ref(), buffer_max_length());
  errors::promise(env, request.map(|request| AsyncTask::new(Open { request })))
}

/// Options of `openSync` and `open`.
// Only its type is used (index.d.ts); the options are read by `Request::parse`.
#[allow(dead_code)]
#[napi(object)]
pub struct OpenOptions {
  /// `'r'` (read-only), `'r+'` (read-write) or `'w+'` (read-write; created, or truncated).
  /// Default: `'r'`.
  #[napi(ts_type = "'r' | 'r+' | 'w+'")]
  pub mode: Option<String>,
  /// Grow the file to at least this many bytes before mapping (`'r+'`/`'w+'` only).
  pub size: Option<f64>,
  /// The byte of the file where the Buffer starts: any value. Default: `0`.
  pub offset: Option<f64>,
  /// Bytes to map. Default: from `offset` to the end of the file.
  pub length: Option<f64>,
  /// `true`: writes reach the file (`MAP_SHARED`); `false`: private copy-on-write. Default: `true`.
  pub shared: Option<bool>,
  /// Read the whole range into memory now (`MAP_POPULATE`). Default: `false`.
  pub populate: Option<bool>,
  /// A `MADV_*` value applied right after mapping. Default: none.
  pub advise: Option<i32>,
}
