//! Upload state shared by every server on the database (migration 0005): upload URLs, the
//! parts of multipart uploads, and the bearer tokens of `POST /storage/auth/token`. An upload
//! started through one server can so finish through any other. Tokens are kept as their
//! SHA-256 (hex), never in clear; a row past its expiry is treated as absent.

use super::{Backend, JobStore};
use crate::error::{Result, StoreError};
use crate::rows::{duration_micros, from_micros, micros, now_micros};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A live upload URL: where its bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadUrl {
    /// Storage key the file is stored under.
    pub key: String,
    /// MIME type given when the URL was issued.
    pub content_type: String,
    /// When the URL stops working.
    pub expires_at: DateTime<Utc>,
}

/// One received part of a multipart upload (its bytes are in storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    /// Part number, 1-based, as the client numbered it.
    pub number: u32,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag returned to the client.
    pub etag: String,
}

/// A live bearer upload token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadToken {
    /// Id of the API key it was issued to (`None` when authentication is off).
    pub key_id: Option<String>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// What [`JobStore::purge_expired_uploads`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedUploads {
    /// Upload URLs (with their part records).
    pub urls: u64,
    /// Bearer tokens.
    pub tokens: u64,
}

/// Hex SHA-256 of a token: the only form in which tokens are stored.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn expiry(lifetime: Duration) -> i64 {
    now_micros().saturating_add(duration_micros(lifetime))
}

