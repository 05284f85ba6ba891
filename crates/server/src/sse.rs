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

use crate::fal::status_with_base;
use crate::state::AppState;

/// Keep-alive comment interval (fal: every 15 s; we stay under it).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How often the stream looks at the job.
const POLL: Duration = Duration::from_millis(200);

/// Streams status events for `id`: one per change (state or new logs, logs incremental),
/// closing right after `COMPLETED`.
pub fn status_stream(
    state: Arc<AppState>,
    id: String,
    queue_base: String,
    with_logs: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(16);
    tokio::spawn(async move {
        let mut last_seq: Option<i64> = None;
        let mut last_sent: Option<Value> = None;
        loop {
            let job = match state.store.get(&id).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(request_id = %id, error = %e, "status stream: store read failed");
                    tokio::time::sleep(POLL).await;
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
                    tokio::time::sleep(POLL).await;
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
                let event = Event::default().data(body.to_string());
                if tx.send(Ok(event)).await.is_err() {
                    break; // client went away
                }
                last_sent = Some(key);
                last_seq = seq;
            }
            if completed {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keepalive"))
        .into_response()
}

/// A finished streaming run: one event with the output, then the end of the stream.
pub fn single_event(output: &Value) -> Response {
    let event = Event::default().data(output.to_string());
    let stream = tokio_stream::once(Ok::<_, Infallible>(event));
    Sse::new(stream).into_response()
}
