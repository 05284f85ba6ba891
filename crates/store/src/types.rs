//! The job store's public data types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Lifecycle state of a job. fal clients only see three states; [`JobStatus::fal_status`] maps
/// the finished ones (completed, failed, cancelled) onto `COMPLETED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Claimed by a worker that holds a lease on it.
    Running,
    /// Finished with a result.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled before or while running.
    Cancelled,
}

impl JobStatus {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// fal's queue status name: `IN_QUEUE`, `IN_PROGRESS` or `COMPLETED`.
    pub fn fal_status(self) -> &'static str {
        match self {
            JobStatus::Queued => "IN_QUEUE",
            JobStatus::Running => "IN_PROGRESS",
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled => "COMPLETED",
        }
    }

    /// True for the final states (completed, failed, cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a status string that is not one of the five states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            other => return Err(UnknownStatus(other.to_string())),
        })
    }
}

/// Queue priority (fal's `X-Fal-Queue-Priority`): every `Low` job waits behind all `Normal` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// The default.
    #[default]
    Normal,
    /// Runs only when no normal job is waiting.
    Low,
}

impl Priority {
    /// Stored rank: lower runs first.
    pub(crate) fn rank(self) -> i64 {
        match self {
            Priority::Normal => 0,
            Priority::Low => 1,
        }
    }

    pub(crate) fn from_rank(rank: i64) -> Self {
        if rank <= 0 {
            Priority::Normal
        } else {
            Priority::Low
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Request id, unique across the store (fal's `request_id`).
    pub id: String,
    /// Endpoint id the request was submitted to.
    pub endpoint: String,
    /// The request body as submitted.
    pub input: serde_json::Value,
    /// API key the request was made with, for usage accounting.
    pub key_id: Option<String>,
    /// fal webhook target, if any.
    pub webhook_url: Option<String>,
    /// Seconds of video billed when the job completes.
    pub billable_seconds: f64,
    /// Cost estimate shown at submit and recorded as usage on completion.
    pub estimated_cost_usd: f64,
    /// How many times the job may be claimed (1 = no automatic re-run after a lost worker).
    pub max_attempts: u32,
}

/// Optional submit settings beyond [`NewJob`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SubmitOptions {
    /// Queue priority.
    pub priority: Priority,
    /// Start deadline (fal's `X-Fal-Request-Timeout`): a job still queued after this instant
    /// fails with kind `"timeout"` instead of running.
    pub start_deadline: Option<DateTime<Utc>>,
    /// Output lifetime (fal's `X-Fal-Object-Lifecycle-Preference`): the job's output files
    /// are deleted this long after it finished (whole seconds). `None`: kept.
    pub output_ttl: Option<std::time::Duration>,
}

/// Why a job failed or was cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobError {
    /// `"validation"`, `"cancelled"`, `"internal"`, `"lost"` or `"timeout"`.
    pub kind: String,
    /// Human-readable reason.
    pub message: String,
    /// Structured detail, e.g. fal's 422 `detail` array.
    pub detail: Option<serde_json::Value>,
}

impl JobError {
    /// An error of `kind` with a message and no detail.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        JobError {
            kind: kind.into(),
            message: message.into(),
            detail: None,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Request id.
    pub id: String,
    /// Endpoint id.
    pub endpoint: String,
    /// The request body as submitted.
    pub input: serde_json::Value,
    /// API key id, if any.
    pub key_id: Option<String>,
    /// Webhook target, if any.
    pub webhook_url: Option<String>,
    /// Current state.
    pub status: JobStatus,
    /// Queue priority.
    pub priority: Priority,
    /// How many times the job has been claimed.
    pub attempts: u32,
    /// Claim limit.
    pub max_attempts: u32,
    /// Worker holding (or that last held) the job.
    pub worker_id: Option<String>,
    /// When the current worker's lease runs out (running jobs only).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Start deadline, if one was given at submit.
    pub start_deadline: Option<DateTime<Utc>>,
    /// Submit time.
    pub created_at: DateTime<Utc>,
    /// Start of the latest attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Output JSON of a completed job.
    pub result: Option<serde_json::Value>,
    /// Error of a failed or cancelled job.
    pub error: Option<JobError>,
    /// Whether a cancel was requested while the job was running.
    pub cancel_requested: bool,
    /// Seconds of video billed on completion.
    pub billable_seconds: f64,
    /// Estimated cost in USD.
    pub estimated_cost_usd: f64,
}

/// What a status read needs of a job: everything but the input, the result and the worker
/// bookkeeping ([`crate::JobStore::summary`] never reads the input or result columns, which
/// can be megabytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Request id.
    pub id: String,
    /// Endpoint id.
    pub endpoint: String,
    /// API key id the job was submitted with (its owner), if any.
    pub key_id: Option<String>,
    /// Current state.
    pub status: JobStatus,
    /// Submit time.
    pub created_at: DateTime<Utc>,
    /// Start of the latest attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Error of a failed or cancelled job.
    pub error: Option<JobError>,
}

