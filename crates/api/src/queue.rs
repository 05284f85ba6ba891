//! Queue wire types: status bodies, log entries, the submit response and webhook payloads.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The three states the fal clients know (failures and cancellations are `Completed` + `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueState {
    /// Waiting for a worker.
    InQueue,
    /// A worker is processing it.
    InProgress,
    /// Finished: success, failure or cancellation.
    Completed,
}

/// One log line as the clients expect it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The text.
    pub message: String,
    /// `STDERR|STDOUT|ERROR|INFO|WARN|DEBUG`.
    pub level: String,
    /// Always `USER`.
    pub source: String,
    /// ISO-8601 UTC without offset, e.g. `2026-11-24T10:00:00.123456`.
    pub timestamp: String,
}

impl LogEntry {
    /// A `USER` log entry; `level` is upper-cased and mapped onto fal's set.
    pub fn new(level: &str, message: impl Into<String>, timestamp: impl Into<String>) -> Self {
        let upper = level.to_ascii_uppercase();
        let level = match upper.as_str() {
            "STDERR" | "STDOUT" | "ERROR" | "INFO" | "DEBUG" => upper,
            "WARN" | "WARNING" => "WARN".to_owned(),
            "TRACE" => "DEBUG".to_owned(),
            _ => "INFO".to_owned(),
        };
        Self {
            message: message.into(),
            level,
            source: "USER".to_owned(),
            timestamp: timestamp.into(),
        }
    }
}

/// The follow-up URLs of a request, in the stripped (owner/alias only) form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestUrls {
    /// `GET` for the result.
    pub response_url: String,
    /// `GET` for the status.
    pub status_url: String,
    /// `PUT` to cancel.
    pub cancel_url: String,
}

impl RequestUrls {
    /// URLs under `queue_base` (e.g. `http://host:8080/queue`) for `owner/alias` and `id`.
    pub fn new(queue_base: &str, owner_alias: &str, request_id: &str) -> Self {
        let base = format!(
            "{}/{}/requests/{}",
            queue_base.trim_end_matches('/'),
            owner_alias.trim_matches('/'),
            request_id
        );
        Self {
            status_url: format!("{base}/status"),
            cancel_url: format!("{base}/cancel"),
            response_url: base,
        }
    }
}

/// A status body (`GET …/status`, and each SSE event of `…/status/stream`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStatus {
    /// The state.
    pub status: QueueState,
    /// The request id.
    pub request_id: String,
    /// Follow-up URLs.
    pub urls: RequestUrls,
    /// Requests ahead of this one (`IN_QUEUE` only).
    pub queue_position: Option<u64>,
    /// Log entries; `None` serializes as `null` (logs not requested).
    pub logs: Option<Vec<LogEntry>>,
    /// Seconds of processing (`COMPLETED` only).
    pub inference_time: Option<f64>,
    /// Failure message (`COMPLETED` only).
    pub error: Option<String>,
    /// Failure type (`COMPLETED` only).
    pub error_type: Option<String>,
}

impl QueueStatus {
    /// The JSON body as fal sends it: `queue_position` on `IN_QUEUE`, the `logs` key always
    /// present on `IN_PROGRESS`/`COMPLETED`, `metrics` on `COMPLETED`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("status".into(), json!(self.status));
        m.insert("request_id".into(), json!(self.request_id));
        m.insert("response_url".into(), json!(self.urls.response_url));
        m.insert("status_url".into(), json!(self.urls.status_url));
        m.insert("cancel_url".into(), json!(self.urls.cancel_url));
        match self.status {
            QueueState::InQueue => {
                m.insert(
                    "queue_position".into(),
                    json!(self.queue_position.unwrap_or(0)),
                );
                if let Some(logs) = &self.logs {
                    m.insert("logs".into(), json!(logs));
                }
            }
            QueueState::InProgress => {
                m.insert("logs".into(), json!(self.logs));
            }
            QueueState::Completed => {
                m.insert("logs".into(), json!(self.logs));
                let mut metrics = Map::new();
                if let Some(t) = self.inference_time {
                    metrics.insert("inference_time".into(), json!(t));
                }
                m.insert("metrics".into(), Value::Object(metrics));
                if let Some(e) = &self.error {
                    m.insert("error".into(), json!(e));
                }
                if let Some(t) = &self.error_type {
                    m.insert("error_type".into(), json!(t));
                }
            }
        }
        Value::Object(m)
    }
}

/// The queue submit response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// Always `IN_QUEUE`.
    pub status: QueueState,
    /// The new request's id.
    pub request_id: String,
    /// `GET` for the result.
    pub response_url: String,
    /// `GET` for the status.
    pub status_url: String,
    /// `PUT` to cancel.
    pub cancel_url: String,
    /// Requests ahead of this one.
    pub queue_position: u64,
    /// Same as `request_id`.
    pub gateway_request_id: String,
    /// Seconds that will be billed (our extension).
    pub billable_seconds: f64,
    /// Estimated cost in USD (our extension).
    pub estimated_cost_usd: f64,
}

