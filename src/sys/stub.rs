//! The OS layer where node-mmap has no port yet (everything but Unix; Windows is to come): the
//! same functions and the same `consts` module as `unix.rs`, so that the crate compiles there,
//! but every call that would map, change or wait on memory fails with `ENOTSUP`, which the
//! JavaScript boundary turns into a Node-style system error (`code: 'ENOTSUP'`). Nothing is
//! mapped, so there is no fault to handle: [`signals`] installs nothing.

use std::io;

/// The error of every operation here: `ENOTSUP` (`operation not supported`).
fn unsupported() -> io::Error {
  io::Error::from_raw_os_error(libc::ENOTSUP)
}

/// The constants the module exports. No mapping can be made here, so their values only keep
/// the module's shape: the POSIX numbers most systems use for the basic set (so that arguments
/// are still checked as elsewhere), 0 ("no effect") for the rest. A real port sets its own.
pub mod consts {
  /// A path length no file system here takes.
  pub const PATH_MAX: usize = 4096;
  type Int = i32;
  pub const PROT_NONE: Int = 0;
  pub const PROT_READ: Int = 1;
  pub const PROT_WRITE: Int = 2;
  pub const PROT_EXEC: Int = 4;
  pub const MAP_SHARED: Int = 1;
  pub const MAP_PRIVATE: Int = 2;
  pub const MAP_ANONYMOUS: Int = 0x20;
  pub const MAP_ANON: Int = MAP_ANONYMOUS;
  pub const MS_ASYNC: Int = 1;
  pub const MS_INVALIDATE: Int = 2;
  pub const MS_SYNC: Int = 4;
  pub const MADV_NORMAL: Int = 0;
  pub const MADV_RANDOM: Int = 1;
  pub const MADV_SEQUENTIAL: Int = 2;
  pub const MADV_WILLNEED: Int = 3;
  pub const MADV_DONTNEED: Int = 4;
  pub const MADV_COLD: Int = 0;
  pub const MADV_DODUMP: Int = 0;
  pub const MADV_DOFORK: Int = 0;
  pub const MADV_DONTDUMP: Int = 0;
  pub const MADV_DONTFORK: Int = 0;
  pub const MADV_FREE: Int = 0;
  pub const MADV_HUGEPAGE: Int = 0;
  pub const MADV_KEEPONFORK: Int = 0;
  pub const MADV_MERGEABLE: Int = 0;
  pub const MADV_NOHUGEPAGE: Int = 0;
  pub const MADV_PAGEOUT: Int = 0;
  pub const MADV_REMOVE: Int = 0;
  pub const MADV_UNMERGEABLE: Int = 0;
  pub const MADV_WIPEONFORK: Int = 0;
  pub const MAP_HUGETLB: Int = 0;
  pub const MAP_HUGE_1GB: Int = 0;
  pub const MAP_HUGE_2MB: Int = 0;
  pub const MAP_HUGE_MASK: Int = 0;
  pub const MAP_HUGE_SHIFT: Int = 0;
  pub const MAP_LOCKED: Int = 0;
  pub const MAP_NONBLOCK: Int = 0;
  pub const MAP_NORESERVE: Int = 0;
  pub const MAP_POPULATE: Int = 0;
  pub const MAP_SHARED_VALIDATE: Int = 0;
  pub const MAP_STACK: Int = 0;
  pub const MAP_SYNC: Int = 0;
  /// Flags that choose or constrain the address of a mapping: none here.
  pub const PLACEMENT_FLAGS: &[(&str, Int)] = &[];
  /// The bits of `flags` that name the mapping type (shared, private).
  pub const MAP_TYPE_MASK: Int = MAP_SHARED | MAP_PRIVATE;
}

/// The `errno` Node reports for the errno value `errno`: its negation (libuv's rule wherever
/// the C library's numbers are used).
pub fn node_errno(errno: i32) -> i32 {
  -errno
}

/// A page size to compute with (4 KiB): nothing is mapped here.
pub fn page_size() -> usize {
  4096
}

/// A path's bytes (its encoding of the moment: this target maps no file anyway).
pub fn path_bytes(path: &std::path::Path) -> &[u8] {
  path.as_os_str().as_encoded_bytes()
}

