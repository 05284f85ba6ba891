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
scenario!(summary_reads_status_columns);
scenario!(fifo_priority_and_positions);
scenario!(complete_lifecycle_and_usage);
scenario!(fail_records_error);
scenario!(cancel_queued_and_running);
scenario!(recovery_requeues_then_fails_lost);
scenario!(heartbeat_keeps_lease);
scenario!(start_deadline_times_out);
scenario!(logs_in_order);
scenario!(webhook_attempts_recorded);
scenario!(webhook_outbox);

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

scenario!(release_requeues_then_fails);
scenario!(purge_keeps_usage_and_live_jobs);
scenario!(retention_batches);
scenario!(object_lifecycle);
scenario!(upload_state);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_state_two_handles_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("uploads.db").display());
    let a = JobStore::connect(&url).await.unwrap();
    let b = JobStore::connect(&url).await.unwrap();
    common::upload_state_across_handles(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_two_handles_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chaos.db").display());
    let a = JobStore::connect(&url).await.unwrap();
    let b = JobStore::connect(&url).await.unwrap();
    common::chaos_with_crashing_workers(vec![a, b], 60, 8).await;
}

/// A database created by the first schema version keeps its jobs and usage when opened by the
/// current code (later migrations applied on connect).
#[tokio::test]
async fn upgrades_a_version_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let url = format!("sqlite://{}", path.display());
    let only_v1 = dir.path().join("migrations");
    std::fs::create_dir(&only_v1).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_init.sql"
        ),
        only_v1.join("0001_init.sql"),
    )
    .unwrap();
    {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(only_v1.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO jobs (id, endpoint, input, status, max_attempts, created_at, \
             finished_at, result, billable_seconds, estimated_cost_usd) \
             VALUES ('old', 'e', '{}', 'completed', 1, 1, 2, '{}', 5.4, 0.135)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO usage (job_id, key_id, billable_seconds, cost_usd, recorded_at) \
             VALUES ('old', 'k', 5.4, 0.135, 2)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = JobStore::connect(&url).await.unwrap();
    assert_eq!(
        store.get("old").await.unwrap().unwrap().status,
        JobStatus::Completed
    );
    assert_eq!(store.usage(Some("k")).await.unwrap().requests, 1);
    assert_eq!(store.purge_finished(chrono::Utc::now()).await.unwrap(), 1);
    assert_eq!(store.usage(Some("k")).await.unwrap().requests, 1);
}
