//! Typed writes: what an edge asks the servers to change. A [`Write`] names the operation with
//! its arguments as the client gave them; the server endpoint on the leader validates them,
//! fills defaults, authorizes the token, stamps the time and builds the replicated command. No
//! edge ever builds a command itself, and the server RPC carries writes, never commands.

use cairn_catalog::command::TxnResult;
use cairn_catalog::command::{DeregisterRequest, RegisterRequest, RequestId, TxnError, TxnOp};
use cairn_catalog::model::{AutopilotConfig, CoordinateEntry, PreparedQuery, ServiceCheckRef};
use serde::{Deserialize, Serialize};

/// An ACL token as a request carries it. Its `Debug` form never shows the secret, so a token
/// cannot leak into logs through a logged request.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Token(none)"
        } else {
            "Token(redacted)"
        })
    }
}

/// A write, with where it goes and on whose behalf.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Write {
    /// What to change.
    pub op: WriteOp,
    /// Target datacenter (`None`: the local one).
    pub dc: Option<String>,
    /// The caller's token (`None`: the agent's default).
    pub token: Option<Token>,
    /// The write's identity, given by the first agent that handles it and kept by every
    /// retry, so that it is applied once (see `cairn_catalog::store::clients`).
    pub id: Option<RequestId>,
}

impl Write {
    /// A write of `op` to the local datacenter with no token.
    pub fn new(op: WriteOp) -> Write {
        Write {
            op,
            dc: None,
            token: None,
            id: None,
        }
    }

    /// The same write for datacenter `dc` (`None` or empty: the local one).
    pub fn in_dc(mut self, dc: Option<&str>) -> Write {
        self.dc = dc.filter(|d| !d.is_empty()).map(str::to_string);
        self
    }

    /// The same write on behalf of `token`.
    pub fn with_token(mut self, token: Option<Token>) -> Write {
        self.token = token;
        self
    }
}

/// How a KV write treats the key's current state.
///
/// One value of the four mutually exclusive query parameters (`?cas`, `?acquire`, `?release`,
/// none); the HTTP edge refuses a request that gives more than one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvSetMode {
    /// Write unconditionally.
    Set,
    /// Write only if the key's ModifyIndex is this (0: only if the key does not exist).
    Cas(u64),
    /// Write and take the key's lock for this session.
    Acquire(String),
    /// Write and release the key's lock held by this session.
    Release(String),
}

/// How a KV delete selects what it removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvDeleteMode {
    /// The key alone.
    Key,
    /// The key, only if its ModifyIndex is this.
    Cas(u64),
    /// Every key under the prefix.
    Tree,
}

/// A session as `PUT /v1/session/create` describes it, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Human name.
    pub name: String,
    /// Node the session belongs to (empty: the node of the agent that received the request).
    pub node: String,
    /// Lock delay (already parsed; the endpoint checks the bound).
    /// (`None`: Consul's 15 s default, applied by the endpoint.)
    pub lock_delay_ns: Option<u64>,
    /// `release` (default) or `delete`.
    pub behavior: String,
    /// TTL as a Go duration (empty: none).
    pub ttl: String,
    /// Node checks (`None`: the default `serfHealth`).
    pub node_checks: Option<Vec<String>>,
    /// Service checks.
    pub service_checks: Vec<ServiceCheckRef>,
}

