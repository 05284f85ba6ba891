//! Error responses in fal's shapes.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use longcat_api::{RequestError, ValidationErrors};
use serde_json::{json, Value};

/// `X-Fal-Error-Type`.
pub const ERROR_TYPE_HEADER: &str = "x-fal-error-type";
/// `X-Fal-Request-Timeout-Type`.
pub const TIMEOUT_TYPE_HEADER: &str = "x-fal-request-timeout-type";

/// Every error the HTTP layer answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422 `{"detail": [...]}`.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// `{"detail", "error_type"}` with `X-Fal-Error-Type` (status from the type, or given).
    #[error("{0}")]
    Request(RequestError, Option<StatusCode>),
    /// `{"detail": "..."}` with a plain status (401, 403, 404, 405, 400).
    #[error("{1}")]
    Plain(StatusCode, String),
    /// 429 with `Retry-After`.
    #[error("queue is full")]
    QueueFull {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Internal failure (store, storage): 500 `internal_error`.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// 404 `{"detail": msg}`.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::Plain(StatusCode::NOT_FOUND, msg.into())
    }
    /// 400 `{"detail": msg, "error_type": "bad_request"}`.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::Request(
            RequestError::new(longcat_api::error_types::BAD_REQUEST, msg),
            Some(StatusCode::BAD_REQUEST),
        )
    }
    /// 401 `{"detail": msg}`.
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Self::Plain(StatusCode::UNAUTHORIZED, msg.into())
    }
    /// Any internal failure.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<longcat_store::StoreError> for ApiError {
    fn from(e: longcat_store::StoreError) -> Self {
        Self::Internal(format!("job store: {e}"))
    }
}

impl From<longcat_storage::StorageError> for ApiError {
    fn from(e: longcat_storage::StorageError) -> Self {
        use longcat_storage::StorageError as S;
        match e {
            S::NotFound(_) => ApiError::not_found("File not found"),
            S::InvalidKey { .. } => ApiError::not_found("File not found"),
            other => Self::Internal(format!("storage: {other}")),
        }
    }
}

/// A JSON response with a status.
pub fn json_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// fal's request error response (body, `X-Fal-Error-Type`, and the user-timeout marker on
/// `request_timeout`).
pub fn request_error_response(err: &RequestError, status: Option<StatusCode>) -> Response {
    let status = status.unwrap_or_else(|| {
        StatusCode::from_u16(err.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    });
    let mut resp = json_response(status, json!(err));
    if let Ok(v) = HeaderValue::from_str(&err.error_type) {
        resp.headers_mut().insert(ERROR_TYPE_HEADER, v);
    }
    if err.error_type == longcat_api::error_types::REQUEST_TIMEOUT {
        resp.headers_mut()
            .insert(TIMEOUT_TYPE_HEADER, HeaderValue::from_static("user"));
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(v) => json_response(StatusCode::UNPROCESSABLE_ENTITY, v.to_body()),
            ApiError::Request(e, status) => request_error_response(&e, status),
            ApiError::Plain(status, msg) => json_response(status, json!({ "detail": msg })),
            ApiError::QueueFull { retry_after } => {
                let err = RequestError::new("queue_full", "The queue is full; retry later");
                let mut resp = request_error_response(&err, Some(StatusCode::TOO_MANY_REQUESTS));
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(retry_after));
                resp
            }
            ApiError::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                request_error_response(
                    &RequestError::new(
                        longcat_api::error_types::INTERNAL_ERROR,
                        "Internal server error",
                    ),
                    Some(StatusCode::INTERNAL_SERVER_ERROR),
                )
            }
        }
    }
}
