//! The records the catalog holds, with Consul's JSON names and casing.
//!
//! These types are both the stored form and the wire form of the HTTP API: field names follow
//! Consul exactly (`ServiceName`, `CheckID`, `CreateIndex`, ...). Request bodies are decoded into
//! them after the agent has normalised key casing.
//!
//! Every struct is `#[serde(default)]`: Consul clients leave fields out freely, and a record
//! written by an older version (without a field added since) must still read back from the
//! Raft log and from snapshots.
//!
//! `CreateIndex` and `ModifyIndex` are the log indexes of the commands that created and last
//! changed a record. The store sets them whatever a request carried, so they are the same on
//! every server. Stored records are shared (`Arc`) between versions of the state, so they are
//! never changed in place: a change stores a new record.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_go;

/// A map of free-form string metadata (node meta, service meta).
pub type Meta = BTreeMap<String, String>;

/// Health of a check, as Consul spells it. Ordered from best to worst, so the health of
/// anything made of several checks is [`HealthStatus::worst`] of theirs.
///
/// The order is the derived `Ord`, that is the order of the variants: reordering them would
/// change every aggregate health answer.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The check succeeds.
    Passing,
    /// The check reports a problem that does not take the instance out of service.
    Warning,
    /// The check fails; the instance is not healthy. Consul's default for new checks.
    #[default]
    Critical,
}

impl HealthStatus {
    /// The status as Consul spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
        }
    }

    /// The worst of `statuses` (critical, then warning, then passing); passing when there are
    /// none, as an instance without checks is healthy. The one aggregation of check statuses
    /// everywhere (health endpoints, DNS, prepared queries, alias checks).
    pub fn worst(statuses: impl IntoIterator<Item = HealthStatus>) -> HealthStatus {
        statuses.into_iter().max().unwrap_or(HealthStatus::Passing)
    }

    /// Whether an instance whose aggregate health is this is served (DNS, prepared queries):
    /// never when critical, and not when warning if only passing instances are wanted.
    pub fn serves(self, only_passing: bool) -> bool {
        match self {
            HealthStatus::Passing => true,
            HealthStatus::Warning => !only_passing,
            HealthStatus::Critical => false,
        }
    }

    /// Parses `passing`, `warning` or `critical` (exact, lowercase, as Consul does).
    pub fn parse(s: &str) -> Option<HealthStatus> {
        match s {
            "passing" => Some(HealthStatus::Passing),
            "warning" => Some(HealthStatus::Warning),
            "critical" => Some(HealthStatus::Critical),
            _ => None,
        }
    }
}

/// A node in the catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    /// Node UUID, or empty when the registration gave none. The store keeps it lowercase, so
    /// one UUID written in two casings is one ID, and refuses a different ID for a node that
    /// already has one.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name, unique in a datacenter: the key of the node table.
    pub node: String,
    /// Address other nodes and clients use.
    pub address: String,
    /// Datacenter the node belongs to.
    pub datacenter: String,
    /// Extra addresses by tag (`lan`, `wan`, ...): plain strings at node level.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub meta: Meta,
    /// Index at which the node was created.
    pub create_index: u64,
    /// Index of the last change to the node record.
    pub modify_index: u64,
}

/// Weights used for DNS SRV answers.
///
/// Without `#[serde(default)]`: a `Weights` object must carry both fields, while a service
/// without `Weights` at all gets [`Weights::default`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight when all checks are passing.
    pub passing: u32,
    /// Weight when a check is warning.
    pub warning: u32,
}

/// Consul's weights for a registration that sets none: 1 and 1, so passing and warning
/// instances are picked equally often.
impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// An address and port for a service's tagged address (`lan`, `wan`, ...). A service's tagged
/// addresses carry a port, a node's are plain strings: the two shapes of Consul's API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceAddress {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// A service instance registered on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    /// Service kind: empty for a typical service, or `connect-proxy`, `mesh-gateway`, ...
    pub kind: String,
    /// Instance ID, unique on its node; a registration without one gets the service name, as
    /// in Consul (one unnamed instance per service and node).
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name: what DNS and the health endpoints look instances up by.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Service address; empty means "use the node's address".
    pub address: String,
    /// Extra addresses by tag.
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Service metadata.
    pub meta: Meta,
    /// Port.
    pub port: u16,
    /// DNS SRV weights.
    pub weights: Weights,
    /// Whether tags may be changed in the catalog without the agent reverting them.
    pub enable_tag_override: bool,
    /// Index at which the instance was created.
    pub create_index: u64,
    /// Index of the last change to the instance.
    pub modify_index: u64,
}

