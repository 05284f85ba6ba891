//! fal-style webhooks: the payload, its signatures, and delivery with retries.
//!
//! Body (fal-protocol §5.8): `{"request_id", "gateway_request_id", "status": "OK"|"ERROR",
//! "payload", ["error"], ["payload_error"]}`.
//!
//! Signatures (see `docs/worker.md` for verification recipes):
//! * always, when a shared secret is configured: `X-Longcat-Signature: t=<unix>,v1=<hex>` with
//!   `hex(HMAC-SHA256(secret, "<unix>." + body))`;
//! * when an Ed25519 key is configured, fal's scheme: `X-Fal-Webhook-Request-Id`,
//!   `X-Fal-Webhook-User-Id`, `X-Fal-Webhook-Timestamp` and `X-Fal-Webhook-Signature` =
//!   `hex(Ed25519(request_id + "\n" + user_id + "\n" + timestamp + "\n" + hex(sha256(body))))`,
//!   public key published as a JWKS ([`WebhookKey::jwks`]).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::{Signer, Verifier};
use hmac::{Hmac, Mac};
use longcat_media::input::AddressPolicy;
use longcat_store::WebhookNext;
use serde::Serialize;
use sha2::{Digest, Sha256};
use url::Url;

/// Header carrying the HMAC signature.
pub const SIGNATURE_HEADER: &str = "X-Longcat-Signature";
/// fal's request id header.
pub const FAL_REQUEST_ID_HEADER: &str = "X-Fal-Webhook-Request-Id";
/// fal's user id header.
pub const FAL_USER_ID_HEADER: &str = "X-Fal-Webhook-User-Id";
/// fal's timestamp header (unix seconds).
pub const FAL_TIMESTAMP_HEADER: &str = "X-Fal-Webhook-Timestamp";
/// fal's Ed25519 signature header (hex).
pub const FAL_SIGNATURE_HEADER: &str = "X-Fal-Webhook-Signature";

/// Errors of webhook configuration and URL checks.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The webhook URL is not acceptable.
    #[error("invalid webhook url: {0}")]
    InvalidUrl(String),
    /// The signing key could not be read, parsed or written.
    #[error("webhook signing key: {0}")]
    Key(String),
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// An Ed25519 key signing webhooks the way fal does.
#[derive(Clone)]
pub struct WebhookKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookKey({})", self.key_id())
    }
}

impl WebhookKey {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// A key from its seed as 64 hex digits.
    pub fn from_hex(seed_hex: &str) -> Result<Self, WebhookError> {
        let bytes = hex::decode(seed_hex.trim()).map_err(|e| WebhookError::Key(e.to_string()))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| WebhookError::Key("the seed must be 32 bytes (64 hex digits)".into()))?;
        Ok(Self::from_seed(seed))
    }

    /// Reads the hex seed at `path`, or creates the file (mode 0600) with a new key.
    pub fn load_or_create(path: &Path) -> Result<Self, WebhookError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| WebhookError::Key(e.to_string()))?;
                }
                match publish_private(path, &hex::encode(key.0.to_bytes())) {
                    Ok(()) => Ok(key),
                    // Another process or thread created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(path)
                            .map_err(|e| WebhookError::Key(format!("{}: {e}", path.display())))?;
                        Self::from_hex(&text)
                    }
                    Err(e) => Err(WebhookError::Key(format!("{}: {e}", path.display()))),
                }
            }
            Err(e) => Err(WebhookError::Key(format!("{}: {e}", path.display()))),
        }
    }

    /// The public key (32 bytes).
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Key id: the first 16 hex digits of sha256(public key).
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.public_key())[..8])
    }

    /// The JWKS document publishing the public key (`keys[].x` is base64url, as fal's).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": self.key_id(),
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.public_key()),
        }]})
    }

    /// fal's signature (hex) over `request_id`, `user_id`, `timestamp` and the body.
    pub fn sign(&self, request_id: &str, user_id: &str, timestamp: u64, body: &[u8]) -> String {
        let message = fal_signed_message(request_id, user_id, timestamp, body);
        hex::encode(self.0.sign(&message).to_bytes())
    }
}

