//! Webhook delivery from the job store's outbox: every pool claims due webhooks of finished
//! jobs (its own, recovered ones, jobs cancelled while queued) one attempt at a time, so a
//! delivery interrupted by a restart is picked up again by whichever process looks next.

use std::sync::Arc;
use std::time::Duration;

use longcat_store::{DueWebhook, WebhookNext};
use tokio::sync::watch;
use tracing::Instrument;

use crate::failure::job_outcome;
use crate::metrics as m;
use crate::shared::Shared;
use crate::webhook::webhook_body;

/// Most webhook attempts one pool runs at once.
const MAX_IN_FLIGHT: usize = 32;

/// How long a claimed attempt may take before another process may retry it: the request
/// timeout, its connect timeout, and a margin.
fn claim_hold(shared: &Shared) -> Duration {
    shared.config.webhook.timeout.saturating_mul(2) + Duration::from_secs(30)
}

/// Claims and starts due webhook attempts until shutdown; woken by finishing jobs and
/// otherwise every `poll_interval` (retries come due as time passes).
pub(crate) async fn webhook_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        let woken = shared.webhook_wake.notified();
        while shared.deliveries.len() < MAX_IN_FLIGHT {
            match shared.store.claim_due_webhook(claim_hold(&shared)).await {
                Ok(Some(due)) => {
                    // The webhook is sent after the job's own span ended (possibly by
                    // another process): its own span carries the request id.
                    let span = tracing::info_span!(
                        "webhook",
                        request_id = %due.job.id,
                        attempt = due.attempt,
                    );
                    let task = deliver(shared.clone(), due, shutdown.clone());
                    shared.deliveries.spawn(task.instrument(span));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a due webhook failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(shared.config.poll_interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Makes one claimed attempt, records it, and tells the store what follows. At shutdown the
/// attempt is dropped and the webhook made due again at once, for the next process.
async fn deliver(shared: Arc<Shared>, due: DueWebhook, mut shutdown: watch::Receiver<bool>) {
    let job = &due.job;
    let (Some(url), Some(outcome)) = (job.webhook_url.as_deref(), job_outcome(job)) else {
        finish(&shared, &job.id, due.attempt, WebhookNext::GiveUp).await;
        return;
    };
    let body = webhook_body(&job.id, &outcome);
    let sent = shared
        .webhooks
        .attempt(url, &job.id, job.key_id.as_deref(), &body, due.attempt);
    let done = tokio::select! {
        done = sent => Some(done),
        _ = shutdown.wait_for(|s| *s) => None,
    };
    let Some((attempt, next)) = done else {
        tracing::info!(job = %job.id, attempt = due.attempt, "webhook attempt interrupted by shutdown; left due");
        finish(
            &shared,
            &job.id,
            due.attempt,
            WebhookNext::RetryAfter(Duration::ZERO),
        )
        .await;
        return;
    };
    if let Err(e) = shared
        .store
        .record_webhook_attempt(
            &job.id,
            attempt.attempt,
            attempt.status_code,
            attempt.error.as_deref(),
        )
        .await
    {
        tracing::warn!(job = %job.id, error = %e, "recording a webhook attempt failed");
    }
    match next {
        WebhookNext::Delivered => m::webhook_finished(true),
        WebhookNext::GiveUp => {
            tracing::warn!(job = %job.id, attempts = due.attempt, "webhook given up");
            m::webhook_finished(false);
        }
        WebhookNext::RetryAfter(_) => {}
    }
    finish(&shared, &job.id, due.attempt, next).await;
    // A slot is free: look for more due webhooks.
    shared.webhook_wake.notify_one();
}

async fn finish(shared: &Shared, id: &str, attempt: u32, next: WebhookNext) {
    match shared.store.finish_webhook_attempt(id, attempt, next).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                job = id,
                attempt,
                "webhook attempt outlived its claim; result not recorded"
            )
        }
        Err(e) => tracing::warn!(job = id, error = %e, "recording a webhook outcome failed"),
    }
}
