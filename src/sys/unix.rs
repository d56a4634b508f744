//! The POSIX side of the OS layer: the only file (with its siblings for other platforms) that
//! calls into the operating system.
//!
//! Every function takes plain integers and raw addresses and returns `io::Result`, with the
//! error taken by `io::Error::last_os_error()` right after the failing call. Validation happens
//! above this layer; these functions assume their arguments were checked.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The OS's own numbers for the constants the module exports. Linux has the full set; other
/// Unix systems get 0 for flags they lack ("no effect" there).
pub mod consts {
  pub use libc::{MADV_DONTNEED, MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED};
  pub use libc::{MAP_ANON, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED};
  pub use libc::{MS_ASYNC, MS_INVALIDATE, MS_SYNC};
  pub use libc::{PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE};
  /// The longest path the kernel takes, its terminating NUL included.
  pub const PATH_MAX: usize = libc::PATH_MAX as usize;

  #[cfg(any(target_os = "linux", target_os = "android"))]
  mod platform {
    pub use libc::{
      MADV_COLD, MADV_DODUMP, MADV_DOFORK, MADV_DONTDUMP, MADV_DONTFORK, MADV_FREE, MADV_HUGEPAGE,
      MADV_KEEPONFORK, MADV_MERGEABLE, MADV_NOHUGEPAGE, MADV_PAGEOUT, MADV_REMOVE, MADV_UNMERGEABLE,
      MADV_WIPEONFORK,
    };
    pub use libc::{
      MAP_HUGETLB, MAP_HUGE_1GB, MAP_HUGE_2MB, MAP_HUGE_MASK, MAP_HUGE_SHIFT, MAP_LOCKED, MAP_NONBLOCK,
      MAP_NORESERVE, MAP_POPULATE, MAP_SHARED_VALIDATE, MAP_STACK, MAP_SYNC,
    };
    /// Flags that choose or constrain the address of a mapping: always refused, since the API
    /// has no address parameter and a fixed mapping could overwrite the process's own memory.
    pub const PLACEMENT_FLAGS: &[(&str, libc::c_int)] = &[
      ("MAP_FIXED", libc::MAP_FIXED),
      ("MAP_FIXED_NOREPLACE", libc::MAP_FIXED_NOREPLACE),
      // x86-64 only: no such flag elsewhere.
      #[cfg(target_arch = "x86_64")]
      ("MAP_32BIT", libc::MAP_32BIT),
      ("MAP_GROWSDOWN", libc::MAP_GROWSDOWN),
    ];
    /// The bits of `flags` that name the mapping type (shared, private, shared-validate).
    pub const MAP_TYPE_MASK: libc::c_int = 0x0f;
  }

  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  mod platform {
    use libc::c_int;
    pub const MADV_COLD: c_int = 0;
    pub const MADV_DODUMP: c_int = 0;
    pub const MADV_DOFORK: c_int = 0;
    pub const MADV_DONTDUMP: c_int = 0;
    pub const MADV_DONTFORK: c_int = 0;
    pub use libc::MADV_FREE;
    pub const MADV_HUGEPAGE: c_int = 0;
    pub const MADV_KEEPONFORK: c_int = 0;
    pub const MADV_MERGEABLE: c_int = 0;
    pub const MADV_NOHUGEPAGE: c_int = 0;
    pub const MADV_PAGEOUT: c_int = 0;
    pub const MADV_REMOVE: c_int = 0;
    pub const MADV_UNMERGEABLE: c_int = 0;
    pub const MADV_WIPEONFORK: c_int = 0;
    pub const MAP_HUGETLB: c_int = 0;
    pub const MAP_HUGE_1GB: c_int = 0;
    pub const MAP_HUGE_2MB: c_int = 0;
    pub const MAP_HUGE_MASK: c_int = 0;
    pub const MAP_HUGE_SHIFT: c_int = 0;
    pub const MAP_LOCKED: c_int = 0;
    pub const MAP_NONBLOCK: c_int = 0;
    pub use libc::MAP_NORESERVE;
    pub const MAP_POPULATE: c_int = 0;
    pub const MAP_SHARED_VALIDATE: c_int = 0;
    pub const MAP_STACK: c_int = 0;
    pub const MAP_SYNC: c_int = 0;
    pub const PLACEMENT_FLAGS: &[(&str, c_int)] = &[("MAP_FIXED", libc::MAP_FIXED)];
    pub const MAP_TYPE_MASK: c_int = libc::MAP_SHARED | libc::MAP_PRIVATE;
  }

  pub use platform::*;
}

/// The `errno` Node reports for the errno value `errno`: its negation, as libuv gives it here.
pub fn node_errno(errno: i32) -> i32 {
  -errno
}

/// `sysconf(_SC_PAGESIZE)`, asked once: `map()` needs it several times per call, and glibc's
/// `sysconf` is a call through a long switch each time (0.2% of a `map` in a profile). Once
/// cached it is an atomic load, which the signal handlers rely on (`signals::install` asks first).
pub fn page_size() -> usize {
  static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
  match PAGE_SIZE.load(Ordering::Relaxed) {
    0 => {
      // SAFETY: sysconf has no preconditions; it only reads a system value.
      let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
      // POSIX guarantees a positive page size; 4096 is only a fallback for a broken libc.
      let size = usize::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096);
      PAGE_SIZE.store(size, Ordering::Relaxed);
      size
    }
    size => size,
  }
}

/// The size of the pages of `fd`'s filesystem if they are huge pages (Linux hugetlbfs: a file
/// there, or a memfd made with `MFD_HUGETLB`), else `None`. A mapping of such a file is made of
/// those pages, whatever the flags of `mmap` say.
pub fn huge_page_size_of_file(fd: i32) -> Option<usize> {
  #[cfg(target_os = "linux")]
  {
    const HUGETLBFS_MAGIC: u64 = 0x9584_58f6;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes a `statfs` into `stat` when it succeeds and reads nothing else.
    if unsafe { libc::fstatfs(fd, stat.as_mut_ptr()) } != 0 {
      return None;
    }
    // SAFETY: fstatfs succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    // `f_type` is signed on some targets: compare its low 32 bits, where the magic number is.
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on glibc x86-64, u64 on musl arm64
    let hugetlbfs = (stat.f_type as u64) & 0xffff_ffff == HUGETLBFS_MAGIC;
    let size = usize::try_from(stat.f_bsize)
      .ok()
      .filter(|size| size.is_power_of_two());
    size.filter(|_| hugetlbfs)
  }
  #[cfg(not(target_os = "linux"))]
  {
    let _ = fd;
    None
  }
}

/// Whether the calling thread is the process's main thread (where Node runs its main
/// JavaScript environment; worker threads are others). `false` where that cannot be told.
/// Asked of the system once per thread (on Linux that is two system calls).
pub fn is_main_thread() -> bool {
  thread_local! {
    static MAIN: bool = ask_main_thread();
  }
  MAIN.try_with(|main| *main).unwrap_or(false)
}

