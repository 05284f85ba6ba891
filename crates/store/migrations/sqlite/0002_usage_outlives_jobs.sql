-- Usage is billing history: keep it when finished jobs are purged (no cascade from jobs).
CREATE TABLE usage_v2 (
    job_id           TEXT    PRIMARY KEY,
    key_id           TEXT,
    billable_seconds REAL    NOT NULL,
    cost_usd         REAL    NOT NULL,
    recorded_at      INTEGER NOT NULL
);
INSERT INTO usage_v2 (job_id, key_id, billable_seconds, cost_usd, recorded_at)
    SELECT job_id, key_id, billable_seconds, cost_usd, recorded_at FROM usage;
DROP TABLE usage;
ALTER TABLE usage_v2 RENAME TO usage;
CREATE INDEX usage_key ON usage (key_id);
CREATE INDEX jobs_finished ON jobs (status, finished_at);
