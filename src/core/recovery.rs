//! What a fault in one of our mappings means: the hook the signal handlers of `sys::signals`
//! ask about every SIGBUS and SIGSEGV with an address (see [`install`]).
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
//! * Any other address: not ours (`Outcome::NotOurs`): the handlers chain to the one installed
//!   before them.
//!
//! The hook runs inside a signal handler, on alternate signal stacks as small as Deno's: it is
//! async-signal-safe (atomics, the fault table's records and the primitives of `sys::signals`;
//! no locks, no allocation) and keeps no large buffer on the stack.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::core::faults::{self, Record};
use crate::core::mapping;
use crate::sys;
use crate::sys::signals::{self, Fault, Out, Outcome, Signal};

/// Whether a SIGBUS in a mapping is recovered (Linux) or ends the process.
static RECOVER_SIGBUS: AtomicBool = AtomicBool::new(true);

/// Installs the signal handlers with [`on_fault`] as their hook, once per process (see
/// `sys::signals::install`, which also sets up the calling thread's test stack). Reads the
/// limit of kernel mappings that recovery keeps to before the handlers can need it.
pub fn install() {
  mapping::prepare_guard();
  signals::install(on_fault);
}

/// Turns SIGBUS recovery on (the default) or off.
pub fn set_sigbus_recovery(enabled: bool) {
  RECOVER_SIGBUS.store(enabled, Ordering::SeqCst);
}

/// Why a lost page could not be replaced.
#[derive(Clone, Copy)]
enum Refusal {
  /// The replacement would take kernel mappings that the runtime needs.
  NoKernelMappings,
  /// mmap(2) failed.
  Mmap,
}

/// The hook: recovers a lost page of one of our mappings, or says what happened before the
/// process ends; [`Outcome::NotOurs`] for any other address.
fn on_fault(fault: Fault) -> Outcome {
  let outcome = faults::with_record_at(fault.addr, |mapping, offset| {
    if mapping.moving() {
      if let Some(waited) = RecoveryLock::wait_for_holder() {
        // `remap()` is moving the pages, with the range's rights taken away meanwhile (see
        // `Mapping::move_to`); the move holds the lock until the placeholder is in place, or
        // the rights are back: the access runs again, and reads the one or the other.
        drop(waited);
        return Outcome::Recovered;
      }
    }
    let recovering =
      fault.signal == Signal::Bus && signals::CAN_REPLACE_LOST_PAGES && RECOVER_SIGBUS.load(Ordering::SeqCst);
    let mut refusal = None;
    if recovering {
      match recover(mapping, fault.addr, fault.write) {
        Ok(()) => return Outcome::Recovered,
        Err(why) => refusal = Some(why),
      }
    }
    diagnose(fault, mapping, offset, refusal);
    Outcome::Fatal
  });
  outcome.unwrap_or(Outcome::NotOurs)
}

/// The thread (its id) whose handler is replacing pages, or 0: two threads faulting in the same
/// lost range must not both replace it (the second would wipe what the first thread wrote
/// since); and changes of pages' rights or backing ([`excluding_recovery`]) take it too.
/// Nothing done while holding it faults; a handler that
/// interrupted the holder on its own thread (a fault in another signal's handler) goes on
/// without it rather than wait for itself.
static RECOVERING: AtomicUsize = AtomicUsize::new(0);

struct RecoveryLock {
  taken: bool,
}

impl RecoveryLock {
  fn take() -> RecoveryLock {
    let me = signals::thread_id();
    loop {
      match RECOVERING.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => return RecoveryLock { taken: true },
        Err(holder) if holder == me => return RecoveryLock { taken: false },
        Err(_) => std::hint::spin_loop(),
      }
    }
  }
}

impl RecoveryLock {
  /// Waits until the lock is free, taking it; `None` when this thread holds it already (a
  /// handler cannot wait for its own thread).
  fn wait_for_holder() -> Option<RecoveryLock> {
    let lock = RecoveryLock::take();
    lock.taken.then_some(lock)
  }
}

impl Drop for RecoveryLock {
  fn drop(&mut self) {
    if self.taken {
      RECOVERING.store(0, Ordering::Release);
    }
  }
}

/// Runs `change` (a `protect()`, `unmap()` or `remap()`: the rights of a mapping's pages, or
/// what backs them) with no SIGBUS recovery in flight and none starting until it returns.
/// Recovery looks at the rights a page has and then puts zero pages with those rights in place
/// of the lost ones: a `protect()` on another thread between the two was undone (a write it
/// allowed then died of SIGSEGV), and a replacement racing one of these changes could leave a
/// lost page behind (SIGBUS, the process killed with no diagnostic). A handler on another thread
/// waits for the change meanwhile: it is a system call or two. Nothing in `change` may fault.
pub fn excluding_recovery<R>(change: impl FnOnce() -> R) -> R {
  let _exclusive = RecoveryLock::take();
  change()
}

