//! `/v1/session/*`: sessions, the liveness handles behind KV locks.
//!
//! A session ties locks to the health of a node (its `serfHealth` by default), to chosen
//! checks, and optionally to a TTL that its holder must renew; when any of them fails, the
//! session is invalidated and its locks released (or its keys deleted). Creation and
//! destruction are replicated writes; a renewal is not (see `renew`).

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, put};
use cairn_catalog::model::ServiceCheckRef;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, Req, json_response, json_true, serve_read, token};
use crate::api::decode::decode_value;
use crate::api::write::SessionSpec;
use crate::api::{Write, WriteOp, Written};
use crate::local::defs::RawDuration;
use crate::server::query::Read;
use crate::server::stored_session_ttl;

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

/// The body of `PUT /v1/session/create`, as Consul's clients send it. Absent and empty are
/// told apart where Consul tells them apart: no `NodeChecks` means `serfHealth`, while
/// `"NodeChecks": []` means none.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    /// A label for people; not unique.
    name: String,
    /// The node whose health the session follows; empty for the agent's own.
    node: String,
    /// How long a lock released by this session's end stays unavailable to others.
    lock_delay: Option<RawDuration>,
    /// `release` (Consul's default) or `delete`, checked by the server.
    behavior: String,
    /// A Go duration between 10s and 24h, or empty for no TTL.
    #[serde(rename = "TTL")]
    ttl: String,
    /// Node checks the session depends on.
    node_checks: Option<Vec<String>>,
    /// Consul's older name of `NodeChecks`, still accepted.
    checks: Option<Vec<String>>,
    /// Service checks the session depends on.
    service_checks: Option<Vec<ServiceCheckRef>>,
}

/// A lock delay as Consul reads it: small bare numbers are seconds, larger ones nanoseconds,
/// strings Go durations (the endpoint applies the default and the bound).
fn lock_delay(v: &Option<RawDuration>) -> Result<Option<u64>, ApiError> {
    let d = match v {
        None => return Ok(None),
        // Consul's threshold (`lockDelayMinThreshold`): a bare number this small is taken for
        // seconds, since a client sending `5` means five seconds, not five nanoseconds.
        Some(RawDuration::Num(n)) if *n < 1000 => Duration::from_secs(*n),
        Some(RawDuration::Num(n)) => Duration::from_nanos(*n),
        Some(RawDuration::Str(s)) if s.is_empty() => return Ok(None),
        Some(RawDuration::Str(s)) => cairn_catalog::duration::parse_go_duration(s)
            .map_err(|e| ApiError::bad_request(format!("Invalid LockDelay: {e}")))?,
    };
    Ok(Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
}

/// The body with `"NodeChecks": null` or `"Checks": null` turned into `[]`.
///
/// Elsewhere `null` is absent (see `crate::api::decode`), but Consul's handler pre-fills these
/// two with `serfHealth` before decoding, and Go's decoder sets a slice to nil on `null`: so
/// `null` here means "no checks", not "the default".
fn checks_null_is_none(body: &[u8]) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    if let Value::Object(m) = &mut v {
        for (k, val) in m.iter_mut() {
            let folded = crate::api::decode::fold(k);
            if val.is_null() && (folded == "nodechecks" || folded == "checks") {
                *val = Value::Array(Vec::new());
            }
        }
    }
    Ok(v)
}

/// `PUT /v1/session/create`: answers `{"ID": "<uuid>"}`. The body is optional: an empty one
/// takes every default, as in Consul.
async fn create(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        decode_value(checks_null_is_none(&body)?)?
    };
    let spec = SessionSpec {
        name: b.name,
        // A session belongs to the node of the agent that was asked, unless it names one.
        node: if b.node.is_empty() {
            a.node.name.clone()
        } else {
            b.node
        },
        lock_delay_ns: lock_delay(&b.lock_delay)?,
        behavior: b.behavior,
        ttl: b.ttl,
        // The current name wins when a client sends both.
        node_checks: b.node_checks.or(b.checks),
        service_checks: b.service_checks.unwrap_or_default(),
    };
    let w = Write::new(WriteOp::SessionCreate(spec))
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    let (_, written) = a.backend.write(w).await?;
    let Written::Id(id) = written else {
        return Err(ApiError::internal("the session was created without an ID"));
    };
    Ok(json_response(&json!({"ID": id}), o.pretty))
}

