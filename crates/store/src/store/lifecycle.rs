//! Object lifecycle: job outputs and other stored files that expire (fal's
//! `X-Fal-Object-Lifecycle-Preference` / `X-Fal-Object-Lifecycle` headers). The store says
//! what is due; the caller deletes the files, then records it here.

use super::{Backend, JobStore};
use crate::error::Result;
use crate::rows::{duration_micros, now_micros};
use chrono::{DateTime, Utc};
use std::time::Duration;

impl JobStore {
    /// Ids of up to `limit` completed jobs whose output lifetime (given at submit) has run
    /// out and whose outputs are not yet marked deleted, oldest first.
    pub async fn expired_outputs(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<String>> {
        const SQL: &str = "SELECT id FROM jobs WHERE status = 'completed' \
             AND output_ttl_seconds IS NOT NULL AND outputs_expired = 0 \
             AND finished_at + output_ttl_seconds * 1000000 < $1 \
             ORDER BY finished_at LIMIT $2";
        self.select_before(SQL, now, limit).await
    }

    /// Records that job `id`'s output files were deleted.
    pub async fn mark_outputs_expired(&self, id: &str) -> Result<()> {
        const SQL: &str = "UPDATE jobs SET outputs_expired = 1 WHERE id = $1";
        on_pool!(self, p => { sqlx::query(SQL).bind(id).execute(p).await?; });
        Ok(())
    }

    /// Whether job `id`'s output files were deleted at the end of their lifetime.
    pub async fn outputs_expired(&self, id: &str) -> Result<bool> {
        const SQL: &str = "SELECT outputs_expired FROM jobs WHERE id = $1";
        let flag: Option<i64> = on_pool!(self, p => {
            sqlx::query_scalar(SQL).bind(id).fetch_optional(p).await?
        });
        Ok(flag.unwrap_or(0) != 0)
    }

    /// Schedules the files under the key folder `prefix` for deletion `ttl` from now
    /// (replacing an earlier schedule for the same folder).
    pub async fn expire_files_after(&self, prefix: &str, ttl: Duration) -> Result<()> {
        const SQL: &str = "INSERT INTO file_expirations (prefix, expires_at) VALUES ($1, $2) \
             ON CONFLICT (prefix) DO UPDATE SET expires_at = excluded.expires_at";
        let at = now_micros().saturating_add(duration_micros(ttl));
        on_pool!(self, p => { sqlx::query(SQL).bind(prefix).bind(at).execute(p).await?; });
        Ok(())
    }

    /// Up to `limit` key folders whose expiry has passed, soonest first.
    pub async fn due_file_expirations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<String>> {
        const SQL: &str = "SELECT prefix FROM file_expirations WHERE expires_at < $1 \
             ORDER BY expires_at LIMIT $2";
        self.select_before(SQL, now, limit).await
    }

    /// Drops the expiry of `prefix` (its files were deleted).
    pub async fn forget_file_expiration(&self, prefix: &str) -> Result<()> {
        const SQL: &str = "DELETE FROM file_expirations WHERE prefix = $1";
        on_pool!(self, p => { sqlx::query(SQL).bind(prefix).execute(p).await?; });
        Ok(())
    }
}
