//! The task that deletes expired files: outputs past the lifetime their request asked for and
//! uploads past theirs (both set by the headers in [`crate::lifetime`]).
//! Each pass also deletes the parts of abandoned multipart uploads
//! ([`crate::uploads::sweep_abandoned_parts`], after [`crate::uploads::PARTS_TTL`]).

use std::time::Duration;

use chrono::Utc;
use longcat_storage::{output_folder, Storage};
use longcat_store::JobStore;
use tokio::task::JoinHandle;

use crate::retention::RetentionError;

/// Expiries handled per store round trip.
const BATCH: u32 = 200;

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
