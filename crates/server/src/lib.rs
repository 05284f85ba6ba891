//! The LongCat HTTP server: fal-compatible routes for
//! `fal-ai/longcat-video/image-to-video/720p` over `longcat-store` (jobs), `longcat-storage`
//! (files) and in-process `longcat-worker` workers.
//!
//! Start it with [`run`]; the returned [`ServerHandle`] has the bound address (port 0 picks a
//! free one) and shuts down cleanly.

pub mod auth;
pub mod body;
pub mod config;
pub mod conn;
pub mod dispatch;
pub mod error;
pub mod fal;
pub mod files;
pub mod lifecycle;
pub mod lifetime;
pub mod meta;
pub mod playground;
pub mod proxy;
pub mod request;
pub mod retention;
pub mod router;
pub mod sse;
pub mod state;
pub mod status;
pub mod uploads;
pub mod webhook_url;
pub mod workers;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use longcat_storage::Storage;
use longcat_store::JobStore;
use longcat_worker::WorkerConfig;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

pub use config::{ApiKey, ConfigError, ServerConfig};
use state::AppState;
pub use workers::{SpawnWorkers, WorkerContext, Workers};

/// `x-fal-request-id`, set on every response.
pub const REQUEST_ID_HEADER: &str = "x-fal-request-id";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The job store could not be opened.
    #[error("job store {url}: {source}")]
    Store {
        /// The database URL.
        url: String,
        /// What failed.
        source: longcat_store::StoreError,
    },
    /// The storage target could not be opened.
    #[error(transparent)]
    Storage(#[from] longcat_storage::StorageError),
    /// Binding the socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The webhook signing key could not be loaded.
    #[error("webhook signing key: {0}")]
    WebhookKey(String),
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    state: Arc<AppState>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port` (or the configured public URL).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops accepting requests, lets in-flight ones finish, stops the workers.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        let pool = self.state.workers.lock().ok().and_then(|mut w| w.take());
        if let Some(pool) = pool {
            pool.shutdown().await;
        }
        let background = match self.state.background.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => Vec::new(),
        };
        for task in background {
            task.abort();
        }
    }

    /// Waits until the server stops (it runs until [`ServerHandle::shutdown`] or an error).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// The process-wide Prometheus recorder (installed once; later servers share it).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// Starts the server: opens the store and storage, binds, spawns the workers and serves.
pub async fn run(config: ServerConfig) -> Result<ServerHandle, StartError> {
    config.check_bind()?;
    let store = JobStore::connect(&config.database_url)
        .await
        .map_err(|source| StartError::Store {
            url: config.database_url.clone(),
            source,
        })?;
    let addr = config.socket_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound_url = format!("http://{addr}");
    let base_url = config
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| bound_url.clone());
    let storage = Storage::from_config(&config.storage, &base_url)?;

    let mut worker_config = WorkerConfig {
        worker_id_prefix: "serve".into(),
        lease: config.lease,
        poll_interval: config.poll_interval,
        allow_private_image_urls: config.allow_private_image_urls,
        public_base_url: base_url.clone(),
        ..WorkerConfig::default()
    };
    worker_config.heartbeat_interval = (config.lease / 4).max(Duration::from_millis(100));
    // The server runs recovery itself (see `spawn_recovery`).
    worker_config.recover_interval = None;
    if let Some(path) = &config.webhook_key_file {
        let key = longcat_worker::webhook::WebhookKey::load_or_create(path)
            .map_err(|e| StartError::WebhookKey(format!("{}: {e}", path.display())))?;
        worker_config.webhook.signing_key = Some(key);
    }
    if config.allow_private_webhooks {
        worker_config.webhook.policy = longcat_worker::settings::private_policy();
    }
    let jwks = match &worker_config.webhook.signing_key {
        Some(key) => key.jwks(),
        None => serde_json::json!({ "keys": [] }),
    };
    let model = config.model.clone();
    let workers = config.spawn_workers.as_ref().map(|spawn| {
        spawn(WorkerContext {
            store: store.clone(),
            storage: storage.clone(),
            config: worker_config,
        })
    });
    let mut background = vec![spawn_recovery(store.clone(), config.recover_interval)];
    background.push(lifecycle::spawn(
        store.clone(),
        storage.clone(),
        config.lifecycle_interval,
    ));
    if let Some(retention) = config.retention {
        tracing::info!(
            ?retention,
            "retention: finished jobs, their outputs and uploads older than this are deleted"
        );
        background.push(retention::spawn(store.clone(), storage.clone(), retention));
    }

    let state = Arc::new(AppState {
        store,
        storage,
        auth: auth::Auth::new(config.api_keys.clone()),
        workers: Mutex::new(workers),
        public_url: config.public_url.clone(),
        trust_forwarded_headers: config.trust_forwarded_headers,
        allowed_hosts: config
            .allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        body_read_timeout: config.body_read_timeout,
        large_bodies: Arc::new(tokio::sync::Semaphore::new(config.max_large_bodies.max(1))),
        bound_url,
        metrics: prometheus(),
        max_queue_depth: config.max_queue_depth,
        max_attempts: config.max_attempts.max(1),
        jwks,
        allow_private_webhooks: config.allow_private_webhooks,
        model,
        max_body_bytes: config.max_body_bytes,
        background: Mutex::new(background),
        prices: config.prices.clone(),
    });

    let app = app(state.clone(), config.max_body_bytes);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(conn::serve(listener, app, config.header_read_timeout, rx));
    if state.auth.enabled() {
        tracing::info!(%addr, keys = config.api_keys.len(), "longcat server listening (API keys required)");
    } else {
        tracing::warn!(%addr, "longcat server listening WITHOUT authentication: no API keys are configured, so only a loopback address may be bound");
    }
    Ok(ServerHandle {
        addr,
        base_url,
        shutdown: Some(tx),
        task,
        state,
    })
}

/// Periodically requeues jobs whose worker lease expired and fails queued jobs whose start
/// deadline passed (also needed when no worker is running).
fn spawn_recovery(store: JobStore, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
        loop {
            tick.tick().await;
            match store.recover_expired().await {
                Ok(report) if !report.is_empty() => {
                    tracing::info!(?report, "recovered expired jobs");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "job recovery failed"),
            }
        }
    })
}

/// The axum application (routes, request ids, CORS, body limit).
pub fn app(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let expose = [
        HeaderName::from_static(REQUEST_ID_HEADER),
        HeaderName::from_static(error::ERROR_TYPE_HEADER),
        HeaderName::from_static(error::TIMEOUT_TYPE_HEADER),
    ];
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods(AllowMethods::list([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
        ]))
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(expose)
        .max_age(Duration::from_secs(600));
    Router::new()
        .fallback(router::entry)
        .with_state(state)
        .layer(middleware::from_fn(request_id))
        .layer(cors)
        .layer(DefaultBodyLimit::max(max_body_bytes))
}

/// Adds `x-fal-request-id` (a fresh UUID unless the handler set one) and counts requests.
async fn request_id(request: Request<axum::body::Body>, next: Next) -> Response {
    let method = request.method().clone();
    let mut resp = next.run(request).await;
    if !resp.headers().contains_key(REQUEST_ID_HEADER) {
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
    }
    metrics::counter!(
        "longcat_http_requests_total",
        "method" => method.to_string(),
        "status" => resp.status().as_u16().to_string()
    )
    .increment(1);
    resp
}
