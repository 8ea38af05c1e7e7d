//! `/v1/health/*`: checks and service instances with their health.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use cairn_catalog::model::HealthStatus;

use super::error::ApiError;
use super::{AppState, Req, selection, serve_read, serve_selected};
use crate::server::query::Read;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health/node/{*node}", get(node))
        .route("/v1/health/checks/{*service}", get(checks))
        .route("/v1/health/service/{*service}", get(service))
        .route("/v1/health/state/{state}", get(state))
}

async fn node(
    State(a): State<AppState>,
    Path(node): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), |sel| Read::HealthNode { node, sel }).await
}

async fn checks(
    State(a): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    serve_selected(&a, q.as_deref(), |sel| Read::HealthChecks { name, sel }).await
}

async fn service(
    State(a): State<AppState>,
    Path(name): Path<String>,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    let passing = p
        .flag("passing")
        .map_err(|_| ApiError::bad_request("Invalid value for ?passing"))?;
    let sel = selection(&a, &p, &o);
    serve_read(&a, Read::HealthService { name, passing, sel }, &o).await
}

async fn state(
    State(a): State<AppState>,
    Path(state): Path<String>,
    Req { p, o, .. }: Req,
) -> Result<Response, ApiError> {
    let state = match state.as_str() {
        "any" => None,
        s => Some(HealthStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid check state: {s:?}: must be any, passing, warning or critical"
            ))
        })?),
    };
    let sel = selection(&a, &p, &o);
    serve_read(&a, Read::HealthState { state, sel }, &o).await
}
