//! How a failed job is reported: HTTP status and body of the result endpoint (and of a sync
//! run), plus the `error`/`error_type` of its `COMPLETED` status. Shared by the server (result,
//! status) and the worker (webhook `ERROR` payloads).

use serde_json::{json, Value};

use crate::error::{error_types, RequestError};

/// Job error kinds (`JobError::kind` in the job store): the names of
/// [`longcat_core::JobErrorKind`].
pub mod kinds {
    use longcat_core::JobErrorKind;

    /// Invalid input (422 with a `detail` array).
    pub const VALIDATION: &str = JobErrorKind::Validation.as_str();
    /// Cancelled by the caller.
    pub const CANCELLED: &str = JobErrorKind::Cancelled.as_str();
    /// Failure while processing.
    pub const INTERNAL: &str = JobErrorKind::Internal.as_str();
    /// The worker vanished and the job ran out of attempts.
    pub const LOST: &str = JobErrorKind::Lost.as_str();
    /// Not started before the caller's `X-Fal-Request-Timeout`.
    pub const TIMEOUT: &str = JobErrorKind::Timeout.as_str();
    /// Flagged by the safety checker (422 with a `content_policy_violation` detail).
    pub const CONTENT_POLICY: &str = JobErrorKind::ContentPolicy.as_str();
}

/// fal's error `type` (and the status's `error_type`) of content the safety checker flagged.
pub const CONTENT_POLICY_VIOLATION: &str = "content_policy_violation";
/// fal's message for it.
pub const CONTENT_POLICY_MESSAGE: &str =
    "The content could not be processed because it contained material flagged by a content checker.";
/// fal's documentation link in the error item.
pub const CONTENT_POLICY_URL: &str = "https://docs.fal.ai/errors#content_policy_violation";

/// The 422 `detail` list of a content policy violation: one item at `loc` (`["body",
/// "image_url"]` for the input image, `["body", "output"]` for the generated video) with the
/// offending `input` (the image URL; for the output, the flagged frame indices) and the
/// flagged `categories`.
pub fn content_policy_detail(loc: &[&str], input: Value, categories: &[String]) -> Value {
    json!([{
        "loc": loc,
        "msg": CONTENT_POLICY_MESSAGE,
        "type": CONTENT_POLICY_VIOLATION,
        "url": CONTENT_POLICY_URL,
        "input": input,
        "categories": categories,
    }])
}

/// A failure as the clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureReport {
    /// HTTP status of the result endpoint.
    pub status_code: u16,
    /// Body of the result endpoint.
    pub body: Value,
    /// `error` of the `COMPLETED` status.
    pub error: String,
    /// `error_type` of the `COMPLETED` status (also `X-Fal-Error-Type` for request errors).
    pub error_type: String,
    /// Whether to send `X-Fal-Request-Timeout-Type: user`.
    pub user_timeout: bool,
}

/// Maps a job error (`kind`, `message`, optional `detail`) to what the clients see.
pub fn failure_report(kind: &str, message: &str, detail: Option<&Value>) -> FailureReport {
    let request = |error_type: &str, status: u16, text: &str| {
        let err = RequestError::new(error_type, text);
        FailureReport {
            status_code: status,
            body: json!(err),
            error: text.to_owned(),
            error_type: error_type.to_owned(),
            user_timeout: error_type == error_types::REQUEST_TIMEOUT,
        }
    };
    match kind {
        kinds::VALIDATION => {
            let detail = match detail {
                Some(Value::Array(a)) => Value::Array(a.clone()),
                Some(Value::Object(o)) if o.get("detail").is_some_and(Value::is_array) => {
                    o["detail"].clone()
                }
                _ => json!([{"loc": ["body"], "msg": message, "type": "value_error"}]),
            };
            FailureReport {
                status_code: 422,
                body: json!({ "detail": detail }),
                error: message.to_owned(),
                error_type: "validation_error".to_owned(),
                user_timeout: false,
            }
        }
        kinds::CONTENT_POLICY => FailureReport {
            status_code: 422,
            body: json!({ "detail": match detail {
                Some(Value::Array(a)) => Value::Array(a.clone()),
                _ => content_policy_detail(&["body"], Value::Null, &[]),
            }}),
            error: message.to_owned(),
            error_type: CONTENT_POLICY_VIOLATION.to_owned(),
            user_timeout: false,
        },
        kinds::CANCELLED => request(error_types::CLIENT_CANCELLED, 499, "Request cancelled"),
        kinds::TIMEOUT => request(
            error_types::REQUEST_TIMEOUT,
            504,
            if message.is_empty() {
                "Request timed out before it started"
            } else {
                message
            },
        ),
        // A lost worker may have done GPU work: 500, so the JS client does not re-run it.
        kinds::LOST => request(error_types::RUNNER_DISCONNECTED, 500, message),
        _ => request(error_types::RUNNER_SERVER_ERROR, 500, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_keeps_the_detail_array() {
        let d = json!([{"loc": ["body", "image_url"], "msg": "bad", "type": "image_load_error"}]);
        let r = failure_report(kinds::VALIDATION, "bad", Some(&d));
        assert_eq!(r.status_code, 422);
        assert_eq!(r.body, json!({ "detail": d }));
        let wrapped = failure_report(kinds::VALIDATION, "bad", Some(&json!({ "detail": d })));
        assert_eq!(wrapped.body, r.body);
        let plain = failure_report(kinds::VALIDATION, "oops", None);
        assert_eq!(plain.body["detail"][0]["msg"], "oops");
    }

    #[test]
    fn content_policy_is_a_422_with_the_violation_item() {
        let d = content_policy_detail(
            &["body", "image_url"],
            json!("https://example.com/a.png"),
            &["sexual".to_string()],
        );
        let r = failure_report(kinds::CONTENT_POLICY, CONTENT_POLICY_MESSAGE, Some(&d));
        assert_eq!(r.status_code, 422);
        assert_eq!(r.error_type, "content_policy_violation");
        let item = &r.body["detail"][0];
        assert_eq!(item["loc"], json!(["body", "image_url"]));
        assert_eq!(item["type"], "content_policy_violation");
        assert_eq!(item["input"], "https://example.com/a.png");
        assert_eq!(item["categories"], json!(["sexual"]));
        assert_eq!(item["msg"], CONTENT_POLICY_MESSAGE);
        assert_eq!(item["url"], CONTENT_POLICY_URL);
        // A record without its detail still answers in the same shape.
        let bare = failure_report(kinds::CONTENT_POLICY, "flagged", None);
        assert_eq!(bare.body["detail"][0]["type"], "content_policy_violation");
    }

    #[test]
    fn request_errors() {
        let c = failure_report(kinds::CANCELLED, "", None);
        assert_eq!(
            (c.status_code, c.error_type.as_str()),
            (499, "client_cancelled")
        );
        assert_eq!(c.error, "Request cancelled");
        let t = failure_report(kinds::TIMEOUT, "", None);
        assert_eq!(t.status_code, 504);
        assert!(t.user_timeout);
        assert_eq!(t.body["error_type"], "request_timeout");
        let l = failure_report(kinds::LOST, "worker lost", None);
        assert_eq!(
            (l.status_code, l.error_type.as_str()),
            (500, "runner_disconnected")
        );
        let i = failure_report(kinds::INTERNAL, "boom", None);
        assert_eq!(
            i.body,
            json!({"detail": "boom", "error_type": "runner_server_error"})
        );
    }
}
