//! The safety checker in the worker pool, end to end on SQLite + local storage with the real
//! NudeNet model and a policy flagging a benign label (`FACE_FEMALE`), so that scikit-image's
//! astronaut portrait is "flagged" content: a flagged input fails before the generator runs,
//! a flagged output fails before the video is stored, `enable_safety_checker: false` skips
//! both, and a checker that is on without its model refuses the request. The generator is a
//! test double drawing a chosen picture into every frame (a test helper, not product code).
//!
//! Needs the model (`scripts/fetch-safety-model.sh`) and the test venv's scikit-image
//! (`scripts/install-test-venv.sh`); without them each test prints SKIPPED, unless
//! `LONGCAT_REQUIRE_SAFETY_TESTS=1` (set by `scripts/test.sh`) makes that a failure.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use longcat_core::{
    CancelToken, GenerationError, GenerationRequest, GenerationSink, GenerationSummary, ModelInfo,
    RgbImage, VideoFrame, VideoGenerator,
};
use longcat_safety::test_assets::{assets, load_png, TestAssets};
use longcat_safety::{Label, Policy};
use longcat_store::{Job, JobStatus, NewJob};
use longcat_worker::safety::{SafetySettings, SafetyState};
use longcat_worker::{WorkerConfig, WorkerPool};
use serde_json::{json, Value};

/// Draws `picture` into every frame and counts its calls.
struct Picture {
    picture: RgbImage,
    calls: Arc<AtomicUsize>,
}

impl VideoGenerator for Picture {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "test picture".into(),
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
        self.calls.fetch_add(1, Ordering::SeqCst);
        for i in 0..request.num_frames {
            cancel.check()?;
            sink.frame(VideoFrame::new(i, self.picture.clone()))?;
        }
        Ok(GenerationSummary {
            frames: request.num_frames,
            width: self.picture.width,
            height: self.picture.height,
            seed: request.seed,
        })
    }
}

fn data_uri(path: &Path) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
    )
}

struct Env {
    scratch: common::Scratch,
    pool: WorkerPool,
    calls: Arc<AtomicUsize>,
}

/// A pool whose generator draws `picture`, with the checker in `safety`.
async fn start(tag: &str, picture: RgbImage, safety: SafetyState) -> Env {
    let scratch = common::scratch(&format!("safety-{tag}"), "http://files.invalid:9").await;
    let mut cfg = WorkerConfig {
        poll_interval: Duration::from_millis(100),
        cancel_poll_interval: Duration::from_millis(100),
        public_base_url: "http://files.invalid:9".into(),
        safety,
        ..Default::default()
    };
    cfg.encoder.work_dir = scratch.dir.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let pool = WorkerPool::spawn(
        1,
        scratch.store.clone(),
        scratch.storage.clone(),
        Arc::new(Picture {
            picture,
            calls: calls.clone(),
        }),
        cfg,
    );
    Env {
        scratch,
        pool,
        calls,
    }
}

/// The checker with the real model, flagging `FACE_FEMALE` at 0.5.
fn face_policy(model: &Path) -> SafetyState {
    let state = SafetyState::load(&SafetySettings {
        enabled: true,
        model: model.to_path_buf(),
        policy: Policy::new([Label::FaceFemale], 0.5).unwrap(),
    });
    assert!(matches!(state, SafetyState::Ready(_)), "{state:?}");
    state
}

async fn run(env: &Env, input: Value) -> Job {
    run_app(env, longcat_api::ENDPOINT_ID, input).await
}

