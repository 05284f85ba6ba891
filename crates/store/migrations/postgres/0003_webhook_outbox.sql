-- Webhook outbox: a finished job's webhook is delivered from the database, one attempt at a
-- time, so retries survive restarts and any worker process can make them.
--   webhook_state    'pending' (set at submit when a webhook URL is given), then
--                    'delivered' or 'failed' (attempts exhausted or URL refused)
--   webhook_attempts attempts started so far
--   webhook_due_at   when the next attempt may start (microseconds); while an attempt runs,
--                    the time after which it counts as abandoned (its claim expires)
ALTER TABLE jobs ADD COLUMN webhook_state TEXT;
ALTER TABLE jobs ADD COLUMN webhook_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN webhook_due_at BIGINT;
-- Jobs still to finish get their webhook from the outbox; finished ones were handled before.
UPDATE jobs SET webhook_state = 'pending'
    WHERE webhook_url IS NOT NULL AND status IN ('queued', 'running');
CREATE INDEX jobs_webhook_due ON jobs (webhook_state, webhook_due_at);
