//! SIGBUS and SIGSEGV handlers for faults inside our mappings (Unix).
//!
//! * SIGBUS in a mapping (a page past the end of a file another process truncated, or an I/O
//!   error) on Linux: the lost page is replaced with zero-filled memory over our own range
//!   (`MAP_FIXED`), the mapping counts the pages replaced (`faults()`), and the access
//!   completes. When the pages after it up to the end of the mapping are lost too (a truncated
//!   file: every page past the new end is), they are replaced at once, with the one mapping: a
//!   truncated file costs one more kernel mapping, however its pages are read, and lost tails of
//!   neighbouring mappings merge. With recovery turned off, on other systems, and when the
//!   process is at its limit of kernel mappings, the process ends with a diagnostic instead.
//! * SIGSEGV in a mapping (a write to read-only memory, any access to `PROT_NONE`): the process
//!   ends, but first says on stderr what happened, in which mapping, at which offset.
//! * Any other address: the handler that was installed before ours runs (V8's WebAssembly trap
//!   handler among them), or the default action if there was none.
//!
//! Everything here is async-signal-safe: no locks, no allocation, only atomics, `mmap`,
//! `process_vm_readv`, `open`/`read`/`write`/`close` and `sigaction`. And it runs on small
//! alternate signal stacks (Deno's is 8 KiB, of which the signal frame of a CPU with AVX-512
//! takes ~2.7 KiB): no buffer on the stack is larger than [`CHUNK`] bytes; the diagnostic is
//! written piecewise, and `/proc/self/maps` read as a stream.

use std::cell::{RefCell, UnsafeCell};
use std::ffi::c_void;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use crate::core::faults;
use crate::core::mapping::{self, Mapping};

/// The handlers that were installed before ours, to chain to. Written once, inside `INSTALL`,
/// before our handlers can run; only read afterwards.
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);

// SAFETY: written once under `INSTALL` before any handler of ours is installed; read-only after.
unsafe impl Sync for Previous {}

static PREVIOUS_SIGBUS: Previous = Previous(UnsafeCell::new(MaybeUninit::zeroed()));
static PREVIOUS_SIGSEGV: Previous = Previous(UnsafeCell::new(MaybeUninit::zeroed()));
static INSTALL: Once = Once::new();
/// Whether a SIGBUS in a mapping is recovered (Linux) or ends the process.
static RECOVER_SIGBUS: AtomicBool = AtomicBool::new(true);

/// The test switch: `NODE_MMAP_TEST_SMALL_SIGSTACK=<bytes>` (read once, when the handlers are
/// installed) makes every thread that maps memory run the handlers on an alternate signal stack
/// that leaves them `<bytes>` beside the kernel's signal frame, whatever that frame's size on
/// this CPU, with an inaccessible page below it: a handler that needs more dies by SIGSEGV. So
/// the tests and CI check the handlers on a stack as small as Deno's on any machine.
pub const TEST_SMALL_SIGSTACK: &str = "NODE_MMAP_TEST_SMALL_SIGSTACK";
/// The bytes of the switch; 0 when it is off.
static SMALL_STACK: AtomicUsize = AtomicUsize::new(0);