/// The type-specific part of a check as the catalog records it.
///
/// The catalog only stores it: checks run on their agent, which reads its own definition.
/// Durations travel as Go duration strings (`"10s"`), as Consul writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckDefinition {
    /// HTTP URL probed.
    #[serde(rename = "HTTP")]
    pub http: String,
    /// HTTP headers sent.
    pub header: BTreeMap<String, Vec<String>>,
    /// HTTP method.
    pub method: String,
    /// HTTP body.
    pub body: String,
    /// TLS server name for HTTP and gRPC checks.
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    /// Skip TLS verification.
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    /// TCP address probed.
    #[serde(rename = "TCP")]
    pub tcp: String,
    /// Use TLS for a TCP check.
    #[serde(rename = "TCPUseTLS")]
    pub tcp_use_tls: bool,
    /// UDP address probed.
    #[serde(rename = "UDP")]
    pub udp: String,
    /// gRPC endpoint probed.
    #[serde(rename = "GRPC")]
    pub grpc: String,
    /// Use TLS for a gRPC check.
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    /// Run interval.
    #[serde(with = "serde_go")]
    pub interval: Duration,
    /// Run timeout.
    #[serde(with = "serde_go")]
    pub timeout: Duration,
    /// Deregister the service after it stayed critical this long.
    #[serde(with = "serde_go")]
    pub deregister_critical_service_after: Duration,
}

/// A health check, bound to a node and optionally to one service instance on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    /// Node the check belongs to.
    pub node: String,
    /// Check ID, unique on its node; a registration without one gets the check's name.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Display name.
    pub name: String,
    /// Current status.
    pub status: HealthStatus,
    /// Human notes.
    pub notes: String,
    /// Output of the last run.
    pub output: String,
    /// Service instance the check is bound to; empty for a node-level check.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Name of that service, filled by the catalog as in Consul's check records: copied from
    /// the instance when the check is written, and rewritten when the instance changes name or
    /// tags, so a check read alone (`/v1/health/state`, `?filter`) names its service.
    pub service_name: String,
    /// Tags of that service (filled by the catalog, kept current like `service_name`).
    pub service_tags: Vec<String>,
    /// Check type (`http`, `tcp`, `ttl`, `script`, ...; empty when unknown).
    #[serde(rename = "Type")]
    pub check_type: String,
    /// Run interval.
    #[serde(with = "serde_go")]
    pub interval: Duration,
    /// Run timeout.
    #[serde(with = "serde_go")]
    pub timeout: Duration,
    /// Port exposed through a proxy (0 when none).
    pub exposed_port: u16,
    /// Type-specific definition.
    pub definition: CheckDefinition,
    /// Index at which the check was created.
    pub create_index: u64,
    /// Index of the last change to the check.
    pub modify_index: u64,
}

/// A key/value entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct KvEntry {
    /// Number of times the key was acquired by a session. It moves only when the holder
    /// changes: a session that takes a lock it already holds does not count again.
    pub lock_index: u64,
    /// The key.
    pub key: String,
    /// Opaque client flags, stored and returned untouched.
    pub flags: u64,
    /// The value; `null` when empty. The store keeps an empty value as `None`, so a key put
    /// with an empty body answers `null`, as Consul's does.
    #[serde(with = "b64_opt")]
    pub value: Option<Vec<u8>>,
    /// Session holding the lock, if any; left out of the JSON when none holds it, as Consul
    /// leaves out an empty `Session`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Index at which the key was created.
    pub create_index: u64,
    /// Index of the last change to the key.
    pub modify_index: u64,
}

/// What happens to a session's locks when it is invalidated (destroyed, its node removed, or
/// one of its checks critical or gone). `release` is Consul's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionBehavior {
    /// Locks are released; the keys stay.
    #[default]
    Release,
    /// Keys held are deleted.
    Delete,
}

/// A service check a session is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheckRef {
    /// Check ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Namespace (Enterprise; kept for compatibility).
    pub namespace: String,
}

/// A session: the liveness handle behind KV locks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Session {
    /// Session UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Node the session is bound to.
    pub node: String,
    /// Lock delay in nanoseconds: Consul shows it as Go's JSON of a `time.Duration`, a number of
    /// nanoseconds, not as a duration string. When the session is invalidated, the keys it held
    /// cannot be locked again for this long.
    pub lock_delay: u64,
    /// What happens to held locks on invalidation.
    pub behavior: SessionBehavior,
    /// TTL as given (Go duration), empty when none. Kept as text, as Consul shows it; the
    /// store never reads it (expiring sessions is the leader's job, by command).
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// Node checks the session is bound to: the session is invalidated when one of them turns
    /// critical or is removed, and cannot be created while one is critical.
    pub node_checks: Vec<String>,
    /// Service checks the session is bound to, with the same effect as `node_checks`.
    pub service_checks: Vec<ServiceCheckRef>,
    /// Index at which the session was created.
    pub create_index: u64,
    /// Index of the last change to the session.
    pub modify_index: u64,
}

/// Base64 for `Option<Vec<u8>>`, `null` for `None`: how Go's `encoding/json` writes a
/// `[]byte`, and so how Consul's KV values travel.
pub mod b64_opt {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes bytes as standard base64, or `null`.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes standard base64 or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        match raw {
            None => Ok(None),
            Some(s) => STANDARD
                .decode(s.as_bytes())
                .map(Some)
                .map_err(D::Error::custom),
        }
    }
}

