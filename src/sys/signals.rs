//! SIGBUS and SIGSEGV handlers (Unix): installed once, chained to the handlers that were there
//! before, and narrow. On a fault with an address, the handler asks one hook, which the core
//! registers with [`install`], whether the address is one of its mappings and what to do:
//! [`Outcome::Recovered`] (the access runs again), [`Outcome::Fatal`] (the default action ends
//! the process, after the hook said why on stderr) or [`Outcome::NotOurs`] (the handler that was
//! installed before ours runs, V8's WebAssembly trap handler among them, or the default action
//! if there was none). What a fault in a mapping means, and whether a lost page is replaced, is
//! the core's (`core::recovery`); this file knows nothing above the OS.
//!
//! Besides the handlers, the async-signal-safe primitives such a hook needs: replacing pages
//! with zeros ([`replace_with_zeros`]), asking whether a page can be read ([`is_lost`]), the
//! kernel mapping holding an address and the number of kernel mappings (`/proc/self/maps`, read
//! as a stream: [`maps_region`], [`count_maps`]), and a writer to stderr ([`Out`]).
//!
//! Everything here that a handler runs is async-signal-safe: no locks, no allocation, only
//! atomics, `mmap`, `process_vm_readv`, `open`/`read`/`write`/`close` and `sigaction`. And it
//! runs on small alternate signal stacks (Deno's is 8 KiB, of which the signal frame of a CPU
//! with AVX-512 takes ~2.7 KiB): no buffer on the stack is larger than [`CHUNK`] bytes; a
//! diagnostic is written piecewise, and `/proc/self/maps` read as a stream. The hook must keep
//! to the same rules.

use std::cell::{RefCell, UnsafeCell};
use std::ffi::c_void;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// The handlers that were installed before ours, to chain to. Written once, inside `INSTALL`,
/// before our handlers can run; only read afterwards.
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);

// SAFETY: written once under `INSTALL` before any handler of ours is installed; read-only after.
unsafe impl Sync for Previous {}

static PREVIOUS_SIGBUS: Previous = Previous(UnsafeCell::new(MaybeUninit::zeroed()));
static PREVIOUS_SIGSEGV: Previous = Previous(UnsafeCell::new(MaybeUninit::zeroed()));
static INSTALL: Once = Once::new();

/// The core's hook, asked about every fault with an address. Written once, inside `INSTALL`,
/// before our handlers can run; only read afterwards.
struct Hooked(UnsafeCell<Option<Hook>>);

// SAFETY: written once under `INSTALL` before any handler of ours is installed; read-only after.
unsafe impl Sync for Hooked {}

static HOOK: Hooked = Hooked(UnsafeCell::new(None));

/// Which of the two signals a fault came with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Signal {
  /// SIGBUS: a page that cannot be had (past the end of a truncated file, an I/O error).
  Bus,
  /// SIGSEGV: an access the page's protection forbids.
  Segv,
}

/// A fault the kernel reported at an address, as the hook sees it.
#[derive(Clone, Copy)]
pub struct Fault {
  pub signal: Signal,
  /// The faulting address.
  pub addr: usize,
  /// Whether the access was a write, where the CPU tells (x86-64 Linux: the page-fault error
  /// code's write bit); `None` elsewhere.
  pub write: Option<bool>,
}

/// What the hook decided for a fault.
pub enum Outcome {
  /// The page was replaced: return and let the access run again.
  Recovered,
  /// The hook said what happened; the process dies with the default action.
  Fatal,
  /// Not an address of the hook's: chain to the handler installed before ours.
  NotOurs,
}

/// The core's answer to a fault: runs inside the signal handler, so it must be
/// async-signal-safe (see the module docs).
pub type Hook = fn(Fault) -> Outcome;

/// Whether a lost page (SIGBUS) can be replaced with zeros and the access completed here: on
/// Linux. Elsewhere such a fault ends the process.
pub const CAN_REPLACE_LOST_PAGES: bool = cfg!(target_os = "linux");

/// The name diagnostics give a fault's signal.
pub fn name(signal: Signal) -> &'static [u8] {
  match signal {
    Signal::Bus => b"SIGBUS",
    Signal::Segv => b"SIGSEGV",
  }
}

/// The test switch: `NODE_MMAP_TEST_SMALL_SIGSTACK=<bytes>` (read once, when the handlers are
/// installed) makes every thread that maps memory run the handlers on an alternate signal stack
/// that leaves them `<bytes>` beside the kernel's signal frame, whatever that frame's size on
/// this CPU, with an inaccessible page below it: a handler that needs more dies by SIGSEGV. So
/// the tests and CI check the handlers on a stack as small as Deno's on any machine.
pub const TEST_SMALL_SIGSTACK: &str = "NODE_MMAP_TEST_SMALL_SIGSTACK";
/// The bytes of the switch; 0 when it is off.
static SMALL_STACK: AtomicUsize = AtomicUsize::new(0);