/// `PUT /v1/session/destroy/:id`: ends a session and applies its behaviour to its locks.
/// Answers `true`, for an unknown session too, as Consul.
async fn destroy(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let w = Write::new(WriteOp::SessionDestroy { id })
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    a.backend.write(w).await?;
    Ok(json_true())
}

/// `PUT /v1/session/renew/:id`: restarts a session's TTL, answering the session as a
/// one-element list (Consul's shape) or Consul's 404 text.
///
/// TTL timers are the leader's in-memory duty, not replicated state, so a renewal is no Raft
/// write: the session is read (to know it exists and its TTL), then the leader's timer is
/// reset. A session without a TTL has nothing to reset and is just answered. With `?dc=` both
/// happen in that datacenter.
async fn renew(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    let (_, found) = super::run_read(&a, Read::SessionInfo { id: id.clone() }, &o).await?;
    let session = match &found.reply {
        crate::api::Reply::Sessions(s) => s.first().cloned(),
        other => return Err(crate::api::read::unexpected("Sessions", other).into()),
    };
    let Some(s) = session else {
        return Err(ApiError::not_found(format!("Session id '{id}' not found")));
    };
    a.authorize()
        .await?
        .require(crate::acl::Access::SessionWrite(&s.node))?;
    // The TTL was checked when the session was created; one that does not parse now is
    // treated like no TTL.
    if let Ok(Some(ttl)) = stored_session_ttl(&s.ttl) {
        a.backend.renew_session(o.dc.as_deref(), &id, ttl).await?;
    }
    Ok(json_response(
        &vec![super::render::session_json(&s)],
        o.pretty,
    ))
}

/// `GET /v1/session/info/:id`: a list of the one session, or `[]` when unknown (blocking).
async fn info(
    State(a): State<AppState>,
    Path(id): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    serve_read(&a, Read::SessionInfo { id }, &o).await
}

/// `GET /v1/session/node/:node`: the sessions of a node (blocking).
async fn node(
    State(a): State<AppState>,
    Path(node): Path<String>,
    Req { o, .. }: Req,
) -> Result<Response, ApiError> {
    serve_read(&a, Read::SessionNode { node }, &o).await
}

/// `GET /v1/session/list`: every session (blocking).
async fn list(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    serve_read(&a, Read::SessionList, &o).await
}

#[cfg(test)]
mod null_tests {
    use super::*;

    /// `null` is absent, except in `NodeChecks` and `Checks`, where it is "no checks" (Consul
    /// pre-fills them with `serfHealth` and Go's decoder sets them to nil).
    #[test]
    fn null_members_are_absent_but_null_checks_are_none() {
        crate::api::decode::assert_null_is_absent::<CreateBody>(serde_json::json!({
            "Name": "lock", "Node": "n", "LockDelay": "15s", "Behavior": "delete", "TTL": "30s",
            "ServiceChecks": [{"ID": "c", "Namespace": ""}]
        }));
        for body in [&br#"{"NodeChecks": null}"#[..], br#"{"checks": null}"#] {
            let b: CreateBody =
                decode_value(checks_null_is_none(body).expect("json")).expect("decodes");
            let checks = b.node_checks.or(b.checks);
            assert_eq!(checks, Some(Vec::new()));
        }
        let b: CreateBody =
            decode_value(checks_null_is_none(b"{}").expect("json")).expect("decodes");
        assert_eq!(b.node_checks, None, "absent: the default (serfHealth)");
    }
}
