//! The Windows side of the OS layer (issue 14): mapping, unmapping with a zero-filled
//! placeholder, the toolkit (`sync`, `protect`, `lock`, `advise`, residency) over
//! `CreateFileMappingW` and views of it, and files opened by path. What is not ported yet
//! (waits, `remap()`) is re-exported from `stub.rs` and fails with `ENOTSUP`.
//!
//! Errors: every failure is an `io::Error` whose raw number is an errno value (libc's numbers
//! for this target, the ones `errno_name` above this layer knows), never a Win32 code: each
//! Win32 error is translated right after the failing call by [`last_error`] (libuv's table,
//! `uv_translate_sys_error`, is the model).
//!
//! Kinds of memory this file hands out, told apart by `VirtualQuery`'s `Type`:
//! - a view (`MEM_MAPPED`) of a section: every mapping [`map`] makes, file-backed or
//!   pagefile-backed (anonymous). The section handle is closed once the view exists; the view
//!   keeps the section alive.
//! - a placeholder (`MEM_PRIVATE`): the zero-filled, read-write memory [`replace_with_placeholder`]
//!   puts where a view was (see there).
//!
//! [`unmap`] releases either kind, a whole allocation at a time.

use std::collections::HashMap;
use std::ffi::c_void;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use windows_sys::Win32::Foundation::{
  CloseHandle, DuplicateHandle, GetLastError, DUPLICATE_SAME_ACCESS, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
  FlushFileBuffers, GetFileInformationByHandle, GetFileSizeEx, GetFileType, BY_HANDLE_FILE_INFORMATION,
  FILE_ATTRIBUTE_DIRECTORY, FILE_TYPE_DISK,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Memory::{
  CreateFileMappingW, FlushViewOfFile, MapViewOfFile, PrefetchVirtualMemory, UnmapViewOfFile, VirtualAlloc,
  VirtualFree, VirtualLock, VirtualProtect, VirtualQuery, VirtualUnlock, FILE_MAP, FILE_MAP_COPY,
  FILE_MAP_EXECUTE, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
  MEM_COMMIT, MEM_DECOMMIT, MEM_FREE, MEM_MAPPED, MEM_PRIVATE, MEM_RELEASE, MEM_RESERVE, PAGE_EXECUTE_READ,
  PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_WRITECOPY, PAGE_NOACCESS, PAGE_PROTECTION_FLAGS, PAGE_READONLY,
  PAGE_READWRITE, PAGE_WRITECOPY, WIN32_MEMORY_RANGE_ENTRY,
};
use windows_sys::Win32::System::ProcessStatus::{K32QueryWorkingSetEx, PSAPI_WORKING_SET_EX_INFORMATION};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

// Not ported yet: each of these is stub.rs's, which fails with ENOTSUP (or answers "not known
// here", for the queries), as on a target with no port at all.
pub use super::stub::{
  // The address-space guard (Linux's RLIMIT_AS and VmSize): off here for now.
  address_space_limit,
  address_space_used,
  // Nothing to check before a resize: Windows has no RLIMIT_FSIZE, seals or fallocate probe.
  check_resize,
  // No files without a name: a file `open()` creates is named at once, and removed through
  // its handle if the call fails (`remove_created`).
  create_unnamed,
  // The data-limit guard (Linux's RLIMIT_DATA): no such limit on Windows.
  data_limit,
  data_used,
  // Deadlines for `wait`: nothing waits yet.
  deadline_after,
  // Not known yet: `false`, so a shared file mapping is treated as fixed in size.
  file_kind,
  // No huge pages (large pages need SeLockMemoryPrivilege): none.
  huge_page_size_of_file,
  // Not known yet: `false` (used only for diagnostics and the kernel-mapping guard).
  is_main_thread,
  // No list of kernel mappings (Linux's /proc/self/maps, `vm.max_map_count`) on Windows.
  keep_maps_descriptor,
  kernel_mappings_at,
  link_unnamed,
  // `remap()`'s moves: ENOTSUP until a Windows `remap` exists.
  move_back,
  // A path's WTF-8 bytes (for diagnostics and the trailing-slash check), and a path from the
  // UTF-8 bytes of a JS string or Buffer; std turns it into UTF-16 (with `\\?\` for long ones).
  path_bytes,
  path_from_bytes,
  remap,
  // No futex identity across processes yet.
  same_file,
  shared_identity,
  smallest_huge_page,
  // `wait`/`notify`: ENOTSUP until WaitOnAddress / named events are wired in.
  wait,
  wait_or_cancel,
  wake,
  wake_private,
  Wait,
};

/// The constants the module exports on Windows. Windows has no numbers of its own for them, so
/// the rule is: the basic set (`PROT_*`, `MAP_SHARED`/`MAP_PRIVATE`/`MAP_ANONYMOUS`, `MS_*`,
/// `MADV_NORMAL`/`RANDOM`/`SEQUENTIAL`/`WILLNEED`/`DONTNEED`) keeps Linux's numbers, so that
/// portable code is the same code; every flag Windows cannot honour (`MAP_POPULATE`,
/// `MAP_HUGETLB`, `MAP_LOCKED`, `MAP_NORESERVE`, the other `MADV_*`, ...) is 0 there: "no
/// effect on Windows", never an error.
pub mod consts {
  // The same numbers as the stub's: the basic set keeps Linux's, the rest is 0.
  pub use super::super::stub::consts::*;
  /// `MAX_PATH` is 260, but long paths (`\\?\`) go to 32,767 UTF-16 units; this bounds the
  /// UTF-8 bytes a path may take (3 per unit at most) before any conversion.
  pub const PATH_MAX: usize = 32_767 * 3;
}

use consts::{MADV_DONTNEED, MADV_WILLNEED, MAP_ANONYMOUS, MAP_PRIVATE, MAP_TYPE_MASK, MS_SYNC};
use consts::{PROT_EXEC, PROT_READ, PROT_WRITE};

// --- errors -------------------------------------------------------------------------------------

/// The errno value for a Win32 error code, after libuv's `uv_translate_sys_error` for the codes
/// the calls here can return; `EIO` for any other.
fn errno_of(code: u32) -> i32 {
  use windows_sys::Win32::Foundation as f;
  match code {
    f::ERROR_ACCESS_DENIED | f::ERROR_NOACCESS => libc::EACCES,
    f::ERROR_FILE_NOT_FOUND | f::ERROR_PATH_NOT_FOUND => libc::ENOENT,
    f::ERROR_INVALID_NAME | f::ERROR_BAD_PATHNAME | f::ERROR_INVALID_DRIVE => libc::ENOENT,
    f::ERROR_FILE_EXISTS | f::ERROR_ALREADY_EXISTS => libc::EEXIST,
    f::ERROR_FILENAME_EXCED_RANGE => libc::ENAMETOOLONG,
    f::ERROR_DIRECTORY => libc::ENOTDIR,
    f::ERROR_TOO_MANY_OPEN_FILES => libc::EMFILE,
    f::ERROR_CANT_ACCESS_FILE => libc::EACCES,
    f::ERROR_INVALID_HANDLE => libc::EBADF,
    f::ERROR_NOT_ENOUGH_MEMORY | f::ERROR_OUTOFMEMORY | f::ERROR_COMMITMENT_LIMIT => libc::ENOMEM,
    // VirtualLock beyond the working set's quota: Linux's mlock says ENOMEM (or EAGAIN).
    f::ERROR_WORKING_SET_QUOTA => libc::ENOMEM,
    // An address outside any allocation: mprotect and madvise say ENOMEM on Linux.
    f::ERROR_INVALID_ADDRESS => libc::ENOMEM,
    f::ERROR_MAPPED_ALIGNMENT | f::ERROR_INVALID_PARAMETER => libc::EINVAL,
    // An empty file cannot back a section of its own size.
    f::ERROR_FILE_INVALID => libc::EINVAL,
    f::ERROR_DISK_FULL | f::ERROR_HANDLE_DISK_FULL => libc::ENOSPC,
    f::ERROR_SHARING_VIOLATION | f::ERROR_LOCK_VIOLATION => libc::EBUSY,
    f::ERROR_NOT_SUPPORTED => libc::ENOTSUP,
    f::ERROR_CALL_NOT_IMPLEMENTED | f::ERROR_PROC_NOT_FOUND => libc::ENOSYS,
    f::ERROR_WRITE_PROTECT => libc::EROFS,
    _ => libc::EIO,
  }
}

/// The calling thread's last Win32 error, as an errno-numbered `io::Error` (take it right after
/// the failing call).
fn last_error() -> io::Error {
  // SAFETY: GetLastError only reads the calling thread's error value.
  let code = unsafe { GetLastError() };
  io::Error::from_raw_os_error(errno_of(code))
}

/// The `errno` Node reports on Windows for the errno value `errno` (this layer's errors carry the
/// C library's numbers): libuv's own negative numbers there (`UV_EACCES` is -4092, not -13), so
/// that `util.getSystemErrorName(err.errno)` is `err.code` as for Node's `fs` errors; -4094
/// (`UV_UNKNOWN`) for a number libuv has no name for.
pub fn node_errno(errno: i32) -> i32 {
  match errno {
    libc::EACCES => -4092,
    libc::EAGAIN => -4088,
    libc::EBADF => -4083,
    libc::EBUSY => -4082,
    libc::EEXIST => -4075,
    libc::EFAULT => -4074,
    libc::EINTR => -4072,
    libc::EINVAL => -4071,
    libc::EIO => -4070,
    libc::EISDIR => -4068,
    libc::ELOOP => -4067,
    libc::EMFILE => -4066,
    libc::ENAMETOOLONG => -4064,
    libc::ENFILE => -4061,
    libc::ENODEV => -4059,
    libc::ENOENT => -4058,
    libc::ENOMEM => -4057,
    libc::ENOSPC => -4055,
    libc::ENOSYS => -4054,
    libc::ENOTDIR => -4052,
    libc::ENOTSUP => -4049,
    libc::EPERM => -4048,
    libc::EROFS => -4043,
    libc::ESPIPE => -4041,
    libc::ETXTBSY => -4038,
    libc::EFBIG => -4036,
    libc::ENXIO => -4033,
    libc::EOVERFLOW => -4026,
    _ => -4094,
  }
}

/// The error the standard library returned (a Win32 code), with this layer's numbering (errno).
pub fn std_error(err: io::Error) -> io::Error {
  match err.raw_os_error() {
    Some(code) => errno(errno_of(code as u32)),
    None => err,
  }
}

fn errno(value: i32) -> io::Error {
  io::Error::from_raw_os_error(value)
}

// --- system facts -------------------------------------------------------------------------------

/// GetSystemInfo's page size and allocation granularity, asked once (then an atomic load each).
fn system_info() -> (usize, usize) {
  static PAGE: AtomicUsize = AtomicUsize::new(0);
  static GRANULARITY: AtomicUsize = AtomicUsize::new(0);
  let page = PAGE.load(Ordering::Relaxed);
  if page != 0 {
    return (page, GRANULARITY.load(Ordering::Relaxed));
  }
  let mut info = SYSTEM_INFO::default();
  // SAFETY: GetSystemInfo fills the structure it is given, which lives for the call.
  unsafe { GetSystemInfo(&mut info) };
  // Windows guarantees both; 4096 and 65536 are only fallbacks for a broken answer.
  let page = Some(info.dwPageSize as usize).filter(|&p| p > 0).unwrap_or(4096);
  let granularity = Some(info.dwAllocationGranularity as usize)
    .filter(|&g| g > 0)
    .unwrap_or(65536);
  GRANULARITY.store(granularity, Ordering::Relaxed);
  PAGE.store(page, Ordering::Relaxed);
  (page, granularity)
}

/// The page size (GetSystemInfo's `dwPageSize`: 4096 on x64).
pub fn page_size() -> usize {
  system_info().0
}

/// The alignment a file offset needs: the allocation granularity (`dwAllocationGranularity`,
/// 65536), which MapViewOfFile requires of offsets (else ERROR_MAPPED_ALIGNMENT).
pub fn allocation_granularity() -> usize {
  system_info().1
}

/// The list of kernel mappings the kernel-mapping guard counts (Linux's `/proc/self/maps`,
/// bounded by `vm.max_map_count`): Windows has no such per-process limit on views, so the list
/// is empty and the guard never refuses. Not ENOTSUP as in stub.rs: the guard asks before every
/// `map()` once it knows a limit, and under Wine it does know one, since its path
/// `/proc/sys/vm/max_map_count` resolves through drive Z: to the Linux host's file.
pub fn read_maps() -> io::Result<Vec<u8>> {
  Ok(Vec::new())
}

// --- descriptors --------------------------------------------------------------------------------

/// `uv_os_fd_t uv_get_osfhandle(int fd)`, as libuv declares it.
type GetOsfHandle = unsafe extern "C" fn(i32) -> HANDLE;

/// The host's `uv_get_osfhandle`, found at run time among the host executable's exports
/// (node.exe and Electron export libuv): only the host's own C runtime knows the descriptors
/// `fs.openSync` returns, a private copy's `_get_osfhandle` says -1 for them (DESIGN §4).
/// `None` when the host does not export it.
fn uv_get_osfhandle() -> Option<GetOsfHandle> {
  static FOUND: OnceLock<Option<usize>> = OnceLock::new();
  let address = *FOUND.get_or_init(|| {
    // SAFETY: a NULL name asks for the executable's own module handle, which is never freed.
    let host = unsafe { GetModuleHandleW(std::ptr::null()) };
    if host.is_null() {
      return None;
    }
    // SAFETY: `host` is a loaded module and the name is a NUL-terminated ASCII string.
    let found = unsafe { GetProcAddress(host, c"uv_get_osfhandle".as_ptr().cast()) };
    found.map(|f| f as usize)
  });
  // SAFETY: the address is the export `uv_get_osfhandle`, whose signature libuv fixes as
  // GetOsfHandle; the host module stays loaded for the life of the process.
  address.map(|a| unsafe { std::mem::transmute::<usize, GetOsfHandle>(a) })
}

/// The descriptor [`map`] takes for a file this layer opened ([`open`]): its HANDLE, encoded as
/// `-2 - handle`. Such a file has no descriptor of the host's C runtime, and making one would
/// give the handle two owners. The values cannot collide with a user's: the JS layer takes
/// descriptors from -1 up only, so a value of -2 or less comes from here, and it is used while
/// the `File` is alive (the call that opened it maps it, then closes it). Handles fit in 32 bits
/// (Windows keeps them so, for 32-bit processes); one that did not gives -1, which [`map`]
/// refuses with `EBADF`.
pub fn file_descriptor(file: &std::fs::File) -> i32 {
  use std::os::windows::io::AsRawHandle;
  i32::try_from(file.as_raw_handle() as usize)
    .ok()
    .and_then(|handle| (-2i32).checked_sub(handle))
    .unwrap_or(-1)
}

/// The HANDLE behind a descriptor of the host's C runtime, or behind one [`file_descriptor`]
/// made: `EBADF` when it names nothing.
fn handle_of(fd: i32) -> io::Result<HANDLE> {
  if fd <= -2 {
    return Ok((-2 - i64::from(fd)) as usize as HANDLE);
  }
  let get = uv_get_osfhandle().ok_or_else(|| errno(libc::ENOSYS))?;
  // SAFETY: uv_get_osfhandle only looks the descriptor up in the C runtime's table; any int is
  // accepted (an unknown one gives INVALID_HANDLE_VALUE).
  let handle = unsafe { get(fd) };
  if handle.is_null() || handle == INVALID_HANDLE_VALUE {
    return Err(errno(libc::EBADF));
  }
  Ok(handle)
}

// --- the views' file handles --------------------------------------------------------------------

/// For each shared, writable file view (by its base address): a duplicate of its file's handle,
/// owned here, for `sync`'s FlushFileBuffers. The user may close the descriptor at any time after
/// `map()` (as on Unix); the duplicate keeps a handle for as long as the view exists, and is
/// closed when the view goes ([`replace_with_placeholder`], [`unmap`]).
static FILE_HANDLES: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

fn file_handles() -> std::sync::MutexGuard<'static, Option<HashMap<usize, usize>>> {
  FILE_HANDLES
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Closes and forgets the file handle kept for the view at `base`, if any.
fn forget_file_handle(base: usize) {
  let handle = file_handles().as_mut().and_then(|table| table.remove(&base));
  if let Some(handle) = handle {
    // SAFETY: the handle was duplicated for this table alone and has just left it.
    unsafe { CloseHandle(handle as HANDLE) };
  }
}

/// The file handle kept for the view at `base`, duplicated again for the caller (who closes it),
/// so that a concurrent unmap cannot close it under a flush.
fn file_handle(base: usize) -> Option<OwnedHandle> {
  let table = file_handles();
  let handle = *table.as_ref()?.get(&base)?;
  duplicate(handle as HANDLE).ok()
}

/// A handle closed when dropped.
struct OwnedHandle(HANDLE);

impl Drop for OwnedHandle {
  fn drop(&mut self) {
    // SAFETY: the handle is owned by this value alone.
    unsafe { CloseHandle(self.0) };
  }
}

/// DuplicateHandle within this process, with the same access.
fn duplicate(handle: HANDLE) -> io::Result<OwnedHandle> {
  let mut copy: HANDLE = std::ptr::null_mut();
  // SAFETY: both process handles are the current-process pseudo handle; `handle` is open for
  // the call (the caller holds it or the table's lock) and `copy` receives the new handle.
  let ok = unsafe {
    DuplicateHandle(
      GetCurrentProcess(),
      handle,
      GetCurrentProcess(),
      &mut copy,
      0,
      0,
      DUPLICATE_SAME_ACCESS,
    )
  };
  if ok == 0 {
    return Err(last_error());
  }
  Ok(OwnedHandle(copy))
}

// --- regions ------------------------------------------------------------------------------------

/// VirtualQuery at `addr`: the region it lies in. `EINVAL` for an address outside user space.
fn query(addr: usize) -> io::Result<MEMORY_BASIC_INFORMATION> {
  let mut info = MEMORY_BASIC_INFORMATION::default();
  let size = std::mem::size_of::<MEMORY_BASIC_INFORMATION>();
  // SAFETY: VirtualQuery only reads the process's address-space bookkeeping and fills `info`.
  if unsafe { VirtualQuery(addr as *const c_void, &mut info, size) } == 0 {
    return Err(last_error());
  }
  Ok(info)
}

/// The end of the allocation (view or VirtualAlloc reservation) that starts at `base`: the sum
/// of its regions, which VirtualQuery reports one run of equal attributes at a time.
fn allocation_end(base: usize) -> io::Result<usize> {
  let mut end = base;
  loop {
    let info = query(end)?;
    if info.State == MEM_FREE || info.AllocationBase as usize != base {
      return Ok(end);
    }
    end = info.BaseAddress as usize + info.RegionSize;
  }
}

/// The page protection for `prot`; `copy` picks the copy-on-write variants (a private view).
/// Write alone cannot be expressed on Windows and gives read-write (as on x86 Linux).
fn page_protection(prot: i32, copy: bool) -> PAGE_PROTECTION_FLAGS {
  let write = prot & PROT_WRITE != 0;
  let exec = prot & PROT_EXEC != 0;
  match (write, exec, copy) {
    (true, true, true) => PAGE_EXECUTE_WRITECOPY,
    (true, true, false) => PAGE_EXECUTE_READWRITE,
    (true, false, true) => PAGE_WRITECOPY,
    (true, false, false) => PAGE_READWRITE,
    (false, true, _) => PAGE_EXECUTE_READ,
    (false, false, _) if prot & PROT_READ != 0 => PAGE_READONLY,
    (false, false, _) => PAGE_NOACCESS,
  }
}

/// Whether the view at `addr` was mapped copy-on-write (a MAP_PRIVATE file view).
fn is_copy_view(info: &MEMORY_BASIC_INFORMATION) -> bool {
  info.Type == MEM_MAPPED && matches!(info.AllocationProtect, PAGE_WRITECOPY | PAGE_EXECUTE_WRITECOPY)
}

// --- map and unmap ------------------------------------------------------------------------------

/// A new mapping of `len` bytes at an address Windows picks:
/// - `MAP_SHARED` of a file: a section (CreateFileMappingW) over the file and a read/write view
///   of it (FILE_MAP_WRITE, + FILE_MAP_EXECUTE for `PROT_EXEC`), then VirtualProtect to `prot`
///   if it asks for less, so that `protect()` can later widen it as `mprotect` could. The
///   section is as large as `offset + len`: a writable shared mapping past the end of the file
///   GROWS the file (Windows does, at once); if the file is open read-only, the section is
///   read-only and so is the view (then `PROT_WRITE` fails with `EACCES`, as on Linux).
/// - `MAP_PRIVATE` of a file: a copy-on-write section and view (FILE_MAP_COPY): writes stay in
///   this process, the file never changes.
/// - `MAP_ANONYMOUS` (fd -1): a pagefile-backed section (zeroed), whoever the type.
///
/// A read-only or private view cannot pass the end of the file by more than the rest of its
/// last page (Windows refuses a section larger than the file there): beyond that, `EINVAL`.
/// Within it, the view covers whole pages, so the tail of the last page reads as zeros, as on
/// Linux. The section handle is closed once the view exists: the view keeps the section alive.
pub fn map(len: usize, prot: i32, flags: i32, fd: i32, offset: u64) -> io::Result<*mut u8> {
  let anonymous = flags & MAP_ANONYMOUS != 0;
  let private = flags & MAP_TYPE_MASK == MAP_PRIVATE;
  let exec = prot & PROT_EXEC != 0;
  let end = offset
    .checked_add(len as u64)
    .ok_or_else(|| errno(libc::EOVERFLOW))?;

  let (file, copy) = if anonymous {
    (INVALID_HANDLE_VALUE, false)
  } else {
    let file = handle_of(fd)?;
    mappable(file)?;
    (file, private)
  };
  // The section's size and the view's length.
  let (mut size, mut view_len) = (end, len);
  if !anonymous && (copy || prot & PROT_WRITE == 0) {
    let mut file_size = 0i64;
    // SAFETY: `file` is an open handle (the user's descriptor, alive for the call) and
    // `file_size` lives for the call.
    if unsafe { GetFileSizeEx(file, &mut file_size) } == 0 {
      return Err(last_error());
    }
    let file_size = file_size as u64;
    if end > file_size {
      let page = page_size() as u64;
      // Only the tail of the file's last page may be asked for.
      if offset >= file_size || end > file_size.next_multiple_of(page) {
        return Err(errno(libc::EINVAL));
      }
      size = file_size;
      view_len = (file_size - offset) as usize;
    }
  }

  // The section: read-write (copy-on-write for a private view) where the file allows, so that
  // protect() can widen the view later; `size` passes the file's end only for a writable
  // shared mapping, which grows the file.
  let want = page_protection(PROT_READ | PROT_WRITE | (prot & PROT_EXEC), copy);
  let section = create_section(file, want, size).or_else(|err| {
    // A file open read-only: a read-only section, if no write was asked for.
    if err.raw_os_error() == Some(libc::EACCES) && !copy && !anonymous && prot & PROT_WRITE == 0 {
      create_section(file, page_protection(PROT_READ | (prot & PROT_EXEC), false), size)
    } else {
      Err(err)
    }
  })?;
  let writable_section = section.1;
  let mut access: FILE_MAP = if copy {
    FILE_MAP_COPY
  } else if writable_section {
    FILE_MAP_WRITE
  } else {
    FILE_MAP_READ
  };
  if exec {
    access |= FILE_MAP_EXECUTE;
  }
  // SAFETY: `section.0` is the section just made; MapViewOfFile picks a free address, so no
  // existing memory is touched; the offset's alignment is checked by Windows (1132).
  let view = unsafe {
    MapViewOfFile(
      section.0 .0,
      access,
      (offset >> 32) as u32,
      offset as u32,
      view_len,
    )
  };
  let view_error = view.Value.is_null().then(last_error);
  drop(section); // the view, if any, keeps the section alive
  if let Some(err) = view_error {
    return Err(err);
  }
  let addr = view.Value as *mut u8;

  // The rights asked for, if the view has more.
  let granted = if writable_section {
    PROT_READ | PROT_WRITE
  } else {
    PROT_READ
  } | (prot & PROT_EXEC);
  if granted != prot {
    // SAFETY: the view was just made for us and no one else knows its address.
    if let Err(err) = unsafe { protect(addr, len, prot) } {
      // SAFETY: the view is ours and unused.
      unsafe { UnmapViewOfFile(view) };
      return Err(err);
    }
  }

  // A shared, writable file view keeps a handle of its file, for sync's FlushFileBuffers.
  if !anonymous && !copy && writable_section {
    match duplicate(file) {
      Ok(handle) => {
        let handle = std::mem::ManuallyDrop::new(handle);
        file_handles()
          .get_or_insert_with(HashMap::new)
          .insert(addr as usize, handle.0 as usize);
      }
      Err(err) => {
        // SAFETY: the view is ours and unused.
        unsafe { UnmapViewOfFile(view) };
        return Err(err);
      }
    }
  }
  Ok(addr)
}

/// `ENODEV` for what Linux's mmap refuses with `ENODEV`: a directory (Node's `fs` opens one for
/// reading), a pipe, a console or another device that is not a file on disk. Windows would give
/// `EINVAL` or an error of its own, later.
fn mappable(file: HANDLE) -> io::Result<()> {
  // SAFETY: `file` is an open handle (the user's descriptor, alive for the call); GetFileType
  // only asks what kind of object it names.
  if unsafe { GetFileType(file) } != FILE_TYPE_DISK {
    return Err(errno(libc::ENODEV));
  }
  let mut info = BY_HANDLE_FILE_INFORMATION::default();
  // SAFETY: as above; `info` lives for the call and is filled by it.
  if unsafe { GetFileInformationByHandle(file, &mut info) } == 0 {
    return Err(last_error());
  }
  if info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY != 0 {
    return Err(errno(libc::ENODEV));
  }
  Ok(())
}

/// CreateFileMappingW over `file` (INVALID_HANDLE_VALUE: the pagefile) of `size` bytes, with
/// `protection`: the section's handle, and whether it is writable.
fn create_section(
  file: HANDLE,
  protection: PAGE_PROTECTION_FLAGS,
  size: u64,
) -> io::Result<(OwnedHandle, bool)> {
  // SAFETY: `file` is an open handle or INVALID_HANDLE_VALUE (a pagefile-backed section); no
  // security attributes, no name: nothing else can open this section.
  let section = unsafe {
    CreateFileMappingW(
      file,
      std::ptr::null(),
      protection,
      (size >> 32) as u32,
      size as u32,
      std::ptr::null(),
    )
  };
  if section.is_null() {
    return Err(last_error());
  }
  let writable = matches!(
    protection,
    PAGE_READWRITE | PAGE_EXECUTE_READWRITE | PAGE_WRITECOPY | PAGE_EXECUTE_WRITECOPY
  );
  Ok((OwnedHandle(section), writable))
}

/// Releases `addr..addr + len`: each allocation in it, views (UnmapViewOfFile) and placeholders
/// (VirtualFree) alike. Windows releases whole allocations only: `addr` must start one, and the
/// range must end where one ends (`EINVAL` otherwise, before anything is released).
///
/// # Safety
/// `addr..addr + len` is a range this crate mapped and still owns, and no Rust reference into it
/// outlives this call.
pub unsafe fn unmap(addr: *mut u8, len: usize) -> io::Result<()> {
  let (start, end) = (addr as usize, addr as usize + len);
  // First the list, checked whole: nothing is released unless every piece can be.
  let mut allocations = Vec::new();
  let mut at = start;
  while at < end {
    let info = query(at)?;
    if info.State == MEM_FREE || info.AllocationBase as usize != at {
      return Err(errno(libc::EINVAL));
    }
    let stop = allocation_end(at)?;
    allocations.push((at, info.Type));
    at = stop;
  }
  if at.next_multiple_of(page_size()) != end.next_multiple_of(page_size()) {
    return Err(errno(libc::EINVAL));
  }
  for (base, kind) in allocations {
    let released = if kind == MEM_MAPPED {
      forget_file_handle(base);
      // SAFETY: `base` starts a view inside the caller's range (see the contract).
      unsafe {
        UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
          Value: base as *mut c_void,
        })
      }
    } else {
      // SAFETY: `base` starts a reservation of ours (a placeholder) inside the caller's range.
      unsafe { VirtualFree(base as *mut c_void, 0, MEM_RELEASE) }
    };
    if released == 0 {
      return Err(last_error());
    }
  }
  Ok(())
}