/// Webhook outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookStatus {
    /// Success: `payload` is the output.
    #[serde(rename = "OK")]
    Ok,
    /// Failure: `payload` is the error body.
    #[serde(rename = "ERROR")]
    Error,
}

/// The body POSTed to `fal_webhook` when a request finishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// The request id.
    pub request_id: String,
    /// Same as `request_id`.
    pub gateway_request_id: String,
    /// `OK` or `ERROR`.
    pub status: WebhookStatus,
    /// The output, or the error body.
    pub payload: Option<Value>,
    /// On failure, e.g. `Invalid status code: 422`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why `payload` is null, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_error: Option<String>,
}

impl WebhookPayload {
    /// A success payload.
    pub fn ok(request_id: &str, output: Value) -> Self {
        Self {
            request_id: request_id.to_owned(),
            gateway_request_id: request_id.to_owned(),
            status: WebhookStatus::Ok,
            payload: Some(output),
            error: None,
            payload_error: None,
        }
    }

    /// A failure payload: `status_code` is the HTTP code the result endpoint answers with.
    pub fn error(request_id: &str, status_code: u16, body: Value) -> Self {
        Self {
            request_id: request_id.to_owned(),
            gateway_request_id: request_id.to_owned(),
            status: WebhookStatus::Error,
            payload: Some(body),
            error: Some(format!("Invalid status code: {status_code}")),
            payload_error: None,
        }
    }
}

/// Whether a `logs` query value turns logs on (`1` or `true`, case-insensitive).
pub fn logs_flag(value: Option<&str>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("1") | Some("true")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> RequestUrls {
        RequestUrls::new("http://h:1/queue/", "fal-ai/longcat-video", "abc")
    }

    #[test]
    fn urls_use_stripped_form() {
        let u = urls();
        assert_eq!(
            u.response_url,
            "http://h:1/queue/fal-ai/longcat-video/requests/abc"
        );
        assert_eq!(
            u.status_url,
            "http://h:1/queue/fal-ai/longcat-video/requests/abc/status"
        );
        assert_eq!(
            u.cancel_url,
            "http://h:1/queue/fal-ai/longcat-video/requests/abc/cancel"
        );
    }

    fn status(state: QueueState) -> QueueStatus {
        QueueStatus {
            status: state,
            request_id: "abc".into(),
            urls: urls(),
            queue_position: Some(2),
            logs: None,
            inference_time: Some(1.5),
            error: None,
            error_type: None,
        }
    }

    #[test]
    fn status_bodies_follow_the_client_parsers() {
        let q = status(QueueState::InQueue).to_json();
        assert_eq!(q["status"], "IN_QUEUE");
        assert_eq!(q["queue_position"], 2);
        assert!(q.get("logs").is_none());

        let p = status(QueueState::InProgress).to_json();
        assert_eq!(p["status"], "IN_PROGRESS");
        assert!(p.get("logs").unwrap().is_null());
        assert!(p.get("queue_position").is_none());

        let mut c = status(QueueState::Completed);
        c.logs = Some(vec![LogEntry::new(
            "warning",
            "hi",
            "2026-01-01T00:00:00.000000",
        )]);
        c.error = Some("Request cancelled".into());
        c.error_type = Some("client_cancelled".into());
        let c = c.to_json();
        assert_eq!(c["status"], "COMPLETED");
        assert_eq!(c["metrics"]["inference_time"], 1.5);
        assert_eq!(c["logs"][0]["level"], "WARN");
        assert_eq!(c["logs"][0]["source"], "USER");
        assert_eq!(c["error"], "Request cancelled");
        assert_eq!(c["error_type"], "client_cancelled");
        assert_eq!(c["cancel_url"], urls().cancel_url);
    }

    #[test]
    fn logs_flag_accepts_both_client_spellings() {
        assert!(logs_flag(Some("1")));
        assert!(logs_flag(Some("true")));
        assert!(logs_flag(Some("True")));
        assert!(!logs_flag(Some("0")));
        assert!(!logs_flag(Some("false")));
        assert!(!logs_flag(None));
    }

    #[test]
    fn webhook_payloads() {
        let ok = serde_json::to_value(WebhookPayload::ok("r", json!({"seed": 1}))).unwrap();
        assert_eq!(
            ok,
            json!({"request_id": "r", "gateway_request_id": "r", "status": "OK", "payload": {"seed": 1}})
        );
        let err =
            serde_json::to_value(WebhookPayload::error("r", 422, json!({"detail": []}))).unwrap();
        assert_eq!(err["status"], "ERROR");
        assert_eq!(err["error"], "Invalid status code: 422");
    }
}
