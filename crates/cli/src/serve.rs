//! `longcat serve`: the fal-compatible HTTP server with in-process workers.
//!
//! Every setting comes from (highest first) a flag, its `LONGCAT_*` environment variable, the
//! TOML file given with `--config`, or the built-in default.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use longcat_pipeline::text_encoder::TextEncoderPolicy;
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
    /// File of accepted keys, one `[name:]<sha256 hex>` per line (see --hash-key).
    #[arg(long, env = "LONGCAT_API_KEYS_FILE", value_name = "FILE")]
    api_keys_file: Option<PathBuf>,
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
    max_queue_depth: Option<u64>,
    retention_hours: Option<f64>,
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
    let settings = WorkerSettings::resolve(&args.worker, &file.worker)?;
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
    let (spawn_workers, model) = if settings.workers > 0 {
        let generator = load_generator(
            settings.weights.clone(),
            &settings.device,
            settings.text_encoder,
        )?;
        let model = generator.info();
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
    let config = ServerConfig {
        bind: args.bind.or(file.bind).unwrap_or(defaults.bind),
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
