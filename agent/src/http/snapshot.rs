//! `/v1/snapshot`: a consistent point-in-time copy of the whole state (`GET`), and its
//! restore into the cluster (`PUT`), replicated as one Raft command.
//!
//! The archive is Cairn's checksummed snapshot format (magic, version, SHA-256, payload), not
//! Consul's tar: clients treat it as opaque bytes, and `cairn snapshot inspect` reads it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::{AppState, Req, query, run_read, set_meta, token};
use crate::server::query::Read;

/// Largest snapshot accepted by `PUT` (the request is held in memory while it is applied).
/// The only route allowed a body this large: `super::service` reads up to this much for
/// `/v1/snapshot` and no more than the usual limits elsewhere.
pub const MAX_SNAPSHOT: usize = 1024 * 1024 * 1024;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/snapshot", get(save).put(restore))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SNAPSHOT + 1))
}

/// `GET /v1/snapshot`: the archive as `application/octet-stream`, with the read metadata
/// (`X-Consul-Index` is the state's index). Never blocks: `?index` is dropped. `?stale` lets
/// any server answer, which is how to save a snapshot without a leader, as in Consul.
async fn save(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (_, mut o) = query(q.as_deref())?;
    o.read.min_index = 0;
    let (meta, answer) = run_read(&a, Read::Snapshot, &o).await?;
    let bytes = match &answer.reply {
        crate::api::Reply::Snapshot(b) => b.clone(),
        other => return Err(crate::api::read::unexpected("Snapshot", other).into()),
    };
    let mut r = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response();
    set_meta(r.headers_mut(), &meta);
    Ok(r)
}

/// `PUT /v1/snapshot`: the body is an archive from `GET`. It is checked (magic, version,
/// checksum) before anything is written, then replaces the whole state on every server
/// (`Backend::restore_archive`). An empty 200, as Consul. A disaster-recovery tool: indexes
/// may go backwards afterwards, which blocking clients handle by starting over from 0.
async fn restore(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_SNAPSHOT {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({} bytes) too large, max size: {MAX_SNAPSHOT} bytes",
                body.len()
            ),
        ));
    }
    a.backend
        .restore_archive(&body, o.dc.as_deref(), token(&headers, &p))
        .await?;
    Ok(axum::http::StatusCode::OK.into_response())
}
