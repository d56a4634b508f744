//! Futex words: a wait of this process on a 32-bit word of a mapping, registered so that a
//! `notify` of this process finds it (and counts it once), slept in the kernel with the shared
//! futex key (or this process's private one where the kernel refuses the shared key), and ended
//! by a notify, a timeout, `unmap()` of the mapping (its cancel word), or a stop the caller asks
//! for. No Node-API here: the exports, their arguments and Promises are in `crate::api::futex`.
//! Linux only (futex(2)); elsewhere `crate::sys` answers `ENOTSUP`.

use std::collections::{BTreeMap, VecDeque};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::core::mapping::Failure;
use crate::core::mapping::Shared;
use crate::sys::{self, Wait};

/// How long a wait sleeps at a time before it looks whether it should stop: `wait` whether its
/// env is being torn down (`worker.terminate()`, `process.exit()`), and, on kernels without
/// futex_waitv(2), every wait whether its mapping was unmapped, a `notify` of this process
/// marked it, or its env was torn down.
const SLICE_MS: f64 = 100.0;

/// The environment variable that makes `waitAsync` act as on a kernel without futex_waitv
/// (before Linux 5.16): the switch that tests the sliced wait here.
pub const SIMULATE_NO_FUTEX_WAITV: &str = "NODE_MMAP_SIMULATE_NO_FUTEX_WAITV";

/// The kernel refused futex_waitv(2) once (`ENOSYS`): it lacks it (before Linux 5.16).
static NO_FUTEX_WAITV: AtomicBool = AtomicBool::new(false);

/// Whether waits sleep with futex_waitv(2): not where the kernel lacks it, or is made to look so.
fn futex_waitv() -> bool {
  static SIMULATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
  let simulated =
    *SIMULATE.get_or_init(|| std::env::var_os(SIMULATE_NO_FUTEX_WAITV).is_some_and(|v| v == "1"));
  !simulated && !NO_FUTEX_WAITV.load(Ordering::Relaxed)
}

/// A waiter's state: waiting.
const PENDING: u32 = 0;
/// A waiter's state: a `notify` of this process woke it and counted it.
const NOTIFIED: u32 = 1;
/// A waiter's state: its env is being torn down (`waitAsync`'s cleanup hook).
const STOPPED: u32 = 2;
/// A waiter's state: it ended on its own (woken in the kernel, timed out, unmapped, ...).
const DONE: u32 = 3;

/// A `wait` or `waitAsync` of this process, from the call until it ends: what `notify` finds in
/// [`WAITERS`], so that a wait counts as a waiter from the moment the call returns (or blocks),
/// as with `Atomics.waitAsync`, and not only once its thread sleeps in the kernel.
pub struct Waiter {
  /// `PENDING`, then one of the others, set once (compare-exchange from `PENDING`): a
  /// process-private futex word the wait sleeps on too, which `notify` and the cleanup hook
  /// set and wake.
  state: AtomicU32,
  /// 0 while the wait may be queued in the kernel on its word; 1 once it left for good.
  gone: AtomicU32,
  /// A `notify` waits for `gone` (and is to be woken when it is set).
  watched: AtomicBool,
  /// It sleeps with futex_waitv, so it leaves the kernel (all its queues) as soon as `state` is
  /// woken; otherwise it sleeps in slices on the word alone and sees `state` between slices.
  exact: AtomicBool,
}

impl Waiter {
  /// Moves the state from `PENDING` to `to`; returns the state before (`PENDING` if moved).
  fn mark(&self, to: u32) -> u32 {
    match self
      .state
      .compare_exchange(PENDING, to, Ordering::SeqCst, Ordering::SeqCst)
    {
      Ok(before) | Err(before) => before,
    }
  }

  /// Marks the wait as ended on its own, unless something marked it first; returns the state
  /// before.
  fn claim(&self) -> u32 {
    self.mark(DONE)
  }

  /// Stops the wait (its env is being torn down): it ends `Cancelled`, unless it ended already.
  pub fn stop(&self) {
    self.interrupt(STOPPED);
  }

  /// Marks the wait `to` and wakes it, if it was pending.
  fn interrupt(&self, to: u32) {
    if self.mark(to) == PENDING {
      // SAFETY: `state` is an aligned word of this value, alive for the call.
      unsafe { sys::wake_private(self.state.as_ptr()) };
    }
  }

