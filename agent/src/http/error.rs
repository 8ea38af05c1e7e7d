//! API errors: an HTTP status and a plain-text message, as Consul answers.
//!
//! Consul answers errors with a bare text body, not JSON, and clients match on the status
//! (py-consul maps 401 to `ACLDisabled` and 403 to `ACLPermissionDenied`) and show the text.
//! So the text is part of the contract: handlers use Consul's wording, and the service layer's
//! messages (`crate::api::Error`) already carry it. This file is the only place that decides
//! which status a service-layer error gets.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use cairn_catalog::StoreError;

/// An error answered to an API client. Handlers return it with `?`; axum turns it into the
/// response through [`IntoResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Plain-text body, Consul's wording (clients and tests compare it).
    pub message: String,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 403 Permission denied.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
}

/// `<code> <message>`, for logs and test failures.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

/// The status with the message as a `text/plain; charset=utf-8` body, the content type Go's
/// server gives Consul's error texts.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.message).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// Through `crate::api::Error`, so that the state machine's refusals get the same statuses
/// wherever they come from (a store `NotFound` is a 400, as Consul answers its RPC errors).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::from(crate::api::Error::from(e))
    }
}

/// The service layer's errors as Consul answers them: statuses and texts live here only.
impl From<crate::api::Error> for ApiError {
    fn from(e: crate::api::Error) -> ApiError {
        use crate::api::Error;
        let message = e.to_string();
        let status = match e {
            // The request's fault; the text says which rule it broke.
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            // An oversized payload (a user event's, today): 413, as Consul's size checks.
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            // Consul answers RPC-level failures (no leader, no route, unreachable servers)
            // with 500 and the error's text.
            Error::NoLeader
            | Error::NotLeader { .. }
            | Error::NotReady
            | Error::NoServers
            | Error::NoPathToDatacenter(_)
            | Error::NoRemoteServer(_)
            | Error::Unavailable(_)
            | Error::Fatal(_)
            | Error::Failed(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, message)
    }
}

impl ApiError {
    /// The error as a response, to add headers to.
    /// (The same as [`IntoResponse::into_response`], callable without importing the trait.)
    pub fn into_response_with(self) -> Response {
        self.into_response()
    }
}
