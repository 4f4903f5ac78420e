//! What can go wrong with a request, and the one table that maps it to an HTTP status and an
//! `error_type`: every error body is `{"error": message, "error_type": type}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The kinds of failure a client can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not JSON.
    InvalidJson,
    /// JSON of the wrong shape, or values out of range: the message names the field and item.
    Validation,
    /// The body is over `--max-body-bytes`.
    TooLarge,
    /// `--max-concurrent-requests` are in flight: retry later (`Retry-After`).
    Overloaded,
    /// `--api-key` is set and the request lacks `Authorization: Bearer KEY`.
    Unauthorized,
    /// The model failed on the batch holding this request (the server goes on).
    Model,
    /// The model is not loaded yet, or the server is shutting down.
    Unavailable,
}

impl ErrorKind {
    /// The table: status code and `error_type` of each kind.
    pub fn status_and_type(self) -> (StatusCode, &'static str) {
        match self {
            ErrorKind::InvalidJson => (StatusCode::BAD_REQUEST, "invalid_json"),
            ErrorKind::Validation => (StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ErrorKind::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ErrorKind::Model => (StatusCode::INTERNAL_SERVER_ERROR, "backend"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ServeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }
}

/// The JSON body of every error (defined once in [`rewardkit_data::wire`] for clients too).
pub use rewardkit_data::wire::ErrorBody;

/// Seconds a client told `overloaded` should wait before retrying.
pub const RETRY_AFTER_S: u32 = 1;

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let (status, error_type) = self.kind.status_and_type();
        let body = axum::Json(ErrorBody {
            error: self.message,
            error_type: error_type.into(),
        });
        let mut response = (status, body).into_response();
        if self.kind == ErrorKind::Overloaded {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_S.into());
        }
        response
    }
}
