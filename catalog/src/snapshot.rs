//! Deterministic snapshot and restore of the whole state.
//!
//! Layout: the magic `CAIRNSNP`, a format version (u32, big endian), the SHA-256 of the
//! payload, then the payload (JSON). Restoring checks all three before touching anything and
//! rebuilds the derived indexes, so `restore(write(s))` answers every read exactly as `s` does.
//!
//! Deterministic: tables are written in key order (the persistent maps iterate sorted, and the
//! JSON of the records holds only sorted maps), so two servers at the same index write the same
//! bytes. Besides the records, a snapshot carries everything a later command or read depends
//! on: KV tombstones (prefix indexes), lock delays (which locks are refused), the watch indexes
//! (what blocked readers compare against), the client sessions of exactly-once writes and a
//! half-received operator restore. Leaving one out would let a server restored from a snapshot
//! answer or apply differently from one that replayed the log.
//!
//! The same format serves Raft's snapshots (wrapped in the Raft snapshot file by `cairn-raft`)
//! and operators' archives (`/v1/snapshot`), which leave out the log's own bookkeeping
//! ([`write_archive`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{HealthCheck, KvEntry, Node, Service, Session};
use crate::store::clients::ClientSession;
use crate::store::{State, WatchKey};

/// First bytes of every catalog snapshot: an operator who hands `PUT /v1/snapshot` some other
/// file gets "not a snapshot" rather than a JSON error.
const MAGIC: &[u8; 8] = b"CAIRNSNP";
/// Version of the snapshot format written by this build; [`read`] refuses any other. Fields
/// added since version 1 are optional (`#[serde(default)]`), so they did not need a new
/// version: a new version is only for a change older readers would misread.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Magic, version (u32) and SHA-256 of the payload.
const HEADER_LEN: usize = 8 + 4 + 32;

/// Why a snapshot could not be restored. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a Cairn snapshot, or cut short.
    #[error("not a Cairn state snapshot (bad magic or truncated header)")]
    NotASnapshot,
    /// Written by an unknown format version.
    #[error("unsupported snapshot format version {0}")]
    Version(u32),
    /// The payload does not match its checksum.
    #[error("snapshot checksum mismatch: the snapshot is corrupt")]
    Checksum,
    /// The payload is not well formed.
    #[error("malformed snapshot payload: {0}")]
    Malformed(String),
    /// The state could not be encoded (nothing was written).
    #[error("cannot encode the state snapshot: {0}")]
    Encode(String),
}

/// The JSON body. Tables are lists in key order rather than maps: some keys are not strings
/// (watch keys, (node, ID) pairs), and the records already hold their own key. Derived tables
/// (service names, locks by session) are not written: [`read`] rebuilds them from the records,
/// so they can never disagree.
///
/// The fields after `indexes` were added to version 1 later: each has a default, so
/// snapshots written before them still read.
#[derive(Serialize, Deserialize)]
struct Payload {
    /// The index of the last command applied to the state.
    index: u64,
    nodes: Vec<Node>,
    /// (node, instance): a service record does not name its node.
    services: Vec<(String, Service)>,
    checks: Vec<HealthCheck>,
    kv: Vec<KvEntry>,
    /// Deleted keys and their deletion index, so that a prefix's index still covers deletions.
    tombstones: Vec<(String, u64)>,
    sessions: Vec<Session>,
    /// Key and the Unix ms before which it cannot be locked.
    lock_delays: Vec<(String, u64)>,
    /// The index of every watch key, so blocking reads compare against the same numbers.
    indexes: Vec<(WatchKey, u64)>,
    #[serde(default)]
    coordinates: Vec<crate::model::CoordinateEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    autopilot: Option<crate::model::AutopilotConfig>,
    #[serde(default)]
    queries: Vec<crate::model::PreparedQuery>,
    /// An operator restore half received (Raft snapshots taken meanwhile must carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged_restore: Option<StagedPayload>,
    /// Client sessions of exactly-once writes (Raft snapshots only; not in operator archives).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clients: Vec<(String, ClientSession)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    acl_tokens: Vec<crate::acl::AclToken>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    acl_policies: Vec<crate::acl::AclPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    acl_roles: Vec<crate::acl::AclRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acl_bootstrap: Option<u64>,
}

/// A staged restore in one piece: how it was cut into commands does not matter once received.
#[derive(Serialize, Deserialize)]
struct StagedPayload {
    id: String,
    /// The bytes received so far (base64, not a JSON array of numbers).
    #[serde(with = "crate::command::b64_vec")]
    data: Vec<u8>,
}

