//! Backend-independent store scenarios, run against SQLite (always) and Postgres (when
//! `LONGCAT_TEST_POSTGRES_URL` is set).
#![allow(dead_code)]

use chrono::Utc;
use longcat_store::{
    CancelOutcome, JobError, JobStatus, JobStore, NewJob, Priority, StoreError, SubmitOptions,
};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

pub const LEASE: Duration = Duration::from_secs(60);

pub fn new_job(id: &str) -> NewJob {
    NewJob {
        id: id.to_string(),
        endpoint: "fal-ai/longcat-video/image-to-video/720p".into(),
        input: json!({"prompt": "a cat", "image_url": "https://example.com/cat.png", "num_frames": 162}),
        key_id: None,
        webhook_url: None,
        billable_seconds: 10.8,
        estimated_cost_usd: 0.27,
        max_attempts: 3,
    }
}

fn statuses(h: &[(JobStatus, chrono::DateTime<Utc>)]) -> Vec<JobStatus> {
    h.iter().map(|(s, _)| *s).collect()
}

pub async fn submit_and_get(store: JobStore) {
    let mut nj = new_job("req-1");
    nj.key_id = Some("key-a".into());
    nj.webhook_url = Some("https://hooks.example.com/x".into());
    let job = store.submit(nj.clone()).await.unwrap();
    assert_eq!(job.id, "req-1");
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.max_attempts, 3);
    assert_eq!(job.priority, Priority::Normal);
    assert!(job.started_at.is_none() && job.finished_at.is_none() && job.worker_id.is_none());

    let got = store.get("req-1").await.unwrap().expect("stored");
    assert_eq!(got, job);
    assert_eq!(got.input, nj.input);
    assert_eq!(got.key_id.as_deref(), Some("key-a"));
    assert_eq!(
        got.webhook_url.as_deref(),
        Some("https://hooks.example.com/x")
    );
    assert_eq!(got.billable_seconds, 10.8);
    assert_eq!(got.estimated_cost_usd, 0.27);
    assert!((Utc::now() - got.created_at).num_seconds().abs() < 60);

    assert!(store.get("nope").await.unwrap().is_none());
    assert!(matches!(
        store.submit(new_job("req-1")).await,
        Err(StoreError::DuplicateId(id)) if id == "req-1"
    ));
    let mut bad = new_job("req-2");
    bad.max_attempts = 0;
    assert!(matches!(
        store.submit(bad).await,
        Err(StoreError::InvalidJob(_))
    ));
    assert!(store.get("req-2").await.unwrap().is_none());

    let history = store.status_history("req-1").await.unwrap();
    assert_eq!(statuses(&history), vec![JobStatus::Queued]);
}

pub async fn fifo_priority_and_positions(store: JobStore) {
    for id in ["a", "b"] {
        store.submit(new_job(id)).await.unwrap();
    }
    let low = SubmitOptions {
        priority: Priority::Low,
        ..SubmitOptions::default()
    };
    assert_eq!(
        store.submit_with(new_job("c"), low).await.unwrap().priority,
        Priority::Low
    );
    store.submit(new_job("d")).await.unwrap();

    assert_eq!(store.queue_depth().await.unwrap(), 4);
    let mut positions = Vec::new();
    for id in ["a", "b", "c", "d"] {
        positions.push(store.queue_position(id).await.unwrap());
    }
    assert_eq!(positions, vec![Some(0), Some(1), Some(3), Some(2)]);
    assert_eq!(store.queue_position("missing").await.unwrap(), None);

    let mut order = Vec::new();
    while let Some(job) = store.claim_next("w1", LEASE).await.unwrap() {
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.worker_id.as_deref(), Some("w1"));
        assert!(job.started_at.is_some());
        assert!(job.lease_expires_at.unwrap() > Utc::now());
        assert_eq!(store.queue_position(&job.id).await.unwrap(), None);
        order.push(job.id);
    }
    assert_eq!(order, vec!["a", "b", "d", "c"]);
    assert_eq!(store.queue_depth().await.unwrap(), 0);
}

