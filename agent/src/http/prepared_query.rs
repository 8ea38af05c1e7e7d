//! `/v1/query`: prepared queries, stored in the replicated catalog, executed by ID or name
//! (templates by name prefix). Failover to other datacenters needs WAN federation, which Cairn
//! does not have yet: `Failovers` is always 0.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_catalog::Command;
use cairn_catalog::model::PreparedQuery;
use serde_json::{Value, json};

use super::decode::decode_value;
use super::error::ApiError;
use super::{AppState, check_dc, json_response, query, serve_read};
use crate::server::prepared::NAME_PREFIX_MATCH;
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

/// Decodes and checks a query definition.
fn definition(body: &[u8]) -> Result<PreparedQuery, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    let q: PreparedQuery = decode_value(without_nulls(v))?;
    match q.template.kind.as_str() {
        "" => {
            if q.service.service.is_empty() {
                return Err(ApiError::bad_request(
                    "Must provide a Service name to query",
                ));
            }
        }
        NAME_PREFIX_MATCH => {
            if !q.template.regexp.is_empty() {
                regex::Regex::new(&q.template.regexp).map_err(|e| {
                    ApiError::bad_request(format!("Invalid template regular expression: {e}"))
                })?;
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "Bad Template.Type '{other}'"
            )));
        }
    }
    if !q.dns.ttl.is_empty() {
        cairn_catalog::duration::parse_go_duration(&q.dns.ttl)
            .map_err(|e| ApiError::bad_request(format!("Bad DNS TTL '{}': {e}", q.dns.ttl)))?;
    }
    if q.service.failover.nearest_n < 0 {
        return Err(ApiError::bad_request("Bad NearestN, must be >= 0"));
    }
    Ok(q)
}

async fn create(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let mut def = definition(&body)?;
    def.id = uuid::Uuid::new_v4().to_string();
    let id = def.id.clone();
    a.backend
        .propose(Command::QuerySet {
            query: def,
            create: true,
        })
        .await?;
    Ok(json_response(&json!({"ID": id}), o.pretty))
}

async fn list(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    serve_read(&a, Read::Queries { id: None }, &o).await
}

async fn read(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    serve_read(&a, Read::Queries { id: Some(id) }, &o).await
}

async fn update(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let mut def = definition(&body)?;
    def.id = id;
    a.backend
        .propose(Command::QuerySet {
            query: def,
            create: false,
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

async fn remove(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    a.backend.propose(Command::QueryDelete { id }).await?;
    Ok(StatusCode::OK.into_response())
}

async fn execute(
    State(a): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (p, o) = query(q.as_deref())?;
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
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    serve_read(&a, Read::QueryExplain { key }, &o).await
}
