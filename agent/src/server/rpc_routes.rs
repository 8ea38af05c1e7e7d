//! The routes a server answers on its server port: Raft's messages, typed writes and reads
//! (forwarded by followers and client agents), status and operator calls. They decode the
//! request, call the server and encode its typed reply or error; the transport underneath is
//! `crate::rpc::transport`.
//!
//! Every route is a POST of JSON under `/v1/internal/`, guarded by the protocol version header and
//! a body limit. Replies are the typed value with 200, or a serialized `api::Error` under an error
//! status: the client decides on the error's variant, never on the status or a message text.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
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

/// The router's state: every handler works on the shared server role.
type S = Arc<Server>;

/// The RPC router of a server; `dns` answers the DNS queries client agents hand over, `event`
/// fires user events in this datacenter's LAN pool.
pub fn router(server: S, dns: crate::rpc::DnsFn, event: crate::rpc::EventFn) -> Router {
    let fire = {
        let server = Arc::clone(&server);
        move |body: Bytes| {
            let event = Arc::clone(&event);
            let server = Arc::clone(&server);
            async move {
                let req = match parse::<crate::rpc::EventRequest>(&body) {
                    Ok(r) => r,
                    Err(r) => return *r,
                };
                let fired = match req.dc.as_deref() {
                    Some(dc) if !server.router.is_local(dc) => {
                        server.event_remote(dc, req.event).await
                    }
                    _ => event(req.event).await,
                };
                match fired {
                    Ok(ev) => ok(&ev),
                    Err(e) => fail(&e),
                }
            }
        }
    };
    Router::new()
        .route("/v1/internal/event", post(fire))
        .route(
            "/v1/internal/dns",
            post(move |body: Bytes| {
                let dns = std::sync::Arc::clone(&dns);
                async move {
                    match parse::<crate::rpc::DnsRequest>(&body) {
                        Ok(req) => ok(&dns(req).await),
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
        // Two write routes: `write` may forward to the leader, `write-leader` never does, so a
        // forwarded write makes at most one hop and two servers that disagree about the leader
        // cannot bounce it between them.
        .route("/v1/internal/write", post(write))
        .route("/v1/internal/write-leader", post(write_leader))
        .route("/v1/internal/read", post(read))
        .route("/v1/internal/status", post(status))
        .route("/v1/internal/datacenters", post(datacenters))
        .route("/v1/internal/acl/resolve", post(acl_resolve))
        .route("/v1/internal/session/renew", post(renew))
        .route("/v1/internal/raft/remove-peer", post(remove_peer))
        .route("/v1/internal/raft/transfer", post(transfer))
        .route("/v1/internal/raft/campaign", post(campaign))
        // Raised from axum's 2 MiB default: snapshot installs and appends carry up to
        // `MAX_RPC_BODY`.
        .layer(DefaultBodyLimit::max(MAX_RPC_BODY))
        // Outermost: a request of another protocol version is refused before its body is read or
        // decoded.
        .layer(middleware::from_fn(check_version))
        // Outermost of all: a server-only call from a peer that is not a server is refused
        // before anything else (see `crate::rpc::listener`).
        .layer(middleware::from_fn(crate::rpc::listener::require_server))
        .with_state(server)
}

/// Refuses requests without this build's `X-Cairn-Rpc` version: servers of incompatible versions
/// must fail loudly rather than misread each other's messages.
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

/// A success reply: the typed value as JSON under 200.
fn ok<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (StatusCode::OK, b).into_response(),
        Err(e) => fail(&Error::Internal(format!("failed to encode reply: {e}"))),
    }
}

/// Decodes a request body; a malformed one is answered with `Invalid`. The error response is boxed
/// only to keep the `Result` small (clippy's `result_large_err`).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(fail(&Error::Invalid(format!("malformed RPC request: {e}")))))
}

/// The Raft ID a Raft message is meant for (`?target=`), when the sender named one.
#[derive(serde::Deserialize)]
struct Target {
    target: Option<u64>,
}

/// Refuses a Raft message meant for another server (its address now leads here) as if this
/// server could not be reached: the sender backs off and finds the right address through gossip.
fn misdirected(s: &S, t: &Target) -> Option<Response> {
    let to = t.target?;
    (to != s.node_id()).then(|| {
        fail(&Error::Unavailable(format!(
            "misdirected Raft message: this server's Raft ID is {}, not {to}",
            s.node_id()
        )))
    })
}

/// Raft's append (entries and heartbeats). openraft's own result, error included, is the reply
/// body: the Raft network on the other side decodes it as openraft expects.
async fn append(State(s): State<S>, Query(t): Query<Target>, body: Bytes) -> Response {
    if let Some(r) = misdirected(&s, &t) {
        return r;
    }
    let req: AppendEntriesRequest<TypeConfig> = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let res = s.raft().append_entries(req).await;
    // Leader contact feeds `?stale`'s `LastContact`, `?max_stale` and the pre-vote silence check;
    // counted only once openraft has processed the message.
    if res.is_ok() {
        s.touch_leader_contact();
    }
    ok(&res)
}

/// Raft's vote. A vote request does not count as leader contact.
async fn vote(State(s): State<S>, Query(t): Query<Target>, body: Bytes) -> Response {
    if let Some(r) = misdirected(&s, &t) {
        return r;
    }
    let req: VoteRequest<u64> = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    ok(&s.raft().vote(req).await)
}

/// A chunk of a snapshot the leader installs on this follower: only a leader sends one, so it
/// counts as contact even before the chunk is installed (a long transfer must not look like silence
/// and start an election).
async fn snapshot(State(s): State<S>, Query(t): Query<Target>, body: Bytes) -> Response {
    if let Some(r) = misdirected(&s, &t) {
        return r;
    }
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

/// A read forwarded with its options: this server blocks as asked (the caller's timeout covers the
/// wait), then sends the typed reply, not its rendering.
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

/// What this server knows of Raft; used by `-bootstrap-expect` to learn whether a peer already
/// belongs to a cluster, and by client agents for `/v1/status` and operator views.
async fn status(State(s): State<S>, body: Bytes) -> Response {
    // `()` (JSON `null`) from callers that ask for this server's own status.
    let req: crate::rpc::StatusRequest = serde_json::from_slice(&body).unwrap_or_default();
    match s.status_in(req.dc.as_deref()).await {
        Ok(status) => ok::<ServerStatus>(&status),
        Err(e) => fail(&e),
    }
}

/// The datacenters this server knows from its WAN pool (client agents' `/v1/catalog/datacenters`).
async fn datacenters(State(s): State<S>) -> Response {
    ok(&s.router.datacenters())
}

/// A token's permissions, for a client agent that authorizes its own endpoints.
async fn acl_resolve(State(s): State<S>, body: Bytes) -> Response {
    let token: Option<crate::api::Token> = match parse(&body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match s
        .acl()
        .describe(&s.state(), token.as_ref(), crate::server::now_ms())
    {
        Ok(r) => ok(&r),
        Err(e) => fail(&e),
    }
}

/// A session renewal: TTL timers live on the leader, which this server is or forwards to.
async fn renew(State(s): State<S>, body: Bytes) -> Response {
    let req: RenewRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match s
        .renew_session_in(
            req.dc.as_deref(),
            &req.id,
            Duration::from_millis(req.ttl_ms),
        )
        .await
    {
        Ok(()) => ok(&()),
        Err(e) => fail(&e),
    }
}

/// `operator raft remove-peer`, run on (or forwarded to) the leader.
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

/// `operator raft transfer-leader`: answers the new leader's RPC address once it leads.
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

/// Sent by a leader transferring leadership to this server: start an election now.
async fn campaign(State(s): State<S>) -> Response {
    match s.campaign().await {
        Ok(()) => ok(&()),
        Err(e) => fail(&e),
    }
}
