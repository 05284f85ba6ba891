//! `image_url` → bytes → decoded RGB image: data URIs, our own stored files, and HTTP(S)
//! downloads with the SSRF guard applied on every redirect hop.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::address::AddressPolicy;
use super::data_uri::{is_data_uri, parse_data_uri};
use super::decode::{decode_image, DecodeLimits, DecodedImage};
use super::error::ImageInputError;
use super::http::{build_client, check_literal_host, get_once, Hop};
use super::resolve::{BoxFuture, HostResolver, SystemResolver};

/// Image input settings (operator configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageInputConfig {
    /// TCP/TLS connect timeout per hop, in seconds.
    pub connect_timeout_s: u64,
    /// Limit for the whole fetch (all hops and the body), in seconds.
    pub total_timeout_s: u64,
    /// Largest accepted file, in bytes (downloads, data URIs and local files alike).
    pub max_bytes: u64,
    /// Most redirects followed.
    pub max_redirects: usize,
    /// Non-public address ranges the fetcher may contact anyway (none by default).
    pub policy: AddressPolicy,
    /// `User-Agent` sent on downloads.
    pub user_agent: String,
    /// Decoding limits.
    pub decode: DecodeLimits,
}

impl Default for ImageInputConfig {
    fn default() -> Self {
        Self {
            connect_timeout_s: 10,
            total_timeout_s: 60,
            max_bytes: 50 * 1024 * 1024,
            max_redirects: 5,
            policy: AddressPolicy::default(),
            user_agent: concat!("longcat-video-server/", env!("CARGO_PKG_VERSION")).into(),
            decode: DecodeLimits::default(),
        }
    }
}

/// The server's own stored files: given a URL, say whether it is ours and read it directly.
pub trait LocalFiles: Send + Sync {
    /// `None` if `url` is not one of ours; otherwise a future reading its bytes
    /// (`Err` with a human message when it is ours but unreadable, e.g. expired).
    fn open(&self, url: &Url) -> Option<BoxFuture<Result<Vec<u8>, String>>>;
}

/// Bytes fetched for an `image_url`, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedImage {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Declared content type (HTTP header or data URI media type), if any.
    pub content_type: Option<String>,
}

/// Building the HTTP client failed (TLS backend initialisation).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the image download client: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

/// Loads `image_url` values. Cheap to clone; share one per server.
#[derive(Clone)]
pub struct ImageLoader {
    config: Arc<ImageInputConfig>,
    client: reqwest::Client,
    local: Option<Arc<dyn LocalFiles>>,
}

impl ImageLoader {
    /// A loader using the system DNS resolver.
    pub fn new(config: ImageInputConfig) -> Result<Self, ClientBuildError> {
        Self::with_resolver(config, Arc::new(SystemResolver))
    }

    /// A loader resolving host names with `resolver` (every address still passes the policy).
    pub fn with_resolver(
        config: ImageInputConfig,
        resolver: Arc<dyn HostResolver>,
    ) -> Result<Self, ClientBuildError> {
        let client = build_client(
            resolver,
            Arc::new(config.policy.clone()),
            Duration::from_secs(config.connect_timeout_s),
            &config.user_agent,
        )?;
        Ok(Self {
            config: Arc::new(config),
            client,
            local: None,
        })
    }

    /// Serves URLs of our own stored files through `local` instead of HTTP.
    pub fn with_local_files(mut self, local: Arc<dyn LocalFiles>) -> Self {
        self.local = Some(local);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &ImageInputConfig {
        &self.config
    }

    /// Fetches and decodes `image_url` (decoding runs on a blocking thread).
    pub async fn load(&self, image_url: &str) -> Result<DecodedImage, ImageInputError> {
        let fetched = self.fetch(image_url).await?;
        let limits = self.config.decode.clone();
        tokio::task::spawn_blocking(move || {
            decode_image(&fetched.bytes, &limits, fetched.content_type.as_deref())
        })
        .await
        .map_err(|e| ImageInputError::Corrupt(format!("decoder crashed: {e}")))?
    }

    /// Fetches the bytes of `image_url` without decoding, within the total timeout.
    pub async fn fetch(&self, image_url: &str) -> Result<FetchedImage, ImageInputError> {
        let image_url = image_url.trim();
        if image_url.is_empty() {
            return Err(ImageInputError::InvalidUrl("it is empty".into()));
        }
        if is_data_uri(image_url) {
            let d = parse_data_uri(image_url, self.config.max_bytes)?;
            let content_type = (!d.media_type.is_empty()).then_some(d.media_type);
            return Ok(FetchedImage {
                bytes: d.data,
                content_type,
            });
        }
        let url = Url::parse(image_url).map_err(|e| ImageInputError::InvalidUrl(e.to_string()))?;
        let limit = self.config.total_timeout_s.max(1);
        tokio::time::timeout(Duration::from_secs(limit), self.follow(url))
            .await
            .map_err(|_| ImageInputError::Timeout { seconds: limit })?
    }

    /// Follows redirects by hand so that every hop is checked (scheme, literal IPs, our files).
    async fn follow(&self, mut url: Url) -> Result<FetchedImage, ImageInputError> {
        let cfg = &self.config;
        let mut redirects = 0usize;
        loop {
            if let Some(read) = self.local.as_ref().and_then(|l| l.open(&url)) {
                let bytes = read.await.map_err(ImageInputError::LocalFile)?;
                if bytes.len() as u64 > cfg.max_bytes {
                    return Err(ImageInputError::FileTooLarge {
                        max_bytes: cfg.max_bytes,
                    });
                }
                return Ok(FetchedImage {
                    bytes,
                    content_type: None,
                });
            }
            match url.scheme() {
                "http" | "https" => {}
                other => return Err(ImageInputError::UnsupportedScheme(other.to_string())),
            }
            check_literal_host(&url, &cfg.policy)?;
            let connect = Duration::from_secs(cfg.connect_timeout_s);
            match get_once(&self.client, &url, cfg.max_bytes, connect).await? {
                Hop::Body(bytes, content_type) => {
                    return Ok(FetchedImage {
                        bytes,
                        content_type,
                    })
                }
                Hop::Redirect(next) => {
                    redirects += 1;
                    if redirects > cfg.max_redirects {
                        return Err(ImageInputError::TooManyRedirects {
                            max: cfg.max_redirects,
                        });
                    }
                    url = next;
                }
            }
        }
    }
}