fn ask_main_thread() -> bool {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    // SAFETY: neither call takes arguments or touches memory; both always succeed.
    unsafe { libc::gettid() == libc::getpid() }
  }
  #[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd"
  ))]
  {
    // SAFETY: takes no arguments and touches no memory.
    unsafe { libc::pthread_main_np() != 0 }
  }
  #[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd"
  )))]
  {
    false
  }
}

/// A path's bytes, as the OS takes them (any bytes but NUL on Unix).
pub fn path_bytes(path: &std::path::Path) -> &[u8] {
  std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())
}

/// The path made of `bytes` (a Buffer's or a string's), as the OS takes them.
pub fn path_from_bytes(bytes: Vec<u8>) -> std::path::PathBuf {
  std::path::PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
    bytes,
  ))
}

/// The descriptor of an open file, for [`map`].
pub fn file_descriptor(file: &std::fs::File) -> i32 {
  std::os::fd::AsRawFd::as_raw_fd(file)
}

/// Grows `file` to at least `size` bytes, never shrinking it: where the file system allocates
/// (`fallocate(2)` of its last byte, Linux), a file another process grew past `size`
/// meanwhile keeps all it holds (`ftruncate` would cut it back to `size`). That allocates the
/// file's last block; the rest stays sparse. Elsewhere, and on file systems that cannot
/// allocate, `ftruncate`, which can cut off what another process appended since the caller
/// looked at the size (so also where there is no space to allocate: `ENOSPC`). Fails with
/// the error and the system call that gave it.
pub fn grow_file(file: &std::fs::File, size: u64) -> Result<(), (io::Error, &'static str)> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let Ok(last) = libc::off_t::try_from(size - 1) else {
      return Err((io::Error::from_raw_os_error(libc::EFBIG), "fallocate"));
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    // SAFETY: fallocate reads no memory; `fd` is the caller's open file. Mode 0 allocates the
    // range and extends the size when the range ends past it; it never shrinks the file nor
    // changes what it holds.
    if unsafe { libc::fallocate(fd, 0, last, 1) } == 0 {
      return Ok(());
    }
    let err = io::Error::last_os_error();
    if !matches!(
      err.raw_os_error(),
      Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::ENOSPC)
    ) {
      return Err((err, "fallocate"));
    }
  }
  file.set_len(size).map_err(|err| (err, "ftruncate"))
}

/// Checks, changing nothing the file holds, that it can be given `target` bytes from `current`:
/// emptied first if `empties` (mode 'w+'), else grown. What that resize would refuse is refused
/// now, before the caller changes anything (a call that fails leaves the file as it was): a size
/// past `RLIMIT_FSIZE` (`EFBIG`), a memfd sealed against shrinking or growing (`EPERM`), a size
/// past what the file system allows (`EFBIG`; asked with `fallocate(FALLOC_FL_KEEP_SIZE)` of the
/// last byte, which keeps the size and is the block [`grow_file`] allocates next). Fails with the
/// error and the system call the resize would have named.
pub fn check_resize(
  file: &std::fs::File,
  current: u64,
  target: u64,
  empties: bool,
) -> Result<(), (io::Error, &'static str)> {
  // 'w+' grows or shrinks the file to `target` and then zeroes it ([`empty_file`]).
  let syscall = "fallocate";
  let grows = target > current;
  let shrinks = empties && target < current;
  let refuse = |errno: i32| Err((io::Error::from_raw_os_error(errno), syscall));
  if grows {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit writes an `rlimit` into `limit` when it succeeds and reads nothing.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, limit.as_mut_ptr()) } == 0 {
      // SAFETY: getrlimit succeeded, so it filled `limit`.
      let soft = unsafe { limit.assume_init() }.rlim_cur;
      // `rlim_t` is 32 bits on some 32-bit targets.
      #[allow(clippy::unnecessary_cast)]
      if soft != libc::RLIM_INFINITY && target > soft as u64 {
        return refuse(libc::EFBIG);
      }
    }
  }
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    // SAFETY: F_GET_SEALS reads nothing from memory; -1 (EINVAL) for a file that takes no seals.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    if seals > 0 {
      if shrinks && seals & libc::F_SEAL_SHRINK != 0 {
        return Err((io::Error::from_raw_os_error(libc::EPERM), "ftruncate"));
      }
      if grows && seals & libc::F_SEAL_GROW != 0 {
        return refuse(libc::EPERM);
      }
    }
    if grows && target > current {
      let Ok(last) = libc::off_t::try_from(target - 1) else {
        return refuse(libc::EFBIG);
      };
      // SAFETY: fallocate reads no memory; FALLOC_FL_KEEP_SIZE allocates past the end without
      // changing the size or anything the file holds.
      if unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, last, 1) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EFBIG) {
          return Err((err, syscall));
        }
      }
    }
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = (file, shrinks);
  }
  Ok(())
}

/// Empties `file` (`current` bytes) to `target` zero bytes, for mode 'w+': first the size
/// (grown by [`grow_file`], or cut), then every byte zeroed in place by punching a hole
/// (`fallocate(FALLOC_FL_PUNCH_HOLE)`) over all `target` of them, which changes no size and so
/// cannot be refused for one. Emptying first (`ftruncate` to 0, then to `target`) threw after the
/// file was empty when the second step was refused: another process had lowered
/// `RLIMIT_FSIZE` or sealed the memfd since [`check_resize`] looked (attack pass 9). The hole
/// covers the grown part too: on tmpfs, bytes written through a mapping past the old end, on
/// the old last page, showed in the grown file (attack pass 10). Where holes cannot be punched
/// (ramfs), `ftruncate` to 0 and to `target`, with that window. Fails with the error and the
/// system call that gave it.
pub fn empty_file(file: &std::fs::File, current: u64, target: u64) -> Result<(), (io::Error, &'static str)> {
  if target > current {
    grow_file(file, target)?;
  } else if target < current {
    file.set_len(target).map_err(|err| (err, "ftruncate"))?;
  }
  if target == 0 || current == 0 {
    return Ok(());
  }
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    let Ok(len) = libc::off_t::try_from(target) else {
      return Err((io::Error::from_raw_os_error(libc::EFBIG), "fallocate"));
    };
    // SAFETY: fallocate reads no memory; punching a hole with KEEP_SIZE zeroes bytes
    // `0..target` of the caller's file and changes nothing else.
    if unsafe { libc::fallocate(fd, mode, 0, len) } == 0 {
      return Ok(());
    }
    let err = io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) {
      return Err((err, "fallocate"));
    }
  }
  file
    .set_len(0)
    .and_then(|()| file.set_len(target))
    .map_err(|err| (err, "ftruncate"))
}

/// The error the standard library returned, with this layer's numbering: the same here (std
/// gives errno values on Unix).
pub fn std_error(err: io::Error) -> io::Error {
  err
}

/// A file can be cut shorter while views of it exist (their pages past its new end are lost:
/// SIGBUS).
pub const SHRINKS_UNDER_VIEWS: bool = true;