  /// Waits (a second at most) until the wait left the kernel's queue of its word, so that a
  /// kernel wake after this cannot find it there and count it again. Called with [`WAITERS`]
  /// locked: the wait sets `gone` before it takes that lock.
  fn wait_gone(&self) {
    self.watched.store(true, Ordering::SeqCst);
    let deadline = sys::deadline_after(1000.0);
    while self.gone.load(Ordering::SeqCst) == 0 {
      // SAFETY: `gone` is an aligned word of this value, alive for the call.
      match unsafe { sys::wait(self.gone.as_ptr(), 0, Some(deadline), true) } {
        Ok(Wait::TimedOut) | Err(_) => return,
        Ok(_) => {}
      }
    }
  }
}

/// What tells two futex words apart, as the kernel's key does: in a shared mapping, the object
/// mapped and the offset in it (so a wait on one mapping of a file is found by a `notify` through
/// another mapping of the same file); in a private one, the address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
  Address(usize),
  Shared { device: u64, inode: u64, offset: u64 },
}

/// The pending waits of this process, by their word's [`Key`], oldest first.
static WAITERS: Mutex<BTreeMap<Key, VecDeque<Arc<Waiter>>>> = Mutex::new(BTreeMap::new());

fn waiters() -> MutexGuard<'static, BTreeMap<Key, VecDeque<Arc<Waiter>>>> {
  WAITERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A waiter in [`WAITERS`], taken out when dropped (after its sleep).
pub struct Registration {
  key: Key,
  pub waiter: Arc<Waiter>,
}

impl Registration {
  pub fn new(word: &Word) -> Self {
    let waiter = Arc::new(Waiter {
      state: AtomicU32::new(PENDING),
      gone: AtomicU32::new(0),
      watched: AtomicBool::new(false),
      exact: AtomicBool::new(futex_waitv()),
    });
    let key = word.key();
    waiters().entry(key).or_default().push_back(Arc::clone(&waiter));
    Registration { key, waiter }
  }
}

impl Drop for Registration {
  fn drop(&mut self) {
    // `gone` first: a `notify` that holds the lock may wait for it.
    // SeqCst store, then SeqCst load (`wait_gone` sets `watched`, then loads `gone`): either
    // this sees the watcher, or the watcher sees the wait gone.
    self.waiter.gone.store(1, Ordering::SeqCst);
    if self.waiter.watched.load(Ordering::SeqCst) {
      // SAFETY: `gone` is an aligned word of the waiter, alive for the call.
      unsafe { sys::wake_private(self.waiter.gone.as_ptr()) };
    }
    let mut waiters = waiters();
    if let Some(list) = waiters.get_mut(&self.key) {
      list.retain(|waiter| !Arc::ptr_eq(waiter, &self.waiter));
      if list.is_empty() {
        waiters.remove(&self.key);
      }
    }
  }
}

/// One aligned 32-bit word of a live mapping.
pub struct Word {
  mapping: Shared,
  /// From the start of the mapping; a multiple of 4.
  offset: usize,
}

impl Drop for Word {
  fn drop(&mut self) {
    self.mapping.word_held(false);
  }
}

impl Word {
  /// The word at `offset` (a multiple of 4, with the word's 4 bytes inside the mapping) of
  /// `mapping`, whose rights the caller checked allow reading it (`view::check_rights`).
  pub fn new(mapping: Shared, offset: usize) -> Word {
    assert!(
      offset.is_multiple_of(4) && offset <= mapping.len() && mapping.len() - offset >= 4,
      "a futex word outside its mapping"
    );
    mapping.word_held(true);
    Word { mapping, offset }
  }

