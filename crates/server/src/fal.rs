//! The fal operations: sync run, streaming run, queue submit, status, status stream, result,
//! cancel.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use longcat_api::queue::{logs_flag, QueueState, RequestUrls, SubmitResponse};
use longcat_api::{failure_report, parse_input_for, split_endpoint, App, RequestError};
use longcat_store::{CancelOutcome, Job, JobStatus, JobSummary, NewJob, Priority, SubmitOptions};
use serde_json::{json, Value};
use tracing::Instrument;

use crate::auth::Caller;
use crate::dispatch::{app_matches, FalOp};
use crate::error::{json_response, ApiError, TIMEOUT_TYPE_HEADER};
use crate::request::FalRequest;
use crate::state::AppState;
use crate::status::{job_error, status_of};
use crate::{sse, REQUEST_ID_HEADER};

/// Runs one fal operation inside its `request` span.
pub async fn handle(
    state: &Arc<AppState>,
    op: FalOp,
    req: FalRequest,
) -> Result<Response, ApiError> {
    let span = request_span(&op);
    handle_op(state, op, req).instrument(span).await
}

/// The span of one fal operation: `op`, `endpoint` (the endpoint id, or the app of a
/// request path), `request_id` (from the path, or once a submit has stored the job) and
/// `key_id` (once the caller is authenticated). See docs/server.md#logs.
fn request_span(op: &FalOp) -> tracing::Span {
    let (name, endpoint, id) = match op {
        FalOp::Run { endpoint } => ("run", endpoint, None),
        FalOp::Stream { endpoint } => ("stream", endpoint, None),
        FalOp::Submit { endpoint } => ("submit", endpoint, None),
        FalOp::Status { app, id } => ("status", app, Some(id)),
        FalOp::StatusStream { app, id } => ("status_stream", app, Some(id)),
        FalOp::Result { app, id } => ("result", app, Some(id)),
        FalOp::Cancel { app, id } => ("cancel", app, Some(id)),
    };
    let span = tracing::info_span!(
        "request",
        op = name,
        endpoint = %endpoint,
        request_id = tracing::field::Empty,
        key_id = tracing::field::Empty,
    );
    if let Some(id) = id {
        span.record("request_id", id.as_str());
    }
    span
}

async fn handle_op(
    state: &Arc<AppState>,
    op: FalOp,
    req: FalRequest,
) -> Result<Response, ApiError> {
    let caller = state.auth.check(&req.headers)?;
    if let Some(key) = &caller.key_id {
        tracing::Span::current().record("key_id", key.as_str());
    }
    match op {
        FalOp::Submit { endpoint } => submit(state, &endpoint, &req, caller.key_id, true).await,
        FalOp::Run { endpoint } => run(state, &endpoint, &req, caller.key_id, false).await,
        FalOp::Stream { endpoint } => run(state, &endpoint, &req, caller.key_id, true).await,
        FalOp::Status { app, id } => {
            let job = find_job(state, &caller, &app, &id).await?;
            let with_logs = logs_flag(req.query("logs"));
            let status = status_of(state, &job, &req, with_logs, None).await?;
            let code = if status.status == QueueState::Completed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(with_request_id(
                json_response(code, status.to_json()),
                &job.id,
            ))
        }
        FalOp::StatusStream { app, id } => {
            let job = find_job(state, &caller, &app, &id).await?;
            let with_logs = logs_flag(req.query("logs"));
            let queue_base = state.queue_base(&req.headers)?;
            Ok(with_request_id(
                sse::status_stream(state.clone(), job.id.clone(), queue_base, with_logs),
                &job.id,
            ))
        }
        FalOp::Result { app, id } => {
            let job = find_job(state, &caller, &app, &id).await?;
            let job = state.store.get(&job.id).await?.ok_or_else(not_found)?;
            Ok(with_request_id(result_response(&job), &job.id))
        }
        FalOp::Cancel { app, id } => {
            let job = find_job(state, &caller, &app, &id).await?;
            let (code, status) = match state.store.request_cancel(&job.id).await? {
                CancelOutcome::Cancelled | CancelOutcome::Requested => {
                    (StatusCode::ACCEPTED, "CANCELLATION_REQUESTED")
                }
                CancelOutcome::AlreadyDone => (StatusCode::BAD_REQUEST, "ALREADY_COMPLETED"),
                CancelOutcome::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            };
            metrics::counter!("longcat_cancel_requests_total", "outcome" => status).increment(1);
            tracing::info!(outcome = status, "cancel requested");
            Ok(with_request_id(
                json_response(code, json!({ "status": status })),
                &job.id,
            ))
        }
    }
}

