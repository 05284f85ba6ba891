//! Test harness: a real server on 127.0.0.1 (random port) over a temp SQLite store and storage
//! directory, with in-process workers running a test-double generator.

#![allow(dead_code)]

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::future::BoxFuture;
use longcat_server::{ApiKey, ServerConfig, ServerHandle, WorkerContext, Workers};
use serde_json::Value;
use tokio::sync::Notify;

/// The key the test servers accept.
pub const KEY: &str = "test-key-123";
/// A second tenant's key (id `other`).
pub const KEY2: &str = "test-key-456";
/// An admin key (id `ops`): sees every key's jobs.
pub const ADMIN_KEY: &str = "test-admin-789";
/// The endpoint.
pub const EP: &str = "fal-ai/longcat-video/image-to-video/720p";
/// The JS client's proxy route.
pub const PROXY: &str = "/api/fal/proxy";

/// `send().await` that fails the test on a transport error (HTTP errors are the test's to check).
pub trait Go {
    fn go(self) -> impl std::future::Future<Output = reqwest::Response> + Send;
}

impl Go for reqwest::RequestBuilder {
    async fn go(self) -> reqwest::Response {
        self.send().await.expect("request sent")
    }
}

/// Test double for the in-process workers (the real ones are `longcat_worker::WorkerPool`):
/// claims jobs from the real store, writes a fake video to the real storage and completes
/// with the endpoint output. Prompt `slow` runs for 5 s, checking the cancel flag; an
/// `image_url` of `data:image/png;base64,AAAA` fails as fal's 422 on `image_url`.
pub struct FakeWorkers {
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Workers for FakeWorkers {
    fn notify(&self) {
        self.notify.notify_one();
    }
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.task.abort();
        Box::pin(async {})
    }
}

fn spawn_fake(ctx: WorkerContext) -> Box<dyn Workers> {
    let notify = Arc::new(Notify::new());
    let wake = notify.clone();
    let task = tokio::spawn(async move {
        loop {
            match ctx
                .store
                .claim_next("fake-worker", Duration::from_secs(10))
                .await
            {
                Ok(Some(job)) => run_fake_job(&ctx, job).await,
                _ => {
                    let _ = tokio::time::timeout(Duration::from_millis(50), wake.notified()).await;
                }
            }
        }
    });
    Box::new(FakeWorkers { notify, task })
}

