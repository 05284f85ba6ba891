//! [`JobStore`]: the queue and job records over a SQLite or Postgres pool.
//!
//! Every query is written once with `$N` placeholders (which both sqlx drivers accept) and run
//! against whichever pool is open; only the claim query differs (`FOR UPDATE SKIP LOCKED` on
//! Postgres). Multi-statement changes run in one transaction: `BEGIN IMMEDIATE` on SQLite (the
//! write lock is taken up front, so two writers queue on the busy timeout instead of failing),
//! a plain transaction on Postgres with every update guarded by the state it expects.

use crate::connect::{self, Backend};
use crate::error::{map_fk, Result, StoreError};
use crate::rows::{
    duration_micros, from_micros, micros, now_micros, JobRow, LogRow, SummaryRow, WebhookRow,
    JOB_COLUMNS, SUMMARY_COLUMNS,
};
use crate::types::{
    CancelOutcome, Job, JobError, JobStatus, JobSummary, LogLine, NewJob, RecoveryReport,
    SubmitOptions, UsageSummary, WebhookAttempt, WebhookState,
};
use chrono::{DateTime, Utc};
use longcat_core::JobErrorKind;
use std::time::Duration;

/// Runs `$body` with `$p` bound to the open pool (the body is compiled once per backend).
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($p) => $body,
            Backend::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction bound to `$tx` and commits it. An early return or
