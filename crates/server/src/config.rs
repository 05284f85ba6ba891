//! Server configuration and API keys (stored as SHA-256 hashes only).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::workers::SpawnWorkers;
use sha2::{Digest, Sha256};

/// One accepted API key: its id (usage accounting and job ownership), the SHA-256 of the
/// secret, and whether it is an admin key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Name shown in usage reports; jobs belong to it (keys sharing a name share their jobs).
    pub id: String,
    /// SHA-256 of the key as sent in `Authorization: Key <key>`.
    pub sha256: [u8; 32],
    /// Sees (reads, cancels) every key's jobs and usage.
    pub admin: bool,
}

impl ApiKey {
    /// A key from its plain text (hashed at once; the plain text is not kept).
    pub fn from_plain(key: &str) -> Self {
        let sha256 = sha256(key);
        Self {
            id: default_key_id(&sha256),
            sha256,
            admin: false,
        }
    }

    /// The same key with the admin role.
    pub fn into_admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// A key from a hex SHA-256, with an optional id.
    pub fn from_hash(id: Option<&str>, hex_hash: &str) -> Result<Self, ConfigError> {
        let bytes = hex::decode(hex_hash.trim())
            .map_err(|_| ConfigError::BadKeyHash(hex_hash.to_owned()))?;
        let sha256: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ConfigError::BadKeyHash(hex_hash.to_owned()))?;
        Ok(Self {
            id: id
                .map(str::to_owned)
                .unwrap_or_else(|| default_key_id(&sha256)),
            sha256,
            admin: false,
        })
    }
}

/// SHA-256 of a key.
pub fn sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Hex SHA-256 of a key (what goes into a keys file).
pub fn key_hash_hex(key: &str) -> String {
    hex::encode(sha256(key))
}

fn default_key_id(hash: &[u8; 32]) -> String {
    format!("key-{}", &hex::encode(hash)[..12])
}

/// Parses a keys file: one key per line, `[<id>:]<sha256 hex>` (a `sha256:` prefix on the hash
/// is allowed), optionally followed by the role `admin` after a space; `#` comments and blank
/// lines ignored. Plain keys are refused.
pub fn parse_keys_file(text: &str) -> Result<Vec<ApiKey>, ConfigError> {
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (line, admin) = match line.split_once(char::is_whitespace) {
            Some((entry, role)) => match role.trim() {
                "admin" => (entry, true),
                other => return Err(ConfigError::BadKeyRole(other.to_owned())),
            },
            None => (line, false),
        };
        let (id, hash) = match line.rsplit_once(':') {
            Some((left, right)) => {
                let id = left.strip_suffix(":sha256").unwrap_or(left);
                let id = if id == "sha256" {
                    None
                } else {
                    Some(id.trim())
                };
                (id, right.trim())
            }
            None => (None, line),
        };
        let mut key = ApiKey::from_hash(id, hash)?;
        key.admin = admin;
        keys.push(key);
    }
    Ok(keys)
}

/// Reads a keys file (see [`parse_keys_file`]).
pub fn read_keys_file(path: &Path) -> Result<Vec<ApiKey>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::KeysFile(path.display().to_string(), e.to_string()))?;
    parse_keys_file(&text)
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A keys-file entry is not a 64-digit hex SHA-256.
    #[error("'{0}' is not a SHA-256 hex digest (64 hex digits); keys files hold hashes, not keys (see `longcat serve --hash-key`)")]
    BadKeyHash(String),
    /// A keys-file entry has a role other than `admin`.
    #[error("unknown key role '{0}' (the only role is 'admin': `[name:]<sha256> admin`)")]
    BadKeyRole(String),
    /// The keys file could not be read.
    #[error("cannot read API keys file {0}: {1}")]
    KeysFile(String, String),
    /// No keys and a non-loopback bind address.
    #[error("no API keys are configured, so the server only binds a loopback address; refusing {0} (pass --api-key/--api-keys-file, or --bind 127.0.0.1)")]
    UnauthenticatedPublicBind(IpAddr),
}

/// Default of [`ServerConfig::header_read_timeout`]: a client has this long to send a
/// request's headers (also how long an idle keep-alive connection stays open).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`ServerConfig::body_read_timeout`]: a request body must arrive within this
/// (100 MB at about 2.7 Mbit/s).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Default of [`ServerConfig::max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 100 * 1024 * 1024;
/// Default of [`ServerConfig::max_large_bodies`].
pub const DEFAULT_MAX_LARGE_BODIES: usize = 4;
/// A body declared larger than this (or of unknown length) counts as large: at most
/// [`ServerConfig::max_large_bodies`] of them are read at once.
pub const LARGE_BODY_BYTES: u64 = 1024 * 1024;