/// Installs the handlers, once per process (every worker shares them). With the test switch
/// set, also gives the calling thread its small alternate signal stack (once per thread).
pub fn install() {
  INSTALL.call_once(|| {
    // Reads the page size into its cache before the handlers exist: in a handler,
    // `page_size()` is then an atomic load (sysconf itself is not async-signal-safe). The same
    // for the limit of kernel mappings that recovery keeps to.
    super::page_size();
    mapping::prepare_handler_reservations();
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

/// Turns SIGBUS recovery on (the default) or off.
pub fn set_sigbus_recovery(enabled: bool) {
  RECOVER_SIGBUS.store(enabled, Ordering::SeqCst);
}

/// What the handler decided for a fault in one of our mappings.
enum Outcome {
  /// The page was replaced: return and let the access run again.
  Recovered,
  /// Say what happened, then die with the default action.
  Fatal,
}

/// Why a lost page could not be replaced.
#[derive(Clone, Copy)]
enum Refusal {
  /// The replacement would take kernel mappings that the runtime needs.
  NoKernelMappings,
  /// mmap(2) failed.
  Mmap,
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
  let outcome = faults::with_mapping_at(addr, |mapping, offset| {
    let recovering =
      signal == libc::SIGBUS && cfg!(target_os = "linux") && RECOVER_SIGBUS.load(Ordering::SeqCst);
    let mut refusal = None;
    if recovering {
      match recover(mapping, addr) {
        Ok(()) => return Outcome::Recovered,
        Err(why) => refusal = Some(why),
      }
    }
    diagnose(signal, mapping, offset, context, refusal);
    Outcome::Fatal
  });
  match outcome {
    Some(Outcome::Recovered) => {}
    Some(Outcome::Fatal) => restore_default(signal),
    None => chain(signal, info, context),
  }
}

/// The thread (its id) whose handler is replacing pages, or 0: two threads faulting in the same
/// lost range must not both replace it (the second would wipe what the first thread wrote
/// since). Only handlers take it, and nothing they do while holding it faults; a handler that
/// interrupted the holder on its own thread (a fault in another signal's handler) goes on
/// without it rather than wait for itself.
static RECOVERING: AtomicUsize = AtomicUsize::new(0);

struct RecoveryLock {
  taken: bool,
}

impl RecoveryLock {
  fn take() -> RecoveryLock {
    // SAFETY: gettid(2) has no arguments and cannot fail; async-signal-safe.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let me = unsafe { libc::syscall(libc::SYS_gettid) } as usize;
    // Elsewhere (no recovery happens there) any non-zero value per thread will do.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let me = {
      let local = 0u8;
      std::ptr::addr_of!(local) as usize | 1
    };
    loop {
      match RECOVERING.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => return RecoveryLock { taken: true },
        Err(holder) if holder == me => return RecoveryLock { taken: false },
        Err(_) => std::hint::spin_loop(),
      }
    }
  }
}

impl Drop for RecoveryLock {
  fn drop(&mut self) {
    if self.taken {
      RECOVERING.store(0, Ordering::Release);
    }
  }
}

/// The most one recovery replaces at once: a lost tail longer than this is replaced a piece at
/// a time (each piece merges with the one before), so that checking it stays quick.
const MAX_TAIL: usize = 1 << 28;

/// Replaces the lost page holding `addr` with zeros, and with it the lost pages after it (see
/// the module docs).
fn recover(mapping: &Mapping, addr: usize) -> Result<(), Refusal> {
  let _only_us = RecoveryLock::take();
  // The whole page the fault is in: a huge page in a huge-page mapping (the kernel replaces
  // none of it less than whole). A plain field, and the mapping starts on such a page.
  let granule = mapping.granule();
  let page = addr & !(granule - 1);
  let base = mapping.addr() as usize;
  let lost_from = mapping.lost_from();
  if lost_from != usize::MAX && page - base >= lost_from {
    return Ok(()); // another thread replaced it while we waited: the access runs again
  }
  // Up to the end of the mapping, or to the tail replaced before (never over pages replaced,
  // which may hold what the program wrote since).
  let tail_end = base + lost_from.min(mapping.extent());
  // The zero pages get the protection the page has now. Only after a `protect()` can that
  // differ from the mapping's own; only then is /proc/self/maps read (it is long in a process
  // with many mappings) and the replacement kept inside the kernel mapping holding the page.
  let (prot, end) = match mapping.reprotected() {
    false => (mapping.prot(), tail_end),
    true => match maps_region(page, |_| {}) {
      Some((_, region_end, prot)) => (prot, region_end.min(tail_end)),
      None => (mapping.prot(), page + granule),
    },
  };
  let end = end.min(page + MAX_TAIL);
  // The lost pages after it in a file mapping go with it, up to the first that can be read
  // (`lost_run`): the whole tail of a truncated file, one kernel mapping however it is read.
  let end = match mapping.file_pages() {
    true => lost_run(page, end, granule),
    false => page + granule,
  };
  // A replacement in the middle of a kernel mapping cuts it in three.
  if !mapping::reserve_vmas_in_handler(2, count_maps) {
    return Err(Refusal::NoKernelMappings);
  }
  let flags = libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | super::consts::MAP_NORESERVE;
  // SAFETY: `page..end` lies in a live mapping of ours (`with_mapping_at` keeps it registered
  // while we run; it starts on a granule and spans whole granules, and `end` is at most its
  // extent), so MAP_FIXED replaces only our own memory.
  let got = unsafe { libc::mmap(page as *mut c_void, end - page, prot, flags, -1, 0) };
  if got == libc::MAP_FAILED {
    return Err(Refusal::Mmap);
  }
  mapping.record_fault((end - page) / granule);
  if end == tail_end {
    mapping.lose_from(page - base);
  }
  Ok(())
}

/// The end of the run of lost pages that starts at `page` (lost) and goes at most to `end`: the
/// first page after it that can be read, or `end`. Past the end of a truncated file every page
/// is lost (the kernel drops those of `MAP_PRIVATE` mappings too, also those the program wrote),
/// so the run is the whole tail; a page lost inside the file (an I/O error, a hole that a full
/// tmpfs cannot fill even to be read) ends at the next page that holds the file, and pages
/// replaced before (which may hold what the program wrote since) are readable and never
/// replaced again. Each page is read with `process_vm_readv`, which fails with EFAULT where an
/// access would raise SIGBUS, and reads nothing of the file where it does not (a page beyond the
/// end, or a hole on a full file system, is never allocated by the look). Where the system
/// refuses the call, the run is the page alone. Asking each page costs a system call, but a page
/// is asked once: the run is replaced at once, and does not fault again.
fn lost_run(page: usize, end: usize, granule: usize) -> usize {
  let mut next = page + granule;
  while next < end && is_lost(next) {
    next += granule;
  }
  next
}

/// Whether reading the byte at `addr` fails (EFAULT): the page is lost.
fn is_lost(addr: usize) -> bool {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let mut byte = 0u8;
    let local = libc::iovec {
      iov_base: std::ptr::addr_of_mut!(byte).cast(),
      iov_len: 1,
    };
    let remote = libc::iovec {
      iov_base: addr as *mut c_void,
      iov_len: 1,
    };
    // SAFETY: reads one byte of our own address space into `byte` through the kernel, which
    // returns EFAULT instead of raising a signal where the page cannot be read.
    let got = unsafe {
      libc::syscall(
        libc::SYS_process_vm_readv,
        libc::getpid(),
        &local as *const libc::iovec,
        1usize,
        &remote as *const libc::iovec,
        1usize,
        0usize,
      )
    };
    // SAFETY: the thread's errno (restored by `on_fault` before it returns).
    got == -1 && unsafe { *errno_location() } == libc::EFAULT
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = addr;
    false
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

/// Writes one line to stderr naming the signal, the mapping and the offset, piecewise.
/// `refusal`: a lost page was to be replaced with zeros, and that failed.
fn diagnose(
  signal: libc::c_int,
  mapping: &Mapping,
  offset: usize,
  context: *mut c_void,
  refusal: Option<Refusal>,
) {
  let mut out = Out::new(2);
  out.push(b"node-mmap: ");
  out.push(if signal == libc::SIGBUS {
    b"SIGBUS"
  } else {
    b"SIGSEGV"
  });
  out.push(b" at offset ");
  out.number(offset);
  out.push(b" of a ");
  out.number(mapping.len());
  out.push(b"-byte mapping");
  // The kernel's own view of the page: the file it maps (also for `map(fd)`, which knows no
  // path) and the protection it has now (after any `protect()`).
  let known = mapping.path();
  if let Some(path) = known {
    out.push(b" of '");
    out.push(path);
    out.push(b"'");
  }
  let mut named = false;
  let region = maps_region(mapping.addr() as usize + offset, |bytes| {
    if known.is_none() {
      if !named {
        out.push(b" of '");
        named = true;
      }
      out.push(bytes);
    }
  });
  if named {
    out.push(b"'");
  }
  out.push(b" (");
  out.push(protection_name(
    region.map_or(mapping.prot(), |(_, _, prot)| prot),
  ));
  out.push(b"): ");
  if signal == libc::SIGBUS {
    out.push(b"the page is gone: the file was truncated under the mapping, or reading it failed");
    match refusal {
      Some(Refusal::NoKernelMappings) => {
        out.push(b"; replacing it with zeros would take kernel mappings the runtime needs (vm.max_map_count)")
      }
      Some(Refusal::Mmap) => out.push(b"; replacing it with zeros failed"),
      None if cfg!(target_os = "linux") => out.push(b"; recovery is off (setSigbusRecovery(false))"),
      None => {}
    }
  } else {
    out.push(match is_write(context) {
      Some(true) => b"a write to memory mapped without PROT_WRITE" as &[u8],
      Some(false) => b"a read of memory mapped without PROT_READ",
      None => b"an access the mapping's protection forbids",
    });
  }
  out.push(b". The process cannot continue.\n");
  out.flush();
}

fn protection_name(prot: i32) -> &'static [u8] {
  let (read, write) = (prot & libc::PROT_READ != 0, prot & libc::PROT_WRITE != 0);
  match (read, write) {
    (true, true) => b"PROT_READ | PROT_WRITE",
    (true, false) => b"PROT_READ",
    (false, true) => b"PROT_WRITE",
    (false, false) => b"PROT_NONE",
  }
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
/// returns `false`. `false` if the file cannot be opened.
fn read_maps(mut byte: impl FnMut(u8) -> bool) -> bool {
  // SAFETY: a NUL-terminated path; open(2) is async-signal-safe.
  let fd = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
  if fd < 0 {
    return false;
  }
  let mut chunk = [0u8; CHUNK];
  'read: loop {
    // SAFETY: reads into our own buffer of the given size.
    let got = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
    if got <= 0 {
      break;
    }
    for &b in &chunk[..got as usize] {
      if !byte(b) {
        break 'read;
      }
    }
  }
  // SAFETY: closes the descriptor opened above.
  unsafe { libc::close(fd) };
  true
}

/// The kernel mappings of the process (lines of `/proc/self/maps`), for
/// [`mapping::reserve_vmas_in_handler`].
fn count_maps() -> Option<usize> {
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
fn maps_region(addr: usize, mut path: impl FnMut(&[u8])) -> Option<(usize, usize, i32)> {
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

/// A writer to a file descriptor through a small buffer: a diagnostic is written in pieces of
/// at most 64 bytes, with no large buffer on a signal stack.
struct Out {
  fd: libc::c_int,
  buf: [u8; 64],
  len: usize,
}

impl Out {
  fn new(fd: libc::c_int) -> Self {
    Out {
      fd,
      buf: [0; 64],
      len: 0,
    }
  }

  fn push(&mut self, text: &[u8]) {
    for &b in text {
      if self.len == self.buf.len() {
        self.flush();
      }
      self.buf[self.len] = b;
      self.len += 1;
    }
  }

  fn number(&mut self, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
      at -= 1;
      digits[at] = b'0' + (n % 10) as u8;
      n /= 10;
      if n == 0 {
        break;
      }
    }
    self.push(&digits[at..]);
  }

  fn flush(&mut self) {
    let mut from = 0;
    while from < self.len {
      // SAFETY: writes our own initialised bytes; write(2) is async-signal-safe.
      let wrote = unsafe { libc::write(self.fd, self.buf[from..].as_ptr().cast(), self.len - from) };
      if wrote <= 0 {
        break;
      }
      from += wrote as usize;
    }
    self.len = 0;
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::core::shared::Shared;
  use std::io::Read;
  use std::os::fd::{AsRawFd, FromRawFd};

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
  fn protection_names() {
    assert_eq!(protection_name(libc::PROT_READ), b"PROT_READ");
    assert_eq!(protection_name(libc::PROT_NONE), b"PROT_NONE");
  }

  /// What a handler gets on the small stack besides the signal frame: less than Deno leaves it
  /// on a CPU with AVX-512 (8 KiB less a ~2.7 KiB frame). The old handler kept more than this
  /// in buffers alone (a 4 KiB read buffer and a 1 KiB line).
  const SMALL: usize = 4096;

  /// Runs `child` in a child process forked from a thread whose alternate signal stack leaves
  /// the handlers `bytes` (see `use_small_stack`), with the child's stderr in a pipe and no
  /// core dump. `child` returns the child's exit code, and must do only what is safe after a
  /// fork (system calls and atomics: no allocation). Returns the wait status and the stderr.
  fn on_small_stack(bytes: usize, child: impl FnOnce() -> i32 + Send) -> (libc::c_int, String) {
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

  /// A file of `pages` pages of 7s, open read-write, and its path.
  fn file_of_sevens(name: &str, pages: usize) -> (std::fs::File, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("node-mmap-{name}-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; pages * crate::sys::page_size()]).unwrap();
    let file = std::fs::OpenOptions::new()
      .read(true)
      .write(true)
      .open(&path)
      .unwrap();
    (file, path)
  }

  fn map_file(file: &std::fs::File, len: usize, prot: i32) -> Shared {
    Mapping::new(len, prot, libc::MAP_SHARED, file.as_raw_fd(), 0, None).unwrap()
  }

  #[test]
  fn recovery_after_protect_runs_on_a_small_signal_stack() {
    let page = crate::sys::page_size();
    let (file, path) = file_of_sevens("small-stack-recovery", 4);
    let mapping = map_file(&file, 4 * page, libc::PROT_READ | libc::PROT_WRITE);
    // After protect(), recovery reads /proc/self/maps for the page's rights: the path that
    // died on Deno's stack.
    mapping.protect(page, page, libc::PROT_READ).unwrap();
    file.set_len(page as u64).unwrap();
    let base = mapping.addr() as usize;
    let (status, stderr) = on_small_stack(SMALL, || {
      // SAFETY: bytes of our own live mapping; the lost ones are replaced by the handler.
      let read = |offset: usize| unsafe { std::ptr::read_volatile((base + offset) as *const u8) };
      let got = [read(5), read(2 * page + 5), read(page + 1), read(4 * page - 1)];
      // Pages 2 and 3 at once (one kernel mapping: both lost), then page 1 (read-only).
      i32::from(got != [7, 0, 0, 0] || mapping.faults() != 3)
    });
    std::fs::remove_file(path).unwrap();
    assert!(
      libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
      "status {status:#x}, stderr: {stderr}"
    );
    assert_eq!(stderr, "");
  }

  #[test]
  fn the_diagnostic_is_written_whole_on_a_small_signal_stack() {
    let page = crate::sys::page_size();
    let (file, path) = file_of_sevens("small-stack-diagnostic", 1);
    // No path given: the diagnostic takes it from /proc/self/maps, read on the small stack.
    let mapping = map_file(&file, page, libc::PROT_READ);
    let base = mapping.addr() as usize;
    let (status, stderr) = on_small_stack(SMALL, || {
      // SAFETY: a write to our own read-only mapping: the SIGSEGV under test.
      unsafe { std::ptr::write_volatile((base + 9) as *mut u8, 1) };
      0
    });
    std::fs::remove_file(&path).unwrap();
    assert!(
      libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
      "status {status:#x}, stderr: {stderr}"
    );
    let cause = match cfg!(all(target_os = "linux", target_arch = "x86_64")) {
      true => "a write to memory mapped without PROT_WRITE",
      false => "an access the mapping's protection forbids",
    };
    let path = path.display();
    assert_eq!(
      stderr,
      format!(
        "node-mmap: SIGSEGV at offset 9 of a {page}-byte mapping of '{path}' (PROT_READ): {cause}. The process cannot continue.\n"
      )
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
