//! fal's request (infrastructure) error body: `{"detail": "...", "error_type": "..."}`.

use serde::{Deserialize, Serialize};

/// Documented fal `error_type` values we use.
pub mod error_types {
    /// The start deadline (`X-Fal-Request-Timeout`) passed before work began (504).
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// No worker could take the request (503).
    pub const RUNNER_SCHEDULING_FAILURE: &str = "runner_scheduling_failure";
    /// The worker failed while processing (500).
    pub const RUNNER_SERVER_ERROR: &str = "runner_server_error";
    /// The worker vanished while processing (503).
    pub const RUNNER_DISCONNECTED: &str = "runner_disconnected";
    /// The caller cancelled the request (499).
    pub const CLIENT_CANCELLED: &str = "client_cancelled";
    /// The caller went away (499).
    pub const CLIENT_DISCONNECTED: &str = "client_disconnected";
    /// A malformed request (400).
    pub const BAD_REQUEST: &str = "bad_request";
    /// Anything else (500).
    pub const INTERNAL_ERROR: &str = "internal_error";
}

/// fal's request error body; serve it with `X-Fal-Error-Type: <error_type>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error_type}: {detail}")]
pub struct RequestError {
    /// Human text.
    pub detail: String,
    /// Machine code (see [`error_types`]).
    pub error_type: String,
}

impl RequestError {
    /// A request error of the given type.
    pub fn new(error_type: &str, detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            error_type: error_type.to_owned(),
        }
    }

    /// The HTTP status fal uses for this error type.
    pub fn status_code(&self) -> u16 {
        use error_types::*;
        match self.error_type.as_str() {
            REQUEST_TIMEOUT | "startup_timeout" => 504,
            RUNNER_SCHEDULING_FAILURE
            | RUNNER_DISCONNECTED
            | "runner_connection_timeout"
            | "runner_connection_refused"
            | "runner_connection_error" => 503,
            "runner_incomplete_response" => 502,
            CLIENT_CANCELLED | CLIENT_DISCONNECTED => 499,
            BAD_REQUEST => 400,
            _ => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_codes() {
        let e = RequestError::new(error_types::REQUEST_TIMEOUT, "not started in time");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"detail": "not started in time", "error_type": "request_timeout"})
        );
        assert_eq!(e.status_code(), 504);
        assert_eq!(
            RequestError::new(error_types::CLIENT_CANCELLED, "x").status_code(),
            499
        );
        assert_eq!(
            RequestError::new(error_types::RUNNER_SCHEDULING_FAILURE, "x").status_code(),
            503
        );
        assert_eq!(
            RequestError::new(error_types::RUNNER_SERVER_ERROR, "x").status_code(),
            500
        );
        assert_eq!(
            RequestError::new(error_types::BAD_REQUEST, "x").status_code(),
            400
        );
    }
}