  /// Runs `sleep` with the shared futex key, the one every process that maps the page uses; if
  /// the kernel refuses it with `EFAULT`, with this process's private key instead. The kernel
  /// refuses the shared key of a read-only page of anonymous memory (a `PROT_READ` mapping of
  /// `MAP_PRIVATE | MAP_ANONYMOUS`, or a `MAP_PRIVATE` page that was written, then `protect()`ed
  /// read-only): such a page belongs to this process alone, so the private key loses nothing.
  ///
  /// Both keys fail on a page lost to truncation (past the end of the file), where the kernel's
  /// read of the word fails and a JavaScript read would be answered by SIGBUS recovery: then the
  /// word is read here as JavaScript would read it (recovery puts zeros there, or, turned off,
  /// ends the process with its diagnostic), and the wait tried again.
  ///
  /// That read is a native access ([`crate::core::mapping::Mapping::accessing`]): when the
  /// mapping cannot be read (`PROT_NONE`, or `protect()`ed so, maybe by another thread since the
  /// wait began: the kernel's read fails the same way), the outcome is `Failure::Access` instead
  /// of a SIGSEGV in node-mmap's code.
  fn with_key(
    &self,
    sleep: impl Fn(bool) -> std::io::Result<Wait>,
  ) -> Result<std::io::Result<Wait>, Failure> {
    let efault =
      |result: &std::io::Result<Wait>| matches!(result, Err(err) if err.raw_os_error() == Some(libc::EFAULT));
    let own = self.own_pages();
    let keyed = || {
      let shared = if own { None } else { Some(sleep(false)) };
      if let Some(shared) = shared.filter(|shared| !efault(shared)) {
        return shared;
      }
      // Counted before the kernel looks at the word: a `notify` after the word changed either
      // sees the count or finds the word changed (the kernel compares it in the futex call).
      PRIVATE_SLEEPERS.fetch_add(1, Ordering::SeqCst);
      std::sync::atomic::fence(Ordering::SeqCst);
      let private = sleep(true);
      PRIVATE_SLEEPERS.fetch_sub(1, Ordering::SeqCst);
      private
    };
    let result = keyed();
    if !efault(&result) {
      return Ok(result);
    }
    let read = self.mapping.accessing(sys::consts::PROT_READ, || {
      // SAFETY: the word is aligned and inside the mapping `self.mapping` keeps reserved, and
      // readable while this access runs (`accessing` checked the rights, which no `protect()`
      // changes meanwhile); a lost page raises SIGBUS, which the handler answers as for any
      // read of the mapping.
      unsafe { ptr::read_volatile(self.addr()) }
    });
    if read.is_none() {
      return Err(Failure::Access {
        write: false,
        name: "view",
      });
    }
    let again = keyed();
    if efault(&again) {
      // Unreadable again: a `protect()` toggled on another thread between the read and this
      // try. The kernel's read failed for the reason a JavaScript read would.
      return Err(Failure::Access {
        write: false,
        name: "view",
      });
    }
    Ok(again)
  }

  /// The word's value now, read as the atomic other threads and processes write: a native
  /// access (`Failure::Access` where the mapping cannot be read, `protect()`ed so maybe by
  /// another thread since the arguments were checked).
  pub fn load(&self) -> Result<u32, Failure> {
    let read = self.mapping.accessing(sys::consts::PROT_READ, || {
      // SAFETY: the word is aligned and inside the mapping `self.mapping` keeps reserved, and
      // readable while this access runs (`accessing`).
      unsafe { &*self.addr().cast::<std::sync::atomic::AtomicU32>() }.load(Ordering::SeqCst)
    });
    read.ok_or(Failure::Access {
      write: false,
      name: "view",
    })
  }

  /// Whether the word lies in pages only this process can ever wait on: a private mapping that
  /// can be written (made writable, or `protect()`ed since). The kernel's shared futex key takes
  /// such a page for writing (get_user_pages with FOLL_WRITE), which makes it a private copy:
  /// a `wait()` or `notify()` then cut the page off from the file, and it no longer showed the
  /// file's changes. Its waits use the process's own key from the start (as they would end up
  /// with after the copy anyway: no other process's wait can share such a page).
  fn own_pages(&self) -> bool {
    let writable = self.mapping.prot() & sys::consts::PROT_WRITE != 0 || self.mapping.reprotected();
    writable && self.mapping.shared_identity(0).is_none()
  }

  /// The word's [`Key`] in this process's list of waits.
  fn key(&self) -> Key {
    match self.mapping.shared_identity(self.offset) {
      Some((device, inode, offset)) => Key::Shared {
        device,
        inode,
        offset,
      },
      None => Key::Address(self.addr() as usize),
    }
  }

  /// Whether the word's mapping still guarantees read access, which `notify()` needs.
  fn readable(&self) -> bool {
    self.mapping.guaranteed_prot() & sys::consts::PROT_READ != 0
  }

  /// Whether `unmap()` took the word's mapping away.
  pub fn is_unmapped(&self) -> bool {
    self.mapping.is_unmapped()
  }

  pub fn addr(&self) -> *const u32 {
    // SAFETY: `offset + 4 <= len` (checked in `Word::new`).
    unsafe { self.mapping.addr().add(self.offset) }
      .cast_const()
      .cast()
  }

  /// Sleeps while the word holds `expected`, until a notify or `deadline`.
  fn wait(&self, expected: u32, deadline: Option<libc::timespec>) -> Result<Wait, Failure> {
    if self.mapping.is_unmapped() {
      return Err(Failure::Unmapped);
    }
    let sleep = |private| {
      // SAFETY: the word is aligned and inside the mapping, which `self.mapping` keeps reserved.
      unsafe { sys::wait(self.addr(), expected, deadline, private) }
    };
    Ok(self.with_key(sleep)??)
  }

