//! `longcat serve`: the fal-compatible HTTP server with in-process workers.
//!
//! Every setting comes from (highest first) a flag, its `LONGCAT_*` environment variable, the
//! TOML file given with `--config`, or the built-in default.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use longcat_model::vae::VaeTiling;
use longcat_pipeline::text_encoder::{EffectivePolicy, TextEncoderPolicy};
use longcat_server::config::{key_hash_hex, read_keys_file, ApiKey};
use longcat_server::ServerConfig;
use longcat_worker::{WorkerLayer, WorkerSettings};
use serde::Deserialize;

/// Flags of `longcat serve`.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys named like the flags, with `_`).
    #[arg(long, env = "LONGCAT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to bind [default: 127.0.0.1]. Without API keys only loopback is allowed.
    #[arg(
        long = "host",
        visible_alias = "bind",
        env = "LONGCAT_HOST",
        value_name = "IP"
    )]
    bind: Option<IpAddr>,
    /// Port [default: 8080; 0 picks a free port].
    #[arg(long, env = "LONGCAT_PORT")]
    port: Option<u16>,
    /// Accepted API key (repeatable; comma-separated in the env var). Kept only as a SHA-256.
    #[arg(
        long = "api-key",
        env = "LONGCAT_API_KEYS",
        value_delimiter = ',',
        value_name = "KEY"
    )]
    api_keys: Vec<String>,
    /// File of accepted keys, one `[name:]<sha256 hex>[ admin]` per line (see --hash-key).
    #[arg(long, env = "LONGCAT_API_KEYS_FILE", value_name = "FILE")]
    api_keys_file: Option<PathBuf>,
    /// Accepted admin key: sees and cancels every key's jobs and usage (repeatable;
    /// comma-separated in the env var). Kept only as a SHA-256.
    #[arg(
        long = "admin-key",
        env = "LONGCAT_ADMIN_KEYS",
        value_delimiter = ',',
        value_name = "KEY"
    )]
    admin_keys: Vec<String>,
    /// Build returned URLs from X-Forwarded-Host / X-Forwarded-Proto (only behind a proxy
    /// that sets them) when --public-url is unset; `=false` turns off a `true` from the
    /// config file [default: false].
    #[arg(long, env = "LONGCAT_TRUST_FORWARDED_HEADERS", value_name = "BOOL",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    trust_forwarded_headers: Option<bool>,
    /// Hosts (`name` or `name:port`) accepted for returned URLs when --public-url is unset,
    /// besides loopback and the bound address (repeatable; comma-separated in the env var).
    #[arg(
        long = "allowed-hosts",
        env = "LONGCAT_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    allowed_hosts: Vec<String>,
    /// Seconds a client has to send a request's headers; also closes idle keep-alive
    /// connections [default: 30].
    #[arg(
        long,
        env = "LONGCAT_HEADER_READ_TIMEOUT_SECONDS",
        value_name = "SECONDS"
    )]
    header_read_timeout_seconds: Option<f64>,
    /// Seconds a client has to send a request's body [default: 300].
    #[arg(
        long,
        env = "LONGCAT_BODY_READ_TIMEOUT_SECONDS",
        value_name = "SECONDS"
    )]
    body_read_timeout_seconds: Option<f64>,
    /// Largest request body in bytes; a larger Content-Length is a 413 before reading
    /// [default: 104857600].
    #[arg(long, env = "LONGCAT_MAX_BODY_BYTES", value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// Bodies over 1 MiB (or of unknown length) read at once; others wait [default: 4].
    #[arg(long, env = "LONGCAT_MAX_LARGE_BODIES", value_name = "N")]
    max_large_bodies: Option<usize>,
    /// Answer 429 once this many jobs are queued [default: 0 = no limit].
    #[arg(long, env = "LONGCAT_MAX_QUEUE_DEPTH")]
    max_queue_depth: Option<u64>,
    /// Delete finished jobs (records and output files) and uploads older than this many
    /// hours; usage records stay [default: 0 = keep everything].
    #[arg(long, env = "LONGCAT_RETENTION_HOURS", value_name = "HOURS")]
    retention_hours: Option<f64>,
    /// Print the SHA-256 of KEY for an API keys file and exit.
    #[arg(long, value_name = "KEY")]
    hash_key: Option<String>,
    /// The settings shared with `longcat worker`.
    #[command(flatten)]
    worker: WorkerLayer,
}

impl ServeArgs {
    /// The worker settings given as flags or environment variables.
    #[cfg(test)]
    pub(crate) fn worker_layer(&self) -> &WorkerLayer {
        &self.worker
    }
}

