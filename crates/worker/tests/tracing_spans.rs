//! The request id in the process logs: a job run through the real worker pool on the
//! built-in tiny pipeline, with a JSON subscriber capturing every line. Lines emitted on the
//! model thread (pipeline stages, encoder) carry the job's `request_id` from the `job` span.
//! A test binary of its own: it installs the process-wide subscriber (the model thread is
//! not the test's thread, so a thread-local default would not see its lines).

mod common;

use std::time::Duration;

use base64::Engine as _;
use longcat_store::{JobStatus, NewJob};
use longcat_worker::testing::LogBuffer;
use longcat_worker::{WorkerConfig, WorkerPool};
use serde_json::{json, Value};

fn png_data_uri() -> String {
    let img = image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([x as u8 * 16, y as u8 * 20, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    )
}

/// The `request_id` of the outermost span of a JSON log line that has one.
fn request_id(line: &Value) -> Option<&str> {
    line["spans"]
        .as_array()?
        .iter()
        .find_map(|s| s["request_id"].as_str())
}

fn span_names(line: &Value) -> Vec<&str> {
    line["spans"]
        .as_array()
        .map(|spans| spans.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_thread_log_lines_carry_the_request_id() {
    let logs = LogBuffer::default();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_thread_names(true)
        .with_env_filter("debug,sqlx=warn,hyper=warn,reqwest=warn")
        .with_writer(logs.clone())
        .init();

    let scratch = common::scratch("tracing", "http://x.invalid").await;
    let store = scratch.store.clone();
    let mut config = WorkerConfig {
        poll_interval: Duration::from_millis(100),
        public_base_url: "http://x.invalid".into(),
        ..Default::default()
    };
    config.encoder.work_dir = scratch.dir.clone();
    let generator =
        longcat_pipeline::generator::load_generator(&Default::default()).expect("tiny model");
    let pool = WorkerPool::spawn(1, store.clone(), scratch.storage.clone(), generator, config);

    let id = format!("job-{}", rand::random::<u32>());
    let input = json!({"image_url": png_data_uri(), "num_frames": 17, "guidance_scale": 1.0,
                       "num_inference_steps": 8, "num_refine_inference_steps": 8});
    store
        .submit(NewJob {
            id: id.clone(),
            endpoint: longcat_api::ENDPOINT_ID.into(),
            input,
            key_id: None,
            webhook_url: None,
            billable_seconds: 1.0,
            estimated_cost_usd: 0.025,
            max_attempts: 1,
        })
        .await
        .unwrap();
    pool.notify();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let job = store.get(&id).await.unwrap().unwrap();
        if job.status.is_terminal() {
            assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "job stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.shutdown().await;
    drop(scratch);

    let text = logs.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let on_model_thread: Vec<&Value> = lines
        .iter()
        .filter(|l| l["threadName"] == "model")
        .collect();
    assert!(
        !on_model_thread.is_empty(),
        "no line from the model thread:\n{text}"
    );
    for line in &on_model_thread {
        assert_eq!(request_id(line), Some(id.as_str()), "{line}");
    }
    // Each pipeline stage and the encoder logged inside its own span, under the job span.
    for stage in [
        "text_encode",
        "denoise",
        "refine",
        "vae_decode",
        "video_encode",
    ] {
        assert!(
            on_model_thread
                .iter()
                .any(|l| span_names(l) == ["job", stage]),
            "no line in the {stage} span:\n{text}"
        );
    }
    let job_span = on_model_thread[0]["spans"][0].clone();
    assert_eq!(job_span["attempt"], 1, "{job_span}");
    assert!(job_span["worker"].as_str().is_some(), "{job_span}");
    // The async side of the job (claim, fetch, upload, completion) is in the span too.
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "job finished"
                && request_id(l) == Some(id.as_str())),
        "{text}"
    );
}
