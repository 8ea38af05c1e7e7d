//! Typed reads of the replicated state: what an edge asks ([`Read`], with its [`Selection`]
//! of tags, node metadata and filter) and what it gets back ([`Reply`]). Both are plain data,
//! so a client agent forwards a read to a server and gets the typed reply back unchanged; the
//! HTTP edge renders replies in Consul's shapes (see [`super::shapes`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_catalog::command::{TxnError, TxnResult};
use cairn_catalog::model::{
    AutopilotConfig, CoordinateEntry, HealthCheck, HealthStatus, KvEntry, Node, PreparedQuery,
    QueryDns, Service, Session,
};
use cairn_catalog::store::{CheckServiceNode, ServiceNode};
use serde::{Deserialize, Serialize};

/// A read of the replicated state.
///
/// Its JSON form is also the key of the server's shared answers: two requests share an answer only
/// when every field, filters included, is the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Read {
    /// `/v1/catalog/nodes`.
    CatalogNodes(Selection),
    /// `/v1/catalog/services`.
    CatalogServices(Selection),
    /// `/v1/catalog/service/:name`.
    CatalogService {
        /// Service name.
        name: String,
        /// Filters.
        sel: Selection,
    },
    /// `/v1/catalog/node/:node`.
    CatalogNode {
        /// Node name.
        node: String,
        /// Filters.
        sel: Selection,
    },
    /// `/v1/catalog/node-services/:node`.
    CatalogNodeServices {
        /// Node name.
        node: String,
        /// Filters.
        sel: Selection,
    },
    /// `/v1/health/node/:node`.
    HealthNode {
        /// Node name.
        node: String,
        /// Filters.
        sel: Selection,
    },
    /// `/v1/health/checks/:service`.
    HealthChecks {
        /// Service name.
        name: String,
        /// Filters.
        sel: Selection,
    },
    /// `/v1/health/service/:service`.
    HealthService {
        /// Service name.
        name: String,
        /// Only instances whose checks all pass.
        passing: bool,
        /// Filters.
        sel: Selection,
    },
    /// `/v1/health/state/:state` (`None`: any).
    HealthState {
        /// State wanted.
        state: Option<HealthStatus>,
        /// Filters.
        sel: Selection,
    },
    /// `GET /v1/kv/:key`.
    KvGet {
        /// Key.
        key: String,
    },
    /// `GET /v1/kv/:prefix?recurse`.
    KvList {
        /// Prefix.
        prefix: String,
    },
    /// `GET /v1/kv/:prefix?keys`.
    KvKeys {
        /// Prefix.
        prefix: String,
        /// Separator grouping keys (empty: none).
        separator: String,
    },
    /// `/v1/session/info/:id`.
    SessionInfo {
        /// Session ID.
        id: String,
    },
    /// `/v1/session/list`.
    SessionList,
    /// `/v1/session/node/:node`.
    SessionNode {
        /// Node name.
        node: String,
    },
    /// A read-only `/v1/txn`: evaluated on a private copy of the state, nothing written.
    Txn {
        /// The (read-only) operations.
        ops: Vec<cairn_catalog::command::TxnOp>,
    },
    /// The whole state as a snapshot (`GET /v1/snapshot`), base64 in a JSON string.
    Snapshot,
    /// One node with its services and checks (the agent's anti-entropy view).
    NodeView {
        /// Node name.
        node: String,
    },
    /// `/v1/operator/usage`: counts of services, instances and nodes.
    Usage,
    /// `GET /v1/query` (every prepared query) and `GET /v1/query/:id` (one, 404 when unknown).
    Queries {
        /// One query only.
        id: Option<String>,
    },
    /// `/v1/query/:id-or-name/execute`: the healthy instances a prepared query selects.
    QueryExecute {
        /// ID or name (templates match by prefix).
        key: String,
        /// Most instances to return (0: all).
        limit: usize,
        /// This datacenter's name.
        dc: String,
    },
    /// A prepared query's definition run here on behalf of another datacenter (failover): the
    /// definition travels with the read, since this datacenter does not store it.
    QueryRun {
        /// The definition, already resolved and rendered where it is stored.
        query: Box<cairn_catalog::model::PreparedQuery>,
        /// Most instances to return (0: all).
        limit: usize,
        /// This (the answering) datacenter's name.
        dc: String,
    },
    /// `/v1/query/:id-or-name/explain`: the query as resolved and rendered for the name.
    QueryExplain {
        /// ID or name.
        key: String,
    },
    /// `/v1/operator/autopilot/configuration`: the replicated settings (`null` when unset).
    Autopilot,
    /// `/v1/coordinate/nodes` (every node) and `/v1/coordinate/node/:node`.
    Coordinates {
        /// One node only.
        node: Option<String>,
    },
    /// `GET /v1/acl/token/:accessor`.
    AclToken {
        /// Accessor ID.
        accessor: String,
    },
    /// `GET /v1/acl/token/self`: the token of the request.
    AclTokenSelf,
    /// `GET /v1/acl/tokens`.
    AclTokens(crate::api::acl::TokenFilter),
    /// `GET /v1/acl/policy/:id` or `/v1/acl/policy/name/:name`.
    AclPolicy {
        /// By ID.
        id: Option<String>,
        /// By name.
        name: Option<String>,
    },
    /// `GET /v1/acl/policies`.
    AclPolicies,
    /// `GET /v1/acl/role/:id` or `/v1/acl/role/name/:name`.
    AclRole {
        /// By ID.
        id: Option<String>,
        /// By name.
        name: Option<String>,
    },
    /// `GET /v1/acl/roles`.
    AclRoles {
        /// Only roles linking this policy ID.
        policy: Option<String>,
    },
}

