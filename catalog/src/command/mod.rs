//! The commands that change the state: what Raft replicates and `State::apply` executes.
//!
//! Commands are deterministic: anything that depends on time or randomness (session IDs, the
//! clock used for lock delays) is decided by the proposer and carried inside the command.
//!
//! Everything a command holds is typed and checked before it is proposed ([`Command::validate`];
//! transaction verbs are enums), so applying it can fail only on the state it meets, the same
//! way on every server.
//!
//! On the wire and in the log ([`wire`]) every command carries a stable type tag, and may carry
//! Consul's "ignore if unknown" flag: a server that meets a type it does not know (written by a
//! newer version) keeps the entry as written, and either applies it as a no-op (flag set) or
//! refuses to apply it and stops (flag unset), rather than diverging. [`encode`] and [`decode`]
//! wrap one command in a versioned envelope; [`Command::encoded_size_bound`] bounds its size.

mod size;
pub mod wire;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{HealthCheck, KvEntry, Meta, Node, Service, Session};

pub use wire::{
    COMMAND_VERSION, DecodeError, EncodeError, IGNORE_UNKNOWN_KEY, KNOWN_TYPES, MAX_COMMAND_BYTES,
    UnknownCommand, decode, encode,
};

/// A catalog registration: a node, optionally one service instance and checks.
///
/// Applied all or nothing: a check naming another node or an unknown service refuses the
/// whole registration, node and service included.
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
    /// One check (legacy single form, still part of Consul's API); registered before `checks`.
    pub check: Option<HealthCheck>,
    /// Checks.
    pub checks: Vec<HealthCheck>,
    /// Leave the node record untouched (used for check updates): an agent syncing a check does
    /// not overwrite node fields another writer changed. Ignored when the node does not exist
    /// yet, which is then registered from this request.
    pub skip_node_update: bool,
}

/// A catalog deregistration: a whole node, one service instance, or one check.
///
/// The most specific target wins: a service ID, else a check ID, else the node. Removing what
/// does not exist is not an error, so a retried deregistration answers as the first did.
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
///
/// The conditional ones answer `false` rather than fail when their condition does not hold,
/// as Consul's `/v1/kv` answers `false` with a 200.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvOp {
    /// Unconditional write (`PUT`).
    Set,
    /// Write if `index` matches the ModifyIndex (0: create only) (`PUT ?cas=`).
    Cas,
    /// Write and take the lock for `session` (`PUT ?acquire=`).
    Lock,
    /// Write and release the lock held by `session` (`PUT ?release=`).
    Unlock,
    /// Delete one key (`DELETE`).
    Delete,
    /// Delete one key if `index` matches (`DELETE ?cas=`).
    DeleteCas,
    /// Delete every key under a prefix (`DELETE ?recurse`).
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
    /// Expected ModifyIndex for CAS operations (0 with `Cas`: the key must not exist yet).
    pub index: u64,
    /// Session for lock operations (`Lock` fails if it does not exist when it applies).
    pub session: String,
}

/// What a KV operation of a transaction does, spelled on the wire as Consul spells it
/// (`/v1/txn`). Typed, so that a verb is checked where the request enters, before it is
/// proposed, rather than when every server applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvVerb {
    /// Unconditional write.
    Set,
    /// Write if the index matches the key's ModifyIndex (0: create only).
    Cas,
    /// Write and take the lock for the session.
    Lock,
    /// Write and release the lock held by the session.
    Unlock,
    /// Read a key (fails if it does not exist).
    Get,
    /// Read every key under a prefix.
    GetTree,
    /// Read a key, or an empty entry when it does not exist.
    GetOrEmpty,
    /// Fail unless the key's ModifyIndex is the index.
    CheckIndex,
    /// Fail unless the key is locked by the session.
    CheckSession,
    /// Fail if the key exists.
    CheckNotExists,
    /// Delete a key.
    Delete,
    /// Delete every key under a prefix.
    DeleteTree,
    /// Delete a key if the index matches its ModifyIndex.
    DeleteCas,
}

impl KvVerb {
    /// Every KV verb: the table [`KvVerb::parse`] searches, so a verb left out here could never
    /// be parsed.
    pub const ALL: [KvVerb; 13] = [
        KvVerb::Set,
        KvVerb::Cas,
        KvVerb::Lock,
        KvVerb::Unlock,
        KvVerb::Get,
        KvVerb::GetTree,
        KvVerb::GetOrEmpty,
        KvVerb::CheckIndex,
        KvVerb::CheckSession,
        KvVerb::CheckNotExists,
        KvVerb::Delete,
        KvVerb::DeleteTree,
        KvVerb::DeleteCas,
    ];

