//! `/v1/query`: prepared queries, stored in the replicated catalog, executed by ID or name
//! (templates by name prefix). Failover to other datacenters needs WAN federation, which Cairn
//! does not have yet: `Failovers` is always 0.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_catalog::model::PreparedQuery;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, Req, json_response, serve_read, token};
use crate::api::decode::decode_value;
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

/// Drops `null` members (clients send `"Tags": null` for an empty list), recursively.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Decodes a query definition (the leader's endpoint checks it).
fn definition(body: &[u8]) -> Result<PreparedQuery, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    Ok(decode_value(without_nulls(v))?)
}

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

async fn list(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    serve_read(&a, Read::Queries { id: None }, &o).await
}

async fn read(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    serve_read(&a, Read::Queries { id: Some(id) }, &o).await
}

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
    let read = Read::QueryExecute {
        key,
        limit,
        dc: a.backend.datacenter().to_string(),
    };
    serve_read(&a, read, &o).await
}

async fn explain(
    State(a): State<AppState>,
    Path(key): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    serve_read(&a, Read::QueryExplain { key }, &o).await
}