/// Runs `input` as a job of app `endpoint`.
async fn run_app(env: &Env, endpoint: &str, input: Value) -> Job {
    let id = format!("job-{}", rand::random::<u32>());
    env.scratch
        .store
        .submit(NewJob {
            id: id.clone(),
            endpoint: endpoint.into(),
            input,
            key_id: None,
            webhook_url: None,
            billable_seconds: 1.0,
            estimated_cost_usd: 0.025,
            max_attempts: 1,
        })
        .await
        .unwrap();
    env.pool.notify();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let job = env.scratch.store.get(&id).await.unwrap().unwrap();
        if matches!(
            job.status,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        ) {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {id} stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Files under the storage directory (outputs are stored there).
fn stored_files(env: &Env) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&env.scratch.dir.join("files"), &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagged_input_fails_before_the_generator_runs() {
    let Some(TestAssets {
        model,
        images: data,
        ..
    }) = assets("safety worker test")
    else {
        return;
    };
    let coffee = load_png(&data.join("coffee.png"));
    let env = start("input", coffee, face_policy(&model)).await;
    let url = data_uri(&data.join("astronaut.png"));
    let job = run(&env, json!({"image_url": url, "num_frames": 17})).await;
    assert_eq!(job.status, JobStatus::Failed);
    let err = job.error.clone().unwrap();
    assert_eq!(err.kind, "content_policy");
    let item = &err.detail.clone().unwrap()[0];
    assert_eq!(item["loc"], json!(["body", "image_url"]));
    assert_eq!(item["type"], "content_policy_violation");
    assert_eq!(item["categories"], json!(["face_female"]));
    assert!(item["input"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert_eq!(env.calls.load(Ordering::SeqCst), 0, "the generator ran");
    assert!(stored_files(&env).is_empty());
    // Not billed.
    assert_eq!(env.scratch.store.usage(None).await.unwrap().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagged_output_fails_and_the_video_is_not_stored() {
    let Some(TestAssets {
        model,
        images: data,
        ..
    }) = assets("safety worker test")
    else {
        return;
    };
    let astronaut = load_png(&data.join("astronaut.png"));
    let env = start("output", astronaut, face_policy(&model)).await;
    let url = data_uri(&data.join("coffee.png"));
    let job = run(&env, json!({"image_url": url, "num_frames": 17, "fps": 8})).await;
    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.result);
    let err = job.error.clone().unwrap();
    assert_eq!(err.kind, "content_policy");
    let item = &err.detail.clone().unwrap()[0];
    assert_eq!(item["loc"], json!(["body", "output"]));
    assert_eq!(item["categories"], json!(["face_female"]));
    // Every 8th frame and the last one (17 frames: 0, 8, 16).
    assert_eq!(item["input"], json!({"frames": [0, 8, 16]}));
    assert_eq!(env.calls.load(Ordering::SeqCst), 1);
    assert!(stored_files(&env).is_empty(), "{:?}", stored_files(&env));
    assert_eq!(env.scratch.store.usage(None).await.unwrap().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_off_skips_both_checks_and_benign_content_passes() {
    let Some(TestAssets {
        model,
        images: data,
        ..
    }) = assets("safety worker test")
    else {
        return;
    };
    let astronaut = load_png(&data.join("astronaut.png"));
    let env = start("off", astronaut, face_policy(&model)).await;
    let url = data_uri(&data.join("astronaut.png"));
    let job = run(
        &env,
        json!({"image_url": url, "num_frames": 17, "enable_safety_checker": false}),
    )
    .await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(stored_files(&env).len(), 1);

    // Checked, nothing flagged: completes.
    let coffee = load_png(&data.join("coffee.png"));
    let passing = start("pass", coffee, face_policy(&model)).await;
    let url = data_uri(&data.join("chelsea.png"));
    let job = run(&passing, json!({"image_url": url, "num_frames": 17})).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_on_without_its_model_refuses_requests_that_ask_for_it() {
    let Some(TestAssets { images: data, .. }) = assets("safety worker test") else {
        return;
    };
    let coffee = load_png(&data.join("coffee.png"));
    let missing = SafetyState::load(&SafetySettings {
        enabled: true,
        model: PathBuf::from("/nonexistent/nudenet-320n.onnx"),
        policy: Policy::default(),
    });
    assert!(matches!(missing, SafetyState::Unavailable(_)));
    let env = start("missing", coffee, missing).await;
    let url = data_uri(&data.join("coffee.png"));
    let job = run(&env, json!({"image_url": url, "num_frames": 17})).await;
    assert_eq!(job.status, JobStatus::Failed);
    let err = job.error.unwrap();
    assert!(err.message.contains("safety checker"), "{}", err.message);
    assert!(
        err.message.contains("/nonexistent/nudenet-320n.onnx"),
        "{}",
        err.message
    );
    assert_eq!(env.calls.load(Ordering::SeqCst), 0);
    // The switch off still runs.
    let job = run(
        &env,
        json!({"image_url": url, "num_frames": 17, "enable_safety_checker": false}),
    )
    .await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_to_video_checks_the_output_frames_only() {
    let Some(TestAssets {
        model,
        images: data,
        ..
    }) = assets("safety worker test")
    else {
        return;
    };
    let t2v = "fal-ai/longcat-video/text-to-video/480p";
    // A flagged output fails as for image-to-video.
    let astronaut = load_png(&data.join("astronaut.png"));
    let env = start("t2v-out", astronaut, face_policy(&model)).await;
    let job = run_app(
        &env,
        t2v,
        json!({"prompt": "p", "num_frames": 17, "fps": 8}),
    )
    .await;
    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.result);
    let err = job.error.clone().unwrap();
    assert_eq!(err.kind, "content_policy");
    assert_eq!(
        err.detail.clone().unwrap()[0]["loc"],
        json!(["body", "output"])
    );
    assert!(stored_files(&env).is_empty());

    // Benign output: completes with no input image to check.
    let coffee = load_png(&data.join("coffee.png"));
    let env = start("t2v-pass", coffee, face_policy(&model)).await;
    let job = run_app(&env, t2v, json!({"prompt": "p", "num_frames": 17})).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let logs = env.scratch.store.logs(&job.id, None).await.unwrap();
    let text: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    assert!(!text.iter().any(|m| m.contains("input image")), "{text:?}");
    assert!(
        text.iter().any(|m| m.contains("output frames passed")),
        "{text:?}"
    );
}