    /// The verb as Consul spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            KvVerb::Set => "set",
            KvVerb::Cas => "cas",
            KvVerb::Lock => "lock",
            KvVerb::Unlock => "unlock",
            KvVerb::Get => "get",
            KvVerb::GetTree => "get-tree",
            KvVerb::GetOrEmpty => "get-or-empty",
            KvVerb::CheckIndex => "check-index",
            KvVerb::CheckSession => "check-session",
            KvVerb::CheckNotExists => "check-not-exists",
            KvVerb::Delete => "delete",
            KvVerb::DeleteTree => "delete-tree",
            KvVerb::DeleteCas => "delete-cas",
        }
    }

    /// Parses Consul's spelling (exact), with Consul's error for anything else.
    pub fn parse(s: &str) -> Result<KvVerb, UnknownVerb> {
        KvVerb::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVerb {
                table: "KV",
                verb: s.to_string(),
            })
    }

    /// Whether the verb only reads (a transaction of reads only is answered without the log).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get
                | KvVerb::GetTree
                | KvVerb::GetOrEmpty
                | KvVerb::CheckIndex
                | KvVerb::CheckSession
                | KvVerb::CheckNotExists
        )
    }
}

/// What a node, service or check operation of a transaction does (Consul's spellings: the
/// three tables share them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CatalogVerb {
    /// Create or replace.
    Set,
    /// Create or replace if the index matches the ModifyIndex (0: create only).
    Cas,
    /// Read (fails if it does not exist).
    Get,
    /// Delete.
    Delete,
    /// Delete if the index matches the ModifyIndex.
    DeleteCas,
}

impl CatalogVerb {
    /// Every catalog verb: the table [`CatalogVerb::parse`] searches.
    pub const ALL: [CatalogVerb; 5] = [
        CatalogVerb::Set,
        CatalogVerb::Cas,
        CatalogVerb::Get,
        CatalogVerb::Delete,
        CatalogVerb::DeleteCas,
    ];

    /// The verb as Consul spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogVerb::Set => "set",
            CatalogVerb::Cas => "cas",
            CatalogVerb::Get => "get",
            CatalogVerb::Delete => "delete",
            CatalogVerb::DeleteCas => "delete-cas",
        }
    }

    /// Parses Consul's spelling (exact); `table` (`Node`, `Service` or `Check`) names the
    /// operation's table in the error, as Consul's does.
    pub fn parse(s: &str, table: &'static str) -> Result<CatalogVerb, UnknownVerb> {
        CatalogVerb::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVerb {
                table,
                verb: s.to_string(),
            })
    }

    /// Whether the verb only reads (see [`KvVerb::is_read`]).
    pub fn is_read(self) -> bool {
        self == CatalogVerb::Get
    }
}

/// A transaction verb that is none of its table's: Consul's error text (`unknown KV verb
/// "x"`), which is what a transaction answers for that operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {table} verb {verb:?}")]
pub struct UnknownVerb {
    /// `KV`, `Node`, `Service` or `Check`.
    pub table: &'static str,
    /// The verb as given.
    pub verb: String,
}

/// One operation inside a transaction.
// Short-lived wire data: boxing the larger variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum TxnOp {
    /// A KV verb.
    Kv(TxnKvOp),
    /// A node verb.
    Node(TxnNodeOp),
    /// A service verb.
    Service(TxnServiceOp),
    /// A check verb.
    Check(TxnCheckOp),
    /// An operation whose verb is none of its table's. Versions before typed verbs checked
    /// verbs only when applying, so their logs may hold such operations: decoding keeps them
    /// (the log stays readable) and applying fails them as those versions did, so replaying an
    /// old log reaches the same state. Never proposed: [`Command::validate`] refuses it.
    Unrecognized(UnrecognizedTxnOp),
}

impl TxnOp {
    /// Whether the operation only reads.
    pub fn is_read(&self) -> bool {
        match self {
            TxnOp::Kv(o) => o.verb.is_read(),
            TxnOp::Node(TxnNodeOp { verb, .. })
            | TxnOp::Service(TxnServiceOp { verb, .. })
            | TxnOp::Check(TxnCheckOp { verb, .. }) => verb.is_read(),
            TxnOp::Unrecognized(_) => false,
        }
    }
}

/// A transaction operation with an unknown verb, as an older version logged it (see
/// [`TxnOp::Unrecognized`]).
#[derive(Clone, Debug, PartialEq)]
pub struct UnrecognizedTxnOp {
    /// The operation as written, re-encoded as is.
    pub raw: serde_json::Value,
    /// Why applying it fails.
    pub error: UnknownVerb,
}

/// KV part of a transaction.
///
/// Every field but the verb defaults, as Consul's clients leave out what a verb does not use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnKvOp {
    /// What to do.
    pub verb: KvVerb,
    /// Key or prefix.
    #[serde(default)]
    pub key: String,
    /// Value (base64 in JSON).
    #[serde(default, with = "crate::model::b64_opt")]
    pub value: Option<Vec<u8>>,
    /// Flags.
    #[serde(default)]
    pub flags: u64,
    /// Index for CAS verbs.
    #[serde(default)]
    pub index: u64,
    /// Session for lock verbs.
    #[serde(default)]
    pub session: String,
}

