//! `openSync(path, options)` and `open(path, options)`: "stop slurping" in one call. Opens the
//! file, sizes it, maps it and closes the descriptor; any byte offset works (the mapping starts
//! at the page below it and the Buffer starts exactly at `offset`).

use std::io;
use std::path::PathBuf;

use napi::bindgen_prelude::{AsyncTask, Unknown, ValueType};
use napi::{Env, ScopedTask};
use napi_derive::napi;

use crate::core::mapping::Shared;
use crate::js::args::Optional;

use crate::api::constants as c;
use crate::api::map::{buffer_max_length, check_advice};
use crate::core::mapping::{Failure, Mapping};
use crate::js::args::{self, MAX_SAFE_INTEGER};
use crate::js::buffer;
use crate::js::errors::{self, Class};
use crate::js::options::Options;
use crate::js::raw;
use crate::sys;

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
    // would run the caller's code, or read a view's memory). Only its start is read: it is
    // compared with 'r', 'r+' and 'w+', and shown (cut, as Node cuts it) when it is none of them.
    let text = mode.as_ref().and_then(|m| args::string_start(env, m));
    let (write, create) = match (mode.as_ref(), text.as_deref()) {
      (None, _) => (false, false),
      (Some(_), Some("r")) => (false, false),
      (Some(_), Some("r+")) => (true, false),
      (Some(_), Some("w+")) => (true, true),
      (Some(mode), _) => {
        let received = match &text {
          Some(text) => args::inspected_string(text, args::string_length(env, mode) == Some(text.len())),
          None => args::describe(env, mode),
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
    let request = Request {
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
    };
    if request.create {
      // 'w+' gives the file exactly `size` bytes (default 0): the range can be checked now,
      // before the file is opened, let alone created or truncated.
      let target = request.target_size(0);
      if let Err(failure) = request.check_range(target) {
        return Err(errors::throw(env, request.error(env, &failure)));
      }
    }
    Ok(request)
  }

  /// The protection the mapping gets: writable only when the mode asks to write (`'r+'`,
  /// `'w+'`). A private mapping of a file opened `'r'` is read-only too: a writable private
  /// mapping is charged in full to the commit limit, and populating it would copy every page.
  /// A private mapping is writable in every mode: a copy-on-write copy of the file that is the
  /// caller's to change (writes never reach the file). Writable costs nothing until written:
  /// `populate` reads the pages in without write-faulting them (see [`populate`]).
  fn protection(&self) -> i32 {
    if self.write || !self.shared {
      c::PROT_READ | c::PROT_WRITE
    } else {
      c::PROT_READ
    }
  }

  fn map_flags(&self) -> i32 {
    if self.shared {
      c::MAP_SHARED
    } else {
      c::MAP_PRIVATE
    }
  }

  /// The size the file has once the call succeeds, from its size `current` now.
  fn target_size(&self, current: u64) -> u64 {
    match (self.create, self.size) {
      (true, size) => size.unwrap_or(0),
      (false, Some(size)) => current.max(size),
      (false, None) => current,
    }
  }

  /// The number of bytes to map from `offset` in a file of `file_len` bytes.
  fn check_range(&self, file_len: u64) -> Result<u64, OpenFailure> {
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
    Ok(len)
  }

  /// The system calls: open, fstat, mmap, ftruncate, madvise. The file is closed on return.
  ///
  /// A call that fails leaves the file as it was: it is opened without `O_TRUNC`, created only
  /// when missing (`O_EXCL`) and then removed again on failure; its kind and size are checked
  /// and the range is checked against the size it will have before anything changes; the
  /// mapping is made before the file is resized (a mapping may reach past the end of a file);
  /// a failing `madvise` after a resize puts the old size back; and `'w+'` empties an existing
  /// file last, once nothing else can fail.
  ///
  /// A missing file is made with no name (`O_TMPFILE`, where the file system has it), checked
  /// and mapped, and named only once all of that has succeeded; it is then mapped again by its
  /// name. A failing call never made it appear, and so cannot take away a file another process
  /// opened at that path meanwhile. If something took the name first, the call starts over
  /// with that file, as if it had been there.
  pub fn run(&self) -> Result<Opened, OpenFailure> {
    let mut unnamed = true;
    // The file this call just made and named: found again by its name, it is not emptied a
    // second time ('w+'), which would wipe what another process wrote into it since it has a
    // name. (A file that took the name instead is emptied, as if it had been there.)
    let mut named: Option<std::fs::Metadata> = None;
    for _ in 0..16 {
      let (file, created) = self.open_file(unnamed)?;
      let ours = match (&named, created.is_none()) {
        (Some(made), true) => file.metadata().is_ok_and(|found| sys::same_file(made, &found)),
        _ => false,
      };
      let result = self.map_file(&file, ours);
      match created {
        Some(Created::Unnamed(path)) => {
          // Every check and every system call that can fail has passed on the unnamed file.
          drop(result?);
          match sys::link_unnamed(&file, &path) {
            // Named now: map it again by its name, so that /proc/self/maps (and the fault
            // diagnostics that read it) show the path, not the unnamed file's "(deleted)".
            // What can fail has just succeeded on the same file, so this does too.
            Ok(()) => {
              named = file.metadata().ok();
              continue;
            }
            // Taken meanwhile: use that file, as if it had been there.
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => continue,
            // Any other refusal (a path the link cannot name): the named create, whose errors
            // are those `fs` gives.
            Err(_) => unnamed = false,
          }
        }
        Some(Created::Named(path)) => {
          if result.is_err() {
            sys::remove_created(&path, &file);
          }
          return result;
        }
        None => return result,
      }
    }
    Err(os("open")(io::Error::from_raw_os_error(libc::EEXIST)))
  }

  /// The file, and how this call created it, if it did.
  fn open_file(&self, unnamed: bool) -> Result<(std::fs::File, Option<Created>), OpenFailure> {
    let mut path = self.path.clone();
    // Another process may create the file between the two opens, or remove it: then try again.
    // A symlink to a missing file fails `O_EXCL` (which never follows symlinks): then the file
    // is created where the link points, as `O_CREAT` alone would, by following it here (at most
    // 40 links, the kernel's own limit).
    let mut links = 0;
    for _ in 0..16 + 40 {
      match sys::open(&path, self.write, false) {
        Ok(file) => return Ok((file, None)),
        Err(err) if self.create && err.raw_os_error() == Some(libc::ENOENT) => {}
        Err(err) => return Err(os("open")(err)),
      }
      // Nothing at all at the path (not even a dangling symlink, which is followed below): a
      // file with no name yet, where the file system has them.
      // Not for a path that names a directory (a trailing '/'): the named create gives the error
      // `fs` gives there.
      let names_dir = sys::path_bytes(&path).ends_with(b"/");
      if unnamed
        && !names_dir
        && std::fs::symlink_metadata(&path).is_err_and(|err| err.kind() == io::ErrorKind::NotFound)
      {
        let dir = match path.parent() {
          Some(dir) if !dir.as_os_str().is_empty() => dir,
          _ => std::path::Path::new("."),
        };
        if let Some(file) = sys::create_unnamed(dir) {
          return Ok((file, Some(Created::Unnamed(path))));
        }
      }
      match sys::open(&path, true, true) {
        Ok(file) => return Ok((file, Some(Created::Named(path)))),
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
          if let Ok(target) = std::fs::read_link(&path) {
            links += 1;
            if links > 40 {
              return Err(os("open")(io::Error::from_raw_os_error(libc::ELOOP)));
            }
            path = path
              .parent()
              .map_or_else(|| target.clone(), |dir| dir.join(&target));
          }
        }
        Err(err) => return Err(os("open")(err)),
      }
    }
    Err(os("open")(io::Error::from_raw_os_error(libc::EEXIST)))
  }

  /// Maps `file` as the options say; `made_here`: this call made the file (it is not emptied
  /// again for 'w+').
  fn map_file(&self, file: &std::fs::File, made_here: bool) -> Result<Opened, OpenFailure> {
    let metadata = file.metadata().map_err(|err| os("fstat")(sys::std_error(err)))?;
    let kind = metadata.file_type();
    // Only regular files: a directory is EISDIR (as `fs.readFileSync` says), and FIFOs,
    // sockets and devices are ENODEV (what mmap(2) answers for a file it cannot map) rather
    // than a hang or an empty Buffer (their size is 0). Map a device with `map()` and an fd.
    if !kind.is_file() {
      let errno = if kind.is_dir() { libc::EISDIR } else { libc::ENODEV };
      return Err(os("mmap")(io::Error::from_raw_os_error(errno)));
    }
    let current = metadata.len();
    let fd = sys::file_descriptor(file);
    // Where nothing will be mapped, a one-page mapping (no reservation, unmapped at once) asks
    // the kernel whether the file can be mapped at all: procfs files say 0 bytes whatever they
    // hold, sysfs files 4096, and both are ENODEV instead of an empty Buffer. First for an
    // empty file, so that its ENODEV comes before a range error.
    let probe = || {
      let flags = self.map_flags() | c::MAP_NORESERVE;
      Mapping::new(sys::page_size(), self.protection(), flags, fd, 0, None)
        .map(drop)
        .map_err(os("mmap"))
    };
    if current == 0 && sys::PSEUDO_FILES {
      probe()?;
    }
    let target = self.target_size(current);
    let len = self.check_range(target)?;
    if len == 0 && current != 0 && sys::PSEUDO_FILES {
      probe()?;
    }
    let granularity = sys::allocation_granularity() as u64;
    let start = (self.offset % granularity) as usize;
    let mapping = if len == 0 {
      None
    } else {
      let map_len = usize::try_from(len).map_err(|_| OpenFailure::TooLong { len })? + start;
      let path = sys::path_bytes(&self.path);
      let offset = self.offset - start as u64;
      let mapping = Mapping::new(
        map_len,
        self.protection(),
        self.map_flags(),
        fd,
        offset,
        Some(path),
      );
      Some((mapping.map_err(os("mmap"))?, map_len))
    };
    // `mapping` unmaps itself if we return early. What the resize below would refuse is
    // refused now, while the file is as it was: 'w+' emptied a file and then failed to size it
    // (EFBIG past RLIMIT_FSIZE or the file system's largest file, EPERM on a memfd sealed
    // against growing), and a destructive advice punched its hole before a resize that failed
    // (attack pass 8).
    let empties = self.create && current > 0 && !made_here;
    if target != current || empties {
      sys::check_resize(file, current, target, empties).map_err(|(err, syscall)| os(syscall)(err))?;
    }
    // The advice first, while the file is as it was
    // (madvise(2) past the end of a file is no error, and touches nothing): a failing advice
    // then leaves nothing to undo. (Growing first and shrinking back on failure lost what
    // another writer put in the grown part meanwhile.)
    if let (Some((mapping, map_len)), Some(advice)) = (&mapping, self.advice) {
      // The user's range only: the bytes before `offset` on its first page are not theirs to
      // discard (a destructive advice is rounded in to whole pages of this range).
      if let Err(failure) = mapping.advise(start, *map_len - start, advice) {
        return Err(match failure {
          Failure::Os(err) => os("madvise")(err),
          Failure::Unmapped | Failure::Access { .. } => {
            os("madvise")(io::Error::from_raw_os_error(libc::EINVAL))
          }
        });
      }
    }
    // From here on the file changes. 'w+' of a file with something in it sizes it and then
    // zeroes it in place (`sys::empty_file`): no step after the first can be refused for a
    // size, so a call that throws has changed nothing, even when another process changes the
    // file's limits or seals meanwhile.
    if target > current && !empties {
      sys::grow_file(file, target).map_err(|(err, syscall)| os(syscall)(err))?;
    }
    if empties && target < current && !sys::SHRINKS_UNDER_VIEWS {
      // Windows cuts no file shorter than a view of it: every check has passed on this mapping
      // of the same file; it goes, the file is emptied and cut, and is mapped again (only a
      // lack of memory or address space can refuse now what was just granted).
      drop(mapping);
      sys::empty_file(file, current, target).map_err(|(err, syscall)| os(syscall)(err))?;
      return self.map_file(file, true);
    }
    if empties {
      sys::empty_file(file, current, target).map_err(|(err, syscall)| os(syscall)(err))?;
    }
    if let (Some((mapping, map_len)), true) = (&mapping, self.populate) {
      populate(mapping, *map_len);
    }
    Ok(Opened {
      mapping: mapping.map(|(mapping, _)| mapping),
      start,
      len: len as usize,
    })
  }

  /// The JS error for a failure, with `path`.
  pub fn error(&self, env: &Env, failure: &OpenFailure) -> napi::sys::napi_value {
    match failure {
      OpenFailure::Os { err, syscall } => errors::system(env, err, syscall, Some(&self.shown)),
      OpenFailure::PastEnd { file_len } => {
        let what = match (self.create, self.size) {
          (true, _) => format!(
            "the size mode 'w+' gives '{}': options.size, default 0",
            self.shown
          ),
          (false, Some(_)) => format!("the size of '{}' after options.size", self.shown),
          (false, None) => format!(
            "the size of '{}'; pass options.size with mode 'r+' or 'w+' to grow the file",
            self.shown
          ),
        };
        let message = format!(
          "The value of \"options.offset + options.length\" is out of range. It must be <= {file_len} ({what}). \
           Received {}",
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
        buffer::create(env, mapping, opened.start, opened.len).map_err(|_| raw::take_exception(env))?
      }
      None => raw::empty_buffer(env).map_err(|_| raw::take_exception(env))?,
    };
    // SAFETY: `buffer` was just created in this env's current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), buffer) })
  }
}

/// A string path, or a Buffer/Uint8Array of path bytes; never with NUL bytes.
fn parse_path(env: &Env, value: &Unknown) -> napi::Result<(PathBuf, String)> {
  let refuse = || {
    args::invalid_type(
      env,
      "path",
      "of type string or an instance of Buffer or Uint8Array",
      value,
    )
  };
  // Copied once, fallibly (a string can hold 1.5 GiB of UTF-8, a Buffer more): ENOMEM, as the
  // open it is for would fail, rather than an abort.
  let out_of_memory = || {
    let err = io::Error::from_raw_os_error(libc::ENOMEM);
    errors::throw_system(env, &err, "open", None)
  };
  // A Uint8Array is copied only as far as a path can go (its NUL bytes are looked for in
  // place); a string whole.
  let (bytes, len, nul) = match args::type_of(value) {
    ValueType::String => {
      let bytes = args::string_value(env, value)
        .ok_or_else(out_of_memory)?
        .into_bytes();
      let (len, nul) = (bytes.len(), bytes.contains(&0));
      (bytes, len, nul)
    }
    ValueType::Object => args::path_bytes(env, value, "path", sys::consts::PATH_MAX)?.ok_or_else(refuse)?,
    _ => return Err(refuse()),
  };
  if nul {
    let shown = shown_path(&bytes, len).replace('\0', "\\x00");
    let message = format!(
      "The argument 'path' must be a string or Uint8Array without null bytes. Received {}",
      args::inspected_string(&shown, len <= SHOWN_PATH_BYTES)
    );
    return Err(errors::throw_coded(
      env,
      Class::TypeError,
      "ERR_INVALID_ARG_VALUE",
      &message,
    ));
  }
  let shown = shown_path(&bytes, len);
  // No file has a longer path: the kernel refuses it (ENAMETOOLONG) without looking. Refused
  // here as the kernel would, before the standard library copies it once more to call open.
  if len >= sys::consts::PATH_MAX {
    let err = io::Error::from_raw_os_error(libc::ENAMETOOLONG);
    return Err(errors::throw_system(env, &err, "open", Some(&shown)));
  }
  let path = sys::path_from_bytes(bytes);
  // A relative path is taken from the directory current now: the call may look the path up
  // more than once (on the thread pool, for `open()`), and a `process.chdir()` in between must
  // not make it two files.
  let path = match path.is_relative() && !path.as_os_str().is_empty() {
    true => std::env::current_dir().map_or(path.clone(), |dir| dir.join(&path)),
    false => path,
  };
  Ok((path, shown))
}

/// What error messages (and their `path`) show of a path: all of it up to [`SHOWN_PATH_BYTES`]
/// (every path a file can have is shorter), else its start and `...`: never a second copy of a
/// huge path.
const SHOWN_PATH_BYTES: usize = sys::consts::PATH_MAX;

/// `bytes` are the first bytes of a path of `len` bytes.
fn shown_path(bytes: &[u8], len: usize) -> String {
  if len <= SHOWN_PATH_BYTES && bytes.len() == len {
    return String::from_utf8_lossy(bytes).into_owned();
  }
  let mut shown = String::from_utf8_lossy(&bytes[..1024]).into_owned();
  shown.push_str("...");
  shown
}

/// Reads the whole range in now without writing to it: `MADV_POPULATE_READ` (Linux 5.14+) maps
/// every page readable, so a private mapping stays copy-on-write (`MAP_POPULATE` write-faults a
/// writable private mapping, copying the whole file into anonymous memory); elsewhere, and on
/// older kernels, `MADV_WILLNEED` reads it into the page cache. A hint, as `MAP_POPULATE` is:
/// failures are ignored.
fn populate(mapping: &Mapping, len: usize) {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  if mapping.advise(0, len, libc::MADV_POPULATE_READ).is_ok() {
    return;
  }
  let _ = mapping.advise(0, len, c::MADV_WILLNEED);
}

/// How a call created the file it maps.
enum Created {
  /// With no name (`O_TMPFILE`): named `path` only when the call succeeds.
  Unnamed(PathBuf),
  /// At `path` (`O_EXCL`), where unnamed files cannot be made: removed again on failure.
  Named(PathBuf),
}

/// Opens the file at `path`, maps the part of it that `options` picks, closes the file and
/// returns a Buffer that is the mapping. An empty range gives an empty Buffer. Only regular
/// files are mapped. A call that fails leaves the file as it was (not created, not resized,
/// not truncated).
///
/// @param path - The file's path.
/// @param options - A plain object, `null` or `undefined`. `mode`: `'r'` (read-only, the
///   default), `'r+'` (read-write) or `'w+'` (read-write, created or truncated). `size`: grow the
///   file to at least this many bytes (`'r+'`/`'w+'` only). `offset`: the byte where the Buffer
///   starts, any value (default `0`). `length`: bytes to map (default: to the end of the file).
///   `shared`: `MAP_SHARED` (default `true`); with `false` a private copy-on-write mapping,
///   writable in every mode (writes never reach the file). `populate`: read the whole range in now, without
///   writing to it (default `false`). `advise`: a `MADV_*` value.
/// @throws {Error} `ERR_MMAP_NO_EXTERNAL_BUFFERS` where the runtime forbids external buffers
///   (use `Mapping.open`): after the argument checks, before the file is opened or changed.
/// @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `options` is an array, a boxed primitive, an
///   ArrayBuffer or a view of one, or a function.
/// @throws {RangeError} `ERR_OUT_OF_RANGE` when the range reaches past the end of the file (the
///   size it would have after `size`, or after `'w+'`).
/// @throws {Error} `EISDIR` (`syscall: 'mmap'`) for a directory; `ENODEV` for a FIFO, socket or
///   device, or a file the kernel cannot map (procfs; `EIO` for most of `/proc`): never a
///   hang, never an empty Buffer. `EAGAIN` (`syscall: 'open'`) at once for a file under another
///   process's lease.
#[napi(
  ts_args_type = "path: string | Buffer | Uint8Array, options?: OpenOptions | null",
  ts_return_type = "Buffer"
)]
pub fn open_sync<'env>(env: &'env Env, path: Unknown, options: Optional) -> napi::Result<Unknown<'env>> {
  let request = Request::parse(env, &path, options.as_ref(), buffer_max_length())?;
  buffer::refuse_without_external_buffers(env)?;
  let result = request.run();
  request
    .finish(env, result)
    .map_err(|error| errors::throw(env, error))
}

