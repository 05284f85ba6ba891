//! Raw database rows and their conversion into the public types.
//!
//! Both backends use the same column types as seen from Rust: text, 64-bit integers
//! (timestamps are microseconds since the Unix epoch, UTC) and doubles; JSON is stored as text.

use crate::error::StoreError;
use crate::types::{Job, JobError, JobStatus, JobSummary, LogLine, Priority, WebhookAttempt};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Columns selected for a job, in [`JobRow`] order.
pub(crate) const JOB_COLUMNS: &str = "id, endpoint, input, key_id, webhook_url, priority, status, \
    attempts, max_attempts, worker_id, lease_expires_at, start_deadline, created_at, started_at, \
    finished_at, result, error_kind, error_message, error_detail, cancel_requested, \
    billable_seconds, estimated_cost_usd";

/// A `jobs` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    id: String,
    endpoint: String,
    input: String,
    key_id: Option<String>,
    webhook_url: Option<String>,
    priority: i64,
    status: String,
    attempts: i64,
    max_attempts: i64,
    worker_id: Option<String>,
    lease_expires_at: Option<i64>,
    start_deadline: Option<i64>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    result: Option<String>,
    error_kind: Option<String>,
    error_message: Option<String>,
    error_detail: Option<String>,
    cancel_requested: i64,
    billable_seconds: f64,
    estimated_cost_usd: f64,
}

impl JobRow {
    /// The job id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: r.id.clone(),
            reason,
        };
        let json = |what: &str, text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| corrupt(format!("{what} is not JSON: {e}")))
        };
        let status: JobStatus = r.status.parse().map_err(|e| corrupt(format!("{e}")))?;
        let input = json("input", &r.input)?;
        let result = r.result.as_deref().map(|t| json("result", t)).transpose()?;
        let error = match r.error_kind.clone() {
            Some(kind) => Some(JobError {
                kind,
                message: r.error_message.clone().unwrap_or_default(),
                detail: r
                    .error_detail
                    .as_deref()
                    .map(|t| json("error detail", t))
                    .transpose()?,
            }),
            None => None,
        };
        let count = |what: &str, v: i64| {
            u32::try_from(v).map_err(|_| corrupt(format!("{what} out of range: {v}")))
        };
        let time = |what: &str, v: i64| {
            from_micros(v).ok_or_else(|| corrupt(format!("{what} out of range: {v}")))
        };
        let opt_time = |what: &str, v: Option<i64>| v.map(|v| time(what, v)).transpose();
        Ok(Job {
            status,
            priority: Priority::from_rank(r.priority),
            attempts: count("attempts", r.attempts)?,
            max_attempts: count("max_attempts", r.max_attempts)?,
            lease_expires_at: opt_time("lease_expires_at", r.lease_expires_at)?,
            start_deadline: opt_time("start_deadline", r.start_deadline)?,
            created_at: time("created_at", r.created_at)?,
            started_at: opt_time("started_at", r.started_at)?,
            finished_at: opt_time("finished_at", r.finished_at)?,
            input,
            result,
            error,
            cancel_requested: r.cancel_requested != 0,
            billable_seconds: r.billable_seconds,
            estimated_cost_usd: r.estimated_cost_usd,
            id: r.id,
            endpoint: r.endpoint,
            key_id: r.key_id,
            webhook_url: r.webhook_url,
            worker_id: r.worker_id,
        })
    }
}

/// Columns selected for a [`JobSummary`], in [`SummaryRow`] order (no input, no result).
pub(crate) const SUMMARY_COLUMNS: &str = "id, endpoint, key_id, status, created_at, started_at, \
    finished_at, error_kind, error_message, error_detail";

/// The status columns of a `jobs` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SummaryRow {
    id: String,
    endpoint: String,
    key_id: Option<String>,
    status: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    error_kind: Option<String>,
    error_message: Option<String>,
    error_detail: Option<String>,
}

impl TryFrom<SummaryRow> for JobSummary {
    type Error = StoreError;

    fn try_from(r: SummaryRow) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: r.id.clone(),
            reason,
        };
        let status: JobStatus = r.status.parse().map_err(|e| corrupt(format!("{e}")))?;
        let error = match r.error_kind.clone() {
            Some(kind) => Some(JobError {
                kind,
                message: r.error_message.clone().unwrap_or_default(),
                detail: r
                    .error_detail
                    .as_deref()
                    .map(|t| {
                        serde_json::from_str(t)
                            .map_err(|e| corrupt(format!("error detail is not JSON: {e}")))
                    })
                    .transpose()?,
            }),
            None => None,
        };
        let time = |what: &str, v: i64| {
            from_micros(v).ok_or_else(|| corrupt(format!("{what} out of range: {v}")))
        };
        let opt_time = |what: &str, v: Option<i64>| v.map(|v| time(what, v)).transpose();
        Ok(JobSummary {
            status,
            created_at: time("created_at", r.created_at)?,
            started_at: opt_time("started_at", r.started_at)?,
            finished_at: opt_time("finished_at", r.finished_at)?,
            error,
            id: r.id,
            endpoint: r.endpoint,
            key_id: r.key_id,
        })
    }
}

/// A `job_logs` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LogRow {
    seq: i64,
    ts: i64,
    level: String,
    message: String,
}

impl LogRow {
    pub(crate) fn into_line(self) -> LogLine {
        LogLine {
            seq: self.seq,
            timestamp: from_micros(self.ts).unwrap_or_default(),
            level: self.level,
            message: self.message,
        }
    }
}

/// A `webhook_attempts` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WebhookRow {
    attempt: i64,
    status_code: Option<i64>,
    error: Option<String>,
    at: i64,
}

impl WebhookRow {
    pub(crate) fn into_attempt(self) -> WebhookAttempt {
        WebhookAttempt {
            attempt: u32::try_from(self.attempt).unwrap_or(u32::MAX),
            status_code: self.status_code.and_then(|c| u16::try_from(c).ok()),
            error: self.error,
            at: from_micros(self.at).unwrap_or_default(),
        }
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The current time in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    micros(Utc::now())
}

/// A duration in microseconds, saturating.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Inverse of [`micros`].
pub(crate) fn from_micros(v: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip() {
        let t = Utc::now();
        let back = from_micros(micros(t)).unwrap();
        assert_eq!(back.timestamp_micros(), t.timestamp_micros());
        assert_eq!(duration_micros(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(duration_micros(Duration::MAX), i64::MAX);
    }
}
