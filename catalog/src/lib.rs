//! Cairn's catalog: the state that servers replicate with Raft.
//!
//! - [`model`]: nodes, services, checks, KV entries and sessions, with Consul's JSON names;
//! - [`command`]: the versioned commands that change the state;
//! - [`store`]: the tables, `State::apply(index, command)` (the only write path) and the reads,
//!   each returning the index it reflects;
//! - [`snapshot`]: deterministic, checksummed snapshot and restore;
//! - [`filter`]: Consul's `?filter=` expression language;
//! - [`duration`]: Go duration syntax, as the API speaks it.
//!
//! Nothing here does I/O, reads a clock or draws random numbers: time and IDs come inside
//! commands, so every server applying the same log reaches the same state.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod command;
pub mod duration;
pub mod filter;
pub mod model;
pub mod snapshot;
pub mod store;

pub use command::{Command, Response};
pub use store::{Applied, Changes, State, Store, StoreError, WatchKey};
