//! Retention: jobs that finished longer ago than the configured retention are deleted with
//! their output files, and uploads older than it are deleted too. Off unless configured.

use std::time::Duration;

use chrono::Utc;
use longcat_storage::{output_folder, Storage, StorageError, UPLOADS_FOLDER};
use longcat_store::{JobStore, StoreError};
use tokio::task::JoinHandle;

/// Jobs deleted per store round trip.
const BATCH: u32 = 200;

/// What one retention pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    /// Job records deleted.
    pub jobs: u64,
    /// Files deleted (outputs and uploads).
    pub files: u64,
}

/// Why a retention pass stopped early (the next pass tries again).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The job store failed.
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    /// The file storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// How often the retention pass runs: a tenth of the retention, between 1 s and 1 h.
pub fn pass_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Runs [`purge_once`] every [`pass_interval`] until aborted.
pub fn spawn(store: JobStore, storage: Storage, retention: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(pass_interval(retention));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match purge_once(&store, &storage, retention).await {
                Ok(report) if report != PurgeReport::default() => {
                    tracing::info!(
                        jobs = report.jobs,
                        files = report.files,
                        "retention: purged"
                    );
                    metrics::counter!("longcat_purged_jobs_total").increment(report.jobs);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed; retrying next pass"),
            }
        }
    })
}

/// Deletes what is older than `retention`: each finished job's output folder first, then its
/// record (so a failure leaves a record to retry from, never an orphan file), then uploads.
pub async fn purge_once(
    store: &JobStore,
    storage: &Storage,
    retention: Duration,
) -> Result<PurgeReport, RetentionError> {
    // Beyond chrono's range means "forever": nothing is old enough.
    let Some(cutoff) = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| Utc::now().checked_sub_signed(r))
    else {
        return Ok(PurgeReport::default());
    };
    let mut report = PurgeReport::default();
    loop {
        let ids = store.finished_before(cutoff, BATCH).await?;
        if ids.is_empty() {
            break;
        }
        for id in &ids {
            report.files += storage.delete_under(&output_folder(id), None).await?;
        }
        report.jobs += store.delete_finished(&ids).await?;
        if ids.len() < BATCH as usize {
            break;
        }
    }
    report.files += storage.delete_under(UPLOADS_FOLDER, Some(cutoff)).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_run_often_enough_but_not_too_often() {
        assert_eq!(
            pass_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            pass_interval(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            pass_interval(Duration::from_secs(30 * 86400)),
            Duration::from_secs(3600)
        );
    }
}
