//! The service layer's vocabulary, shared by every edge (HTTP, DNS, CLI, RPC) and the server
//! endpoints: typed requests and replies, read options, the index metadata of replies, and the
//! one error type. As Consul's `agent/structs`, nothing here knows HTTP: status codes and
//! Consul's JSON shapes belong to `http`, which maps these types to and from the wire.

pub mod acl;
pub mod decode;
pub mod error;
pub mod options;
pub mod read;
pub mod shapes;
pub mod strict;
pub mod write;

pub use error::Error;
pub use options::{Consistency, Indexed, QueryMeta, ReadOptions};
pub use read::{Query, Read, Reply, Selection};
pub use write::{Token, Write, WriteOp, Written};

/// A service-layer result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// ID of the gossip health check the leader keeps on every node.
///
/// Consul's name, in this module because the server, the agent's anti-entropy (which must not
/// remove it) and the edges all need it, and none of them may depend on another for a name.
pub const SERF_CHECK_ID: &str = "serfHealth";
/// ID and name of the service every server registers.
pub const CONSUL_SERVICE: &str = "consul";