/// The `--config` file (read by `serve` and by `worker`, which uses only the worker keys).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileConfig {
    bind: Option<IpAddr>,
    port: Option<u16>,
    /// SHA-256 hex digests, `[name:]<hex>` (plain keys are not accepted in files).
    api_key_hashes: Option<Vec<String>>,
    api_keys_file: Option<PathBuf>,
    /// Admin keys as SHA-256 hex digests, `[name:]<hex>`.
    admin_key_hashes: Option<Vec<String>>,
    trust_forwarded_headers: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
    header_read_timeout_seconds: Option<f64>,
    body_read_timeout_seconds: Option<f64>,
    max_body_bytes: Option<usize>,
    max_large_bodies: Option<usize>,
    max_queue_depth: Option<u64>,
    retention_hours: Option<f64>,
    /// Price of apps, by app id: `[prices."fal-ai/longcat-video/text-to-video/480p"]` with
    /// `usd_per_second` and `billing_fps` (apps not named keep the defaults of
    /// docs/server.md#pricing).
    prices: Option<std::collections::BTreeMap<String, longcat_api::Price>>,
    /// The settings shared with `longcat worker`.
    #[serde(flatten)]
    pub(crate) worker: WorkerLayer,
    /// Anything else: refused (a misspelt key must not be ignored silently).
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, toml::Value>,
}

/// Reads the TOML `--config` file (none: every key unset).
pub(crate) fn read_config_file(path: Option<&std::path::Path>) -> Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: FileConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if !file.unknown.is_empty() {
        bail!(
            "{}: unknown key(s) {:?}",
            path.display(),
            file.unknown.keys().collect::<Vec<_>>()
        );
    }
    Ok(file)
}