  /// The wait of a registered waiter (`wait`, `waitAsync`): as [`Word::wait`], but it also
  /// ends when a `notify` of this process marks the waiter (`Woken`), when its state is set
  /// otherwise (`Cancelled`: its env is being torn down), when `unmap()` takes the mapping away
  /// (`Unmapped`: unmapping swaps the page the futex sleeps on, and no notify could reach it
  /// any more), and, with `slices`, when `stop()` is true between two slices of a tenth of a
  /// second (`Cancelled`). It sleeps on the word, the mapping's cancel word (which `unmap()`
  /// sets and wakes) and the waiter's state (futex_waitv, Linux 5.16); before that kernel, in
  /// slices on the word alone, looking at the rest in between.
  ///
  /// The outcome is claimed at the end: a waiter that a `notify` counted ends `Woken`,
  /// whatever else ended its sleep.
  pub fn sleep(
    &self,
    expected: u32,
    deadline: Option<libc::timespec>,
    waiter: &Waiter,
    slices: bool,
    stop: impl Fn() -> bool,
  ) -> Result<Wait, Failure> {
    let slept = self.sleep_unclaimed(expected, deadline, waiter, slices, stop);
    match waiter.claim() {
      PENDING => slept,
      NOTIFIED => Ok(Wait::Woken),
      _ => Ok(Wait::Cancelled),
    }
  }

  fn sleep_unclaimed(
    &self,
    expected: u32,
    deadline: Option<libc::timespec>,
    waiter: &Waiter,
    slices: bool,
    stop: impl Fn() -> bool,
  ) -> Result<Wait, Failure> {
    let marked = || waiter.state.load(Ordering::SeqCst) != PENDING;
    let sliced = || self.wait_in_slices(expected, deadline, || marked() || stop());
    if !waiter.exact.load(Ordering::Relaxed) {
      return sliced();
    }
    let mut first = true;
    loop {
      if self.mapping.is_unmapped() {
        return Err(Failure::Unmapped);
      }
      let (until, last) = match slices {
        true => {
          let slice = sys::deadline_after(SLICE_MS);
          let last = deadline.is_some_and(|deadline| !later(&deadline, &slice));
          (if last { deadline } else { Some(slice) }, last)
        }
        false => (deadline, true),
      };
      let waited = self.mapping.with_cancel_word(|cancel| {
        let sleep = |private| {
          let cancels = [cancel, waiter.state.as_ptr().cast_const()];
          // SAFETY: the word is aligned and inside the mapping, which `self.mapping` keeps
          // reserved; the cancel word is an aligned field of the same mapping, and the state an
          // aligned atomic of `waiter`, which the caller keeps alive during the call.
          unsafe { sys::wait_or_cancel(self.addr(), expected, private, &cancels, until) }
        };
        self.with_key(sleep)
      })?;
      match waited {
        Ok(Wait::TimedOut) if !last => {
          if stop() {
            return Ok(Wait::Cancelled);
          }
          first = false;
        }
        // After a slice, a changed word means a notifier changed it: as good as a wake.
        Ok(Wait::NotEqual) if !first => return Ok(Wait::Woken),
        // The kernel found one of the words changed: the cancel word set by a `protect()` and
        // set back before `wait_or_cancel` looked at it leaves the word itself unchanged. Asked
        // again, with the word read as JavaScript would (it said 'not-equal' for a word that
        // held `expected` all along, attack pass 12).
        Ok(Wait::NotEqual) if self.load()? == expected => {}
        // The state or the cancel word: the first is `sleep`'s to sort out, the second unmap's
        // or protect's.
        Ok(Wait::Cancelled) if marked() => return Ok(Wait::Cancelled),
        Ok(Wait::Cancelled) if self.mapping.is_unmapped() => return Err(Failure::Unmapped),
        Ok(Wait::Cancelled) if !self.readable() => {
          return Err(Failure::Access {
            write: false,
            name: "view",
          })
        }
        // Read access back before this thread ran: sleep on.
        Ok(Wait::Cancelled) => first = false,
        Ok(wait) => return Ok(wait),
        Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => {
          NO_FUTEX_WAITV.store(true, Ordering::Relaxed);
          waiter.exact.store(false, Ordering::Relaxed);
          return sliced();
        }
        Err(err) => return Err(Failure::Os(err)),
      }
    }
  }