pub async fn complete_lifecycle_and_usage(store: JobStore) {
    let mut nj = new_job("j1");
    nj.key_id = Some("key-a".into());
    store.submit(nj).await.unwrap();
    let job = store.claim_next("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(job.id, "j1");

    assert!(store.heartbeat("j1", "w1", LEASE).await.unwrap());
    assert!(!store.heartbeat("j1", "w2", LEASE).await.unwrap());
    let output =
        json!({"video": {"url": "http://x/files/a.mp4", "content_type": "video/mp4"}, "seed": 7});
    assert!(!store.complete("j1", "w2", output.clone()).await.unwrap());
    assert!(store.complete("j1", "w1", output.clone()).await.unwrap());
    // Finished: a second completion, a late failure or heartbeat are refused.
    assert!(!store.complete("j1", "w1", output.clone()).await.unwrap());
    assert!(!store
        .fail("j1", "w1", JobError::new("internal", "x"))
        .await
        .unwrap());
    assert!(!store.heartbeat("j1", "w1", LEASE).await.unwrap());

    for _ in 0..2 {
        let done = store.get("j1").await.unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!(done.result.as_ref(), Some(&output));
        assert!(done.error.is_none());
        assert!(done.finished_at.unwrap() >= done.started_at.unwrap());
        assert!(done.lease_expires_at.is_none());
    }
    assert_eq!(
        statuses(&store.status_history("j1").await.unwrap()),
        vec![JobStatus::Queued, JobStatus::Running, JobStatus::Completed]
    );
    // Recovery never touches finished jobs.
    assert!(store.recover_expired().await.unwrap().is_empty());
    assert_eq!(
        store.get("j1").await.unwrap().unwrap().status,
        JobStatus::Completed
    );

    // Usage: per key and total; failed jobs are not billed.
    let mut other = new_job("j2");
    other.endpoint = "fal-ai/longcat-video/text-to-video/480p".into();
    other.key_id = Some("key-b".into());
    other.billable_seconds = 5.4;
    other.estimated_cost_usd = 0.135;
    store.submit(other).await.unwrap();
    let mut failing = new_job("j3");
    failing.key_id = Some("key-a".into());
    store.submit(failing).await.unwrap();
    let j2 = store.claim_next("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(j2.id, "j2");
    assert!(store.complete("j2", "w1", json!({})).await.unwrap());
    store.claim_next("w1", LEASE).await.unwrap().unwrap();
    assert!(store
        .fail("j3", "w1", JobError::new("internal", "boom"))
        .await
        .unwrap());

    let a = store.usage(Some("key-a")).await.unwrap();
    assert_eq!(a.requests, 1);
    assert!((a.billable_seconds - 10.8).abs() < 1e-9);
    assert!((a.cost_usd - 0.27).abs() < 1e-9);
    let all = store.usage(None).await.unwrap();
    assert_eq!(all.requests, 2);
    assert!((all.billable_seconds - 16.2).abs() < 1e-9);
    assert!((all.cost_usd - 0.405).abs() < 1e-9);
    assert_eq!(store.usage(Some("key-z")).await.unwrap().requests, 0);
    // Per app (the job's endpoint).
    let by_app = store.usage_by_endpoint(None).await.unwrap();
    let apps: Vec<(&str, u64)> = by_app
        .iter()
        .map(|(e, u)| (e.as_str(), u.requests))
        .collect();
    assert_eq!(
        apps,
        [
            ("fal-ai/longcat-video/image-to-video/720p", 1),
            ("fal-ai/longcat-video/text-to-video/480p", 1)
        ]
    );
    assert!((by_app[1].1.cost_usd - 0.135).abs() < 1e-9);
    let b = store.usage_by_endpoint(Some("key-b")).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].0, "fal-ai/longcat-video/text-to-video/480p");
}

pub async fn fail_records_error(store: JobStore) {
    store.submit(new_job("f1")).await.unwrap();
    store.claim_next("w1", LEASE).await.unwrap().unwrap();
    let detail = json!([{"loc": ["body", "image_url"], "msg": "Could not fetch image", "type": "image_load_error"}]);
    let error = JobError {
        kind: "validation".into(),
        message: "Could not fetch image".into(),
        detail: Some(detail.clone()),
    };
    assert!(!store.fail("f1", "other", error.clone()).await.unwrap());
    assert!(store.fail("f1", "w1", error.clone()).await.unwrap());
    let job = store.get("f1").await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error, Some(error));
    assert!(job.result.is_none());
    assert_eq!(job.status.fal_status(), "COMPLETED");
    assert_eq!(
        statuses(&store.status_history("f1").await.unwrap()),
        vec![JobStatus::Queued, JobStatus::Running, JobStatus::Failed]
    );
}

