//! The storage upload protocols of the fal clients (fal-protocol.md §7.2), writing to
//! `longcat-storage`:
//!
//! * JS / Python `fal` repository: `POST /storage/upload/initiate` → `PUT /upload/{token}`;
//!   multipart: `POST /storage/upload/initiate-multipart` → `PUT /upload/{token}/{n}` →
//!   `POST /upload/{token}/complete`.
//! * Python default (`fal_v3`): `POST /storage/auth/token` → `POST /files/upload`; multipart:
//!   `POST /files/upload/multipart` → `PUT {access_url}/multipart/{id}/{n}` →
//!   `POST {access_url}/multipart/{id}/complete`.
//!
//! Upload URLs, part records and bearer tokens live in the job store and the parts' bytes in
//! storage (`upload-parts/<uuid>/<n>`), so every step may reach a different server.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use chrono::Utc;
use longcat_storage::keys::{upload_key, upload_part_key, upload_parts_folder};
use longcat_storage::StorageError;
use longcat_store::UploadUrl;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::random_token;
use crate::error::{json_response, ApiError};
use crate::lifetime;
use crate::request::FalRequest;
use crate::state::AppState;

/// How long an upload URL stays valid.
pub const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
struct InitiateBody {
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
}

/// Routes `/storage/…`, `/upload/…`, `/tokens/…` and the upload side of `/files/…`.
pub async fn handle(state: &Arc<AppState>, req: FalRequest) -> Result<Response, ApiError> {
    let path = req.path.clone();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let post = req.method == Method::POST;
    let put = req.method == Method::PUT;
    match segs.as_slice() {
        ["storage", "upload", "initiate"] if post => initiate(state, &req, false).await,
        ["storage", "upload", "initiate-multipart"] if post => initiate(state, &req, true).await,
        ["storage", "auth", "token"] if post => cdn_token(state, &req).await,
        ["tokens"] if post => Err(ApiError::not_found(
            "Realtime endpoints are not supported by this server",
        )),
        ["upload", token] if put => put_whole(state, token, &req).await,
        ["upload", token, "complete"] if post => complete(state, token, &req).await,
        ["upload", token, part] if put => put_part(state, token, part, &req).await,
        ["files", "upload"] if post => cdn_upload(state, &req).await,
        ["files", "upload", "multipart"] if post => cdn_multipart_start(state, &req).await,
        ["files", .., "multipart", token, "complete"] if post => complete(state, token, &req).await,
        ["files", .., "multipart", token, part] if put => put_part(state, token, part, &req).await,
        _ => Err(ApiError::not_found("Not found")),
    }
}

