//! The worker pool end to end on SQLite + local storage, with a test-double generator that
//! draws deterministic gradient frames (a test helper, not product code).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use longcat_core::{
    CancelToken, GenerationError, GenerationRequest, GenerationSink, GenerationSummary, ModelInfo,
    Progress, Stage, VideoFrame, VideoGenerator,
};
use longcat_media::input::AddressPolicy;
use longcat_store::{Job, JobStatus, JobStore, NewJob};
use longcat_worker::prompt_expansion::{ExpansionConfig, OnFailure};
use longcat_worker::webhook::WebhookConfig;
use longcat_worker::{WorkerConfig, WorkerPool};
use serde_json::{json, Value};

/// Draws `num_frames` 64x48 gradient frames after `steps` fake denoising steps.
struct Gradient {
    steps: u32,
    step_delay: Duration,
}

impl VideoGenerator for Gradient {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "test gradient".into(),
            smoke_test_model: true,
            native_fps: 30,
        }
    }

    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationSummary, GenerationError> {
        let (w, h) = (64u32, 48u32);
        sink.log("test generator starting");
        for step in 1..=self.steps {
            cancel.check()?;
            std::thread::sleep(self.step_delay);
            sink.progress(&Progress {
                stage: Stage::Base,
                segment: 0,
                segments: 1,
                step,
                total: self.steps,
                eta: Some(self.step_delay * (self.steps - step)),
            });
        }
        let frames = request.num_frames;
        for i in 0..frames {
            cancel.check()?;
            let mut data = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h {
                for x in 0..w {
                    data.push((x * 4 + i) as u8);
                    data.push((y * 5) as u8);
                    data.push((request.seed % 251) as u8);
                }
            }
            sink.frame(VideoFrame {
                index: i,
                width: w,
                height: h,
                data,
            })?;
        }
        Ok(GenerationSummary {
            frames,
            width: w,
            height: h,
            seed: request.seed,
        })
    }
}

fn png_data_uri() -> String {
    let img = image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([x as u8 * 16, y as u8 * 20, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    )
}

#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<Value>>>);

async fn hook(State(h): State<Hooks>, body: Bytes) -> &'static str {
    h.0.lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    "ok"
}

async fn hook_receiver() -> (String, Hooks) {
    let hooks = Hooks::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}/hook"), hooks)
}

type Env = common::Scratch;

const PUBLIC: &str = "http://files.invalid:9";

async fn env(tag: &str) -> Env {
    common::scratch(tag, PUBLIC).await
}

fn config(env: &Env) -> WorkerConfig {
    let mut cfg = WorkerConfig {
        poll_interval: Duration::from_millis(100),
        cancel_poll_interval: Duration::from_millis(100),
        heartbeat_interval: Duration::from_millis(500),
        lease: Duration::from_secs(10),
        progress_log_interval: Duration::from_millis(1),
        public_base_url: PUBLIC.into(),
        webhook: WebhookConfig {
            hmac_secret: Some("secret".into()),
            initial_backoff: Duration::from_millis(20),
            policy: AddressPolicy::allowing(["127.0.0.1/32".parse().unwrap()]),
            ..Default::default()
        },
        ..Default::default()
    };
    cfg.encoder.work_dir = env.dir.clone();
    cfg
}

fn pool(env: &Env, cfg: WorkerConfig, steps: u32, step_delay: Duration) -> WorkerPool {
    WorkerPool::spawn(
        1,
        env.store.clone(),
        env.storage.clone(),
        Arc::new(Gradient { steps, step_delay }),
        cfg,
    )
}

async fn submit(store: &JobStore, input: Value, webhook: Option<&str>) -> String {
    submit_to(store, longcat_api::ENDPOINT_ID, input, webhook).await
}

