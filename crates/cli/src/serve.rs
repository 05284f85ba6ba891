//! `longcat serve`: the fal-compatible HTTP server with in-process workers.
//!
//! Every setting comes from (highest first) a flag, its `LONGCAT_*` environment variable, the
//! TOML file given with `--config`, or the built-in default.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use longcat_model::vae::VaeTiling;
use longcat_pipeline::text_encoder::TextEncoderPolicy;
use longcat_server::config::{key_hash_hex, read_keys_file, ApiKey};
use longcat_server::ServerConfig;
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
    /// Externally visible base URL used in returned URLs [default: from each request's Host].
    #[arg(long, env = "LONGCAT_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// LongCat-Video checkpoint directory [default: the built-in tiny random model, output is noise].
    #[arg(long, env = "LONGCAT_WEIGHTS", value_name = "DIR")]
    weights: Option<PathBuf>,
    /// Where the model runs [default: auto].
    #[arg(long, env = "LONGCAT_DEVICE", value_name = "DEVICE", long_help = crate::device::DEVICE_HELP)]
    device: Option<String>,
    /// Where the text encoder stays between jobs: resident, offload or reload [default: offload].
    #[arg(long, env = "LONGCAT_TEXT_ENCODER", value_name = "POLICY", value_parser = crate::device::parse_text_encoder, long_help = crate::device::TEXT_ENCODER_HELP)]
    text_encoder: Option<TextEncoderPolicy>,
    /// Spatial tiling of the VAE, TILE[,OVERLAP] in latent pixels [default: off].
    #[arg(long, env = "LONGCAT_VAE_TILING", value_name = "TILE[,OVERLAP]", long_help = crate::device::VAE_TILING_HELP)]
    vae_tiling: Option<VaeTiling>,
    /// In-process workers (0 = only serve; run jobs with `longcat worker`) [default: 1].
    #[arg(long, env = "LONGCAT_WORKERS")]
    workers: Option<usize>,
    /// Output/upload storage: a directory or s3://bucket/prefix (AWS_* env) [default: ./data/files].
    #[arg(long, env = "LONGCAT_STORAGE", value_name = "DIR|s3://…")]
    storage: Option<String>,
    /// Job store [default: sqlite://./data/longcat.db]; postgres://… for several servers.
    #[arg(long, env = "LONGCAT_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    /// Accepted API key (repeatable; comma-separated in the env var). Kept only as a SHA-256.
    #[arg(
        long = "api-key",
        env = "LONGCAT_API_KEYS",
        value_delimiter = ',',
        value_name = "KEY"
    )]
    api_keys: Vec<String>,
    /// File of accepted keys, one `[name:]<sha256 hex>` per line (see --hash-key).
    #[arg(long, env = "LONGCAT_API_KEYS_FILE", value_name = "FILE")]
    api_keys_file: Option<PathBuf>,
    /// Answer 429 once this many jobs are queued [default: 0 = no limit].
    #[arg(long, env = "LONGCAT_MAX_QUEUE_DEPTH")]
    max_queue_depth: Option<u64>,
    /// Ed25519 webhook signing key file, created if missing [default: ./data/webhook-signing.key].
    #[arg(long, env = "LONGCAT_WEBHOOK_KEY_FILE", value_name = "FILE")]
    webhook_key_file: Option<PathBuf>,
    /// Let image_url reach private/loopback addresses (tests, trusted networks only).
    #[arg(long, env = "LONGCAT_ALLOW_PRIVATE_IMAGE_URLS")]
    allow_private_image_urls: bool,
    /// Let fal_webhook targets be private/loopback addresses (tests, trusted networks only).
    #[arg(long, env = "LONGCAT_ALLOW_PRIVATE_WEBHOOK_URLS")]
    allow_private_webhook_urls: bool,
    /// Worker lease in seconds: a job whose worker stops heartbeating is requeued after it [default: 30].
    #[arg(long, env = "LONGCAT_LEASE_SECONDS", value_name = "SECONDS")]
    lease_seconds: Option<f64>,
    /// Delete finished jobs (records and output files) and uploads older than this many
    /// hours; usage records stay [default: 0 = keep everything].
    #[arg(long, env = "LONGCAT_RETENTION_HOURS", value_name = "HOURS")]
    retention_hours: Option<f64>,
    /// Print the SHA-256 of KEY for an API keys file and exit.
    #[arg(long, value_name = "KEY")]
    hash_key: Option<String>,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<IpAddr>,
    port: Option<u16>,
    public_url: Option<String>,
    weights: Option<PathBuf>,
    device: Option<String>,
    text_encoder: Option<String>,
    workers: Option<usize>,
    storage: Option<String>,
    database_url: Option<String>,
    /// SHA-256 hex digests, `[name:]<hex>` (plain keys are not accepted in files).
    api_key_hashes: Option<Vec<String>>,
    api_keys_file: Option<PathBuf>,
    max_queue_depth: Option<u64>,
    webhook_key_file: Option<PathBuf>,
    allow_private_image_urls: Option<bool>,
    allow_private_webhook_urls: Option<bool>,
    lease_seconds: Option<f64>,
    retention_hours: Option<f64>,
}

