//! SIGBUS and SIGSEGV handlers for faults inside our mappings (Unix).
//!
//! * SIGBUS in a mapping (a page past the end of a file another process truncated, or an I/O
//!   error) on Linux: the page is replaced with zero-filled memory over our own range
//!   (`MAP_FIXED`), the mapping counts the fault (`faults()`), and the access completes. With
//!   recovery turned off, and on other systems, the process ends with a diagnostic instead.
//! * SIGSEGV in a mapping (a write to read-only memory, any access to `PROT_NONE`): the process
//!   ends, but first says on stderr what happened, in which mapping, at which offset.
//! * Any other address: the handler that was installed before ours runs (V8's WebAssembly trap
//!   handler among them), or the default action if there was none.
//!
//! Everything here is async-signal-safe: no locks, no allocation, only atomics, `mmap`,
//! `write` and `sigaction`.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crate::faults;
use crate::mapping::Mapping;

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
/// Installs the handlers, once per process (every worker shares them).
pub fn install() {
  INSTALL.call_once(|| {
    // Reads the page size into its cache before the handlers exist: in a handler,
    // `page_size()` is then an atomic load (sysconf itself is not async-signal-safe).
    super::page_size();
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

extern "C" fn on_fault(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
  // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler of SIGBUS/SIGSEGV.
  let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
  // A signal sent with kill(2)/raise(3) (si_code <= 0) is no fault and carries no address.
  if code <= 0 {
    return chain(signal, info, context);
  }
  let outcome = faults::with_mapping_at(addr, |mapping, offset| {
    let recovering =
      signal == libc::SIGBUS && cfg!(target_os = "linux") && RECOVER_SIGBUS.load(Ordering::SeqCst);
    if recovering {
      // The whole page the fault is in: a huge page in a huge-page mapping (the kernel replaces
      // none of it less than whole). A plain field, and the mapping starts on such a page.
      let page_size = mapping.granule();
      let page = addr & !(page_size - 1);
      let flags = libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | super::consts::MAP_NORESERVE;
      // The zero page gets the protection the page has now. Only after a `protect()` can that
      // differ from the mapping's own; only then is /proc/self/maps read (it is long in a
      // process with many mappings, and a truncated file can fault page after page).
      let prot = match mapping.reprotected() {
        true => Region::at(addr).map_or(mapping.prot(), |region| region.prot),
        false => mapping.prot(),
      };
      // SAFETY: `page..page + page_size` lies in a live mapping of ours (`with_mapping_at` keeps
      // it registered while we run; it starts on a granule and spans whole granules), so
      // MAP_FIXED replaces only our own memory.
      let got = unsafe { libc::mmap(page as *mut c_void, page_size, prot, flags, -1, 0) };
      if got != libc::MAP_FAILED {
        mapping.record_fault();
        return Outcome::Recovered;
      }
    }
    diagnose(signal, mapping, offset, context, recovering);
    Outcome::Fatal
  });
  match outcome {
    Some(Outcome::Recovered) => {}
    Some(Outcome::Fatal) => restore_default(signal),
    None => chain(signal, info, context),
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

/// Writes one line to stderr naming the signal, the mapping and the offset.
/// `recovering`: a lost page was to be replaced with zeros, and that failed.
fn diagnose(signal: libc::c_int, mapping: &Mapping, offset: usize, context: *mut c_void, recovering: bool) {
  let mut line = Line::new();
  line.push(b"node-mmap: ");
  line.push(if signal == libc::SIGBUS {
    b"SIGBUS"
  } else {
    b"SIGSEGV"
  });
  line.push(b" at offset ");
  line.number(offset);
  line.push(b" of a ");
  line.number(mapping.len());
  line.push(b"-byte mapping");
  // The kernel's own view of the page: the file it maps (also for `map(fd)`, which knows no
  // path) and the protection it has now (after any `protect()`).
  let region = Region::at(mapping.addr() as usize + offset);
  let path = mapping.path().or(region.as_ref().and_then(Region::path));
  if let Some(path) = path {
    line.push(b" of '");
    line.push(path);
    line.push(b"'");
  }
  line.push(b" (");
  line.push(protection_name(
    region.as_ref().map_or(mapping.prot(), |region| region.prot),
  ));
  line.push(b"): ");
  if signal == libc::SIGBUS {
    line.push(b"the page is gone: the file was truncated under the mapping, or reading it failed");
    if recovering {
      line.push(b"; replacing it with zeros failed");
    } else if cfg!(target_os = "linux") {
      line.push(b"; recovery is off (setSigbusRecovery(false))");
    }
  } else {
    line.push(match is_write(context) {
      Some(true) => b"a write to memory mapped without PROT_WRITE" as &[u8],
      Some(false) => b"a read of memory mapped without PROT_READ",
      None => b"an access the mapping's protection forbids",
    });
  }
  line.push(b". The process cannot continue.\n");
  line.write_to_stderr();
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

/// What `/proc/self/maps` says about the region holding an address: its protection and the
/// file it maps. Read with open/read/close into fixed buffers: async-signal-safe.
struct Region {
  prot: i32,
  path: [u8; 512],
  path_len: usize,
}

impl Region {
  fn path(&self) -> Option<&[u8]> {
    (self.path_len > 0).then(|| &self.path[..self.path_len])
  }

  /// The region of `/proc/self/maps` containing `addr`, if the file can be read.
  fn at(addr: usize) -> Option<Region> {
    // SAFETY: a NUL-terminated path; open(2) is async-signal-safe.
    let fd = unsafe { libc::open(c"/proc/self/maps".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
      return None;
    }
    let mut chunk = [0u8; 4096];
    let mut line = [0u8; 1024];
    let mut line_len = 0usize;
    let mut found = None;
    'read: loop {
      // SAFETY: reads into our own buffer of the given size.
      let got = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
      if got <= 0 {
        break;
      }
      for &byte in &chunk[..got as usize] {
        if byte != b'\n' {
          if line_len < line.len() {
            line[line_len] = byte;
            line_len += 1;
          }
          continue;
        }
        if let Some(region) = Region::parse(&line[..line_len], addr) {
          found = Some(region);
          break 'read;
        }
        line_len = 0;
      }
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    found
  }

  /// Parses one maps line (`start-end perms offset dev inode path`) if it contains `addr`.
  fn parse(line: &[u8], addr: usize) -> Option<Region> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let (start, end) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    if addr < start || addr >= end {
      return None;
    }
    let perms = fields.next()?;
    let mut prot = 0;
    if perms.first() == Some(&b'r') {
      prot |= libc::PROT_READ;
    }
    if perms.get(1) == Some(&b'w') {
      prot |= libc::PROT_WRITE;
    }
    if perms.get(2) == Some(&b'x') {
      prot |= libc::PROT_EXEC;
    }
    let rest = fields.nth(3).unwrap_or(&[]);
    let path = rest
      .iter()
      .position(|&b| b == b'/')
      .map_or(&[][..], |at| &rest[at..]);
    let mut region = Region {
      prot,
      path: [0; 512],
      path_len: path.len().min(512),
    };
    region.path[..region.path_len].copy_from_slice(&path[..region.path_len]);
    Some(region)
  }
}

fn hex(digits: &[u8]) -> Option<usize> {
  let mut value = 0usize;
  for &digit in digits {
    let nibble = (digit as char).to_digit(16)? as usize;
    value = value.checked_mul(16)?.checked_add(nibble)?;
  }
  Some(value)
}

/// A fixed buffer for one diagnostic line: no allocation in a signal handler.
struct Line {
  bytes: [u8; 1024],
  len: usize,
}

impl Line {
  fn new() -> Self {
    Line {
      bytes: [0; 1024],
      len: 0,
    }
  }

  fn push(&mut self, text: &[u8]) {
    let room = self.bytes.len() - self.len;
    let take = text.len().min(room);
    self.bytes[self.len..self.len + take].copy_from_slice(&text[..take]);
    self.len += take;
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

  fn write_to_stderr(&self) {
    // SAFETY: writes our own initialised bytes; write(2) is async-signal-safe.
    unsafe { libc::write(2, self.bytes.as_ptr().cast(), self.len) };
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn line_formats_numbers_and_truncates() {
    let mut line = Line::new();
    line.number(0);
    line.push(b" ");
    line.number(18_446_744_073_709_551_615);
    assert_eq!(&line.bytes[..line.len], b"0 18446744073709551615");
    line.push(&[b'x'; 2000]);
    assert_eq!(line.len, 1024);
  }

  #[test]
  fn region_parses_a_maps_line() {
    let line = b"7f0000000000-7f0000002000 r--s 00001000 08:01 1234                       /tmp/a file";
    let region = Region::parse(line, 0x7f0000001000).unwrap();
    assert_eq!(region.prot, libc::PROT_READ);
    assert_eq!(region.path(), Some(&b"/tmp/a file"[..]));
    assert!(Region::parse(line, 0x7f0000002000).is_none());
    let anonymous = b"7f0000000000-7f0000002000 rw-p 00000000 00:00 0 ";
    assert_eq!(Region::parse(anonymous, 0x7f0000000000).unwrap().path(), None);
  }

  #[test]
  fn region_at_finds_our_own_stack() {
    let local = 0u8;
    let region = Region::at(std::ptr::addr_of!(local) as usize).unwrap();
    assert_eq!(
      region.prot & (libc::PROT_READ | libc::PROT_WRITE),
      libc::PROT_READ | libc::PROT_WRITE
    );
  }

  #[test]
  fn protection_names() {
    assert_eq!(protection_name(libc::PROT_READ), b"PROT_READ");
    assert_eq!(protection_name(libc::PROT_NONE), b"PROT_NONE");
  }
}