/// Installs the handlers, once per process (every worker shares them), with `hook` as the one
/// they ask (the first call's `hook`; later calls only do the per-thread part). With the test
/// switch set, also gives the calling thread its small alternate signal stack (once per thread).
pub fn install(hook: Hook) {
  INSTALL.call_once(|| {
    // Reads the page size into its cache before the handlers exist: in a handler,
    // `page_size()` is then an atomic load (sysconf itself is not async-signal-safe).
    super::page_size();
    // SAFETY: inside `INSTALL`, before any handler of ours exists (see `Hooked`).
    unsafe { *HOOK.0.get() = Some(hook) };
    let small = std::env::var(TEST_SMALL_SIGSTACK).ok();
    let small = small.and_then(|bytes| bytes.trim().parse::<usize>().ok());
    SMALL_STACK.store(small.unwrap_or(0), Ordering::Relaxed);
    for (signal, previous) in [
      (libc::SIGBUS, &PREVIOUS_SIGBUS),
      (libc::SIGSEGV, &PREVIOUS_SIGSEGV),
    ] {
      // SAFETY: a zeroed sigaction is a valid value to fill in.
      let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
      action.sa_sigaction = on_fault as *const () as usize;
      action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
      // SAFETY: `action.sa_mask` is a valid sigset to initialise.
      unsafe { libc::sigemptyset(&mut action.sa_mask) };
      // SAFETY: `action` is fully initialised; `previous` is ours to write (see `Previous`).
      unsafe { libc::sigaction(signal, &action, (*previous.0.get()).as_mut_ptr()) };
    }
  });
  let small = SMALL_STACK.load(Ordering::Relaxed);
  if small != 0 {
    if let Err(err) = use_small_stack(small) {
      // A test switch that cannot take effect must not pass for one that did.
      use std::io::Write;
      let message = format!("node-mmap: {TEST_SMALL_SIGSTACK}={small}: no alternate signal stack: {err}\n");
      let _ = std::io::stderr().write_all(message.as_bytes());
    }
  }
}

/// An alternate signal stack of ours: `len` bytes at `base`, the first page inaccessible.
struct AltStack {
  base: *mut c_void,
  len: usize,
}

impl Drop for AltStack {
  fn drop(&mut self) {
    // SAFETY: reads the thread's alternate stack into a zeroed stack_t.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: queries only (a null new stack).
    unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    let ours = current.ss_flags & libc::SS_DISABLE == 0
      && (current.ss_sp as usize) >= self.base as usize
      && (current.ss_sp as usize) < self.base as usize + self.len;
    if ours {
      let disable = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
      };
      // SAFETY: the thread is ending (a thread-local's destructor), not running on this stack.
      unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) };
    }
    // SAFETY: our own mapping, no longer the thread's signal stack.
    unsafe { libc::munmap(self.base, self.len) };
  }
}

thread_local! {
  /// The small alternate signal stack this thread runs the handlers on (test switch only).
  static ALT_STACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// The size of the kernel's signal frame on this CPU (`AT_MINSIGSTKSZ`, Linux 5.14+ on x86 and
/// earlier on arm64), or a generous guess where the kernel does not tell.
fn signal_frame_size() -> usize {
  #[cfg(target_os = "linux")]
  {
    const AT_MINSIGSTKSZ: libc::c_ulong = 51;
    // SAFETY: getauxval reads the process's auxiliary vector; 0 means "not there".
    let size = unsafe { libc::getauxval(AT_MINSIGSTKSZ) } as usize;
    if size != 0 {
      return size;
    }
  }
  4096
}

/// Gives this thread an alternate signal stack that leaves a handler `bytes` besides the
/// kernel's signal frame (or more, where the kernel asks for a larger stack), with an
/// inaccessible page below it (see [`TEST_SMALL_SIGSTACK`]).
/// Once per thread; the stack is given back when the thread ends.
pub fn use_small_stack(bytes: usize) -> io::Result<()> {
  // A thread that is ending (its thread-locals gone) keeps the stack it has.
  if ALT_STACK
    .try_with(|stack| stack.borrow().is_some())
    .unwrap_or(true)
  {
    return Ok(());
  }
  let page = super::page_size();
  // The kernel refuses stacks below MINSIGSTKSZ (2048 bytes on x86-64).
  let size = (signal_frame_size() + bytes).max(libc::MINSIGSTKSZ);
  let len = page + size.next_multiple_of(page);
  let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
  let prot = libc::PROT_READ | libc::PROT_WRITE;
  // SAFETY: a new anonymous mapping where the kernel chooses.
  let base = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
  if base == libc::MAP_FAILED {
    return Err(io::Error::last_os_error());
  }
  let stack = AltStack { base, len };
  // SAFETY: the first page of our own new mapping.
  if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
    return Err(io::Error::last_os_error());
  }
  let new = libc::stack_t {
    // SAFETY: `page` bytes into our own mapping of `len > page` bytes.
    ss_sp: unsafe { base.cast::<u8>().add(page) }.cast(),
    ss_flags: 0,
    ss_size: size,
  };
  // SAFETY: `new` describes `size` bytes of our own mapping, which lives until the thread ends
  // (the thread-local below), when its destructor disables the stack before unmapping it.
  if unsafe { libc::sigaltstack(&new, std::ptr::null_mut()) } != 0 {
    return Err(io::Error::last_os_error());
  }
  // If the thread-local is gone meanwhile, `stack` is dropped: disabled and given back.
  let _ = ALT_STACK.try_with(|slot| *slot.borrow_mut() = Some(stack));
  Ok(())
}

