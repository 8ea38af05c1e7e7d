//! `PUT /v1/txn`: all-or-nothing transactions over KV, nodes, services and checks.
//! Read-only transactions are answered from the state without going through the log.
//!
//! The body is read with verbs as text, then turned into typed operations: an unknown verb is
//! answered as Consul answers it (a 409 listing each such operation with `unknown KV verb
//! "x"`), while a body that is not well formed is a 400. Nothing with a bad verb is proposed.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::put;
use cairn_catalog::command::{
    CatalogVerb, KvVerb, TxnCheckOp, TxnError, TxnKvOp, TxnNodeOp, TxnOp, TxnServiceOp, UnknownVerb,
};
use cairn_catalog::model::{HealthCheck, Node, Service};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, Req, json_response, set_meta, token};
use crate::api::decode::decode;
use crate::api::{Write, WriteOp, Written};
use crate::server::query::Read;

/// Most operations in one transaction: Consul's `maxTxnOps` (its documented limit), so a
/// transaction Consul takes is taken here and one it refuses is refused with the same 413.
pub const MAX_OPS: usize = 128;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/txn", put(txn))
        .layer(DefaultBodyLimit::max(2 * 1024 * 1024))
}

/// One operation as the body spells it, its verb still text. Consul's `TxnOp` JSON is an
/// object with exactly one of `KV`, `Node`, `Service` or `Check`, which is serde's externally
/// tagged form.
#[derive(Debug, Deserialize)]
#[allow(clippy::large_enum_variant)] // short-lived: typed at once
enum BodyOp {
    #[serde(rename = "KV")]
    Kv(BodyKvOp),
    Node(BodyNodeOp),
    Service(BodyServiceOp),
    Check(BodyCheckOp),
}

/// A `KV` operation. Fields a verb does not use may be absent.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BodyKvOp {
    /// `set`, `cas`, `lock`, `get`, `delete-tree`, ... (Consul's KV verbs).
    verb: String,
    /// The key, or the prefix for the `-tree` verbs.
    key: String,
    /// The value, base64 as in every Consul KV JSON.
    #[serde(with = "cairn_catalog::model::b64_opt")]
    value: Option<Vec<u8>>,
    /// Opaque client flags stored with the key.
    flags: u64,
    /// The `ModifyIndex` that `cas`, `delete-cas` and `check-index` compare with.
    index: u64,
    /// The session for `lock`, `unlock` and `check-session`.
    session: String,
}

/// A `Node` operation: a verb and the node record it applies to.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BodyNodeOp {
    /// `set`, `cas`, `get`, `delete` or `delete-cas`.
    verb: String,
    /// The node; `ModifyIndex` is the compared index for the CAS verbs.
    node: Node,
}

/// A `Service` operation: unlike checks, a service record does not name its node, so the
/// node comes beside it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BodyServiceOp {
    /// As for nodes.
    verb: String,
    /// The node the instance is on.
    node: String,
    /// The instance.
    service: Service,
}

/// A `Check` operation (the check names its node and service itself).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BodyCheckOp {
    /// As for nodes.
    verb: String,
    /// The check.
    check: HealthCheck,
}

impl BodyOp {
    /// The typed operation, or Consul's error for its verb.
    fn typed(self) -> Result<TxnOp, UnknownVerb> {
        Ok(match self {
            BodyOp::Kv(o) => TxnOp::Kv(TxnKvOp {
                verb: KvVerb::parse(&o.verb)?,
                key: o.key,
                value: o.value,
                flags: o.flags,
                index: o.index,
                session: o.session,
            }),
            // The table's name goes into the error: `unknown Node verb "x"`.
            BodyOp::Node(o) => TxnOp::Node(TxnNodeOp {
                verb: CatalogVerb::parse(&o.verb, "Node")?,
                node: o.node,
            }),
            BodyOp::Service(o) => TxnOp::Service(TxnServiceOp {
                verb: CatalogVerb::parse(&o.verb, "Service")?,
                node: o.node,
                service: o.service,
            }),
            BodyOp::Check(o) => TxnOp::Check(TxnCheckOp {
                verb: CatalogVerb::parse(&o.verb, "Check")?,
                check: o.check,
            }),
        })
    }
}

