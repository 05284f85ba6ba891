//! One entry point for every request: the fixed routes, the storage routes, the proxy, and
//! the fal paths (which are too free-form for a static route table).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::body::{authorize_body, read_body};
use crate::dispatch::{self, DispatchError};
use crate::error::ApiError;
use crate::request::{parse_query, percent_decode, FalRequest};
use crate::state::AppState;
use crate::{fal, files, meta, playground, proxy, uploads};

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
        if let Err(e) = authorize_body(&state, &path, &parts.headers).await {
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
    if let Some(asset) = playground::asset_for(&segments).filter(|_| get) {
        return Ok(playground::serve(state, asset));
    }
    match (segments.as_slice(), get) {
        (["health"], true) => return Ok(meta::health(state).await),
        (["metrics"], true) => return Ok(meta::metrics(state).await),
        (["openapi.json"], true)
        | (["queue", "openapi.json"], true)
        | (["api", "openapi", "queue", "openapi.json"], true) => return meta::openapi(state, &req),
        ([".well-known", "jwks.json"], true) => return Ok(meta::jwks(state)),
        (["usage"], true) => return meta::usage(state, &req).await,
        (["api", "fal", "proxy"], _) => {
            // Routed as if it had been sent to its target.
            let req = proxy::retarget(req)?;
            return Ok(Box::pin(route(state, req)).await);
        }
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