/// Regular files may tell a size that is not what they hold here (procfs says 0 bytes, sysfs
/// 4096): `open()` asks the kernel with a one-page mapping whether such a file maps at all.
pub const PSEUDO_FILES: bool = true;

/// Removes the file a call made at `path` and is about to fail, unless the path names another
/// file by now (another process may have put one there).
pub fn remove_created(path: &std::path::Path, file: &std::fs::File) {
  let same = match (std::fs::metadata(path), file.metadata()) {
    (Ok(a), Ok(b)) => same_file(&a, &b),
    _ => false,
  };
  if same {
    let _ = std::fs::remove_file(path);
  }
}

/// Whether two files' metadata are of the same file (device and inode).
pub fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
  use std::os::unix::fs::MetadataExt;
  a.dev() == b.dev() && a.ino() == b.ino()
}

/// Whether `fd`, about to be mapped, is a regular file (memfd and shm files are): the only kind
/// a shared mapping can grow with; `false` for a device (`/dev/zero`).
///
/// Anything else is `ENODEV`, what mmap(2) says of files it cannot map, also where the kernel
/// would map it: an anonymous inode (no file type at all: io_uring rings, perf events, eventfd,
/// epoll, userfaultfd, ...) is the live state of a facility its owner drives, often the runtime
/// itself (libuv's io_uring submission ring, in Node 22+: one write to it made libuv abort,
/// attack pass 14); a TCP socket maps as pages that read zeros, never the data waiting on it
/// (attack pass 15); directories and FIFOs the kernel refuses anyway. `fstat`'s own error
/// (`EBADF`) for a descriptor that names nothing.
pub fn file_kind(fd: i32) -> io::Result<bool> {
  let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
  // SAFETY: fstat writes a `stat` into `stat` when it succeeds and reads nothing else.
  if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: fstat succeeded, so it filled `stat`.
  let mode = unsafe { stat.assume_init() }.st_mode;
  match mode & libc::S_IFMT {
    libc::S_IFREG => Ok(true),
    libc::S_IFCHR | libc::S_IFBLK => Ok(false),
    _ => Err(io::Error::from_raw_os_error(libc::ENODEV)),
  }
}

/// A descriptor of `/proc/self/maps` kept for the life of the process (close-on-exec), opened
/// when the addon loads ([`keep_maps_descriptor`]): the one [`read_maps`] and
/// [`kernel_mappings_at`] fall back to when no descriptor is left to open the list afresh
/// (`EMFILE`). Without it the kernel-mapping guard, which must read the list, could only refuse
/// there: `unmap()` threw `EMFILE`, and a worker that ended with no descriptor free kept its
/// mappings for the life of the process (attack pass 10). Used only then, after checking it is
/// still the list: a program may close descriptors it did not open. -1 until opened.
static MAPS_RESERVE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// The device and inode of [`MAPS_RESERVE`]'s file, written before it is published.
static MAPS_RESERVE_DEV: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static MAPS_RESERVE_INO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The device and inode of `fd`, `None` if it is not open. Async-signal-safe.
fn file_id(fd: i32) -> Option<(u64, u64)> {
  let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
  // SAFETY: fstat writes a `struct stat` into our own buffer, whatever `fd` is.
  if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
    return None;
  }
  // SAFETY: fstat returned 0, so it filled the buffer.
  let stat = unsafe { stat.assume_init() };
  #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
  Some((stat.st_dev as u64, stat.st_ino as u64))
}

/// Opens the reserve descriptor of `/proc/self/maps` ([`MAPS_RESERVE`]) once per process, or
/// again if it was closed behind our back. Called when the addon loads in an env, while
/// descriptors are free. Nothing happens off Linux.
pub fn keep_maps_descriptor() {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    static OPENING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = OPENING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if maps_reserve().is_some() {
      return;
    }
    // SAFETY: a NUL-terminated path; the descriptor is ours until published below.
    let fd = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
      return;
    }
    let Some((dev, ino)) = file_id(fd) else {
      // SAFETY: closes the descriptor opened above, published nowhere.
      unsafe { libc::close(fd) };
      return;
    };
    // Not published while its identity is written: a reader in between sees no reserve.
    MAPS_RESERVE.store(-1, Ordering::Release);
    MAPS_RESERVE_DEV.store(dev, Ordering::Relaxed);
    MAPS_RESERVE_INO.store(ino, Ordering::Relaxed);
    // A replaced reserve is not closed: its number is someone else's now.
    MAPS_RESERVE.store(fd, Ordering::Release);
  }
}

/// The reserve descriptor of `/proc/self/maps` if it is still that file (see [`MAPS_RESERVE`]).
/// Async-signal-safe.
pub fn maps_reserve() -> Option<i32> {
  let fd = MAPS_RESERVE.load(Ordering::Acquire);
  let id = (
    MAPS_RESERVE_DEV.load(Ordering::Relaxed),
    MAPS_RESERVE_INO.load(Ordering::Relaxed),
  );
  (fd >= 0 && file_id(fd) == Some(id)).then_some(fd)
}

/// Whether `err` says no descriptor was left to open a file.
pub fn out_of_descriptors(err: &io::Error) -> bool {
  matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The address space the process may use, and whether a limit set it: `RLIMIT_AS` (`ulimit
/// -v`) where set, else the user address space of a 64-bit Linux process (128 TiB; less on
/// kernels built for fewer bits, where the guard is laxer than it could be, never stricter).
/// `None` off Linux: there the address-space guard is off.
pub fn address_space_limit() -> Option<(usize, bool)> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit writes a `struct rlimit` into our own buffer.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, limit.as_mut_ptr()) } == 0 {
      // SAFETY: getrlimit returned 0, so it filled the buffer.
      let current = unsafe { limit.assume_init() }.rlim_cur;
      if current != libc::RLIM_INFINITY {
        return Some((usize::try_from(current).unwrap_or(usize::MAX), true));
      }
    }
    Some((
      if cfg!(target_pointer_width = "64") {
        1 << 47
      } else {
        3 << 30
      },
      false,
    ))
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  None
}

/// The address space the process uses now (`VmSize`, from `/proc/self/statm`); `None` if it
/// cannot be read.
pub fn address_space_used() -> Option<usize> {
  let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
  let pages: usize = statm.split_ascii_whitespace().next()?.parse().ok()?;
  pages.checked_mul(page_size())
}

/// The process's data limit (`RLIMIT_DATA`, `ulimit -d`) when one is set; `None` when none is,
/// and off Linux (where the data-limit guard is off).
pub fn data_limit() -> Option<usize> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit writes a `struct rlimit` into our own buffer.
    if unsafe { libc::getrlimit(libc::RLIMIT_DATA, limit.as_mut_ptr()) } == 0 {
      // SAFETY: getrlimit returned 0, so it filled the buffer.
      let current = unsafe { limit.assume_init() }.rlim_cur;
      if current != libc::RLIM_INFINITY {
        return Some(usize::try_from(current).unwrap_or(usize::MAX));
      }
    }
    None
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  None
}