/// The thread's `errno`, which the handler must leave as the interrupted code had it.
fn errno_location() -> *mut libc::c_int {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  // SAFETY: returns the calling thread's errno address; async-signal-safe.
  return unsafe { libc::__errno_location() };
  #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
  // SAFETY: as above.
  return unsafe { libc::__error() };
  #[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd"
  )))]
  return std::ptr::null_mut();
}

extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
  let errno = errno_location();
  // SAFETY: the thread's own errno, read and written back on this thread.
  let saved = (!errno.is_null()).then(|| unsafe { *errno });
  handle(signal, info, context);
  if let Some(saved) = saved {
    // SAFETY: as above.
    unsafe { *errno = saved };
  }
}

fn handle(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
  // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler of SIGBUS/SIGSEGV.
  let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
  // A signal sent with kill(2)/raise(3) (si_code <= 0) is no fault and carries no address.
  if code <= 0 {
    return chain(signal, info, context);
  }
  // SAFETY: written once before our handlers were installed (see `Hooked`).
  let Some(hook) = (unsafe { *HOOK.0.get() }) else {
    return chain(signal, info, context);
  };
  let fault = Fault {
    signal: if signal == libc::SIGBUS {
      Signal::Bus
    } else {
      Signal::Segv
    },
    addr,
    write: is_write(context),
  };
  let write = fault.write;
  match hook(fault) {
    Outcome::Recovered => {}
    Outcome::Fatal => restore_default(signal),
    // A fault that another thread resolved between the fault and this look, and then took the
    // mapping out of the table the hook looks in: the access runs again (see
    // `resolved_meanwhile`).
    Outcome::NotOurs if resolved_meanwhile(signal, code, addr, write) => {}
    Outcome::NotOurs => chain(signal, info, context),
  }
}

/// See `handle`: whether a fault at an address the hook does not know was resolved by another
/// thread since it was raised, so that the access can simply run again:
/// - a SIGBUS read of a page that was missing and can be read now (`unmap()` of a mapping whose
///   file was truncated swaps in a zero-filled placeholder). Only a read, only a missing page
///   (BUS_ADRERR), only where `is_readable` can tell: a write or any other kind of fault could
///   fail the same way again.
/// - a SIGSEGV for rights (SEGV_ACCERR) that the page has now: `remap()` of a private file
///   mapping takes the old range's rights during the move, and a fault there waits for the
///   move; but a thread that faulted and was only scheduled after the move had ended (the old
///   range a readable and writable placeholder by then, the mapping out of the table) found no
///   mapping, and the process died (attack pass 14). The kernel's own record of the page's
///   rights decides (a write needs PROT_WRITE, any other access PROT_READ); should the same
///   address fault again and again all the same, the fault goes on to the next handler.
fn resolved_meanwhile(signal: libc::c_int, code: libc::c_int, addr: usize, write: Option<bool>) -> bool {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    match signal {
      libc::SIGBUS => {
        (code == libc::BUS_ADRERR && write == Some(false) && is_readable(addr))
          || (now_anonymous(addr, write) && !super::retried_too_often(addr))
      }
      // SEGV_ACCERR (2: invalid permissions for a mapped object), which libc does not name.
      _ if code == 2 => {
        let needed = match write {
          Some(true) => libc::PROT_WRITE,
          _ => libc::PROT_READ,
        };
        maps_region(addr, |_| {}).is_some_and(|(_, _, prot)| prot & needed != 0)
          && !super::retried_too_often(addr)
      }
      _ => false,
    }
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = (signal, code, addr, write);
    false
  }
}

