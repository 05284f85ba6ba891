//! Store scenarios against SQLite files.

mod common;

use longcat_store::{JobStatus, JobStore, StoreError};
use tempfile::TempDir;

async fn fresh() -> (TempDir, JobStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let store = JobStore::connect(&url).await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    (dir, store)
}

macro_rules! scenario {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, store) = fresh().await;
            common::$name(store).await;
        }
    };
}

scenario!(submit_and_get);
scenario!(fifo_priority_and_positions);
scenario!(complete_lifecycle_and_usage);
scenario!(fail_records_error);
scenario!(cancel_queued_and_running);
scenario!(recovery_requeues_then_fails_lost);
scenario!(heartbeat_keeps_lease);
scenario!(start_deadline_times_out);
scenario!(logs_in_order);
scenario!(webhook_attempts_recorded);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_one_handle() {
    let (_dir, store) = fresh().await;
    common::concurrent_claims_are_exclusive(vec![store], 120, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_two_handles_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let a = JobStore::connect(&url).await.unwrap();
    let b = JobStore::connect(&url).await.unwrap();
    common::concurrent_claims_are_exclusive(vec![a, b], 120, 12).await;
}

#[tokio::test]
async fn creates_missing_parent_directories_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/jobs.db");
    let url = format!("sqlite://{}", path.display());
    let store = JobStore::connect(&url).await.unwrap();
    store.submit(common::new_job("persist")).await.unwrap();
    store.close().await;
    assert!(path.exists());

    // A new handle (as after a restart) sees the job and its history.
    let store = JobStore::connect(&url).await.unwrap();
    let job = store.get("persist").await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(store.status_history("persist").await.unwrap().len(), 1);
}

#[tokio::test]
async fn in_memory_database_works() {
    let store = JobStore::connect("sqlite::memory:").await.unwrap();
    common::fifo_priority_and_positions(store).await;
}

#[tokio::test]
async fn rejects_unknown_url_schemes() {
    for url in ["mysql://localhost/db", "jobs.db", ""] {
        assert!(matches!(
            JobStore::connect(url).await,
            Err(StoreError::InvalidUrl { .. })
        ));
    }
}