/// What counts toward [`data_limit`] now: `/proc/self/statm`'s data field (private writable
/// memory, and the stack), in bytes.
pub fn data_used() -> Option<usize> {
  let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
  let pages: usize = statm.split_ascii_whitespace().nth(5)?.parse().ok()?;
  pages.checked_mul(page_size())
}

/// The whole of `/proc/self/maps`: opened afresh, or read through the reserve descriptor
/// ([`MAPS_RESERVE`]) when no descriptor is left to open it.
pub fn read_maps() -> io::Result<Vec<u8>> {
  match std::fs::read("/proc/self/maps") {
    Err(err) if out_of_descriptors(&err) => {
      let Some(fd) = maps_reserve() else { return Err(err) };
      let mut text = Vec::with_capacity(64 * 1024);
      loop {
        text
          .try_reserve(64 * 1024)
          .map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
        let spare = text.spare_capacity_mut();
        // SAFETY: reads at most `spare.len()` bytes into the vector's unused capacity; pread
        // leaves the shared descriptor's position alone, so threads may read it at once.
        let got = unsafe {
          libc::pread(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            text.len() as libc::off_t,
          )
        };
        if got < 0 {
          let err = io::Error::last_os_error();
          if err.kind() == io::ErrorKind::Interrupted {
            continue;
          }
          return Err(err);
        }
        if got == 0 {
          return Ok(text);
        }
        // SAFETY: pread initialized `got` more bytes past the length.
        unsafe { text.set_len(text.len() + got as usize) };
      }
    }
    Ok(text) => {
      // The reserve was closed behind our back (a program may close descriptors it did not
      // open): a descriptor is free now, so keep one again.
      if maps_reserve().is_none() {
        keep_maps_descriptor();
      }
      Ok(text)
    }
    other => other,
  }
}

/// What the kernel's shared futex key of the byte at `addr` comes from, for a byte of a shared
/// mapping: the object mapped (its device and inode: a file, or the shared memory object of
/// `MAP_SHARED | MAP_ANONYMOUS`) and the byte's offset in it, from the kernel mapping that holds
/// `addr` in /proc/self/maps. Two mappings of the same file page give the same identity. `None`
/// for private mappings (their pages are this process's own: the address is the key), when the
/// list cannot be read, and off Linux.
pub fn shared_identity(addr: usize) -> Option<(u64, u64, u64)> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let maps = read_maps().ok()?;
    let hex = |text: &str| u64::from_str_radix(text, 16).ok();
    maps.split(|&b| b == b'\n').find_map(|line| {
      // start-end perms offset major:minor inode [path]
      let line = std::str::from_utf8(line).ok()?;
      let mut fields = line.split_ascii_whitespace();
      let (start, end) = fields.next()?.split_once('-')?;
      let (start, end) = (hex(start)? as usize, hex(end)? as usize);
      if !(start <= addr && addr < end) {
        return None;
      }
      let shared = fields.next()?.as_bytes().get(3) == Some(&b's');
      let offset = hex(fields.next()?)?;
      let (major, minor) = fields.next()?.split_once(':')?;
      let inode = fields.next()?.parse::<u64>().ok()?;
      let device = hex(major)? << 32 | hex(minor)?;
      shared.then_some((device, inode, offset + (addr - start) as u64))
    })
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = addr;
    None
  }
}

/// The kernel mappings (VMAs) holding each of `addrs`, `[start, end)` (`None`: the address is
/// not mapped), from the `PROCMAP_QUERY` ioctl of /proc/self/maps: a lookup by address, where
/// reading the list costs time in proportion to its length (some 30 ms at 60,000 mappings).
/// `None` where the kernel lacks it (Linux before 6.11, and every other system): then only the
/// whole list tells.
pub fn kernel_mappings_at<const N: usize>(addrs: [usize; N]) -> Option<[Option<(usize, usize)>; N]> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    use std::os::fd::AsRawFd;
    /// `struct procmap_query` of linux/fs.h (104 bytes).
    #[repr(C)]
    #[derive(Default)]
    struct Query {
      size: u64,
      query_flags: u64,
      query_addr: u64,
      vma_start: u64,
      vma_end: u64,
      vma_flags: u64,
      vma_page_size: u64,
      vma_offset: u64,
      inode: u64,
      dev_major: u32,
      dev_minor: u32,
      vma_name_size: u32,
      build_id_size: u32,
      vma_name_addr: u64,
      build_id_addr: u64,
    }
    /// `_IOWR('f', 17, struct procmap_query)`.
    const PROCMAP_QUERY: u64 = 0xC068_6611;
    static UNSUPPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    static SIMULATE_OLD_KERNEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // The switch that tests the path of kernels without the ioctl on this one.
    let old_kernel = *SIMULATE_OLD_KERNEL
      .get_or_init(|| std::env::var_os("NODE_MMAP_SIMULATE_NO_PROCMAP_QUERY").is_some_and(|v| v == "1"));
    if old_kernel || UNSUPPORTED.load(std::sync::atomic::Ordering::Relaxed) {
      return None;
    }
    use std::os::fd::{BorrowedFd, OwnedFd};
    let opened: Option<OwnedFd> = match std::fs::File::open("/proc/self/maps") {
      Ok(file) => Some(file.into()),
      Err(err) if out_of_descriptors(&err) => None,
      Err(_) => return None,
    };
    let fd = match &opened {
      Some(file) => file.as_raw_fd(),
      None => maps_reserve()?,
    };
    // SAFETY: `fd` is open for the rest of this call: ours (`opened`), or the reserve, which is
    // never closed by us.
    let maps = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut found = [None; N];
    for (slot, &addr) in found.iter_mut().zip(addrs.iter()) {
      let mut query = Query {
        size: std::mem::size_of::<Query>() as u64,
        query_addr: addr as u64,
        ..Query::default()
      };
      // SAFETY: `query` is a `struct procmap_query` with its size set and no name or build-id
      // buffers (their sizes are 0), alive for the call; the fd is open.
      let status = unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY as _, &mut query) };
      if status == 0 {
        *slot = Some((query.vma_start as usize, query.vma_end as usize));
        continue;
      }
      match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOENT) => {} // no kernel mapping holds `addr`
        Some(libc::ENOTTY | libc::EINVAL) => {
          UNSUPPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
          return None;
        }
        _ => return None,
      }
    }
    Some(found)
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = addrs;
    None
  }
}

/// The smallest huge page size the system offers (Linux: the `hugepages-<size>kB` entries of
/// /sys/kernel/mm/hugepages), or `None` where it has none. Read once.
pub fn smallest_huge_page() -> Option<usize> {
  static SMALLEST: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
  *SMALLEST.get_or_init(|| {
    let entries = std::fs::read_dir("/sys/kernel/mm/hugepages").ok()?;
    entries
      .filter_map(|entry| {
        let name = entry.ok()?.file_name().into_string().ok()?;
        let kib = name
          .strip_prefix("hugepages-")?
          .strip_suffix("kB")?
          .parse::<usize>()
          .ok()?;
        Some(kib * 1024)
      })
      .min()
  })
}

