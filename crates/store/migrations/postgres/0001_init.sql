-- LongCat job store schema (Postgres). Timestamps are microseconds since the Unix epoch (UTC);
-- JSON values are stored as text.
CREATE TABLE jobs (
    seq                BIGSERIAL PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    endpoint           TEXT    NOT NULL,
    input              TEXT    NOT NULL,
    key_id             TEXT,
    webhook_url        TEXT,
    priority           BIGINT  NOT NULL DEFAULT 0,
    status             TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    attempts           BIGINT  NOT NULL DEFAULT 0,
    max_attempts       BIGINT  NOT NULL,
    worker_id          TEXT,
    lease_expires_at   BIGINT,
    start_deadline     BIGINT,
    created_at         BIGINT  NOT NULL,
    started_at         BIGINT,
    finished_at        BIGINT,
    result             TEXT,
    error_kind         TEXT,
    error_message      TEXT,
    error_detail       TEXT,
    cancel_requested   BIGINT  NOT NULL DEFAULT 0,
    billable_seconds   DOUBLE PRECISION NOT NULL,
    estimated_cost_usd DOUBLE PRECISION NOT NULL
);
CREATE INDEX jobs_queue ON jobs (status, priority, seq);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_at);
CREATE INDEX jobs_key ON jobs (key_id);

CREATE TABLE job_status_history (
    seq    BIGSERIAL PRIMARY KEY,
    job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    status TEXT    NOT NULL,
    at     BIGINT  NOT NULL
);
CREATE INDEX job_status_history_job ON job_status_history (job_id, seq);

CREATE TABLE job_logs (
    seq     BIGSERIAL PRIMARY KEY,
    job_id  TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ts      BIGINT  NOT NULL,
    level   TEXT    NOT NULL,
    message TEXT    NOT NULL
);
CREATE INDEX job_logs_job ON job_logs (job_id, seq);

CREATE TABLE usage (
    job_id           TEXT    PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    key_id           TEXT,
    billable_seconds DOUBLE PRECISION NOT NULL,
    cost_usd         DOUBLE PRECISION NOT NULL,
    recorded_at      BIGINT  NOT NULL
);
CREATE INDEX usage_key ON usage (key_id);

CREATE TABLE webhook_attempts (
    seq         BIGSERIAL PRIMARY KEY,
    job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     BIGINT  NOT NULL,
    status_code BIGINT,
    error       TEXT,
    at          BIGINT  NOT NULL
);
CREATE INDEX webhook_attempts_job ON webhook_attempts (job_id, seq);
