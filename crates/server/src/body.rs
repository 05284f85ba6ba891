//! Receiving a request body: the credentials a body-carrying request needs (checked from its
//! headers before anything is read), and reading the body within the body timeout, large
//! ones a few at a time.

use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

use crate::config::LARGE_BODY_BYTES;
use crate::error::ApiError;
use crate::proxy;
use crate::request::percent_decode;
use crate::state::AppState;

/// Checks, from the headers alone, that a request may send a body: an upload URL must be
/// live, the upload routes take a key or an upload token, everything else a key.
pub fn authorize_body(state: &AppState, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if !state.auth.enabled() {
        return Ok(());
    }
    let target;
    let mut path = path;
    if path.trim_end_matches('/') == "/api/fal/proxy" {
        let url = headers
            .get(proxy::TARGET_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!("missing {} header", proxy::TARGET_HEADER))
            })?;
        let (t, _) = proxy::classify(url)?;
        target = match t {
            proxy::Target::Queue(p) | proxy::Target::Run(p) | proxy::Target::Rest(p) => {
                percent_decode(&p)
            }
        };
        path = &target;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let upload_token = match segments.as_slice() {
        ["upload", token, ..] => Some(*token),
        ["files", .., "multipart", token, _] => Some(*token),
        _ => None,
    };
    if let Some(token) = upload_token {
        let live = state
            .uploads
            .lock()
            .map(|u| u.get(token).is_some_and(|u| u.expires > Instant::now()))
            .unwrap_or(false);
        return if live {
            Ok(())
        } else {
            Err(ApiError::Plain(
                StatusCode::FORBIDDEN,
                "Upload URL is unknown or expired".to_owned(),
            ))
        };
    }
    match segments.as_slice() {
        ["storage", "auth", ..] => state.auth.check(headers).map(drop),
        ["storage", ..] | ["files", "upload", ..] => state.auth.check_upload(headers).map(drop),
        _ => state.auth.check(headers).map(drop),
    }
}

/// Gauge of large bodies being read (each holds one of the `max_large_bodies` slots).
pub const LARGE_BODIES_GAUGE: &str = "longcat_large_bodies_reading";

/// Gauge of large bodies waiting for a slot.
pub const LARGE_BODIES_WAITING_GAUGE: &str = "longcat_large_bodies_waiting";

/// A held large-body slot, counted in [`LARGE_BODIES_GAUGE`].
struct LargeBodySlot(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl LargeBodySlot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics::gauge!(LARGE_BODIES_GAUGE).increment(1.0);
        Self(permit)
    }
}

impl Drop for LargeBodySlot {
    fn drop(&mut self) {
        metrics::gauge!(LARGE_BODIES_GAUGE).decrement(1.0);
    }
}

/// Reads a body within the body timeout; a large one (or one of unknown length) first waits
/// for one of the large-body slots.
pub async fn read_body(
    state: &AppState,
    body: axum::body::Body,
    declared: Option<u64>,
) -> Result<Bytes, ApiError> {
    let deadline = tokio::time::Instant::now() + state.body_read_timeout;
    let _slot = if declared.is_none_or(|n| n > LARGE_BODY_BYTES) {
        let slot = tokio::time::timeout_at(deadline, state.large_bodies.clone().acquire_owned());
        metrics::gauge!(LARGE_BODIES_WAITING_GAUGE).increment(1.0);
        let slot = slot.await;
        metrics::gauge!(LARGE_BODIES_WAITING_GAUGE).decrement(1.0);
        match slot {
            Ok(Ok(permit)) => Some(LargeBodySlot::new(permit)),
            _ => {
                return Err(ApiError::Plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many large request bodies are being received; retry later".to_owned(),
                ))
            }
        }
    } else {
        None
    };
    let read = axum::body::to_bytes(body, state.max_body_bytes);
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(ApiError::Plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body could not be read: {e}"),
        )),
        Err(_) => Err(ApiError::Plain(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "Request body did not arrive within {} s",
                state.body_read_timeout.as_secs()
            ),
        )),
    }
}