/// Replaces the view at `addr` with zero-filled, read-write private memory at the same address:
/// native code that still holds a pointer into the range (zlib, an `fs.write` in flight) reads
/// zeros and writes into memory nobody sees, and the file is no longer referenced. The range
/// stays ours until [`unmap`].
///
/// Windows cannot do that in one step without placeholders (VirtualAlloc2 / MapViewOfFile3 with
/// MEM_REPLACE_PLACEHOLDER, Windows 10 1803+), which Wine 8 refuses (DESIGN §4). So: the view
/// is unmapped, then the same range is reserved and committed at the same address
/// (VirtualAlloc: zeroed). Between the two, another thread may take the address (any allocation
/// in the process may land in the hole). Then the old pointers would reach someone else's
/// memory, a silent corruption, and the caller (told "nothing changed" by an error) would
/// believe the view still there: so that race, and any other failure after the view is gone,
/// ends the process at once with a diagnostic on stderr (fail safe: a crash, never a write into
/// memory that is not ours). It needs an allocation in the same 64 KiB-aligned hole within
/// microseconds; none was seen in testing.
///
/// # Safety
/// `addr..addr + len` is a range this crate mapped and still owns: a whole view.
pub unsafe fn replace_with_placeholder(addr: *mut u8, len: usize) -> io::Result<()> {
  let info = query(addr as usize)?;
  if info.Type != MEM_MAPPED || info.AllocationBase != addr.cast() {
    return Err(errno(libc::EINVAL));
  }
  forget_file_handle(addr as usize);
  // Another thread (the thread pool's zlib or crypto, a worker) may touch the range while it is
  // unmapped: its access violation waits for the zeros and runs again (`signals::handler`).
  // The whole pages: an access to the last, partial one of the view faults the same way.
  let _gap = signals::Gap::open(addr as usize, len.next_multiple_of(page_size()));
  // SAFETY: `addr` is the base of a view the caller owns (checked just above).
  if unsafe { UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: addr.cast() }) } == 0 {
    // Nothing changed: the view is still there.
    return Err(last_error());
  }
  // SAFETY: the range is the hole the view just left, ours by the contract; a fixed address
  // either gets exactly that range or fails (ERROR_INVALID_ADDRESS if someone took it).
  let got = unsafe {
    VirtualAlloc(
      addr as *const c_void,
      len,
      MEM_RESERVE | MEM_COMMIT,
      PAGE_READWRITE,
    )
  };
  if got != addr.cast::<c_void>() {
    // SAFETY: GetLastError only reads this thread's error value.
    let code = unsafe { GetLastError() };
    eprintln!(
      "node-mmap: FATAL: unmap(): the range at {addr:p} ({len} bytes) could not be replaced with zeros \
       after its view was unmapped (Win32 error {code}; another thread may have taken the address). \
       Pointers into it would reach memory that is not ours: ending the process."
    );
    std::process::abort();
  }
  Ok(())
}

