//! `/health`, `/metrics`, `/openapi.json`, `/.well-known/jwks.json`, `/usage`.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{json_response, ApiError};
use crate::request::FalRequest;
use crate::state::AppState;

/// Liveness plus a store round trip; 503 when the store does not answer or the in-process
/// model engine is lost.
pub async fn health(state: &Arc<AppState>) -> Response {
    let (workers, engine_error) = state
        .workers
        .lock()
        .map(|w| (w.is_some(), w.as_ref().and_then(|w| w.engine_error())))
        .unwrap_or((false, None));
    if let Some(why) = engine_error {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "error", "engine": "lost", "detail": format!("model engine: {why}") }),
        );
    }
    let model = state
        .model
        .as_ref()
        .map(|m| json!({ "name": m.name, "smoke_test_model": m.smoke_test_model }));
    match state.store.queue_depth().await {
        Ok(depth) => json_response(
            StatusCode::OK,
            json!({
                "status": "ok",
                "endpoint": longcat_api::ENDPOINT_ID,
                "apps": longcat_api::App::ALL.map(longcat_api::App::id),
                "queue_depth": depth,
                "in_process_workers": workers,
                "model": model,
            }),
        ),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "error", "detail": format!("job store: {e}") }),
        ),
    }
}

/// Prometheus text format; refreshes the queue depth and pending webhook gauges first.
pub async fn metrics(state: &Arc<AppState>) -> Response {
    if let Ok(depth) = state.store.queue_depth().await {
        metrics::gauge!("longcat_queue_depth").set(depth as f64);
    }
    if let Ok(pending) = state.store.pending_webhooks().await {
        metrics::gauge!("longcat_webhooks_pending").set(pending as f64);
    }
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The OpenAPI documents, with this server's queue URL: with `?endpoint_id={app id}` that
/// app's document (fal's per-endpoint URL shape,
/// `/api/openapi/queue/openapi.json?endpoint_id=…`), else the one listing every app. An
/// unknown app id is a 404 naming the apps.
pub fn openapi(state: &Arc<AppState>, req: &FalRequest) -> Result<Response, ApiError> {
    let base = state.queue_base(&req.headers)?;
    let doc = match req.query("endpoint_id").map(str::trim) {
        None | Some("") => longcat_api::openapi_document_for(&base),
        Some(id) => {
            let app = longcat_api::App::from_id(id.trim_matches('/')).ok_or_else(|| {
                ApiError::not_found(format!(
                    "Application '{id}' not found (this server runs {})",
                    longcat_api::App::ALL.map(longcat_api::App::id).join(", ")
                ))
            })?;
            longcat_api::openapi_document_for_app(app, &base)
        }
    };
    Ok(json_response(StatusCode::OK, doc))
}

/// Public keys that verify webhook signatures.
pub fn jwks(state: &Arc<AppState>) -> Response {
    json_response(StatusCode::OK, state.jwks.clone())
}

/// Usage of the calling key (all usage when authentication is off). An admin key may ask
/// for another key's with `?key_id=NAME`, or for everyone's with `?key_id=*`.
pub async fn usage(state: &Arc<AppState>, req: &FalRequest) -> Result<Response, ApiError> {
    let caller = state.auth.check(&req.headers)?;
    let key_id = match req.query("key_id") {
        Some(asked) if asked != caller.key_id.as_deref().unwrap_or("*") => {
            // Only an admin key may look past its own (everything is open without keys).
            if !caller.admin && caller.key_id.is_some() {
                return Err(ApiError::Plain(
                    StatusCode::FORBIDDEN,
                    "Only an admin key may read another key's usage".to_owned(),
                ));
            }
            (asked != "*").then(|| asked.to_owned())
        }
        _ => caller.key_id,
    };
    let summary = state.store.usage(key_id.as_deref()).await?;
    let mut apps = serde_json::Map::new();
    for (endpoint, u) in state.store.usage_by_endpoint(key_id.as_deref()).await? {
        apps.insert(
            endpoint,
            json!({"requests": u.requests, "billable_seconds": u.billable_seconds, "cost_usd": u.cost_usd}),
        );
    }
    Ok(json_response(
        StatusCode::OK,
        json!({
            "key_id": key_id,
            "requests": summary.requests,
            "billable_seconds": summary.billable_seconds,
            "cost_usd": summary.cost_usd,
            "price": {"usd_per_second": longcat_api::cost::USD_PER_SECOND, "billing_fps": longcat_api::cost::BILLING_FPS},
            "apps": apps,
            "prices": state.prices.to_json(),
        }),
    ))
}