async fn submit_to(
    store: &JobStore,
    endpoint: &str,
    input: Value,
    webhook: Option<&str>,
) -> String {
    let id = format!("job-{}", rand::random::<u32>());
    store
        .submit(NewJob {
            id: id.clone(),
            endpoint: endpoint.into(),
            input,
            key_id: None,
            webhook_url: webhook.map(str::to_string),
            billable_seconds: 1.0,
            estimated_cost_usd: 0.025,
            max_attempts: 2,
        })
        .await
        .unwrap();
    id
}

async fn wait_for(store: &JobStore, id: &str, pred: impl Fn(&Job) -> bool) -> Job {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = store.get(id).await.unwrap().unwrap();
        if pred(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} stuck in {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits a small job without a webhook and waits until `pool` runs it.
async fn start_one(env: &Env, pool: &WorkerPool) -> String {
    let input = json!({"image_url": png_data_uri(), "num_frames": 17});
    let id = submit(&env.store, input, None).await;
    pool.notify();
    wait_for(&env.store, &id, |j| j.status == JobStatus::Running).await;
    id
}

fn terminal(j: &Job) -> bool {
    matches!(
        j.status,
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
    )
}

async fn wait_hooks(hooks: &Hooks, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if hooks.0.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    hooks.0.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_a_job_uploads_the_video_and_sends_the_webhook() {
    let env = env("ok").await;
    let (hook_url, hooks) = hook_receiver().await;
    let pool = pool(&env, config(&env), 3, Duration::from_millis(5));
    let id = submit(
        &env.store,
        json!({"image_url": png_data_uri(), "num_frames": 17, "seed": 1234, "prompt": "a cat"}),
        Some(&hook_url),
    )
    .await;
    pool.notify();
    let job = wait_for(&env.store, &id, terminal).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let result = job.result.clone().unwrap();
    assert_eq!(result["seed"], 1234);
    assert_eq!(result["prompt"], "a cat");
    let video = &result["video"];
    let key = format!("outputs/{id}/output.mp4");
    assert_eq!(video["url"], format!("{PUBLIC}/files/{key}"));
    assert_eq!(video["content_type"], "video/mp4");
    assert_eq!(video["file_name"], "output.mp4");
    let meta = env.storage.head(&key).await.unwrap();
    assert_eq!(video["file_size"], meta.size);
    let bytes = env.storage.read_all(&key, 1 << 30).await.unwrap();
    assert_eq!(&bytes[4..8], b"ftyp", "an MP4 file");

    let logs: Vec<String> = env
        .store
        .logs(&id, None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.message)
        .collect();
    assert!(
        logs.iter().any(|l| l.starts_with("base: step 3/3")),
        "{logs:?}"
    );
    assert_eq!(
        logs[0],
        format!("attempt 1 started on worker {}", pool.worker_ids()[0])
    );
    assert!(
        logs.iter().any(|l| l == "test generator starting"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("generating 17 frames (seed 1234)")),
        "{logs:?}"
    );

    let got = wait_hooks(&hooks, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["request_id"], id);
    assert_eq!(got[0]["status"], "OK");
    assert_eq!(got[0]["payload"], result);
    pool.shutdown().await;
    let attempts = env.store.webhook_attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_errors_fail_as_validation_on_image_url() {
    let env = env("img").await;
    let (hook_url, hooks) = hook_receiver().await;
    let pool = pool(&env, config(&env), 1, Duration::ZERO);
    // Loopback is refused by the default SSRF policy.
    let id = submit(
        &env.store,
        json!({"image_url": "http://127.0.0.1:9/cat.png", "num_frames": 17}),
        Some(&hook_url),
    )
    .await;
    let bad_input = submit(
        &env.store,
        json!({"image_url": png_data_uri(), "num_frames": 3}),
        None,
    )
    .await;
    pool.notify();
    let job = wait_for(&env.store, &id, terminal).await;
    assert_eq!(job.status, JobStatus::Failed);
    let err = job.error.unwrap();
    assert_eq!(err.kind, "validation");
    let detail = err.detail.unwrap();
    assert_eq!(detail[0]["loc"], json!(["body", "image_url"]));
    assert_eq!(detail[0]["type"], "file_download_error");
    assert!(err.message.contains("loopback"), "{}", err.message);

    let job = wait_for(&env.store, &bad_input, terminal).await;
    let err = job.error.unwrap();
    assert_eq!(err.kind, "validation");
    assert_eq!(err.detail.unwrap()[0]["loc"], json!(["body", "num_frames"]));

    let got = wait_hooks(&hooks, 1).await;
    assert_eq!(got[0]["status"], "ERROR");
    assert_eq!(got[0]["error"], "Invalid status code: 422");
    assert_eq!(got[0]["payload"]["detail"], detail);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_a_running_job() {
    let env = env("cancel").await;
    let pool = pool(&env, config(&env), 400, Duration::from_millis(25));
    let id = start_one(&env, &pool).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    env.store.request_cancel(&id).await.unwrap();
    let job = wait_for(&env.store, &id, terminal).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    assert!(env
        .storage
        .head(&format!("outputs/{id}/output.mp4"))
        .await
        .is_err());
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_our_own_files_and_inlines_sync_mode_output() {
    let env = env("own").await;
    let pool = pool(&env, config(&env), 1, Duration::ZERO);
    // The public host does not resolve: the image must come straight from storage.
    let png = png_data_uri();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(png.split_once(',').unwrap().1)
        .unwrap();
    let key = longcat_storage::upload_key("cat.png");
    let stored = env
        .storage
        .put_bytes(&key, raw.into(), "image/png")
        .await
        .unwrap();
    let id = submit(
        &env.store,
        json!({"image_url": stored.url, "num_frames": 17, "sync_mode": true,
               "video_output_type": "GIF (.gif)"}),
        None,
    )
    .await;
    pool.notify();
    let job = wait_for(&env.store, &id, terminal).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let video = &job.result.unwrap()["video"];
    let url = video["url"].as_str().unwrap();
    let b64 = url
        .strip_prefix("data:image/gif;base64,")
        .expect("a GIF data URI");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert!(bytes.starts_with(b"GIF89a"));
    assert_eq!(video["file_size"], bytes.len() as u64);
    assert!(env
        .storage
        .head(&format!("outputs/{id}/output.gif"))
        .await
        .is_err());
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_running_job_finish() {
    let env = env("shutdown").await;
    let pool = pool(&env, config(&env), 20, Duration::from_millis(25));
    let id = start_one(&env, &pool).await;
    pool.shutdown().await;
    let job = env.store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_grace_period_requeues_the_job() {
    let env = env("requeue").await;
    let cfg = WorkerConfig {
        shutdown_grace: Duration::from_millis(100),
        lease: Duration::from_secs(1),
        heartbeat_interval: Duration::from_millis(200),
        ..config(&env)
    };
    let pool = pool(&env, cfg, 1000, Duration::from_millis(20));
    let id = start_one(&env, &pool).await;
    pool.shutdown().await;
    let job = env.store.get(&id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued, "released back to the queue");
    assert_eq!(job.attempts, 1);
    assert!(job.worker_id.is_none());
}

/// A webhook whose receiver is down when the job finishes is retried by the next process:
/// the pending retry lives in the job store, not in the pool that made the first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_survive_a_restart() {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicBool, Ordering};
    #[derive(Clone, Default)]
    struct Flaky {
        up: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<Value>>>,
    }
    async fn flaky(State(f): State<Flaky>, body: Bytes) -> StatusCode {
        if !f.up.load(Ordering::SeqCst) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        f.got
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
        StatusCode::OK
    }
    let receiver = Flaky::default();
    let app = Router::new()
        .route("/hook", post(flaky))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let env = env("hook-restart").await;
    let mut cfg = config(&env);
    cfg.webhook.initial_backoff = Duration::from_secs(2);
    let first = pool(&env, cfg.clone(), 1, Duration::from_millis(1));
    let id = submit(
        &env.store,
        json!({"image_url": png_data_uri(), "num_frames": 17, "prompt": "a cat"}),
        Some(&hook_url),
    )
    .await;
    first.notify();
    let job = wait_for(&env.store, &id, terminal).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    // Attempt 1 fails (503); the pool stops before the retry is due.
    for _ in 0..200 {
        if !env.store.webhook_attempts(&id).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    first.shutdown().await;
    let attempts = env.store.webhook_attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].status_code, Some(503));
    assert_eq!(
        env.store.webhook_state(&id).await.unwrap(),
        Some((longcat_store::WebhookState::Pending, 1))
    );

    // The receiver comes back; a new pool (a restarted server) delivers attempt 2.
    receiver.up.store(true, Ordering::SeqCst);
    let second = pool(&env, cfg, 1, Duration::from_millis(1));
    for _ in 0..400 {
        if !receiver.got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered once after the restart");
    assert_eq!(got[0]["request_id"], id);
    assert_eq!(got[0]["status"], "OK");
    second.shutdown().await;
    let attempts = env.store.webhook_attempts(&id).await.unwrap();
    let codes: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect();
    assert_eq!(codes, vec![(1, Some(503)), (2, Some(200))]);
    assert_eq!(
        env.store.webhook_state(&id).await.unwrap(),
        Some((longcat_store::WebhookState::Delivered, 2))
    );
}

/// Blocks inside `generate` until the test opens the gate; says when a run has entered.
struct Gated {
    entered: std::sync::mpsc::SyncSender<()>,
    gate: Mutex<std::sync::mpsc::Receiver<()>>,
    inner: Gradient,
}

impl VideoGenerator for Gated {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }
    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationSummary, GenerationError> {
        let _ = self.entered.send(());
        let _ = self.gate.lock().unwrap().recv();
        self.inner.generate(request, sink, cancel)
    }
}

/// Two job slots share one engine: while the engine runs one job the second job stays
/// queued (not claimed and shown IN_PROGRESS while it only waits); it runs afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_slot_claims_only_when_the_engine_is_free() {
    let env = env("slots").await;
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(8);
    let (open, gate) = std::sync::mpsc::channel();
    let generator = Gated {
        entered: entered_tx,
        gate: Mutex::new(gate),
        inner: Gradient {
            steps: 1,
            step_delay: Duration::from_millis(1),
        },
    };
    let pool = WorkerPool::spawn(
        2,
        env.store.clone(),
        env.storage.clone(),
        Arc::new(generator),
        config(&env),
    );
    let input = json!({"image_url": png_data_uri(), "num_frames": 17});
    let a = submit(&env.store, input.clone(), None).await;
    let b = submit(&env.store, input, None).await;
    pool.notify();
    let _entered = tokio::task::spawn_blocking(move || {
        entered.recv().unwrap();
        entered
    })
    .await
    .unwrap();
    // The engine holds job a. Give the idle slot many polls (100 ms each) to claim b.
    tokio::time::sleep(Duration::from_millis(800)).await;
    pool.notify();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let jb = env.store.get(&b).await.unwrap().unwrap();
    let ja = env.store.get(&a).await.unwrap().unwrap();
    assert_eq!(ja.status, JobStatus::Running);
    assert_eq!(
        jb.status,
        JobStatus::Queued,
        "b waits in the queue, not on the engine"
    );
    assert_eq!(jb.attempts, 0);
    open.send(()).unwrap();
    open.send(()).unwrap();
    for id in [&a, &b] {
        let job = wait_for(&env.store, id, terminal).await;
        assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    }
    pool.shutdown().await;
}

/// The built-in tiny model whose first run panics (the engine's test hook).
fn tiny_panicking_first_run() -> Arc<dyn VideoGenerator> {
    use longcat_pipeline::engine::PanicHook;
    use longcat_pipeline::generator::{generator_from, GeneratorOptions};
    let opts = GeneratorOptions::default();
    let device = opts.device.clone();
    let dtype = opts.resolved_dtype();
    let hook = PanicHook::on_runs(&[1]);
    generator_from(
        move || {
            let mut n = longcat_pipeline::tiny::networks(
                &device,
                dtype,
                longcat_pipeline::text_encoder::TextEncoderPolicy::Resident,
            )?;
            n.config.panic_hook = Some(hook.clone());
            Ok(n)
        },
        &opts.device,
    )
    .unwrap()
}

/// A job that panics inside the model fails with a clear internal error (500,
/// `runner_server_error`), the engine is rebuilt, and the next job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_fails_and_the_next_job_completes() {
    let env = env("panic").await;
    let pool = WorkerPool::spawn(
        1,
        env.store.clone(),
        env.storage.clone(),
        tiny_panicking_first_run(),
        config(&env),
    );
    let input = json!({"image_url": png_data_uri(), "num_frames": 17, "guidance_scale": 1.0,
                       "num_inference_steps": 8, "num_refine_inference_steps": 8});
    let first = submit(&env.store, input.clone(), None).await;
    pool.notify();
    let job = wait_for(&env.store, &first, terminal).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap();
    assert_eq!(error.kind, "internal");
    assert!(
        error
            .message
            .contains("the model panicked during generation")
            && error.message.contains("the engine was rebuilt"),
        "{}",
        error.message
    );
    let second = submit(&env.store, input, None).await;
    pool.notify();
    let job = wait_for(&env.store, &second, terminal).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(pool.engine_state(), longcat_worker::EngineState::Ready);
    pool.shutdown().await;
}

/// Panics in every run and cannot be recovered.
struct Broken;

impl VideoGenerator for Broken {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "broken".into(),
            smoke_test_model: true,
            native_fps: 30,
        }
    }
    fn generate(
        &self,
        _: &GenerationRequest,
        _: &mut dyn GenerationSink,
        _: &CancelToken,
    ) -> Result<GenerationSummary, GenerationError> {
        panic!("broken test generator")
    }
    fn recover(&self) -> Result<(), GenerationError> {
        Err(GenerationError::Unavailable("cannot rebuild (test)".into()))
    }
}

/// An engine that cannot recover is reported lost and takes no more jobs (they stay queued
/// for another process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_engine_is_reported_and_claims_nothing_more() {
    let env = env("lost").await;
    let pool = WorkerPool::spawn(
        2,
        env.store.clone(),
        env.storage.clone(),
        Arc::new(Broken),
        config(&env),
    );
    let input = json!({"image_url": png_data_uri(), "num_frames": 17});
    let first = submit(&env.store, input.clone(), None).await;
    pool.notify();
    let job = wait_for(&env.store, &first, terminal).await;
    assert_eq!(job.status, JobStatus::Failed);
    let message = job.error.unwrap().message;
    assert!(message.contains("could not be recovered"), "{message}");
    let why = tokio::time::timeout(Duration::from_secs(30), pool.engine_lost())
        .await
        .unwrap();
    assert!(why.contains("cannot rebuild (test)"), "{why}");
    assert!(matches!(
        pool.engine_state(),
        longcat_worker::EngineState::Lost(_)
    ));
    let second = submit(&env.store, input, None).await;
    pool.notify();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job = env.store.get(&second).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    pool.shutdown().await;
}

/// The 1 × 50,000,000 PNG (and its transpose) passes the 50 Mpx cap; the real loader refuses
/// it from its header as a 422 on `image_url` (it used to run a minutes-long, GB-sized resize
/// that cancel could not stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_aspect_png_fails_as_a_422_on_image_url() {
    let env = env("aspect").await;
    let pool = pool(&env, config(&env), 1, Duration::ZERO);
    let mut ids = Vec::new();
    for (w, h) in [(1u32, 50_000_000u32), (50_000_000, 1)] {
        let png = longcat_media::fixtures::png_flat_gray(w, h);
        assert!(png.len() < 1 << 20, "{} bytes", png.len());
        let uri = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        ids.push(
            submit(
                &env.store,
                json!({"image_url": uri, "num_frames": 17}),
                None,
            )
            .await,
        );
    }
    pool.notify();
    for id in &ids {
        let job = wait_for(&env.store, id, terminal).await;
        assert_eq!(job.status, JobStatus::Failed);
        let err = job.error.unwrap();
        assert_eq!(err.kind, "validation");
        let detail = err.detail.unwrap();
        assert_eq!(detail[0]["loc"], json!(["body", "image_url"]), "{detail}");
        assert_eq!(detail[0]["type"], "image_too_large", "{detail}");
        assert_eq!(detail[0]["ctx"]["max_width"], 16384, "{detail}");
    }
    pool.shutdown().await;
}