/// One job log line (progress, warnings, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Increasing sequence number; pass the last one seen as `after_seq` to get only newer lines.
    pub seq: i64,
    /// When the line was written.
    pub timestamp: DateTime<Utc>,
    /// `INFO`, `WARN`, `ERROR`, `DEBUG`, …
    pub level: String,
    /// The text.
    pub message: String,
}

/// Result of [`crate::JobStore::request_cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// The job was queued and is now cancelled; it will never run.
    Cancelled,
    /// The job is running; its worker was asked to stop.
    Requested,
    /// The job had already finished.
    AlreadyDone,
    /// No such job.
    NotFound,
}

/// Usage totals over completed jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageSummary {
    /// Completed requests.
    pub requests: u64,
    /// Seconds of video billed.
    pub billable_seconds: f64,
    /// Cost in USD.
    pub cost_usd: f64,
}

/// What [`crate::JobStore::recover_expired`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// Jobs whose worker's lease expired and that were put back in the queue.
    pub requeued: Vec<String>,
    /// Jobs whose lease expired with no attempts left: now failed with kind `"lost"`.
    pub failed: Vec<String>,
    /// Jobs whose lease expired after a cancel was requested: now cancelled.
    pub cancelled: Vec<String>,
    /// Queued jobs past their start deadline: now failed with kind `"timeout"`.
    pub timed_out: Vec<String>,
}

impl RecoveryReport {
    /// True when nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.requeued.is_empty()
            && self.failed.is_empty()
            && self.cancelled.is_empty()
            && self.timed_out.is_empty()
    }
}

/// One recorded webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttempt {
    /// Attempt number as given by the sender.
    pub attempt: u32,
    /// HTTP status of the receiver's answer, if one came.
    pub status_code: Option<u16>,
    /// Transport or other error, if any.
    pub error: Option<String>,
    /// When the attempt was recorded.
    pub at: DateTime<Utc>,
}

/// Where a job's webhook delivery stands (jobs without a webhook URL have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookState {
    /// Not delivered yet: the job has not finished, or an attempt is running or due.
    Pending,
    /// A receiver answered with a 2xx status.
    Delivered,
    /// Every attempt failed, or the URL was refused.
    Failed,
}

impl WebhookState {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Pending => "pending",
            WebhookState::Delivered => "delivered",
            WebhookState::Failed => "failed",
        }
    }

    /// Parses a stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(WebhookState::Pending),
            "delivered" => Some(WebhookState::Delivered),
            "failed" => Some(WebhookState::Failed),
            _ => None,
        }
    }
}

/// A finished job whose webhook is due, claimed for one delivery attempt
/// ([`crate::JobStore::claim_due_webhook`]).
#[derive(Debug, Clone)]
pub struct DueWebhook {
    /// The finished job (its `webhook_url` is set).
    pub job: Job,
    /// This attempt's number, from 1.
    pub attempt: u32,
}

/// What follows a webhook attempt ([`crate::JobStore::finish_webhook_attempt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookNext {
    /// Delivered: nothing more to do.
    Delivered,
    /// Try again once this much time has passed.
    RetryAfter(std::time::Duration),
    /// No more attempts.
    GiveUp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_maps_to_fal() {
        for s in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        }
        assert!("done".parse::<JobStatus>().is_err());
        assert_eq!(JobStatus::Queued.fal_status(), "IN_QUEUE");
        assert_eq!(JobStatus::Running.fal_status(), "IN_PROGRESS");
        assert_eq!(JobStatus::Failed.fal_status(), "COMPLETED");
        assert_eq!(JobStatus::Cancelled.fal_status(), "COMPLETED");
        assert!(!JobStatus::Running.is_terminal());
        assert!(JobStatus::Cancelled.is_terminal());
    }

    #[test]
    fn priority_ranks() {
        assert_eq!(Priority::from_rank(Priority::Low.rank()), Priority::Low);
        assert_eq!(
            Priority::from_rank(Priority::Normal.rank()),
            Priority::Normal
        );
        assert!(Priority::Normal.rank() < Priority::Low.rank());
    }
}