pub async fn cancel_queued_and_running(store: JobStore) {
    store.submit(new_job("q")).await.unwrap();
    store.submit(new_job("r")).await.unwrap();
    store.submit(new_job("s")).await.unwrap();
    // Move "q" behind: claim it first, then cancel the queued "r".
    let running = store.claim_next("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(running.id, "q");
    assert_eq!(store.queue_position("s").await.unwrap(), Some(1));
    assert_eq!(
        store.request_cancel("r").await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(store.queue_position("s").await.unwrap(), Some(0));
    let r = store.get("r").await.unwrap().unwrap();
    assert_eq!(r.status, JobStatus::Cancelled);
    assert_eq!(r.error.as_ref().map(|e| e.kind.as_str()), Some("cancelled"));
    assert!(r.finished_at.is_some());
    assert_eq!(
        store.request_cancel("r").await.unwrap(),
        CancelOutcome::AlreadyDone
    );

    // The cancelled job is never handed out.
    let next = store.claim_next("w2", LEASE).await.unwrap().unwrap();
    assert_eq!(next.id, "s");
    assert!(store.claim_next("w2", LEASE).await.unwrap().is_none());

    // Running: flagged, the worker sees it and marks it cancelled.
    assert!(!store.cancel_requested("q").await.unwrap());
    assert_eq!(
        store.request_cancel("q").await.unwrap(),
        CancelOutcome::Requested
    );
    assert!(store.cancel_requested("q").await.unwrap());
    assert_eq!(
        store.get("q").await.unwrap().unwrap().status,
        JobStatus::Running
    );
    assert!(!store.mark_cancelled("q", "w2").await.unwrap());
    assert!(store.mark_cancelled("q", "w1").await.unwrap());
    let q = store.get("q").await.unwrap().unwrap();
    assert_eq!(q.status, JobStatus::Cancelled);
    assert!(q.cancel_requested);
    assert_eq!(q.error.as_ref().map(|e| e.kind.as_str()), Some("cancelled"));
    assert_eq!(
        statuses(&store.status_history("q").await.unwrap()),
        vec![JobStatus::Queued, JobStatus::Running, JobStatus::Cancelled]
    );

    assert!(store.complete("s", "w2", json!({})).await.unwrap());
    assert_eq!(
        store.request_cancel("s").await.unwrap(),
        CancelOutcome::AlreadyDone
    );
    assert_eq!(
        store.request_cancel("zz").await.unwrap(),
        CancelOutcome::NotFound
    );
    assert!(matches!(
        store.cancel_requested("zz").await,
        Err(StoreError::UnknownJob(_))
    ));
}

pub async fn recovery_requeues_then_fails_lost(store: JobStore) {
    let short = Duration::from_millis(1);
    let mut nj = new_job("lost");
    nj.max_attempts = 2;
    store.submit(nj).await.unwrap();
    store.submit(new_job("behind")).await.unwrap();

    let first = store.claim_next("w1", short).await.unwrap().unwrap();
    assert_eq!(first.id, "lost");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = store.recover_expired().await.unwrap();
    assert_eq!(report.requeued, vec!["lost".to_string()]);
    assert!(report.failed.is_empty() && report.cancelled.is_empty());

    let requeued = store.get("lost").await.unwrap().unwrap();
    assert_eq!(requeued.status, JobStatus::Queued);
    assert_eq!(requeued.attempts, 1);
    assert!(requeued.worker_id.is_none());
    // It keeps its place at the front of the queue.
    assert_eq!(store.queue_position("lost").await.unwrap(), Some(0));
    // The old worker has lost it.
    assert!(!store.heartbeat("lost", "w1", LEASE).await.unwrap());
    assert!(!store.complete("lost", "w1", json!({})).await.unwrap());

    let second = store.claim_next("w2", short).await.unwrap().unwrap();
    assert_eq!(second.id, "lost");
    assert_eq!(second.attempts, 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = store.recover_expired().await.unwrap();
    assert_eq!(report.failed, vec!["lost".to_string()]);
    let failed = store.get("lost").await.unwrap().unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    let error = failed.error.unwrap();
    assert_eq!(error.kind, "lost");
    assert!(error.message.contains("w2"), "{}", error.message);
    assert!(
        error.message.contains("attempt 2 of 2"),
        "{}",
        error.message
    );
    assert_eq!(
        statuses(&store.status_history("lost").await.unwrap()),
        vec![
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Failed
        ]
    );
    let logs = store.logs("lost", None).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert!(logs.iter().all(|l| l.level == "WARN"));

    // A live lease is left alone; an expired one with a cancel request ends cancelled.
    let live = store.claim_next("w3", LEASE).await.unwrap().unwrap();
    assert_eq!(live.id, "behind");
    assert!(store.recover_expired().await.unwrap().is_empty());
    assert_eq!(
        store.get("behind").await.unwrap().unwrap().status,
        JobStatus::Running
    );
    store.submit(new_job("cx")).await.unwrap();
    store.claim_next("w4", short).await.unwrap().unwrap();
    assert_eq!(
        store.request_cancel("cx").await.unwrap(),
        CancelOutcome::Requested
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = store.recover_expired().await.unwrap();
    assert_eq!(report.cancelled, vec!["cx".to_string()]);
    assert_eq!(
        store.get("cx").await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
}

pub async fn heartbeat_keeps_lease(store: JobStore) {
    store.submit(new_job("hb")).await.unwrap();
    store
        .claim_next("w1", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(store
            .heartbeat("hb", "w1", Duration::from_millis(300))
            .await
            .unwrap());
        assert!(store.recover_expired().await.unwrap().is_empty());
    }
    assert_eq!(
        store.get("hb").await.unwrap().unwrap().status,
        JobStatus::Running
    );
}

pub async fn start_deadline_times_out(store: JobStore) {
    let past = SubmitOptions {
        start_deadline: Some(Utc::now() - chrono::Duration::seconds(1)),
        ..SubmitOptions::default()
    };
    let future = SubmitOptions {
        start_deadline: Some(Utc::now() + chrono::Duration::seconds(3600)),
        ..SubmitOptions::default()
    };
    store.submit_with(new_job("late"), past).await.unwrap();
    store.submit_with(new_job("late2"), past).await.unwrap();
    store.submit_with(new_job("ok"), future).await.unwrap();

    // claim_next skips expired jobs and hands out the live one.
    let job = store.claim_next("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(job.id, "ok");
    assert!(store.claim_next("w1", LEASE).await.unwrap().is_none());
    assert_eq!(
        store.get("late").await.unwrap().unwrap().status,
        JobStatus::Queued
    );

    // recover_expired fails and reports them.
    let mut timed_out = store.recover_expired().await.unwrap().timed_out;
    timed_out.sort();
    assert_eq!(timed_out, vec!["late".to_string(), "late2".to_string()]);
    let late = store.get("late").await.unwrap().unwrap();
    assert_eq!(late.status, JobStatus::Failed);
    assert_eq!(late.attempts, 0);
    assert!(late.finished_at.is_some());
    assert_eq!(late.error.unwrap().kind, "timeout");
    assert_eq!(
        statuses(&store.status_history("late").await.unwrap()),
        vec![JobStatus::Queued, JobStatus::Failed]
    );
    assert!(store.recover_expired().await.unwrap().is_empty());
    assert_eq!(
        store.get("ok").await.unwrap().unwrap().status,
        JobStatus::Running
    );
}

pub async fn logs_in_order(store: JobStore) {
    store.submit(new_job("l")).await.unwrap();
    store.submit(new_job("other")).await.unwrap();
    for i in 0..30 {
        store
            .append_log("l", "INFO", &format!("step {i}/30"))
            .await
            .unwrap();
        if i % 3 == 0 {
            store.append_log("other", "DEBUG", "noise").await.unwrap();
        }
    }
    let all = store.logs("l", None).await.unwrap();
    assert_eq!(all.len(), 30);
    for (i, line) in all.iter().enumerate() {
        assert_eq!(line.message, format!("step {i}/30"));
        assert_eq!(line.level, "INFO");
    }
    assert!(all
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].timestamp <= w[1].timestamp));
    let tail = store.logs("l", Some(all[24].seq)).await.unwrap();
    assert_eq!(tail.len(), 5);
    assert_eq!(tail[0].message, "step 25/30");
    assert!(store.logs("l", Some(all[29].seq)).await.unwrap().is_empty());
    assert_eq!(store.logs("other", None).await.unwrap().len(), 10);
    assert!(matches!(
        store.append_log("missing", "INFO", "x").await,
        Err(StoreError::UnknownJob(_))
    ));
}

pub async fn webhook_attempts_recorded(store: JobStore) {
    store.submit(new_job("w")).await.unwrap();
    store
        .record_webhook_attempt("w", 1, None, Some("connection refused"))
        .await
        .unwrap();
    store
        .record_webhook_attempt("w", 2, Some(500), None)
        .await
        .unwrap();
    store
        .record_webhook_attempt("w", 3, Some(200), None)
        .await
        .unwrap();
    let attempts = store.webhook_attempts("w").await.unwrap();
    let summary: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.status_code, a.error.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, None, Some("connection refused".to_string())),
            (2, Some(500), None),
            (3, Some(200), None)
        ]
    );
    assert!(matches!(
        store
            .record_webhook_attempt("missing", 1, Some(200), None)
            .await,
        Err(StoreError::UnknownJob(_))
    ));
}

/// Many claimers over one or more handles: every job is claimed exactly once.
pub async fn concurrent_claims_are_exclusive(handles: Vec<JobStore>, jobs: usize, tasks: usize) {
    for i in 0..jobs {
        handles[i % handles.len()]
            .submit(new_job(&format!("c{i:04}")))
            .await
            .unwrap();
    }
    let mut joins = Vec::new();
    for t in 0..tasks {
        let store = handles[t % handles.len()].clone();
        joins.push(tokio::spawn(async move {
            let worker = format!("worker-{t}");
            let mut mine = Vec::new();
            while let Some(job) = store.claim_next(&worker, LEASE).await.unwrap() {
                assert_eq!(job.worker_id.as_deref(), Some(worker.as_str()));
                store.append_log(&job.id, "INFO", &worker).await.unwrap();
                assert!(store
                    .complete(&job.id, &worker, json!({"by": worker}))
                    .await
                    .unwrap());
                mine.push(job.id);
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for j in joins {
        for id in j.await.unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "{id} claimed twice");
        }
    }
    assert_eq!(total, jobs);
    assert_eq!(seen.len(), jobs);
    let store = &handles[0];
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    for id in &seen {
        let job = store.get(id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Completed);
        assert_eq!(job.attempts, 1);
        assert_eq!(
            job.result,
            Some(json!({"by": job.worker_id.clone().unwrap()}))
        );
        let running = store
            .status_history(id)
            .await
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == JobStatus::Running)
            .count();
        assert_eq!(running, 1, "{id}");
        assert_eq!(store.logs(id, None).await.unwrap().len(), 1);
    }
    assert_eq!(store.usage(None).await.unwrap().requests, jobs as u64);
}

pub async fn release_requeues_then_fails(store: JobStore) {
    let mut nj = new_job("rel");
    nj.max_attempts = 2;
    nj.key_id = Some("k".into());
    store.submit(nj).await.unwrap();
    store.submit(new_job("next")).await.unwrap();
    store.claim_next("w1", LEASE).await.unwrap().unwrap();
    let transient = JobError::new("internal", "runner returned 503");
    assert_eq!(
        store.release("rel", "w2", transient.clone()).await.unwrap(),
        None
    );
    assert_eq!(
        store.release("rel", "w1", transient.clone()).await.unwrap(),
        Some(JobStatus::Queued)
    );
    // Back at the front, with the failure visible in its logs.
    assert_eq!(store.queue_position("rel").await.unwrap(), Some(0));
    let logs = store.logs("rel", None).await.unwrap();
    assert_eq!(logs.len(), 1);
    assert!(
        logs[0].message.contains("runner returned 503"),
        "{}",
        logs[0].message
    );
    assert!(!store.heartbeat("rel", "w1", LEASE).await.unwrap());

    let again = store.claim_next("w2", LEASE).await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), ("rel", 2));
    assert_eq!(
        store.release("rel", "w2", transient.clone()).await.unwrap(),
        Some(JobStatus::Failed)
    );
    let job = store.get("rel").await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error, Some(transient.clone()));
    assert_eq!(store.usage(Some("k")).await.unwrap().requests, 0);
    assert_eq!(
        store.release("rel", "w2", transient.clone()).await.unwrap(),
        None
    );

    // A cancel request is honoured instead of re-running.
    let next = store.claim_next("w3", LEASE).await.unwrap().unwrap();
    assert_eq!(next.id, "next");
    store.request_cancel("next").await.unwrap();
    assert_eq!(
        store.release("next", "w3", transient).await.unwrap(),
        Some(JobStatus::Failed)
    );
}

