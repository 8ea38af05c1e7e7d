//! The service layer's errors. Callers decide on variants (forward to the leader, try another
//! server, give up), never on message text; only the HTTP edge turns them into Consul's
//! statuses and texts.

use cairn_catalog::StoreError;
use serde::{Deserialize, Serialize};

/// Consul's message when no leader is known.
pub const NO_LEADER: &str = "No cluster leader";
/// Consul's message from a leader that has not yet committed an entry of its own term.
pub const NOT_READY: &str = "Not ready to serve consistent reads";
/// Consul's message when a client agent knows no server.
pub const NO_SERVERS: &str = "No known Consul servers";
/// Consul's message for a datacenter no server knows a route to (`structs.ErrNoDCPath`).
pub const NO_DC_PATH: &str = "No path to datacenter";
/// Consul's text when a known datacenter has no server that answers.
pub const NO_REMOTE_SERVER: &str = "Remote DC has no server currently reachable";

/// Why a service-layer operation failed.
///
/// Serializable: errors cross the server RPC typed, so a forwarder decides on the variant the
/// answering server chose, and a client agent's edge renders it as if it were local.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    /// No leader is known (an election is under way or a quorum is lost).
    #[error("{NO_LEADER}")]
    NoLeader,
    /// This server is not the leader; the leader's server RPC address, when known. Callers
    /// forward to it; it reaches a user only through a bug.
    #[error("not the leader; leader is {}", leader.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The leader's server RPC address.
        leader: Option<String>,
    },
    /// This server leads but has not committed an entry of its own term, so its state may
    /// miss acknowledged writes.
    #[error("{NOT_READY}")]
    NotReady,
    /// A client agent knows no server of its datacenter.
    #[error("{NO_SERVERS}")]
    NoServers,
    /// The request is malformed or breaks a rule; the text says which (Consul's wording).
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request's token may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A payload over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// No server knows a route to this datacenter.
    #[error("{NO_DC_PATH}")]
    NoPathToDatacenter(String),
    /// The datacenter is known but none of its servers answered (the server that tried them
    /// all reports it; not transient for the client agent that asked, which would only get the
    /// same answer from another of its servers).
    #[error("{NO_REMOTE_SERVER}")]
    NoRemoteServer(String),
    /// A server could not be reached or did not answer in time; another may.
    ///
    /// The only variant that sends a client agent's call on to another server of its pool: any
    /// other error is the answer of a server that was reached (which already waited for a
    /// leader where waiting helps).
    #[error("{0}")]
    Unavailable(String),
    /// The server role stopped for good (its Raft node failed): it serves nothing more.
    #[error("server stopped: {0}")]
    Fatal(String),
    /// A refusal that Consul answers as a plain RPC error (500 with its text): most ACL
    /// validation errors ("Invalid Policy: ...", "No such ACL policy ...").
    #[error("{0}")]
    Failed(String),
    /// Anything else: a state that should not happen.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Whether the same request may succeed on another server or after an election: the
    /// errors that make a forwarder wait and retry rather than answer.
    ///
    /// `Unavailable` counts even for writes, whose outcome is then unknown (the reply may have been
    /// lost after the commit): a retry is safe because the write keeps its identity.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::NoLeader | Error::NotLeader { .. } | Error::NotReady | Error::Unavailable(_)
        )
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            // The state machine's refusals are the request's fault; Consul answers its RPC
            // errors with 400 whether a referenced object is missing or the request is wrong.
            StoreError::Invalid(m) | StoreError::NotFound(m) => Error::Invalid(m),
            // An index going back means the state machine and the log disagree: nothing this server
            // answers can be trusted any more.
            StoreError::IndexRegression { .. } => Error::Fatal(e.to_string()),
            // A command this server cannot apply (written by a newer version): not the
            // request's fault, and the state machine stops on it.
            StoreError::UnknownCommand(_) => Error::Internal(e.to_string()),
            StoreError::Denied(m) => Error::PermissionDenied(m),
        }
    }
}

impl From<cairn_catalog::command::InvalidCommand> for Error {
    /// A command refused before it was proposed: a bad transaction verb is the client's
    /// mistake; a command type this server does not know means the servers need an upgrade.
    fn from(e: cairn_catalog::command::InvalidCommand) -> Error {
        use cairn_catalog::command::InvalidCommand;
        match e {
            InvalidCommand::UnknownVerb { .. } => Error::Invalid(e.to_string()),
            InvalidCommand::UnknownType(_) => Error::Internal(e.to_string()),
        }
    }
}
