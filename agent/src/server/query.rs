//! How a server answers a [`Read`]: what it waits on (its watch target, for blocking), when
//! an earlier answer can be shared, and the typed [`Reply`] computed from one consistent view
//! of the state, with Consul's tag, node-metadata and `?filter` selection applied.
//!
//! Everything here is a pure function of one `State` view: the same read on the same state gives
//! the same reply on any server, which is what lets a follower forward a typed read and lets the
//! server share one answer between readers (`Read::cache_index`). Filters select on the records'
//! Consul JSON shapes (`api::shapes`), so `?filter` sees the field names clients see.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_catalog::filter::Filter;
use cairn_catalog::model::{HealthStatus, Node, Service};
use cairn_catalog::store::ServiceNode;
use cairn_catalog::{State, WatchKey};
use serde_json::Value;

use crate::api::Error;
use crate::api::read::{NodeServices, NodeView, QueryResult, TxnOutcome, Usage};
use crate::api::shapes::{self, schema};
pub use crate::api::{Read, Reply, Selection};
use crate::watch::Target;

impl Selection {
    /// `?node-meta`: every pair must match exactly (keys and values are case-sensitive, as in
    /// Consul).
    fn node_ok(&self, node: &Node) -> bool {
        self.node_meta
            .iter()
            .all(|(k, v)| node.meta.get(k) == Some(v))
    }

    /// `?tag`: the instance must carry every tag asked for, compared case-insensitively as Consul's
    /// catalog does.
    fn tags_ok(&self, svc: &Service) -> bool {
        self.tags
            .iter()
            .all(|t| svc.tags.iter().any(|have| have.eq_ignore_ascii_case(t)))
    }

    /// Parses `?filter` and checks it against the shape it will run on, before any item is looked
    /// at: a selector naming a field the shape lacks is a 400 even when the result is empty, as in
    /// Consul. Both failures use Consul's message prefix. The schema is built only when there is a
    /// filter.
    fn compile(&self, schema: impl FnOnce() -> Value) -> Result<Option<Filter>, Error> {
        let Some(expr) = &self.filter else {
            return Ok(None);
        };
        let f = Filter::parse(expr).map_err(|e| {
            Error::Invalid(format!(
                "Failed to create boolean expression evaluator: {e}"
            ))
        })?;
        f.validate(&schema()).map_err(|e| {
            Error::Invalid(format!(
                "Failed to create boolean expression evaluator: {e}"
            ))
        })?;
        Ok(Some(f))
    }
}

/// Keeps the items whose JSON shape matches the filter (all when there is none).
///
/// The shape is built per item only when there is a filter; an evaluation error (a value of the
/// wrong type for an operator) fails the whole read rather than dropping the item.
fn keep<T>(
    items: Vec<T>,
    filter: Option<&Filter>,
    shape: impl Fn(&T) -> Value,
) -> Result<Vec<T>, Error> {
    let Some(f) = filter else {
        return Ok(items);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if f.matches(&shape(&item))
            .map_err(|e| Error::Invalid(format!("Failed to apply filter: {e}")))?
        {
            out.push(item);
        }
    }
    Ok(out)
}

/// An answer shared by every request served from it: the typed reply and, computed once by
/// the edge that renders it, its encoding.
#[derive(Debug)]
pub struct Answer {
    /// The reply.
    pub reply: Reply,
    /// Encoded by the first reader that renders it; every later reader of the same answer sends the
    /// same bytes. `Bytes` clones share the buffer.
    encoded: std::sync::OnceLock<bytes::Bytes>,
}

impl Answer {
    /// Wraps a reply.
    pub fn new(reply: Reply) -> Answer {
        Answer {
            reply,
            encoded: std::sync::OnceLock::new(),
        }
    }

    /// The reply's encoding, made by `render` the first time it is asked for and shared by
    /// every later caller (all readers woken by one change get the same bytes).
    pub fn encoded(&self, render: impl FnOnce(&Reply) -> bytes::Bytes) -> bytes::Bytes {
        self.encoded.get_or_init(|| render(&self.reply)).clone()
    }
}