pub async fn purge_keeps_usage_and_live_jobs(store: JobStore) {
    for id in ["done", "failed", "queued", "running"] {
        let mut nj = new_job(id);
        nj.key_id = Some("k".into());
        store.submit(nj).await.unwrap();
    }
    store.claim_next("w", LEASE).await.unwrap().unwrap();
    store.append_log("done", "INFO", "x").await.unwrap();
    store
        .record_webhook_attempt("done", 1, Some(200), None)
        .await
        .unwrap();
    assert!(store.complete("done", "w", json!({})).await.unwrap());
    store.claim_next("w", LEASE).await.unwrap().unwrap();
    assert!(store
        .fail("failed", "w", JobError::new("internal", "x"))
        .await
        .unwrap());
    store.request_cancel("queued").await.unwrap();
    store.claim_next("w", LEASE).await.unwrap().unwrap(); // "running"

    let cutoff = Utc::now() - chrono::Duration::seconds(3600);
    assert_eq!(store.purge_finished(cutoff).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(store.purge_finished(Utc::now()).await.unwrap(), 3);
    for id in ["done", "failed", "queued"] {
        assert!(store.get(id).await.unwrap().is_none(), "{id}");
        assert!(store.status_history(id).await.unwrap().is_empty());
    }
    assert!(store.logs("done", None).await.unwrap().is_empty());
    assert!(store.webhook_attempts("done").await.unwrap().is_empty());
    assert_eq!(
        store.get("running").await.unwrap().unwrap().status,
        JobStatus::Running
    );
    // Billing history survives.
    assert_eq!(store.usage(Some("k")).await.unwrap().requests, 1);
}

/// Workers that sometimes die mid-job (stop heartbeating), a recoverer running concurrently:
/// every job ends in a final state, is completed at most once, only by the worker that held
/// it, and its attempts match its `running` history entries.
pub async fn chaos_with_crashing_workers(handles: Vec<JobStore>, jobs: usize, tasks: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    for i in 0..jobs {
        let mut nj = new_job(&format!("x{i:03}"));
        nj.max_attempts = 5;
        handles[0].submit(nj).await.unwrap();
    }
    // Jobs in a final state: completed by a worker, or failed as lost by the recoverer.
    let finished = Arc::new(AtomicUsize::new(0));
    let completions = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let short = Duration::from_millis(150);
    let mut joins = Vec::new();
    for t in 0..tasks {
        let store = handles[t % handles.len()].clone();
        let (finished, completions) = (finished.clone(), completions.clone());
        joins.push(tokio::spawn(async move {
            let worker = format!("chaos-{t}");
            let mut done = Vec::new();
            while finished.load(Ordering::SeqCst) < jobs {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "chaos test stalled"
                );
                let Some(job) = store.claim_next(&worker, short).await.unwrap() else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let n: usize = job.id[1..].parse().unwrap();
                if job.attempts == 1 && n.is_multiple_of(3) {
                    continue; // "crash": abandon the job without a word
                }
                if !store.heartbeat(&job.id, &worker, LEASE).await.unwrap() {
                    continue; // lost it already (slow machine): someone else will run it
                }
                if store
                    .complete(&job.id, &worker, json!({"by": worker}))
                    .await
                    .unwrap()
                {
                    completions.fetch_add(1, Ordering::SeqCst);
                    finished.fetch_add(1, Ordering::SeqCst);
                    done.push(job.id);
                }
            }
            done
        }));
    }
    let recoverer = {
        let store = handles[handles.len() - 1].clone();
        let finished = finished.clone();
        tokio::spawn(async move {
            while finished.load(Ordering::SeqCst) < jobs {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "chaos test stalled"
                );
                let report = store.recover_expired().await.unwrap();
                finished.fetch_add(report.failed.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let mut completed_by = std::collections::HashMap::new();
    for j in joins {
        let worker_jobs = j.await.unwrap();
        for id in worker_jobs {
            assert!(
                completed_by.insert(id.clone(), ()).is_none(),
                "{id} completed twice"
            );
        }
    }
    recoverer.await.unwrap();
    let store = &handles[0];
    assert_eq!(completions.load(Ordering::SeqCst), completed_by.len());
    for i in 0..jobs {
        let id = format!("x{i:03}");
        let job = store.get(&id).await.unwrap().unwrap();
        let history = store.status_history(&id).await.unwrap();
        let runs = history
            .iter()
            .filter(|(s, _)| *s == JobStatus::Running)
            .count();
        assert_eq!(runs as u32, job.attempts, "{id}");
        match job.status {
            JobStatus::Completed => {
                assert!(completed_by.contains_key(&id), "{id}");
                assert_eq!(
                    job.result,
                    Some(json!({"by": job.worker_id.clone().unwrap()}))
                );
                if i % 3 == 0 {
                    assert!(job.attempts >= 2, "{id} was abandoned once");
                }
            }
            JobStatus::Failed => assert_eq!(job.error.unwrap().kind, "lost"),
            other => panic!("{id} ended {other:?}"),
        }
    }
    assert!(
        completed_by.len() >= jobs / 2,
        "most jobs complete: {}",
        completed_by.len()
    );
}

/// The webhook outbox: only finished jobs with a webhook come due, one claim per attempt,
/// retries wait their delay, an expired claim makes the job due again, and a finished
/// delivery leaves the outbox.
pub async fn webhook_outbox(store: JobStore) {
    use longcat_store::{WebhookNext, WebhookState};
    const HOLD: Duration = Duration::from_secs(60);
    let mut hooked = new_job("hooked");
    hooked.webhook_url = Some("https://hooks.example.com/a".into());
    store.submit(hooked).await.unwrap();
    store.submit(new_job("plain")).await.unwrap();
    assert_eq!(
        store.webhook_state("hooked").await.unwrap(),
        Some((WebhookState::Pending, 0))
    );
    assert_eq!(store.webhook_state("plain").await.unwrap(), None);
    // Not finished yet: nothing due.
    assert!(store.claim_due_webhook(HOLD).await.unwrap().is_none());
    for id in ["hooked", "plain"] {
        let job = store.claim_next("w1", LEASE).await.unwrap().unwrap();
        assert_eq!(job.id, id);
        assert!(store.complete(id, "w1", json!({"ok": id})).await.unwrap());
    }
    assert_eq!(store.pending_webhooks().await.unwrap(), 1);

    // Attempt 1 fails: due again only after the delay.
    let due = store.claim_due_webhook(HOLD).await.unwrap().unwrap();
    assert_eq!((due.job.id.as_str(), due.attempt), ("hooked", 1));
    assert_eq!(due.job.result, Some(json!({"ok": "hooked"})));
    assert!(store.claim_due_webhook(HOLD).await.unwrap().is_none());
    let later = WebhookNext::RetryAfter(Duration::from_secs(3600));
    assert!(store
        .finish_webhook_attempt("hooked", 1, later)
        .await
        .unwrap());
    assert!(store.claim_due_webhook(HOLD).await.unwrap().is_none());
    // A stale outcome for attempt 1 changes nothing.
    assert!(!store
        .finish_webhook_attempt("hooked", 2, WebhookNext::Delivered)
        .await
        .unwrap());

    // Retry due at once: attempt 2 is claimed, its claimer "dies" (zero hold), attempt 3
    // follows, and the late outcome of attempt 2 is refused.
    let now = WebhookNext::RetryAfter(Duration::ZERO);
    let stale = WebhookNext::RetryAfter(Duration::ZERO);
    assert!(!store
        .finish_webhook_attempt("hooked", 2, stale)
        .await
        .unwrap());
    assert!(store
        .finish_webhook_attempt("hooked", 1, now)
        .await
        .unwrap());
    let due = store
        .claim_due_webhook(Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(due.attempt, 2);
    let due = store.claim_due_webhook(HOLD).await.unwrap().unwrap();
    assert_eq!(due.attempt, 3);
    assert!(!store
        .finish_webhook_attempt("hooked", 2, WebhookNext::Delivered)
        .await
        .unwrap());
    assert!(store
        .finish_webhook_attempt("hooked", 3, WebhookNext::Delivered)
        .await
        .unwrap());
    assert_eq!(
        store.webhook_state("hooked").await.unwrap(),
        Some((WebhookState::Delivered, 3))
    );
    assert_eq!(store.pending_webhooks().await.unwrap(), 0);
    assert!(store.claim_due_webhook(HOLD).await.unwrap().is_none());

    // A job cancelled while queued is due too; giving up ends it.
    let mut gone = new_job("gone");
    gone.webhook_url = Some("https://hooks.example.com/b".into());
    store.submit(gone).await.unwrap();
    assert_eq!(
        store.request_cancel("gone").await.unwrap(),
        CancelOutcome::Cancelled
    );
    let due = store.claim_due_webhook(HOLD).await.unwrap().unwrap();
    assert_eq!(
        (due.job.id.as_str(), due.job.status),
        ("gone", JobStatus::Cancelled)
    );
    assert!(store
        .finish_webhook_attempt("gone", 1, WebhookNext::GiveUp)
        .await
        .unwrap());
    assert_eq!(
        store.webhook_state("gone").await.unwrap(),
        Some((WebhookState::Failed, 1))
    );
    assert!(store.claim_due_webhook(HOLD).await.unwrap().is_none());
}

/// Retention in batches: finished jobs older than the cut-off are listed oldest first, a
/// limited number at a time, and only finished ones are deleted.
pub async fn retention_batches(store: JobStore) {
    for id in ["r1", "r2", "r3", "hooked", "live"] {
        let mut nj = new_job(id);
        if id == "hooked" {
            nj.webhook_url = Some("https://hooks.example.com/r".into());
        }
        store.submit(nj).await.unwrap();
    }
    for id in ["r1", "r2", "r3", "hooked"] {
        store.claim_next("w", LEASE).await.unwrap().unwrap();
        assert!(store.complete(id, "w", json!({})).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let old = Utc::now() - chrono::Duration::seconds(3600);
    assert!(store.finished_before(old, 10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let now = Utc::now();
    assert_eq!(
        store.finished_before(now, 2).await.unwrap(),
        vec!["r1", "r2"]
    );
    let all = store.finished_before(now, 10).await.unwrap();
    assert_eq!(all, vec!["r1", "r2", "r3"]);
    // Neither a live job nor one whose webhook is still pending is deleted.
    let ids: Vec<String> = ["r1", "r2", "live", "hooked"].map(String::from).into();
    assert_eq!(store.delete_finished(&ids).await.unwrap(), 2);
    assert!(store.get("hooked").await.unwrap().is_some());
    assert_eq!(store.finished_before(now, 10).await.unwrap(), vec!["r3"]);
    assert!(store.get("r1").await.unwrap().is_none());
    assert_eq!(
        store.get("live").await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    assert_eq!(store.delete_finished(&[]).await.unwrap(), 0);
}

/// Object lifecycle: a completed job's outputs come due once their lifetime has run out
/// (never those of failed jobs or jobs without a lifetime), and file folders come due at
/// their expiry.
pub async fn object_lifecycle(store: JobStore) {
    let short = SubmitOptions {
        output_ttl: Some(Duration::from_secs(1)),
        ..SubmitOptions::default()
    };
    store.submit_with(new_job("short"), short).await.unwrap();
    store.submit_with(new_job("failed"), short).await.unwrap();
    store.submit(new_job("kept")).await.unwrap();
    store.claim_next("w", LEASE).await.unwrap().unwrap();
    assert!(store.complete("short", "w", json!({})).await.unwrap());
    store.claim_next("w", LEASE).await.unwrap().unwrap();
    assert!(store
        .fail("failed", "w", JobError::new("internal", "x"))
        .await
        .unwrap());
    store.claim_next("w", LEASE).await.unwrap().unwrap();
    assert!(store.complete("kept", "w", json!({})).await.unwrap());

    assert!(store
        .expired_outputs(Utc::now(), 10)
        .await
        .unwrap()
        .is_empty());
    let later = Utc::now() + chrono::Duration::seconds(2);
    assert_eq!(
        store.expired_outputs(later, 10).await.unwrap(),
        vec!["short"]
    );
    assert!(!store.outputs_expired("short").await.unwrap());
    store.mark_outputs_expired("short").await.unwrap();
    assert!(store.outputs_expired("short").await.unwrap());
    assert!(store.expired_outputs(later, 10).await.unwrap().is_empty());

    store
        .expire_files_after("uploads/a", Duration::from_secs(3600))
        .await
        .unwrap();
    store
        .expire_files_after("uploads/b", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(store
        .due_file_expirations(Utc::now(), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.due_file_expirations(later, 10).await.unwrap(),
        vec!["uploads/b"]
    );
    // A new schedule replaces the old one.
    store
        .expire_files_after("uploads/b", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(store
        .due_file_expirations(later, 10)
        .await
        .unwrap()
        .is_empty());
    let much_later = Utc::now() + chrono::Duration::seconds(7200);
    assert_eq!(
        store.due_file_expirations(much_later, 10).await.unwrap(),
        vec!["uploads/a", "uploads/b"]
    );
    store.forget_file_expiration("uploads/a").await.unwrap();
    assert_eq!(
        store.due_file_expirations(much_later, 10).await.unwrap(),
        vec!["uploads/b"]
    );
}

/// `summary` reads the status columns (owner, state, times, error) without the input.
pub async fn summary_reads_status_columns(store: JobStore) {
    let mut nj = new_job("sum-1");
    nj.key_id = Some("key-a".into());
    store.submit(nj).await.unwrap();
    let s = store.summary("sum-1").await.unwrap().expect("stored");
    assert_eq!(s.id, "sum-1");
    assert_eq!(s.key_id.as_deref(), Some("key-a"));
    assert_eq!(s.status, JobStatus::Queued);
    assert!(s.started_at.is_none() && s.finished_at.is_none() && s.error.is_none());
    let job = store
        .claim_next("w1", LEASE)
        .await
        .unwrap()
        .expect("claimed");
    let mut err = JobError::new("validation", "bad image");
    err.detail = Some(json!([{"loc": ["body", "image_url"]}]));
    assert!(store.fail(&job.id, "w1", err.clone()).await.unwrap());
    let s = store.summary("sum-1").await.unwrap().expect("stored");
    assert_eq!(s.status, JobStatus::Failed);
    assert_eq!(s.error, Some(err));
    assert!(s.started_at.is_some() && s.finished_at.is_some());
    assert!(store.summary("nope").await.unwrap().is_none());
}

/// Upload state: URLs, multipart part records and bearer tokens, with expiry and single use.
pub async fn upload_state(store: JobStore) {
    let hour = Duration::from_secs(3600);
    assert_eq!(store.upload_url("nope").await.unwrap(), None);
    store
        .create_upload_url("t1", "uploads/u1/cat.png", "image/png", hour)
        .await
        .unwrap();
    let url = store.upload_url("t1").await.unwrap().unwrap();
    assert_eq!(url.key, "uploads/u1/cat.png");
    assert_eq!(url.content_type, "image/png");
    assert!(url.expires_at > Utc::now() + chrono::Duration::minutes(59));
    // The token is not stored in clear: a URL is found by its token only.
    assert_eq!(store.upload_url("T1").await.unwrap(), None);

    // Parts: any order, a part sent again replaces its record, listed by number.
    assert!(store.record_upload_part("t1", 2, 5, "e2").await.unwrap());
    assert!(store.record_upload_part("t1", 1, 10, "e1").await.unwrap());
    assert!(store.record_upload_part("t1", 2, 7, "e2b").await.unwrap());
    assert!(store
        .record_upload_part("t1", 10_000, 1, "e3")
        .await
        .unwrap());
    let parts = store.upload_parts("t1").await.unwrap();
    let seen: Vec<(u32, u64, &str)> = parts
        .iter()
        .map(|p| (p.number, p.size, p.etag.as_str()))
        .collect();
    assert_eq!(seen, vec![(1, 10, "e1"), (2, 7, "e2b"), (10_000, 1, "e3")]);
    assert!(!store.record_upload_part("nope", 1, 1, "e").await.unwrap());
    assert!(store.upload_parts("nope").await.unwrap().is_empty());

    // Single use: the first finish wins, then the URL and its parts are gone.
    assert!(store.finish_upload_url("t1").await.unwrap());
    assert!(!store.finish_upload_url("t1").await.unwrap());
    assert_eq!(store.upload_url("t1").await.unwrap(), None);
    assert!(store.upload_parts("t1").await.unwrap().is_empty());
    assert!(!store.record_upload_part("t1", 3, 1, "e").await.unwrap());

    // An expired URL is absent for every call.
    store
        .create_upload_url("dead", "uploads/u2/a.bin", "x/y", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(store.upload_url("dead").await.unwrap(), None);
    assert!(!store.record_upload_part("dead", 1, 1, "e").await.unwrap());
    assert!(!store.finish_upload_url("dead").await.unwrap());

    // Bearer tokens, for a key or for nobody (authentication off).
    store
        .create_upload_token("b1", Some("key-a"), hour)
        .await
        .unwrap();
    store.create_upload_token("b2", None, hour).await.unwrap();
    store
        .create_upload_token("b3", Some("key-a"), Duration::ZERO)
        .await
        .unwrap();
    let b1 = store.upload_token("b1").await.unwrap().unwrap();
    assert_eq!(b1.key_id.as_deref(), Some("key-a"));
    assert!(b1.expires_at > Utc::now());
    assert_eq!(
        store.upload_token("b2").await.unwrap().unwrap().key_id,
        None
    );
    assert_eq!(store.upload_token("b3").await.unwrap(), None);
    assert_eq!(store.upload_token("b4").await.unwrap(), None);

    // Purging drops what expired, with its part records, and keeps what lives.
    store
        .create_upload_url("live", "uploads/u3/b.bin", "x/y", hour)
        .await
        .unwrap();
    assert!(store.record_upload_part("live", 1, 1, "e").await.unwrap());
    let purged = store.purge_expired_uploads(Utc::now()).await.unwrap();
    assert_eq!((purged.urls, purged.tokens), (1, 1));
    assert!(store.upload_url("live").await.unwrap().is_some());
    assert_eq!(store.upload_parts("live").await.unwrap().len(), 1);
    assert!(store.upload_token("b1").await.unwrap().is_some());
    let later = Utc::now() + chrono::Duration::hours(2);
    let purged = store.purge_expired_uploads(later).await.unwrap();
    assert_eq!((purged.urls, purged.tokens), (1, 2));
    let none = store.purge_expired_uploads(later).await.unwrap();
    assert_eq!((none.urls, none.tokens), (0, 0));
}

/// Two handles on one database (two servers): an upload URL, its parts and a bearer token
/// created through one are used and finished through the other; of two concurrent finishes
/// exactly one wins.
pub async fn upload_state_across_handles(a: JobStore, b: JobStore) {
    let hour = Duration::from_secs(3600);
    a.create_upload_url("t", "uploads/u/v.mp4", "video/mp4", hour)
        .await
        .unwrap();
    a.create_upload_token("bearer", Some("k"), hour)
        .await
        .unwrap();
    assert_eq!(
        b.upload_url("t").await.unwrap().unwrap().key,
        "uploads/u/v.mp4"
    );
    assert_eq!(
        b.upload_token("bearer")
            .await
            .unwrap()
            .unwrap()
            .key_id
            .as_deref(),
        Some("k")
    );
    assert!(b.record_upload_part("t", 1, 3, "x").await.unwrap());
    assert!(a.record_upload_part("t", 2, 4, "y").await.unwrap());
    let numbers: Vec<u32> = b
        .upload_parts("t")
        .await
        .unwrap()
        .iter()
        .map(|p| p.number)
        .collect();
    assert_eq!(numbers, vec![1, 2]);
    for round in 0..10 {
        let token = format!("race-{round}");
        a.create_upload_url(&token, "uploads/r/x", "x/y", hour)
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(a.finish_upload_url(&token), b.finish_upload_url(&token));
        assert!(ra.unwrap() ^ rb.unwrap(), "exactly one finish wins");
    }
}
