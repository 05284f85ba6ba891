//! The `request` span of the HTTP handlers: submit, status and cancel log lines carry the
//! request id (and the endpoint and API key id). A test binary of its own: it installs the
//! process-wide JSON subscriber and reads back what it wrote.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{input, Opts, TestServer};
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

/// The log lines with message `message`.
fn lines_with(logs: &Buffer, message: &str) -> Vec<Value> {
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_log_lines_carry_the_request_id() {
    let logs = Buffer::default();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter("info")
        .with_writer(logs.clone())
        .init();
    // No workers: the job stays queued until it is cancelled.
    let server = TestServer::start(Opts {
        workers: 0,
        ..Opts::default()
    })
    .await;
    let submitted = server.submit(&input()).await;
    let id = submitted["request_id"].as_str().unwrap().to_owned();

    let queued = lines_with(&logs, "request queued");
    assert_eq!(queued.len(), 1, "{queued:?}");
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
    let cancelled = lines_with(&logs, "cancel requested");
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    let span = &cancelled[0]["span"];
    assert_eq!(span["op"], "cancel", "{span}");
    assert_eq!(span["request_id"], id.as_str(), "{span}");
    server.handle.shutdown().await;
}
