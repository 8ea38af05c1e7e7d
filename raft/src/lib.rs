//! Cairn's Raft glue: the openraft type configuration, the durable log store and the state
//! machine that applies [`cairn_catalog::Command`]s to the catalog store.
//!
//! - [`log_store`]: the Raft log and vote, in memory for reads and in a `redb` file for
//!   durability. Writes go to one writer thread that commits everything queued in a single
//!   transaction (one fsync for many concurrent appends) before acknowledging any of them.
//! - [`state_machine`]: applies committed entries to the in-memory catalog (one log index = one
//!   catalog index), builds snapshots from an O(1) clone of the state and keeps the latest one
//!   in a checksummed file; on restart the state is rebuilt from that snapshot plus the log.
//!
//! Networking lives in the agent; this crate does file I/O only.
//!
//! ## Dependencies
//! - `openraft` 0.9 (pinned, the stable line): Raft itself. The 0.10 line is still alpha.
//! - `redb`: a pure-Rust embedded store with checksummed, crash-safe commits (no C build).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// openraft's StorageError is large and its traits return it by value; boxing ours alone gains nothing.
#![allow(clippy::result_large_err)]

pub mod log_store;
pub mod state_machine;

use std::fmt;
use std::io::Cursor;

use cairn_catalog::{Command, Response, StoreError};
use serde::{Deserialize, Serialize};

// Re-exported so that users name the very openraft this crate is built against (it is pinned
// to one release), not a second copy of another version.
pub use openraft;

/// A Raft member as other servers reach it. Stored in membership entries and snapshots, so
/// a server restarted from its log and snapshot knows every member's address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerNode {
    /// Node name.
    pub name: String,
    /// Server RPC address (`ip:port`): where Raft's messages to this member go.
    pub addr: String,
    /// Node UUID, from which the member's Raft ID is derived ([`node_id_from_uuid`]).
    pub id: String,
}

impl fmt::Display for ServerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.addr)
    }
}

/// What applying a command produced, carried back to the proposer.
///
/// Serializable, as openraft's `serde` feature requires of responses. A command that failed
/// still has its index: the entry is in the log and consumed its place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// Index the command was applied at.
    pub index: u64,
    /// The command's own result: an error here is the command's (a failed CAS, a missing
    /// node), not Raft's.
    pub result: Result<Response, StoreError>,
}

// Snapshots are whole byte buffers (`Cursor<Vec<u8>>`): the state they encode lives in memory
// anyway, and the file format is checked as a whole before anything is installed.
openraft::declare_raft_types!(
    /// Cairn's Raft types: catalog commands in, apply results out, servers identified by a
    /// 64-bit ID derived from their node UUID.
    pub TypeConfig:
        D = Command,
        R = ApplyResult,
        NodeId = u64,
        Node = ServerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log ID.
pub type LogId = openraft::LogId<u64>;
/// A vote.
pub type Vote = openraft::Vote<u64>;
/// Storage errors as openraft expects them.
pub type StorageError = openraft::StorageError<u64>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// The Raft ID of a server: the two halves of its node UUID xor-ed (never 0).
///
/// openraft wants a `u64`; a node's identity is its UUID. Deriving one from the other lets
/// every server compute a peer's Raft ID from the UUID gossip announces, with nothing else to
/// exchange or store. The same UUID always gives the same ID.
pub fn node_id_from_uuid(uuid: &str) -> u64 {
    let hex: String = uuid.chars().filter(char::is_ascii_hexdigit).collect();
    let half = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
    let id = if hex.len() >= 32 {
        half(&hex[..16]) ^ half(&hex[16..32])
    } else {
        // Not a UUID: hash the text (FNV-1a), stable across runs.
        uuid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    id.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same UUID, same ID; a one-digit change, another ID; the all-zero UUID and non-UUID
    /// names still give usable IDs.
    #[test]
    fn node_ids_are_stable_and_nonzero() {
        let a = node_id_from_uuid("1a870de7-f173-492c-ac2c-90ddb5963313");
        assert_eq!(a, node_id_from_uuid("1a870de7-f173-492c-ac2c-90ddb5963313"));
        assert_ne!(a, node_id_from_uuid("1a870de7-f173-492c-ac2c-90ddb5963314"));
        assert_eq!(node_id_from_uuid("00000000-0000-0000-0000-000000000000"), 1);
        assert_ne!(node_id_from_uuid("server-a"), node_id_from_uuid("server-b"));
    }
}
