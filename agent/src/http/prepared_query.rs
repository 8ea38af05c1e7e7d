//! `/v1/query`: prepared queries, stored in the replicated catalog, executed by ID or name
//! (templates by name prefix), failing over to other datacenters when no instance is healthy
//! here (see `Server::query`).
//!
//! Definitions are only decoded here; the leader's endpoint validates them (a service name or
//! a template, its regular expression, the DNS TTL, ...). Execution is a read: it follows the
//! request's consistency options like any catalog read, and DNS `*.query.consul` lookups
//! select instances with the same code (`crate::server::prepared`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_catalog::model::PreparedQuery;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, Req, json_response, serve_read, token};
use crate::api::decode::decode;
use crate::api::{Write, WriteOp, Written};
use crate::server::query::Read;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/query", get(list).post(create))
        .route("/v1/query/{id}", get(read).put(update).delete(remove))
        .route("/v1/query/{id}/execute", get(execute))
        .route("/v1/query/{id}/explain", get(explain))
}

/// Decodes a query definition (the leader's endpoint checks it), with Consul's
/// case-insensitive keys and `null` as absent (see `crate::api::decode`).
fn definition(body: &[u8]) -> Result<PreparedQuery, ApiError> {
    Ok(decode(body)?)
}

/// `POST /v1/query`: stores a new query, answering `{"ID": "<uuid>"}` (the server picks the
/// ID).
async fn create(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query = definition(&body)?;
    let w = Write::new(WriteOp::QueryCreate { query })
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    let (_, written) = a.backend.write(w).await?;
    let Written::Id(id) = written else {
        return Err(ApiError::internal("the query was created without an ID"));
    };
    Ok(json_response(&json!({"ID": id}), o.pretty))
}

/// `GET /v1/query`: every stored query (blocking).
async fn list(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    serve_read(&a, Read::Queries { id: None }, &o).await
}

/// `GET /v1/query/:id`: a one-element list, as Consul answers; 404 when unknown. By ID only:
/// names are resolved by `execute` and `explain`.
async fn read(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    serve_read(&a, Read::Queries { id: Some(id) }, &o).await
}

/// `PUT /v1/query/:id`: replaces a query's definition; the path's ID wins over any `ID` in
/// the body. An empty 200.
async fn update(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut query = definition(&body)?;
    query.id = id;
    let w = Write::new(WriteOp::QueryUpdate { query })
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    a.backend.write(w).await?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /v1/query/:id`: an empty 200.
async fn remove(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let w = Write::new(WriteOp::QueryDelete { id })
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    a.backend.write(w).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/query/:id-or-name/execute`: the instances the query selects (never critical ones,
/// warning ones unless `OnlyPassing`), found by ID, exact name, then the longest matching
/// template prefix. `?limit` caps the instances (0 or absent: all); `?near` is accepted and
/// ignored, as there are no coordinates to sort by.
async fn execute(
    State(a): State<AppState>,
    Path(key): Path<String>,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    let limit = match p.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("Bad limit: {l}")))?,
    };
    // The datacenter goes with the read because the answer names it (`Datacenter`) and its
    // instances' nodes carry it.
    let read = Read::QueryExecute {
        key,
        limit,
        // The datacenter the query runs in (`?dc=` sends it there).
        dc: o
            .dc
            .clone()
            .filter(|dc| !dc.is_empty())
            .unwrap_or_else(|| a.backend.datacenter().to_string()),
    };
    serve_read(&a, read, &o).await
}

/// `GET /v1/query/:id-or-name/explain`: the query as it would run for this name, a
/// template's interpolations done: how to debug a template without executing it.
async fn explain(
    State(a): State<AppState>,
    Path(key): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    serve_read(&a, Read::QueryExplain { key }, &o).await
}

#[cfg(test)]
mod null_tests {
    use super::*;

    /// Go's `PreparedQueryDefinition`, `Connect` as Consul's bool included.
    #[test]
    fn null_members_are_absent() {
        crate::api::decode::assert_null_is_absent::<PreparedQuery>(serde_json::json!({
            "Name": "q", "Session": "", "Token": "",
            "Template": {"Type": "name_prefix_match", "Regexp": "^q-(.*)$", "RemoveEmptyTags": true},
            "Service": {"Service": "web", "Failover": {"NearestN": 1, "Datacenters": ["dc2"]},
                "IgnoreCheckIDs": ["x"], "OnlyPassing": true, "Near": "_agent", "Tags": ["a"],
                "NodeMeta": {"k": "v"}, "ServiceMeta": {"k": "v"}, "Connect": false, "Peer": ""},
            "DNS": {"TTL": "10s"}
        }));
        let q =
            definition(br#"{"Service": {"Service": "web", "Connect": true}}"#).expect("decodes");
        assert!(q.service.connect.enabled);
        let back = serde_json::to_value(&q).expect("encodes");
        assert_eq!(
            back["Service"]["Connect"],
            serde_json::json!(true),
            "Consul's bool on the way out"
        );
        // The shape written before Consul's was matched still reads.
        let q = definition(br#"{"Service": {"Service": "web", "Connect": {"Enabled": true}}}"#)
            .expect("decodes");
        assert!(q.service.connect.enabled);
    }
}