/// Types every operation; the errors of those whose verb is unknown, by position, otherwise.
/// All of them are reported, not just the first, each with its `OpIndex`, so a client sees
/// every bad operation in one answer.
fn typed_ops(ops: Vec<BodyOp>) -> Result<Vec<TxnOp>, Vec<TxnError>> {
    let mut typed = Vec::with_capacity(ops.len());
    let mut errors = Vec::new();
    for (op_index, op) in ops.into_iter().enumerate() {
        match op.typed() {
            Ok(op) => typed.push(op),
            Err(e) => errors.push(TxnError {
                op_index,
                what: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(typed)
    } else {
        Err(errors)
    }
}

/// A rolled-back transaction's answer: 409 with the errors and no results. Clients tell a
/// rollback (a check that failed, a CAS that lost) from a bad request by this status.
fn rolled_back(errors: &[TxnError], pretty: bool) -> Response {
    let mut r = json_response(&json!({"Results": null, "Errors": errors}), pretty);
    *r.status_mut() = StatusCode::CONFLICT;
    r
}

/// `PUT /v1/txn`. In order: the datacenter, the size (Consul's 413 with the setting's link),
/// the body's form (400), the operation count (413), the verbs (409); then a read-only
/// transaction is read and any other one written.
async fn txn(
    State(a): State<AppState>,
    Req { p, o, .. }: Req,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // The length of the body as read; `Content-Length` is not consulted. (The datacenter is
    // checked where the transaction runs: `?dc=` sends it there.)
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
    let ops: Vec<BodyOp> = decode(&body)?;
    if ops.len() > MAX_OPS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_OPS})",
                ops.len()
            ),
        ));
    }
    let ops = match typed_ops(ops) {
        Ok(ops) => ops,
        Err(errors) => return Ok(rolled_back(&errors, o.pretty)),
    };
    // One write makes the whole transaction a write: its reads then run as the command is
    // applied, in order, and see what the transaction's earlier operations changed.
    if ops.iter().all(TxnOp::is_read) {
        // Read-only: evaluated by a server on a private copy of its state, nothing written.
        // It honours `?stale`/`?consistent` and answers the read metadata, as Consul's
        // read-only transactions do; it never blocks, so `?index` is dropped.
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
    // Anything that writes goes through Raft as one command: all or nothing.
    let w = Write::new(WriteOp::Txn { ops })
        .in_dc(o.dc.as_deref())
        .with_token(token(&headers, &p));
    let (_, written) = a.backend.write(w).await?;
    let Written::Txn { results, errors } = written else {
        return Err(ApiError::internal("unexpected transaction response"));
    };
    if !errors.is_empty() {
        return Ok(rolled_back(&errors, o.pretty));
    }
    Ok(json_response(
        &json!({"Results": results, "Errors": null}),
        o.pretty,
    ))
}

#[cfg(test)]
mod null_tests {
    use super::*;

    /// Go's client sends every op as a `TxnOp` struct, the three unused kinds as `null`.
    #[test]
    fn null_members_are_absent() {
        crate::api::decode::assert_null_is_absent::<Vec<BodyOp>>(serde_json::json!([
            {"KV": {"Verb": "set", "Key": "k", "Value": "dg==", "Flags": 1, "Index": 2, "Session": "s"}},
            {"Node": {"Verb": "set", "Node": {"ID": "", "Node": "n", "Address": "1.2.3.4",
                "TaggedAddresses": {"lan": "1.2.3.4"}, "Meta": {"k": "v"}}}},
            {"Service": {"Verb": "set", "Node": "n", "Service": {"ID": "s", "Service": "web",
                "Tags": ["a"], "Meta": {"k": "v"}, "Port": 80}}},
            {"Check": {"Verb": "set", "Check": {"Node": "n", "CheckID": "c", "Name": "c",
                "ServiceTags": ["a"], "Definition": {"HTTP": "http://x", "Header": {"X": ["y"]}}}}}
        ]));
        let ops: Vec<BodyOp> = crate::api::decode::decode(
            br#"[{"KV": {"Verb": "get", "Key": "k"}, "Node": null, "Service": null, "Check": null}]"#,
        )
        .expect("Go's TxnOp shape");
        assert!(matches!(ops.as_slice(), [BodyOp::Kv(_)]));
    }
}