impl TxnKvOp {
    /// An operation on `key` with no value, flags, index or session.
    pub fn new(verb: KvVerb, key: impl Into<String>) -> TxnKvOp {
        TxnKvOp {
            verb,
            key: key.into(),
            value: None,
            flags: 0,
            index: 0,
            session: String::new(),
        }
    }
}

/// Node part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnNodeOp {
    /// What to do.
    pub verb: CatalogVerb,
    /// The node; its `ModifyIndex` is the expected index of the CAS verbs.
    #[serde(default)]
    pub node: Node,
}

/// Service part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnServiceOp {
    /// What to do.
    pub verb: CatalogVerb,
    /// Node name.
    #[serde(default)]
    pub node: String,
    /// The service; its `ModifyIndex` is the expected index of the CAS verbs.
    #[serde(default)]
    pub service: Service,
}

/// Check part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnCheckOp {
    /// What to do.
    pub verb: CatalogVerb,
    /// The check, naming its node; its `ModifyIndex` is the expected index of the CAS verbs.
    #[serde(default)]
    pub check: HealthCheck,
}

/// One result of a committed transaction: what a write stored or a read found (KV results
/// other than reads leave the value out, as Consul's do).
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

/// Why a transaction was rolled back: one per failing operation, as Consul lists them.
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

