//! `/v1/health/*`: checks and service instances with their health.
//!
//! The reads discovery clients block on: Prometheus, Traefik, consul-template, Fabio and
//! Spring poll `/v1/health/service/:name` or `/v1/health/state/any` with `?index`. A change to
//! one service wakes only the readers of that service (per-service watch keys): watchers
//! woken by every change anywhere were a long-standing complaint about Consul.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use cairn_catalog::model::HealthStatus;

use super::error::ApiError;
use super::{AppState, Req, selection, serve_read_peer, serve_selected};
use crate::server::query::Read;

/// Routes of this area. `{state}` is one segment: states are single words.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health/node/{*node}", get(node))
        .route("/v1/health/checks/{*service}", get(checks))
        .route("/v1/health/service/{*service}", get(service))
        .route("/v1/health/state/{state}", get(state))
}

/// `GET /v1/health/node/:node`: the node's checks, `serfHealth` and its services' included.
async fn node(
    State(a): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), |sel| Read::HealthNode { node, sel }).await
}

/// `GET /v1/health/checks/:service`: the checks of every instance of a service.
async fn checks(
    State(a): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), |sel| Read::HealthChecks { name, sel }).await
}

/// `GET /v1/health/service/:service`: each instance with its node and checks (Consul's
/// `ServiceEntry`). `?passing` keeps the instances whose node and service checks all pass,
/// the node's `serfHealth` included, so an instance on a failed node is never "passing".
async fn service(
    State(a): State<AppState>,
    Path(name): Path<String>,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    // Go's ParseBool with presence meaning true; anything else is Consul's 400 text, so
    // `?passing=bogus` is an error rather than "all instances".
    let passing = p
        .flag("passing")
        .map_err(|_| ApiError::bad_request("Invalid value for ?passing"))?;
    let sel = selection(&a, &p, &o);
    serve_read_peer(&a, Read::HealthService { name, passing, sel }, &p, &o).await
}

/// `GET /v1/health/state/:state`: every check in a state, or all of them with `any` (what
/// Fabio blocks on to watch the whole cluster's health).
async fn state(
    State(a): State<AppState>,
    Path(state): Path<String>,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    // Exact lowercase names. Another state is a 400 here, where Consul answers `[]`: see the
    // known differences in `docs/api-compatibility.md`.
    let state = match state.as_str() {
        "any" => None,
        s => Some(HealthStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid check state: {s:?}: must be any, passing, warning or critical"
            ))
        })?),
    };
    let sel = selection(&a, &p, &o);
    serve_read_peer(&a, Read::HealthState { state, sel }, &p, &o).await
}
