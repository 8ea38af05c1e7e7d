//! `/v1/acl/*` and `/v1/agent/token/*`: Cairn runs with ACLs disabled, and answers these as a
//! Consul agent with ACLs disabled does: 401 "ACL support disabled", which clients and the
//! Consul CLI report as such. The `X-Consul-Token` header is accepted and ignored elsewhere.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, put};

use super::AppState;
use super::error::ApiError;

/// Routes of this area. `any` for `/v1/acl/*`: every ACL method and path gets the same answer,
/// so a client learns that ACLs are off rather than that a route is missing.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/acl", any(disabled))
        .route("/v1/acl/{*rest}", any(disabled))
        .route("/v1/agent/token/{*kind}", put(disabled))
}

/// Consul's `ErrDisabled`, with the 401 that Consul answers it with.
async fn disabled() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "ACL support disabled")
}