/// Gives back the pages written to a placeholder (private memory): decommitted and committed
/// again, it reads zeros (see [`advise`]'s `MADV_DONTNEED`).
///
/// # Safety
/// `addr..addr + len` is a placeholder of ours.
pub unsafe fn clear_placeholder(addr: *mut u8, len: usize) {
  // SAFETY: the caller's placeholder, nobody's data.
  let _ = unsafe { advise(addr, len, MADV_DONTNEED) };
}

// --- the toolkit --------------------------------------------------------------------------------

/// Advice: `MADV_WILLNEED` -> PrefetchVirtualMemory (Windows 8+; Wine accepts it and does
/// nothing). `MADV_DONTNEED` on a placeholder (private memory) decommits and recommits it, so
/// that it reads as zeros again, as on Linux; on a view it is a hint with no effect (Windows
/// cannot drop a private view's copies without unmapping). Every other advice (0 here, or
/// NORMAL/RANDOM/SEQUENTIAL) is accepted as a hint and does nothing.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn advise(addr: *mut u8, len: usize, advice: i32) -> io::Result<()> {
  if advice == MADV_WILLNEED {
    let range = WIN32_MEMORY_RANGE_ENTRY {
      VirtualAddress: addr.cast(),
      NumberOfBytes: len,
    };
    // SAFETY: one entry, alive for the call, naming the caller's range; prefetching only reads
    // pages in.
    if unsafe { PrefetchVirtualMemory(GetCurrentProcess(), 1, &range, 0) } == 0 {
      return Err(last_error());
    }
  } else if advice == MADV_DONTNEED && query(addr as usize)?.Type == MEM_PRIVATE {
    // SAFETY: the range is private memory of ours (a placeholder) holding nobody's data: it is
    // decommitted and committed again in place (the reservation stays, so no one can take it),
    // and reads as zeros.
    unsafe {
      if VirtualFree(addr.cast(), len, MEM_DECOMMIT) == 0 {
        return Err(last_error());
      }
      if VirtualAlloc(addr as *const c_void, len, MEM_COMMIT, PAGE_READWRITE).is_null() {
        return Err(last_error());
      }
    }
  }
  Ok(())
}