/// The JWKS document for `key` (serve it at `/.well-known/jwks.json`).
pub fn jwks(key: &WebhookKey) -> serde_json::Value {
    key.jwks()
}

/// Writes `text` to a private temporary file beside `path`, then links it to `path` in one
/// step, so a concurrent reader never sees a partly written key; `AlreadyExists` when `path`
/// already exists.
fn publish_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".{}-{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let tmp = std::path::PathBuf::from(tmp);
    let linked = write_private(&tmp, text).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

fn fal_signed_message(request_id: &str, user_id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    format!(
        "{request_id}\n{user_id}\n{timestamp}\n{}",
        hex::encode(Sha256::digest(body))
    )
    .into_bytes()
}

/// Checks a fal-style Ed25519 webhook signature (for receivers and tests).
pub fn verify_fal_signature(
    public_key: &[u8; 32],
    request_id: &str,
    user_id: &str,
    timestamp: u64,
    body: &[u8],
    signature_hex: &str,
) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(sig.as_slice()) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    let message = fal_signed_message(request_id, user_id, timestamp, body);
    key.verify(&message, &sig).is_ok()
}

/// `hex(HMAC-SHA256(secret, "<timestamp>." + body))`.
pub fn hmac_signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks an `X-Longcat-Signature` header value against `body`, refusing timestamps more
/// than `tolerance` away from `now` (unix seconds). Constant-time comparison.
pub fn verify_hmac_header(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<u64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_string()),
            _ => {}
        }
    }
    let Some(ts) = timestamp else {
        return false;
    };
    if now.abs_diff(ts) > tolerance.as_secs() {
        return false;
    }
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    signatures.iter().any(|s| {
        hex::decode(s)
            .map(|bytes| mac.clone().verify_slice(&bytes).is_ok())
            .unwrap_or(false)
    })
}

/// How the request ended, as the webhook reports it.
#[derive(Debug, Clone)]
pub enum WebhookOutcome {
    /// Success: the endpoint output.
    Ok(serde_json::Value),
    /// Failure: `error` like `"Invalid status code: 422"`, `payload` the error body.
    Error {
        /// Short error line.
        error: String,
        /// The error body (e.g. `{"detail": [...]}`), when there is one.
        payload: Option<serde_json::Value>,
    },
}

#[derive(Serialize)]
struct Body<'a> {
    request_id: &'a str,
    gateway_request_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    payload: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_error: Option<String>,
}

/// The webhook body for `request_id` (fal-protocol §5.8).
pub fn webhook_body(request_id: &str, outcome: &WebhookOutcome) -> Vec<u8> {
    let (status, error, payload) = match outcome {
        WebhookOutcome::Ok(p) => ("OK", None, Some(p)),
        WebhookOutcome::Error { error, payload } => {
            ("ERROR", Some(error.as_str()), payload.as_ref())
        }
    };
    let body = Body {
        request_id,
        gateway_request_id: request_id,
        status,
        error,
        payload,
        payload_error: None,
    };
    serde_json::to_vec(&body).unwrap_or_else(|e| {
        let fallback = Body {
            payload: None,
            payload_error: Some(format!("payload could not be serialized: {e}")),
            ..body
        };
        serde_json::to_vec(&fallback).unwrap_or_default()
    })
}

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Shared secret for `X-Longcat-Signature` (none: header not sent).
    pub hmac_secret: Option<String>,
    /// Ed25519 key for fal's signature headers (none: not sent).
    pub signing_key: Option<WebhookKey>,
    /// Value of `X-Fal-Webhook-User-Id` (the job's key id when it has one).
    pub default_user_id: String,
    /// Most delivery attempts (fal: 10).
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubles each time.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Per-attempt timeout (fal: 15 s).
    pub timeout: Duration,
    /// Non-public address ranges webhooks may be sent to anyway (none by default).
    pub policy: AddressPolicy,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            hmac_secret: None,
            signing_key: None,
            default_user_id: "longcat".into(),
            max_attempts: 10,
            initial_backoff: Duration::from_secs(15),
            max_backoff: Duration::from_secs(30 * 60),
            timeout: Duration::from_secs(15),
            policy: AddressPolicy::default(),
        }
    }
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// 1-based attempt number.
    pub attempt: u32,
    /// HTTP status, when a response came.
    pub status_code: Option<u16>,
    /// What went wrong, when it did.
    pub error: Option<String>,
}