/// Whether `addr` now lies in anonymous memory (private, or shared: `/dev/zero`) whose rights
/// allow the access (`write`: a write; else a read): a placeholder or replacement that another
/// thread put in after the fault was raised (`unmap()`, `remap()`, recovery). A write that the
/// file system refused on a thread-pool thread while the main thread's `unmap()` swapped in the
/// placeholder found no mapping, was passed on, and the default action was put back: the next
/// lost page anywhere then killed the process (attack pass 17). Such a fault never repeats on
/// anonymous memory; a file page's does, and goes on after a few tries.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn now_anonymous(addr: usize, write: Option<bool>) -> bool {
  // How the kernel names shared anonymous memory (and nothing longer fits `path`).
  const SHARED_ANONYMOUS: &[u8] = b"/dev/zero (deleted)";
  let mut path = [0u8; SHARED_ANONYMOUS.len()];
  let mut len = 0;
  let mut too_long = false;
  let Some((_, _, prot)) = maps_region(addr, |bytes| {
    for &b in bytes {
      match path.get_mut(len) {
        Some(slot) => {
          *slot = b;
          len += 1;
        }
        None => too_long = true,
      }
    }
  }) else {
    return false;
  };
  let needed = match write {
    Some(true) => libc::PROT_WRITE,
    _ => libc::PROT_READ,
  };
  let anonymous = len == 0 || (!too_long && &path[..len] == SHARED_ANONYMOUS);
  prot & needed != 0 && anonymous
}

/// A number, never 0, that tells the calling thread from every other running thread: its id
/// on Linux. Elsewhere (where no lost page is replaced) only a non-zero number, which may differ
/// between calls on one thread. Async-signal-safe.
pub fn thread_id() -> usize {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  // SAFETY: gettid(2) has no arguments and cannot fail; async-signal-safe.
  return unsafe { libc::syscall(libc::SYS_gettid) } as usize;
  // Elsewhere (no recovery happens there) any non-zero value per thread will do.
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let local = 0u8;
    std::ptr::addr_of!(local) as usize | 1
  }
}

/// Replaces `addr..addr + len` with fresh zero-filled memory of protection `prot` (`MAP_FIXED`
/// over the caller's range, `MAP_NORESERVE`); `false` if mmap(2) failed. Async-signal-safe.
///
/// Private anonymous memory, unless it is writable and the process has a data limit
/// (`RLIMIT_DATA`, `ulimit -d`): writable private memory counts toward it, and once a
/// replacement had taken the process past it (the kernel lets a replacement of memory already
/// mapped through) V8 could commit nothing more and aborted, and the next replacement was
/// refused, which ended the process (attack pass 8). Shared anonymous memory, which this process
/// alone maps too, does not count; it is the fallback of a private replacement refused too.
///
/// # Safety
/// `addr..addr + len` is a page-aligned range the caller owns (whole pages of the size the
/// kernel maps it in), so that `MAP_FIXED` replaces only the caller's own memory.
pub unsafe fn replace_with_zeros(addr: usize, len: usize, prot: i32) -> bool {
  let fixed = libc::MAP_FIXED | libc::MAP_ANONYMOUS | super::consts::MAP_NORESERVE;
  let replace = |sharing: i32| {
    // SAFETY: the caller owns the range (see the contract), so MAP_FIXED replaces only its memory.
    let got = unsafe { libc::mmap(addr as *mut c_void, len, prot, fixed | sharing, -1, 0) };
    got != libc::MAP_FAILED
  };
  let writable = prot & libc::PROT_WRITE != 0;
  if writable && data_limited() {
    return replace(libc::MAP_SHARED) || replace(libc::MAP_PRIVATE);
  }
  replace(libc::MAP_PRIVATE) || (writable && replace(libc::MAP_SHARED))
}

/// What [`replace_with_copy`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub enum Copied {
  /// The range is now a copy of its bytes.
  Yes,
  /// The range could not be read after all (lost meanwhile: a file truncated again): nothing
  /// changed; it is a lost page.
  Lost,
  /// A system call failed: nothing changed.
  Failed,
}

