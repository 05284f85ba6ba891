-- Object lifecycle (fal's X-Fal-Object-Lifecycle[-Preference] headers): files that expire.
--   jobs.output_ttl_seconds  the job's output files are deleted this long after it finished
--   jobs.outputs_expired     1 once they have been deleted
--   file_expirations         other stored files (uploads), by key folder, with their expiry
ALTER TABLE jobs ADD COLUMN output_ttl_seconds INTEGER;
ALTER TABLE jobs ADD COLUMN outputs_expired INTEGER NOT NULL DEFAULT 0;
CREATE TABLE file_expirations (
    prefix     TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX file_expirations_due ON file_expirations (expires_at);