async fn run_fake_job(ctx: &WorkerContext, job: longcat_store::Job) {
    let store = &ctx.store;
    // The job's app comes from its `endpoint` column, as in the real worker.
    let app = longcat_api::App::from_id(&job.endpoint).expect("stored endpoint is an app");
    let input = longcat_api::parse_value_for(app, &job.input).expect("stored input");
    store
        .append_log(&job.id, "INFO", "fake worker started")
        .await
        .unwrap();
    if input.image_url == "data:image/png;base64,AAAA" {
        let detail = serde_json::json!([{"loc": ["body", "image_url"], "msg": "image could not be decoded", "type": "image_load_error"}]);
        let mut err = longcat_store::JobError::new("validation", "image could not be decoded");
        err.detail = Some(detail);
        store.fail(&job.id, "fake-worker", err).await.unwrap();
        return;
    }
    if input.prompt == "slow" {
        for i in 0..50 {
            if store.cancel_requested(&job.id).await.unwrap() {
                store.mark_cancelled(&job.id, "fake-worker").await.unwrap();
                return;
            }
            store
                .append_log(&job.id, "INFO", &format!("step {i}/50"))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    store
        .append_log(&job.id, "INFO", "fake worker done")
        .await
        .unwrap();
    let bytes = format!(
        "fake mp4 for {} ({} frames at {} fps, {})",
        job.id,
        input.num_frames,
        input.fps,
        input.app.id()
    )
    .into_bytes();
    let size = bytes.len() as u64;
    let seed = input.resolve_seed();
    let url = if input.sync_mode {
        use base64::Engine as _;
        format!(
            "data:video/mp4;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        )
    } else {
        let key = format!("outputs/{}/output.mp4", job.id);
        ctx.storage
            .put_bytes(&key, bytes.into(), "video/mp4")
            .await
            .unwrap()
            .url
    };
    let output = longcat_api::I2vOutput {
        video: longcat_api::File {
            url,
            content_type: "video/mp4".into(),
            file_name: "output.mp4".into(),
            file_size: size,
        },
        seed,
        prompt: input.prompt.clone(),
    };
    store
        .complete(
            &job.id,
            "fake-worker",
            serde_json::to_value(output).unwrap(),
        )
        .await
        .unwrap();
}

/// Server options for a test.
pub struct Opts {
    pub keys: bool,
    pub workers: usize,
    pub max_queue_depth: u64,
    pub retention: Option<Duration>,
    /// Adjusts the configuration before the server starts.
    pub configure: Option<fn(&mut ServerConfig)>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            keys: true,
            workers: 1,
            max_queue_depth: 0,
            retention: None,
            configure: None,
        }
    }
}

/// A running test server and its temp dir.
pub struct TestServer {
    pub handle: ServerHandle,
    pub base: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(opts: Opts) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServerConfig {
            port: 0,
            database_url: format!("sqlite://{}", dir.path().join("jobs.db").display()),
            storage: dir.path().join("files").display().to_string(),
            spawn_workers: if opts.workers > 0 {
                Some(Arc::new(spawn_fake))
            } else {
                None
            },
            api_keys: if opts.keys {
                let mut other = ApiKey::from_plain(KEY2);
                other.id = "other".into();
                let mut admin = ApiKey::from_plain(ADMIN_KEY).into_admin();
                admin.id = "ops".into();
                vec![ApiKey::from_plain(KEY), other, admin]
            } else {
                vec![]
            },
            recover_interval: Duration::from_millis(100),
            allow_private_image_urls: true,
            allow_private_webhooks: true,
            max_queue_depth: opts.max_queue_depth,
            retention: opts.retention,
            lifecycle_interval: Duration::from_millis(200),
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_millis(50),
            ..ServerConfig::default()
        };
        if let Some(configure) = opts.configure {
            configure(&mut config);
        }
        let handle = longcat_server::run(config).await.expect("server starts");
        let base = handle.base_url().to_owned();
        Self {
            handle,
            base,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .header("authorization", format!("Key {KEY}"))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("authorization", format!("Key {KEY}"))
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .put(self.url(path))
            .header("authorization", format!("Key {KEY}"))
    }

    /// Queue submit; returns the submit body.
    pub async fn submit(&self, input: &Value) -> Value {
        let resp = self
            .post(&format!("/queue/{EP}"))
            .json(input)
            .send()
            .await
            .expect("submit");
        assert_eq!(resp.status(), 200, "submit failed: {:?}", resp.text().await);
        resp.json().await.expect("json")
    }

    /// Uploads `body` as a text file through the JS client's flow (initiate, then PUT), with
    /// an optional extra header on the initiate call; returns the file URL.
    pub async fn upload_text(
        &self,
        file_name: &str,
        body: &'static str,
        header: Option<(&str, &str)>,
    ) -> String {
        let mut initiate = self
            .post("/storage/upload/initiate?storage_type=fal-cdn-v3")
            .json(&serde_json::json!({"content_type": "text/plain", "file_name": file_name}));
        if let Some((name, value)) = header {
            initiate = initiate.header(name, value);
        }
        let init: Value = initiate.go().await.json().await.expect("initiate json");
        let put = self
            .client
            .put(init["upload_url"].as_str().expect("upload_url"))
            .body(body)
            .go()
            .await;
        assert!(put.status().is_success(), "upload PUT: {}", put.status());
        init["file_url"].as_str().expect("file_url").to_string()
    }

    /// Polls a status URL until COMPLETED.
    pub async fn wait_completed(&self, status_url: &str) -> Value {
        self.wait_status_at(&format!("{status_url}?logs=1"), "COMPLETED")
            .await
    }

    /// Polls request `id`'s queue status until it is `want`; returns that status body.
    pub async fn wait_status(&self, id: &str, want: &str) -> Value {
        let url = self.url(&format!("/queue/fal-ai/longcat-video/requests/{id}/status"));
        self.wait_status_at(&url, want).await
    }

    async fn wait_status_at(&self, url: &str, want: &str) -> Value {
        let start = Instant::now();
        loop {
            let resp = self
                .client
                .get(url)
                .header("authorization", format!("Key {KEY}"))
                .go()
                .await;
            let body: Value = resp.json().await.expect("json");
            if body["status"] == want {
                return body;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "status never became {want}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

/// A 16x16 PNG as a data URI.
pub fn png_data_uri() -> String {
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, 128])
    });
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("png");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A small valid input.
pub fn input() -> Value {
    serde_json::json!({ "image_url": png_data_uri(), "num_frames": 17, "prompt": "a test", "seed": 7 })
}
