//! The commands that change the state: what Raft replicates and `State::apply` executes.
//!
//! Commands are deterministic: anything that depends on time or randomness (session IDs, the
//! clock used for lock delays) is decided by the proposer and carried inside the command.
//! On the wire and in the log a command travels in a versioned envelope (`encode`/`decode`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{HealthCheck, KvEntry, Meta, Node, Service, Session};

/// Version of the command envelope written by this build.
pub const COMMAND_VERSION: u32 = 1;

/// Largest encoded command accepted by `decode` (bounded decoder); a snapshot restore is the
/// largest command there is.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024 * 1024;

/// A catalog registration: a node, optionally one service instance and checks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegisterRequest {
    /// Node UUID (optional).
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name (required).
    pub node: String,
    /// Node address (required unless `SkipNodeUpdate` on an existing node).
    pub address: String,
    /// Datacenter (filled by the server when empty).
    pub datacenter: String,
    /// Node tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub node_meta: Meta,
    /// A service instance to register on the node.
    pub service: Option<Service>,
    /// One check (legacy single form).
    pub check: Option<HealthCheck>,
    /// Checks.
    pub checks: Vec<HealthCheck>,
    /// Leave the node record untouched (used for check updates).
    pub skip_node_update: bool,
}

/// A catalog deregistration: a whole node, one service instance, or one check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeregisterRequest {
    /// Node name (required).
    pub node: String,
    /// Datacenter.
    pub datacenter: String,
    /// Service instance to remove (with its checks).
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Check to remove.
    #[serde(rename = "CheckID")]
    pub check_id: String,
}

/// A KV operation of the `/v1/kv` endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvOp {
    /// Unconditional write.
    Set,
    /// Write if `index` matches the ModifyIndex (0: create only).
    Cas,
    /// Write and take the lock for `session`.
    Lock,
    /// Write and release the lock held by `session`.
    Unlock,
    /// Delete one key.
    Delete,
    /// Delete one key if `index` matches.
    DeleteCas,
    /// Delete every key under a prefix.
    DeleteTree,
}

/// A KV write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct KvRequest {
    /// Key (or prefix for `DeleteTree`).
    pub key: String,
    /// Value (`None` for empty).
    #[serde(with = "crate::model::b64_opt")]
    pub value: Option<Vec<u8>>,
    /// Client flags.
    pub flags: u64,
    /// Expected ModifyIndex for CAS operations.
    pub index: u64,
    /// Session for lock operations.
    pub session: String,
}

/// One operation inside a transaction.
// Short-lived wire data: boxing the larger variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TxnOp {
    /// A KV verb.
    #[serde(rename = "KV")]
    Kv(TxnKvOp),
    /// A node verb.
    Node(TxnNodeOp),
    /// A service verb.
    Service(TxnServiceOp),
    /// A check verb.
    Check(TxnCheckOp),
}

/// KV part of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnKvOp {
    /// Verb: set, cas, lock, unlock, get, get-or-empty, get-tree, check-index, check-session,
    /// check-not-exists, delete, delete-tree, delete-cas.
    pub verb: String,
    /// Key or prefix.
    pub key: String,
    /// Value (base64 in JSON).
    #[serde(with = "crate::model::b64_opt")]
    pub value: Option<Vec<u8>>,
    /// Flags.
    pub flags: u64,
    /// Index for CAS verbs.
    pub index: u64,
    /// Session for lock verbs.
    pub session: String,
}

/// Node part of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnNodeOp {
    /// Verb: set, cas, get, delete, delete-cas.
    pub verb: String,
    /// The node.
    pub node: Node,
}

/// Service part of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnServiceOp {
    /// Verb: set, cas, get, delete, delete-cas.
    pub verb: String,
    /// Node name.
    pub node: String,
    /// The service.
    pub service: Service,
}

/// Check part of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnCheckOp {
    /// Verb: set, cas, get, delete, delete-cas.
    pub verb: String,
    /// The check.
    pub check: HealthCheck,
}

/// One result of a committed transaction.
// Short-lived wire data: boxing the larger variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TxnResult {
    /// A KV entry.
    #[serde(rename = "KV")]
    Kv(KvEntry),
    /// A node.
    Node(Node),
    /// A service.
    Service(Service),
    /// A check.
    Check(HealthCheck),
}

/// Why a transaction was rolled back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnError {
    /// Position of the failing operation.
    pub op_index: usize,
    /// What went wrong.
    pub what: String,
}

/// Identifies one write across the retries of its forwarders (see `store::clients`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestId {
    /// The proposing process: a random ID drawn at its start.
    pub client: String,
    /// The request's number, increasing within the client.
    pub seq: u64,
    /// Every request of the client below this number is finished (answered or abandoned), so
    /// its result may be forgotten and a late copy of it refused.
    pub floor: u64,
}