/// The alignment a file offset needs: the page size on POSIX.
pub fn allocation_granularity() -> usize {
  page_size()
}

/// `mmap(NULL, len, prot, flags, fd, offset)`: a new mapping at an address the kernel picks.
/// `flags` never contains a placement flag (the caller refuses them).
pub fn map(len: usize, prot: i32, flags: i32, fd: i32, offset: u64) -> io::Result<*mut u8> {
  let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
  // SAFETY: a NULL address without MAP_FIXED lets the kernel choose an unused range, so no
  // existing memory is touched; every other argument is a plain integer the kernel validates.
  let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) };
  if addr == libc::MAP_FAILED {
    return Err(io::Error::last_os_error());
  }
  Ok(addr.cast())
}

/// `munmap(addr, len)`.
///
/// # Safety
/// `addr..addr + len` is a range this crate mapped and still owns, and no Rust reference into it
/// outlives this call.
pub unsafe fn unmap(addr: *mut u8, len: usize) -> io::Result<()> {
  // SAFETY: the caller owns the range (see this function's contract).
  if unsafe { libc::munmap(addr.cast(), len) } != 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(())
}

/// Replaces the range with fresh, zero-filled anonymous memory in one step (`MAP_FIXED` over
/// our own range). Native code that still holds a pointer into the range (zlib, an `fs.write`
/// in flight) then reads zeros and writes into memory nobody sees, instead of faulting; the
/// file is no longer referenced. The range stays reserved until `unmap`.
///
/// Private memory, unless the process has a data limit (`ulimit -d`): writable private memory
/// counts toward it, so the placeholder of a mapping that did not count (read-only, or shared)
/// took its whole size from the limit, and V8 then died when it could not change the rights of
/// its code pages (a worker's end unmaps its mappings: attack pass 16). Shared anonymous memory,
/// which only this range maps, does not count ([`clear_placeholder`] frees either kind).
///
/// # Safety
/// `addr..addr + len` is a range this crate mapped and still owns.
pub unsafe fn replace_with_placeholder(addr: *mut u8, len: usize) -> io::Result<()> {
  let sharing = match data_limit() {
    Some(_) => libc::MAP_SHARED,
    None => libc::MAP_PRIVATE,
  };
  let flags = sharing | libc::MAP_ANONYMOUS | libc::MAP_FIXED | consts::MAP_NORESERVE;
  let prot = libc::PROT_READ | libc::PROT_WRITE;
  // SAFETY: MAP_FIXED replaces exactly the range the caller owns (see the contract), so no
  // memory that belongs to anyone else is touched.
  let got = unsafe { libc::mmap(addr.cast(), len, prot, flags, -1, 0) };
  if got == libc::MAP_FAILED {
    return Err(io::Error::last_os_error());
  }
  Ok(())
}

/// Gives back the pages written to a placeholder ([`replace_with_placeholder`]): it reads zeros
/// again. `MADV_DONTNEED` frees private memory; shared anonymous memory keeps its pages through
/// that, and is freed by `MADV_REMOVE` (which private memory refuses: each does its own kind).
///
/// # Safety
/// `addr..addr + len` is a placeholder of ours, whole pages.
pub unsafe fn clear_placeholder(addr: *mut u8, len: usize) {
  // SAFETY: the range holds nobody's data (see the contract): discarding it leaves zeros.
  unsafe {
    libc::madvise(addr.cast(), len, libc::MADV_DONTNEED);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    libc::madvise(addr.cast(), len, libc::MADV_REMOVE);
  }
}

/// `madvise(addr, len, advice)`.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns, `addr` is page-aligned, and
/// `advice` is one of the exported MADV_* values (some discard data, as asked; none leaves the
/// range inaccessible).
pub unsafe fn advise(addr: *mut u8, len: usize, advice: i32) -> io::Result<()> {
  // SAFETY: the caller owns the range and picked an advice that keeps it accessible (see the contract).
  if unsafe { libc::madvise(addr.cast(), len, advice) } != 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(())
}

/// `msync(addr, len, flags)`.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn sync(addr: *mut u8, len: usize, flags: i32) -> io::Result<()> {
  // SAFETY: the caller owns the range (see the contract); msync only writes pages back.
  if unsafe { libc::msync(addr.cast(), len, flags) } != 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(())
}

/// Pages `mincore` reports on at a time: its vector is a fixed buffer of this many bytes, so
/// that a huge range (a 40 TiB reservation has 10^10 pages) needs no memory in proportion.
const MINCORE_CHUNK_PAGES: usize = 64 * 1024;

/// `mincore` over the range: how many of its pages are resident, and how many it spans. Works
/// through the range [`MINCORE_CHUNK_PAGES`] pages at a time; fails with `ENOMEM` (errno) only
/// if even that buffer cannot be had.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn resident_pages(addr: *mut u8, len: usize) -> io::Result<(usize, usize)> {
  let page = page_size();
  let pages = len.div_ceil(page);
  let mut vec: Vec<libc::c_uchar> = Vec::new();
  vec
    .try_reserve_exact(pages.min(MINCORE_CHUNK_PAGES))
    .map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
  vec.resize(pages.min(MINCORE_CHUNK_PAGES), 0);
  let mut resident = 0;
  let mut done = 0;
  while done < pages {
    let count = (pages - done).min(MINCORE_CHUNK_PAGES);
    let bytes = if done + count == pages {
      len - done * page
    } else {
      count * page
    };
    // SAFETY: `done * page < len`, so the chunk starts inside the caller's range.
    let chunk = unsafe { addr.add(done * page) };
    // SAFETY: the chunk lies in the caller's range (page-aligned: `addr` is, and so is
    // `done * page`); `vec` has a byte for each of its `count` pages, as mincore needs.
    if unsafe { libc::mincore(chunk.cast(), bytes, vec.as_mut_ptr().cast()) } != 0 {
      return Err(io::Error::last_os_error());
    }
    resident += resident_in(&vec[..count]);
    done += count;
  }
  Ok((resident, pages))
}

/// How many of mincore's bytes say "resident" (bit 0), eight at a time.
fn resident_in(vec: &[u8]) -> usize {
  const LOW_BITS: u64 = 0x0101_0101_0101_0101;
  let words = vec.chunks_exact(8);
  let rest = words.remainder().iter().filter(|&&b| b & 1 != 0).count();
  let counted = words.map(|word| {
    let word = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8]));
    (word & LOW_BITS).count_ones() as usize
  });
  counted.sum::<usize>() + rest
}

/// `mlock` (`lock == true`) or `munlock` over the range.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn lock(addr: *mut u8, len: usize, lock: bool) -> io::Result<()> {
  // SAFETY: the caller owns the range; locking changes only its residency.
  let rc = unsafe {
    if lock {
      libc::mlock(addr.cast(), len)
    } else {
      libc::munlock(addr.cast(), len)
    }
  };
  if rc != 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(())
}

