//! The `request` span of the HTTP handlers: submit, status and cancel log lines, and those of
//! the status stream's task, carry the request id (and the endpoint and API key id). A test
//! binary of its own: it installs the process-wide JSON subscriber (once, shared by its tests)
//! and reads back what it wrote.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{input, Go, Opts, TestServer};
use serde_json::Value;

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// The buffer of the process-wide JSON subscriber (installed on first use; the status
/// stream's per-event lines are at debug level).
fn logs() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Buffer::default();
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter("info,longcat_server::sse=debug")
            .with_writer(logs.clone())
            .init();
        logs
    })
}

/// The log lines with message `message` that mention request `id` anywhere (the tests of
/// this binary run in parallel, each with its own request).
fn lines_with(logs: &Buffer, message: &str, id: &str) -> Vec<Value> {
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|l| l["fields"]["message"] == message && l.to_string().contains(id))
        .collect()
}

/// Every log line with message `message` (for failure messages).
fn all_lines_with(logs: &Buffer, message: &str) -> Vec<Value> {
    lines_with(logs, message, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_log_lines_carry_the_request_id() {
    let logs = logs();
    // No workers: the job stays queued until it is cancelled.
    let server = TestServer::start(Opts {
        workers: 0,
        ..Opts::default()
    })
    .await;
    let submitted = server.submit(&input()).await;
    let id = submitted["request_id"].as_str().unwrap().to_owned();

    let queued = lines_with(logs, "request queued", &id);
    assert_eq!(
        queued.len(),
        1,
        "{:?}",
        all_lines_with(logs, "request queued")
    );
    let span = &queued[0]["span"];
    assert_eq!(span["name"], "request", "{span}");
    assert_eq!(span["op"], "submit", "{span}");
    assert_eq!(span["request_id"], id.as_str(), "{span}");
    assert_eq!(span["endpoint"], longcat_api::ENDPOINT_ID, "{span}");
    assert!(
        span["key_id"].as_str().is_some_and(|k| !k.is_empty()),
        "{span}"
    );

    let cancel_url = submitted["cancel_url"].as_str().unwrap();
    let resp = server
        .client
        .put(cancel_url)
        .header("authorization", format!("Key {}", common::KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let cancelled = lines_with(logs, "cancel requested", &id);
    assert_eq!(
        cancelled.len(),
        1,
        "{:?}",
        all_lines_with(logs, "cancel requested")
    );
    let span = &cancelled[0]["span"];
    assert_eq!(span["op"], "cancel", "{span}");
    assert_eq!(span["request_id"], id.as_str(), "{span}");
    server.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_stream_task_runs_in_the_request_span() {
    let logs = logs();
    // No workers: the job stays queued, so the stream sends one event and keeps polling.
    let server = TestServer::start(Opts {
        workers: 0,
        ..Opts::default()
    })
    .await;
    let submitted = server.submit(&input()).await;
    let id = submitted["request_id"].as_str().unwrap().to_owned();
    let mut resp = server
        .get(&format!(
            "/queue/fal-ai/longcat-video/requests/{id}/status/stream"
        ))
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("first event");
    assert!(String::from_utf8_lossy(&first).contains("IN_QUEUE"));

    // The task logs each event before sending it, so the line is there by now.
    let sent = lines_with(logs, "status stream: event sent", &id);
    assert!(
        !sent.is_empty(),
        "{:?}",
        all_lines_with(logs, "status stream: event sent")
    );
    let span = &sent[0]["span"];
    assert_eq!(span["name"], "request", "{span}");
    assert_eq!(span["op"], "status_stream", "{span}");
    assert_eq!(span["request_id"], id.as_str(), "{span}");
    assert!(
        span["key_id"].as_str().is_some_and(|k| !k.is_empty()),
        "{span}"
    );
    drop(resp);
    server.handle.shutdown().await;
}
