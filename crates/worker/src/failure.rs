//! How a job can end badly, and how each ending is recorded and reported. The HTTP mapping is
//! `longcat_api::failure::failure_report`, shared with the server's result endpoint.

use longcat_api::failure::{failure_report, kinds};
use longcat_api::ValidationErrors;
use longcat_store::{Job, JobError, JobStatus};

use crate::webhook::WebhookOutcome;

/// Why a job did not complete.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The input (often the image) is unusable: fal's 422 with a `detail` array.
    Validation(ValidationErrors),
    /// The user cancelled it.
    Cancelled,
    /// Anything else: a 500 with `runner_server_error`.
    Internal(String),
    /// The safety checker flagged the input image or the output: fal's 422 with a
    /// `content_policy_violation` detail (`detail` is that list).
    ContentPolicy {
        /// The 422 `detail` list ([`longcat_api::failure::content_policy_detail`]).
        detail: serde_json::Value,
        /// The flagged categories.
        categories: Vec<String>,
    },
}

impl Failure {
    /// Kind name, as stored (`validation`, `cancelled`, `internal`, `content_policy`).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Validation(_) => kinds::VALIDATION,
            Failure::Cancelled => kinds::CANCELLED,
            Failure::Internal(_) => kinds::INTERNAL,
            Failure::ContentPolicy { .. } => kinds::CONTENT_POLICY,
        }
    }

    /// Human message.
    pub fn message(&self) -> String {
        match self {
            Failure::Validation(v) => v
                .errors()
                .iter()
                .map(|e| e.msg.clone())
                .collect::<Vec<_>>()
                .join("; "),
            Failure::Cancelled => longcat_store::CANCELLED_MESSAGE.into(),
            Failure::Internal(m) => m.clone(),
            Failure::ContentPolicy { categories, .. } => format!(
                "{} (categories: {})",
                longcat_api::failure::CONTENT_POLICY_MESSAGE,
                categories.join(", ")
            ),
        }
    }

    /// The record for the job store (`detail` holds the 422 detail array for validation).
    pub fn to_job_error(&self) -> JobError {
        JobError {
            kind: self.kind().into(),
            message: self.message(),
            detail: match self {
                Failure::Validation(v) => Some(v.detail()),
                Failure::ContentPolicy { detail, .. } => Some(detail.clone()),
                _ => None,
            },
        }
    }
}

/// The webhook report for a job error: `error: "Invalid status code: <code>"` and the body the
/// result endpoint answers with.
pub fn error_outcome(error: &JobError) -> WebhookOutcome {
    let report = failure_report(&error.kind, &error.message, error.detail.as_ref());
    WebhookOutcome::Error {
        error: format!("Invalid status code: {}", report.status_code),
        payload: Some(report.body),
    }
}

/// The webhook report for a finished job as stored, or `None` while it is not finished.
pub fn job_outcome(job: &Job) -> Option<WebhookOutcome> {
    match job.status {
        JobStatus::Completed => Some(WebhookOutcome::Ok(job.result.clone().unwrap_or_default())),
        JobStatus::Failed | JobStatus::Cancelled => {
            let fallback = match job.status {
                JobStatus::Cancelled => {
                    JobError::new(kinds::CANCELLED, longcat_store::CANCELLED_MESSAGE)
                }
                _ => JobError::new(kinds::INTERNAL, "the job failed"),
            };
            Some(error_outcome(job.error.as_ref().unwrap_or(&fallback)))
        }
        JobStatus::Queued | JobStatus::Running => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longcat_api::ValidationError;
    use serde_json::json;

    #[test]
    fn validation_failures_carry_the_422_detail() {
        let v: ValidationErrors =
            ValidationError::field("image_url", "file_download_error", "timed out").into();
        let f = Failure::Validation(v);
        let e = f.to_job_error();
        assert_eq!(e.kind, "validation");
        assert_eq!(e.message, "timed out");
        let detail = e.detail.clone().unwrap();
        assert_eq!(detail[0]["loc"], json!(["body", "image_url"]));
        assert_eq!(detail[0]["type"], "file_download_error");
        match error_outcome(&e) {
            WebhookOutcome::Error { error, payload } => {
                assert_eq!(error, "Invalid status code: 422");
                assert_eq!(payload.unwrap(), json!({ "detail": detail }));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cancel_and_internal_use_request_errors() {
        let outcome = |f: Failure| match error_outcome(&f.to_job_error()) {
            WebhookOutcome::Error { error, payload } => (error, payload.unwrap()),
            other => panic!("{other:?}"),
        };
        let (error, body) = outcome(Failure::Cancelled);
        assert_eq!(error, "Invalid status code: 499");
        assert_eq!(body["error_type"], "client_cancelled");
        let (error, body) = outcome(Failure::Internal("boom".into()));
        assert_eq!(error, "Invalid status code: 500");
        assert_eq!(
            body,
            json!({"detail": "boom", "error_type": "runner_server_error"})
        );
        let (error, body) = match error_outcome(&JobError::new("lost", "worker vanished")) {
            WebhookOutcome::Error { error, payload } => (error, payload.unwrap()),
            other => panic!("{other:?}"),
        };
        assert_eq!(error, "Invalid status code: 500");
        assert_eq!(body["error_type"], "runner_disconnected");
    }
}