/// Writes the range back: FlushViewOfFile (it starts the writes, like `MS_ASYNC`), then with
/// `MS_SYNC` FlushFileBuffers on the file's handle kept since `map()`, which waits for them to
/// reach the disk. A view that is not a shared file view (anonymous, private, a placeholder)
/// has nothing to write: success, as msync gives on Linux.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn sync(addr: *mut u8, len: usize, flags: i32) -> io::Result<()> {
  let info = query(addr as usize)?;
  if info.Type != MEM_MAPPED {
    return Ok(());
  }
  let base = info.AllocationBase as usize;
  let Some(file) = file_handle(base) else {
    return Ok(()); // not a shared, writable file view
  };
  // SAFETY: the range lies in the caller's view; FlushViewOfFile only writes its dirty pages.
  if unsafe { FlushViewOfFile(addr as *const c_void, len) } == 0 {
    return Err(last_error());
  }
  if flags & MS_SYNC != 0 {
    // SAFETY: `file` is our own duplicate of the view's file handle, open for the call.
    if unsafe { FlushFileBuffers(file.0) } == 0 {
      return Err(last_error());
    }
  }
  Ok(())
}

/// Pages asked about per QueryWorkingSetEx call (16 bytes of answer each: 64 KiB a call).
const WORKING_SET_CHUNK_PAGES: usize = 4096;

