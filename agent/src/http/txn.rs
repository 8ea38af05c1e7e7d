//! `PUT /v1/txn`: all-or-nothing transactions over KV, nodes, services and checks.
//! Read-only transactions are answered from the state without going through the log.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::put;
use cairn_catalog::command::TxnOp;
use serde_json::json;

use super::decode::decode;
use super::error::ApiError;
use super::{AppState, check_dc, json_response, query, set_meta, token};
use crate::api::{Write, WriteOp, Written};
use crate::server::query::Read;

/// Most operations in one transaction.
pub const MAX_OPS: usize = 128;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/txn", put(txn))
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024))
}

fn is_read(op: &TxnOp) -> bool {
    let verb = match op {
        TxnOp::Kv(o) => o.verb.as_str(),
        TxnOp::Node(o) => o.verb.as_str(),
        TxnOp::Service(o) => o.verb.as_str(),
        TxnOp::Check(o) => o.verb.as_str(),
    };
    matches!(
        verb,
        "get" | "get-or-empty" | "get-tree" | "check-index" | "check-session" | "check-not-exists"
    )
}

async fn txn(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (p, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let max = a.config().limits.txn_max_req_len;
    if body.len() as u64 > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/consul/docs/agent/config/config-files#txn_max_req_len.",
                body.len()
            ),
        ));
    }
    let ops: Vec<TxnOp> = decode(&body)?;
    if ops.len() > MAX_OPS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_OPS})",
                ops.len()
            ),
        ));
    }
    if ops.iter().all(is_read) {
        // Read-only: evaluated by a server on a private copy of its state, nothing written.
        let mut o = o;
        o.read.min_index = 0;
        let read = Read::Txn { ops };
        let (meta, answer) = super::run_read(&a, read.clone(), &o).await?;
        let failed = match &answer.reply {
            crate::api::Reply::Txn(t) => !t.errors.is_empty(),
            other => return Err(crate::api::read::unexpected("Txn", other).into()),
        };
        let mut r = json_response(&super::render::render(&read, &answer.reply), o.pretty);
        if failed {
            *r.status_mut() = StatusCode::CONFLICT;
        }
        set_meta(r.headers_mut(), &meta);
        return Ok(r);
    }
    let w = Write::new(WriteOp::Txn { ops })
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    let (_, written) = a.backend.write(w).await?;
    let Written::Txn { results, errors } = written else {
        return Err(ApiError::internal("unexpected transaction response"));
    };
    let failed = !errors.is_empty();
    let body = if failed {
        json!({"Results": null, "Errors": errors})
    } else {
        json!({"Results": results, "Errors": null})
    };
    let mut r = json_response(&body, o.pretty);
    if failed {
        *r.status_mut() = StatusCode::CONFLICT;
    }
    Ok(r)
}