/// Replaces `addr..addr + len` with anonymous memory holding a copy of its bytes, with `prot`,
/// in one step: a new mapping is filled elsewhere and then moved over the range (`mremap` with
/// `MREMAP_FIXED`, which replaces the old pages atomically, so another thread reads the same
/// bytes before and after). For a page that can be read but whose write the file system refused
/// (SIGBUS on a write: a full copy-on-write file system, an immutable file): the bytes stay what
/// the file holds, and the write lands in memory the file no longer sees.
///
/// The bytes are copied by the kernel (`process_vm_readv`), which fails where the page is lost
/// instead of raising SIGBUS: another process may truncate the file again between the caller's
/// look and the copy, and a plain copy then faulted inside the handler, which killed the process
/// (attack pass 17). The copy is shared anonymous memory: `MADV_DONTNEED` on the mapping leaves
/// it as it is, as it leaves the file's pages (a private copy read zeros after it), and the data
/// limit does not count it. Async-signal-safe. Linux only.
///
/// # Safety
/// `addr..addr + len` is a page-aligned range the caller owns (whole pages of the size the
/// kernel maps it in).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub unsafe fn replace_with_copy(addr: usize, len: usize, prot: i32) -> Copied {
  let flags = libc::MAP_SHARED | libc::MAP_ANONYMOUS | super::consts::MAP_NORESERVE;
  // SAFETY: a new mapping at an address the kernel picks; nothing of ours is replaced.
  let copy = unsafe {
    libc::mmap(
      std::ptr::null_mut(),
      len,
      libc::PROT_READ | libc::PROT_WRITE,
      flags,
      -1,
      0,
    )
  };
  if copy == libc::MAP_FAILED {
    return Copied::Failed;
  }
  // SAFETY: `copy` is `len` fresh writable bytes of ours.
  let got = unsafe { copy_through_kernel(copy, addr, len) };
  let outcome = if usize::try_from(got).ok() != Some(len) {
    Copied::Lost
  } else {
    // SAFETY: `copy` is the mapping just made, `len` long; then the move of our own new
    // mapping over the caller's own range (MREMAP_FIXED replaces exactly `addr..addr + len`).
    let moved = unsafe {
      libc::mprotect(copy, len, prot) == 0
        && libc::mremap(
          copy,
          len,
          len,
          libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
          addr as *mut c_void,
        ) != libc::MAP_FAILED
    };
    if moved {
      return Copied::Yes;
    }
    Copied::Failed
  };
  // SAFETY: the copy is still ours and at `copy` (nothing moved it).
  unsafe { libc::munmap(copy, len) };
  outcome
}

/// No page is copied in place here (see the Linux version).
///
/// # Safety
/// As on Linux.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub unsafe fn replace_with_copy(_addr: usize, _len: usize, _prot: i32) -> Copied {
  Copied::Failed
}

/// Whether the process has a data limit (`RLIMIT_DATA` below infinity). Async-signal-safe: the
/// `prlimit64` system call itself, nothing of the C library's.
fn data_limited() -> bool {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let mut limit = libc::rlimit64 {
      rlim_cur: libc::RLIM64_INFINITY,
      rlim_max: libc::RLIM64_INFINITY,
    };
    // SAFETY: prlimit64 of this process (pid 0) with no new limit writes the current one into
    // `limit`, a live `rlimit64`, and reads nothing else.
    let status = unsafe {
      libc::syscall(
        libc::SYS_prlimit64,
        0,
        libc::RLIMIT_DATA,
        std::ptr::null::<libc::rlimit64>(),
        std::ptr::addr_of_mut!(limit),
      )
    };
    status == 0 && limit.rlim_cur != libc::RLIM64_INFINITY
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    false
  }
}

/// Whether reading the byte at `addr` fails (EFAULT): the page is lost. Each call is a system
/// call (`process_vm_readv`, which fails with EFAULT where an access would raise SIGBUS, and
/// reads nothing of the file where it does not: a page beyond the end, or a hole on a full file
/// system, is never allocated by the look). `false` where the system cannot tell.
/// Async-signal-safe; changes `errno` (which the handlers give back to the interrupted code).
pub fn is_lost(addr: usize) -> bool {
  probe(addr) == Some(false)
}

/// Whether the byte at `addr` can be read now (a `process_vm_readv` of it succeeds): `false`
/// where it cannot, and where the system cannot tell. Async-signal-safe; changes `errno`.
pub fn is_readable(addr: usize) -> bool {
  probe(addr) == Some(true)
}

/// Copies `len` bytes at `from` (our own address space) to `to` through the kernel
/// (`process_vm_readv`), which returns short or fails with EFAULT where a page cannot be read,
/// instead of raising a signal: how many bytes it copied, or -1 (errno set). Async-signal-safe.
///
/// # Safety
/// `to..to + len` is writable memory of the caller's.
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn copy_through_kernel(to: *mut c_void, from: usize, len: usize) -> libc::c_long {
  let local = libc::iovec {
    iov_base: to,
    iov_len: len,
  };
  let remote = libc::iovec {
    iov_base: from as *mut c_void,
    iov_len: len,
  };
  // SAFETY: the kernel writes at most `len` bytes to `to` (the caller's, writable) and reads
  // our own address space, failing instead of faulting.
  unsafe {
    libc::syscall(
      libc::SYS_process_vm_readv,
      libc::getpid(),
      &local as *const libc::iovec,
      1usize,
      &remote as *const libc::iovec,
      1usize,
      0usize,
    )
  }
}