/// How many of the range's pages are resident (in the working set: QueryWorkingSetEx's `Valid`
/// bit, `K32QueryWorkingSetEx` in kernel32, which Wine has), and how many it spans.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn resident_pages(addr: *mut u8, len: usize) -> io::Result<(usize, usize)> {
  let page = page_size();
  let pages = len.div_ceil(page);
  let mut entries: Vec<PSAPI_WORKING_SET_EX_INFORMATION> = Vec::new();
  entries
    .try_reserve_exact(pages.min(WORKING_SET_CHUNK_PAGES))
    .map_err(|_| errno(libc::ENOMEM))?;
  let mut resident = 0;
  let mut done = 0;
  while done < pages {
    let count = (pages - done).min(WORKING_SET_CHUNK_PAGES);
    entries.clear();
    entries.extend((0..count).map(|i| PSAPI_WORKING_SET_EX_INFORMATION {
      VirtualAddress: (addr as usize + (done + i) * page) as *mut c_void,
      ..Default::default()
    }));
    let bytes = (count * std::mem::size_of::<PSAPI_WORKING_SET_EX_INFORMATION>()) as u32;
    // SAFETY: `entries` holds `count` entries, `bytes` long, each naming a page of the caller's
    // range; the call only fills in their attributes.
    if unsafe { K32QueryWorkingSetEx(GetCurrentProcess(), entries.as_mut_ptr().cast(), bytes) } == 0 {
      return Err(last_error());
    }
    // SAFETY: every variant of the union is a plain usize-sized bit field; Flags reads it whole.
    resident += entries
      .iter()
      .filter(|e| unsafe { e.VirtualAttributes.Flags } & 1 != 0)
      .count();
    done += count;
  }
  Ok((resident, pages))
}

/// VirtualLock (`lock == true`) or VirtualUnlock over the range. Unlocking pages that were not
/// locked succeeds (ERROR_NOT_LOCKED is ignored), as munlock does.
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn lock(addr: *mut u8, len: usize, lock: bool) -> io::Result<()> {
  // SAFETY: the caller owns the range; locking changes only its residency.
  let ok = unsafe {
    if lock {
      VirtualLock(addr as *const c_void, len)
    } else {
      VirtualUnlock(addr as *const c_void, len)
    }
  };
  if ok == 0 {
    // SAFETY: GetLastError only reads this thread's error value.
    let code = unsafe { GetLastError() };
    if !lock && code == windows_sys::Win32::Foundation::ERROR_NOT_LOCKED {
      return Ok(());
    }
    return Err(errno(errno_of(code)));
  }
  Ok(())
}

