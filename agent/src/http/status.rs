//! `/v1/status/*`: the Raft leader and peers.
//!
//! Addresses are servers' Raft RPC addresses (`ip:8300`), as Consul's. Clients use these to
//! tell whether the cluster has a leader, so both answer from the Raft view of this agent's
//! server role, or of a server of the pool on a client agent.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use super::Req;
use super::error::ApiError;
use super::{AppState, json_response};

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
}

/// `GET /v1/status/leader`: the leader's address as a JSON string, `""` while there is none.
async fn leader(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    let leader = a
        .backend
        .status_in(o.dc.as_deref())
        .await?
        .leader
        .unwrap_or_default();
    Ok(json_response(&leader, o.pretty))
}

/// `GET /v1/status/peers`: the voters' addresses (non-voters are not peers here, as in
/// Consul).
async fn peers(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    let peers = a.backend.status_in(o.dc.as_deref()).await?.voters;
    Ok(json_response(&peers, o.pretty))
}