/// `mprotect(addr, len, prot)`.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn protect(addr: *mut u8, len: usize, prot: i32) -> io::Result<()> {
  // SAFETY: the caller owns the range; mprotect changes only its access rights.
  if unsafe { libc::mprotect(addr.cast(), len, prot) } != 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(())
}

/// Moves the mapping's pages to a new place of `new_len` bytes and returns it, leaving the old
/// range mapped (so native code that still holds it cannot fault): `mremap` with
/// `MREMAP_DONTUNMAP` to a fresh range of the same size, then a resize of that fresh range,
/// which nobody else can hold yet. The caller replaces the old range with a placeholder.
///
/// # Safety
/// `addr..addr + len` is a whole mapping this crate owns; `len` and `new_len` are non-zero.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub unsafe fn remap(addr: *mut u8, len: usize, new_len: usize) -> io::Result<*mut u8> {
  let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP;
  // SAFETY: the caller owns the source range; without MREMAP_FIXED the kernel picks an unused
  // destination, and DONTUNMAP leaves the source mapped.
  let moved = unsafe { libc::mremap(addr.cast(), len, len, flags, std::ptr::null_mut::<libc::c_void>()) };
  if moved == libc::MAP_FAILED {
    return Err(io::Error::last_os_error());
  }
  if new_len == len {
    return Ok(moved.cast());
  }
  // SAFETY: `moved` is the range the kernel just created for us; no one else knows it.
  let resized = unsafe {
    libc::mremap(
      moved,
      len,
      new_len,
      libc::MREMAP_MAYMOVE,
      std::ptr::null_mut::<libc::c_void>(),
    )
  };
  if resized == libc::MAP_FAILED {
    let err = io::Error::last_os_error();
    // The pages are in `moved` now: for private memory the source range holds only zeros since
    // the move (DONTUNMAP leaves it mapped, empty). Move them back over the source, so that a
    // remap() that fails loses nothing; only if even that fails is `moved` given back.
    let back = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    // SAFETY: `moved` is ours and unused by anyone else; MREMAP_FIXED replaces exactly the
    // caller's source range (`addr..addr + len`, see the contract) with it.
    let restored = unsafe { libc::mremap(moved, len, len, back, addr.cast::<libc::c_void>()) };
    if restored == libc::MAP_FAILED {
      // SAFETY: `moved` is still ours and unused; give it back.
      let _ = unsafe { unmap(moved.cast(), len) };
    }
    return Err(err);
  }
  Ok(resized.cast())
}

/// Moves the pages of `from..from + from_len` (a range [`remap`] made) back over
/// `to..to + to_len` (its source), resized to `to_len`: a move that must be undone.
///
/// # Safety
/// `from..from + from_len` is a mapping of ours no one else knows; `to..to + to_len` is a whole
/// mapping of ours whose bytes may be replaced.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub unsafe fn move_back(from: *mut u8, from_len: usize, to: *mut u8, to_len: usize) -> io::Result<()> {
  let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
  // SAFETY: both ranges are ours (the contract); MREMAP_FIXED replaces exactly `to..to + to_len`.
  let moved = unsafe { libc::mremap(from.cast(), from_len, to_len, flags, to.cast::<libc::c_void>()) };
  if moved == libc::MAP_FAILED {
    return Err(io::Error::last_os_error());
  }
  Ok(())
}

/// Nothing is ever moved without `mremap`.
///
/// # Safety
/// As the Linux version.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub unsafe fn move_back(_from: *mut u8, _from_len: usize, _to: *mut u8, _to_len: usize) -> io::Result<()> {
  Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// Without `mremap`, a mapping cannot be moved with its file: the caller maps anew instead.
///
/// # Safety
/// As the Linux version.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub unsafe fn remap(_addr: *mut u8, _len: usize, _new_len: usize) -> io::Result<*mut u8> {
  Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// How a [`wait`] ended.
#[derive(Debug, PartialEq, Eq)]
// Only Linux's `wait` can end but in error.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub enum Wait {
  /// Woken by a [`wake`] (or, as futexes may, spuriously).
  Woken,
  /// The word did not hold the expected value when the wait began.
  NotEqual,
  /// The deadline passed.
  TimedOut,
  /// The cancel word of [`wait_or_cancel`] was set.
  Cancelled,
}

/// Sleeps while the 32-bit word at `addr` holds `expected`, until [`wake`] on the same word
/// (from any process that maps the same file page, for shared mappings) or `deadline`
/// (`CLOCK_MONOTONIC`; `None`: no limit). A signal does not end the wait early.
///
/// `private` picks the futex key: `false`, the page's (shared with every process that maps it);
/// `true`, this process's address (`FUTEX_PRIVATE_FLAG`), which only a `wake` with `private`
/// reaches. The kernel refuses the shared key of a read-only page of anonymous memory (private
/// to this process: a `MAP_PRIVATE` page that is not the file's) with `EFAULT`.
///
/// # Safety
/// `addr` is 4-byte aligned and lies in a range the caller owns (the kernel reads it; a page
/// without read rights makes the call fail with `EFAULT`, never fault).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub unsafe fn wait(
  addr: *const u32,
  expected: u32,
  deadline: Option<libc::timespec>,
  private: bool,
) -> io::Result<Wait> {
  let timeout = deadline.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
  let op = libc::FUTEX_WAIT_BITSET | if private { libc::FUTEX_PRIVATE_FLAG } else { 0 };
  loop {
    // SAFETY: FUTEX_WAIT_BITSET only reads the aligned word at `addr` (caller's contract) and
    // `timeout`, an absolute CLOCK_MONOTONIC time or null; it writes nothing.
    let result = unsafe {
      libc::syscall(
        libc::SYS_futex,
        addr,
        op,
        expected,
        timeout,
        std::ptr::null::<u32>(),
        libc::FUTEX_BITSET_MATCH_ANY,
      )
    };
    if result == 0 {
      return Ok(Wait::Woken);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
      Some(libc::EINTR) => continue, // the deadline is absolute: wait on for what is left
      Some(libc::EAGAIN) => return Ok(Wait::NotEqual),
      Some(libc::ETIMEDOUT) => return Ok(Wait::TimedOut),
      _ => return Err(err),
    }
  }
}

/// One entry of futex_waitv(2) (`struct futex_waitv` of linux/futex.h).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[repr(C)]
struct FutexWaitv {
  val: u64,
  uaddr: u64,
  flags: u32,
  reserved: u32,
}

