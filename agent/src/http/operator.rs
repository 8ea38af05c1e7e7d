//! `/v1/operator/*`: Raft configuration and autopilot health, as the servers see them.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, check_dc, json_response, query};

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/raft/configuration", get(raft_configuration))
        .route("/v1/operator/raft/peer", axum::routing::delete(remove_peer))
        .route(
            "/v1/operator/raft/transfer-leader",
            axum::routing::post(transfer_leader),
        )
        .route("/v1/operator/autopilot/health", get(autopilot_health))
        .route("/v1/operator/usage", get(usage))
}

/// Service, instance and node counts of this datacenter, with the query metadata in the body
/// as Consul's answer has it.
async fn usage(State(a): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    let (meta, answer) = super::run_read(&a, crate::server::query::Read::Usage, &o).await?;
    let mut per_dc = serde_json::Map::new();
    per_dc.insert(a.backend.datacenter().to_string(), answer.value.clone());
    let body = json!({
        "Usage": per_dc,
        "Index": meta.index,
        "LastContact": meta.last_contact_ms,
        "KnownLeader": meta.known_leader,
        "ConsistencyLevel": match o.consistency {
            super::params::Consistency::Stale => "stale",
            super::params::Consistency::Consistent => "consistent",
            super::params::Consistency::Leader => "leader",
        },
        "NotModified": false,
        "Backend": 0,
        "ResultsFilteredByACLs": false,
    });
    let mut r = json_response(&body, o.pretty);
    super::set_meta(r.headers_mut(), &meta);
    Ok(r)
}

async fn raft_configuration(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let st = a.backend.status().await?;
    let servers: Vec<_> = st
        .servers
        .iter()
        .map(|s| {
            json!({
                "ID": s.id,
                "Node": s.node,
                "Address": s.address,
                "Leader": s.leader,
                "Voter": s.voter,
                "ProtocolVersion": "3",
            })
        })
        .collect();
    Ok(json_response(
        &json!({"Servers": servers, "Index": st.last_index}),
        o.pretty,
    ))
}

async fn autopilot_health(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let st = a.backend.status().await?;
    let alive: Vec<String> = a
        .gossip
        .members()
        .iter()
        .filter(|m| m.status == cairn_gossip::MemberStatus::Alive)
        .map(|m| m.name.clone())
        .collect();
    let servers: Vec<_> = st
        .servers
        .iter()
        .map(|s| {
            let healthy = alive.contains(&s.node);
            json!({
                "ID": s.id,
                "Name": s.node,
                "Address": s.address,
                "SerfStatus": if healthy { "alive" } else { "failed" },
                "Version": super::agent_api::CONSUL_COMPAT_VERSION,
                "Leader": s.leader,
                "LastContact": "0s",
                "LastTerm": 0,
                "LastIndex": st.last_index,
                "Healthy": healthy,
                "Voter": s.voter,
                "StableSince": "",
            })
        })
        .collect();
    let voters = st.servers.iter().filter(|s| s.voter).count();
    let healthy_voters = st
        .servers
        .iter()
        .filter(|s| s.voter && alive.contains(&s.node))
        .count();
    let quorum = voters / 2 + 1;
    let healthy = healthy_voters >= quorum && st.leader.is_some();
    let tolerance = healthy_voters.saturating_sub(quorum);
    let mut resp = json_response(
        &json!({"Healthy": healthy, "FailureTolerance": tolerance, "Servers": servers}),
        o.pretty,
    );
    if !healthy {
        *resp.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(resp)
}

fn peer_request(p: &super::params::Params) -> crate::rpc::PeerRequest {
    crate::rpc::PeerRequest {
        id: p.get("id").unwrap_or_default().to_string(),
        address: p.get("address").unwrap_or_default().to_string(),
    }
}

async fn remove_peer(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (p, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let req = peer_request(&p);
    if req.id.is_empty() == req.address.is_empty() {
        return Err(ApiError::bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        ));
    }
    a.backend.remove_peer(&req).await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

async fn transfer_leader(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (p, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    a.backend.transfer_leader(&peer_request(&p)).await?;
    Ok(json_response(&json!({"Success": true}), o.pretty))
}
