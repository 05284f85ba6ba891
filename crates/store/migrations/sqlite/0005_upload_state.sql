-- Upload state shared by every server on this database, so that an upload started through one
-- server (behind a load balancer) finishes through any other. Tokens are stored as the hex
-- SHA-256 of the token, never in clear.
--   upload_urls    upload URLs handed out (initiate, initiate-multipart, files/upload/multipart):
--                  where the bytes go, their content type, until when the URL works
--   upload_parts   the parts of a multipart upload received so far (the bytes are in storage)
--   upload_tokens  bearer tokens from POST /storage/auth/token, with the API key they act for
CREATE TABLE upload_urls (
    token_hash   TEXT    PRIMARY KEY,
    file_key     TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX upload_urls_expiry ON upload_urls (expires_at);
CREATE TABLE upload_parts (
    token_hash  TEXT    NOT NULL REFERENCES upload_urls (token_hash) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    etag        TEXT    NOT NULL,
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (token_hash, part_number)
);
CREATE TABLE upload_tokens (
    token_hash TEXT    PRIMARY KEY,
    key_id     TEXT,
    expires_at INTEGER NOT NULL
);
CREATE INDEX upload_tokens_expiry ON upload_tokens (expires_at);