/// The most one recovery replaces at once: a lost tail longer than this is replaced a piece at
/// a time (each piece merges with the one before), so that checking it stays quick.
const MAX_TAIL: usize = 1 << 28;

/// Replaces the lost page holding `addr` with zeros, and with it the lost pages after it (see
/// the module docs); `write`: whether the faulting access was a write (`None`: not known).
fn recover(mapping: &Record, addr: usize, write: Option<bool>) -> Result<(), Refusal> {
  let _only_us = RecoveryLock::take();
  // The whole page the fault is in: a huge page in a huge-page mapping (the kernel replaces
  // none of it less than whole). A plain field, and the mapping starts on such a page.
  let granule = mapping.granule();
  let page = addr & !(granule - 1);
  let base = mapping.addr();
  let lost_from = mapping.lost_from();
  if lost_from != usize::MAX && page - base >= lost_from {
    return Ok(()); // another thread replaced it while we waited: the access runs again
  }
  // Up to the end of the mapping, or to the tail replaced before (never over pages replaced,
  // which may hold what the program wrote since).
  let tail_end = base + lost_from.min(mapping.extent());
  // The rights the page has now: the replacement gets them. Only after a `protect()` can they
  // differ from the mapping's own; only then is /proc/self/maps read (it is long in a process
  // with many mappings) and the replacement kept inside the kernel mapping holding the page.
  let (prot, end) = match mapping.reprotected() {
    false => (mapping.prot(), tail_end),
    true => match signals::maps_region(page, |_| {}) {
      Some((_, region_end, prot)) => (prot, region_end.min(tail_end)),
      None => (mapping.prot(), page + granule),
    },
  };
  // Whether a page is lost is asked by reading it through the kernel, which cannot read pages
  // without PROT_READ (a PROT_WRITE mapping): those are made readable for the look, and only the
  // faulting page is replaced (its neighbours cannot be asked; taking them for lost turned pages
  // that hold the file into zeros, attack pass 17). The replacement sets the rights back.
  let readable = prot & sys::consts::PROT_READ != 0;
  if !readable {
    if !mapping::reserve_vmas_in_handler(2, signals::count_maps) {
      return Err(Refusal::NoKernelMappings);
    }
    // SAFETY: the faulting page of a live mapping of ours; adding read access takes none away
    // (mprotect and errno: async-signal-safe).
    if unsafe { sys::protect(page as *mut u8, granule, prot | sys::consts::PROT_READ) }.is_err() {
      return Err(Refusal::Mmap);
    }
  }
  // One look (a system call) answers both questions below.
  let can_be_read = signals::is_readable(page);
  if can_be_read && write == Some(false) {
    // A read of a page that can be read now: the file grew back meanwhile (another process
    // truncating and growing it). Nothing to replace: the read runs again and sees the file.
    return Ok(());
  }
  if can_be_read {
    // Not lost: the page can be read, so the SIGBUS came from a write the file system refused
    // (a full copy-on-write file system, an immutable file). Zeros would hide the file's bytes
    // (attack pass 16): the page becomes a copy of them instead, and the write lands there,
    // where the file no longer sees it. Counted as a lost page: faults() says so.
    if !mapping::reserve_vmas_in_handler(2, signals::count_maps) {
      return Err(Refusal::NoKernelMappings);
    }
    // SAFETY: `page..page + granule` lies in a live mapping of ours (`with_record_at` keeps it
    // registered while we run), on a whole granule.
    match unsafe { signals::replace_with_copy(page, granule, prot) } {
      signals::Copied::Yes => {
        mapping.record_fault(1);
        return Ok(());
      }
      signals::Copied::Failed => return Err(Refusal::Mmap),
      // Truncated again meanwhile: a lost page after all.
      signals::Copied::Lost => {}
    }
  }
  let end = if readable { end } else { page + granule };
  let end = end.min(page + MAX_TAIL);
  // The lost pages after it in a file mapping go with it, up to the first that can be read
  // (`lost_run`): the whole tail of a truncated file, one kernel mapping however it is read.
  let end = match mapping.file_pages() {
    true => lost_run(page, end, granule),
    false => page + granule,
  };
  // A replacement in the middle of a kernel mapping cuts it in three.
  if !mapping::reserve_vmas_in_handler(2, signals::count_maps) {
    return Err(Refusal::NoKernelMappings);
  }
  // SAFETY: `page..end` lies in a live mapping of ours (`with_record_at` keeps it registered
  // while we run; it starts on a granule and spans whole granules, and `end` is at most its
  // extent), so MAP_FIXED replaces only our own memory.
  if !unsafe { signals::replace_with_zeros(page, end - page, prot) } {
    return Err(Refusal::Mmap);
  }
  mapping.record_fault((end - page) / granule);
  if end == tail_end {
    mapping.lose_from(page - base);
  } else if mapping.file_pages() && end < tail_end && signals::is_lost(end) {
    // A tail longer than one replacement (MAX_TAIL): the rest is lost too, and `Mapping`'s
    // copies must say so, though it is replaced only when touched (attack pass 8: a copy onto
    // a replaced page of a mapping over 256 MiB returned a count, and the bytes never reached
    // the file).
    mapping.lose_tail_from(page - base);
  }
  Ok(())
}

