//! Queue throughput: submits N jobs, then K concurrent workers drain them (claim, one log line,
//! complete). Prints submits/s and jobs/s.
//!
//! `cargo run -p longcat-store --example claim_bench -- [URL] [JOBS] [WORKERS]`
//! (default `sqlite://<tmp>/bench.db`, 2000 jobs, 8 workers; for Postgres pass a URL to a
//! database the user owns, e.g. under `scripts/with-postgres.sh`).

use longcat_store::{JobStore, NewJob};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tmp = tempfile::tempdir()?;
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("bench.db").display()));
    let jobs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let workers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let store = JobStore::connect(&url).await?;
    let run = std::process::id();

    let start = Instant::now();
    for i in 0..jobs {
        store
            .submit(NewJob {
                id: format!("bench-{run}-{i}"),
                endpoint: "bench".into(),
                input: serde_json::json!({"prompt": "bench", "num_frames": 162}),
                key_id: Some("bench".into()),
                webhook_url: None,
                billable_seconds: 10.8,
                estimated_cost_usd: 0.27,
                max_attempts: 1,
            })
            .await?;
    }
    let submit = start.elapsed();

    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-worker-{w}");
            let mut n = 0usize;
            while let Some(job) = store.claim_next(&worker, Duration::from_secs(60)).await? {
                store.append_log(&job.id, "INFO", "step 1/1").await?;
                store
                    .complete(&job.id, &worker, serde_json::json!({}))
                    .await?;
                n += 1;
            }
            Ok::<usize, longcat_store::StoreError>(n)
        }));
    }
    let mut drained = 0;
    for t in tasks {
        drained += t.await??;
    }
    let drain = start.elapsed();
    println!(
        "{} {jobs} jobs, {workers} workers: submit {:.0}/s, claim+log+complete {:.0} jobs/s ({drained} drained)",
        store.backend_name(),
        jobs as f64 / submit.as_secs_f64(),
        drained as f64 / drain.as_secs_f64(),
    );
    Ok(())
}