/// Serializes the state. Fails rather than write a snapshot that would not restore.
pub fn write(st: &State) -> Result<Vec<u8>, SnapshotError> {
    let payload = Payload {
        index: st.last_index,
        nodes: st.nodes.values().map(|n| Node::clone(n)).collect(),
        // The node comes from the table's key; the instance ID is in the record itself.
        services: st
            .services
            .iter()
            .map(|((node, _), s)| (node.clone(), Service::clone(s)))
            .collect(),
        checks: st.checks.values().map(|c| HealthCheck::clone(c)).collect(),
        kv: st.kv.values().map(|e| KvEntry::clone(e)).collect(),
        tombstones: st.tombstones.iter().map(|(k, i)| (k.clone(), *i)).collect(),
        sessions: st.sessions.values().map(|s| Session::clone(s)).collect(),
        lock_delays: st
            .lock_delays
            .iter()
            .map(|(k, t)| (k.clone(), *t))
            .collect(),
        indexes: st.indexes.iter().map(|(k, i)| (k.clone(), *i)).collect(),
        // Through the read, which lists them by node then segment: the table's key order.
        coordinates: st.coordinates(None).1,
        autopilot: st.autopilot.as_deref().cloned(),
        queries: st
            .queries
            .values()
            .map(|q| crate::model::PreparedQuery::clone(q))
            .collect(),
        // Its pieces joined: how the archive was cut into commands does not matter any more.
        staged_restore: st.staged.as_ref().map(|s| StagedPayload {
            id: s.id.clone(),
            data: s.bytes(),
        }),
        clients: st
            .clients
            .iter()
            .map(|(c, s)| (c.clone(), ClientSession::clone(s)))
            .collect(),
        acl_tokens: st.acl_tokens.values().map(|t| t.as_ref().clone()).collect(),
        acl_policies: st
            .acl_policies
            .values()
            .map(|p| p.as_ref().clone())
            .collect(),
        acl_roles: st.acl_roles.values().map(|r| r.as_ref().clone()).collect(),
        acl_bootstrap: st.acl_bootstrap,
    };
    let body = serde_json::to_vec(&payload).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    // The checksum covers the payload only: magic and version are checked on their own, and a
    // damaged header fails those checks.
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    Ok(out)
}

/// Serializes the state for an operator (`GET /v1/snapshot`): without the pieces of a restore
/// being received and the client sessions, which belong to Raft's snapshots only.
///
/// An archive restored elsewhere must not bring that cluster's exactly-once bookkeeping or a
/// half-finished restore with it; the restoring cluster keeps its own (see `Tx::restore`).
pub fn write_archive(st: &State) -> Result<Vec<u8>, SnapshotError> {
    if st.staged.is_none() && st.clients.is_empty() {
        return write(st);
    }
    // Cloning the state is O(1); only the two left-out tables change in the copy.
    let mut st = st.clone();
    st.staged = None;
    st.clients = imbl::OrdMap::new();
    write(&st)
}

/// The index a snapshot was taken at, read from a verified snapshot. Reads the whole
/// snapshot: an index is only trusted from bytes that passed the checksum and decode.
pub fn index_of(bytes: &[u8]) -> Result<u64, SnapshotError> {
    Ok(read(bytes)?.last_index())
}

/// Restores a state from a snapshot.
///
/// Checks come cheapest first (length and magic, version, checksum) and all of them before
/// decoding, so a foreign or damaged file is named as such instead of as malformed JSON. The
/// result is a new state: nothing existing is touched, whatever fails.
pub fn read(bytes: &[u8]) -> Result<State, SnapshotError> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let version = u32::from_be_bytes(v);
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::Version(version));
    }
    let body = &bytes[HEADER_LEN..];
    if Sha256::digest(body).as_slice() != &bytes[12..HEADER_LEN] {
        return Err(SnapshotError::Checksum);
    }
    let p: Payload =
        serde_json::from_slice(body).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    let mut st = State::new();
    st.last_index = p.index;
    for n in p.nodes {
        st.nodes.insert(n.node.clone(), Arc::new(n));
    }
    for (node, s) in p.services {
        st.services.insert((node, s.id.clone()), Arc::new(s));
    }
    for c in p.checks {
        st.checks
            .insert((c.node.clone(), c.check_id.clone()), Arc::new(c));
    }
    for e in p.kv {
        // Locks by session are derived from the entries' holders, not stored.
        if let Some(s) = &e.session {
            st.session_locks
                .entry(s.clone())
                .or_default()
                .insert(e.key.clone());
        }
        st.kv.insert(e.key.clone(), Arc::new(e));
    }
    st.tombstones = p.tombstones.into_iter().collect();
    for s in p.sessions {
        st.sessions.insert(s.id.clone(), Arc::new(s));
    }
    st.lock_delays = p.lock_delays.into_iter().collect();
    st.indexes = p.indexes.into_iter().collect();
    st.autopilot = p.autopilot.map(Arc::new);
    for q in p.queries {
        st.queries.insert(q.id.clone(), Arc::new(q));
    }
    for c in p.coordinates {
        st.coordinates
            .insert((c.node, c.segment), Arc::new(c.coord));
    }
    // Staged as one piece: further pieces append after it as they would after many.
    st.staged = p.staged_restore.map(|s| crate::store::StagedRestore {
        id: s.id,
        len: s.data.len() as u64,
        parts: std::iter::once(Arc::new(s.data)).collect(),
    });
    st.clients = p
        .clients
        .into_iter()
        .map(|(c, s)| (c, Arc::new(s)))
        .collect();
    for t in p.acl_tokens {
        st.acl_tokens.insert(t.accessor_id.clone(), Arc::new(t));
    }
    for pol in p.acl_policies {
        st.acl_policies.insert(pol.id.clone(), Arc::new(pol));
    }
    for r in p.acl_roles {
        st.acl_roles.insert(r.id.clone(), Arc::new(r));
    }
    st.acl_bootstrap = p.acl_bootstrap;
    // The service-name index, rebuilt from the service table it derives from.
    crate::store::rebuild_derived(&mut st);
    Ok(st)
}