/// As [`wait`] (with the same `private`), but also ends, with [`Wait::Cancelled`], once one of
/// the process-private words at `cancels` (at most 2) is not 0: when the wait begins, or when
/// [`wake_private`] wakes it after it was set. Uses futex_waitv(2) (Linux 5.16); before that
/// kernel it fails with `ENOSYS`.
///
/// # Safety
/// As [`wait`] for `addr`; each of `cancels` is an aligned word that stays valid during the call.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub unsafe fn wait_or_cancel(
  addr: *const u32,
  expected: u32,
  private: bool,
  cancels: &[*const u32],
  deadline: Option<libc::timespec>,
) -> io::Result<Wait> {
  const FUTEX2_SIZE_U32: u32 = 0x02;
  const FUTEX2_PRIVATE: u32 = 128;
  assert!(cancels.len() <= 2, "at most 2 cancel words");
  let entry = |addr: *const u32, val: u32, flags: u32| FutexWaitv {
    val: u64::from(val),
    uaddr: addr as u64,
    flags,
    reserved: 0,
  };
  let flags = FUTEX2_SIZE_U32 | if private { FUTEX2_PRIVATE } else { 0 };
  let mut waiters = [
    entry(addr, expected, flags),
    entry(addr, expected, flags),
    entry(addr, expected, flags),
  ];
  for (slot, &cancel) in waiters[1..].iter_mut().zip(cancels) {
    *slot = entry(cancel, 0, FUTEX2_SIZE_U32 | FUTEX2_PRIVATE);
  }
  let count = 1 + cancels.len();
  let timeout = deadline.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
  let cancelled = || {
    cancels.iter().any(|&cancel| {
      // SAFETY: each of `cancels` is valid and aligned (the caller's contract), and read as the
      // atomic its owner writes.
      let word = unsafe { &*cancel.cast::<std::sync::atomic::AtomicU32>() };
      word.load(std::sync::atomic::Ordering::Acquire) != 0
    })
  };
  loop {
    // SAFETY: futex_waitv reads the `count` aligned words (the caller's contract), the first
    // `count` entries of the array and `timeout` (absolute CLOCK_MONOTONIC, or null); it writes
    // nothing.
    let result = unsafe {
      libc::syscall(
        libc::SYS_futex_waitv,
        waiters.as_ptr(),
        count as u32,
        0u32,
        timeout,
        libc::CLOCK_MONOTONIC,
      )
    };
    match result {
      0 => return Ok(Wait::Woken),
      n if n > 0 => return Ok(Wait::Cancelled),
      _ => {}
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
      Some(libc::EINTR) => continue,
      Some(libc::EAGAIN) if cancelled() => return Ok(Wait::Cancelled),
      Some(libc::EAGAIN) => return Ok(Wait::NotEqual),
      Some(libc::ETIMEDOUT) => return Ok(Wait::TimedOut),
      _ => return Err(err),
    }
  }
}

/// Wakes every waiter of the process-private word at `addr` (the cancel word of
/// [`wait_or_cancel`]).
///
/// # Safety
/// `addr` is an aligned word of this process (the kernel does not read it).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub unsafe fn wake_private(addr: *const u32) {
  // SAFETY: FUTEX_WAKE only looks up waiters by the address; it reads and writes no memory.
  unsafe {
    libc::syscall(
      libc::SYS_futex,
      addr,
      libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
      i32::MAX,
    )
  };
}

/// Wakes up to `count` waiters of the word at `addr` that wait with the same `private` (see
/// [`wait`]); returns how many woke.
///
/// # Safety
/// As [`wait`]: `addr` is aligned and in a range the caller owns (the kernel does not even read
/// it).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub unsafe fn wake(addr: *const u32, count: i32, private: bool) -> io::Result<usize> {
  let op = libc::FUTEX_WAKE | if private { libc::FUTEX_PRIVATE_FLAG } else { 0 };
  // SAFETY: FUTEX_WAKE only looks up waiters by the address's futex key; it reads and writes
  // no memory of ours.
  let woken = unsafe { libc::syscall(libc::SYS_futex, addr, op, count) };
  if woken < 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(woken as usize)
}

/// `CLOCK_MONOTONIC` now plus `millis` (saturating), for [`wait`]'s deadline.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn deadline_after(millis: f64) -> libc::timespec {
  let mut now = libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
  };
  // SAFETY: `now` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
  unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
  let nanos = now.tv_nsec as f64 + millis * 1e6;
  let whole_secs = (nanos / 1e9).floor();
  let secs = now.tv_sec as f64 + whole_secs;
  libc::timespec {
    // A float-to-integer `as` saturates: a deadline past time_t's range becomes its largest
    // value. (`as _`, not `as libc::time_t`: the libc crate deprecates that name on musl.)
    tv_sec: secs as _,
    tv_nsec: ((nanos - whole_secs * 1e9) as libc::c_long).clamp(0, 999_999_999),
  }
}

/// Futex-style waiting is Linux's; elsewhere it is refused.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub unsafe fn wait(
  _addr: *const u32,
  _expected: u32,
  _deadline: Option<libc::timespec>,
  _private: bool,
) -> io::Result<Wait> {
  Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// Futex-style waiting is Linux's; elsewhere it is refused.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub unsafe fn wait_or_cancel(
  _addr: *const u32,
  _expected: u32,
  _private: bool,
  _cancels: &[*const u32],
  _deadline: Option<libc::timespec>,
) -> io::Result<Wait> {
  Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// Nothing waits where futexes do not exist.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub unsafe fn wake_private(_addr: *const u32) {}

/// Futex-style waking is Linux's; elsewhere it is refused.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub unsafe fn wake(_addr: *const u32, _count: i32, _private: bool) -> io::Result<usize> {
  Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// No deadline arithmetic where nothing waits.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn deadline_after(_millis: f64) -> libc::timespec {
  libc::timespec {
    tv_sec: 0,
    tv_nsec: 0,
  }
}

/// Opens `path` for mapping: close-on-exec (as std always does), never truncated, and
/// `O_NONBLOCK | O_NOCTTY`, so that opening a FIFO or a terminal neither waits for a peer nor
/// changes the controlling terminal (the caller then refuses anything not a regular file; on a
/// regular file neither flag changes anything). `create_new`: `O_CREAT | O_EXCL`, created
/// `0o666 & ~umask`.
pub fn open(path: &std::path::Path, write: bool, create_new: bool) -> io::Result<std::fs::File> {
  use std::os::unix::fs::OpenOptionsExt;
  std::fs::OpenOptions::new()
    .read(true)
    .write(write)
    .create_new(create_new)
    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
    .open(path)
}

/// A new regular file with no name yet, in the directory `dir` (Linux's `O_TMPFILE`), to be
/// named by [`link_unnamed`] once the call that made it has succeeded: a call that fails never
/// makes a file appear at a path, so it has nothing to remove, and can remove nothing another
/// process opened there in the meantime. `None` where the system or the file system has no
/// unnamed files (then the caller creates a named file).
pub fn create_unnamed(dir: &std::path::Path) -> Option<std::fs::File> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
      .read(true)
      .write(true)
      .mode(0o666)
      .custom_flags(libc::O_TMPFILE | libc::O_NOCTTY)
      .open(dir)
      .ok()
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = dir;
    None
  }
}