fn content_type_of(req: &FalRequest) -> String {
    req.header("content-type")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The lifetime an upload asks for (`X-Fal-Object-Lifecycle`; the Python client sends the
/// same JSON under the `-Preference` name too).
fn upload_lifetime(req: &FalRequest) -> Result<Option<Duration>, ApiError> {
    lifetime::requested_lifetime(req, &[lifetime::UPLOAD_HEADER, lifetime::OUTPUT_HEADER])
}

/// Schedules the deletion of the upload at `key` (its whole `uploads/<uuid>` folder).
async fn apply_lifetime(
    state: &AppState,
    lifetime: Option<Duration>,
    key: &str,
) -> Result<(), ApiError> {
    if let Some(ttl) = lifetime {
        let folder = key.rsplit_once('/').map_or(key, |(folder, _)| folder);
        state.store.expire_files_after(folder, ttl).await?;
    }
    Ok(())
}

/// Registers an upload URL for a new key in the job store; for a multipart upload also
/// schedules the deletion of its parts folder after [`PARTS_TTL`] (the parts of an upload
/// never completed). Returns the token and the key.
async fn register(
    state: &AppState,
    file_name: &str,
    content_type: &str,
    multipart: bool,
) -> Result<(String, String), ApiError> {
    let key = upload_key(file_name);
    let token = random_token();
    state
        .store
        .create_upload_url(&token, &key, content_type, UPLOAD_URL_LIFETIME)
        .await?;
    if multipart {
        state
            .store
            .expire_files_after(&parts_folder(&key)?, PARTS_TTL)
            .await?;
    }
    Ok((token, key))
}

/// The live upload URL `token` (issued by any server sharing the store), else a 403.
async fn pending(state: &AppState, token: &str) -> Result<UploadUrl, ApiError> {
    state.store.upload_url(token).await?.ok_or_else(|| {
        ApiError::Plain(
            StatusCode::FORBIDDEN,
            "Upload URL is unknown or expired".to_owned(),
        )
    })
}

/// Where the parts of the upload to `key` wait.
fn parts_folder(key: &str) -> Result<String, ApiError> {
    upload_parts_folder(key)
        .ok_or_else(|| ApiError::internal(format!("'{key}' is not an upload key")))
}

async fn initiate(
    state: &Arc<AppState>,
    req: &FalRequest,
    multipart: bool,
) -> Result<Response, ApiError> {
    state.auth.check_upload(&state.store, &req.headers).await?;
    let body: InitiateBody = if req.body.is_empty() {
        InitiateBody::default()
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("invalid upload request: {e}")))?
    };
    let content_type = body
        .content_type
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let file_name = body.file_name.unwrap_or_else(|| "upload.bin".to_owned());
    let lifetime = upload_lifetime(req)?;
    let (token, key) = register(state, &file_name, &content_type, multipart).await?;
    apply_lifetime(state, lifetime, &key).await?;
    let base = state.public_base(&req.headers)?;
    Ok(json_response(
        StatusCode::OK,
        json!({
            "upload_url": format!("{base}/upload/{token}"),
            "file_url": state.storage.public_url(&key),
        }),
    ))
}

/// The upload URL is the credential: an `Authorization` header on it is tolerated, not needed.
async fn put_whole(
    state: &Arc<AppState>,
    token: &str,
    req: &FalRequest,
) -> Result<Response, ApiError> {
    let up = pending(state, token).await?;
    let content_type = req
        .header("content-type")
        .map(str::to_owned)
        .unwrap_or(up.content_type.clone());
    let stored = state
        .storage
        .put_bytes(&up.key, req.body.clone(), &content_type)
        .await?;
    state.store.finish_upload_url(token).await?;
    metrics::counter!("longcat_uploads_total").increment(1);
    Ok(json_response(
        StatusCode::OK,
        json!({ "file_url": stored.url, "file_size": stored.size }),
    ))
}

/// How long after `initiate-multipart` the parts folder of an upload is deleted (by the
/// lifecycle pass, through the job store's file expirations): the upload URL's lifetime, after
/// which no part can be added or completed, plus an hour for requests still in flight.
pub const PARTS_TTL: Duration = UPLOAD_URL_LIFETIME.saturating_add(Duration::from_secs(3600));

