//! Typed read replies in Consul's JSON: which shape each endpoint answers, where Consul
//! answers `null` (a missing key or node, an empty key list), and the envelopes around
//! records (`{"Node": ..., "Services": ...}`, a prepared query's execution).
//!
//! Rendering is a pure function of the read and its reply, so that one answer shared by many
//! blocked readers is encoded once (see `super::answer_response`). The record shapes
//! themselves live in `crate::api::shapes`, because `?filter` evaluates against the same
//! JSON the client sees; this file only arranges them per endpoint. Lists are `[]` when
//! empty, as Consul's endpoints replace nil slices with empty ones; the `null`s below are
//! the exceptions Consul makes.

use serde_json::{Map, Value, json};

use crate::api::shapes::{
    catalog_service_json, check_json, node_json, service_entry_json, service_json, to_value,
};
use crate::api::{Read, Reply};

/// The JSON answer of `read`, given its typed reply.
///
/// The read is needed besides the reply because one reply kind has several shapes (a node's
/// services are a map under `/v1/catalog/node`, a list under `/v1/catalog/node-services`) and
/// because the read's selection carries the datacenter that rendered nodes report.
pub fn render(read: &Read, reply: &Reply) -> Value {
    match (read, reply) {
        (Read::CatalogNodes(sel), Reply::Nodes(nodes)) => {
            Value::Array(nodes.iter().map(|n| node_json(n, &sel.dc)).collect())
        }
        // `/v1/catalog/services`: `{"name": [tags...]}`, not a list.
        (_, Reply::ServiceTags(names)) => to_value(names),
        (Read::CatalogService { sel, .. }, Reply::ServiceNodes(sns)) => Value::Array(
            sns.iter()
                .map(|sn| catalog_service_json(&sn.node, &sn.service, &sel.dc))
                .collect(),
        ),
        // Consul's `NodeServices`: services keyed by instance ID.
        (Read::CatalogNode { sel, .. }, Reply::NodeServices(Some(ns))) => {
            let services: Map<String, Value> = ns
                .services
                .iter()
                .map(|s| (s.id.clone(), service_json(s)))
                .collect();
            json!({"Node": node_json(&ns.node, &sel.dc), "Services": services})
        }
        // Consul's `NodeServiceList`: the same services as a list (the newer endpoint's shape).
        (Read::CatalogNodeServices { sel, .. }, Reply::NodeServices(Some(ns))) => json!({
            "Node": node_json(&ns.node, &sel.dc),
            "Services": ns.services.iter().map(|s| service_json(s)).collect::<Vec<_>>(),
        }),
        // An unknown node: `null` with 200 under `/v1/catalog/node`; the node-services handler
        // answers its own empty envelope before this is reached.
        (_, Reply::NodeServices(_)) => Value::Null,
        (_, Reply::Checks(checks)) => Value::Array(checks.iter().map(|c| check_json(c)).collect()),
        (Read::HealthService { sel, .. }, Reply::ServiceHealth(entries)) => Value::Array(
            entries
                .iter()
                .map(|e| service_entry_json(e, &sel.dc))
                .collect(),
        ),
        // A single key is still a one-element list, as Consul's KV GET always answers a list.
        (_, Reply::Kv(Some(e))) => json!([to_value(&**e)]),
        // Empty KV answers: the KV handler answers 404 (or `[]` for the root's key list) before
        // rendering, so these `null`s are a fallback, not what clients see.
        (_, Reply::Kv(None)) => Value::Null,
        (_, Reply::KvList(entries)) if entries.is_empty() => Value::Null,
        (_, Reply::KvList(entries)) => {
            Value::Array(entries.iter().map(|e| to_value(&**e)).collect())
        }
        (_, Reply::KvKeys(keys)) if keys.is_empty() => Value::Null,
        (_, Reply::KvKeys(keys)) => to_value(keys),
        (_, Reply::Sessions(all)) => Value::Array(all.iter().map(|s| session_json(s)).collect()),
        // Consul's `TxnResponse`: `Results` on commit, `Errors` on rollback, the other `null`.
        (_, Reply::Txn(t)) if t.errors.is_empty() => {
            json!({"Results": t.results, "Errors": null})
        }
        (_, Reply::Txn(t)) => json!({"Results": null, "Errors": t.errors}),
        // Not an HTTP read (it is anti-entropy's view of this node); rendered so that the match
        // stays total.
        (_, Reply::NodeView(v)) => json!({
            "Node": v.node.as_ref().map(|n| node_json(n, "")),
            "Services": v.services.iter().map(|s| to_value(&**s)).collect::<Vec<_>>(),
            "Checks": v.checks.iter().map(|c| to_value(&**c)).collect::<Vec<_>>(),
        }),
        // One datacenter's counts; `/v1/operator/usage` puts them under the datacenter's name.
        (_, Reply::Usage(u)) => json!({
            "Services": u.services,
            "ServiceInstances": u.service_instances,
            "ConnectServiceInstances": u.connect_instances,
            "BillableServiceInstances": u.billable_instances,
            "Nodes": u.nodes,
        }),
        (_, Reply::Queries(all)) => Value::Array(all.iter().map(|q| to_value(&**q)).collect()),
        // Consul's `PreparedQueryExecuteResponse`; instances render as `/v1/health/service`
        // entries, in the datacenter the query ran in.
        (_, Reply::QueryResult(r)) => json!({
            "Service": r.service,
            "Nodes": r.nodes.iter().map(|c| service_entry_json(c, &r.datacenter)).collect::<Vec<_>>(),
            "DNS": to_value(&r.dns),
            "Datacenter": r.datacenter,
            "Failovers": r.failovers,
        }),
        (_, Reply::QueryExplain(q)) => json!({"Query": to_value(q)}),
        // `null` until a leader has written the settings; the operator handler answers the
        // agent's configured settings then.
        (_, Reply::Autopilot(c)) => c.as_ref().map_or(Value::Null, |c| to_value(&**c)),
        (_, Reply::Coordinates(entries)) => to_value(entries),
        // One object for reads of one; lists otherwise (policy stubs without their rules).
        (Read::AclToken { .. } | Read::AclTokenSelf, Reply::AclTokens(ts)) => ts
            .first()
            .map_or(Value::Null, |t| super::acl::token_json(t)),
        (_, Reply::AclTokens(ts)) => {
            Value::Array(ts.iter().map(|t| super::acl::token_json(t)).collect())
        }
        (Read::AclPolicy { .. }, Reply::AclPolicies(ps)) => ps
            .first()
            .map_or(Value::Null, |p| super::acl::policy_json(p, true)),
        (_, Reply::AclPolicies(ps)) => Value::Array(
            ps.iter()
                .map(|p| super::acl::policy_json(p, false))
                .collect(),
        ),
        (Read::AclRole { .. }, Reply::AclRoles(rs)) => {
            rs.first().map_or(Value::Null, |r| super::acl::role_json(r))
        }
        (_, Reply::AclRoles(rs)) => {
            Value::Array(rs.iter().map(|r| super::acl::role_json(r)).collect())
        }
        // Replies rendered by their own handlers, or a reply of the wrong kind for the read
        // (shapes that need the read's datacenter fall back to none).
        (_, Reply::Snapshot(_)) => Value::Null,
        (_, Reply::Nodes(nodes)) => Value::Array(nodes.iter().map(|n| node_json(n, "")).collect()),
        (_, Reply::ServiceNodes(sns)) => Value::Array(
            sns.iter()
                .map(|sn| catalog_service_json(&sn.node, &sn.service, ""))
                .collect(),
        ),
        (_, Reply::ServiceHealth(entries)) => {
            Value::Array(entries.iter().map(|e| service_entry_json(e, "")).collect())
        }
    }
}