/// The end of the run of lost pages that starts at `page` (lost) and goes at most to `end`: the
/// first page after it that can be read, or `end`. Past the end of a truncated file every page
/// is lost (the kernel drops those of `MAP_PRIVATE` mappings too, also those the program wrote),
/// so the run is the whole tail; a page lost inside the file (an I/O error, a hole that a full
/// tmpfs cannot fill even to be read) ends at the next page that holds the file, and pages
/// replaced before (which may hold what the program wrote since) are readable and never
/// replaced again. Each page is read with `process_vm_readv` ([`signals::is_lost`]), which
/// fails with EFAULT where an access would raise SIGBUS, and reads nothing of the file where it
/// does not (a page beyond the end, or a hole on a full file system, is never allocated by the
/// look). Where the system refuses the call, the run is the page alone. Asking each page costs
/// a system call, but a page is asked once: the run is replaced at once, and does not fault again.
fn lost_run(page: usize, end: usize, granule: usize) -> usize {
  let mut next = page + granule;
  while next < end && signals::is_lost(next) {
    next += granule;
  }
  next
}

/// Writes one line to stderr naming the signal, the mapping and the offset, piecewise.
/// `refusal`: a lost page was to be replaced with zeros, and that failed.
fn diagnose(fault: Fault, mapping: &Record, offset: usize, refusal: Option<Refusal>) {
  let mut out = Out::new(2);
  out.push(b"node-mmap: ");
  out.push(signals::name(fault.signal));
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
  let region = signals::maps_region(mapping.addr() + offset, |bytes| {
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
  if fault.signal == Signal::Bus {
    out.push(b"the page is gone: the file was truncated under the mapping, or reading it failed");
    match refusal {
      Some(Refusal::NoKernelMappings) => {
        out.push(b"; replacing it with zeros would take kernel mappings the runtime needs (vm.max_map_count)")
      }
      Some(Refusal::Mmap) => out.push(b"; replacing it with zeros failed"),
      None if signals::CAN_REPLACE_LOST_PAGES => out.push(b"; recovery is off (setSigbusRecovery(false))"),
      None => {}
    }
  } else {
    out.push(match fault.write {
      Some(true) => b"a write to memory mapped without PROT_WRITE" as &[u8],
      Some(false) => b"a read of memory mapped without PROT_READ",
      None => b"an access the mapping's protection forbids",
    });
  }
  out.push(b". The process cannot continue.\n");
  out.flush();
}

fn protection_name(prot: i32) -> &'static [u8] {
  use crate::sys::consts::{PROT_READ, PROT_WRITE};
  let (read, write) = (prot & PROT_READ != 0, prot & PROT_WRITE != 0);
  match (read, write) {
    (true, true) => b"PROT_READ | PROT_WRITE",
    (true, false) => b"PROT_READ",
    (false, true) => b"PROT_WRITE",
    (false, false) => b"PROT_NONE",
  }
}

// Unix-only until the Windows port (issue 14): these tests map through the OS layer and name
// libc's Unix constants and calls, which the stub target has not got.
#[cfg(all(test, unix))]
mod tests {
  use super::*;
  use crate::core::mapping::Mapping;
  use crate::core::mapping::Shared;
  use crate::sys;
  use crate::sys::signals::testing::{on_small_stack, SMALL};
  use std::os::fd::AsRawFd;

  #[test]
  fn protection_names() {
    assert_eq!(protection_name(libc::PROT_READ), b"PROT_READ");
    assert_eq!(protection_name(libc::PROT_NONE), b"PROT_NONE");
  }

  /// A file of `pages` pages of 7s, open read-write, and its path.
  fn file_of_sevens(name: &str, pages: usize) -> (std::fs::File, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("node-mmap-{name}-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; pages * sys::page_size()]).unwrap();
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
    let page = sys::page_size();
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
    let page = sys::page_size();
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
}