/// error drops the transaction, which rolls it back.
macro_rules! in_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite(p) => {
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            Backend::Postgres(p) => {
                let mut $tx = p.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Appends a status change to `job_status_history` inside the transaction `$tx`.
macro_rules! history {
    ($tx:ident, $id:expr, $status:expr, $at:expr) => {
        sqlx::query("INSERT INTO job_status_history (job_id, status, at) VALUES ($1, $2, $3)")
            .bind($id)
            .bind(JobStatus::as_str($status))
            .bind($at)
            .execute(&mut *$tx)
            .await?
    };
}

/// Fails `$worker`'s running job `$id` with `$error` inside the transaction `$tx`, recording
/// the status change; evaluates to whether it was that worker's running job.
macro_rules! fail_running {
    ($tx:ident, $id:expr, $worker:expr, $error:expr, $now:expr) => {{
        let error: &JobError = $error;
        let n = sqlx::query(
            "UPDATE jobs SET status = 'failed', error_kind = $1, error_message = $2, \
             error_detail = $3, finished_at = $4, lease_expires_at = NULL \
             WHERE id = $5 AND worker_id = $6 AND status = 'running'",
        )
        .bind(&error.kind)
        .bind(&error.message)
        .bind(error.detail.as_ref().map(|d| d.to_string()))
        .bind($now)
        .bind($id)
        .bind($worker)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if n == 1 {
            history!($tx, $id, JobStatus::Failed, $now);
        }
        n == 1
    }};
}

mod lifecycle;
mod outbox;
mod retention;
mod uploads;

pub use uploads::{PurgedUploads, UploadPart, UploadToken, UploadUrl};

/// Longest output lifetime kept (100 years; longer ones are cut to it), so that lifetimes in
/// microseconds stay far from the 64-bit limit.
const MAX_TTL_SECONDS: u64 = 100 * 365 * 86_400;

/// Message of the error recorded for a cancelled job (fal: `"Request cancelled"`).
pub const CANCELLED_MESSAGE: &str = "Request cancelled";

/// Durable job queue and job records. Cheap to clone (wraps a connection pool).
#[derive(Clone, Debug)]
pub struct JobStore {
    backend: Backend,
}

impl JobStore {
    /// Opens the database at `url` and runs the embedded migrations.
    ///
    /// `sqlite://PATH` (file and parent directory created if missing; WAL, busy timeout),
    /// `sqlite::memory:` (private, for tests) or `postgres://USER:PASS@HOST/DB`.
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(JobStore {
            backend: connect::open(url).await?,
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool; later calls fail.
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// Enqueues a job with normal priority and no start deadline.
    pub async fn submit(&self, job: NewJob) -> Result<Job> {
        self.submit_with(job, SubmitOptions::default()).await
    }

    /// Enqueues a job with a priority and an optional start deadline.
    pub async fn submit_with(&self, job: NewJob, options: SubmitOptions) -> Result<Job> {
        validate(&job)?;
        let input = job.input.to_string();
        let now = now_micros();
        let deadline = options.start_deadline.map(micros);
        let sql = format!(
            "INSERT INTO jobs (id, endpoint, input, key_id, webhook_url, priority, status, attempts, \
             max_attempts, start_deadline, created_at, cancel_requested, billable_seconds, \
             estimated_cost_usd, webhook_state, output_ttl_seconds) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $9, 0, $10, $11, $12, $13) \
             RETURNING {JOB_COLUMNS}"
        );
        let row: JobRow = in_tx!(self, tx => {
            let row: JobRow = sqlx::query_as(&sql)
                .bind(&job.id)
                .bind(&job.endpoint)
                .bind(&input)
                .bind(&job.key_id)
                .bind(&job.webhook_url)
                .bind(options.priority.rank())
                .bind(i64::from(job.max_attempts))
                .bind(deadline)
                .bind(now)
                .bind(job.billable_seconds)
                .bind(job.estimated_cost_usd)
                .bind(job.webhook_url.as_ref().map(|_| WebhookState::Pending.as_str()))
                .bind(options.output_ttl.map(|t| t.as_secs().min(MAX_TTL_SECONDS) as i64))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        StoreError::DuplicateId(job.id.clone())
                    }
                    _ => StoreError::Database(e),
                })?;
            history!(tx, &job.id, JobStatus::Queued, now);
            row
        });
        row.try_into()
    }

    /// The job with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> = on_pool!(self, p => {
            sqlx::query_as(&sql).bind(id).fetch_optional(p).await?
        });
        row.map(Job::try_from).transpose()
    }

    /// The status view of a job (no input, no result): what status polls and streams read.
    pub async fn summary(&self, id: &str) -> Result<Option<JobSummary>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<SummaryRow> = on_pool!(self, p => {
            sqlx::query_as(&sql).bind(id).fetch_optional(p).await?
        });
        row.map(JobSummary::try_from).transpose()
    }

    /// How many queued jobs run before this one (0 = next); `None` unless the job is queued.
    pub async fn queue_position(&self, id: &str) -> Result<Option<u64>> {
        const SQL: &str = "SELECT (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' \
             AND (q.priority < j.priority OR (q.priority = j.priority AND q.seq < j.seq))) \
             FROM jobs j WHERE j.id = $1 AND j.status = 'queued'";
        let ahead: Option<i64> = on_pool!(self, p => {
            sqlx::query_scalar(SQL).bind(id).fetch_optional(p).await?
        });
        Ok(ahead.map(to_u64))
    }

    /// Number of queued jobs.
    pub async fn queue_depth(&self) -> Result<u64> {
        const SQL: &str = "SELECT COUNT(*) FROM jobs WHERE status = 'queued'";
        let n: i64 = on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await?);
        Ok(to_u64(n))
    }

    /// Claims the next queued job (priority, then FIFO) for `worker_id`, holding it for
    /// `lease` unless renewed by [`JobStore::heartbeat`]. Queued jobs past their start
    /// deadline are skipped ([`JobStore::recover_expired`] fails them).
    pub async fn claim_next(&self, worker_id: &str, lease: Duration) -> Result<Option<Job>> {
        let now = now_micros();
        let expires = now.saturating_add(duration_micros(lease));
        let lock = match self.backend {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker_id = $1, \
             lease_expires_at = $2, started_at = $3 \
             WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' \
             AND (start_deadline IS NULL OR start_deadline > $3) \
             ORDER BY priority, seq LIMIT 1{lock}) AND status = 'queued' RETURNING {JOB_COLUMNS}"
        );
        let row: Option<JobRow> = in_tx!(self, tx => {
            let row: Option<JobRow> = sqlx::query_as(&sql)
                .bind(worker_id)
                .bind(expires)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = &row {
                history!(tx, row.id(), JobStatus::Running, now);
            }
            row
        });
        row.map(Job::try_from).transpose()
    }

    /// Renews `worker_id`'s lease on a running job. `false` means the job is no longer this
    /// worker's (finished, cancelled, or recovered after the lease ran out): stop working on it.
    pub async fn heartbeat(&self, id: &str, worker_id: &str, lease: Duration) -> Result<bool> {
        const SQL: &str = "UPDATE jobs SET lease_expires_at = $1 \
             WHERE id = $2 AND worker_id = $3 AND status = 'running'";
        let expires = now_micros().saturating_add(duration_micros(lease));
        let n = on_pool!(self, p => {
            sqlx::query(SQL).bind(expires).bind(id).bind(worker_id).execute(p).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// Appends a log line to a job.
    pub async fn append_log(&self, id: &str, level: &str, message: &str) -> Result<()> {
        const SQL: &str =
            "INSERT INTO job_logs (job_id, ts, level, message) VALUES ($1, $2, $3, $4)";
        let now = now_micros();
        on_pool!(self, p => {
            sqlx::query(SQL)
                .bind(id)
                .bind(now)
                .bind(level)
                .bind(message)
                .execute(p)
                .await
                .map_err(map_fk(id))?;
        });
        Ok(())
    }

    /// A job's log lines in write order, only those with `seq > after_seq` when given.
    pub async fn logs(&self, id: &str, after_seq: Option<i64>) -> Result<Vec<LogLine>> {
        const SQL: &str = "SELECT seq, ts, level, message FROM job_logs \
             WHERE job_id = $1 AND seq > $2 ORDER BY seq";
        let rows: Vec<LogRow> = on_pool!(self, p => {
            sqlx::query_as(SQL).bind(id).bind(after_seq.unwrap_or(0)).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(LogRow::into_line).collect())
    }

    /// Finishes `worker_id`'s running job with its output and records its usage. `false`
    /// when the job is not (or no longer) running under this worker.
    pub async fn complete(
        &self,
        id: &str,
        worker_id: &str,
        result: serde_json::Value,
    ) -> Result<bool> {
        const SQL: &str = "UPDATE jobs SET status = 'completed', result = $1, finished_at = $2, \
             lease_expires_at = NULL WHERE id = $3 AND worker_id = $4 AND status = 'running' \
             RETURNING key_id, billable_seconds, estimated_cost_usd, endpoint";
        const USAGE: &str = "INSERT INTO usage (job_id, key_id, billable_seconds, cost_usd, \
             recorded_at, endpoint) VALUES ($1, $2, $3, $4, $5, $6)";
        let text = result.to_string();
        let now = now_micros();
        let done = in_tx!(self, tx => {
            let billed: Option<(Option<String>, f64, f64, String)> = sqlx::query_as(SQL)
                .bind(&text)
                .bind(now)
                .bind(id)
                .bind(worker_id)
                .fetch_optional(&mut *tx)
                .await?;
            match billed {
                Some((key_id, seconds, cost, endpoint)) => {
                    sqlx::query(USAGE)
                        .bind(id)
                        .bind(key_id)
                        .bind(seconds)
                        .bind(cost)
                        .bind(now)
                        .bind(endpoint)
                        .execute(&mut *tx)
                        .await?;
                    history!(tx, id, JobStatus::Completed, now);
                    true
                }
                None => false,
            }
        });
        Ok(done)
    }

    /// Finishes `worker_id`'s running job with an error. `false` when the job is not (or no
    /// longer) running under this worker.
    pub async fn fail(&self, id: &str, worker_id: &str, error: JobError) -> Result<bool> {
        let now = now_micros();
        let done = in_tx!(self, tx => fail_running!(tx, id, worker_id, &error, now));
        Ok(done)
    }

    /// Gives up `worker_id`'s running job after a transient failure (fal re-runs requests
    /// whose runner failed with 503/504 or a lost connection): requeued while
    /// `attempts < max_attempts` and no cancel was requested, else failed with `error`.
    /// Returns the new status, or `None` when the job is not (or no longer) this worker's.
    pub async fn release(
        &self,
        id: &str,
        worker_id: &str,
        error: JobError,
    ) -> Result<Option<JobStatus>> {
        const REQUEUE: &str = "UPDATE jobs SET status = 'queued', worker_id = NULL, \
             lease_expires_at = NULL WHERE id = $1 AND worker_id = $2 AND status = 'running' \
             AND attempts < max_attempts AND cancel_requested = 0 RETURNING attempts, max_attempts";
        const LOG: &str =
            "INSERT INTO job_logs (job_id, ts, level, message) VALUES ($1, $2, 'WARN', $3)";
        let now = now_micros();
        let outcome = in_tx!(self, tx => {
            let requeued: Option<(i64, i64)> = sqlx::query_as(REQUEUE)
                .bind(id)
                .bind(worker_id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((attempts, max_attempts)) = requeued {
                history!(tx, id, JobStatus::Queued, now);
                let message = format!(
                    "attempt {attempts} of {max_attempts} on worker {worker_id} failed ({}: {}); requeued",
                    error.kind, error.message
                );
                sqlx::query(LOG).bind(id).bind(now).bind(&message).execute(&mut *tx).await?;
                Some(JobStatus::Queued)
            } else if fail_running!(tx, id, worker_id, &error, now) {
                Some(JobStatus::Failed)
            } else {
                None
            }
        });
        Ok(outcome)
    }

    /// Deletes jobs that finished before `before`, with their logs, status history and
    /// webhook attempts (usage rows are kept). Returns how many jobs were deleted.
    pub async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64> {
        const SQL: &str = "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') \
             AND finished_at < $1";
        let n = on_pool!(self, p => {
            sqlx::query(SQL).bind(micros(before)).execute(p).await?.rows_affected()
        });
        Ok(n)
    }

    /// Cancels a queued job at once (it never runs), or flags a running one so its worker
    /// stops (the worker then calls [`JobStore::mark_cancelled`]).
    pub async fn request_cancel(&self, id: &str) -> Result<CancelOutcome> {
        const CANCEL_QUEUED: &str = "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, \
             finished_at = $1, error_kind = $4, error_message = $2 \
             WHERE id = $3 AND status = 'queued'";
        const FLAG_RUNNING: &str =
            "UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'";
        const EXISTS: &str = "SELECT COUNT(*) FROM jobs WHERE id = $1";
        let now = now_micros();
        let outcome = in_tx!(self, tx => {
            let n = sqlx::query(CANCEL_QUEUED)
                .bind(now)
                .bind(CANCELLED_MESSAGE)
                .bind(id)
                .bind(JobErrorKind::Cancelled.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                history!(tx, id, JobStatus::Cancelled, now);
                CancelOutcome::Cancelled
            } else {
                let n = sqlx::query(FLAG_RUNNING)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 1 {
                    CancelOutcome::Requested
                } else {
                    let found: i64 = sqlx::query_scalar(EXISTS).bind(id).fetch_one(&mut *tx).await?;
                    if found > 0 {
                        CancelOutcome::AlreadyDone
                    } else {
                        CancelOutcome::NotFound
                    }
                }
            }
        });
        Ok(outcome)
    }

    /// Whether a cancel was requested for the job ([`StoreError::UnknownJob`] if none).
    pub async fn cancel_requested(&self, id: &str) -> Result<bool> {
        const SQL: &str = "SELECT cancel_requested FROM jobs WHERE id = $1";
        let flag: Option<i64> = on_pool!(self, p => {
            sqlx::query_scalar(SQL).bind(id).fetch_optional(p).await?
        });
        flag.map(|f| f != 0)
            .ok_or_else(|| StoreError::UnknownJob(id.to_string()))
    }

    /// Records that `worker_id` stopped its running job because of a cancel. `false` when
    /// the job is not (or no longer) running under this worker.
    pub async fn mark_cancelled(&self, id: &str, worker_id: &str) -> Result<bool> {
        const SQL: &str = "UPDATE jobs SET status = 'cancelled', finished_at = $1, \
             lease_expires_at = NULL, error_kind = $5, error_message = $2 \
             WHERE id = $3 AND worker_id = $4 AND status = 'running'";
        let now = now_micros();
        let done = in_tx!(self, tx => {
            let n = sqlx::query(SQL)
                .bind(now)
                .bind(CANCELLED_MESSAGE)
                .bind(id)
                .bind(worker_id)
                .bind(JobErrorKind::Cancelled.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                history!(tx, id, JobStatus::Cancelled, now);
            }
            n == 1
        });
        Ok(done)
    }

    /// Deals with running jobs whose lease expired (their worker died or hung): requeued
    /// (keeping their place at the front of the queue) while `attempts < max_attempts`,
    /// cancelled if a cancel had been requested, else failed with kind `"lost"` and the reason.
    /// Also fails queued jobs past their start deadline (kind `"timeout"`). Safe to run from
    /// several processes at once.
    pub async fn recover_expired(&self) -> Result<RecoveryReport> {
        const EXPIRED: &str = "SELECT id, worker_id, attempts, max_attempts, cancel_requested, \
             lease_expires_at FROM jobs WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY seq";
        const GUARD: &str = "WHERE id = $1 AND status = 'running' AND lease_expires_at < $2";
        let requeue = format!(
            "UPDATE jobs SET status = 'queued', worker_id = NULL, lease_expires_at = NULL {GUARD}"
        );
        let finish = format!(
            "UPDATE jobs SET status = $3, error_kind = $4, error_message = $5, \
             finished_at = $2, lease_expires_at = NULL {GUARD}"
        );
        const LOG: &str =
            "INSERT INTO job_logs (job_id, ts, level, message) VALUES ($1, $2, 'WARN', $3)";
        type Expired = (String, Option<String>, i64, i64, i64, Option<i64>);

        let now = now_micros();
        let report = in_tx!(self, tx => {
            let mut report = RecoveryReport {
                timed_out: sqlx::query_scalar(TIME_OUT_QUEUED_SQL)
                    .bind(now)
                    .bind(TIMEOUT_MESSAGE)
                    .bind(JobErrorKind::Timeout.as_str())
                    .fetch_all(&mut *tx)
                    .await?,
                ..RecoveryReport::default()
            };
            for id in &report.timed_out {
                history!(tx, id, JobStatus::Failed, now);
            }
            let expired: Vec<Expired> =
                sqlx::query_as(EXPIRED).bind(now).fetch_all(&mut *tx).await?;
            for (id, worker, attempts, max_attempts, cancel, lease) in expired {
                let worker = worker.unwrap_or_else(|| "?".into());
                let lease = lease
                    .and_then(from_micros)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let (status, message) = if cancel != 0 {
                    (JobStatus::Cancelled, CANCELLED_MESSAGE.to_string())
                } else if attempts < max_attempts {
                    (JobStatus::Queued, format!(
                        "worker {worker} stopped renewing its lease (expired {lease}) during \
                         attempt {attempts} of {max_attempts}; requeued"
                    ))
                } else {
                    (JobStatus::Failed, format!(
                        "worker {worker} stopped renewing its lease (expired {lease}) during \
                         attempt {attempts} of {max_attempts}; no attempts left"
                    ))
                };
                let n = if status == JobStatus::Queued {
                    sqlx::query(&requeue).bind(&id).bind(now).execute(&mut *tx).await?
                } else {
                    let kind = if status == JobStatus::Cancelled {
                        JobErrorKind::Cancelled
                    } else {
                        JobErrorKind::Lost
                    }
                    .as_str();
                    sqlx::query(&finish)
                        .bind(&id)
                        .bind(now)
                        .bind(status.as_str())
                        .bind(kind)
                        .bind(&message)
                        .execute(&mut *tx)
                        .await?
                }
                .rows_affected();
                if n != 1 {
                    continue; // another recoverer or the worker itself got there first
                }
                history!(tx, &id, status, now);
                sqlx::query(LOG).bind(&id).bind(now).bind(&message).execute(&mut *tx).await?;
                match status {
                    JobStatus::Queued => report.requeued.push(id),
                    JobStatus::Cancelled => report.cancelled.push(id),
                    _ => report.failed.push(id),
                }
            }
            report
        });
        if !report.is_empty() {
            tracing::warn!(?report, "recovered jobs");
        }
        Ok(report)
    }

    /// Usage over completed jobs: of one API key, or of all keys when `key_id` is `None`.
    pub async fn usage(&self, key_id: Option<&str>) -> Result<UsageSummary> {
        const ALL: &str = "SELECT COUNT(*), COALESCE(SUM(billable_seconds), 0.0), \
             COALESCE(SUM(cost_usd), 0.0) FROM usage";
        let by_key = format!("{ALL} WHERE key_id = $1");
        let (requests, billable_seconds, cost_usd): (i64, f64, f64) = on_pool!(self, p => {
            match key_id {
                Some(key) => sqlx::query_as(&by_key).bind(key).fetch_one(p).await?,
                None => sqlx::query_as(ALL).fetch_one(p).await?,
            }
        });
        Ok(UsageSummary {
            requests: to_u64(requests),
            billable_seconds,
            cost_usd,
        })
    }

    /// [`JobStore::usage`] broken down by the jobs' endpoint (app id), in id order; endpoints
    /// without completed jobs are absent.
    pub async fn usage_by_endpoint(
        &self,
        key_id: Option<&str>,
    ) -> Result<Vec<(String, UsageSummary)>> {
        const COLUMNS: &str = "SELECT endpoint, COUNT(*), COALESCE(SUM(billable_seconds), 0.0), \
             COALESCE(SUM(cost_usd), 0.0) FROM usage";
        let all = format!("{COLUMNS} GROUP BY endpoint ORDER BY endpoint");
        let by_key = format!("{COLUMNS} WHERE key_id = $1 GROUP BY endpoint ORDER BY endpoint");
        let rows: Vec<(String, i64, f64, f64)> = on_pool!(self, p => {
            match key_id {
                Some(key) => sqlx::query_as(&by_key).bind(key).fetch_all(p).await?,
                None => sqlx::query_as(&all).fetch_all(p).await?,
            }
        });
        Ok(rows
            .into_iter()
            .map(|(endpoint, requests, billable_seconds, cost_usd)| {
                (
                    endpoint,
                    UsageSummary {
                        requests: to_u64(requests),
                        billable_seconds,
                        cost_usd,
                    },
                )
            })
            .collect())
    }

    /// Records one webhook delivery attempt for a job.
    pub async fn record_webhook_attempt(
        &self,
        id: &str,
        attempt: u32,
        status_code: Option<u16>,
        error: Option<&str>,
    ) -> Result<()> {
        const SQL: &str = "INSERT INTO webhook_attempts (job_id, attempt, status_code, error, at) \
             VALUES ($1, $2, $3, $4, $5)";
        let now = now_micros();
        on_pool!(self, p => {
            sqlx::query(SQL)
                .bind(id)
                .bind(i64::from(attempt))
                .bind(status_code.map(i64::from))
                .bind(error)
                .bind(now)
                .execute(p)
                .await
                .map_err(map_fk(id))?;
        });
        Ok(())
    }

    /// A job's recorded webhook delivery attempts, oldest first.
    pub async fn webhook_attempts(&self, id: &str) -> Result<Vec<WebhookAttempt>> {
        const SQL: &str = "SELECT attempt, status_code, error, at FROM webhook_attempts \
             WHERE job_id = $1 ORDER BY seq";
        let rows: Vec<WebhookRow> = on_pool!(self, p => {
            sqlx::query_as(SQL).bind(id).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(WebhookRow::into_attempt).collect())
    }

    /// Every status a job went through, with when, oldest first.
    pub async fn status_history(&self, id: &str) -> Result<Vec<(JobStatus, DateTime<Utc>)>> {
        const SQL: &str =
            "SELECT status, at FROM job_status_history WHERE job_id = $1 ORDER BY seq";
        let rows: Vec<(String, i64)> = on_pool!(self, p => {
            sqlx::query_as(SQL).bind(id).fetch_all(p).await?
        });
        rows.into_iter()
            .map(|(status, at)| {
                let corrupt = |reason: String| StoreError::Corrupt {
                    id: id.to_string(),
                    reason,
                };
                let status = status.parse().map_err(|e| corrupt(format!("{e}")))?;
                let at = from_micros(at).ok_or_else(|| corrupt(format!("bad time {at}")))?;
                Ok((status, at))
            })
            .collect()
    }
}

/// Fails queued jobs past their start deadline; binds `$1` = now, `$2` = message, `$3` = the
/// error kind ([`JobErrorKind::Timeout`]).
const TIME_OUT_QUEUED_SQL: &str = "UPDATE jobs SET status = 'failed', error_kind = $3, \
     error_message = $2, finished_at = $1 WHERE status = 'queued' \
     AND start_deadline IS NOT NULL AND start_deadline <= $1 RETURNING id";

/// Message recorded for a job that was not started before its deadline.
const TIMEOUT_MESSAGE: &str = "Request was not started before its start timeout";

fn validate(job: &NewJob) -> Result<()> {
    let bad = |m: &str| Err(StoreError::InvalidJob(m.to_string()));
    if job.id.is_empty() {
        return bad("id must not be empty");
    }
    if job.max_attempts == 0 {
        return bad("max_attempts must be at least 1");
    }
    if !job.billable_seconds.is_finite() || job.billable_seconds < 0.0 {
        return bad("billable_seconds must be a finite, non-negative number");
    }
    if !job.estimated_cost_usd.is_finite() || job.estimated_cost_usd < 0.0 {
        return bad("estimated_cost_usd must be a finite, non-negative number");
    }
    Ok(())
}

impl JobStore {
    /// Runs `sql`, a `SELECT` of one text column with `$1` a time (bound as microseconds) and
    /// `$2` a row limit: the id and key-folder listings of retention and expiry.
    async fn select_before(&self, sql: &str, at: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
        let values: Vec<String> = on_pool!(self, p => {
            sqlx::query_scalar(sql)
                .bind(micros(at))
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?
        });
        Ok(values)
    }
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