impl Read {
    /// The index of this read's answer when the answer is a function of that index alone (so an
    /// answer computed at the same index can be reused); `None` for reads that must run every
    /// time.
    pub fn cache_index(&self, st: &State) -> Option<u64> {
        // The rule for each arm: the answer must change only when the chosen index moves. A node
        // change moves the key of every service on it, so service reads may use the service's own
        // index whatever their filters select. The service list's index does not move for node
        // changes, so a filtered or node-meta list is not shared; nor is `HealthState` with node
        // meta (the check index does not cover nodes), nor are KV lists and key lists: once a
        // deletion's tombstone is reaped, a prefix's index can fall back to a value it had when the
        // prefix held other keys.
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
            // The entry's ModifyIndex (or the deletion's index): exactly what the answer depends
            // on.
            Read::KvGet { key } => Some(st.kv_get(key).0),
            Read::SessionInfo { .. } | Read::SessionList | Read::SessionNode { .. } => {
                Some(st.index_of(&WatchKey::Sessions))
            }
            Read::Coordinates { .. } => Some(st.index_of(&WatchKey::Coordinates)),
            _ => None,
        }
    }

    /// What a blocking read of this waits on.
    ///
    /// The target must move whenever the answer's index can: a reader woken needlessly costs one
    /// evaluation, a reader never woken waits out its whole timeout.
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
            // A single key is its own prefix: writes to `a/b` wake readers of `a/b` and of `a/`,
            // not of `a/c`.
            Read::KvGet { key } => Target::KvPrefix(key.clone()),
            Read::KvList { prefix } | Read::KvKeys { prefix, .. } => {
                Target::KvPrefix(prefix.clone())
            }
            Read::SessionInfo { .. } | Read::SessionList | Read::SessionNode { .. } => {
                Target::Key(WatchKey::Sessions)
            }
            // The HTTP edge never lets these block (it clears `?index`); the table key only gives
            // them a valid target.
            Read::Txn { .. } | Read::Snapshot => Target::Key(WatchKey::Kv),
            Read::NodeView { node } => Target::Key(WatchKey::Node(node.clone())),
            Read::Coordinates { .. } => Target::Key(WatchKey::Coordinates),
            // Instance counts move with the service list; node-only changes do not wake a blocked
            // reader (its wait then ends on the timeout, with fresh counts).
            Read::Usage => Target::Key(WatchKey::Services),
            Read::Autopilot => Target::Key(WatchKey::Autopilot),
            Read::Queries { .. } | Read::QueryExplain { .. } => Target::Key(WatchKey::Queries),
            // The service a query selects is known only once the query is resolved (a template
            // renders it from the name), so the read waits on the service list. That key moves when
            // instances come and go, not on a check's status change, so a blocked execute may learn
            // of health changes only when its wait ends.
            Read::QueryExecute { .. } | Read::QueryRun { .. } => Target::Key(WatchKey::Services),
            Read::AclToken { .. }
            | Read::AclTokenSelf
            | Read::AclTokens(_)
            | Read::AclPolicy { .. }
            | Read::AclPolicies
            | Read::AclRole { .. }
            | Read::AclRoles { .. } => Target::Key(WatchKey::Acl),
        }
    }

    /// Computes the reply and the index it reflects.
    ///
    /// The index is the one of the data read (the service's, the node's, the table's), not the
    /// state's last index, so that a blocked reader wakes for what it reads and not for any write.
    /// Catalog and health reads compile their filter before touching the state, so a bad filter
    /// fails the same way whatever the state holds.
    pub fn execute(&self, st: &State) -> Result<(u64, Reply), Error> {
        match self {
            Read::CatalogNodes(sel) => {
                let f = sel.compile(schema::node)?;
                let (idx, nodes) = st.nodes();
                let nodes = nodes.into_iter().filter(|n| sel.node_ok(n)).collect();
                let kept = keep(nodes, f.as_ref(), |n: &Arc<Node>| {
                    shapes::node_json(n, &sel.dc)
                })?;
                Ok((idx, Reply::Nodes(kept)))
            }
            Read::CatalogServices(sel) => {
                // The plain list comes precomputed from the state; only a filter or node meta needs
                // the instances themselves.
                if sel.filter.is_none() && sel.node_meta.is_empty() {
                    let (idx, names) = st.service_names();
                    return Ok((idx, Reply::ServiceTags(names)));
                }
                let f = sel.compile(schema::catalog_service)?;
                let (idx, all) = st.all_service_nodes();
                let all = all.into_iter().filter(|sn| sel.node_ok(&sn.node)).collect();
                let kept = keep(all, f.as_ref(), |sn: &ServiceNode| {
                    shapes::catalog_service_json(&sn.node, &sn.service, &sel.dc)
                })?;
                // Consul's shape: each name with the union of its kept instances' tags, sorted and
                // without duplicates.
                let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for sn in kept {
                    out.entry(sn.service.service.clone())
                        .or_default()
                        .extend(sn.service.tags.iter().cloned());
                }
                let out = out
                    .into_iter()
                    .map(|(name, tags)| (name, tags.into_iter().collect()))
                    .collect();
                Ok((idx, Reply::ServiceTags(out)))
            }
            Read::CatalogService { name, sel } => {
                let f = sel.compile(schema::catalog_service)?;
                let (idx, sns) = st.service_nodes(name);
                let sns = sns
                    .into_iter()
                    .filter(|sn| sel.node_ok(&sn.node) && sel.tags_ok(&sn.service))
                    .collect();
                let kept = keep(sns, f.as_ref(), |sn: &ServiceNode| {
                    shapes::catalog_service_json(&sn.node, &sn.service, &sel.dc)
                })?;
                Ok((idx, Reply::ServiceNodes(kept)))
            }
            Read::CatalogNode { node, sel } | Read::CatalogNodeServices { node, sel } => {
                let f = sel.compile(schema::service)?;
                let (idx, found) = st.node_services(node);
                let Some((n, services)) = found else {
                    // No such node: `null` with the node's index (which falls back to the node
                    // list's), so a reader can block until the node appears.
                    return Ok((idx, Reply::NodeServices(None)));
                };
                let services = keep(services, f.as_ref(), |s: &Arc<Service>| {
                    shapes::service_json(s)
                })?;
                Ok((
                    idx,
                    Reply::NodeServices(Some(NodeServices { node: n, services })),
                ))
            }
            Read::HealthNode { node, sel } => {
                let f = sel.compile(schema::check)?;
                let (idx, checks) = st.node_checks(node);
                let kept = keep(checks, f.as_ref(), |c| shapes::check_json(c))?;
                Ok((idx, Reply::Checks(kept)))
            }
            Read::HealthChecks { name, sel } => {
                let f = sel.compile(schema::check)?;
                let (idx, checks) = st.service_checks(name);
                let checks = checks
                    .into_iter()
                    .filter(|c| {
                        sel.node_meta.is_empty()
                            || st.node(&c.node).is_some_and(|n| sel.node_ok(&n))
                    })
                    .collect();
                let kept = keep(checks, f.as_ref(), |c| shapes::check_json(c))?;
                Ok((idx, Reply::Checks(kept)))
            }
            Read::HealthService { name, passing, sel } => {
                let f = sel.compile(schema::service_entry)?;
                let (idx, csns) = st.check_service_nodes(name);
                let csns = csns
                    .into_iter()
                    .filter(|c| sel.node_ok(&c.node) && sel.tags_ok(&c.service))
                    // `?passing`: every check of the instance and of its node must pass (an
                    // instance without checks passes).
                    .filter(|c| !passing || c.aggregate() == HealthStatus::Passing)
                    .collect();
                let kept = keep(csns, f.as_ref(), |c| shapes::service_entry_json(c, &sel.dc))?;
                Ok((idx, Reply::ServiceHealth(kept)))
            }
            Read::HealthState { state, sel } => {
                let f = sel.compile(schema::check)?;
                let (idx, checks) = st.checks_in_state(*state);
                let checks = checks
                    .into_iter()
                    .filter(|c| {
                        sel.node_meta.is_empty()
                            || st.node(&c.node).is_some_and(|n| sel.node_ok(&n))
                    })
                    .collect();
                let kept = keep(checks, f.as_ref(), |c| shapes::check_json(c))?;
                Ok((idx, Reply::Checks(kept)))
            }
            Read::KvGet { key } => {
                let (idx, e) = st.kv_get(key);
                Ok((idx, Reply::Kv(e)))
            }
            Read::KvList { prefix } => {
                let (idx, entries) = st.kv_list(prefix);
                Ok((idx, Reply::KvList(entries)))
            }
            Read::KvKeys { prefix, separator } => {
                let (idx, keys) = st.kv_keys(prefix, separator);
                Ok((idx, Reply::KvKeys(keys)))
            }
            Read::SessionInfo { id } => {
                let (idx, s) = st.session(id);
                Ok((idx, Reply::Sessions(s.into_iter().collect())))
            }
            Read::SessionList => {
                let (idx, all) = st.sessions();
                Ok((idx, Reply::Sessions(all)))
            }
            Read::SessionNode { node } => {
                let (idx, all) = st.node_sessions(node);
                Ok((idx, Reply::Sessions(all)))
            }
            Read::Usage => {
                let (sidx, instances) = st.all_service_nodes();
                let (nidx, nodes) = st.nodes();
                let mut names = BTreeSet::new();
                // Every Connect kind is listed, zeros included, so the reply's shape does not
                // depend on what is registered.
                let mut kinds: BTreeMap<String, u64> = [
                    "connect-native",
                    "connect-proxy",
                    "ingress-gateway",
                    "mesh-gateway",
                    "terminating-gateway",
                ]
                .into_iter()
                .map(|k| (k.to_string(), 0))
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
                let usage = Usage {
                    services: names.len() as u64,
                    service_instances: instances.len() as u64,
                    connect_instances: kinds,
                    billable_instances: billable,
                    nodes: nodes.len() as u64,
                };
                // Counts come from two tables: the answer reflects the later of their indexes.
                Ok((sidx.max(nidx), Reply::Usage(usage)))
            }
            Read::Queries { id } => {
                let (idx, all) = st.queries();
                let list: Vec<_> = all
                    .into_iter()
                    .filter(|q| id.as_ref().is_none_or(|want| &q.id == want))
                    .collect();
                // A list answers empty; a named query that does not exist is a 404, as Consul's.
                if id.is_some() && list.is_empty() {
                    return Err(Error::NotFound("Query not found".into()));
                }
                Ok((idx, Reply::Queries(list)))
            }
            Read::QueryExecute { key, limit, dc } => {
                let q = super::prepared::resolve(st, key)
                    .ok_or_else(|| Error::NotFound("Query not found".into()))?;
                let (idx, chosen) = super::prepared::select(st, &q, *limit);
                Ok((
                    idx,
                    Reply::QueryResult(QueryResult {
                        service: q.service.service.clone(),
                        nodes: chosen,
                        dns: q.dns.clone(),
                        datacenter: dc.clone(),
                        // Failover to other datacenters is the endpoint's (`Server::query`).
                        failovers: 0,
                    }),
                ))
            }
            Read::QueryRun { query, limit, dc } => {
                let (idx, chosen) = super::prepared::select(st, query, *limit);
                Ok((
                    idx,
                    Reply::QueryResult(QueryResult {
                        service: query.service.service.clone(),
                        nodes: chosen,
                        dns: query.dns.clone(),
                        datacenter: dc.clone(),
                        failovers: 0,
                    }),
                ))
            }
            Read::QueryExplain { key } => {
                let q = super::prepared::resolve(st, key)
                    .ok_or_else(|| Error::NotFound("Query not found".into()))?;
                // Depends on the query definitions only, not on the instances it would select.
                Ok((st.queries().0, Reply::QueryExplain(q)))
            }
            Read::Autopilot => {
                let (idx, config) = st.autopilot();
                Ok((idx, Reply::Autopilot(config)))
            }
            Read::Coordinates { node } => {
                let (idx, entries) = st.coordinates(node.as_deref());
                Ok((idx, Reply::Coordinates(entries)))
            }
            Read::AclToken { .. }
            | Read::AclTokenSelf
            | Read::AclTokens(_)
            | Read::AclPolicy { .. }
            | Read::AclPolicies
            | Read::AclRole { .. }
            | Read::AclRoles { .. } => super::acl_reads::execute(self, st),
            Read::Txn { ops } => {
                // A read-only transaction runs through the same code as a write, on a throwaway
                // copy (O(1), the state is persistent maps) at the next index: results and errors
                // are exactly what the same operations would give in a write, and the copy is
                // dropped. Reads stamp no time, so the clock is 0.
                let mut scratch = State::clone(st);
                let cmd = cairn_catalog::Command::Txn {
                    ops: ops.clone(),
                    now_ms: 0,
                };
                let applied = scratch.apply(st.last_index() + 1, &cmd);
                match applied.result? {
                    cairn_catalog::Response::Txn { results, errors } => {
                        Ok((st.last_index(), Reply::Txn(TxnOutcome { results, errors })))
                    }
                    other => Err(Error::Internal(format!(
                        "a read-only transaction answered {other:?}"
                    ))),
                }
            }
            Read::Snapshot => {
                // An operator archive: without the exactly-once client table and any half-received
                // restore, which belong to this cluster's Raft snapshots only.
                let bytes = cairn_catalog::snapshot::write_archive(st)
                    .map_err(|e| Error::Internal(format!("Failed to create snapshot: {e}")))?;
                Ok((st.last_index(), Reply::Snapshot(bytes)))
            }
            Read::NodeView { node } => {
                let (idx, found) = st.node_services(node);
                // The same state view as the services: the agent's anti-entropy diffs all three at
                // once and must not see services and checks from different moments.
                let (_, checks) = st.node_checks(node);
                let (n, services) = match found {
                    Some((n, s)) => (Some(n), s),
                    None => (None, Vec::new()),
                };
                Ok((
                    idx,
                    Reply::NodeView(NodeView {
                        node: n,
                        services,
                        checks,
                    }),
                ))
            }
        }
    }
}
