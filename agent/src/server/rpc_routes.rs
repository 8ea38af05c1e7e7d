//! The routes a server answers on its server port: Raft's messages, typed writes and reads
//! (forwarded by followers and client agents), status and operator calls. They decode the
//! request, call the server and encode its typed reply or error; the transport underneath is
//! `crate::rpc::transport`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cairn_raft::TypeConfig;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Server;
use crate::api::{Error, Write};
use crate::rpc::{MAX_RPC_BODY, RPC_HEADER, RPC_VERSION, ReadReply, RenewRequest, ServerStatus};

type S = Arc<Server>;

/// The RPC router of a server; `dns` answers the DNS queries client agents hand over.
pub fn router(server: S, dns: crate::rpc::DnsFn) -> Router {
    Router::new()
        .route(
            "/v1/internal/dns",
            post(move |body: Bytes| {
                let dns = std::sync::Arc::clone(&dns);
                async move {
                    match parse::<crate::rpc::DnsRequest>(&body) {
                        Ok(req) => ok(&dns(&req)),
                        Err(r) => *r,
                    }
                }
            }),
        )
        .route("/v1/internal/raft/append", post(append))
        .route("/v1/internal/raft/vote", post(vote))
        .route(
            crate::server::prevote::PATH,
            post(crate::server::prevote::handle),
        )
        .route("/v1/internal/raft/snapshot", post(snapshot))
        .route("/v1/internal/write", post(write))
        .route("/v1/internal/write-leader", post(write_leader))
        .route("/v1/internal/read", post(read))
        .route("/v1/internal/status", post(status))
        .route("/v1/internal/session/renew", post(renew))
        .route("/v1/internal/raft/remove-peer", post(remove_peer))
        .route("/v1/internal/raft/transfer", post(transfer))
        .route("/v1/internal/raft/campaign", post(campaign))
        .layer(DefaultBodyLimit::max(MAX_RPC_BODY))
        .layer(middleware::from_fn(check_version))
        .with_state(server)
}

async fn check_version(req: Request, next: Next) -> Response {
    let ok = req.headers().get(RPC_HEADER).and_then(|v| v.to_str().ok()) == Some(RPC_VERSION);
    if !ok {
        return fail(&Error::Invalid(format!(
            "unsupported RPC protocol: this server speaks version {RPC_VERSION}"
        )));
    }
    next.run(req).await
}

/// An error reply: the typed error as JSON under a non-success status (the status only tells
/// the client to decode an error; the error itself says what happened).
fn fail(e: &Error) -> Response {
    match serde_json::to_vec(e) {
        Ok(body) => (StatusCode::INTERNAL_SERVER_ERROR, body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn ok<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (StatusCode::OK, b).into_response(),
        Err(e) => fail(&Error::Internal(format!("failed to encode reply: {e}"))),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(fail(&Error::Invalid(format!("malformed RPC request: {e}")))))
}

async fn append(State(s): State<S>, body: Bytes) -> Response {
    let req: AppendEntriesRequest<TypeConfig> = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let res = s.raft().append_entries(req).await;
    if res.is_ok() {
        s.touch_leader_contact();
    }
    ok(&res)
}

async fn vote(State(s): State<S>, body: Bytes) -> Response {
    let req: VoteRequest<u64> = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    ok(&s.raft().vote(req).await)
}

async fn snapshot(State(s): State<S>, body: Bytes) -> Response {
    let req: InstallSnapshotRequest<TypeConfig> = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    s.touch_leader_contact();
    ok(&s.raft().install_snapshot(req).await)
}

/// A write from a client agent (or a server's own HTTP edge): forwarded to the leader here
/// when this server does not lead.
async fn write(State(s): State<S>, body: Bytes) -> Response {
    let w: Write = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.write(w).await {
        Ok(r) => ok(&r),
        Err(e) => fail(&e),
    }
}

/// A write forwarded by a follower: run here, never forwarded again.
async fn write_leader(State(s): State<S>, body: Bytes) -> Response {
    let w: Write = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.write_here(&w).await {
        Ok(r) => ok(&r),
        Err(e) => fail(&e),
    }
}

async fn read(State(s): State<S>, body: Bytes) -> Response {
    let q: crate::api::Query = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.query(&q).await {
        Ok((meta, answer)) => ok(&ReadReply {
            meta,
            reply: answer.reply.clone(),
        }),
        Err(e) => fail(&e),
    }
}

async fn status(State(s): State<S>) -> Response {
    let status: ServerStatus = s.status().await;
    ok(&status)
}

async fn renew(State(s): State<S>, body: Bytes) -> Response {
    let req: RenewRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s
        .renew_session(&req.id, Duration::from_millis(req.ttl_ms))
        .await
    {
        Ok(()) => ok(&()),
        Err(e) => fail(&e),
    }
}

async fn remove_peer(State(s): State<S>, body: Bytes) -> Response {
    let req: crate::rpc::PeerRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.remove_peer(&req).await {
        Ok(()) => ok(&()),
        Err(e) => fail(&e),
    }
}

async fn transfer(State(s): State<S>, body: Bytes) -> Response {
    let req: crate::rpc::PeerRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s.transfer_leader(&req).await {
        Ok(addr) => ok(&addr),
        Err(e) => fail(&e),
    }
}

async fn campaign(State(s): State<S>) -> Response {
    match s.campaign().await {
        Ok(()) => ok(&()),
        Err(e) => fail(&e),
    }
}
