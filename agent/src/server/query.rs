//! Reads a server answers: each [`Read`] names what it reads (its watch target, for blocking)
//! and computes its answer, as Consul's JSON, from one consistent view of the state.
//!
//! A `Read` is plain data so that a client agent can forward it to a server unchanged.

use cairn_catalog::filter::Filter;
use cairn_catalog::model::{HealthCheck, HealthStatus, Node, Service};
use cairn_catalog::store::{CheckServiceNode, ServiceNode};
use cairn_catalog::{State, WatchKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::watch::Target;

/// A read of the replicated state.
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
}

/// Filters common to catalog and health reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// `?filter` expression.
    pub filter: Option<String>,
    /// `?tag` values (all must match, case-insensitively).
    pub tags: Vec<String>,
    /// `?node-meta` pairs (all must match).
    pub node_meta: Vec<(String, String)>,
    /// Datacenter to report on nodes without one.
    pub dc: String,
}

impl Selection {
    fn node_ok(&self, node: &Node) -> bool {
        self.node_meta
            .iter()
            .all(|(k, v)| node.meta.get(k) == Some(v))
    }

    fn tags_ok(&self, svc: &Service) -> bool {
        self.tags
            .iter()
            .all(|t| svc.tags.iter().any(|have| have.eq_ignore_ascii_case(t)))
    }

    fn compile(&self, schema: impl FnOnce() -> Value) -> Result<Option<Filter>, ApiError> {
        let Some(expr) = &self.filter else {
            return Ok(None);
        };
        let f = Filter::parse(expr).map_err(|e| {
            ApiError::bad_request(format!(
                "Failed to create boolean expression evaluator: {e}"
            ))
        })?;
        f.validate(&schema()).map_err(|e| {
            ApiError::bad_request(format!(
                "Failed to create boolean expression evaluator: {e}"
            ))
        })?;
        Ok(Some(f))
    }
}

