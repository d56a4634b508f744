//! The exports: thin adapters from the JavaScript boundary ([`crate::js`]) to the core
//! ([`crate::core`]), one implementation per operation, shared by the module functions and the
//! `Mapping` class.
//!
//! - [`map`] (`map()`), [`open`] (`openSync`/`open`), [`ops`] (`unmap`, `remap`, `advise`,
//!   `incore`, `sync`, `flush`, `lock`, `unlock`, `protect`, `faults`, `setSigbusRecovery`),
//!   [`futex`] (`wait`, `waitAsync`, `notify`), [`handle`] (the `Mapping` class),
//!   [`constants`].
//! - [`fast`]: plain Node-API entry points for `map` and `unmap`, installed over napi-rs's glue
//!   (the same hook gives each env its flusher, `js::flusher`).

pub mod constants;
pub mod fast;
pub mod futex;
pub mod handle;
pub mod map;
pub mod open;
pub mod ops;