/// Filters common to catalog and health reads.
///
/// Part of the read rather than applied by the edge, so the server filters before the answer is
/// shared or forwarded and a client agent never receives what it would throw away.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// `?filter` expression.
    pub filter: Option<String>,
    /// `?tag` values (all must match, case-insensitively).
    pub tags: Vec<String>,
    /// `?node-meta` pairs (all must match).
    pub node_meta: Vec<(String, String)>,
    /// Datacenter to report on nodes without one.
    /// Filled by the edge with the local datacenter's name: shown on nodes stored without one,
    /// where filters may select on it.
    pub dc: String,
}

/// A read with how to run it, where, and on whose behalf: what every read endpoint takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// What to read.
    pub read: Read,
    /// Blocking, consistency, filter.
    pub opts: crate::api::ReadOptions,
    /// Target datacenter (`None`: the local one).
    pub dc: Option<String>,
    /// The caller's token (`None`: the agent's default).
    pub token: Option<crate::api::Token>,
}

impl Query {
    /// `read` in the local datacenter with no token.
    pub fn new(read: Read, opts: crate::api::ReadOptions) -> Query {
        Query {
            read,
            opts,
            dc: None,
            token: None,
        }
    }
}

/// A node with its services (`/v1/catalog/node/:node`, `/v1/catalog/node-services/:node`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeServices {
    /// The node.
    pub node: Arc<Node>,
    /// Its service instances.
    pub services: Vec<Arc<Service>>,
}

/// What the catalog holds for one node: the anti-entropy and alias-check view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// The node record, if registered.
    pub node: Option<Arc<Node>>,
    /// Its service instances.
    pub services: Vec<Arc<Service>>,
    /// Its checks, node-level and service-level.
    pub checks: Vec<Arc<HealthCheck>>,
}

/// Counts of `/v1/operator/usage`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Distinct service names.
    pub services: u64,
    /// Service instances.
    pub service_instances: u64,
    /// Instances per Connect kind.
    pub connect_instances: BTreeMap<String, u64>,
    /// Instances that are not Connect proxies or gateways, nor the servers' `consul` service.
    pub billable_instances: u64,
    /// Nodes.
    pub nodes: u64,
}

/// The outcome of a prepared query's execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// The service the query selected.
    pub service: String,
    /// Healthy instances, shuffled, up to the limit.
    pub nodes: Vec<CheckServiceNode>,
    /// DNS settings of the query.
    pub dns: QueryDns,
    /// Datacenter that answered.
    pub datacenter: String,
    /// Datacenters tried after the local one.
    pub failovers: u32,
}

/// A transaction's outcome: results on commit, errors on rollback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Results in operation order (empty on rollback).
    pub results: Vec<TxnResult>,
    /// Why it rolled back (empty on commit).
    pub errors: Vec<TxnError>,
}

