//! `/v1/snapshot`: a consistent point-in-time copy of the whole state (`GET`), and its
//! restore into the cluster (`PUT`), replicated as one Raft command.
//!
//! The archive is Cairn's checksummed snapshot format (magic, version, SHA-256, payload), not
//! Consul's tar: clients treat it as opaque bytes, and `cairn snapshot inspect` reads it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_catalog::Command;
use cairn_catalog::snapshot;

use super::error::ApiError;
use super::{AppState, check_dc, query, run_read, set_meta};
use crate::server::query::Read;

/// Largest snapshot accepted by `PUT` (the request is held in memory while it is applied).
pub const MAX_SNAPSHOT: usize = 1024 * 1024 * 1024;

/// Archives up to this size travel as one Raft entry; larger ones in pieces of this size
/// (`Command::RestoreChunk`), staged in the replicated state, then swapped in at once.
/// Small enough for one piece to replicate within a heartbeat interval.
pub const RESTORE_PIECE: usize = 1024 * 1024;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/snapshot", get(save).put(restore))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SNAPSHOT + 1))
}

async fn save(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (_, mut o) = query(q.as_deref())?;
    o.read.min_index = 0;
    let (meta, value) = run_read(&a, Read::Snapshot, &o).await?;
    let b64 = value.value.as_str().unwrap_or_default();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
        .map_err(|e| ApiError::internal(format!("malformed snapshot from the server: {e}")))?;
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

async fn restore(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    if body.len() > MAX_SNAPSHOT {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({} bytes) too large, max size: {MAX_SNAPSHOT} bytes",
                body.len()
            ),
        ));
    }
    // Refuse damaged archives here, before they reach the log.
    snapshot::read(&body).map_err(|e| ApiError::bad_request(format!("Invalid snapshot: {e}")))?;
    if body.len() <= RESTORE_PIECE {
        a.backend
            .propose(Command::Restore {
                data: body.to_vec(),
            })
            .await?;
    } else {
        restore_in_pieces(&a, &body).await?;
    }
    Ok(axum::http::StatusCode::OK.into_response())
}

/// Proposes a large archive piece by piece, then the swap; on failure the staged pieces are
/// dropped.
async fn restore_in_pieces(a: &AppState, body: &[u8]) -> Result<(), ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let total = body.len();
    let pieces = total.div_ceil(RESTORE_PIECE);
    tracing::info!(restore = %id, bytes = total, pieces, "restoring a snapshot in pieces");
    let started = std::time::Instant::now();
    let mut last_report = started;
    let result = async {
        for (n, piece) in body.chunks(RESTORE_PIECE).enumerate() {
            a.backend
                .propose(Command::RestoreChunk {
                    id: id.clone(),
                    offset: (n * RESTORE_PIECE) as u64,
                    data: piece.to_vec(),
                })
                .await?;
            if last_report.elapsed() >= std::time::Duration::from_secs(2) {
                last_report = std::time::Instant::now();
                tracing::info!(restore = %id, piece = n + 1, pieces, "restore progress");
            }
        }
        a.backend
            .propose(Command::RestoreFinish {
                id: id.clone(),
                len: total as u64,
            })
            .await
    }
    .await;
    match result {
        Ok(_) => {
            tracing::info!(
                restore = %id,
                seconds = started.elapsed().as_secs_f64(),
                "snapshot restored"
            );
            Ok(())
        }
        Err(e) => {
            if let Err(abort) = a
                .backend
                .propose(Command::RestoreAbort { id: id.clone() })
                .await
            {
                tracing::warn!(restore = %id, error = %abort, "could not drop the staged pieces");
            }
            Err(e.into())
        }
    }
}
