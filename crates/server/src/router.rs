//! One entry point for every request: the fixed routes, the storage routes, the proxy, and
//! the fal paths (which are too free-form for a static route table).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::LARGE_BODY_BYTES;
use crate::dispatch::{self, DispatchError};
use crate::error::ApiError;
use crate::state::AppState;
use crate::{fal, files, meta, proxy, uploads};

/// A request reduced to what the handlers need (the proxy builds these from its target URL).
#[derive(Debug, Clone)]
pub struct FalRequest {
    /// HTTP method.
    pub method: Method,
    /// Percent-decoded path.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Whole body.
    pub body: Bytes,
    /// Routed to the queue side by the proxy's target host.
    pub queue_host: bool,
}

impl FalRequest {
    /// First value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Parses a query string into decoded pairs.
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The axum fallback handler: checks the credentials a body-carrying request needs from its
/// headers, refuses a declared length over the limit, reads the body (large ones a few at a
/// time, all within the body timeout) and routes the request.
pub async fn entry(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = percent_decode(parts.uri.path());
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = state.max_body_bytes;
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::Plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than the limit of {limit} bytes"),
        )
        .into_response();
    }
    let has_body = match declared {
        Some(n) => n > 0,
        None => parts.headers.contains_key(header::TRANSFER_ENCODING),
    };
    let body = if has_body {
        if let Err(e) = authorize_body(&state, &path, &parts.headers) {
            return e.into_response();
        }
        match read_body(&state, body, declared).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        }
    } else {
        Bytes::new()
    };
    let req = FalRequest {
        method: parts.method,
        path,
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
        queue_host: false,
    };
    route(&state, req).await
}

/// Checks, from the headers alone, that a request may send a body: an upload URL must be
/// live, the upload routes take a key or an upload token, everything else a key.
fn authorize_body(state: &AppState, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
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
async fn read_body(
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

fn percent_decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// Routes one request.
pub async fn route(state: &Arc<AppState>, req: FalRequest) -> Response {
    let result = route_inner(state, req).await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn route_inner(state: &Arc<AppState>, req: FalRequest) -> Result<Response, ApiError> {
    let path = req.path.clone();
    let method = req.method.clone();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == Method::GET || method == Method::HEAD;
    match (segments.as_slice(), get) {
        (["health"], true) => return Ok(meta::health(state).await),
        (["metrics"], true) => return Ok(meta::metrics(state).await),
        (["openapi.json"], true) | (["queue", "openapi.json"], true) => {
            return meta::openapi(state, &req.headers)
        }
        ([".well-known", "jwks.json"], true) => return Ok(meta::jwks(state)),
        (["usage"], true) => return meta::usage(state, &req).await,
        (["api", "fal", "proxy"], _) => return proxy::handle(state, req).await,
        (["storage", ..], _) | (["upload", ..], _) | (["tokens", ..], _) => {
            return uploads::handle(state, req).await
        }
        (["files", "upload", ..], false) => return uploads::handle(state, req).await,
        (["files", ..], true) => return files::serve(state, &req).await,
        (["files", ..], false) => return uploads::handle(state, req).await,
        _ => {}
    }
    let (fal_path, queue) = match dispatch::strip_queue_prefix(&path) {
        Some(rest) => (rest.to_owned(), true),
        None => (
            path.clone(),
            req.queue_host || dispatch::is_queue_host(req.header("host")),
        ),
    };
    match dispatch::parse(method.as_str(), &fal_path, queue) {
        Ok(op) => fal::handle(state, op, req).await,
        Err(DispatchError::NotFound) => Err(ApiError::not_found("Not found")),
        Err(DispatchError::MethodNotAllowed) => Err(ApiError::Plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed".to_owned(),
        )),
    }
}