/// Reads the byte at `addr` through the kernel: `Some(true)` if it could, `Some(false)` if the
/// page is lost (EFAULT), `None` where the system cannot tell.
fn probe(addr: usize) -> Option<bool> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let mut byte = 0u8;
    // SAFETY: `byte` is one writable byte of ours.
    let got = unsafe { copy_through_kernel(std::ptr::addr_of_mut!(byte).cast(), addr, 1) };
    if got == 1 {
      return Some(true);
    }
    // SAFETY: the thread's errno (restored by the handler before it returns).
    (unsafe { *errno_location() } == libc::EFAULT).then_some(false)
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = addr;
    None
  }
}

/// Runs the handler installed before ours, or the default action: for a fault the access runs
/// again and faults under it; a sent signal is raised again, as it would have acted without us.
fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
  let previous = if signal == libc::SIGBUS {
    &PREVIOUS_SIGBUS
  } else {
    &PREVIOUS_SIGSEGV
  };
  // SAFETY: written once before our handler was installed (see `Previous`).
  let previous = unsafe { (*previous.0.get()).assume_init_ref() };
  let handler = previous.sa_sigaction;
  if handler == libc::SIG_IGN {
    // Ignoring a real fault would loop forever; the kernel kills on a re-fault as with SIG_DFL.
    restore_default(signal);
  } else if handler == libc::SIG_DFL {
    restore_default(signal);
    // SAFETY: `info` is the kernel's siginfo for this handler.
    if unsafe { (*info).si_code } <= 0 {
      // SAFETY: raise(3) is async-signal-safe; the signal stays blocked until we return.
      unsafe { libc::raise(signal) };
    }
  } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
    // SAFETY: with SA_SIGINFO the stored address is a three-argument handler.
    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
      unsafe { std::mem::transmute(handler) };
    handler(signal, info, context);
  } else {
    // SAFETY: without SA_SIGINFO the stored address is a one-argument handler.
    let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
    handler(signal);
  }
}

fn restore_default(signal: libc::c_int) {
  // SAFETY: a zeroed sigaction with SIG_DFL (0) is the default disposition.
  let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
  action.sa_sigaction = libc::SIG_DFL;
  // SAFETY: `action` is initialised; sigaction is async-signal-safe.
  unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
}

/// Whether the faulting access was a write, where the CPU tells (x86-64 Linux: the page-fault
/// error code's write bit).
fn is_write(context: *mut c_void) -> Option<bool> {
  #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
  {
    if context.is_null() {
      return None;
    }
    // SAFETY: for a SA_SIGINFO handler the third argument is the thread's ucontext.
    let context = unsafe { &*context.cast::<libc::ucontext_t>() };
    Some(context.uc_mcontext.gregs[libc::REG_ERR as usize] & 2 != 0)
  }
  #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
  {
    let _ = context;
    None
  }
}

/// The largest buffer a handler keeps on its stack: what `/proc/self/maps` is read with.
const CHUNK: usize = 512;

/// Reads `/proc/self/maps` chunk by chunk, calling `line_byte` with each byte; stops when it
/// returns `false`. Opens the list afresh, or reads it through the reserve descriptor
/// (`unix::maps_reserve`) when no descriptor is left (`EMFILE`). `false` if neither can.
fn read_maps(mut byte: impl FnMut(u8) -> bool) -> bool {
  // SAFETY: a NUL-terminated path; open(2) is async-signal-safe.
  let opened = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
  // errno is read before any other call can change it (the handler saves and restores errno).
  let fd = if opened >= 0 {
    opened
  } else if super::out_of_descriptors(&io::Error::last_os_error()) {
    match super::maps_reserve() {
      Some(reserve) => reserve,
      None => return false,
    }
  } else {
    return false;
  };
  let mut chunk = [0u8; CHUNK];
  let mut at: libc::off_t = 0;
  'read: loop {
    // SAFETY: reads into our own buffer of the given size; pread leaves the descriptor's
    // position alone, so the reserve may be read by several threads at once.
    let got = unsafe { libc::pread(fd, chunk.as_mut_ptr().cast(), chunk.len(), at) };
    if got <= 0 {
      break;
    }
    at += got as libc::off_t;
    for &b in &chunk[..got as usize] {
      if !byte(b) {
        break 'read;
      }
    }
  }
  if opened >= 0 {
    // SAFETY: closes the descriptor opened above (never the reserve).
    unsafe { libc::close(opened) };
  }
  true
}

/// The kernel mappings of the process (lines of `/proc/self/maps`); `None` if it cannot be
/// read. Async-signal-safe, with one [`CHUNK`] of stack.
pub fn count_maps() -> Option<usize> {
  let mut lines = 0;
  read_maps(|b| {
    lines += usize::from(b == b'\n');
    true
  })
  .then_some(lines)
}

/// One line of `/proc/self/maps` (`start-end perms offset dev inode   path`), parsed as it is
/// read.
struct MapsLine {
  /// The field being read: 0 start, 1 end, 2 perms, 3-5 offset, dev, inode, 6 the path.
  field: u8,
  start: usize,
  end: usize,
  prot: i32,
  perm: u8,
  /// A digit that is not hex, or a number too large: not a line to trust.
  bad: bool,
  in_path: bool,
}