/// Everything [`crate::run`] needs.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to bind (default 127.0.0.1).
    pub bind: IpAddr,
    /// Port (0 = any free port).
    pub port: u16,
    /// Externally visible base URL (`http://host:port`); default: from each request's `Host`
    /// (when that host is allowed, see [`ServerConfig::allowed_hosts`]).
    pub public_url: Option<String>,
    /// Use `X-Forwarded-Host` / `X-Forwarded-Proto` for the returned URLs (only behind a proxy
    /// that sets them); off: only `Host` is read and the scheme is `http`.
    pub trust_forwarded_headers: bool,
    /// Hosts (`name` or `name:port`, case-insensitive) accepted in `Host` (or a trusted
    /// `X-Forwarded-Host`) for building URLs when `public_url` is unset; loopback names
    /// (`localhost`, `*.localhost`) and addresses and the bound address are always accepted.
    /// Other hosts get a 421.
    pub allowed_hosts: Vec<String>,
    /// How long a client has to send a request's headers (also the idle keep-alive limit).
    pub header_read_timeout: Duration,
    /// How long a client has to send a request's body.
    pub body_read_timeout: Duration,
    /// How many large bodies ([`LARGE_BODY_BYTES`]) are read at once; more wait for a slot
    /// (within the body timeout, then 503).
    pub max_large_bodies: usize,
    /// Job store URL (`sqlite://…` or `postgres://…`).
    pub database_url: String,
    /// Storage target (a directory or `s3://bucket/prefix`).
    pub storage: String,
    /// Starts the in-process workers (`None`: jobs are run by separate `longcat worker`
    /// processes sharing the store and storage).
    pub spawn_workers: Option<SpawnWorkers>,
    /// What the workers run, for `/health`.
    pub model: Option<longcat_core::ModelInfo>,
    /// Accepted keys; empty = no authentication (loopback only).
    pub api_keys: Vec<ApiKey>,
    /// Let the workers fetch images from private/loopback addresses (tests only).
    pub allow_private_image_urls: bool,
    /// Accept `fal_webhook` targets on private/loopback addresses (tests, trusted networks).
    pub allow_private_webhooks: bool,
    /// Ed25519 webhook signing key file (created if missing); `None`: webhooks are unsigned.
    pub webhook_key_file: Option<std::path::PathBuf>,
    /// Refuse submits with 429 once this many jobs are queued (0 = no limit).
    pub max_queue_depth: u64,
    /// Largest request body (JSON inputs with data URIs, uploads), bytes.
    pub max_body_bytes: usize,
    /// Worker lease (heartbeats renew it).
    pub lease: Duration,
    /// How often idle workers poll the store.
    pub poll_interval: Duration,
    /// How often the server requeues jobs with expired leases and fails queued jobs past
    /// their start deadline.
    pub recover_interval: Duration,
    /// Claims per job (automatic re-runs after a lost worker); `X-Fal-No-Retry` makes it 1.
    pub max_attempts: u32,
    /// Delete finished jobs (records and output files) and uploads older than this
    /// (`None`: keep everything).
    pub retention: Option<Duration>,
    /// How often files past their requested lifetime (fal's object lifecycle headers) are
    /// deleted.
    pub lifecycle_interval: Duration,
    /// Price of each app: the submit response's estimate and the usage records
    /// (docs/server.md#pricing).
    pub prices: longcat_api::PriceTable,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("public_url", &self.public_url)
            .field("trust_forwarded_headers", &self.trust_forwarded_headers)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("database_url", &self.database_url)
            .field("storage", &self.storage)
            .field("in_process_workers", &self.spawn_workers.is_some())
            .field("api_keys", &self.api_keys.len())
            .field("model", &self.model.as_ref().map(|m| m.name.clone()))
            .finish_non_exhaustive()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            public_url: None,
            trust_forwarded_headers: false,
            allowed_hosts: Vec::new(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_large_bodies: DEFAULT_MAX_LARGE_BODIES,
            database_url: "sqlite://./data/longcat.db".to_owned(),
            storage: "./data/files".to_owned(),
            spawn_workers: None,
            model: None,
            api_keys: Vec::new(),
            allow_private_image_urls: false,
            allow_private_webhooks: false,
            webhook_key_file: None,
            max_queue_depth: 0,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            // One default for every process of a deployment: the workers'.
            lease: longcat_worker::WorkerConfig::default().lease,
            poll_interval: Duration::from_millis(250),
            recover_interval: Duration::from_secs(2),
            max_attempts: 3,
            retention: None,
            lifecycle_interval: Duration::from_secs(30),
            prices: longcat_api::PriceTable::default(),
        }
    }
}

impl ServerConfig {
    /// The socket address to bind.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Refuses an unauthenticated server on a non-loopback address.
    pub fn check_bind(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty() && !self.bind.is_loopback() {
            return Err(ConfigError::UnauthenticatedPublicBind(self.bind));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hashed() {
        let k = ApiKey::from_plain("secret");
        assert_eq!(
            hex::encode(k.sha256),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert!(k.id.starts_with("key-2bb80d537b1d"));
    }

    #[test]
    fn keys_file_formats() {
        let h = key_hash_hex("a");
        let text =
            format!("# comment\n\n{h}\nalice:{h}\nbob:sha256:{h}\nsha256:{h}\nops:{h} admin\n");
        let keys = parse_keys_file(&text).unwrap();
        assert_eq!(keys.len(), 5);
        assert!(keys[4].admin && keys[4].id == "ops");
        assert!(keys[..4].iter().all(|k| !k.admin));
        assert!(parse_keys_file(&format!("x:{h} root")).is_err());
        assert!(keys[0].id.starts_with("key-"));
        assert_eq!(keys[1].id, "alice");
        assert_eq!(keys[2].id, "bob");
        assert!(keys[3].id.starts_with("key-"));
        assert!(keys.iter().all(|k| k.sha256 == sha256("a")));
        assert!(parse_keys_file("plain-key-not-a-hash").is_err());
    }

    #[test]
    fn unauthenticated_server_is_loopback_only() {
        let mut c = ServerConfig::default();
        assert!(c.check_bind().is_ok());
        c.bind = "0.0.0.0".parse().unwrap();
        assert!(c.check_bind().is_err());
        c.api_keys.push(ApiKey::from_plain("k"));
        assert!(c.check_bind().is_ok());
    }
}