  /// As [`Word::wait`], in slices, so that an `unmap()` meanwhile ends it within a slice
  /// (`Unmapped`), and `stop()` true between two slices ends it with `Cancelled`. A notify from
  /// another process that lands between two slices without changing the word is missed:
  /// notifiers that change the word first, as they should, are never missed.
  fn wait_in_slices(
    &self,
    expected: u32,
    deadline: Option<libc::timespec>,
    stop: impl Fn() -> bool,
  ) -> Result<Wait, Failure> {
    let mut first = true;
    loop {
      let slice = sys::deadline_after(SLICE_MS);
      let last = deadline.is_some_and(|deadline| !later(&deadline, &slice));
      // No notify reaches a word whose mapping lost read access (`protect()`): end as a wait
      // begun on it does.
      if !self.readable() {
        return Err(Failure::Access {
          write: false,
          name: "view",
        });
      }
      match self.wait(expected, if last { deadline } else { Some(slice) })? {
        Wait::TimedOut if !last && stop() => return Ok(Wait::Cancelled),
        Wait::TimedOut if !last => first = false,
        // After a slice, a changed word means a notifier changed it: as good as a wake.
        Wait::NotEqual if !first => return Ok(Wait::Woken),
        done => return Ok(done),
      }
    }
  }

  /// Wakes up to `count` (at least 1) waits of this word and returns how many woke: first the
  /// waits of this process, oldest first, each counted from the moment it registered; then, for
  /// what is left of `count`, the waits asleep in the kernel on the word (see `notify` in
  /// `crate::api::futex`, which documents it for users).
  pub fn notify(&self, count: usize) -> std::io::Result<usize> {
    let wake = |count: usize, private| {
      let count = count.min(i32::MAX as usize) as i32;
      // SAFETY: the word is aligned and inside the mapping, which `self.mapping` keeps reserved.
      match unsafe { sys::wake(self.addr(), count, private) } {
        // The shared key of a word whose page refuses it (see `with_key`): nobody waits with it.
        Err(err) if err.raw_os_error() == Some(libc::EFAULT) && !private => Ok(0),
        woken => woken,
      }
    };
    // This process's waits, marked and counted under the lock: each one once, by one notify. The
    // lock is held to the end, so that no wait of this word registers meanwhile: the kernel wake
    // below cannot reach a wait of this process (by this key) that another notify could
    // mark too, and count again.
    let waiters = waiters();
    let (mut woken, mut leaving) = (Vec::new(), Vec::new());
    for waiter in waiters.get(&self.key()).into_iter().flatten() {
      if woken.len() == count {
        break; // nothing goes to the kernel: `leaving` is not needed
      }
      if waiter.mark(NOTIFIED) == PENDING {
        woken.push(Arc::clone(waiter));
      } else if waiter.state.load(Ordering::SeqCst) != PENDING {
        leaving.push(Arc::clone(waiter));
      }
    }
    for waiter in &woken {
      // SAFETY: `state` is an aligned word of the waiter, alive for the call.
      unsafe { sys::wake_private(waiter.state.as_ptr()) };
    }
    let here = woken.len();
    if here == count {
      return Ok(count);
    }
    // The kernel tells only how many it woke, not whom: a wait of this process that was marked
    // (by this notify or another) but is still queued on the word would be woken and counted
    // twice. Those that sleep with futex_waitv leave the queue as soon as their thread runs: wait
    // for them (they set `gone` before they take the lock). The others (sleeping in slices,
    // before Linux 5.16) may still be there: what the kernel reports is counted less as many, so
    // that it may count fewer than woke, never more.
    let marked: Vec<_> = woken.into_iter().chain(leaving).collect();
    for waiter in &marked {
      if waiter.exact.load(Ordering::Relaxed) {
        waiter.wait_gone();
      }
    }
    let stale = marked
      .iter()
      .filter(|waiter| waiter.gone.load(Ordering::SeqCst) == 0)
      .count();
    // A word of this process's own pages has only private waits (see `Word::own_pages`).
    let mut kernel = if self.own_pages() {
      0
    } else {
      wake(count - here, false)?
    };
    std::sync::atomic::fence(Ordering::SeqCst);
    if kernel < count - here && PRIVATE_SLEEPERS.load(Ordering::SeqCst) != 0 {
      kernel += wake(count - here - kernel, true)?;
    }
    drop(waiters);
    Ok((here + kernel.saturating_sub(stale)).min(count))
  }
}

/// How many waits sleep now with the process-private futex key ([`Word::with_key`]): while there are
/// any, `notify` wakes that key too.
static PRIVATE_SLEEPERS: AtomicUsize = AtomicUsize::new(0);

/// Whether `a` is after `b`.
pub fn later(a: &libc::timespec, b: &libc::timespec) -> bool {
  (a.tv_sec, a.tv_nsec) > (b.tv_sec, b.tv_nsec)
}
