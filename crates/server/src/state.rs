//! Shared state of the HTTP handlers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::HeaderMap;
use longcat_storage::Storage;
use longcat_store::JobStore;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Auth;

/// An upload the client was given a URL for and has not finished.
#[derive(Debug, Clone)]
pub struct PendingUpload {
    /// Storage key the bytes go to.
    pub key: String,
    /// MIME type to store.
    pub content_type: String,
    /// When the upload URL stops working.
    pub expires: Instant,
}

/// Everything the handlers share.
pub struct AppState {
    /// Job store.
    pub store: JobStore,
    /// File storage.
    pub storage: Storage,
    /// API keys and upload tokens.
    pub auth: Auth,
    /// In-process workers (taken at shutdown).
    pub workers: Mutex<Option<Box<dyn crate::workers::Workers>>>,
    /// Configured public base URL (else derived from `Host`).
    pub public_url: Option<String>,
    /// Base URL the server was bound to (`http://ip:port`).
    pub bound_url: String,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
    /// Upload URLs handed out, by token.
    pub uploads: Mutex<HashMap<String, PendingUpload>>,
    /// 429 threshold (0 = none).
    pub max_queue_depth: u64,
    /// Claims per job.
    pub max_attempts: u32,
    /// Webhook signing keys as a JWKS document.
    pub jwks: serde_json::Value,
    /// Accept webhook targets on private/loopback addresses (tests, trusted networks).
    pub allow_private_webhooks: bool,
    /// The periodic tasks: recovery, and retention when configured (aborted at shutdown).
    pub background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Model name for `/health`.
    pub model: Option<longcat_pipeline::ModelInfo>,
}

impl AppState {
    /// Wakes idle workers after a submit.
    pub fn notify_workers(&self) {
        if let Ok(guard) = self.workers.lock() {
            if let Some(pool) = guard.as_ref() {
                pool.notify();
            }
        }
    }

    /// The externally visible base URL for this request: the configured one, else
    /// `{X-Forwarded-Proto or http}://{X-Forwarded-Host or Host}`, else the bound address.
    pub fn public_base(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(',').next().unwrap_or("").trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let host = header("x-forwarded-host").or_else(|| header("host"));
        match host {
            Some(host) if host.bytes().all(|b| b.is_ascii_graphic()) && !host.contains('/') => {
                let scheme = header("x-forwarded-proto")
                    .filter(|s| s == "https" || s == "http")
                    .unwrap_or_else(|| "http".to_owned());
                format!("{scheme}://{host}")
            }
            _ => self.bound_url.clone(),
        }
    }

    /// The queue base URL (`{public}/queue`) for this request.
    pub fn queue_base(&self, headers: &HeaderMap) -> String {
        format!("{}/queue", self.public_base(headers))
    }
}