/// VirtualProtect to the page protection of `prot` (copy-on-write variants on a private view,
/// so that its writes stay private).
///
/// # Safety
/// `addr..addr + len` lies within a mapping this crate owns and `addr` is page-aligned.
pub unsafe fn protect(addr: *mut u8, len: usize, prot: i32) -> io::Result<()> {
  let info = query(addr as usize)?;
  let copy = is_copy_view(&info);
  // A view of a read-only section (a file open read-only) cannot be made writable: `EACCES`,
  // as Linux's mprotect says for a shared mapping of a file open read-only (VirtualProtect
  // would say ERROR_INVALID_PARAMETER, `EINVAL`).
  if prot & PROT_WRITE != 0
    && info.Type == MEM_MAPPED
    && matches!(info.AllocationProtect, PAGE_READONLY | PAGE_EXECUTE_READ)
  {
    return Err(errno(libc::EACCES));
  }
  let mut old: PAGE_PROTECTION_FLAGS = 0;
  // SAFETY: the caller owns the range; VirtualProtect changes only its access rights.
  if unsafe { VirtualProtect(addr as *const c_void, len, page_protection(prot, copy), &mut old) } == 0 {
    return Err(last_error());
  }
  Ok(())
}

// --- files by path ------------------------------------------------------------------------------

/// Windows refuses to cut a file shorter while a view of it exists (`ERROR_USER_MAPPED_FILE`):
/// `'w+'` of a larger file then cuts it with no view, and maps it again.
pub const SHRINKS_UNDER_VIEWS: bool = false;

/// Regular files tell the truth about their size here (no procfs or sysfs): `open()` needs no
/// probing mapping, which would grow an empty file opened for writing (a writable section
/// larger than its file grows it).
pub const PSEUDO_FILES: bool = false;

/// Opens `path` for mapping, shared for reading, writing and deleting with other handles (as
/// libuv opens files for Node's `fs`), never truncated. `create_new`: created, and only if
/// missing (`CREATE_NEW`), with `DELETE` access so that a call that fails removes the file
/// through this very handle ([`remove_created`]). The standard library converts the path to
/// UTF-16 and gives a long one the `\\?\` prefix. A directory is `EISDIR`, as Node's `fs`
/// says (CreateFileW refuses a directory with "access denied").
pub fn open(path: &std::path::Path, write: bool, create_new: bool) -> io::Result<std::fs::File> {
  use std::os::windows::fs::OpenOptionsExt;
  use windows_sys::Win32::Foundation::{GENERIC_READ, GENERIC_WRITE};
  use windows_sys::Win32::Storage::FileSystem::DELETE;
  let mut options = std::fs::OpenOptions::new();
  options.read(true).write(write || create_new);
  if create_new {
    options
      .create_new(true)
      .access_mode(GENERIC_READ | GENERIC_WRITE | DELETE);
  }
  options.open(path).map_err(|err| {
    let err = std_error(err);
    if err.raw_os_error() == Some(libc::EACCES) && std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
      return errno(libc::EISDIR);
    }
    err
  })
}

/// Removes the file a call made ([`open`] with `create_new`) and is about to fail: through its
/// handle (delete on close), so that a file another process put at the path meanwhile is never
/// the one removed.
pub fn remove_created(_path: &std::path::Path, file: &std::fs::File) {
  use std::os::windows::io::AsRawHandle;
  use windows_sys::Win32::Storage::FileSystem::{
    FileDispositionInfo, SetFileInformationByHandle, FILE_DISPOSITION_INFO,
  };
  let info = FILE_DISPOSITION_INFO { DeleteFile: true };
  // SAFETY: the handle is `file`'s, open for the call; `info` lives for the call and its size
  // is passed with it. A failure leaves the file, as a failed unlink does on Unix.
  unsafe {
    SetFileInformationByHandle(
      file.as_raw_handle() as HANDLE,
      FileDispositionInfo,
      (&info as *const FILE_DISPOSITION_INFO).cast(),
      std::mem::size_of::<FILE_DISPOSITION_INFO>() as u32,
    )
  };
}

/// Sets the file's size (SetFileInformationByHandle's end of file, through std). A writable
/// shared view already grew it as far as it reaches.
pub fn grow_file(file: &std::fs::File, size: u64) -> Result<(), (io::Error, &'static str)> {
  file.set_len(size).map_err(|err| (std_error(err), "ftruncate"))
}

/// `'w+'` of a file with something in it: the file takes `target` bytes, then the first
/// `min(current, target)` become zeros. Sized first, as on Linux: a size the file system
/// refuses (a disk that cannot hold it) then fails before any byte changed (zeroing first
/// emptied the file and then threw). Windows has no hole punching that Wine runs, so the zeros
/// are written, a MiB at a time (the writes and the views share one cache, so a view of the
/// file sees them). The file stays at least as large as its views throughout: a section cannot
/// be cut shorter than itself, and the one `open()` made ends within `target`.
pub fn empty_file(file: &std::fs::File, current: u64, target: u64) -> Result<(), (io::Error, &'static str)> {
  use std::os::windows::fs::FileExt;
  if target != current {
    file
      .set_len(target)
      .map_err(|err| (std_error(err), "ftruncate"))?;
  }
  let zeros = vec![0u8; 1 << 20];
  let end = current.min(target);
  let mut at = 0u64;
  while at < end {
    let chunk = (end - at).min(zeros.len() as u64) as usize;
    let written = file
      .seek_write(&zeros[..chunk], at)
      .map_err(|err| (std_error(err), "write"))?;
    if written == 0 {
      return Err((errno(libc::EIO), "write"));
    }
    at += written as u64;
  }
  Ok(())
}

// --- faults -------------------------------------------------------------------------------------

/// The fault side of the port: a vectored exception handler, the first in the chain, shows the
/// core's hook each access violation (`EXCEPTION_ACCESS_VIOLATION`, as SIGSEGV) and in-page
/// error (`EXCEPTION_IN_PAGE_ERROR`: the file's disk or network share failed to deliver a page,
/// as SIGBUS). At an address of one of our mappings the hook writes its diagnostic line and the
/// exception goes on down the chain, which ends the process as Windows does (exit status
/// `0xC0000005` or `0xC0000006`; crash reporters still see it); at any other address the
/// handler does nothing, so Node's and V8's own handlers (WebAssembly's traps) see the
/// exception exactly as without us. Lost pages are not replaced here: part of a view cannot be
/// swapped for zeros without the placeholder API that Wine lacks, so an in-page error in a
/// mapping ends the process, with the diagnostic.
pub mod signals {
  use std::sync::atomic::{AtomicUsize, Ordering};

