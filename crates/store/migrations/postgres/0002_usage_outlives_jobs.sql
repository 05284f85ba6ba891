-- Usage is billing history: keep it when finished jobs are purged (no cascade from jobs).
ALTER TABLE usage DROP CONSTRAINT IF EXISTS usage_job_id_fkey;
CREATE INDEX jobs_finished ON jobs (status, finished_at);