/// Gives `file`, made by [`create_unnamed`], the name `path`; `AlreadyExists` if something is
/// there by now (the file keeps no name).
pub fn link_unnamed(file: &std::fs::File, path: &std::path::Path) -> io::Result<()> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let to = std::ffi::CString::new(path.as_os_str().as_bytes())
      .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let from =
      std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL in a number");
    // SAFETY: both are NUL-terminated paths that live across the call; linkat reads them only.
    let linked = unsafe {
      libc::linkat(
        libc::AT_FDCWD,
        from.as_ptr(),
        libc::AT_FDCWD,
        to.as_ptr(),
        libc::AT_SYMLINK_FOLLOW,
      )
    };
    if linked == 0 {
      return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.kind() != io::ErrorKind::NotFound {
      return Err(err);
    }
    // No /proc: link the descriptor itself (needs CAP_DAC_READ_SEARCH).
    // SAFETY: an empty NUL-terminated path and a valid descriptor; linkat reads them only.
    let linked = unsafe {
      libc::linkat(
        file.as_raw_fd(),
        c"".as_ptr(),
        libc::AT_FDCWD,
        to.as_ptr(),
        libc::AT_EMPTY_PATH,
      )
    };
    if linked == 0 {
      Ok(())
    } else {
      Err(io::Error::last_os_error())
    }
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = (file, path);
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::io::Write;

  fn temp_file(bytes: &[u8]) -> std::fs::File {
    let path = std::env::temp_dir().join(format!(
      "node-mmap-sys-{}-{:?}",
      std::process::id(),
      std::thread::current().id()
    ));
    let mut file = std::fs::OpenOptions::new()
      .read(true)
      .write(true)
      .create(true)
      .truncate(true)
      .open(&path)
      .unwrap();
    std::fs::remove_file(&path).unwrap();
    file.write_all(bytes).unwrap();
    file
  }

  #[test]
  fn kernel_mappings_at_gives_the_kernel_mapping_of_each_address() {
    let page = page_size();
    // Three pages, the middle one read-only: three kernel mappings.
    let addr = map(
      3 * page,
      libc::PROT_READ | libc::PROT_WRITE,
      libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
      -1,
      0,
    )
    .unwrap() as usize;
    // SAFETY: the middle page of the mapping just made, which nothing else uses.
    unsafe { protect((addr + page) as *mut u8, page, libc::PROT_READ) }.unwrap();
    let Some(found) = kernel_mappings_at([addr, addr + page + 5, addr + 3 * page - 1]) else {
      // Before Linux 6.11 there is no lookup by address: the caller reads the list.
      let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
      let version: Vec<u32> = release
        .split(['.', '-'])
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
      assert!(version < vec![6, 11], "PROCMAP_QUERY missing on {release}");
      return;
    };
    assert_eq!(
      found[0].map(|(from, to)| (from <= addr, to)),
      Some((true, addr + page))
    );
    assert_eq!(found[1], Some((addr + page, addr + 2 * page)));
    assert_eq!(
      found[2].map(|(from, to)| (from, to >= addr + 3 * page)),
      Some((addr + 2 * page, true))
    );
    // SAFETY: the mapping made above, not used after.
    unsafe { unmap(addr as *mut u8, 3 * page) }.unwrap();
    // Page 0 is never mapped (vm.mmap_min_addr).
    assert_eq!(kernel_mappings_at([0]), Some([None]), "nothing holds page 0");
  }

  #[test]
  fn page_size_is_a_power_of_two() {
    assert!(page_size().is_power_of_two());
    assert_eq!(allocation_granularity(), page_size());
  }

  #[test]
  fn map_shared_file_reads_its_bytes() {
    use std::os::fd::AsRawFd;
    let file = temp_file(b"hello mmap");
    let addr = map(10, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0).unwrap();
    // SAFETY: the mapping is 10 bytes long, readable, and unmapped only below.
    let bytes = unsafe { std::slice::from_raw_parts(addr, 10) }.to_vec();
    assert_eq!(&bytes, b"hello mmap");
    // SAFETY: mapped above; no reference into it remains.
    unsafe { unmap(addr, 10) }.unwrap();
  }

  #[test]
  fn map_bad_fd_is_ebadf() {
    let err = map(4096, libc::PROT_READ, libc::MAP_SHARED, 1_000_000, 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
  }

  #[test]
  fn map_offset_past_off_t_is_eoverflow() {
    let err = map(4096, libc::PROT_READ, libc::MAP_SHARED, 0, u64::MAX).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EOVERFLOW));
  }

  #[test]
  fn placeholder_drops_the_file_and_reads_zeros() {
    use std::os::fd::AsRawFd;
    let file = temp_file(&[7u8; 4096]);
    let len = 4096;
    let addr = map(
      len,
      libc::PROT_READ | libc::PROT_WRITE,
      libc::MAP_SHARED,
      file.as_raw_fd(),
      0,
    )
    .unwrap();
    // SAFETY: the range was mapped above and is owned by this test.
    unsafe { replace_with_placeholder(addr, len) }.unwrap();
    // SAFETY: the placeholder is readable and writable and `len` bytes long.
    let view = unsafe { std::slice::from_raw_parts_mut(addr, len) };
    assert!(view.iter().all(|&b| b == 0));
    view[0] = 1; // goes nowhere
    let mut on_disk = [0u8; 1];
    std::os::unix::fs::FileExt::read_at(&file, &mut on_disk, 0).unwrap();
    assert_eq!(on_disk[0], 7);
    // SAFETY: still owned by this test; `view` is not used again.
    unsafe { unmap(addr, len) }.unwrap();
  }

  #[cfg(target_os = "linux")]
  #[test]
  fn resident_pages_works_through_a_range_of_many_chunks() {
    let page = page_size();
    let pages = 2 * MINCORE_CHUNK_PAGES + 3;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | consts::MAP_NORESERVE;
    let addr = map(pages * page, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0).unwrap();
    // SAFETY: our own new mapping; no huge pages, so each touch makes exactly one page resident.
    unsafe { advise(addr, pages * page, libc::MADV_NOHUGEPAGE) }.unwrap();
    for index in [0, MINCORE_CHUNK_PAGES - 1, MINCORE_CHUNK_PAGES, pages - 1] {
      // SAFETY: inside the mapping, which is writable.
      unsafe { addr.add(index * page).write(1) };
    }
    // SAFETY: our own mapping, short of the end of its last page.
    let counts = unsafe { resident_pages(addr, pages * page - 10) }.unwrap();
    assert_eq!(counts, (4, pages));
    // SAFETY: our own mapping, given back once.
    unsafe { unmap(addr, pages * page) }.unwrap();
    assert_eq!(resident_in(&[1, 0, 3, 2, 1, 1, 1, 1, 1, 0, 5]), 8);
  }

  #[test]
  fn advise_rejects_unaligned_address() {
    let len = page_size() * 2;
    let addr = map(
      len,
      libc::PROT_READ,
      libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
      -1,
      0,
    )
    .unwrap();
    // SAFETY: inside our own anonymous mapping; MADV_RANDOM frees nothing.
    let err = unsafe { advise(addr.add(1), 100, libc::MADV_RANDOM) }.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    // SAFETY: mapped above.
    unsafe { unmap(addr, len) }.unwrap();
  }
}