async fn put_part(
    state: &Arc<AppState>,
    token: &str,
    part: &str,
    req: &FalRequest,
) -> Result<Response, ApiError> {
    let up = pending(state, token).await?;
    let n: u32 = part
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| ApiError::bad_request("part number must be 1..=10000"))?;
    let etag = hex::encode(Sha256::digest(&req.body));
    let part_key = upload_part_key(&parts_folder(&up.key)?, n);
    state
        .storage
        .put_bytes(&part_key, req.body.clone(), "application/octet-stream")
        .await?;
    let size = req.body.len() as u64;
    if !state
        .store
        .record_upload_part(token, n, size, &etag)
        .await?
    {
        return Err(ApiError::Plain(
            StatusCode::FORBIDDEN,
            "Upload URL is unknown or expired".to_owned(),
        ));
    }
    let mut resp = json_response(StatusCode::OK, json!({ "partNumber": n, "etag": etag }));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        resp.headers_mut().insert("etag", v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct CompleteBody {
    parts: Vec<CompletePart>,
}

#[derive(Debug, Deserialize)]
struct CompletePart {
    #[serde(rename = "partNumber")]
    part_number: u32,
}

async fn complete(
    state: &Arc<AppState>,
    token: &str,
    req: &FalRequest,
) -> Result<Response, ApiError> {
    let up = pending(state, token).await?;
    let body: CompleteBody = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("invalid complete request: {e}")))?;
    let mut numbers: Vec<u32> = body.parts.iter().map(|p| p.part_number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.is_empty() {
        return Err(ApiError::bad_request("no parts listed"));
    }
    let recorded = state.store.upload_parts(token).await?;
    for n in &numbers {
        if !recorded.iter().any(|p| p.number == *n) {
            return Err(ApiError::bad_request(format!(
                "part {n} was never uploaded"
            )));
        }
    }
    // The parts stream from storage straight into the stored object: no joined copy.
    let folder = parts_folder(&up.key)?;
    let keys: Vec<String> = numbers
        .iter()
        .map(|n| upload_part_key(&folder, *n))
        .collect();
    let sources: Vec<&str> = keys.iter().map(String::as_str).collect();
    let stored = state
        .storage
        .put_objects(&up.key, &sources, &up.content_type)
        .await
        .map_err(|e| match e {
            StorageError::NotFound(part) => {
                ApiError::bad_request(format!("part '{part}' is gone (expired)"))
            }
            other => other.into(),
        })?;
    state.store.finish_upload_url(token).await?;
    if let Err(e) = state.storage.delete_under(&folder, None).await {
        tracing::warn!(folder, error = %e, "deleting completed upload parts failed; they expire later");
    } else {
        state.store.forget_file_expiration(&folder).await?;
    }
    metrics::counter!("longcat_uploads_total").increment(1);
    Ok(json_response(
        StatusCode::OK,
        json!({ "file_url": stored.url, "access_url": stored.url, "file_size": stored.size }),
    ))
}

async fn cdn_token(state: &Arc<AppState>, req: &FalRequest) -> Result<Response, ApiError> {
    let caller = state.auth.check(&req.headers)?;
    let (token, lifetime) = state.auth.issue_token(&state.store, &caller).await?;
    let expires = Utc::now()
        + chrono::Duration::from_std(lifetime).unwrap_or_else(|_| chrono::Duration::hours(1));
    Ok(json_response(
        StatusCode::OK,
        json!({
            "token": token,
            "token_type": "Bearer",
            "base_url": state.public_base(&req.headers)?,
            "expires_at": expires.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
        }),
    ))
}

fn file_name_of(req: &FalRequest) -> String {
    req.header("x-fal-file-name")
        .map(str::to_owned)
        .unwrap_or_else(|| "upload.bin".to_owned())
}

async fn cdn_upload(state: &Arc<AppState>, req: &FalRequest) -> Result<Response, ApiError> {
    state.auth.check_upload(&state.store, &req.headers).await?;
    let lifetime = upload_lifetime(req)?;
    let content_type = content_type_of(req);
    let key = upload_key(&file_name_of(req));
    let stored = state
        .storage
        .put_bytes(&key, Bytes::clone(&req.body), &content_type)
        .await?;
    apply_lifetime(state, lifetime, &key).await?;
    metrics::counter!("longcat_uploads_total").increment(1);
    Ok(json_response(
        StatusCode::OK,
        json!({ "access_url": stored.url }),
    ))
}

async fn cdn_multipart_start(
    state: &Arc<AppState>,
    req: &FalRequest,
) -> Result<Response, ApiError> {
    state.auth.check_upload(&state.store, &req.headers).await?;
    let lifetime = upload_lifetime(req)?;
    let (token, key) = register(state, &file_name_of(req), &content_type_of(req), true).await?;
    apply_lifetime(state, lifetime, &key).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "access_url": state.storage.public_url(&key), "uploadId": token }),
    ))
}