/// One operation of a write.
// Short-lived request data: boxing the larger variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WriteOp {
    /// `PUT /v1/catalog/register` (and anti-entropy).
    Register(RegisterRequest),
    /// `PUT /v1/catalog/deregister` (and anti-entropy).
    Deregister(DeregisterRequest),
    /// `PUT /v1/kv/:key`.
    KvSet {
        /// Key.
        key: String,
        /// Value (`None`: empty; base64 on the wire).
        #[serde(with = "cairn_catalog::model::b64_opt")]
        value: Option<Vec<u8>>,
        /// Client flags.
        flags: u64,
        /// Condition or lock operation.
        mode: KvSetMode,
    },
    /// `DELETE /v1/kv/:key`.
    KvDelete {
        /// Key or prefix.
        key: String,
        /// What to delete.
        mode: KvDeleteMode,
    },
    /// `PUT /v1/session/create`.
    SessionCreate(SessionSpec),
    /// `PUT /v1/session/destroy/:id`.
    SessionDestroy {
        /// Session ID.
        id: String,
    },
    /// `PUT /v1/txn` with at least one write.
    Txn {
        /// The operations.
        ops: Vec<TxnOp>,
    },
    /// `PUT /v1/coordinate/update`.
    CoordinateUpdate {
        /// The node's coordinate.
        entry: CoordinateEntry,
    },
    /// `PUT /v1/operator/autopilot/configuration`.
    AutopilotSet {
        /// The settings.
        config: AutopilotConfig,
        /// Check-and-set index.
        cas: Option<u64>,
    },
    /// `POST /v1/query` (answers the new ID).
    QueryCreate {
        /// The definition (its ID is chosen by the endpoint).
        query: PreparedQuery,
    },
    /// `PUT /v1/query/:id`.
    QueryUpdate {
        /// The definition, with the ID of the query it replaces.
        query: PreparedQuery,
    },
    /// `DELETE /v1/query/:id`.
    QueryDelete {
        /// Query ID.
        id: String,
    },
    /// `PUT /v1/snapshot` of an archive small enough for one entry.
    Restore {
        /// The archive (base64 on the wire).
        #[serde(with = "cairn_catalog::command::b64_vec")]
        data: Vec<u8>,
    },
    /// One piece of a larger archive.
    RestorePiece {
        /// Identifies the restore.
        restore: String,
        /// Where the piece goes.
        offset: u64,
        /// The bytes (base64 on the wire).
        #[serde(with = "cairn_catalog::command::b64_vec")]
        data: Vec<u8>,
    },
    /// Swaps in the pieces received for a restore.
    RestoreFinish {
        /// Identifies the restore.
        restore: String,
        /// The archive's length.
        len: u64,
    },
    /// Drops the pieces of a restore that failed half way.
    RestoreAbort {
        /// Identifies the restore.
        restore: String,
    },
    /// `PUT /v1/acl/bootstrap`.
    AclBootstrap {
        /// `BootstrapSecret`: the secret to give the management token (generated when absent).
        secret: Option<Token>,
    },
    /// `PUT /v1/acl/token` (create) and `PUT /v1/acl/token/:accessor` (update).
    AclTokenSet {
        /// The token as sent.
        spec: crate::api::acl::TokenSpec,
        /// The accessor of the path (update).
        accessor: Option<String>,
    },
    /// `PUT /v1/acl/token/:accessor/clone`.
    AclTokenClone {
        /// The token to clone.
        accessor: String,
        /// The clone's description (empty: the original's).
        description: String,
    },
    /// `DELETE /v1/acl/token/:accessor`.
    AclTokenDelete {
        /// Accessor ID.
        accessor: String,
    },
    /// `PUT /v1/acl/policy` (create) and `PUT /v1/acl/policy/:id` (update).
    AclPolicySet {
        /// The policy as sent.
        spec: crate::api::acl::PolicySpec,
        /// The ID of the path (update).
        id: Option<String>,
    },
    /// `DELETE /v1/acl/policy/:id`.
    AclPolicyDelete {
        /// Policy ID.
        id: String,
    },
    /// `PUT /v1/acl/role` (create) and `PUT /v1/acl/role/:id` (update).
    AclRoleSet {
        /// The role as sent.
        spec: crate::api::acl::RoleSpec,
        /// The ID of the path (update).
        id: Option<String>,
    },
    /// `DELETE /v1/acl/role/:id`.
    AclRoleDelete {
        /// Role ID.
        id: String,
    },
}

/// What a write answers.
///
/// The few shapes every endpoint's answer fits in: the HTTP edge renders each as Consul does
/// (`true`/`false`, `{"ID": ...}`, a transaction's results).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Written {
    /// Done, nothing to report.
    Done,
    /// A conditional write's outcome (KV writes, autopilot with `cas`).
    Bool(bool),
    /// The ID of what was created (sessions, prepared queries).
    Id(String),
    /// A transaction's outcome: results on commit, errors on rollback.
    Txn {
        /// Results, in operation order (empty on rollback).
        results: Vec<TxnResult>,
        /// Why it rolled back (empty on commit).
        errors: Vec<TxnError>,
    },
    /// A token as stored after the write.
    AclToken(Box<cairn_catalog::acl::AclToken>),
    /// A policy as stored after the write.
    AclPolicy(Box<cairn_catalog::acl::AclPolicy>),
    /// A role as stored after the write.
    AclRole(Box<cairn_catalog::acl::AclRole>),
}
