//! `/v1/catalog/*`: registration of nodes, services and checks, and the catalog reads.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, put};
use cairn_catalog::Command;
use cairn_catalog::command::{DeregisterRequest, RegisterRequest};

use super::decode::decode;
use super::error::ApiError;
use super::{AppState, check_dc, json_response, json_true, query, selection, serve_selected};
use crate::local::defs::{validate_id_len, validate_meta};
use crate::server::now_ms;
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

async fn register(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    let mut req: RegisterRequest = decode(&body)?;
    check_dc(
        &a,
        o.dc.as_deref()
            .or(Some(req.datacenter.as_str()).filter(|d| !d.is_empty())),
    )?;
    if req.node.is_empty() {
        return Err(ApiError::bad_request("Must provide node"));
    }
    // Nothing registered here may be unreachable by URL afterwards.
    validate_id_len("Node name", &req.node)?;
    if let Some(s) = &req.service {
        validate_id_len("Service ID", &s.id)?;
        validate_id_len("Service name", &s.service)?;
    }
    for c in req.check.iter().chain(req.checks.iter()) {
        validate_id_len("Check ID", &c.check_id)?;
        validate_id_len("Check name", &c.name)?;
        validate_id_len("Check ServiceID", &c.service_id)?;
    }
    if req.address.is_empty() && !req.skip_node_update {
        return Err(ApiError::bad_request("Must provide address"));
    }
    validate_meta("Node", &req.node_meta)?;
    if let Some(s) = &mut req.service {
        if s.service.is_empty() {
            return Err(ApiError::bad_request("Must provide service name"));
        }
        validate_meta("Service", &s.meta)?;
        if s.id.is_empty() {
            s.id = s.service.clone();
        }
    }
    if req.datacenter.is_empty() {
        req.datacenter = a.backend.datacenter().to_string();
    }
    // A check without a service ID in a registration that carries a service belongs to it
    // only when it says so; fill the node on every check.
    for c in req.check.iter_mut().chain(req.checks.iter_mut()) {
        if c.node.is_empty() {
            c.node = req.node.clone();
        }
    }
    a.backend
        .propose(Command::Register {
            req,
            now_ms: now_ms(),
        })
        .await?;
    Ok(json_true())
}

async fn deregister(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    let req: DeregisterRequest = decode(&body)?;
    check_dc(
        &a,
        o.dc.as_deref()
            .or(Some(req.datacenter.as_str()).filter(|d| !d.is_empty())),
    )?;
    if req.node.is_empty() {
        return Err(ApiError::bad_request("Must provide node"));
    }
    a.backend
        .propose(Command::Deregister {
            req,
            now_ms: now_ms(),
        })
        .await?;
    Ok(json_true())
}

async fn datacenters(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    Ok(json_response(&[a.backend.datacenter()], o.pretty))
}

async fn nodes(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), Read::CatalogNodes).await
}

async fn services(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), Read::CatalogServices).await
}

async fn service(
    State(a): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), |sel| Read::CatalogService { name, sel }).await
}

async fn node(
    State(a): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), |sel| Read::CatalogNode { node, sel }).await
}

async fn node_services(
    State(a): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (p, o) = query(q.as_deref())?;
    let sel = selection(&a, &p, &o);
    let (meta, value) = super::run_read(&a, Read::CatalogNodeServices { node, sel }, &o).await?;
    // An unknown node is Consul's empty `NodeServiceList`, with 200 as the Go client expects.
    if value.value.is_null() {
        let empty = serde_json::json!({"Node": null, "Services": null});
        return Ok(super::read_response(&meta, &empty, o.pretty));
    }
    Ok(super::answer_response(&meta, &value, o.pretty))
}
