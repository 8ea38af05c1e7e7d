//! `/v1/operator/keyring`: list, install, use and remove gossip encryption keys across the
//! LAN pool.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::Req;
use super::error::ApiError;
use super::{AppState, json_response};
use crate::api::decode::decode;
use crate::keyring::Op;

/// Routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/operator/keyring",
        get(list).post(install).put(use_key).delete(remove),
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct KeyBody {
    key: String,
}

async fn list(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    Ok(json_response(&a.keyring_list()?, o.pretty))
}

async fn op(a: AppState, body: Bytes, op: Op) -> Result<Response, ApiError> {
    let b: KeyBody = decode(&body)?;
    if b.key.is_empty() {
        return Err(ApiError::bad_request("Missing key"));
    }
    a.keyring_op(op, &b.key).await?;
    Ok(StatusCode::OK.into_response())
}

async fn install(State(a): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    op(a, body, Op::Install).await
}

async fn use_key(State(a): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    op(a, body, Op::Use).await
}

async fn remove(State(a): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    op(a, body, Op::Remove).await
}