  use windows_sys::Win32::Foundation::{EXCEPTION_ACCESS_VIOLATION, EXCEPTION_IN_PAGE_ERROR, HANDLE};
  use windows_sys::Win32::Storage::FileSystem::WriteFile;
  use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE};
  use windows_sys::Win32::System::Diagnostics::Debug::{
    AddVectoredExceptionHandler, EXCEPTION_CONTINUE_EXECUTION, EXCEPTION_CONTINUE_SEARCH, EXCEPTION_POINTERS,
  };
  use windows_sys::Win32::System::Memory::{
    MEM_FREE, PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_WRITECOPY, PAGE_READONLY,
    PAGE_READWRITE, PAGE_WRITECOPY,
  };
  use windows_sys::Win32::System::Threading::GetCurrentThreadId;

  // Nothing is replaced here, so nothing is asked (`replace_with_zeros`, `is_lost`), and Windows
  // keeps no list of mappings with a limit (`count_maps`).
  pub use super::super::stub::signals::{
    count_maps, is_lost, is_readable, replace_with_copy, replace_with_zeros, Copied, Fault, Hook, Outcome,
    Signal,
  };
  use super::consts::{PROT_EXEC, PROT_READ, PROT_WRITE};

  /// No lost page is replaced here (see the module's documentation).
  pub const CAN_REPLACE_LOST_PAGES: bool = false;

  /// The name diagnostics give a fault: the exception's, as Windows names it.
  pub fn name(signal: Signal) -> &'static [u8] {
    match signal {
      Signal::Bus => b"EXCEPTION_IN_PAGE_ERROR",
      Signal::Segv => b"EXCEPTION_ACCESS_VIOLATION",
    }
  }

  /// The hook, as an address (0: not installed).
  static HOOK: AtomicUsize = AtomicUsize::new(0);

  /// Installs the handler with `hook`, once per process (later calls do nothing).
  pub fn install(hook: Hook) {
    if HOOK
      .compare_exchange(0, hook as usize, Ordering::AcqRel, Ordering::Acquire)
      .is_err()
    {
      return;
    }
    // SAFETY: `handler` has the signature Windows calls and stays loaded with the module (an
    // addon is never unloaded by Node); 1 puts it first in the chain.
    unsafe { AddVectoredExceptionHandler(1, Some(handler)) };
  }

  /// Ranges between the two steps of [`replace_with_placeholder`](super::replace_with_placeholder)
  /// (view unmapped, zeros not yet there), as `(start, end)` pairs; `start` 0 is a free slot,
  /// 1 one being filled in.
  /// A fixed array, so the handler reads it without locks or allocation; one slot per thread
  /// replacing at that moment (each replacement takes microseconds).
  static GAPS: [(AtomicUsize, AtomicUsize); 64] = [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 64];

  /// One range in [`GAPS`] for as long as the guard lives.
  pub struct Gap(usize);

  impl Gap {
    /// Records `start..start + len` as between its view and its zeros (waits for a free slot).
    pub fn open(start: usize, len: usize) -> Gap {
      loop {
        for (slot, (from, to)) in GAPS.iter().enumerate() {
          // Claimed with 1 (no range starts there), then the end, then the start: a reader
          // that sees the start sees this end.
          if from
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
          {
            to.store(start + len, Ordering::Release);
            from.store(start, Ordering::Release);
            return Gap(slot);
          }
        }
        std::thread::yield_now();
      }
    }
  }

  /// The last ranges gaps held, kept after they close, in a ring: a fault raised in a gap may be
  /// handled only after the gap closed, and after more unmap()s ([`allowed_now`]).
  static CLOSED: [(AtomicUsize, AtomicUsize); 1024] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 1024];
  /// The next slot of [`CLOSED`] to write (modulo its length).
  static NEXT_CLOSED: AtomicUsize = AtomicUsize::new(0);

  impl Drop for Gap {
    fn drop(&mut self) {
      let (from, to) = &GAPS[self.0];
      let (start, end) = (from.load(Ordering::Acquire), to.load(Ordering::Acquire));
      let (kept_from, kept_to) = &CLOSED[NEXT_CLOSED.fetch_add(1, Ordering::AcqRel) % CLOSED.len()];
      kept_from.store(0, Ordering::Release);
      kept_to.store(end, Ordering::Release);
      kept_from.store(start, Ordering::Release);
      from.store(0, Ordering::Release);
    }
  }

  /// Whether `addr` lies in one of the ranges gaps held last.
  fn in_closed_gap(addr: usize) -> bool {
    CLOSED.iter().any(|(from, to)| {
      let start = from.load(Ordering::Acquire);
      start > 1 && start <= addr && addr < to.load(Ordering::Acquire)
    })
  }

  /// Waits while `addr` lies in a [`Gap`]; true if it did (the access can run again).
  fn waited_for_gap(addr: usize) -> bool {
    let mut waited = false;
    for (from, to) in &GAPS {
      let start = from.load(Ordering::Acquire);
      if start > 1 && start <= addr && addr < to.load(Ordering::Acquire) {
        while from.load(Ordering::Acquire) == start {
          std::thread::yield_now();
        }
        waited = true;
      }
    }
    waited
  }

  /// The vectored exception handler (see the module's documentation).
  unsafe extern "system" fn handler(info: *mut EXCEPTION_POINTERS) -> i32 {
    // SAFETY: Windows passes a valid EXCEPTION_POINTERS whose record lives for the call.
    let record = unsafe { &*(*info).ExceptionRecord };
    let signal = match record.ExceptionCode {
      EXCEPTION_ACCESS_VIOLATION => Signal::Segv,
      EXCEPTION_IN_PAGE_ERROR => Signal::Bus,
      _ => return EXCEPTION_CONTINUE_SEARCH,
    };
    // Both codes carry the access (0 read, 1 write, 8 execute) and the address.
    if record.NumberParameters < 2 {
      return EXCEPTION_CONTINUE_SEARCH;
    }
    let write = match record.ExceptionInformation[0] {
      0 => Some(false),
      1 => Some(true),
      _ => None,
    };
    let addr = record.ExceptionInformation[1];
    if signal == Signal::Segv && waited_for_gap(addr) {
      // The range was being replaced with zeros: they are there now.
      return EXCEPTION_CONTINUE_EXECUTION;
    }
    let hook = HOOK.load(Ordering::Acquire);
    if hook == 0 {
      return EXCEPTION_CONTINUE_SEARCH;
    }
    // SAFETY: HOOK holds only a `Hook` stored by `install`.
    let hook = unsafe { std::mem::transmute::<usize, Hook>(hook) };
    match hook(Fault { signal, addr, write }) {
      Outcome::Recovered => EXCEPTION_CONTINUE_EXECUTION,
      Outcome::NotOurs if signal == Signal::Segv && allowed_now(addr, write) => {
        // Raised in an unmap()'s gap (above) but handled only after it closed: the zeros are
        // there, and the range may have left the table meanwhile. The access runs again.
        EXCEPTION_CONTINUE_EXECUTION
      }
      Outcome::Fatal | Outcome::NotOurs => EXCEPTION_CONTINUE_SEARCH,
    }
  }

  /// Whether `addr` lies in a range an unmap() replaced lately, the page holding it now allows
  /// the access (`write`: a write; else a read), as VirtualQuery tells, and the same address has
  /// not faulted again and again.
  fn allowed_now(addr: usize, write: Option<bool>) -> bool {
    let needed = match write {
      Some(true) => PROT_WRITE,
      _ => PROT_READ,
    };
    in_closed_gap(addr)
      && maps_region(addr, |_| {}).is_some_and(|(_, _, prot)| prot & needed != 0)
      && !super::super::retried_too_often(addr)
  }

  /// The calling thread's id (never 0 on Windows).
  pub fn thread_id() -> usize {
    // SAFETY: GetCurrentThreadId has no preconditions.
    unsafe { GetCurrentThreadId() as usize }
  }

  /// The region of equal rights holding `addr`, as VirtualQuery tells it: `(start, end, prot)`.
  /// No path is given (the diagnostic names the one `openSync` had, when it had one).
  pub fn maps_region(addr: usize, _path: impl FnMut(&[u8])) -> Option<(usize, usize, i32)> {
    let info = super::query(addr).ok()?;
    if info.State == MEM_FREE {
      return None;
    }
    let start = info.BaseAddress as usize;
    let prot = match info.Protect & 0xff {
      PAGE_READONLY => PROT_READ,
      PAGE_READWRITE | PAGE_WRITECOPY => PROT_READ | PROT_WRITE,
      PAGE_EXECUTE => PROT_EXEC,
      PAGE_EXECUTE_READ => PROT_READ | PROT_EXEC,
      PAGE_EXECUTE_READWRITE | PAGE_EXECUTE_WRITECOPY => PROT_READ | PROT_WRITE | PROT_EXEC,
      _ => 0,
    };
    Some((start, start + info.RegionSize, prot))
  }

  /// The diagnostics' writer: a [`LineOut`](super::super::LineOut) to the standard error
  /// handle, written with WriteFile.
  pub type Out = super::super::LineOut<StdErr>;

  /// The standard error handle (null when the process has none: nothing is written).
  pub struct StdErr(HANDLE);

  impl super::super::RawWrite for StdErr {
    fn write_some(&mut self, bytes: &[u8]) -> usize {
      if self.0.is_null() {
        return 0;
      }
      let mut written = 0u32;
      let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
      // SAFETY: the caller's bytes live for the call and `len` does not pass them; a bad
      // handle only makes WriteFile fail.
      let ok = unsafe { WriteFile(self.0, bytes.as_ptr(), len, &mut written, std::ptr::null_mut()) };
      if ok == 0 {
        0
      } else {
        written as usize
      }
    }
  }

  impl Out {
    /// A writer to stderr (`fd` is 2 wherever this is used).
    pub fn new(_fd: i32) -> Self {
      // SAFETY: GetStdHandle only reads the process's standard handles.
      super::super::LineOut::to(StdErr(unsafe { GetStdHandle(STD_ERROR_HANDLE) }))
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// A fresh anonymous read-write mapping of `len` bytes.
  fn anonymous(len: usize) -> *mut u8 {
    map(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0).expect("anonymous map")
  }

  #[test]
  fn system_values_are_windows_own() {
    assert_eq!(page_size(), 4096);
    assert_eq!(allocation_granularity(), 65536);
  }

  #[test]
  fn win32_errors_become_errno_numbers() {
    use windows_sys::Win32::Foundation as f;
    assert_eq!(errno_of(f::ERROR_ACCESS_DENIED), libc::EACCES);
    assert_eq!(errno_of(f::ERROR_FILE_NOT_FOUND), libc::ENOENT);
    assert_eq!(errno_of(f::ERROR_INVALID_HANDLE), libc::EBADF);
    assert_eq!(errno_of(f::ERROR_NOT_ENOUGH_MEMORY), libc::ENOMEM);
    assert_eq!(errno_of(f::ERROR_COMMITMENT_LIMIT), libc::ENOMEM);
    assert_eq!(errno_of(f::ERROR_MAPPED_ALIGNMENT), libc::EINVAL);
    assert_eq!(errno_of(f::ERROR_USER_MAPPED_FILE), libc::EIO);
  }

  #[test]
  fn protection_table() {
    assert_eq!(page_protection(0, false), PAGE_NOACCESS);
    assert_eq!(page_protection(PROT_READ, false), PAGE_READONLY);
    assert_eq!(page_protection(PROT_WRITE, false), PAGE_READWRITE);
    assert_eq!(page_protection(PROT_READ | PROT_WRITE, true), PAGE_WRITECOPY);
    assert_eq!(page_protection(PROT_READ | PROT_EXEC, true), PAGE_EXECUTE_READ);
    assert_eq!(
      page_protection(PROT_READ | PROT_WRITE | PROT_EXEC, false),
      PAGE_EXECUTE_READWRITE
    );
  }

  /// The descriptor `map()` takes for an open handle (as openSync() by path passes one).
  fn fd_of(file: &std::fs::File) -> i32 {
    use std::os::windows::io::AsRawHandle;
    (-2 - file.as_raw_handle() as i64) as i32
  }

  /// A new directory under the temporary directory, named for `test`.
  fn temp_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("node-mmap-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
  }

  #[test]
  fn map_directory_is_enodev() {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_BACKUP_SEMANTICS;
    let dir = temp_dir("map-directory");
    // Opened as Node's fs opens a directory (libuv asks for backup semantics).
    let handle = std::fs::OpenOptions::new()
      .read(true)
      .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
      .open(&dir)
      .unwrap();
    let err = map(4096, PROT_READ, consts::MAP_SHARED, fd_of(&handle), 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
    drop(handle);
    std::fs::remove_dir(&dir).unwrap();
  }

  #[test]
  fn protect_write_on_read_only_file_view_is_eacces() {
    let dir = temp_dir("protect-read-only");
    let path = dir.join("data.bin");
    std::fs::write(&path, [0x61u8; 4096]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let addr = map(4096, PROT_READ, consts::MAP_SHARED, fd_of(&file), 0).unwrap();
    // SAFETY: the whole view, just mapped for this test.
    unsafe {
      let err = protect(addr, 4096, PROT_READ | PROT_WRITE).unwrap_err();
      assert_eq!(err.raw_os_error(), Some(libc::EACCES));
      protect(addr, 4096, PROT_READ).unwrap();
      assert_eq!(*addr, 0x61);
      unmap(addr, 4096).unwrap();
    }
    drop(file);
    std::fs::remove_dir_all(&dir).unwrap();
  }

  #[test]
  fn map_file_without_host_libuv_is_enosys() {
    // The test harness exports no uv_get_osfhandle (node.exe does).
    let err = map(4096, PROT_READ, consts::MAP_SHARED, 0, 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSYS));
  }

  #[test]
  fn anonymous_is_zeroed_view_and_unmaps() {
    let addr = anonymous(65536);
    assert_eq!(query(addr as usize).unwrap().Type, MEM_MAPPED);
    // SAFETY: the range was just mapped read-write for this test.
    let bytes = unsafe { std::slice::from_raw_parts_mut(addr, 65536) };
    assert!(bytes.iter().all(|&b| b == 0));
    bytes.fill(7);
    // SAFETY: the whole view, ours; `bytes` is not used again.
    unsafe { unmap(addr, 65536) }.unwrap();
    assert_eq!(query(addr as usize).unwrap().State, MEM_FREE);
  }

  #[test]
  fn placeholder_reads_zeros_then_unmaps() {
    let len = 3 * 4096;
    let addr = anonymous(len);
    // SAFETY: the range was just mapped read-write for this test.
    unsafe { std::ptr::write_bytes(addr, 0xff, len) };
    // SAFETY: the whole view, ours.
    unsafe { replace_with_placeholder(addr, len) }.unwrap();
    let info = query(addr as usize).unwrap();
    assert_eq!(
      (info.Type, info.AllocationBase as usize),
      (MEM_PRIVATE, addr as usize)
    );
    // SAFETY: the placeholder is committed read-write memory of ours.
    let bytes = unsafe { std::slice::from_raw_parts_mut(addr, len) };
    assert!(bytes.iter().all(|&b| b == 0));
    bytes[5] = 1;
    // SAFETY: the placeholder is ours; DONTNEED on it gives zeros back.
    unsafe { advise(addr, len, MADV_DONTNEED) }.unwrap();
    // SAFETY: still committed read-write memory of ours.
    assert_eq!(unsafe { *addr.add(5) }, 0);
    // SAFETY: the whole placeholder, ours.
    unsafe { unmap(addr, len) }.unwrap();
    assert_eq!(query(addr as usize).unwrap().State, MEM_FREE);
  }

  #[test]
  fn unmap_refuses_part_of_a_view() {
    let addr = anonymous(65536);
    // SAFETY: inside our own view; refused before anything is released.
    let err = unsafe { unmap(addr.add(4096), 4096) }.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    // SAFETY: the first half only: refused too.
    let err = unsafe { unmap(addr, 32768) }.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    // SAFETY: the whole view, ours.
    unsafe { unmap(addr, 65536) }.unwrap();
  }

  #[test]
  fn toolkit_on_an_anonymous_view() {
    let len = 65536;
    let addr = anonymous(len);
    // SAFETY: each call gets the whole view, ours.
    unsafe {
      protect(addr, len, PROT_READ).unwrap();
      protect(addr, len, PROT_READ | PROT_WRITE).unwrap();
      lock(addr, len, true).unwrap();
      lock(addr, len, false).unwrap();
      lock(addr, len, false).unwrap(); // not locked: still fine, as munlock
      sync(addr, len, MS_SYNC).unwrap(); // nothing to write back
      advise(addr, len, MADV_WILLNEED).unwrap();
      std::ptr::write_bytes(addr, 1, len);
      assert_eq!(resident_pages(addr, len).unwrap(), (16, 16));
      unmap(addr, len).unwrap();
    }
  }
}
