//! fal's object lifecycle headers and the task that deletes expired files.
//!
//! `X-Fal-Object-Lifecycle-Preference` on run/submit sets how long the request's output files
//! live; `X-Fal-Object-Lifecycle` on uploads sets how long the uploaded file lives. Both carry
//! JSON like `{"expiration_duration_seconds": 86400, "initial_acl": {...}}`; only the
//! expiration is used (files here are served to whoever has the URL), other keys are ignored.
//! Each pass also deletes the parts of abandoned multipart uploads
//! ([`crate::uploads::sweep_abandoned_parts`], after [`crate::uploads::PARTS_TTL`]).

use std::time::Duration;

use chrono::Utc;
use longcat_storage::{output_folder, Storage};
use longcat_store::JobStore;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::retention::RetentionError;
use crate::router::FalRequest;

/// Header on run/submit: lifetime of the output files.
pub const OUTPUT_HEADER: &str = "x-fal-object-lifecycle-preference";
/// Header on uploads: lifetime of the uploaded file.
pub const UPLOAD_HEADER: &str = "x-fal-object-lifecycle";

/// Expiries handled per store round trip.
const BATCH: u32 = 200;

#[derive(Deserialize)]
struct Lifecycle {
    #[serde(default)]
    expiration_duration_seconds: Option<serde_json::Value>,
}

/// The expiration in the first of `headers` present on `req`: `None` when absent or when it
/// sets no expiration; a 400 naming the header when it is not valid.
pub fn requested_lifetime(
    req: &FalRequest,
    headers: &[&str],
) -> Result<Option<Duration>, ApiError> {
    let Some((name, value)) = headers
        .iter()
        .find_map(|h| req.header(h).map(|v| (*h, v.trim())))
    else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    let invalid = |why: &str| ApiError::bad_request(format!("invalid {name} header: {why}"));
    let parsed: Lifecycle =
        serde_json::from_str(value).map_err(|e| invalid(&format!("not a JSON object ({e})")))?;
    let seconds = match parsed.expiration_duration_seconds {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(v) => v.as_f64(),
    };
    match seconds {
        Some(s) if s.is_finite() && s >= 1.0 => Ok(Some(Duration::from_secs(s as u64))),
        _ => Err(invalid(
            "expiration_duration_seconds must be a number of seconds, at least 1",
        )),
    }
}

/// Deletes every expired file now: outputs of jobs past their output lifetime, then key
/// folders (uploads) past theirs. Returns how many files were deleted.
pub async fn expire_due(store: &JobStore, storage: &Storage) -> Result<u64, RetentionError> {
    let now = Utc::now();
    let mut files = 0;
    loop {
        let ids = store.expired_outputs(now, BATCH).await?;
        for id in &ids {
            files += storage.delete_under(&output_folder(id), None).await?;
            store.mark_outputs_expired(id).await?;
        }
        if ids.len() < BATCH as usize {
            break;
        }
    }
    loop {
        let prefixes = store.due_file_expirations(now, BATCH).await?;
        for prefix in &prefixes {
            files += storage.delete_under(prefix, None).await?;
            store.forget_file_expiration(prefix).await?;
        }
        if prefixes.len() < BATCH as usize {
            break;
        }
    }
    Ok(files)
}

/// Runs [`expire_due`] every `every` until aborted.
pub fn spawn(store: JobStore, storage: Storage, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match expire_due(&store, &storage).await {
                Ok(0) => {}
                Ok(files) => tracing::info!(files, "lifecycle: deleted expired files"),
                Err(e) => tracing::warn!(error = %e, "lifecycle pass failed; retrying next pass"),
            }
            let root = crate::uploads::parts_root();
            let swept = tokio::task::spawn_blocking(move || {
                crate::uploads::sweep_abandoned_parts(&root, crate::uploads::PARTS_TTL)
            })
            .await;
            match swept {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::info!(uploads = n, "lifecycle: deleted abandoned upload parts")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "sweeping upload parts failed; retrying next pass")
                }
                Err(e) => tracing::warn!(error = %e, "sweeping upload parts panicked"),
            }
        }
    })
}
