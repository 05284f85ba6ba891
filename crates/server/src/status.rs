//! The status body of a job (fal's `QueueStatus`), shared by the status route and the status
//! stream, and the error a failed or cancelled job reports.

use longcat_api::failure::kinds;
use longcat_api::queue::{LogEntry, QueueState, QueueStatus, RequestUrls};
use longcat_api::{failure_report, split_endpoint};
use longcat_store::{JobError, JobStatus, JobSummary, LogLine};
use serde_json::Value;

use crate::error::ApiError;
use crate::request::FalRequest;
use crate::state::AppState;

/// The error kind, message and detail a finished job reports: its stored error, or the
/// default of a cancelled or failed job that has none.
pub fn job_error(error: Option<&JobError>, status: JobStatus) -> (String, String, Option<Value>) {
    match (error, status) {
        (Some(e), _) => (e.kind.clone(), e.message.clone(), e.detail.clone()),
        (None, JobStatus::Cancelled) => (kinds::CANCELLED.into(), "Request cancelled".into(), None),
        (None, _) => (kinds::INTERNAL.into(), "Request failed".into(), None),
    }
}

/// Converts a store log line to fal's log entry.
pub fn log_entry(line: &LogLine) -> LogEntry {
    LogEntry::new(
        &line.level,
        line.message.clone(),
        line.timestamp.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
    )
}

/// Builds the status body of `job`. With `after_seq`, only logs newer than it are included.
pub async fn status_of(
    state: &AppState,
    job: &JobSummary,
    req: &FalRequest,
    with_logs: bool,
    after_seq: Option<i64>,
) -> Result<QueueStatus, ApiError> {
    status_with_base(
        state,
        job,
        &state.queue_base(&req.headers)?,
        with_logs,
        after_seq,
    )
    .await
    .map(|(s, _)| s)
}

/// Like [`status_of`] with an explicit queue base; also returns the last log seq included.
pub async fn status_with_base(
    state: &AppState,
    job: &JobSummary,
    queue_base: &str,
    with_logs: bool,
    after_seq: Option<i64>,
) -> Result<(QueueStatus, Option<i64>), ApiError> {
    let (owner_alias, _) = split_endpoint(&job.endpoint);
    let urls = RequestUrls::new(queue_base, owner_alias, &job.id);
    let state_name = match job.status {
        JobStatus::Queued => QueueState::InQueue,
        JobStatus::Running => QueueState::InProgress,
        _ => QueueState::Completed,
    };
    let mut last_seq = after_seq;
    let logs = if with_logs {
        let lines = state.store.logs(&job.id, after_seq).await?;
        if let Some(l) = lines.last() {
            last_seq = Some(l.seq);
        }
        Some(lines.iter().map(log_entry).collect())
    } else {
        None
    };
    let queue_position = if state_name == QueueState::InQueue {
        Some(state.store.queue_position(&job.id).await?.unwrap_or(0))
    } else {
        None
    };
    let (error, error_type) = if matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
        let (kind, message, detail) = job_error(job.error.as_ref(), job.status);
        let report = failure_report(&kind, &message, detail.as_ref());
        (Some(report.error), Some(report.error_type))
    } else {
        (None, None)
    };
    let inference_time = match (job.started_at, job.finished_at) {
        (Some(s), Some(f)) => Some((f - s).num_microseconds().unwrap_or(0) as f64 / 1e6),
        _ => None,
    };
    Ok((
        QueueStatus {
            status: state_name,
            request_id: job.id.clone(),
            urls,
            queue_position,
            logs,
            inference_time: if state_name == QueueState::Completed {
                Some(inference_time.unwrap_or(0.0))
            } else {
                None
            },
            error,
            error_type,
        },
        last_seq,
    ))
}