/// Sets `x-fal-request-id`.
pub fn with_request_id(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

fn not_found() -> ApiError {
    ApiError::not_found("Request not found")
}

/// The status view of request `id` if `caller` may see it; another key's request is the
/// same 404 as an unknown one (no existence leak).
async fn find_job(
    state: &AppState,
    caller: &Caller,
    app: &str,
    id: &str,
) -> Result<JobSummary, ApiError> {
    match state.store.summary(id).await? {
        Some(job) if app_matches(app, &job.endpoint) && caller.may_see(job.key_id.as_deref()) => {
            Ok(job)
        }
        _ => Err(not_found()),
    }
}

/// The app named by `endpoint`, or a 404 listing the apps this server runs.
fn check_endpoint(endpoint: &str) -> Result<App, ApiError> {
    App::from_id(endpoint).ok_or_else(|| {
        ApiError::not_found(format!(
            "Application '{endpoint}' not found (this server runs {})",
            App::ALL.map(App::id).join(", ")
        ))
    })
}

/// What the submit headers and query ask for.
struct SubmitHeaders {
    priority: Priority,
    start_timeout: Option<Duration>,
    no_retry: bool,
    output_ttl: Option<Duration>,
}

fn submit_headers(req: &FalRequest) -> Result<SubmitHeaders, ApiError> {
    let priority = match req.header("x-fal-queue-priority").map(str::trim) {
        None | Some("") | Some("normal") => Priority::Normal,
        Some("low") => Priority::Low,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "X-Fal-Queue-Priority must be 'normal' or 'low', got '{other}'"
            )))
        }
    };
    let start_timeout = match req.header("x-fal-request-timeout").map(str::trim) {
        None | Some("") => None,
        Some(v) => match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Some(Duration::from_secs_f64(s)),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "X-Fal-Request-Timeout must be a positive number of seconds, got '{v}'"
                )))
            }
        },
    };
    let no_retry = req
        .header("x-fal-no-retry")
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false);
    let output_ttl = crate::lifetime::requested_lifetime(req, &[crate::lifetime::OUTPUT_HEADER])?;
    Ok(SubmitHeaders {
        priority,
        start_timeout,
        no_retry,
        output_ttl,
    })
}

/// Validates and enqueues a request; returns the stored job.
async fn enqueue(
    state: &Arc<AppState>,
    endpoint: &str,
    req: &FalRequest,
    key_id: Option<String>,
    webhook: bool,
) -> Result<Job, ApiError> {
    let app = check_endpoint(endpoint)?;
    let headers = submit_headers(req)?;
    let webhook_url = if webhook {
        match req.query("fal_webhook").map(str::trim) {
            None | Some("") => None,
            Some(url) => Some(crate::webhook_url::check(
                url,
                state.allow_private_webhooks,
            )?),
        }
    } else {
        None
    };
    let input = parse_input_for(app, &req.body)?;
    if state.max_queue_depth > 0 && state.store.queue_depth().await? >= state.max_queue_depth {
        return Err(ApiError::QueueFull { retry_after: 10 });
    }
    let id = uuid::Uuid::new_v4().to_string();
    let job = NewJob {
        id,
        endpoint: app.id().to_owned(),
        input: serde_json::to_value(&input).map_err(ApiError::internal)?,
        key_id,
        webhook_url,
        billable_seconds: state.prices.billable_seconds(app, input.num_frames),
        estimated_cost_usd: state.prices.cost_usd(app, input.num_frames),
        max_attempts: if headers.no_retry {
            1
        } else {
            state.max_attempts
        },
    };
    let start_deadline = match headers.start_timeout {
        Some(t) => Some(
            Utc::now()
                + chrono::Duration::from_std(t)
                    .map_err(|_| ApiError::bad_request("X-Fal-Request-Timeout is too large"))?,
        ),
        None => None,
    };
    let job = state
        .store
        .submit_with(
            job,
            SubmitOptions {
                priority: headers.priority,
                start_deadline,
                output_ttl: headers.output_ttl,
            },
        )
        .await?;
    tracing::Span::current().record("request_id", job.id.as_str());
    tracing::info!(priority = ?headers.priority, webhook = job.webhook_url.is_some(), "request queued");
    state.notify_workers();
    metrics::counter!("longcat_requests_submitted_total", "mode" => if webhook { "queue" } else { "sync" })
        .increment(1);
    Ok(job)
}