/// `openSync` on the libuv thread pool: the Promise fulfills with the Buffer.
pub struct Open {
  request: Request,
  /// The caller's env's list of mappings made for it (a worker's), to note the one made on the
  /// thread pool in: released at the env's end even if the Promise never settles (Deno).
  made_for: Option<crate::core::mapping::MadeFor>,
}

impl<'env> ScopedTask<'env> for Open {
  type Output = Result<Opened, OpenFailure>;
  type JsValue = Unknown<'env>;

  fn compute(&mut self) -> napi::Result<Self::Output> {
    let opened = self.request.run();
    if let (
      Ok(Opened {
        mapping: Some(mapping),
        ..
      }),
      Some(made),
    ) = (&opened, &self.made_for)
    {
      made.note(mapping);
    }
    Ok(opened)
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
  ts_args_type = "path: string | Buffer | Uint8Array, options?: OpenOptions | null",
  ts_return_type = "Promise<Buffer>"
)]
pub fn open<'env>(env: &'env Env, path: Unknown, options: Optional) -> napi::Result<Unknown<'env>> {
  let request = Request::parse(env, &path, options.as_ref(), buffer_max_length())
    .and_then(|request| buffer::refuse_without_external_buffers(env).map(|()| request));
  let made_for = crate::core::mapping::made_here();
  errors::promise(
    env,
    request.map(|request| AsyncTask::new(Open { request, made_for })),
  )
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
  /// `true`: writes reach the file (`MAP_SHARED`); `false`: private copy-on-write, writable in
  /// every mode (writes never reach the file). Default: `true`.
  pub shared: Option<bool>,
  /// Read the whole range into memory now, without writing to it (`MADV_POPULATE_READ` on Linux
  /// 5.14+, else `MADV_WILLNEED`): a private mapping stays copy-on-write. A hint: failures are
  /// ignored. Default: `false`.
  pub populate: Option<bool>,
  /// A `MADV_*` value applied right after mapping. Default: none.
  pub advise: Option<i32>,
}
