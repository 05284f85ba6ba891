//! The webhook outbox: finished jobs whose webhook is still to be delivered, claimed one
//! attempt at a time so that retries survive restarts and any worker process can make them.

use super::{to_u64, Backend, JobStore};
use crate::error::Result;
use crate::rows::{duration_micros, now_micros};
use crate::types::{DueWebhook, WebhookNext, WebhookState};
use std::time::Duration;

impl JobStore {
    /// Claims the finished job whose webhook attempt is most overdue, if any, and counts the
    /// attempt as started. The claim lasts `hold`: if no [`JobStore::finish_webhook_attempt`]
    /// comes by then (the process died), the attempt counts as failed and the job is due again.
    pub async fn claim_due_webhook(&self, hold: Duration) -> Result<Option<DueWebhook>> {
        let now = now_micros();
        let until = now.saturating_add(duration_micros(hold));
        let lock = match self.backend {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let claim = format!(
            "UPDATE jobs SET webhook_attempts = webhook_attempts + 1, webhook_due_at = $1 \
             WHERE seq = (SELECT seq FROM jobs WHERE webhook_state = 'pending' \
             AND status IN ('completed', 'failed', 'cancelled') \
             AND (webhook_due_at IS NULL OR webhook_due_at <= $2) \
             ORDER BY COALESCE(webhook_due_at, 0), seq LIMIT 1{lock}) AND webhook_state = 'pending' \
             RETURNING id, webhook_attempts"
        );
        let claimed: Option<(String, i64)> = in_tx!(self, tx => {
            sqlx::query_as(&claim)
                .bind(until)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
        });
        let Some((id, attempts)) = claimed else {
            return Ok(None);
        };
        let Some(job) = self.get(&id).await? else {
            // Purged between the claim and the read: nothing left to deliver.
            return Ok(None);
        };
        Ok(Some(DueWebhook {
            job,
            attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
        }))
    }

    /// Ends attempt `attempt` of `id`'s webhook: delivered, due again after a delay, or
    /// given up. `false` when the attempt is no longer the current one (its claim expired
    /// and another attempt started), in which case nothing changes.
    pub async fn finish_webhook_attempt(
        &self,
        id: &str,
        attempt: u32,
        next: WebhookNext,
    ) -> Result<bool> {
        const SQL: &str = "UPDATE jobs SET webhook_state = $1, webhook_due_at = $2 \
             WHERE id = $3 AND webhook_attempts = $4 AND webhook_state = 'pending'";
        let (state, due) = match next {
            WebhookNext::Delivered => (WebhookState::Delivered, None),
            WebhookNext::GiveUp => (WebhookState::Failed, None),
            WebhookNext::RetryAfter(wait) => (
                WebhookState::Pending,
                Some(now_micros().saturating_add(duration_micros(wait))),
            ),
        };
        let n = on_pool!(self, p => {
            sqlx::query(SQL)
                .bind(state.as_str())
                .bind(due)
                .bind(id)
                .bind(i64::from(attempt))
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Where a job's webhook delivery stands and how many attempts it has started; `None`
    /// for an unknown job or one without a webhook.
    pub async fn webhook_state(&self, id: &str) -> Result<Option<(WebhookState, u32)>> {
        const SQL: &str = "SELECT webhook_state, webhook_attempts FROM jobs WHERE id = $1";
        let row: Option<(Option<String>, i64)> = on_pool!(self, p => {
            sqlx::query_as(SQL).bind(id).fetch_optional(p).await?
        });
        Ok(row.and_then(|(state, attempts)| {
            let state = WebhookState::parse(state.as_deref()?)?;
            Some((state, u32::try_from(attempts).unwrap_or(u32::MAX)))
        }))
    }

    /// How many finished jobs have a webhook still to deliver.
    pub async fn pending_webhooks(&self) -> Result<u64> {
        const SQL: &str = "SELECT COUNT(*) FROM jobs WHERE webhook_state = 'pending' \
             AND status IN ('completed', 'failed', 'cancelled')";
        let n: i64 = on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await?);
        Ok(to_u64(n))
    }
}