/// Runs `longcat serve`.
pub fn run(args: ServeArgs) -> Result<std::process::ExitCode> {
    if let Some(key) = &args.hash_key {
        println!("{}", key_hash_hex(key));
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let config = resolve(args)?;
    create_dirs(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let handle = longcat_server::run(config).await?;
        eprintln!("longcat serve: listening on {}", handle.base_url());
        tokio::select! {
            _ = shutdown_signal() => {
                eprintln!("longcat serve: shutting down");
                handle.shutdown().await;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Merges flags/env, the config file and the defaults.
pub(crate) fn resolve(args: ServeArgs) -> Result<ServerConfig> {
    let file = read_config_file(args.config.as_deref())?;
    let settings = WorkerSettings::resolve(&args.worker, &file.worker)?.with_env_secrets();
    let defaults = ServerConfig::default();
    let mut api_keys: Vec<ApiKey> = args
        .api_keys
        .iter()
        .map(|k| ApiKey::from_plain(k))
        .collect();
    for entry in file.api_key_hashes.iter().flatten() {
        api_keys.extend(longcat_server::config::parse_keys_file(entry)?);
    }
    if let Some(path) = args.api_keys_file.as_ref().or(file.api_keys_file.as_ref()) {
        api_keys.extend(read_keys_file(path)?);
    }
    api_keys.extend(
        args.admin_keys
            .iter()
            .map(|k| ApiKey::from_plain(k).into_admin()),
    );
    for entry in file.admin_key_hashes.iter().flatten() {
        let keys = longcat_server::config::parse_keys_file(entry)?;
        api_keys.extend(keys.into_iter().map(ApiKey::into_admin));
    }
    let (spawn_workers, model) = if settings.workers > 0 {
        let generator = load_generator(
            settings.weights.clone(),
            &settings.device,
            settings.text_encoder,
            settings.vae_tiling,
        )?;
        let model = generator.info();
        // Loaded once, at start (a missing model is reported here), shared by every pool.
        let safety = settings.load_safety();
        let shared = settings.clone();
        let spawn: longcat_server::SpawnWorkers =
            std::sync::Arc::new(move |ctx: longcat_server::WorkerContext| {
                // The server filled in its address, lease and signing key; the rest of the
                // shared settings (secret, encoder, grace) come from here.
                let mut config = ctx.config;
                let public_url = config.public_base_url.clone();
                let signing_key = config.webhook.signing_key.clone();
                shared.apply(&mut config);
                config.public_base_url = public_url;
                config.webhook.signing_key = signing_key;
                config.safety = safety.clone();
                let pool = longcat_worker::WorkerPool::spawn(
                    shared.workers,
                    ctx.store,
                    ctx.storage,
                    generator.clone(),
                    config,
                );
                Box::new(Pool(pool)) as Box<dyn longcat_server::Workers>
            });
        (Some(spawn), Some(model))
    } else {
        (None, None)
    };
    let retention = match args.retention_hours.or(file.retention_hours) {
        None => None,
        Some(0.0) => None,
        Some(h) if h.is_finite() && h > 0.0 => Some(std::time::Duration::from_secs_f64(h * 3600.0)),
        Some(h) => bail!("--retention-hours must be 0 (keep everything) or positive, got {h}"),
    };
    let seconds = |flag: &str, value: Option<f64>, default: std::time::Duration| match value {
        Some(s) if s.is_finite() && s > 0.0 => Ok(std::time::Duration::from_secs_f64(s)),
        Some(s) => bail!("--{flag} must be positive, got {s}"),
        None => Ok(default),
    };
    let header_read_timeout = seconds(
        "header-read-timeout-seconds",
        args.header_read_timeout_seconds
            .or(file.header_read_timeout_seconds),
        defaults.header_read_timeout,
    )?;
    let body_read_timeout = seconds(
        "body-read-timeout-seconds",
        args.body_read_timeout_seconds
            .or(file.body_read_timeout_seconds),
        defaults.body_read_timeout,
    )?;
    let max_large_bodies = match args.max_large_bodies.or(file.max_large_bodies) {
        Some(0) => bail!("--max-large-bodies must be at least 1"),
        Some(n) => n,
        None => defaults.max_large_bodies,
    };
    let mut prices = longcat_api::PriceTable::default();
    for (app, price) in file.prices.iter().flatten() {
        prices.set(app, *price).map_err(anyhow::Error::msg)?;
    }
    let mut allowed_hosts = args.allowed_hosts;
    allowed_hosts.extend(file.allowed_hosts.into_iter().flatten());
    let config = ServerConfig {
        bind: args.bind.or(file.bind).unwrap_or(defaults.bind),
        trust_forwarded_headers: args
            .trust_forwarded_headers
            .or(file.trust_forwarded_headers)
            .unwrap_or(false),
        allowed_hosts,
        header_read_timeout,
        body_read_timeout,
        max_large_bodies,
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(defaults.max_body_bytes),
        port: args.port.or(file.port).unwrap_or(defaults.port),
        public_url: settings.public_url.clone(),
        database_url: settings.database_url.clone(),
        storage: settings.storage.clone(),
        spawn_workers,
        model,
        api_keys,
        allow_private_image_urls: settings.allow_private_image_urls,
        allow_private_webhooks: settings.allow_private_webhook_urls,
        lease: settings.lease,
        retention,
        max_queue_depth: args
            .max_queue_depth
            .or(file.max_queue_depth)
            .unwrap_or(defaults.max_queue_depth),
        webhook_key_file: Some(settings.webhook_key_file.clone()),
        prices,
        ..defaults
    };
    if config.api_keys.is_empty() && !config.bind.is_loopback() {
        bail!(
            "no API keys are configured, so only a loopback address may be bound (got {}); \
             pass --api-key / --api-keys-file or bind 127.0.0.1",
            config.bind
        );
    }
    if config.api_keys.is_empty() {
        eprintln!(
            "longcat serve: no API keys configured: authentication is OFF and the server binds \
             only the loopback address {}",
            config.bind
        );
    }
    Ok(config)
}

/// Creates the directories of the SQLite file and the signing key file.
fn create_dirs(config: &ServerConfig) -> Result<()> {
    if let Some(dir) = config
        .database_url
        .strip_prefix("sqlite://")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    if let Some(dir) = config.webhook_key_file.as_ref().and_then(|p| p.parent()) {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    Ok(())
}

fn load_generator(
    weights: Option<PathBuf>,
    device: &str,
    text_encoder: TextEncoderPolicy,
    vae_tiling: Option<VaeTiling>,
) -> Result<std::sync::Arc<dyn longcat_pipeline::VideoGenerator>> {
    use longcat_pipeline::generator::{load_generator, GeneratorOptions};
    let device = crate::device::parse_device(device)?;
    eprintln!(
        "longcat serve: model device {}",
        crate::device::device_name(&device)
    );
    eprintln!(
        "longcat serve: text encoder {}",
        text_encoder.effective(&device)
    );
    let opts = GeneratorOptions {
        weights_dir: weights,
        device,
        text_encoder,
        vae_tiling,
        ..GeneratorOptions::default()
    };
    let generator = load_generator(&opts).context("loading the model")?;
    let info = generator.info();
    if info.smoke_test_model {
        eprintln!(
            "longcat serve: WARNING: no --weights given, so the {} runs: its videos are noise \
             (smoke tests only). For real videos pass --weights DIR (or LONGCAT_WEIGHTS=DIR), \
             DIR being the LongCat-Video checkpoint directory (see docs/checkpoint.md).",
            tiny_model_label(&info.name)
        );
    } else {
        eprintln!("longcat serve: model {}", info.name);
    }
    Ok(generator)
}

/// `longcat_worker::WorkerPool` as the server's in-process workers.
struct Pool(longcat_worker::WorkerPool);

impl longcat_server::Workers for Pool {
    fn notify(&self) {
        self.0.notify();
    }
    fn engine_error(&self) -> Option<String> {
        match self.0.engine_state() {
            longcat_worker::EngineState::Ready => None,
            longcat_worker::EngineState::Lost(why) => Some(why),
        }
    }
    fn shutdown(self: Box<Self>) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(self.0.shutdown())
    }
}

/// The tiny model's name without its "(output is noise)" note, which the warning says anyway.
fn tiny_model_label(name: &str) -> &str {
    name.split(" (").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn resolve_args(args: &[&str]) -> Result<ServerConfig> {
        let mut argv = vec![
            "longcat",
            "--workers",
            "0",
            "--webhook-key-file",
            "webhook.key",
            "--database-url",
            "sqlite::memory:",
        ];
        argv.extend_from_slice(args);
        resolve(Cli::try_parse_from(argv)?.serve)
    }

    #[test]
    fn security_flags_and_toml() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("serve.toml");
        std::fs::write(
            &toml,
            format!(
                "admin_key_hashes = [\"ops:{}\"]\nallowed_hosts = [\"b.example.com\"]\n\
                 body_read_timeout_seconds = 7\nmax_body_bytes = 1000\n",
                key_hash_hex("root")
            ),
        )
        .unwrap();
        let c = resolve_args(&[
            "--config",
            toml.to_str().unwrap(),
            "--api-key",
            "k1",
            "--admin-key",
            "boss",
            "--trust-forwarded-headers",
            "--allowed-hosts",
            "a.example.com",
            "--header-read-timeout-seconds",
            "5",
            "--max-large-bodies",
            "2",
        ])
        .unwrap();
        let admins: Vec<_> = c.api_keys.iter().filter(|k| k.admin).collect();
        assert_eq!(c.api_keys.len(), 3);
        assert_eq!(admins.len(), 2);
        assert!(admins.iter().any(|k| k.id == "ops"));
        assert!(c.trust_forwarded_headers);
        assert_eq!(c.allowed_hosts, ["a.example.com", "b.example.com"]);
        assert_eq!(c.header_read_timeout, std::time::Duration::from_secs(5));
        assert_eq!(c.body_read_timeout, std::time::Duration::from_secs(7));
        assert_eq!(c.max_large_bodies, 2);
        assert_eq!(c.max_body_bytes, 1000);
        let d = resolve_args(&[]).unwrap();
        assert!(!d.trust_forwarded_headers && d.allowed_hosts.is_empty());
        assert_eq!(d.max_large_bodies, ServerConfig::default().max_large_bodies);
        assert!(resolve_args(&["--max-large-bodies", "0"]).is_err());
        assert!(resolve_args(&["--body-read-timeout-seconds", "-1"]).is_err());

        // A flag turns off a `true` from the file (flags > env > file > default).
        let on = dir.path().join("forwarded.toml");
        std::fs::write(&on, "trust_forwarded_headers = true\n").unwrap();
        let path = on.to_str().unwrap();
        assert!(
            resolve_args(&["--config", path])
                .unwrap()
                .trust_forwarded_headers
        );
        let off = resolve_args(&["--config", path, "--trust-forwarded-headers=false"]).unwrap();
        assert!(!off.trust_forwarded_headers);
    }

    #[test]
    fn prices_from_toml() {
        let dir = tempfile::tempdir().unwrap();
        let app = "fal-ai/longcat-video/distilled/text-to-video/480p";
        let toml = dir.path().join("prices.toml");
        std::fs::write(
            &toml,
            format!("[prices.\"{app}\"]\nusd_per_second = 0.5\nbilling_fps = 15\n"),
        )
        .unwrap();
        let c = resolve_args(&["--config", toml.to_str().unwrap()]).unwrap();
        let a = longcat_api::App::from_id(app).unwrap();
        assert_eq!(c.prices.price(a).usd_per_second, 0.5);
        // Other apps keep the defaults.
        let d = longcat_api::App::DEFAULT;
        assert_eq!(
            c.prices.price(d),
            longcat_api::PriceTable::default().price(d)
        );
        for bad in [
            "[prices.\"fal-ai/nope\"]\nusd_per_second = 1\nbilling_fps = 15\n".to_owned(),
            format!("[prices.\"{app}\"]\nusd_per_second = -1\nbilling_fps = 15\n"),
            format!("[prices.\"{app}\"]\nusd_per_second = 1\nbilling_fps = 15\ncents = 2\n"),
        ] {
            std::fs::write(&toml, &bad).unwrap();
            assert!(
                resolve_args(&["--config", toml.to_str().unwrap()]).is_err(),
                "{bad}"
            );
        }
    }
}
