//! Consul's JSON shapes of catalog records: how `/v1/catalog` and `/v1/health` show nodes,
//! instances and checks. They are the data model of `?filter` expressions (which select on
//! these field names), evaluated by the servers, and what the HTTP edge renders; defining them
//! once keeps the two from drifting apart.

use cairn_catalog::model::{HealthCheck, Node, Service};
use cairn_catalog::store::CheckServiceNode;
use serde::Serialize;
use serde_json::{Value, json};

/// Any record as JSON (records are plain data; a failure would be a bug, shown as `null`).
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A node as the API shows it, with its datacenter filled in.
pub fn node_json(node: &Node, dc: &str) -> Value {
    let mut v = to_value(node);
    // A node stored without a datacenter shows the serving one: Consul's answers always carry it.
    if node.datacenter.is_empty() {
        v["Datacenter"] = json!(dc);
    }
    v
}

/// A service instance as `/v1/health/service` and `/v1/catalog/node` show it.
pub fn service_json(svc: &Service) -> Value {
    let mut v = to_value(svc);
    // As in Consul's answers, a plain service has no `Kind` at all; only Connect proxies and
    // gateways show one.
    if let Value::Object(m) = &mut v
        && svc.kind.is_empty()
    {
        m.remove("Kind");
    }
    v
}

/// A `CatalogService` element of `/v1/catalog/service/:name`.
///
/// Built field by field rather than from a struct: Consul flattens node and instance into one
/// record with `Service`-prefixed names, and includes Connect fields Cairn does not model (empty,
/// in the shape Consul returns for a service without them).
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

/// A health check.
pub fn check_json(c: &HealthCheck) -> Value {
    to_value(c)
}

/// A `ServiceEntry` of `/v1/health/service/:name`: node, instance and checks.
///
/// Built from the same per-record shapes, so a filter on `Service.Tags` and one on `Tags` of
/// `/v1/catalog/node` see the same field names.
pub fn service_entry_json(csn: &CheckServiceNode, dc: &str) -> Value {
    json!({
        "Node": node_json(&csn.node, dc),
        "Service": service_json(&csn.service),
        "Checks": csn.checks.iter().map(|c| check_json(c)).collect::<Vec<_>>(),
    })
}

/// Sample objects describing what a filter may select, per result type (a filter naming a
/// field none of them has is refused, as Consul refuses it).
///
/// Built from default records through the same functions as real answers, so the schema can never
/// list a field the answers lack, or miss one they have.
pub mod schema {
    use super::*;

    /// A node.
    pub fn node() -> Value {
        node_json(&Node::default(), "")
    }
    /// A `CatalogService` element.
    pub fn catalog_service() -> Value {
        catalog_service_json(&Node::default(), &Service::default(), "")
    }
    /// A service instance.
    pub fn service() -> Value {
        service_json(&Service::default())
    }
    /// A check.
    pub fn check() -> Value {
        check_json(&HealthCheck::default())
    }
    /// A `ServiceEntry`.
    pub fn service_entry() -> Value {
        json!({"Node": node(), "Service": service(), "Checks": [check()]})
    }
}