/// The future an [`AttemptRecorder`] returns.
pub type RecordFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// Where attempts are recorded (the job store in production).
pub trait AttemptRecorder: Send + Sync {
    /// Records one attempt for `request_id`.
    fn record<'a>(&'a self, request_id: &'a str, attempt: &'a DeliveryAttempt) -> RecordFuture<'a>;
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Whether a 2xx answer came.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
}

/// Checks a webhook URL without DNS: absolute http(s), no credentials, and a literal IP host
/// must pass `policy`. (Host names are checked after resolution, at delivery.)
pub fn validate_webhook_url(url: &str, policy: &AddressPolicy) -> Result<Url, WebhookError> {
    let parsed = Url::parse(url.trim()).map_err(|e| WebhookError::InvalidUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookError::InvalidUrl(format!(
            "scheme '{}' is not allowed (use http or https)",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(WebhookError::InvalidUrl(
            "credentials in the URL are not allowed".into(),
        ));
    }
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(WebhookError::InvalidUrl("the host is missing".into())),
    };
    if let Some(ip) = ip {
        policy.check(ip).map_err(|reason| {
            WebhookError::InvalidUrl(format!("{ip} is a {reason} address, which is not allowed"))
        })?;
    }
    Ok(parsed)
}

/// What replaces every query value in a redacted webhook URL.
pub const REDACTED: &str = "REDACTED";

/// `url` as logs and stored attempts show it: scheme, host, port and path kept, every query
/// value replaced by [`REDACTED`] (a bare `?token` segment, which may itself be the secret,
/// entirely), the fragment dropped. Webhook query strings often carry secrets.
pub fn redact_url(url: &Url) -> Url {
    let mut out = url.clone();
    out.set_fragment(None);
    if let Some(query) = url.query() {
        let redacted: Vec<String> = query
            .split('&')
            .filter(|seg| !seg.is_empty())
            .map(|seg| match seg.split_once('=') {
                Some((name, _)) => format!("{name}={REDACTED}"),
                None => REDACTED.to_string(),
            })
            .collect();
        out.set_query(Some(&redacted.join("&")));
    }
    out
}

/// `text` with `url` replaced by its redacted form wherever it appears.
fn redact_text(text: &str, url: &Url) -> String {
    text.replace(url.as_str(), redact_url(url).as_str())
}

/// Resolves host names and refuses any that resolve to a blocked address.
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("webhook host '{host}' has no addresses").into());
            }
            for a in &addrs {
                if let Err(reason) = policy.check(a.ip()) {
                    return Err(format!(
                        "webhook host '{host}' resolves to {}, a {reason} address, which is not allowed",
                        a.ip()
                    )
                    .into());
                }
            }
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

/// Sends webhooks. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    config: Arc<WebhookConfig>,
}

impl WebhookSender {
    /// A sender with `config`.
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: Arc::new(config.policy.clone()),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("longcat-video-server/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            config: Arc::new(config),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// The signature headers for one attempt.
    pub fn signature_headers(
        &self,
        request_id: &str,
        user_id: Option<&str>,
        timestamp: u64,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (FAL_REQUEST_ID_HEADER, request_id.to_string()),
            (FAL_TIMESTAMP_HEADER, timestamp.to_string()),
        ];
        let user_id = user_id.unwrap_or(&self.config.default_user_id);
        if let Some(key) = &self.config.signing_key {
            headers.push((FAL_USER_ID_HEADER, user_id.to_string()));
            headers.push((
                FAL_SIGNATURE_HEADER,
                key.sign(request_id, user_id, timestamp, body),
            ));
        }
        if let Some(secret) = &self.config.hmac_secret {
            let sig = hmac_signature(secret.as_bytes(), timestamp, body);
            headers.push((SIGNATURE_HEADER, format!("t={timestamp},v1={sig}")));
        }
        headers
    }

