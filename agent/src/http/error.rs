//! API errors: an HTTP status and a plain-text message, as Consul answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use cairn_catalog::StoreError;
use cairn_catalog::command::InvalidCommand;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Plain-text body.
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

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Invalid(m) | StoreError::NotFound(m) => ApiError::bad_request(m),
            StoreError::IndexRegression { .. } | StoreError::UnknownCommand(_) => {
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<InvalidCommand> for ApiError {
    /// A command refused before it was proposed: a bad transaction verb is the client's
    /// mistake; a command type this server does not know means the servers need an upgrade.
    fn from(e: InvalidCommand) -> ApiError {
        match e {
            InvalidCommand::UnknownVerb { .. } => ApiError::bad_request(e.to_string()),
            InvalidCommand::UnknownType(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl ApiError {
    /// The error as a response, to add headers to.
    pub fn into_response_with(self) -> Response {
        self.into_response()
    }
}
