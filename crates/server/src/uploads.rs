//! The storage upload protocols of the fal clients (fal-protocol.md §7.2), writing to
//! `longcat-storage`:
//!
//! * JS / Python `fal` repository: `POST /storage/upload/initiate` → `PUT /upload/{token}`;
//!   multipart: `POST /storage/upload/initiate-multipart` → `PUT /upload/{token}/{n}` →
//!   `POST /upload/{token}/complete`.
//! * Python default (`fal_v3`): `POST /storage/auth/token` → `POST /files/upload`; multipart:
//!   `POST /files/upload/multipart` → `PUT {access_url}/multipart/{id}/{n}` →
//!   `POST {access_url}/multipart/{id}/complete`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use chrono::Utc;
use longcat_storage::keys::upload_key;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::random_token;
use crate::error::{json_response, ApiError};
use crate::lifetime;
use crate::request::FalRequest;
use crate::state::{AppState, PendingUpload};

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
        ["storage", "upload", "initiate"] if post => initiate(state, &req).await,
        ["storage", "upload", "initiate-multipart"] if post => initiate(state, &req).await,
        ["storage", "auth", "token"] if post => cdn_token(state, &req),
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

/// Registers an upload URL for a new key.
fn register(state: &AppState, file_name: &str, content_type: &str) -> (String, String) {
    let key = upload_key(file_name);
    let token = random_token();
    if let Ok(mut uploads) = state.uploads.lock() {
        let now = Instant::now();
        uploads.retain(|_, u| u.expires > now);
        uploads.insert(
            token.clone(),
            PendingUpload {
                key: key.clone(),
                content_type: content_type.to_owned(),
                expires: now + UPLOAD_URL_LIFETIME,
            },
        );
    }
    (token, key)
}

fn pending(state: &AppState, token: &str) -> Result<PendingUpload, ApiError> {
    let uploads = state
        .uploads
        .lock()
        .map_err(|_| ApiError::internal("upload table poisoned"))?;
    match uploads.get(token) {
        Some(u) if u.expires > Instant::now() => Ok(u.clone()),
        _ => Err(ApiError::Plain(
            StatusCode::FORBIDDEN,
            "Upload URL is unknown or expired".to_owned(),
        )),
    }
}

fn forget(state: &AppState, token: &str) {
    if let Ok(mut uploads) = state.uploads.lock() {
        uploads.remove(token);
    }
}

async fn initiate(state: &Arc<AppState>, req: &FalRequest) -> Result<Response, ApiError> {
    state.auth.check_upload(&req.headers)?;
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
    let (token, key) = register(state, &file_name, &content_type);
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
    let up = pending(state, token)?;
    let content_type = req
        .header("content-type")
        .map(str::to_owned)
        .unwrap_or(up.content_type.clone());
    let stored = state
        .storage
        .put_bytes(&up.key, req.body.clone(), &content_type)
        .await?;
    forget(state, token);
    metrics::counter!("longcat_uploads_total").increment(1);
    Ok(json_response(
        StatusCode::OK,
        json!({ "file_url": stored.url, "file_size": stored.size }),
    ))
}

/// How long the parts of an unfinished multipart upload are kept after their last write:
/// the upload URL's lifetime. Its token was issued before that write, so by then the URL has
/// expired and the parts can never be completed.
pub const PARTS_TTL: Duration = UPLOAD_URL_LIFETIME;

/// Where multipart parts wait for `complete`: `<tmp>/longcat-uploads/<token>/<n>`.
pub fn parts_root() -> PathBuf {
    std::env::temp_dir().join("longcat-uploads")
}

fn parts_dir(token: &str) -> PathBuf {
    parts_root().join(token)
}

/// Deletes the part folders under `root` whose newest entry (the folder or a part in it) was
/// modified more than `ttl` ago. Returns how many folders went. Run by the lifecycle loop.
pub fn sweep_abandoned_parts(root: &Path, ttl: Duration) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let old = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age > ttl);
    let mut removed = 0;
    for entry in entries {
        let dir = entry?.path();
        if !dir.is_dir() {
            continue;
        }
        let mut newest = std::fs::metadata(&dir)?.modified()?;
        for part in std::fs::read_dir(&dir)? {
            let modified = part?.metadata()?.modified()?;
            newest = newest.max(modified);
        }
        if old(newest) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

async fn put_part(
    state: &Arc<AppState>,
    token: &str,
    part: &str,
    req: &FalRequest,
) -> Result<Response, ApiError> {
    pending(state, token)?;
    let n: u32 = part
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| ApiError::bad_request("part number must be 1..=10000"))?;
    let dir = parts_dir(token);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    tokio::fs::write(dir.join(n.to_string()), &req.body)
        .await
        .map_err(ApiError::internal)?;
    let etag = hex::encode(Sha256::digest(&req.body));
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
    let up = pending(state, token)?;
    let body: CompleteBody = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("invalid complete request: {e}")))?;
    let mut numbers: Vec<u32> = body.parts.iter().map(|p| p.part_number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.is_empty() {
        return Err(ApiError::bad_request("no parts listed"));
    }
    let dir = parts_dir(token);
    let paths: Vec<PathBuf> = numbers.iter().map(|n| dir.join(n.to_string())).collect();
    for (n, path) in numbers.iter().zip(&paths) {
        if !tokio::fs::try_exists(path).await.unwrap_or(false) {
            return Err(ApiError::bad_request(format!(
                "part {n} was never uploaded"
            )));
        }
    }
    // The parts stream straight into the stored object: no joined copy.
    let parts: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let stored = state
        .storage
        .put_files(&up.key, &parts, &up.content_type)
        .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let stored = stored?;
    forget(state, token);
    metrics::counter!("longcat_uploads_total").increment(1);
    Ok(json_response(
        StatusCode::OK,
        json!({ "file_url": stored.url, "access_url": stored.url, "file_size": stored.size }),
    ))
}

fn cdn_token(state: &Arc<AppState>, req: &FalRequest) -> Result<Response, ApiError> {
    let caller = state.auth.check(&req.headers)?;
    let (token, lifetime) = state.auth.issue_token(&caller);
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
    state.auth.check_upload(&req.headers)?;
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
    state.auth.check_upload(&req.headers)?;
    let lifetime = upload_lifetime(req)?;
    let (token, key) = register(state, &file_name_of(req), &content_type_of(req));
    apply_lifetime(state, lifetime, &key).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "access_url": state.storage.public_url(&key), "uploadId": token }),
    ))
}