fn timestamp(v: i64) -> Result<DateTime<Utc>> {
    from_micros(v).ok_or_else(|| {
        StoreError::Database(sqlx::Error::Decode(
            format!("timestamp {v} out of range").into(),
        ))
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl JobStore {
    /// Records the upload URL `token`: its bytes go to `key` (stored as `content_type`), and
    /// it works for `lifetime` from now.
    pub async fn create_upload_url(
        &self,
        token: &str,
        key: &str,
        content_type: &str,
        lifetime: Duration,
    ) -> Result<()> {
        const SQL: &str = "INSERT INTO upload_urls \
             (token_hash, file_key, content_type, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)";
        let (hash, now) = (token_hash(token), now_micros());
        let expires = expiry(lifetime);
        on_pool!(self, p => {
            sqlx::query(SQL)
                .bind(&hash)
                .bind(key)
                .bind(content_type)
                .bind(now)
                .bind(expires)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The live upload URL `token`, or `None` (unknown, finished or expired).
    pub async fn upload_url(&self, token: &str) -> Result<Option<UploadUrl>> {
        const SQL: &str = "SELECT file_key, content_type, expires_at FROM upload_urls \
             WHERE token_hash = $1 AND expires_at > $2";
        let hash = token_hash(token);
        let row: Option<(String, String, i64)> = on_pool!(self, p => {
            sqlx::query_as(SQL).bind(&hash).bind(now_micros()).fetch_optional(p).await?
        });
        row.map(|(key, content_type, expires)| {
            Ok(UploadUrl {
                key,
                content_type,
                expires_at: timestamp(expires)?,
            })
        })
        .transpose()
    }

    /// Records part `number` of the multipart upload `token` (a part sent again replaces the
    /// earlier record). `false` when the URL is unknown, finished or expired.
    pub async fn record_upload_part(
        &self,
        token: &str,
        number: u32,
        size: u64,
        etag: &str,
    ) -> Result<bool> {
        // `WHERE EXISTS` doubles as the `WHERE` SQLite needs before `ON CONFLICT` in an
        // `INSERT … SELECT`.
        const SQL: &str = "INSERT INTO upload_parts \
             (token_hash, part_number, size, etag, uploaded_at) \
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS \
             (SELECT 1 FROM upload_urls WHERE token_hash = $1 AND expires_at > $5) \
             ON CONFLICT (token_hash, part_number) DO UPDATE \
             SET size = excluded.size, etag = excluded.etag, uploaded_at = excluded.uploaded_at";
        let hash = token_hash(token);
        let n = on_pool!(self, p => {
            sqlx::query(SQL)
                .bind(&hash)
                .bind(i64::from(number))
                .bind(to_i64(size))
                .bind(etag)
                .bind(now_micros())
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// The recorded parts of the upload `token`, by part number (empty when the URL is
    /// unknown, finished or expired).
    pub async fn upload_parts(&self, token: &str) -> Result<Vec<UploadPart>> {
        const SQL: &str = "SELECT part_number, size, etag FROM upload_parts \
             WHERE token_hash = $1 AND EXISTS \
             (SELECT 1 FROM upload_urls u WHERE u.token_hash = $1 AND u.expires_at > $2) \
             ORDER BY part_number";
        let hash = token_hash(token);
        let rows: Vec<(i64, i64, String)> = on_pool!(self, p => {
            sqlx::query_as(SQL).bind(&hash).bind(now_micros()).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(number, size, etag)| UploadPart {
                number: u32::try_from(number).unwrap_or(u32::MAX),
                size: u64::try_from(size).unwrap_or(0),
                etag,
            })
            .collect())
    }

    /// Ends the upload URL `token` (its one upload is stored): deletes it with its part
    /// records. `true` for the one caller that ended a live URL; `false` when it was unknown,
    /// already ended (by this or another server) or expired.
    pub async fn finish_upload_url(&self, token: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM upload_urls WHERE token_hash = $1 AND expires_at > $2";
        let hash = token_hash(token);
        let n = on_pool!(self, p => {
            sqlx::query(SQL).bind(&hash).bind(now_micros()).execute(p).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// Records the bearer upload token `token` for the API key `key_id`, valid for
    /// `lifetime` from now.
    pub async fn create_upload_token(
        &self,
        token: &str,
        key_id: Option<&str>,
        lifetime: Duration,
    ) -> Result<()> {
        const SQL: &str =
            "INSERT INTO upload_tokens (token_hash, key_id, expires_at) VALUES ($1, $2, $3)";
        let hash = token_hash(token);
        let expires = expiry(lifetime);
        on_pool!(self, p => {
            sqlx::query(SQL).bind(&hash).bind(key_id).bind(expires).execute(p).await?;
        });
        Ok(())
    }

    /// The live bearer upload token `token`, or `None` (unknown or expired).
    pub async fn upload_token(&self, token: &str) -> Result<Option<UploadToken>> {
        const SQL: &str = "SELECT key_id, expires_at FROM upload_tokens \
             WHERE token_hash = $1 AND expires_at > $2";
        let hash = token_hash(token);
        let row: Option<(Option<String>, i64)> = on_pool!(self, p => {
            sqlx::query_as(SQL).bind(&hash).bind(now_micros()).fetch_optional(p).await?
        });
        row.map(|(key_id, expires)| {
            Ok(UploadToken {
                key_id,
                expires_at: timestamp(expires)?,
            })
        })
        .transpose()
    }

    /// Deletes the upload URLs (with their part records) and bearer tokens that expired
    /// before `now`. The parts' bytes in storage are the caller's to delete.
    pub async fn purge_expired_uploads(&self, now: DateTime<Utc>) -> Result<PurgedUploads> {
        const URLS: &str = "DELETE FROM upload_urls WHERE expires_at <= $1";
        const TOKENS: &str = "DELETE FROM upload_tokens WHERE expires_at <= $1";
        let at = micros(now);
        let purged = in_tx!(self, tx => PurgedUploads {
            urls: sqlx::query(URLS).bind(at).execute(&mut *tx).await?.rows_affected(),
            tokens: sqlx::query(TOKENS).bind(at).execute(&mut *tx).await?.rows_affected(),
        });
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::token_hash;

    #[test]
    fn tokens_are_hashed() {
        let h = token_hash("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(token_hash("abd"), h);
    }
}