impl MapsLine {
  const NEW: MapsLine = MapsLine {
    field: 0,
    start: 0,
    end: 0,
    prot: 0,
    perm: 0,
    bad: false,
    in_path: false,
  };

  fn digit(value: &mut usize, b: u8, bad: &mut bool) {
    match (b as char).to_digit(16) {
      Some(nibble) => match value.checked_mul(16) {
        Some(shifted) => *value = shifted + nibble as usize,
        None => *bad = true,
      },
      None => *bad = true,
    }
  }

  /// Takes the next byte (not the newline); returns it if it belongs to the path.
  fn take(&mut self, b: u8) -> Option<u8> {
    match self.field {
      0 if b == b'-' => self.field = 1,
      0 => Self::digit(&mut self.start, b, &mut self.bad),
      1 if b == b' ' => self.field = 2,
      1 => Self::digit(&mut self.end, b, &mut self.bad),
      2 if b == b' ' => self.field = 3,
      2 => {
        self.prot |= match (self.perm, b) {
          (0, b'r') => libc::PROT_READ,
          (1, b'w') => libc::PROT_WRITE,
          (2, b'x') => libc::PROT_EXEC,
          _ => 0,
        };
        self.perm = self.perm.saturating_add(1);
      }
      3..=5 => self.field += u8::from(b == b' '),
      _ => {
        // The path starts at its first '/' ("[heap]", "[stack]" and the like are no files).
        self.in_path |= b == b'/';
        return self.in_path.then_some(b);
      }
    }
    None
  }

  fn holds(&self, addr: usize) -> bool {
    !self.bad && self.field >= 2 && self.start <= addr && addr < self.end
  }
}

/// The kernel mapping holding `addr` as `/proc/self/maps` tells it: `(start, end, prot)`, and
/// its file's path given to `path` piecewise. Async-signal-safe, with one [`CHUNK`] of stack.
pub fn maps_region(addr: usize, mut path: impl FnMut(&[u8])) -> Option<(usize, usize, i32)> {
  let mut line = MapsLine::NEW;
  let mut found = None;
  read_maps(|b| {
    if b == b'\n' {
      if line.holds(addr) {
        found = Some((line.start, line.end, line.prot));
        return false;
      }
      line = MapsLine::NEW;
      return true;
    }
    // Once the range is read, the rest of a line that does not hold `addr` is only skipped.
    if let Some(b) = line.take(b) {
      if line.holds(addr) {
        path(&[b]);
      }
    }
    true
  });
  found
}

/// The diagnostics' writer: a [`LineOut`](super::LineOut) to a file descriptor, written with
/// write(2). Async-signal-safe.
pub type Out = super::LineOut<Fd>;

/// A file descriptor, written with write(2).
pub struct Fd(libc::c_int);

impl super::RawWrite for Fd {
  fn write_some(&mut self, bytes: &[u8]) -> usize {
    // SAFETY: writes the caller's initialised bytes; write(2) is async-signal-safe.
    let wrote = unsafe { libc::write(self.0, bytes.as_ptr().cast(), bytes.len()) };
    usize::try_from(wrote).unwrap_or(0)
  }
}

impl Out {
  /// A writer to `fd` (2 for stderr).
  pub fn new(fd: libc::c_int) -> Self {
    super::LineOut::to(Fd(fd))
  }
}

/// Helpers for tests of signal handlers, here and in the core's.
#[cfg(test)]
pub mod testing {
  use super::*;
  use std::io::Read;
  use std::os::fd::FromRawFd;

  /// What a handler gets on the small stack besides the signal frame: less than Deno leaves it
  /// on a CPU with AVX-512 (8 KiB less a ~2.7 KiB frame). The old handler kept more than this
  /// in buffers alone (a 4 KiB read buffer and a 1 KiB line).
  pub const SMALL: usize = 4096;

  /// Runs `child` in a child process forked from a thread whose alternate signal stack leaves
  /// the handlers `bytes` (see `use_small_stack`), with the child's stderr in a pipe and no
  /// core dump. `child` returns the child's exit code, and must do only what is safe after a
  /// fork (system calls and atomics: no allocation). Returns the wait status and the stderr.
  pub fn on_small_stack(bytes: usize, child: impl FnOnce() -> i32 + Send) -> (libc::c_int, String) {
    std::thread::scope(|scope| {
      scope
        .spawn(|| {
          use_small_stack(bytes).unwrap();
          let mut fds = [0; 2];
          // SAFETY: a new pipe into our array.
          assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
          // SAFETY: fork(2); the child runs only async-signal-safe code and ends in _exit.
          let pid = unsafe { libc::fork() };
          if pid == 0 {
            let no_core = libc::rlimit {
              rlim_cur: 0,
              rlim_max: 0,
            };
            // SAFETY: plain system calls on our own descriptors and limits, then `_exit`.
            unsafe {
              libc::setrlimit(libc::RLIMIT_CORE, &no_core);
              libc::dup2(fds[1], 2);
              libc::close(fds[0]);
              libc::_exit(child());
            }
          }
          assert!(pid > 0, "fork failed");
          // SAFETY: our own descriptors: the write end closed once, the read end owned by the File.
          unsafe { libc::close(fds[1]) };
          // SAFETY: as above.
          let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
          let mut stderr = String::new();
          reader.read_to_string(&mut stderr).unwrap();
          let mut status = 0;
          // SAFETY: waits for our own child.
          assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
          (status, stderr)
        })
        .join()
        .unwrap()
    })
  }
}

