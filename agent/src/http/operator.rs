//! `/v1/operator/*`: Raft configuration and autopilot health, as the servers see them.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, check_dc, json_response, query};

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/raft/configuration", get(raft_configuration))
        .route("/v1/operator/autopilot/health", get(autopilot_health))
}

async fn raft_configuration(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let leader = a.server.leader();
    let servers: Vec<_> = a
        .server
        .peers()
        .iter()
        .map(|p| {
            json!({
                "ID": a.node.id,
                "Node": a.node.name,
                "Address": p.to_string(),
                "Leader": Some(*p) == leader,
                "Voter": true,
                "ProtocolVersion": "3",
            })
        })
        .collect();
    Ok(json_response(
        &json!({"Servers": servers, "Index": a.server.state().last_index()}),
        o.pretty,
    ))
}

async fn autopilot_health(
    State(a): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (_, o) = query(q.as_deref())?;
    check_dc(&a, o.dc.as_deref())?;
    let st = a.server.state();
    let servers: Vec<_> = a
        .server
        .peers()
        .iter()
        .map(|p| {
            json!({
                "ID": a.node.id,
                "Name": a.node.name,
                "Address": p.to_string(),
                "SerfStatus": "alive",
                "Version": super::agent_api::CONSUL_COMPAT_VERSION,
                "Leader": a.server.leader() == Some(*p),
                "LastContact": "0s",
                "LastTerm": 1,
                "LastIndex": st.last_index(),
                "Healthy": true,
                "Voter": true,
                "StableSince": "",
            })
        })
        .collect();
    Ok(json_response(
        &json!({"Healthy": true, "FailureTolerance": 0, "Servers": servers}),
        o.pretty,
    ))
}