async fn submit(
    state: &Arc<AppState>,
    endpoint: &str,
    req: &FalRequest,
    key_id: Option<String>,
    webhook: bool,
) -> Result<Response, ApiError> {
    let job = enqueue(state, endpoint, req, key_id, webhook).await?;
    let (owner_alias, _) = split_endpoint(&job.endpoint);
    let urls = RequestUrls::new(&state.queue_base(&req.headers)?, owner_alias, &job.id);
    let position = state.store.queue_position(&job.id).await?.unwrap_or(0);
    let body = SubmitResponse {
        status: QueueState::InQueue,
        request_id: job.id.clone(),
        response_url: urls.response_url,
        status_url: urls.status_url,
        cancel_url: urls.cancel_url,
        queue_position: position,
        gateway_request_id: job.id.clone(),
        billable_seconds: job.billable_seconds,
        estimated_cost_usd: job.estimated_cost_usd,
    };
    let body = serde_json::to_value(&body).map_err(ApiError::internal)?;
    Ok(with_request_id(
        json_response(StatusCode::OK, body),
        &job.id,
    ))
}

/// Cancels the job if the sync caller goes away before it finished.
struct CancelOnDrop {
    state: Arc<AppState>,
    id: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let state = self.state.clone();
            let id = std::mem::take(&mut self.id);
            tracing::info!(request_id = %id, "client disconnected from a sync run; cancelling");
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = state.store.request_cancel(&id).await {
                        tracing::warn!(request_id = %id, error = %e, "cancel after disconnect failed");
                    }
                });
            }
        }
    }
}

/// Sync (and streaming) run: enqueue, wait for the end, answer with the result.
async fn run(
    state: &Arc<AppState>,
    endpoint: &str,
    req: &FalRequest,
    key_id: Option<String>,
    stream: bool,
) -> Result<Response, ApiError> {
    let job = enqueue(state, endpoint, req, key_id, false).await?;
    let mut guard = CancelOnDrop {
        state: state.clone(),
        id: job.id.clone(),
        armed: true,
    };
    let mut delay = Duration::from_millis(50);
    let vanished = || ApiError::internal("job vanished from the store");
    loop {
        match state.store.summary(&job.id).await? {
            Some(j) if j.status.is_terminal() => break,
            Some(_) => {}
            None => return Err(vanished()),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
    guard.armed = false;
    let done = state.store.get(&job.id).await?.ok_or_else(vanished)?;
    let resp = result_response(&done);
    if stream && done.status == JobStatus::Completed {
        let output = done.result.clone().unwrap_or(Value::Null);
        return Ok(with_request_id(sse::single_event(&output), &done.id));
    }
    Ok(with_request_id(resp, &done.id))
}

/// The result endpoint's answer for a job.
pub fn result_response(job: &Job) -> Response {
    match job.status {
        JobStatus::Completed => {
            json_response(StatusCode::OK, job.result.clone().unwrap_or(Value::Null))
        }
        JobStatus::Failed | JobStatus::Cancelled => {
            let (kind, message, detail) = job_error(job.error.as_ref(), job.status);
            let report = failure_report(&kind, &message, detail.as_ref());
            let code = StatusCode::from_u16(report.status_code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = json_response(code, report.body.clone());
            if report.status_code != 422 {
                if let Ok(v) = HeaderValue::from_str(&report.error_type) {
                    resp.headers_mut()
                        .insert(crate::error::ERROR_TYPE_HEADER, v);
                }
            }
            if report.user_timeout {
                resp.headers_mut()
                    .insert(TIMEOUT_TYPE_HEADER, HeaderValue::from_static("user"));
            }
            resp
        }
        JobStatus::Queued | JobStatus::Running => ApiError::Request(
            RequestError::new(
                longcat_api::error_types::BAD_REQUEST,
                "Request is still in progress",
            ),
            Some(StatusCode::BAD_REQUEST),
        )
        .into_response(),
    }
}
