//! Store scenarios against Postgres. Run only when `LONGCAT_TEST_POSTGRES_URL` points at a
//! server whose user may create databases (`scripts/with-postgres.sh` starts one); each test
//! gets a fresh database, dropped afterwards.

mod common;

use longcat_store::JobStore;
use sqlx::Connection;

/// A throwaway database on the test server.
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create(test: &str) -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("LONGCAT_TEST_POSTGRES_URL") else {
            // Straight to the stream: `eprintln!` would be captured and hidden for a pass.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "postgres::{test}: SKIPPED (LONGCAT_TEST_POSTGRES_URL not set; \
                 scripts/with-postgres.sh provides one)"
            );
            return None;
        };
        let name = format!(
            "longcat_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let base = match admin_url.split_once('?') {
            Some((base, _)) => base,
            None => admin_url.as_str(),
        };
        let (server, _db) = base.rsplit_once('/').expect("URL with a database path");
        let query = admin_url
            .split_once('?')
            .map(|(_, q)| format!("?{q}"))
            .unwrap_or_default();
        let url = format!("{server}/{name}{query}");
        Some(TestDb {
            admin_url,
            name,
            url,
        })
    }

    async fn drop_db(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

macro_rules! scenario {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(db) = TestDb::create(stringify!($name)).await else {
                return;
            };
            let store = JobStore::connect(&db.url).await.unwrap();
            assert_eq!(store.backend_name(), "postgres");
            common::$name(store.clone()).await;
            store.close().await;
            db.drop_db().await;
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

/// `connect` creates a missing database, then later connects reuse it.
#[tokio::test]
async fn creates_missing_database() {
    let Some(db) = TestDb::create("creates_missing_database").await else {
        return;
    };
    let missing = TestDb {
        url: db.url.replace(&db.name, &format!("{}_new", db.name)),
        name: format!("{}_new", db.name),
        admin_url: db.admin_url.clone(),
    };
    let store = JobStore::connect(&missing.url).await.unwrap();
    store.submit(common::new_job("j")).await.unwrap();
    store.close().await;
    let store = JobStore::connect(&missing.url).await.unwrap();
    assert!(store.get("j").await.unwrap().is_some());
    store.close().await;
    missing.drop_db().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_two_pools() {
    let Some(db) = TestDb::create("concurrent_claims_two_pools").await else {
        return;
    };
    let a = JobStore::connect(&db.url).await.unwrap();
    let b = JobStore::connect(&db.url).await.unwrap();
    common::concurrent_claims_are_exclusive(vec![a.clone(), b.clone()], 200, 16).await;
    a.close().await;
    b.close().await;
    db.drop_db().await;
}

scenario!(release_requeues_then_fails);
scenario!(purge_keeps_usage_and_live_jobs);
scenario!(retention_batches);
scenario!(object_lifecycle);
scenario!(upload_state);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_state_two_pools() {
    let Some(db) = TestDb::create("upload_state_two_pools").await else {
        return;
    };
    let a = JobStore::connect(&db.url).await.unwrap();
    let b = JobStore::connect(&db.url).await.unwrap();
    common::upload_state_across_handles(a.clone(), b.clone()).await;
    a.close().await;
    b.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_two_pools() {
    let Some(db) = TestDb::create("chaos_two_pools").await else {
        return;
    };
    let a = JobStore::connect(&db.url).await.unwrap();
    let b = JobStore::connect(&db.url).await.unwrap();
    common::chaos_with_crashing_workers(vec![a.clone(), b.clone()], 60, 8).await;
    a.close().await;
    b.close().await;
    db.drop_db().await;
}