    /// Makes attempt `n` (1-based) of posting `body` to `url`, and says what follows it:
    /// delivered on a 2xx answer; given up when the URL is refused or this was the last
    /// allowed attempt; otherwise a retry after exponential backoff.
    pub async fn attempt(
        &self,
        url: &str,
        request_id: &str,
        user_id: Option<&str>,
        body: &[u8],
        n: u32,
    ) -> (DeliveryAttempt, WebhookNext) {
        let target = match validate_webhook_url(url, &self.config.policy) {
            Ok(u) => u,
            Err(e) => {
                let attempt = DeliveryAttempt {
                    attempt: n,
                    status_code: None,
                    error: Some(e.to_string()),
                };
                return (attempt, WebhookNext::GiveUp);
            }
        };
        let attempt = self
            .attempt_once(&target, request_id, user_id, body, n)
            .await;
        let next = if attempt.error.is_none() {
            tracing::info!(request_id, attempt = n, "webhook delivered");
            WebhookNext::Delivered
        } else {
            tracing::warn!(request_id, attempt = n, error = ?attempt.error, "webhook attempt failed");
            if n >= self.config.max_attempts.max(1) {
                WebhookNext::GiveUp
            } else {
                WebhookNext::RetryAfter(backoff(&self.config, n))
            }
        };
        (attempt, next)
    }

    /// Posts `body` to `url` until a 2xx answer, at most `max_attempts` times with exponential
    /// backoff, recording every attempt. Stops early (between attempts) when `stop` turns true.
    /// (The worker pool delivers through the job store's outbox instead, one
    /// [`WebhookSender::attempt`] at a time, so that retries survive restarts.)
    pub async fn deliver(
        &self,
        url: &str,
        request_id: &str,
        user_id: Option<&str>,
        body: &[u8],
        recorder: &dyn AttemptRecorder,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> DeliveryReport {
        let mut n = 1;
        loop {
            let (attempt, next) = self.attempt(url, request_id, user_id, body, n).await;
            recorder.record(request_id, &attempt).await;
            let wait = match next {
                WebhookNext::Delivered | WebhookNext::GiveUp => {
                    return DeliveryReport {
                        delivered: next == WebhookNext::Delivered,
                        attempts: n,
                    }
                }
                WebhookNext::RetryAfter(wait) => wait,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => {
                    tracing::warn!(request_id, attempts = n, "webhook delivery abandoned at shutdown");
                    return DeliveryReport { delivered: false, attempts: n };
                }
            }
            n += 1;
        }
    }

    async fn attempt_once(
        &self,
        target: &Url,
        request_id: &str,
        user_id: Option<&str>,
        body: &[u8],
        n: u32,
    ) -> DeliveryAttempt {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut req = self
            .client
            .post(target.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (name, value) in self.signature_headers(request_id, user_id, timestamp, body) {
            req = req.header(name, value);
        }
        match req.send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                let error =
                    (!resp.status().is_success()).then(|| format!("receiver answered HTTP {code}"));
                DeliveryAttempt {
                    attempt: n,
                    status_code: Some(code),
                    error,
                }
            }
            Err(mut e) => {
                // reqwest prints the URL in its errors: the query string must not reach the
                // log or the stored attempt.
                if let Some(u) = e.url_mut() {
                    *u = redact_url(u);
                }
                DeliveryAttempt {
                    attempt: n,
                    status_code: None,
                    error: Some(redact_text(&error_chain(&e), target)),
                }
            }
        }
    }
}

/// Wait after failed attempt `n` (1-based): `initial · 2^(n-1)`, capped, ±20 % jitter.
fn backoff(config: &WebhookConfig, n: u32) -> Duration {
    let base = config
        .initial_backoff
        .saturating_mul(1u32 << (n - 1).min(20))
        .min(config.max_backoff);
    let jitter = 0.8 + 0.4 * rand::random::<f64>();
    base.mul_f64(jitter)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