#[cfg(test)]
mod tests {
  use super::testing::{on_small_stack, SMALL};
  use super::*;
  use std::io::Read;
  use std::os::fd::FromRawFd;

  #[test]
  fn out_writes_numbers_and_long_text_in_pieces() {
    let mut fds = [0; 2];
    // SAFETY: a new pipe into our array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let mut out = Out::new(fds[1]);
    out.number(0);
    out.push(b" ");
    out.number(18_446_744_073_709_551_615);
    out.push(&[b'x'; 200]);
    out.flush();
    // SAFETY: our own descriptors: the write end closed once, the read end owned by the File.
    unsafe { libc::close(fds[1]) };
    // SAFETY: as above.
    let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    let mut expected = b"0 18446744073709551615".to_vec();
    expected.extend([b'x'; 200]);
    assert_eq!(got, expected);
  }

  fn parse(line: &[u8], addr: usize) -> Option<(usize, usize, i32, Vec<u8>)> {
    let mut parsed = MapsLine::NEW;
    let mut path = Vec::new();
    for &b in line {
      if let Some(b) = parsed.take(b) {
        path.push(b);
      }
    }
    parsed
      .holds(addr)
      .then_some((parsed.start, parsed.end, parsed.prot, path))
  }

  #[test]
  fn a_maps_line_is_parsed_as_it_is_read() {
    let line = b"7f0000000000-7f0000002000 r--s 00001000 08:01 1234                       /tmp/a file";
    let (start, end, prot, path) = parse(line, 0x7f0000001000).unwrap();
    assert_eq!(
      (start, end, prot),
      (0x7f0000000000, 0x7f0000002000, libc::PROT_READ)
    );
    assert_eq!(path, b"/tmp/a file");
    assert!(parse(line, 0x7f0000002000).is_none());
    let anonymous = b"7f0000000000-7f0000002000 rw-p 00000000 00:00 0 ";
    let (.., prot, path) = parse(anonymous, 0x7f0000000000).unwrap();
    assert_eq!((prot, path.len()), (libc::PROT_READ | libc::PROT_WRITE, 0));
    let heap = b"7f0000000000-7f0000002000 rwxp 00000000 00:00 0      [heap]";
    assert_eq!(parse(heap, 0x7f0000000000).unwrap().3.len(), 0);
    assert!(parse(b"zz-7f0000002000 r--p 0 0 0", 0x10).is_none(), "not hex");
  }

  #[test]
  fn maps_region_finds_our_own_stack_and_counts_lines() {
    let local = 0u8;
    let (start, end, prot) = maps_region(std::ptr::addr_of!(local) as usize, |_| {}).unwrap();
    assert!(start <= std::ptr::addr_of!(local) as usize && (std::ptr::addr_of!(local) as usize) < end);
    assert_eq!(
      prot & (libc::PROT_READ | libc::PROT_WRITE),
      libc::PROT_READ | libc::PROT_WRITE
    );
    let lines = std::fs::read_to_string("/proc/self/maps")
      .unwrap()
      .lines()
      .count();
    let counted = count_maps().unwrap();
    // Other tests map and unmap meanwhile.
    assert!(
      counted.abs_diff(lines) < 200,
      "{counted} lines counted, {lines} read"
    );
  }

  #[test]
  fn the_small_stack_is_small_enough_to_catch_a_greedy_handler() {
    // The check itself: on this stack, a handler that keeps 8 KiB of buffers dies.
    let (status, _) = on_small_stack(SMALL, || {
      // SAFETY: a handler that uses 8 KiB of stack, installed in the child only.
      unsafe {
        extern "C" fn greedy(_: libc::c_int) {
          let buffer = [1u8; 8192];
          std::hint::black_box(&buffer);
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = greedy as *const () as usize;
        action.sa_flags = libc::SA_ONSTACK;
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
        libc::raise(libc::SIGUSR1);
      }
      0
    });
    assert!(
      libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
      "status {status:#x}"
    );
  }
}
