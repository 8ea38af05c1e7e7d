//! `/v1/catalog/*`: registration of nodes, services and checks, and the catalog reads.
//!
//! Unlike `/v1/agent/*`, these go straight to the replicated catalog. Catalog writes are for
//! nodes without an agent (external services): a service written here for a node whose agent
//! is alive is removed again by that agent's next anti-entropy pass, as in Consul, since the
//! agent is the authority for its node.
//!
//! Every read accepts Consul's selection (`?tag`, repeatable; `?node-meta`; `?filter`) and the
//! blocking and consistency options; `?near` is accepted and has no effect, as Cairn has no
//! coordinates to sort by.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, put};
use cairn_catalog::command::{DeregisterRequest, RegisterRequest};

use super::error::ApiError;
use super::{AppState, Req, json_response, json_true, selection, serve_selected, token};
use crate::api::decode::decode;
use crate::api::{Write, WriteOp};
use crate::server::query::Read;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/catalog/register", put(register))
        .route("/v1/catalog/deregister", put(deregister))
        .route("/v1/catalog/datacenters", get(datacenters))
        .route("/v1/catalog/nodes", get(nodes))
        .route("/v1/catalog/services", get(services))
        .route("/v1/catalog/service/{*name}", get(service))
        .route("/v1/catalog/node/{*node}", get(node))
        .route("/v1/catalog/node-services/{*node}", get(node_services))
}

/// `PUT /v1/catalog/register`: a node with, optionally, one service and its checks, as
/// Consul's `RegisterRequest`. Validation, defaults and the write happen on the leader's
/// endpoint; the handler only decodes. Answers `true`.
async fn register(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RegisterRequest = decode(&body)?;
    // `?dc` wins over the body's `Datacenter`; either one names another datacenter only to be
    // refused by the server, as there is no federation yet.
    let dc = o.dc.clone().or(Some(req.datacenter.clone()));
    a.backend
        .write(
            Write::new(WriteOp::Register(req))
                .in_dc(dc.as_deref())
                .with_token(token(&headers, &p)),
        )
        .await?;
    Ok(json_true())
}

/// `PUT /v1/catalog/deregister`: a node, or one of its services (`ServiceID`) or checks
/// (`CheckID`). Answers `true`.
async fn deregister(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: DeregisterRequest = decode(&body)?;
    let dc = o.dc.clone().or(Some(req.datacenter.clone()));
    a.backend
        .write(
            Write::new(WriteOp::Deregister(req))
                .in_dc(dc.as_deref())
                .with_token(token(&headers, &p)),
        )
        .await?;
    Ok(json_true())
}

/// `GET /v1/catalog/datacenters`: the known datacenters, this one first (see
/// `crate::wan::Router::datacenters`). A server answers from its WAN pool, a client agent asks
/// one of its servers; no leader is needed, as in Consul.
async fn datacenters(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    Ok(json_response(&a.backend.datacenters().await?, o.pretty))
}

/// `GET /v1/catalog/nodes`: every node (`?node-meta`, `?filter`).
async fn nodes(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), Read::CatalogNodes).await
}

/// `GET /v1/catalog/services`: service names with the union of their instances' tags, the
/// read Prometheus and Traefik block on to notice new services.
async fn services(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), Read::CatalogServices).await
}

/// `GET /v1/catalog/service/:name`: the instances of a service with their nodes, whatever
/// their health (use `/v1/health/service` for health).
async fn service(
    State(a): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), |sel| Read::CatalogService { name, sel }).await
}

/// `GET /v1/catalog/node/:node`: a node and its services keyed by ID; `null` for an unknown
/// node.
async fn node(
    State(a): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), |sel| Read::CatalogNode { node, sel }).await
}

/// `GET /v1/catalog/node-services/:node`: the same, with the services as a list.
async fn node_services(
    State(a): State<AppState>,
    Path(node): Path<String>,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    let sel = selection(&a, &p, &o);
    let read = Read::CatalogNodeServices { node, sel };
    let (meta, answer) = super::run_read(&a, read.clone(), &o).await?;
    // An unknown node is Consul's empty `NodeServiceList`, with 200 as the Go client expects;
    // so is any node of a `?peer` (no peering: every peer is unknown).
    let peer = p.get("peer").is_some_and(|v| !v.is_empty());
    if peer || matches!(answer.reply, crate::api::Reply::NodeServices(None)) {
        let empty = serde_json::json!({"Node": null, "Services": null});
        return Ok(super::read_response(&meta, &empty, o.pretty));
    }
    Ok(super::agent_answer(&a, &meta, &read, &answer, o.pretty))
}

#[cfg(test)]
mod null_tests {
    use super::*;

    /// What Go's `CatalogRegistration` sends: `null` for every empty list and map.
    #[test]
    fn null_members_are_absent() {
        crate::api::decode::assert_null_is_absent::<RegisterRequest>(serde_json::json!({
            "ID": "11111111-2222-3333-4444-555555555555", "Node": "n", "Address": "1.2.3.4",
            "Datacenter": "dc1", "TaggedAddresses": {"lan": "1.2.3.4", "wan": "5.6.7.8"},
            "NodeMeta": {"k": "v"}, "SkipNodeUpdate": false,
            "Service": {"ID": "s", "Service": "web", "Tags": ["a"], "Address": "1.2.3.4",
                "Meta": {"m": "v"}, "Port": 80, "Weights": {"Passing": 2, "Warning": 1},
                "TaggedAddresses": {"lan": {"Address": "1.2.3.4", "Port": 80}},
                "EnableTagOverride": true},
            "Check": {"Node": "n", "CheckID": "c", "Name": "c", "Status": "passing",
                "Notes": "x", "Output": "o", "ServiceID": "s", "ServiceName": "web",
                "ServiceTags": ["a"], "Definition": {"HTTP": "http://x", "Header": {"X": ["y"]},
                "Interval": "10s"}},
            "Checks": [{"Node": "n", "CheckID": "c2", "Name": "c2", "Status": "warning"}]
        }));
        crate::api::decode::assert_null_is_absent::<DeregisterRequest>(serde_json::json!({
            "Node": "n", "Datacenter": "dc1", "ServiceID": "s", "CheckID": "c"
        }));
    }
}
