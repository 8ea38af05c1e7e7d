//! Typed read replies in Consul's JSON: which shape each endpoint answers, where Consul
//! answers `null` (a missing key or node, an empty key list), and the envelopes around
//! records (`{"Node": ..., "Services": ...}`, a prepared query's execution).

use serde_json::{Map, Value, json};

use crate::api::shapes::{
    catalog_service_json, check_json, node_json, service_entry_json, service_json, to_value,
};
use crate::api::{Read, Reply};

/// The JSON answer of `read`, given its typed reply.
pub fn render(read: &Read, reply: &Reply) -> Value {
    match (read, reply) {
        (Read::CatalogNodes(sel), Reply::Nodes(nodes)) => {
            Value::Array(nodes.iter().map(|n| node_json(n, &sel.dc)).collect())
        }
        (_, Reply::ServiceTags(names)) => to_value(names),
        (Read::CatalogService { sel, .. }, Reply::ServiceNodes(sns)) => Value::Array(
            sns.iter()
                .map(|sn| catalog_service_json(&sn.node, &sn.service, &sel.dc))
                .collect(),
        ),
        (Read::CatalogNode { sel, .. }, Reply::NodeServices(Some(ns))) => {
            let services: Map<String, Value> = ns
                .services
                .iter()
                .map(|s| (s.id.clone(), service_json(s)))
                .collect();
            json!({"Node": node_json(&ns.node, &sel.dc), "Services": services})
        }
        (Read::CatalogNodeServices { sel, .. }, Reply::NodeServices(Some(ns))) => json!({
            "Node": node_json(&ns.node, &sel.dc),
            "Services": ns.services.iter().map(|s| service_json(s)).collect::<Vec<_>>(),
        }),
        (_, Reply::NodeServices(_)) => Value::Null,
        (_, Reply::Checks(checks)) => Value::Array(checks.iter().map(|c| check_json(c)).collect()),
        (Read::HealthService { sel, .. }, Reply::ServiceHealth(entries)) => Value::Array(
            entries
                .iter()
                .map(|e| service_entry_json(e, &sel.dc))
                .collect(),
        ),
        (_, Reply::Kv(Some(e))) => json!([to_value(&**e)]),
        (_, Reply::Kv(None)) => Value::Null,
        (_, Reply::KvList(entries)) if entries.is_empty() => Value::Null,
        (_, Reply::KvList(entries)) => {
            Value::Array(entries.iter().map(|e| to_value(&**e)).collect())
        }
        (_, Reply::KvKeys(keys)) if keys.is_empty() => Value::Null,
        (_, Reply::KvKeys(keys)) => to_value(keys),
        (_, Reply::Sessions(all)) => Value::Array(all.iter().map(|s| to_value(&**s)).collect()),
        (_, Reply::Txn(t)) if t.errors.is_empty() => {
            json!({"Results": t.results, "Errors": null})
        }
        (_, Reply::Txn(t)) => json!({"Results": null, "Errors": t.errors}),
        (_, Reply::NodeView(v)) => json!({
            "Node": v.node.as_ref().map(|n| node_json(n, "")),
            "Services": v.services.iter().map(|s| to_value(&**s)).collect::<Vec<_>>(),
            "Checks": v.checks.iter().map(|c| to_value(&**c)).collect::<Vec<_>>(),
        }),
        (_, Reply::Usage(u)) => json!({
            "Services": u.services,
            "ServiceInstances": u.service_instances,
            "ConnectServiceInstances": u.connect_instances,
            "BillableServiceInstances": u.billable_instances,
            "Nodes": u.nodes,
        }),
        (_, Reply::Queries(all)) => Value::Array(all.iter().map(|q| to_value(&**q)).collect()),
        (_, Reply::QueryResult(r)) => json!({
            "Service": r.service,
            "Nodes": r.nodes.iter().map(|c| service_entry_json(c, &r.datacenter)).collect::<Vec<_>>(),
            "DNS": to_value(&r.dns),
            "Datacenter": r.datacenter,
            "Failovers": r.failovers,
        }),
        (_, Reply::QueryExplain(q)) => json!({"Query": to_value(q)}),
        (_, Reply::Autopilot(c)) => c.as_ref().map_or(Value::Null, |c| to_value(&**c)),
        (_, Reply::Coordinates(entries)) => to_value(entries),
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
