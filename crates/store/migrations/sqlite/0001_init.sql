-- LongCat job store schema (SQLite). Timestamps are microseconds since the Unix epoch (UTC);
-- JSON values are stored as text.
CREATE TABLE jobs (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT    NOT NULL UNIQUE,
    endpoint           TEXT    NOT NULL,
    input              TEXT    NOT NULL,
    key_id             TEXT,
    webhook_url        TEXT,
    priority           INTEGER NOT NULL DEFAULT 0,
    status             TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    worker_id          TEXT,
    lease_expires_at   INTEGER,
    start_deadline     INTEGER,
    created_at         INTEGER NOT NULL,
    started_at         INTEGER,
    finished_at        INTEGER,
    result             TEXT,
    error_kind         TEXT,
    error_message      TEXT,
    error_detail       TEXT,
    cancel_requested   INTEGER NOT NULL DEFAULT 0,
    billable_seconds   REAL    NOT NULL,
    estimated_cost_usd REAL    NOT NULL
);
CREATE INDEX jobs_queue ON jobs (status, priority, seq);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_at);
CREATE INDEX jobs_key ON jobs (key_id);

CREATE TABLE job_status_history (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    status TEXT    NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX job_status_history_job ON job_status_history (job_id, seq);

CREATE TABLE job_logs (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ts      INTEGER NOT NULL,
    level   TEXT    NOT NULL,
    message TEXT    NOT NULL
);
CREATE INDEX job_logs_job ON job_logs (job_id, seq);

CREATE TABLE usage (
    job_id           TEXT    PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    key_id           TEXT,
    billable_seconds REAL    NOT NULL,
    cost_usd         REAL    NOT NULL,
    recorded_at      INTEGER NOT NULL
);
CREATE INDEX usage_key ON usage (key_id);

CREATE TABLE webhook_attempts (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_job ON webhook_attempts (job_id, seq);
