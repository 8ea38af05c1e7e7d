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
//!
//! ## Changing this crate
//!
//! The log and the snapshots outlive the binary that wrote them, and servers of two versions
//! run side by side during an upgrade. So:
//!
//! - applying a command may depend only on the command and the state: no clock, no
//!   randomness, no iteration over unordered collections (every table is an ordered map);
//! - a field added to a record or a command gets a default (`#[serde(default)]`), so entries
//!   and snapshots written without it still read; a field of a command, or of a record a
//!   command carries, must also be counted in `command/size.rs`, which does not compile until
//!   it is;
//! - a new command type gets a new tag at the end of [`command::KNOWN_TYPES`], a decision on
//!   [`Command::ignore_unknown`], and a sample in the wire and size tests;
//! - state that a later command or read depends on must go into the snapshot payload (with a
//!   default), or a server restored from a snapshot would diverge from one that replayed the
//!   log.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acl;
pub mod command;
pub mod duration;
pub mod filter;
pub mod model;
pub mod snapshot;
pub mod store;

pub use command::{Command, Response};
pub use store::{Applied, Changes, State, Store, StoreError, WatchKey};
