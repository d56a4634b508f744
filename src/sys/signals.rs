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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
/// The page size, read before the handlers exist (sysconf is not async-signal-safe).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);

/// Installs the handlers, once per process (every worker shares them).
pub fn install() {
  INSTALL.call_once(|| {
    PAGE_SIZE.store(super::page_size(), Ordering::Relaxed);
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
  let addr = unsafe { (*info).si_addr() } as usize;
  let outcome = faults::with_mapping_at(addr, |mapping, offset| {
    if signal == libc::SIGBUS && cfg!(target_os = "linux") && RECOVER_SIGBUS.load(Ordering::SeqCst) {
      let page_size = PAGE_SIZE.load(Ordering::Relaxed);
      let page = addr & !(page_size - 1);
      let flags = libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | super::consts::MAP_NORESERVE;
      // SAFETY: `page` lies in a live mapping of ours (`with_mapping_at` keeps it registered
      // while we run), so MAP_FIXED replaces only our own memory.
      let got = unsafe { libc::mmap(page as *mut c_void, page_size, mapping.prot(), flags, -1, 0) };
      if got != libc::MAP_FAILED {
        mapping.record_fault();
        return Outcome::Recovered;
      }
    }
    diagnose(signal, mapping, offset, context);
    Outcome::Fatal
  });
  match outcome {
    Some(Outcome::Recovered) => {}
    Some(Outcome::Fatal) => restore_default(signal),
    None => chain(signal, info, context),
  }
}

/// Runs the handler installed before ours, or the default action.
fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
  let previous = if signal == libc::SIGBUS {
    &PREVIOUS_SIGBUS
  } else {
    &PREVIOUS_SIGSEGV
  };
  // SAFETY: written once before our handler was installed (see `Previous`).
  let previous = unsafe { (*previous.0.get()).assume_init_ref() };
  let handler = previous.sa_sigaction;
  if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
    // Returning re-runs the faulting access, which then takes the default action (death):
    // ignoring SIGSEGV/SIGBUS would loop forever.
    restore_default(signal);
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
fn diagnose(signal: libc::c_int, mapping: &Mapping, offset: usize, context: *mut c_void) {
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
  if let Some(path) = mapping.path() {
    line.push(b" of '");
    line.push(path);
    line.push(b"'");
  }
  line.push(b" (");
  line.push(protection_name(mapping.prot()));
  line.push(b"): ");
  if signal == libc::SIGBUS {
    line.push(b"the page is gone: the file was truncated under the mapping, or reading it failed");
    if cfg!(target_os = "linux") {
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
  fn protection_names() {
    assert_eq!(protection_name(libc::PROT_READ), b"PROT_READ");
    assert_eq!(protection_name(libc::PROT_NONE), b"PROT_NONE");
  }
}
