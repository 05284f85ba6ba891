//! Shared state of the HTTP handlers.

use std::sync::Mutex;

use axum::http::{HeaderMap, StatusCode};
use longcat_storage::Storage;
use longcat_store::JobStore;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Auth;
use crate::error::ApiError;

/// The host part of `host[:port]` (IPv6 literals keep their brackets).
fn split_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
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
    /// Read `X-Forwarded-Host` / `X-Forwarded-Proto` (behind a trusted proxy only).
    pub trust_forwarded_headers: bool,
    /// Hosts accepted for derived URLs besides loopback and the bound address, lowercase.
    pub allowed_hosts: Vec<String>,
    /// How long a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// Slots for reading large bodies ([`crate::config::LARGE_BODY_BYTES`]).
    pub large_bodies: std::sync::Arc<tokio::sync::Semaphore>,
    /// Base URL the server was bound to (`http://ip:port`).
    pub bound_url: String,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
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
    pub model: Option<longcat_core::ModelInfo>,
    /// Price of each app (submit estimates, `/usage`).
    pub prices: longcat_api::PriceTable,
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
    /// `http://{Host}` (`{X-Forwarded-Proto}://{X-Forwarded-Host}` when forwarded headers are
    /// trusted) when that host is allowed ([`AppState::host_allowed`]), else a 421; the
    /// bound address when the request names no host.
    pub fn public_base(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        if let Some(url) = &self.public_url {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(',').next().unwrap_or("").trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let forwarded = |name: &str| {
            if self.trust_forwarded_headers {
                header(name)
            } else {
                None
            }
        };
        let Some(host) = forwarded("x-forwarded-host").or_else(|| header("host")) else {
            return Ok(self.bound_url.clone());
        };
        if !self.host_allowed(&host) {
            return Err(ApiError::Plain(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host '{}' is not served here: start the server with --public-url, or list \
                     the host in --allowed-hosts",
                    host.escape_debug()
                ),
            ));
        }
        let scheme = forwarded("x-forwarded-proto")
            .filter(|s| s == "https" || s == "http")
            .unwrap_or_else(|| "http".to_owned());
        Ok(format!("{scheme}://{host}"))
    }

    /// Whether URLs may be built on `host` (`name[:port]`): a loopback name (`localhost`,
    /// `*.localhost`) or address, the bound address, or an `allowed_hosts` entry (`name` for
    /// any port, or `name:port`).
    pub fn host_allowed(&self, host: &str) -> bool {
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) || host.contains('/') {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let name = split_port(&host);
        // RFC 6761: `localhost` and its subdomains (e.g. `queue.localhost`) are loopback.
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        let ip = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>();
        if let Ok(ip) = ip {
            if ip.is_loopback() {
                return true;
            }
            let bound = self.bound_url.trim_start_matches("http://");
            if !ip.is_unspecified() && host == bound {
                return true;
            }
        }
        self.allowed_hosts
            .iter()
            .any(|entry| *entry == host || *entry == name)
    }

    /// The queue base URL (`{public}/queue`) for this request.
    pub fn queue_base(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        Ok(format!("{}/queue", self.public_base(headers)?))
    }
}