/// The path made of `bytes`, read as UTF-8.
pub fn path_from_bytes(bytes: Vec<u8>) -> std::path::PathBuf {
  std::path::PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

/// No descriptor to map with here: -1, which every operation refuses.
pub fn file_descriptor(_file: &std::fs::File) -> i32 {
  -1
}

/// `set_len` (nothing is mapped here anyway).
pub fn grow_file(file: &std::fs::File, size: u64) -> Result<(), (io::Error, &'static str)> {
  file.set_len(size).map_err(|err| (err, "ftruncate"))
}

/// The error the standard library returned, as it is.
pub fn std_error(err: io::Error) -> io::Error {
  err
}

/// Nothing is mapped here.
pub const SHRINKS_UNDER_VIEWS: bool = true;

/// No file is mapped here, so none needs probing.
pub const PSEUDO_FILES: bool = false;

/// No file is created here ([`open`] fails first).
pub fn remove_created(_path: &std::path::Path, _file: &std::fs::File) {}

/// Not known here: never the same.
pub fn same_file(_a: &std::fs::Metadata, _b: &std::fs::Metadata) -> bool {
  false
}

/// Nothing to check here (every resize fails with ENOTSUP).
pub fn check_resize(
  _file: &std::fs::File,
  _current: u64,
  _target: u64,
  _empties: bool,
) -> Result<(), (io::Error, &'static str)> {
  Ok(())
}

/// Every resize fails here.
pub fn empty_file(file: &std::fs::File, _current: u64, target: u64) -> Result<(), (io::Error, &'static str)> {
  file.set_len(target).map_err(|err| (err, "ftruncate"))
}

/// No identity: every futex key is an address here.
pub fn shared_identity(_addr: usize) -> Option<(u64, u64, u64)> {
  None
}

/// No data-limit guard here.
pub fn data_limit() -> Option<usize> {
  None
}

/// Not read here.
pub fn data_used() -> Option<usize> {
  None
}

/// No address-space guard here.
pub fn address_space_limit() -> Option<(usize, bool)> {
  None
}

/// Not known here.
pub fn address_space_used() -> Option<usize> {
  None
}

/// No list of kernel mappings to keep a descriptor of here.
pub fn keep_maps_descriptor() {}

/// No list of kernel mappings here: `ENOTSUP`.
pub fn read_maps() -> io::Result<Vec<u8>> {
  Err(unsupported())
}

/// No kernel mappings to look up here.
pub fn kernel_mappings_at<const N: usize>(_addrs: [usize; N]) -> Option<[Option<(usize, usize)>; N]> {
  None
}

/// No huge pages here.
pub fn huge_page_size_of_file(_fd: i32) -> Option<usize> {
  None
}

/// Cannot be told here: `false`.
pub fn is_main_thread() -> bool {
  false
}

/// Cannot be told here: `false` (not regular: a shared mapping is taken as fixed in size).
pub fn file_kind(_fd: i32) -> io::Result<bool> {
  Ok(false)
}

/// No huge pages here.
pub fn smallest_huge_page() -> Option<usize> {
  None
}

/// The alignment a file offset needs: the page size.
pub fn allocation_granularity() -> usize {
  page_size()
}

/// Nothing is ever moved here.
///
/// # Safety
/// None needed: nothing happens.
pub unsafe fn move_back(_from: *mut u8, _from_len: usize, _to: *mut u8, _to_len: usize) -> io::Result<()> {
  Err(unsupported())
}

/// `ENOTSUP`: no mapping here.
pub fn map(_len: usize, _prot: i32, _flags: i32, _fd: i32, _offset: u64) -> io::Result<*mut u8> {
  Err(unsupported())
}

/// `ENOTSUP` (nothing was mapped to give back).
///
/// # Safety
/// As on Unix: `addr..addr + len` is a range this crate mapped and still owns.
pub unsafe fn unmap(_addr: *mut u8, _len: usize) -> io::Result<()> {
  Err(unsupported())
}

/// `ENOTSUP`.
///
/// # Safety
/// As on Unix: `addr..addr + len` is a range this crate mapped and still owns.
pub unsafe fn replace_with_placeholder(_addr: *mut u8, _len: usize) -> io::Result<()> {
  Err(unsupported())
}

/// Nothing to give back: no placeholder is made here.
///
/// # Safety
/// As on Unix.
pub unsafe fn clear_placeholder(_addr: *mut u8, _len: usize) {}

/// `ENOTSUP`.
///
/// # Safety
/// As on Unix: the range lies within a mapping this crate owns.
pub unsafe fn advise(_addr: *mut u8, _len: usize, _advice: i32) -> io::Result<()> {
  Err(unsupported())
}

/// `ENOTSUP`.
///
/// # Safety
/// As on Unix: the range lies within a mapping this crate owns.
pub unsafe fn sync(_addr: *mut u8, _len: usize, _flags: i32) -> io::Result<()> {
  Err(unsupported())
}

/// `ENOTSUP`.
///
/// # Safety
/// As on Unix: the range lies within a mapping this crate owns.
pub unsafe fn resident_pages(_addr: *mut u8, _len: usize) -> io::Result<(usize, usize)> {
  Err(unsupported())
}

/// `ENOTSUP`.
///
/// # Safety
/// As on Unix: the range lies within a mapping this crate owns.
pub unsafe fn lock(_addr: *mut u8, _len: usize, _lock: bool) -> io::Result<()> {
  Err(unsupported())
}

/// `ENOTSUP`.
///
/// # Safety
/// As on Unix: the range lies within a mapping this crate owns.
pub unsafe fn protect(_addr: *mut u8, _len: usize, _prot: i32) -> io::Result<()> {
  Err(unsupported())
}

/// `ENOTSUP`.
///
/// # Safety
/// As on Unix: the range is a whole mapping this crate owns.
pub unsafe fn remap(_addr: *mut u8, _len: usize, _new_len: usize) -> io::Result<*mut u8> {
  Err(unsupported())
}

/// How a [`wait`] ended (the same type as on Unix; no wait ends here but in error).
#[derive(Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Wait {
  Woken,
  NotEqual,
  TimedOut,
  Cancelled,
}