/// A state change. `now_ms` fields are the proposer's wall clock (Unix milliseconds).
// Short-lived wire data: boxing the larger variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Register a node, service and checks.
    Register {
        /// What to register.
        req: RegisterRequest,
        /// Proposer's clock, for lock delays of sessions this invalidates.
        now_ms: u64,
    },
    /// Deregister a node, a service or a check.
    Deregister {
        /// What to remove.
        req: DeregisterRequest,
        /// Proposer's clock, for lock delays of sessions this invalidates.
        now_ms: u64,
    },
    /// A KV write.
    Kv {
        /// Operation.
        op: KvOp,
        /// Arguments.
        req: KvRequest,
        /// Proposer's clock, for lock delays.
        now_ms: u64,
    },
    /// Create a session (ID chosen by the proposer).
    SessionCreate {
        /// The session.
        session: Session,
    },
    /// Destroy (invalidate) a session, releasing or deleting its locks.
    SessionDestroy {
        /// Session ID.
        id: String,
        /// Proposer's clock, for lock delays.
        now_ms: u64,
    },
    /// An all-or-nothing transaction.
    Txn {
        /// Operations.
        ops: Vec<TxnOp>,
        /// Proposer's clock.
        now_ms: u64,
    },
    /// Forget KV tombstones up to an index.
    ReapTombstones {
        /// Highest index reaped.
        up_to: u64,
    },
    /// Several commands in one log entry, each applied on its own (its failure does not undo the
    /// others), in order, at the entry's index. Concurrent writes share one entry this way, and
    /// so one disk write.
    Batch(Vec<Command>),
    /// Replaces the whole state with a snapshot (operator restore, `PUT /v1/snapshot`).
    Restore {
        /// The snapshot as [`crate::snapshot::write`] produced it (base64 in JSON).
        #[serde(with = "b64_vec")]
        data: Vec<u8>,
    },
    /// One piece of an archive too large for one entry (`PUT /v1/snapshot`). Pieces are staged
    /// in the state, in order, until [`Command::RestoreFinish`]; a piece at offset 0 starts a
    /// restore (dropping any other staged one).
    RestoreChunk {
        /// Identifies the restore.
        id: String,
        /// Where the piece goes in the archive.
        offset: u64,
        /// The bytes (base64 in JSON).
        #[serde(with = "b64_vec")]
        data: Vec<u8>,
    },
    /// Replaces the whole state with the staged archive of restore `id`, `len` bytes long.
    RestoreFinish {
        /// Identifies the restore.
        id: String,
        /// The archive's length.
        len: u64,
    },
    /// Drops the staged pieces of restore `id` (a restore that failed half way).
    RestoreAbort {
        /// Identifies the restore.
        id: String,
    },
    /// Sets nodes' network coordinates (`PUT /v1/coordinate/update`); entries for nodes not in
    /// the catalog are skipped, as Consul does.
    CoordinateUpdate {
        /// The coordinates.
        entries: Vec<crate::model::CoordinateEntry>,
    },
    /// Sets autopilot's settings; with `cas`, only if their ModifyIndex is that (0: only if
    /// none are set yet). Answers [`Response::Bool`].
    AutopilotSet {
        /// The settings (indexes are ignored).
        config: crate::model::AutopilotConfig,
        /// Check-and-set index.
        cas: Option<u64>,
    },
    /// Creates (`create`) or replaces a prepared query.
    QuerySet {
        /// The query (indexes are set by the store).
        query: crate::model::PreparedQuery,
        /// A new query: its ID must be unused.
        create: bool,
    },
    /// Deletes a prepared query (nothing if it does not exist).
    QueryDelete {
        /// Query ID.
        id: String,
    },
    /// Does nothing; advances the index.
    Noop,
    /// A command with the identity of the request that carries it: applied at most once
    /// whatever the number of copies of it the log holds (a forwarder's retries).
    Request {
        /// The request's identity.
        id: RequestId,
        /// What to apply (never itself a `Request` or a `Batch`).
        cmd: Box<Command>,
    },
}

/// Base64 for `Vec<u8>` fields of commands (a JSON array of numbers would be 4x larger).
pub mod b64_vec {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes the bytes as one base64 string.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    /// Reads bytes from a base64 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s.as_bytes()).map_err(D::Error::custom)
    }
}

