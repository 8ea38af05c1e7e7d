//! `/v1/session/*`: sessions, the liveness handles behind KV locks.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, put};
use cairn_catalog::Command;
use cairn_catalog::model::{ServiceCheckRef, Session, SessionBehavior};
use serde::Deserialize;
use serde_json::json;

use super::decode::decode;
use super::error::ApiError;
use super::{AppState, check_dc, json_response, json_true, query, serve_read};
use crate::local::defs::RawDuration;
use crate::server::leader::SERF_CHECK_ID;
use crate::server::query::Read;
use crate::server::{now_ms, parse_session_ttl};

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/session/create", put(create))
        .route("/v1/session/destroy/{id}", put(destroy))
        .route("/v1/session/renew/{id}", put(renew))
        .route("/v1/session/info/{id}", get(info))
        .route("/v1/session/node/{*node}", get(node))
        .route("/v1/session/list", get(list))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    node: String,
    lock_delay: Option<RawDuration>,
    behavior: String,
    #[serde(rename = "TTL")]
    ttl: String,
    node_checks: Option<Vec<String>>,
    checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheckRef>>,
}

/// Default and largest lock delay.
const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

fn lock_delay(v: &Option<RawDuration>) -> Result<Duration, ApiError> {
    let d = match v {
        None => DEFAULT_LOCK_DELAY,
        // Consul reads small bare numbers as seconds and larger ones as nanoseconds.
        Some(RawDuration::Num(n)) if *n < 1000 => Duration::from_secs(*n),
        Some(RawDuration::Num(n)) => Duration::from_nanos(*n),
        Some(RawDuration::Str(s)) if s.is_empty() => DEFAULT_LOCK_DELAY,
        Some(RawDuration::Str(s)) => cairn_catalog::duration::parse_go_duration(s)
            .map_err(|e| ApiError::bad_request(format!("Invalid LockDelay: {e}")))?,
    };
    if d > MAX_LOCK_DELAY {
        return Err(ApiError::bad_request(format!(
            "Invalid LockDelay: {} exceeds the maximum of 60s",
            cairn_catalog::duration::format_go_duration(d)
        )));
    }
    Ok(d)
}

async fn create(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let b: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        decode(&body)?
    };
    let behavior = match b.behavior.as_str() {
        "" | "release" => SessionBehavior::Release,
        "delete" => SessionBehavior::Delete,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid Behavior setting '{other}'"
            )));
        }
    };
    let ttl = parse_session_ttl(&b.ttl)?;
    let node_checks = match (b.node_checks, b.checks) {
        (Some(n), _) => n,
        (None, Some(c)) => c,
        (None, None) => vec![SERF_CHECK_ID.to_string()],
    };
    let session = Session {
        id: uuid::Uuid::new_v4().to_string(),
        name: b.name,
        node: if b.node.is_empty() {
            a.node.name.clone()
        } else {
            b.node
        },
        lock_delay: lock_delay(&b.lock_delay)?.as_nanos() as u64,
        behavior,
        ttl: if ttl.is_some() { b.ttl } else { String::new() },
        node_checks,
        service_checks: b.service_checks.unwrap_or_default(),
        create_index: 0,
        modify_index: 0,
    };
    let id = session.id.clone();
    a.backend
        .propose(Command::SessionCreate { session })
        .await?;
    if let Some(ttl) = ttl {
        a.session_timers.reset(&id, ttl);
    }
    Ok(json_response(&json!({"ID": id}), o.pretty))
}

async fn destroy(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    a.backend
        .propose(Command::SessionDestroy {
            id: id.clone(),
            now_ms: now_ms(),
        })
        .await?;
    a.session_timers.clear(&id);
    Ok(json_true())
}

async fn renew(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let (_, found) = super::run_read(&a, Read::SessionInfo { id: id.clone() }, &o).await?;
    let Some(s) = found.value.as_array().and_then(|a| a.first()).cloned() else {
        return Err(ApiError::not_found(format!("Session id '{id}' not found")));
    };
    if let Ok(Some(ttl)) = parse_session_ttl(s["TTL"].as_str().unwrap_or_default()) {
        a.backend.renew_session(&id, ttl).await?;
    }
    Ok(json_response(&vec![s], o.pretty))
}

async fn info(
    State(a): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    serve_read(&a, Read::SessionInfo { id }, &o).await
}

async fn node(
    State(a): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    serve_read(&a, Read::SessionNode { node }, &o).await
}

async fn list(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    serve_read(&a, Read::SessionList, &o).await
}