/// The typed answer of a [`Read`]; each read answers one variant.
// Short-lived reply data: boxing the larger variants would only add allocations.
///
/// Records are `Arc`s shared with the state view they came from: building or cloning a reply copies
/// pointers, not records.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Nodes (`CatalogNodes`).
    Nodes(Vec<Arc<Node>>),
    /// Service names with their tags (`CatalogServices`).
    ServiceTags(BTreeMap<String, Vec<String>>),
    /// Instances with their nodes (`CatalogService`).
    ServiceNodes(Vec<ServiceNode>),
    /// A node and its services (`CatalogNode`, `CatalogNodeServices`); `None`: no such node.
    NodeServices(Option<NodeServices>),
    /// Checks (`HealthNode`, `HealthChecks`, `HealthState`).
    Checks(Vec<Arc<HealthCheck>>),
    /// Instances with their nodes and checks (`HealthService`).
    ServiceHealth(Vec<CheckServiceNode>),
    /// One key (`KvGet`); `None`: no such key.
    Kv(Option<Arc<KvEntry>>),
    /// Keys under a prefix (`KvList`).
    KvList(Vec<Arc<KvEntry>>),
    /// Key names under a prefix (`KvKeys`).
    KvKeys(Vec<String>),
    /// Sessions (`SessionInfo`, `SessionList`, `SessionNode`).
    Sessions(Vec<Arc<Session>>),
    /// A read-only transaction's outcome (`Txn`).
    Txn(TxnOutcome),
    /// An operator archive (`Snapshot`).
    Snapshot(#[serde(with = "cairn_catalog::command::b64_vec")] Vec<u8>),
    /// One node as the catalog holds it (`NodeView`).
    NodeView(NodeView),
    /// Counts (`Usage`).
    Usage(Usage),
    /// Prepared queries (`Queries`).
    Queries(Vec<Arc<PreparedQuery>>),
    /// A prepared query's execution (`QueryExecute`).
    QueryResult(QueryResult),
    /// A prepared query as resolved for a name (`QueryExplain`).
    QueryExplain(PreparedQuery),
    /// Autopilot's replicated settings; `None` until written (`Autopilot`).
    Autopilot(Option<Arc<AutopilotConfig>>),
    /// Network coordinates (`Coordinates`).
    Coordinates(Vec<CoordinateEntry>),
    /// ACL tokens (`AclToken`, `AclTokenSelf`: one; `AclTokens`).
    AclTokens(Vec<Arc<cairn_catalog::acl::AclToken>>),
    /// ACL policies (`AclPolicy`: one; `AclPolicies`).
    AclPolicies(Vec<Arc<cairn_catalog::acl::AclPolicy>>),
    /// ACL roles (`AclRole`: one; `AclRoles`).
    AclRoles(Vec<Arc<cairn_catalog::acl::AclRole>>),
}

impl Reply {
    /// The name of the variant, for errors about an unexpected reply.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Nodes(_) => "Nodes",
            Reply::ServiceTags(_) => "ServiceTags",
            Reply::ServiceNodes(_) => "ServiceNodes",
            Reply::NodeServices(_) => "NodeServices",
            Reply::Checks(_) => "Checks",
            Reply::ServiceHealth(_) => "ServiceHealth",
            Reply::Kv(_) => "Kv",
            Reply::KvList(_) => "KvList",
            Reply::KvKeys(_) => "KvKeys",
            Reply::Sessions(_) => "Sessions",
            Reply::Txn(_) => "Txn",
            Reply::Snapshot(_) => "Snapshot",
            Reply::NodeView(_) => "NodeView",
            Reply::Usage(_) => "Usage",
            Reply::Queries(_) => "Queries",
            Reply::QueryResult(_) => "QueryResult",
            Reply::QueryExplain(_) => "QueryExplain",
            Reply::Autopilot(_) => "Autopilot",
            Reply::Coordinates(_) => "Coordinates",
            Reply::AclTokens(_) => "AclTokens",
            Reply::AclPolicies(_) => "AclPolicies",
            Reply::AclRoles(_) => "AclRoles",
        }
    }
}

/// The error for a reply of the wrong variant (a server of another version, or a bug).
pub fn unexpected(want: &str, got: &Reply) -> crate::api::Error {
    crate::api::Error::Internal(format!(
        "expected a {want} reply from the server, got {}",
        got.kind()
    ))
}