/// A chat-completions endpoint on loopback answering `status` with `content`; returns its
/// base URL and the bodies it received.
async fn chat_endpoint(status: u16, content: &str) -> (String, Hooks) {
    let seen = Hooks::default();
    let answer = json!({"choices": [{"message": {"role": "assistant", "content": content}}]});
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(move |State(h): State<Hooks>, body: Bytes| {
                let answer = answer.clone();
                async move {
                    h.0.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        axum::Json(answer),
                    )
                }
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}/v1"), seen)
}

fn expansion(base: &str, on_failure: OnFailure) -> ExpansionConfig {
    ExpansionConfig {
        endpoint: ExpansionConfig::endpoint_for(base).unwrap(),
        model: "vision-model".into(),
        api_key: None,
        timeout: Duration::from_secs(5),
        attempts: 1,
        on_failure,
    }
}

/// Runs one job asking for prompt expansion on a pool with `expansion`; returns the finished
/// job, the prompts the model saw and the job's log lines.
async fn run_expansion_job(
    tag: &str,
    expansion: Option<ExpansionConfig>,
    ask: bool,
) -> (Job, Vec<String>, Vec<(String, String)>) {
    let env = env(tag).await;
    let mut cfg = config(&env);
    cfg.prompt_expansion = expansion;
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let pool = WorkerPool::spawn(
        1,
        env.store.clone(),
        env.storage.clone(),
        Arc::new(Recording {
            inner: Gradient {
                steps: 1,
                step_delay: Duration::ZERO,
            },
            seen: prompts.clone(),
        }),
        cfg,
    );
    let input = json!({"image_url": png_data_uri(), "num_frames": 17,
                       "prompt": "a fox", "enable_prompt_expansion": ask});
    let id = submit(&env.store, input, None).await;
    pool.notify();
    let job = wait_for(&env.store, &id, terminal).await;
    let logs = env
        .store
        .logs(&id, None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.level, l.message))
        .collect();
    pool.shutdown().await;
    let seen = prompts
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.prompt.clone())
        .collect();
    (job, seen, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expanded_prompt_reaches_the_model_and_the_output() {
    let (base, seen) = chat_endpoint(200, "A red fox trots through snow.").await;
    let (job, prompts, _) =
        run_expansion_job("expand", Some(expansion(&base, OnFailure::Fail)), true).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(prompts, ["A red fox trots through snow."]);
    assert_eq!(
        job.result.unwrap()["prompt"],
        "A red fox trots through snow."
    );
    let bodies = seen.0.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["model"], "vision-model");
    assert_eq!(bodies[0]["messages"][1]["content"][0]["text"], "a fox");
    let url = bodies[0]["messages"][1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert!(url.starts_with("data:image/jpeg;base64,"));

    // Not asked for: the endpoint is not called.
    let (base, seen) = chat_endpoint(200, "unused").await;
    let (job, prompts, _) =
        run_expansion_job("noask", Some(expansion(&base, OnFailure::Fail)), false).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(prompts, ["a fox"]);
    assert!(seen.0.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_missing_expansion_keeps_the_prompt_or_fails_by_policy() {
    let (base, _) = chat_endpoint(503, "busy").await;
    let (job, prompts, logs) =
        run_expansion_job("keep", Some(expansion(&base, OnFailure::Original)), true).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(prompts, ["a fox"]);
    assert_eq!(job.result.unwrap()["prompt"], "a fox");
    assert!(
        logs.iter()
            .any(|(level, m)| level == "WARN" && m.contains("HTTP 503")),
        "{logs:?}"
    );

    let (job, prompts, _) =
        run_expansion_job("fail", Some(expansion(&base, OnFailure::Fail)), true).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(prompts.is_empty(), "the model never ran");
    let err = job.error.unwrap();
    assert_eq!(err.kind, "internal");
    assert!(
        err.message.starts_with("prompt expansion failed"),
        "{err:?}"
    );

    let (job, prompts, logs) = run_expansion_job("none", None, true).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(prompts, ["a fox"]);
    assert!(
        logs.iter()
            .any(|(level, m)| level == "WARN" && m.contains("no endpoint is configured")),
        "{logs:?}"
    );
}

/// What [`Recording`] saw of each request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    prompt: String,
    app: longcat_core::App,
    image: Option<(u32, u32)>,
    aspect_ratio: longcat_core::AspectRatio,
    guidance_scale: f32,
    num_inference_steps: u32,
}

/// [`Gradient`] that records what reached the model of each request it is given.
struct Recording {
    inner: Gradient,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl VideoGenerator for Recording {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }

    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationSummary, GenerationError> {
        self.seen.lock().unwrap().push(Seen {
            prompt: request.prompt.clone(),
            app: request.app,
            image: request.image.as_ref().map(|i| (i.width, i.height)),
            aspect_ratio: request.aspect_ratio,
            guidance_scale: request.guidance_scale,
            num_inference_steps: request.num_inference_steps,
        });
        self.inner.generate(request, sink, cancel)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_maps_its_stored_job_to_its_generation_request() {
    use longcat_core::{App, AspectRatio};
    let env = env("apps").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pool = WorkerPool::spawn(
        1,
        env.store.clone(),
        env.storage.clone(),
        Arc::new(Recording {
            inner: Gradient {
                steps: 1,
                step_delay: Duration::ZERO,
            },
            seen: seen.clone(),
        }),
        config(&env),
    );
    for app in App::ALL {
        // A text-to-video job carries no image: an undecodable `image_url` in its stored
        // input is not its field, so nothing is fetched and the job completes.
        let input = if app.takes_image() {
            json!({"image_url": png_data_uri(), "num_frames": 17, "prompt": "p",
                   "enable_prompt_expansion": true, "enable_safety_checker": false})
        } else {
            json!({"prompt": "p", "num_frames": 17, "aspect_ratio": "1:1",
                   "image_url": "data:image/png;base64,AAAA",
                   "enable_prompt_expansion": true, "enable_safety_checker": false})
        };
        let id = submit_to(&env.store, app.id(), input, None).await;
        pool.notify();
        let job = wait_for(&env.store, &id, terminal).await;
        assert_eq!(job.status, JobStatus::Completed, "{app}: {:?}", job.error);
        let logs = env.store.logs(&id, None).await.unwrap();
        let fetched = logs
            .iter()
            .any(|l| l.message.contains("fetching the input image"));
        assert_eq!(fetched, app.takes_image(), "{app}");
        // Expansion without an endpoint keeps the prompt, image or not.
        assert!(
            logs.iter()
                .any(|l| l.message.contains("prompt expansion was asked for")),
            "{app}"
        );
        let last = seen.lock().unwrap().last().cloned().unwrap();
        let want = Seen {
            prompt: last.prompt.clone(),
            app,
            image: app.takes_image().then_some((16, 12)),
            aspect_ratio: if app.takes_image() {
                AspectRatio::Landscape
            } else {
                AspectRatio::Square
            },
            guidance_scale: if app.distilled { 1.0 } else { 4.0 },
            num_inference_steps: if app.distilled { 12 } else { 40 },
        };
        assert_eq!(last, want, "{app}");
    }
    pool.shutdown().await;
}