/// Keeps the items matching the filter (all when there is none).
fn apply_filter(items: Vec<Value>, filter: Option<&Filter>) -> Result<Vec<Value>, ApiError> {
    let Some(f) = filter else {
        return Ok(items);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if f.matches(&item)
            .map_err(|e| ApiError::bad_request(format!("Failed to apply filter: {e}")))?
        {
            out.push(item);
        }
    }
    Ok(out)
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A node as the API shows it, with its datacenter filled in.
pub fn node_json(node: &Node, dc: &str) -> Value {
    let mut v = to_value(node);
    if node.datacenter.is_empty() {
        v["Datacenter"] = json!(dc);
    }
    v
}

/// A service instance as `/v1/health/service` and `/v1/catalog/node` show it.
pub fn service_json(svc: &Service) -> Value {
    let mut v = to_value(svc);
    if let Value::Object(m) = &mut v
        && svc.kind.is_empty()
    {
        m.remove("Kind");
    }
    v
}

/// A `CatalogService` element of `/v1/catalog/service/:name`.
pub fn catalog_service_json(node: &Node, svc: &Service, dc: &str) -> Value {
    json!({
        "ID": node.id,
        "Node": node.node,
        "Address": node.address,
        "Datacenter": if node.datacenter.is_empty() { dc } else { &node.datacenter },
        "TaggedAddresses": node.tagged_addresses,
        "NodeMeta": node.meta,
        "ServiceKind": svc.kind,
        "ServiceID": svc.id,
        "ServiceName": svc.service,
        "ServiceTags": svc.tags,
        "ServiceAddress": svc.address,
        "ServiceTaggedAddresses": svc.tagged_addresses,
        "ServiceWeights": svc.weights,
        "ServiceMeta": svc.meta,
        "ServicePort": svc.port,
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": svc.enable_tag_override,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "CreateIndex": svc.create_index,
        "ModifyIndex": svc.modify_index,
    })
}

fn check_json(c: &HealthCheck) -> Value {
    to_value(c)
}

fn service_entry_json(csn: &CheckServiceNode, dc: &str) -> Value {
    json!({
        "Node": node_json(&csn.node, dc),
        "Service": service_json(&csn.service),
        "Checks": csn.checks.iter().map(|c| check_json(c)).collect::<Vec<_>>(),
    })
}

/// Sample objects describing what a filter may select, per result type.
mod schema {
    use super::*;

    pub fn node() -> Value {
        node_json(&Node::default(), "")
    }
    pub fn catalog_service() -> Value {
        catalog_service_json(&Node::default(), &Service::default(), "")
    }
    pub fn service() -> Value {
        service_json(&Service::default())
    }
    pub fn check() -> Value {
        check_json(&HealthCheck::default())
    }
    pub fn service_entry() -> Value {
        json!({"Node": node(), "Service": service(), "Checks": [check()]})
    }
}

/// An answer: the JSON value and, computed once and shared by every request served from it,
/// its compact encoding.
#[derive(Debug)]
pub struct Answer {
    /// The answer.
    pub value: Value,
    json: std::sync::OnceLock<bytes::Bytes>,
}

impl Answer {
    /// Wraps a value.
    pub fn new(value: Value) -> Answer {
        Answer {
            value,
            json: std::sync::OnceLock::new(),
        }
    }

    /// The compact JSON encoding (computed on first use).
    pub fn json(&self) -> bytes::Bytes {
        self.json
            .get_or_init(|| serde_json::to_vec(&self.value).unwrap_or_default().into())
            .clone()
    }
}

impl Read {
    /// The index of this read's answer when the answer is a function of that index alone (so an
    /// answer computed at the same index can be reused); `None` for reads that must run every
    /// time.
    pub fn cache_index(&self, st: &State) -> Option<u64> {
        let plain = |sel: &Selection| sel.filter.is_none() && sel.node_meta.is_empty();
        match self {
            Read::CatalogNodes(_) => Some(st.index_of(&WatchKey::Nodes)),
            Read::CatalogServices(sel) if plain(sel) => Some(st.index_of(&WatchKey::Services)),
            Read::CatalogService { name, .. }
            | Read::HealthChecks { name, .. }
            | Read::HealthService { name, .. } => Some(st.service_index(name)),
            Read::CatalogNode { node, .. }
            | Read::CatalogNodeServices { node, .. }
            | Read::HealthNode { node, .. } => Some(st.node_index(node)),
            Read::HealthState { sel, .. } if sel.node_meta.is_empty() => {
                Some(st.index_of(&WatchKey::Checks))
            }
            Read::KvGet { key } => Some(st.kv_get(key).0),
            Read::SessionInfo { .. } | Read::SessionList | Read::SessionNode { .. } => {
                Some(st.index_of(&WatchKey::Sessions))
            }
            Read::Coordinates { .. } => Some(st.index_of(&WatchKey::Coordinates)),
            _ => None,
        }
    }

    /// What a blocking read of this waits on.
    pub fn target(&self) -> Target {
        match self {
            Read::CatalogNodes(_) => Target::Key(WatchKey::Nodes),
            Read::CatalogServices(_) => Target::Key(WatchKey::Services),
            Read::CatalogService { name, .. }
            | Read::HealthChecks { name, .. }
            | Read::HealthService { name, .. } => Target::Key(WatchKey::Service(name.clone())),
            Read::CatalogNode { node, .. }
            | Read::CatalogNodeServices { node, .. }
            | Read::HealthNode { node, .. } => Target::Key(WatchKey::Node(node.clone())),
            Read::HealthState { .. } => Target::Key(WatchKey::Checks),
            Read::KvGet { key } => Target::KvPrefix(key.clone()),
            Read::KvList { prefix } | Read::KvKeys { prefix, .. } => {
                Target::KvPrefix(prefix.clone())
            }
            Read::SessionInfo { .. } | Read::SessionList | Read::SessionNode { .. } => {
                Target::Key(WatchKey::Sessions)
            }
            Read::Txn { .. } | Read::Snapshot => Target::Key(WatchKey::Kv),
            Read::NodeView { node } => Target::Key(WatchKey::Node(node.clone())),
            Read::Coordinates { .. } => Target::Key(WatchKey::Coordinates),
            Read::Usage => Target::Key(WatchKey::Services),
            Read::Autopilot => Target::Key(WatchKey::Autopilot),
            Read::Queries { .. } | Read::QueryExplain { .. } => Target::Key(WatchKey::Queries),
            Read::QueryExecute { .. } => Target::Key(WatchKey::Services),
        }
    }

    /// Computes the answer and the index it reflects. `Value::Null` for a KV miss (the HTTP
    /// layer turns it into a 404 that still carries the index).
    pub fn execute(&self, st: &State) -> Result<(u64, Value), ApiError> {
        match self {
            Read::CatalogNodes(sel) => {
                let f = sel.compile(schema::node)?;
                let (idx, nodes) = st.nodes();
                let items = nodes
                    .iter()
                    .filter(|n| sel.node_ok(n))
                    .map(|n| node_json(n, &sel.dc))
                    .collect();
                Ok((idx, Value::Array(apply_filter(items, f.as_ref())?)))
            }
            Read::CatalogServices(sel) => {
                if sel.filter.is_none() && sel.node_meta.is_empty() {
                    let (idx, names) = st.service_names();
                    return Ok((idx, to_value(&names)));
                }
                let f = sel.compile(schema::catalog_service)?;
                let (idx, all) = st.all_service_nodes();
                let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
                for sn in all.iter().filter(|sn| sel.node_ok(&sn.node)) {
                    let v = catalog_service_json(&sn.node, &sn.service, &sel.dc);
                    if !apply_filter(vec![v], f.as_ref())?.is_empty() {
                        let tags = out.entry(sn.service.service.clone()).or_default();
                        for t in &sn.service.tags {
                            if !tags.contains(t) {
                                tags.push(t.clone());
                            }
                        }
                    }
                }
                for tags in out.values_mut() {
                    tags.sort();
                }
                Ok((idx, to_value(&out)))
            }
            Read::CatalogService { name, sel } => {
                let f = sel.compile(schema::catalog_service)?;
                let (idx, sns) = st.service_nodes(name);
                let items = sns
                    .iter()
                    .filter(|sn: &&ServiceNode| sel.node_ok(&sn.node) && sel.tags_ok(&sn.service))
                    .map(|sn| catalog_service_json(&sn.node, &sn.service, &sel.dc))
                    .collect();
                Ok((idx, Value::Array(apply_filter(items, f.as_ref())?)))
            }
            Read::CatalogNode { node, sel } => {
                let f = sel.compile(schema::service)?;
                let (idx, found) = st.node_services(node);
                let Some((n, services)) = found else {
                    return Ok((idx, Value::Null));
                };
                let items = services.iter().map(|s| service_json(s)).collect();
                let kept = apply_filter(items, f.as_ref())?;
                let map: serde_json::Map<String, Value> = kept
                    .into_iter()
                    .map(|s| (s["ID"].as_str().unwrap_or_default().to_string(), s))
                    .collect();
                Ok((
                    idx,
                    json!({"Node": node_json(&n, &sel.dc), "Services": map}),
                ))
            }
            Read::CatalogNodeServices { node, sel } => {
                let f = sel.compile(schema::service)?;
                let (idx, found) = st.node_services(node);
                let Some((n, services)) = found else {
                    return Ok((idx, Value::Null));
                };
                let items = services.iter().map(|s| service_json(s)).collect();
                let kept = apply_filter(items, f.as_ref())?;
                Ok((
                    idx,
                    json!({"Node": node_json(&n, &sel.dc), "Services": kept}),
                ))
            }
            Read::HealthNode { node, sel } => {
                let f = sel.compile(schema::check)?;
                let (idx, checks) = st.node_checks(node);
                let items = checks.iter().map(|c| check_json(c)).collect();
                Ok((idx, Value::Array(apply_filter(items, f.as_ref())?)))
            }
            Read::HealthChecks { name, sel } => {
                let f = sel.compile(schema::check)?;
                let (idx, checks) = st.service_checks(name);
                let items = checks
                    .iter()
                    .filter(|c| {
                        sel.node_meta.is_empty()
                            || st.node(&c.node).is_some_and(|n| sel.node_ok(&n))
                    })
                    .map(|c| check_json(c))
                    .collect();
                Ok((idx, Value::Array(apply_filter(items, f.as_ref())?)))
            }
            Read::HealthService { name, passing, sel } => {
                let f = sel.compile(schema::service_entry)?;
                let (idx, csns) = st.check_service_nodes(name);
                let items = csns
                    .iter()
                    .filter(|c| sel.node_ok(&c.node) && sel.tags_ok(&c.service))
                    .filter(|c| {
                        !passing || c.checks.iter().all(|k| k.status == HealthStatus::Passing)
                    })
                    .map(|c| service_entry_json(c, &sel.dc))
                    .collect();
                Ok((idx, Value::Array(apply_filter(items, f.as_ref())?)))
            }
            Read::HealthState { state, sel } => {
                let f = sel.compile(schema::check)?;
                let (idx, checks) = st.checks_in_state(*state);
                let items = checks
                    .iter()
                    .filter(|c| {
                        sel.node_meta.is_empty()
                            || st.node(&c.node).is_some_and(|n| sel.node_ok(&n))
                    })
                    .map(|c| check_json(c))
                    .collect();
                Ok((idx, Value::Array(apply_filter(items, f.as_ref())?)))
            }
            Read::KvGet { key } => {
                let (idx, e) = st.kv_get(key);
                Ok((
                    idx,
                    e.map(|e| json!([to_value(&*e)])).unwrap_or(Value::Null),
                ))
            }
            Read::KvList { prefix } => {
                let (idx, entries) = st.kv_list(prefix);
                if entries.is_empty() {
                    return Ok((idx, Value::Null));
                }
                Ok((
                    idx,
                    Value::Array(entries.iter().map(|e| to_value(&**e)).collect()),
                ))
            }
            Read::KvKeys { prefix, separator } => {
                let (idx, keys) = st.kv_keys(prefix, separator);
                if keys.is_empty() {
                    return Ok((idx, Value::Null));
                }
                Ok((idx, to_value(&keys)))
            }
            Read::SessionInfo { id } => {
                let (idx, s) = st.session(id);
                Ok((
                    idx,
                    Value::Array(s.iter().map(|s| to_value(&**s)).collect()),
                ))
            }
            Read::Usage => {
                let (sidx, instances) = st.all_service_nodes();
                let (nidx, nodes) = st.nodes();
                let mut names = std::collections::BTreeSet::new();
                let mut kinds: std::collections::BTreeMap<&str, u64> = [
                    "connect-native",
                    "connect-proxy",
                    "ingress-gateway",
                    "mesh-gateway",
                    "terminating-gateway",
                ]
                .into_iter()
                .map(|k| (k, 0))
                .collect();
                let mut billable = 0u64;
                for i in &instances {
                    names.insert(i.service.service.as_str());
                    match kinds.get_mut(i.service.kind.as_str()) {
                        Some(n) => *n += 1,
                        // The agents' own `consul` service is not billable in Consul either.
                        None if i.service.service != "consul" => billable += 1,
                        None => {}
                    }
                }
                let usage = json!({
                    "Services": names.len(),
                    "ServiceInstances": instances.len(),
                    "ConnectServiceInstances": kinds,
                    "BillableServiceInstances": billable,
                    "Nodes": nodes.len(),
                });
                Ok((sidx.max(nidx), usage))
            }
            Read::Queries { id } => {
                let (idx, all) = st.queries();
                let list: Vec<Value> = all
                    .iter()
                    .filter(|q| id.as_ref().is_none_or(|want| &q.id == want))
                    .map(|q| to_value(&**q))
                    .collect();
                if id.is_some() && list.is_empty() {
                    return Err(ApiError::not_found("Query not found"));
                }
                Ok((idx, Value::Array(list)))
            }
            Read::QueryExecute { key, limit, dc } => {
                let q = super::prepared::resolve(st, key)
                    .ok_or_else(|| ApiError::not_found("Query not found"))?;
                let (idx, chosen) = super::prepared::select(st, &q, *limit);
                Ok((
                    idx,
                    json!({
                        "Service": q.service.service,
                        "Nodes": chosen.iter().map(|c| service_entry_json(c, dc)).collect::<Vec<_>>(),
                        "DNS": to_value(&q.dns),
                        "Datacenter": dc,
                        "Failovers": 0,
                    }),
                ))
            }
            Read::QueryExplain { key } => {
                let q = super::prepared::resolve(st, key)
                    .ok_or_else(|| ApiError::not_found("Query not found"))?;
                Ok((st.queries().0, json!({"Query": to_value(&q)})))
            }
            Read::Autopilot => {
                let (idx, config) = st.autopilot();
                Ok((idx, config.map_or(Value::Null, |c| to_value(&*c))))
            }
            Read::Coordinates { node } => {
                let (idx, entries) = st.coordinates(node.as_deref());
                Ok((idx, to_value(&entries)))
            }
            Read::SessionList => {
                let (idx, all) = st.sessions();
                Ok((
                    idx,
                    Value::Array(all.iter().map(|s| to_value(&**s)).collect()),
                ))
            }
            Read::Txn { ops } => {
                let mut scratch = State::clone(st);
                let cmd = cairn_catalog::Command::Txn {
                    ops: ops.clone(),
                    now_ms: 0,
                };
                let applied = scratch.apply(st.last_index() + 1, &cmd);
                let value = match applied.result? {
                    cairn_catalog::Response::Txn { results, errors } if errors.is_empty() => {
                        json!({"Results": results, "Errors": null})
                    }
                    cairn_catalog::Response::Txn { errors, .. } => {
                        json!({"Results": null, "Errors": errors})
                    }
                    _ => Value::Null,
                };
                Ok((st.last_index(), value))
            }
            Read::Snapshot => {
                use base64::Engine;
                let bytes = cairn_catalog::snapshot::write_archive(st)
                    .map_err(|e| ApiError::internal(format!("Failed to create snapshot: {e}")))?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                Ok((st.last_index(), Value::String(b64)))
            }
            Read::NodeView { node } => {
                let (idx, found) = st.node_services(node);
                let (_, checks) = st.node_checks(node);
                let (n, services) = match found {
                    Some((n, s)) => (
                        node_json(&n, ""),
                        s.iter().map(|s| to_value(&**s)).collect::<Vec<_>>(),
                    ),
                    None => (Value::Null, Vec::new()),
                };
                Ok((
                    idx,
                    json!({
                        "Node": n,
                        "Services": services,
                        "Checks": checks.iter().map(|c| to_value(&**c)).collect::<Vec<_>>(),
                    }),
                ))
            }
            Read::SessionNode { node } => {
                let (idx, all) = st.node_sessions(node);
                Ok((
                    idx,
                    Value::Array(all.iter().map(|s| to_value(&**s)).collect()),
                ))
            }
        }
    }
}