impl Command {
    /// A rough size of the command's payload in bytes (before base64), to bound batches and
    /// replication messages.
    pub fn approx_size(&self) -> usize {
        match self {
            Command::Kv { req, .. } => 128 + req.key.len() + req.value.as_ref().map_or(0, Vec::len),
            Command::Txn { ops, .. } => ops
                .iter()
                .map(|op| match op {
                    TxnOp::Kv(kv) => 128 + kv.key.len() + kv.value.as_ref().map_or(0, Vec::len),
                    _ => 512,
                })
                .sum::<usize>()
                .max(256),
            Command::Restore { data } | Command::RestoreChunk { data, .. } => data.len(),
            Command::Batch(cmds) => cmds.iter().map(Command::approx_size).sum::<usize>() + 64,
            Command::Request { id, cmd } => cmd.approx_size() + id.client.len() + 64,
            Command::Register { req, .. } => {
                let strings = |v: &[String]| v.iter().map(|t| t.len() + 4).sum::<usize>();
                let map = |m: &BTreeMap<String, String>| {
                    m.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
                };
                let check = |c: &crate::model::HealthCheck| {
                    256 + c.check_id.len()
                        + c.name.len()
                        + c.notes.len()
                        + c.output.len()
                        + c.service_id.len()
                        + c.service_name.len()
                        + strings(&c.service_tags)
                        + c.definition.http.len()
                        + c.definition.body.len()
                };
                256 + req.node.len()
                    + req.address.len()
                    + map(&req.node_meta)
                    + req.service.as_ref().map_or(0, |s| {
                        256 + s.id.len()
                            + s.service.len()
                            + s.address.len()
                            + strings(&s.tags)
                            + map(&s.meta)
                    })
                    + req.check.as_ref().map_or(0, check)
                    + req.checks.iter().map(check).sum::<usize>()
            }
            _ => 512,
        }
    }

    /// The command itself, without the request identity it may travel with.
    pub fn inner(&self) -> &Command {
        match self {
            Command::Request { cmd, .. } => cmd,
            other => other,
        }
    }

    /// The proposer's clock carried by the command (0 when it carries none).
    pub fn now_ms(&self) -> u64 {
        match self {
            Command::Register { now_ms, .. }
            | Command::Deregister { now_ms, .. }
            | Command::Kv { now_ms, .. }
            | Command::SessionDestroy { now_ms, .. }
            | Command::Txn { now_ms, .. } => *now_ms,
            Command::Request { cmd, .. } => cmd.now_ms(),
            Command::SessionCreate { .. }
            | Command::ReapTombstones { .. }
            | Command::Restore { .. }
            | Command::RestoreChunk { .. }
            | Command::RestoreFinish { .. }
            | Command::RestoreAbort { .. }
            | Command::CoordinateUpdate { .. }
            | Command::AutopilotSet { .. }
            | Command::QuerySet { .. }
            | Command::QueryDelete { .. }
            | Command::Batch(_)
            | Command::Noop => 0,
        }
    }
}

/// The result of a successful command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Done, nothing to report.
    Done,
    /// A boolean outcome (KV writes).
    Bool(bool),
    /// The results of a [`Command::Batch`], in order.
    Batch(Vec<Result<Response, crate::StoreError>>),
    /// Transaction results or errors.
    Txn {
        /// Results, in op order (empty on rollback).
        results: Vec<TxnResult>,
        /// Errors (empty on commit).
        errors: Vec<TxnError>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<C> {
    v: u32,
    cmd: C,
}

/// Why bytes could not be decoded into a command.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// More bytes than any command may take.
    #[error("command of {0} bytes exceeds the limit of {MAX_COMMAND_BYTES}")]
    TooLarge(usize),
    /// Written by an unknown (newer) version.
    #[error("unsupported command version {0}")]
    Version(u32),
    /// Not a well-formed command.
    #[error("malformed command: {0}")]
    Malformed(String),
}

/// Encodes a command in its versioned envelope.
pub fn encode(cmd: &Command) -> Vec<u8> {
    // Serializing plain data to a Vec cannot fail.
    serde_json::to_vec(&Envelope {
        v: COMMAND_VERSION,
        cmd,
    })
    .unwrap_or_default()
}

/// Decodes a command, checking size and version first.
pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    #[derive(Deserialize)]
    struct Head {
        v: u32,
    }
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if head.v != COMMAND_VERSION {
        return Err(DecodeError::Version(head.v));
    }
    let env: Envelope<Command> =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Ok(env.cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_bounds() {
        let cmd = Command::Kv {
            op: KvOp::Cas,
            req: KvRequest {
                key: "a/b".into(),
                value: Some(b"hello".to_vec()),
                flags: 7,
                index: 3,
                session: String::new(),
            },
            now_ms: 42,
        };
        let bytes = encode(&cmd);
        assert_eq!(decode(&bytes).expect("decodes"), cmd);
        assert!(matches!(
            decode(b"{\"v\":99,\"cmd\":\"Noop\"}"),
            Err(DecodeError::Version(99))
        ));
        assert!(matches!(
            decode(b"\x00\x01garbage"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2]),
            Err(DecodeError::Malformed(_))
        ));
    }
}