/// Runs `longcat serve`.
pub fn run(args: ServeArgs) -> Result<std::process::ExitCode> {
    if let Some(key) = &args.hash_key {
        println!("{}", key_hash_hex(key));
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let config = resolve(args)?;
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
fn resolve(args: ServeArgs) -> Result<ServerConfig> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
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
    let workers = args.workers.or(file.workers).unwrap_or(1);
    let weights = args.weights.or(file.weights);
    let (spawn_workers, model) = if workers > 0 {
        let device = args.device.or(file.device).unwrap_or_else(|| "auto".into());
        let text_encoder = match (args.text_encoder, &file.text_encoder) {
            (Some(p), _) => p,
            (None, Some(s)) => {
                crate::device::parse_text_encoder(s).context("text_encoder in the --config file")?
            }
            (None, None) => TextEncoderPolicy::default(),
        };
        let generator = load_generator(weights, &device, text_encoder, args.vae_tiling)?;
        let model = generator.info();
        let spawn: longcat_server::SpawnWorkers =
            std::sync::Arc::new(move |ctx: longcat_server::WorkerContext| {
                let pool = longcat_worker::WorkerPool::spawn(
                    workers,
                    ctx.store,
                    ctx.storage,
                    generator.clone(),
                    ctx.config,
                );
                Box::new(Pool(pool)) as Box<dyn longcat_server::Workers>
            });
        (Some(spawn), Some(model))
    } else {
        (None, None)
    };
    let lease = match args.lease_seconds.or(file.lease_seconds) {
        Some(s) if s.is_finite() && s > 0.0 => std::time::Duration::from_secs_f64(s),
        Some(s) => bail!("--lease-seconds must be positive, got {s}"),
        None => defaults.lease,
    };
    let retention = match args.retention_hours.or(file.retention_hours) {
        None => None,
        Some(0.0) => None,
        Some(h) if h.is_finite() && h > 0.0 => Some(std::time::Duration::from_secs_f64(h * 3600.0)),
        Some(h) => bail!("--retention-hours must be 0 (keep everything) or positive, got {h}"),
    };
    let config = ServerConfig {
        bind: args.bind.or(file.bind).unwrap_or(defaults.bind),
        port: args.port.or(file.port).unwrap_or(defaults.port),
        public_url: args.public_url.or(file.public_url),
        database_url: args
            .database_url
            .or(file.database_url)
            .unwrap_or(defaults.database_url.clone()),
        storage: args
            .storage
            .or(file.storage)
            .unwrap_or(defaults.storage.clone()),
        spawn_workers,
        model,
        api_keys,
        allow_private_image_urls: args.allow_private_image_urls
            || file.allow_private_image_urls.unwrap_or(false),
        allow_private_webhooks: args.allow_private_webhook_urls
            || file.allow_private_webhook_urls.unwrap_or(false),
        lease,
        retention,
        max_queue_depth: args
            .max_queue_depth
            .or(file.max_queue_depth)
            .unwrap_or(defaults.max_queue_depth),
        webhook_key_file: Some(
            args.webhook_key_file
                .or(file.webhook_key_file)
                .unwrap_or_else(|| PathBuf::from("./data/webhook-signing.key")),
        ),
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
    Ok(config)
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
    fn shutdown(self: Box<Self>) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(self.0.shutdown())
    }
}

/// The tiny model's name without its "(output is noise)" note, which the warning says anyway.
fn tiny_model_label(name: &str) -> &str {
    name.split(" (").next().unwrap_or(name)
}
