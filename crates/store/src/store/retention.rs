//! Retention: finding and deleting jobs that finished long ago (their stored files are the
//! caller's to delete first, so nothing is left without a record pointing at it).

use super::{Backend, JobStore};
use crate::error::Result;
use chrono::{DateTime, Utc};

impl JobStore {
    /// Ids of up to `limit` jobs that reached a final state before `before`, oldest first
    /// (not those whose webhook is still being delivered).
    pub async fn finished_before(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
        const SQL: &str = "SELECT id FROM jobs \
             WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < $1 \
             AND (webhook_state IS NULL OR webhook_state <> 'pending') \
             ORDER BY finished_at LIMIT $2";
        self.select_before(SQL, before, limit).await
    }

    /// Deletes these jobs, if finished and not waiting for their webhook, with their logs,
    /// status history and webhook attempts (usage rows stay: they are billing history).
    /// Returns how many were deleted.
    pub async fn delete_finished(&self, ids: &[String]) -> Result<u64> {
        const SQL: &str = "DELETE FROM jobs WHERE id = $1 \
             AND status IN ('completed', 'failed', 'cancelled') \
             AND (webhook_state IS NULL OR webhook_state <> 'pending')";
        let mut deleted = 0;
        in_tx!(self, tx => {
            for id in ids {
                deleted += sqlx::query(SQL).bind(id).execute(&mut *tx).await?.rows_affected();
            }
        });
        Ok(deleted)
    }
}
