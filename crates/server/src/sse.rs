//! Server-sent events: the status stream (`…/status/stream`) and the streaming run.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use longcat_api::queue::QueueState;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use crate::state::AppState;
use crate::status::status_with_base;

/// Keep-alive comment interval (fal: every 15 s; we stay under it).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How often the stream looks at the job.
const POLL: Duration = Duration::from_millis(200);

/// Gauge of status streams whose task is still following a job.
pub const ACTIVE_STREAMS_GAUGE: &str = "longcat_status_streams_active";

/// Counts one live status-stream task in [`ACTIVE_STREAMS_GAUGE`] while it exists.
struct ActiveStream;

impl ActiveStream {
    fn new() -> Self {
        metrics::gauge!(ACTIVE_STREAMS_GAUGE).increment(1.0);
        Self
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        metrics::gauge!(ACTIVE_STREAMS_GAUGE).decrement(1.0);
    }
}

/// Streams status events for `id`: one per change (state or new logs, logs incremental),
/// closing right after `COMPLETED`. The job is read (status columns only, never the input)
/// every [`POLL`] while the client is connected; the task ends as soon as the client goes.
/// (Workers may run in other processes, so there is no in-process notification to wait on.)
/// The task runs in the caller's span (the handler's `request` span), so its log lines carry
/// the request id.
pub fn status_stream(
    state: Arc<AppState>,
    id: String,
    queue_base: String,
    with_logs: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(16);
    let active = ActiveStream::new();
    let task = async move {
        let _active = active;
        let mut last_seq: Option<i64> = None;
        let mut last_sent: Option<Value> = None;
        loop {
            let job = match state.store.summary(&id).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(request_id = %id, error = %e, "status stream: store read failed");
                    if !pause(&tx).await {
                        break;
                    }
                    continue;
                }
            };
            let (status, seq) = match status_with_base(
                &state,
                &job,
                &queue_base,
                with_logs,
                last_seq,
            )
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(request_id = %id, error = %e, "status stream: status failed");
                    if !pause(&tx).await {
                        break;
                    }
                    continue;
                }
            };
            let completed = status.status == QueueState::Completed;
            let body = status.to_json();
            let new_logs = seq != last_seq;
            // Compare without logs: a change of state/position or new log lines sends an event.
            let mut key = body.clone();
            if let Some(o) = key.as_object_mut() {
                o.remove("logs");
            }
            if completed || new_logs || last_sent.as_ref() != Some(&key) {
                tracing::debug!(status = ?status.status, "status stream: event sent");
                let event = Event::default().data(body.to_string());
                if tx.send(Ok(event)).await.is_err() {
                    break; // client went away
                }
                last_sent = Some(key);
                last_seq = seq;
            }
            if completed || !pause(&tx).await {
                break;
            }
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keepalive"))
        .into_response()
}

/// Waits one poll interval; false when the client went away meanwhile.
async fn pause(tx: &mpsc::Sender<Result<Event, Infallible>>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(POLL) => true,
        _ = tx.closed() => false,
    }
}

/// A finished streaming run: one event with the output, then the end of the stream.
pub fn single_event(output: &Value) -> Response {
    let event = Event::default().data(output.to_string());
    let stream = tokio_stream::once(Ok::<_, Infallible>(event));
    Sse::new(stream).into_response()
}