/// A state change. `now_ms` fields are the proposer's wall clock (Unix milliseconds): lock
/// delays are measured against it, so every server applying the entry agrees on whether a
/// lock is still delayed, whatever its own clock says.
// Short-lived wire data: boxing the larger variants would only add allocations.
#[allow(clippy::large_enum_variant)]
// The wire form (type tags, the ignore-unknown flag, commands of unknown types) is written by
// hand in `wire`; the derive there keeps every known command's JSON as version 1 wrote it.
#[derive(Clone, Debug, PartialEq)]
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
    /// Forget KV tombstones up to an index. Proposed by the leader, so every server forgets the
    /// same ones at the same index.
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
    /// An ACL write (tokens, policies, roles, the bootstrap).
    Acl {
        /// What to write.
        op: crate::acl::AclOp,
    },
    /// Does nothing; advances the index. Raft's blank and membership entries apply as this, so
    /// that Raft index N stays catalog index N.
    Noop,
    /// A command with the identity of the request that carries it: applied at most once
    /// whatever the number of copies of it the log holds (a forwarder's retries).
    Request {
        /// The request's identity.
        id: RequestId,
        /// What to apply (never itself a `Request` or a `Batch`).
        cmd: Box<Command>,
    },
    /// A command of a type this version does not know, written by a newer one. Kept as
    /// written, so the log stays whole and can be handed on; applied as a no-op when its
    /// writer allowed servers that do not know it to skip it, otherwise refused (the server
    /// stops applying rather than diverge from those that apply it). Never proposed.
    Unknown(UnknownCommand),
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
    /// The command itself, without the request identity it may travel with: what to look at
    /// when the kind of command matters (a restore is proposed in an entry of its own, with
    /// or without an identity).
    pub fn inner(&self) -> &Command {
        match self {
            Command::Request { cmd, .. } => cmd,
            other => other,
        }
    }

    /// The proposer's clock carried by the command (0 when it carries none). A batch carries
    /// none of its own: each member is applied with its own clock.
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
            | Command::Acl { .. }
            | Command::Batch(_)
            | Command::Noop
            | Command::Unknown(_) => 0,
        }
    }

    /// The stable name of the command's type: its tag on the wire and in the log. Tags never
    /// change meaning and are never reused (see [`KNOWN_TYPES`]).
    pub fn type_tag(&self) -> &str {
        // The derived wire form writes the variant names; the wire tests check that each
        // known type is written under exactly this tag.
        match self {
            Command::Register { .. } => "Register",
            Command::Deregister { .. } => "Deregister",
            Command::Kv { .. } => "Kv",
            Command::SessionCreate { .. } => "SessionCreate",
            Command::SessionDestroy { .. } => "SessionDestroy",
            Command::Txn { .. } => "Txn",
            Command::ReapTombstones { .. } => "ReapTombstones",
            Command::Batch(_) => "Batch",
            Command::Restore { .. } => "Restore",
            Command::RestoreChunk { .. } => "RestoreChunk",
            Command::RestoreFinish { .. } => "RestoreFinish",
            Command::RestoreAbort { .. } => "RestoreAbort",
            Command::CoordinateUpdate { .. } => "CoordinateUpdate",
            Command::AutopilotSet { .. } => "AutopilotSet",
            Command::QuerySet { .. } => "QuerySet",
            Command::QueryDelete { .. } => "QueryDelete",
            Command::Acl { .. } => "Acl",
            Command::Noop => "Noop",
            Command::Request { .. } => "Request",
            Command::Unknown(u) => &u.tag,
        }
    }

    /// Whether a server that does not know this command's type may apply it as a no-op
    /// (Consul's `IgnoreUnknownTypeFlag`) instead of stopping. Written into the entry with the
    /// command, so that an older server can read it without knowing the type.
    ///
    /// Every type so far answers `false`: each is known to every version that reads the flag,
    /// so the flag could only matter to versions that predate it, which refuse anything
    /// unknown. A type added later answers `true` only if older servers skipping it leaves
    /// every read they answer and every later command they apply as right as before (a hint,
    /// a cache, bookkeeping only the newer versions read).
    pub fn ignore_unknown(&self) -> bool {
        // No catch-all: a new command type must decide.
        match self {
            Command::Register { .. }
            | Command::Deregister { .. }
            | Command::Kv { .. }
            | Command::SessionCreate { .. }
            | Command::SessionDestroy { .. }
            | Command::Txn { .. }
            | Command::ReapTombstones { .. }
            | Command::Batch(_)
            | Command::Restore { .. }
            | Command::RestoreChunk { .. }
            | Command::RestoreFinish { .. }
            | Command::RestoreAbort { .. }
            | Command::CoordinateUpdate { .. }
            | Command::AutopilotSet { .. }
            | Command::QuerySet { .. }
            | Command::QueryDelete { .. }
            | Command::Acl { .. }
            | Command::Noop
            | Command::Request { .. } => false,
            Command::Unknown(u) => u.ignore_unknown,
        }
    }

    /// The commands of unknown types this one holds (itself, or members of a batch or a
    /// request), in order.
    pub fn unknown(&self) -> Vec<&UnknownCommand> {
        let mut out = Vec::new();
        self.collect_unknown(&mut out);
        out
    }

    /// Depth first, in the order the members would apply.
    fn collect_unknown<'a>(&'a self, out: &mut Vec<&'a UnknownCommand>) {
        match self {
            Command::Unknown(u) => out.push(u),
            Command::Batch(cmds) => cmds.iter().for_each(|c| c.collect_unknown(out)),
            Command::Request { cmd, .. } => cmd.collect_unknown(out),
            _ => {}
        }
    }

    /// The first command of an unknown type this one holds that may not be skipped: applying
    /// such an entry is refused.
    pub fn refused_unknown(&self) -> Option<&UnknownCommand> {
        self.unknown().into_iter().find(|u| !u.ignore_unknown)
    }

    /// Checks that the command may be proposed: every part of it is of a type this version
    /// knows, and every transaction verb is one of its table's. Proposers call this before
    /// handing a command to Raft; what passes never fails to decode or apply for a reason its
    /// proposer could have seen.
    pub fn validate(&self) -> Result<(), InvalidCommand> {
        match self {
            Command::Unknown(u) => Err(InvalidCommand::UnknownType(u.tag.clone())),
            Command::Batch(cmds) => cmds.iter().try_for_each(Command::validate),
            Command::Request { cmd, .. } => cmd.validate(),
            // The first operation with a bad verb is named, with its position.
            Command::Txn { ops, .. } => {
                for (op_index, op) in ops.iter().enumerate() {
                    if let TxnOp::Unrecognized(u) = op {
                        return Err(InvalidCommand::UnknownVerb {
                            op_index,
                            error: u.error.clone(),
                        });
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Why a command may not be proposed (see [`Command::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    /// A part of it is of a type this version does not know (a newer proposer sent it).
    #[error(
        "command type {0:?} is unknown to this server (sent by a newer version); upgrade the \
         servers first"
    )]
    UnknownType(String),
    /// A transaction operation has a verb its table does not have.
    #[error("{error}")]
    UnknownVerb {
        /// Position of the operation in the transaction.
        op_index: usize,
        /// The verb and its table.
        error: UnknownVerb,
    },
}

/// The result of a successful command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Done, nothing to report.
    Done,
    /// A boolean outcome (KV writes, autopilot's check-and-set): `false` is a condition that
    /// did not hold, not an error.
    Bool(bool),
    /// The results of a [`Command::Batch`], in order: one per member, each member's failure
    /// its own, so every proposer sharing the entry gets the answer to its command.
    Batch(Vec<Result<Response, crate::StoreError>>),
    /// Transaction results or errors. A rolled-back transaction is still a successful command
    /// (its index is consumed, nothing changed): the errors are its answer.
    Txn {
        /// Results, in op order (empty on rollback).
        results: Vec<TxnResult>,
        /// Errors (empty on commit).
        errors: Vec<TxnError>,
    },
}