/// `ENOTSUP`: no futex-style waiting here.
///
/// # Safety
/// As on Unix.
pub unsafe fn wait(
  _addr: *const u32,
  _expected: u32,
  _deadline: Option<libc::timespec>,
  _private: bool,
) -> io::Result<Wait> {
  Err(unsupported())
}

/// `ENOTSUP`: no futex-style waiting here.
///
/// # Safety
/// As on Unix.
pub unsafe fn wait_or_cancel(
  _addr: *const u32,
  _expected: u32,
  _private: bool,
  _cancels: &[*const u32],
  _deadline: Option<libc::timespec>,
) -> io::Result<Wait> {
  Err(unsupported())
}

/// Nothing waits here.
///
/// # Safety
/// As on Unix.
pub unsafe fn wake_private(_addr: *const u32) {}

/// `ENOTSUP`: no futex-style waking here.
///
/// # Safety
/// As on Unix.
pub unsafe fn wake(_addr: *const u32, _count: i32, _private: bool) -> io::Result<usize> {
  Err(unsupported())
}

/// No deadline arithmetic where nothing waits.
pub fn deadline_after(_millis: f64) -> libc::timespec {
  libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
  }
}

/// `ENOTSUP`: files are not opened for mapping here.
pub fn open(_path: &std::path::Path, _write: bool, _create_new: bool) -> io::Result<std::fs::File> {
  Err(unsupported())
}

/// No unnamed files here.
pub fn create_unnamed(_dir: &std::path::Path) -> Option<std::fs::File> {
  None
}

/// `ENOTSUP`.
pub fn link_unnamed(_file: &std::fs::File, _path: &std::path::Path) -> io::Result<()> {
  Err(unsupported())
}

/// The signal handlers' side, with nothing to handle: no mapping exists here, so [`install`]
/// installs nothing, and the primitives a hook would use report that they cannot help.
pub mod signals {
  /// Which of the two signals a fault came with (the same type as on Unix).
  #[derive(Clone, Copy, PartialEq, Eq)]
  #[allow(dead_code)]
  pub enum Signal {
    Bus,
    Segv,
  }

  /// A fault at an address (the same type as on Unix; none is ever reported here).
  #[derive(Clone, Copy)]
  pub struct Fault {
    pub signal: Signal,
    pub addr: usize,
    pub write: Option<bool>,
  }

  /// What a hook decides for a fault (the same type as on Unix).
  #[allow(dead_code)]
  pub enum Outcome {
    Recovered,
    Fatal,
    NotOurs,
  }

  /// The core's answer to a fault (never asked here).
  pub type Hook = fn(Fault) -> Outcome;

  /// No lost page is replaced here.
  pub const CAN_REPLACE_LOST_PAGES: bool = false;

  /// The name diagnostics give a fault's signal (never asked here).
  pub fn name(signal: Signal) -> &'static [u8] {
    match signal {
      Signal::Bus => b"SIGBUS",
      Signal::Segv => b"SIGSEGV",
    }
  }

  /// Installs nothing: nothing is mapped, so nothing faults.
  pub fn install(_hook: Hook) {}

  /// A non-zero number (no recovery runs here, so no lock is ever taken with it).
  pub fn thread_id() -> usize {
    1
  }

  /// `false`: nothing is replaced here.
  ///
  /// # Safety
  /// As on Unix: the range is the caller's own.
  pub unsafe fn replace_with_zeros(_addr: usize, _len: usize, _prot: i32) -> bool {
    false
  }

  /// `false`: nothing is replaced here.
  ///
  /// # Safety
  /// As on Unix: the range is the caller's own.
  pub unsafe fn replace_with_copy(_addr: usize, _len: usize, _prot: i32) -> Copied {
    Copied::Failed
  }

  /// What `replace_with_copy` did (as on Unix; here always `Failed`).
  #[derive(Clone, Copy, PartialEq, Eq)]
  #[allow(dead_code)]
  pub enum Copied {
    /// The range is now a copy of its bytes.
    Yes,
    /// The range could not be read after all.
    Lost,
    /// Nothing was done.
    Failed,
  }

  /// `false`: cannot be told here.
  pub fn is_readable(_addr: usize) -> bool {
    false
  }

  /// `false`: cannot be told here.
  pub fn is_lost(_addr: usize) -> bool {
    false
  }

  /// `None`: no list of kernel mappings here.
  pub fn count_maps() -> Option<usize> {
    None
  }

  /// `None`: no list of kernel mappings here.
  pub fn maps_region(_addr: usize, _path: impl FnMut(&[u8])) -> Option<(usize, usize, i32)> {
    None
  }

  /// A writer that writes nothing (no fault is ever diagnosed here).
  pub struct Out;

  impl Out {
    pub fn new(_fd: i32) -> Self {
      Out
    }
    pub fn push(&mut self, _text: &[u8]) {}
    pub fn number(&mut self, _n: usize) {}
    pub fn flush(&mut self) {}
  }
}
