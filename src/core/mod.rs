//! The core: what a mapping is and what keeps it safe, with no Node-API in sight and nothing
//! imported from the layers above (`js`, `api`); unit-testable without Node.
//!
//! - [`mapping`]: [`mapping::Mapping`], the owner of one OS mapping, unmapped exactly once, and
//!   its safety model ([`mapping::Shared`], an `Arc`, is the counted reference to it that
//!   Buffers, handles and tasks hold); the guard that keeps the process under `vm.max_map_count`.
//! - [`registry`]: ArrayBuffer start -> mapping, to find the mapping behind any view;
//!   placeholder runs.
//! - [`faults`]: the lock-free table of live mappings that the signal handlers read, each entry
//!   a small fault record (range, page size, protection, counters), not the mapping.
//! - [`recovery`]: the signal handlers' hook: SIGBUS recovery (lost pages replaced with zeros)
//!   and the diagnostic line before a fatal fault.
//! - [`futex`]: futex words: this process's waiters of a word, the kernel sleeps and wakes.
//! - [`reclaim`]: what finalizers drop, unmapped in runs of adjacent ranges (one munmap for many).

pub mod faults;
pub mod futex;
pub mod mapping;
pub mod reclaim;
pub mod recovery;
pub mod registry;