/// A network coordinate (Serf's Vivaldi model), in Consul's JSON shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Coordinate {
    /// The Euclidean part (8 dimensions in Consul).
    pub vec: Vec<f64>,
    /// Confidence in the estimate.
    pub error: f64,
    /// Local adjustment.
    pub adjustment: f64,
    /// Height (access-link latency).
    pub height: f64,
}

impl Coordinate {
    /// Whether every component is a finite number (NaN or infinite values are refused).
    ///
    /// Beyond being meaningless, a non-finite value would break snapshots: JSON has no NaN, so
    /// it would be written as `null` and the snapshot would no longer read back.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|v| v.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }
}

/// A node's coordinate in a network segment (`/v1/coordinate/nodes`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CoordinateEntry {
    /// Node name.
    pub node: String,
    /// Network segment ("" for the default one).
    pub segment: String,
    /// The coordinate.
    pub coord: Coordinate,
}

/// Autopilot's settings as `/v1/operator/autopilot/configuration` shows them; kept in the
/// replicated state so operators can change them at run time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AutopilotConfig {
    /// Remove dead servers when a replacement joins.
    pub cleanup_dead_servers: bool,
    /// Go duration: longest time a healthy server may go without leader contact.
    pub last_contact_threshold: String,
    /// Most log entries a healthy server may lag behind.
    pub max_trailing_logs: u64,
    /// Fewest servers autopilot keeps when pruning dead ones.
    pub min_quorum: u32,
    /// Go duration: how long a server must be stable before it is promoted.
    pub server_stabilization_time: String,
    /// Enterprise; kept for compatibility.
    pub redundancy_zone_tag: String,
    /// Enterprise; kept for compatibility.
    pub disable_upgrade_migration: bool,
    /// Enterprise; kept for compatibility.
    pub upgrade_version_tag: String,
    /// Index of the first write.
    pub create_index: u64,
    /// Index of the last write: what a check-and-set (`?cas=`) compares against.
    pub modify_index: u64,
}

/// A prepared query (`/v1/query`): a stored service lookup, executed by name or ID.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PreparedQuery {
    /// Query UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Name (unique; a template's name is a prefix).
    pub name: String,
    /// Session whose invalidation deletes the query (empty: none); it must exist when the
    /// query is written.
    pub session: String,
    /// Token (ACLs; kept, not checked): stored so that a query reads back as it was written.
    pub token: String,
    /// Template settings.
    pub template: QueryTemplate,
    /// The lookup.
    pub service: QueryService,
    /// DNS settings.
    #[serde(rename = "DNS")]
    pub dns: QueryDns,
    /// Index of the creation.
    pub create_index: u64,
    /// Index of the last change.
    pub modify_index: u64,
}

/// A prepared query's template settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryTemplate {
    /// `""` (not a template) or `name_prefix_match`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Regular expression matched against the full name (`${match(N)}`).
    pub regexp: String,
    /// Drop tags that interpolate to empty strings.
    pub remove_empty_tags: bool,
}

/// What a prepared query looks up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryService {
    /// Service name (may hold template variables).
    pub service: String,
    /// Other datacenters to try when no instance is healthy here.
    pub failover: QueryFailover,
    /// Checks that do not count for health (a check known to flap, say).
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: Vec<String>,
    /// Only instances whose checks all pass (else warning counts as healthy).
    pub only_passing: bool,
    /// Sort by distance to this node (`_agent`: the executing agent).
    pub near: String,
    /// Required tags; `!tag` excludes.
    pub tags: Vec<String>,
    /// Required node meta.
    pub node_meta: std::collections::BTreeMap<String, String>,
    /// Required service meta.
    pub service_meta: std::collections::BTreeMap<String, String>,
    /// Connect settings (kept).
    pub connect: QueryConnect,
    /// Cluster peer (kept).
    pub peer: String,
    /// Namespace (Enterprise; kept).
    pub namespace: String,
}

/// Failover settings: `NearestN` first (by network distance), then the listed datacenters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryFailover {
    /// Try the N nearest datacenters. Signed as Consul's field is, so a negative value reads
    /// back and is refused by the server's checks rather than by the decoder.
    #[serde(rename = "NearestN")]
    pub nearest_n: i64,
    /// Try these datacenters, in order.
    pub datacenters: Vec<String>,
}

/// Connect setting of a prepared query: only Connect-capable instances.
///
/// On the wire it is Consul's `"Connect": true|false`. Entries written before this matched
/// Consul carry `{"Enabled": bool}`, so both forms decode (logs and snapshots stay readable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryConnect {
    /// Only Connect-capable instances.
    pub enabled: bool,
}

impl Serialize for QueryConnect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.enabled)
    }
}

impl<'de> Deserialize<'de> for QueryConnect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The two accepted shapes.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Flag(bool),
            Legacy {
                #[serde(rename = "Enabled", default)]
                enabled: bool,
            },
        }
        Ok(match Shape::deserialize(d)? {
            Shape::Flag(enabled) | Shape::Legacy { enabled } => QueryConnect { enabled },
        })
    }
}

/// DNS settings of a prepared query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct QueryDns {
    /// TTL of DNS answers (Go duration).
    #[serde(rename = "TTL")]
    pub ttl: String,
}
