//! One entry point for every request: the fixed routes, the storage routes, the proxy, and
//! the fal paths (which are too free-form for a static route table).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

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

/// The axum fallback handler: collects the request and routes it.
pub async fn entry(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::Plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body could not be read: {e}"),
            )
            .into_response()
        }
    };
    let path = percent_decode(parts.uri.path());
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
            return Ok(meta::openapi(state, &req.headers))
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
