//! Metric names (through the `metrics` facade; the server installs the Prometheus exporter).

/// Counter of finished jobs, label `outcome`: completed, failed, cancelled, abandoned.
pub const JOBS_TOTAL: &str = "longcat_jobs_total";
/// Histogram of seconds per stage, label `stage`: queue_wait, fetch_image, generate, encode,
/// upload, total.
pub const JOB_STAGE_SECONDS: &str = "longcat_job_stage_seconds";
/// Counter of webhook deliveries, label `outcome`: delivered, failed.
pub const WEBHOOKS_TOTAL: &str = "longcat_webhook_deliveries_total";
/// Gauge of jobs running in this process.
pub const JOBS_RUNNING: &str = "longcat_jobs_running";

pub(crate) fn stage_seconds(stage: &'static str, seconds: f64) {
    metrics::histogram!(JOB_STAGE_SECONDS, "stage" => stage).record(seconds);
}

pub(crate) fn job_finished(outcome: &'static str) {
    metrics::counter!(JOBS_TOTAL, "outcome" => outcome).increment(1);
}

pub(crate) fn webhook_finished(delivered: bool) {
    let outcome = if delivered { "delivered" } else { "failed" };
    metrics::counter!(WEBHOOKS_TOTAL, "outcome" => outcome).increment(1);
}

pub(crate) fn running(delta: f64) {
    metrics::gauge!(JOBS_RUNNING).increment(delta);
}
