//! `PUT /v1/txn`: all-or-nothing transactions over KV, nodes, services and checks.
//! Read-only transactions are answered from the state without going through the log.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::put;
use cairn_catalog::command::TxnOp;
use cairn_catalog::{Command, Response as CmdResponse, State as CatalogState};
use serde_json::json;

use super::decode::decode;
use super::error::ApiError;
use super::params::Consistency;
use super::{AppState, check_dc, json_response, query, set_meta};
use crate::server::{ReadMeta, now_ms};

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
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
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
    let read_only = ops.iter().all(is_read);
    let cmd = Command::Txn {
        ops,
        now_ms: now_ms(),
    };
    let (index, response) = if read_only {
        // Evaluate on a private copy: nothing is written.
        let st = a.server.state();
        let mut scratch = CatalogState::clone(&st);
        let idx = scratch.last_index() + 1;
        let applied = scratch.apply(idx, &cmd);
        (st.last_index(), applied.result?)
    } else {
        a.server.propose(cmd).await?
    };
    let CmdResponse::Txn { results, errors } = response else {
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
    if read_only {
        let meta = ReadMeta {
            index,
            known_leader: a.server.leader().is_some(),
            last_contact_ms: 0,
            consistency: if o.consistency == Consistency::Stale {
                Consistency::Stale
            } else {
                o.consistency
            },
        };
        set_meta(r.headers_mut(), &meta);
    }
    Ok(r)
}