/// A session as Consul shows it: besides `NodeChecks` and `ServiceChecks`, the pre-1.7
/// `Checks` list (every check the session follows, node checks first), which older clients
/// still read; `ServiceChecks` is `null` when there are none, as Go writes a nil slice.
pub fn session_json(s: &cairn_catalog::model::Session) -> Value {
    let mut v = to_value(s);
    if let Value::Object(m) = &mut v {
        let legacy: Vec<&str> = s
            .node_checks
            .iter()
            .map(String::as_str)
            .chain(s.service_checks.iter().map(|c| c.id.as_str()))
            .collect();
        m.insert("Checks".into(), json!(legacy));
        if s.service_checks.is_empty() {
            m.insert("ServiceChecks".into(), Value::Null);
        }
    }
    v
}

/// `translate_wan_addrs`: rewrites an answer about another datacenter to its WAN addresses,
/// as Consul's answering agent does (`agent/translate_addr.go`): a node's `Address` becomes
/// its `wan` tagged address, an instance's address and port its `wan` service address, when
/// they are set. Answers about the local datacenter are never rewritten (the caller decides).
pub fn translate_wan(read: &Read, v: &mut Value) {
    /// A node object with `Address` and `TaggedAddresses`.
    fn node(n: &mut Value) {
        let wan = n["TaggedAddresses"]["wan"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !wan.is_empty() {
            n["Address"] = json!(wan);
        }
    }
    /// A service object (`Address`, `Port`, `TaggedAddresses`).
    fn service(s: &mut Value) {
        let wan = s["TaggedAddresses"]["wan"].clone();
        if let Some(addr) = wan["Address"].as_str().filter(|a| !a.is_empty()) {
            s["Address"] = json!(addr);
        }
        if let Some(port) = wan["Port"].as_u64().filter(|p| *p != 0) {
            s["Port"] = json!(port);
        }
    }
    /// A `ServiceEntry` (health and prepared-query answers).
    fn entry(e: &mut Value) {
        node(&mut e["Node"]);
        service(&mut e["Service"]);
    }
    let each = |v: &mut Value, f: &dyn Fn(&mut Value)| {
        if let Value::Array(items) = v {
            items.iter_mut().for_each(f);
        }
    };
    match read {
        Read::CatalogNodes(_) => each(v, &node),
        Read::CatalogService { .. } => each(v, &|e: &mut Value| {
            let wan = e["TaggedAddresses"]["wan"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !wan.is_empty() {
                e["Address"] = json!(wan);
            }
            let swan = e["ServiceTaggedAddresses"]["wan"].clone();
            if let Some(addr) = swan["Address"].as_str().filter(|a| !a.is_empty()) {
                e["ServiceAddress"] = json!(addr);
            }
            if let Some(port) = swan["Port"].as_u64().filter(|p| *p != 0) {
                e["ServicePort"] = json!(port);
            }
        }),
        Read::CatalogNode { .. } => {
            node(&mut v["Node"]);
            if let Value::Object(services) = &mut v["Services"] {
                services.values_mut().for_each(service);
            }
        }
        Read::CatalogNodeServices { .. } => {
            node(&mut v["Node"]);
            each(&mut v["Services"], &service);
        }
        Read::HealthService { .. } => each(v, &entry),
        Read::QueryExecute { .. } | Read::QueryRun { .. } => each(&mut v["Nodes"], &entry),
        _ => {}
    }
}
