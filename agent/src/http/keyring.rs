//! `/v1/operator/keyring`: list, install, use and remove gossip encryption keys across the
//! LAN pool.
//!
//! Methods as Consul's: `GET` lists, `POST` installs, `PUT` makes a key primary, `DELETE`
//! removes. A change is applied here, spread to every member and answered once every alive
//! member reports it (`crate::keyring`), so a 200 means the whole pool holds the change.

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

/// The body of the three writes: `{"Key": "<base64>"}`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct KeyBody {
    /// The base64 key; empty when the body has none, which is refused below.
    key: String,
}

/// `GET`: Consul's one-entry list for the LAN pool (`Keys` with how many members hold each,
/// `PrimaryKeys`, `NumNodes`); a 500 when this agent runs without gossip encryption.
async fn list(State(a): State<AppState>, Req { o, .. }: Req) -> Result<Response, ApiError> {
    Ok(json_response(&a.keyring_list()?, o.pretty))
}

/// The three writes: the key is required and must decode as a gossip key (else 400); a member
/// that does not report the change in time makes it a 500 naming the laggards.
async fn op(a: AppState, body: Bytes, op: Op) -> Result<Response, ApiError> {
    let b: KeyBody = decode(&body)?;
    if b.key.is_empty() {
        return Err(ApiError::bad_request("Missing key"));
    }
    a.keyring_op(op, &b.key).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST`: every member starts accepting the key (the primary one still encrypts).
async fn install(State(a): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    op(a, body, Op::Install).await
}

/// `PUT`: every member encrypts with the key from now on; a key not installed is a 400.
async fn use_key(State(a): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    op(a, body, Op::Use).await
}

/// `DELETE`: every member stops accepting the key (with a body, as Consul's `DELETE` has).
async fn remove(State(a): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    op(a, body, Op::Remove).await
}
