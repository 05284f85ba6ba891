//! `longcat worker`: a process that only runs jobs from a shared job database.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use longcat_media::EncoderConfig;
use longcat_model::vae::VaeTiling;
use longcat_pipeline::generator::{load_generator, GeneratorOptions};
use longcat_pipeline::text_encoder::TextEncoderPolicy;
use longcat_storage::Storage;
use longcat_store::JobStore;
use longcat_worker::webhook::{WebhookConfig, WebhookKey};
use longcat_worker::{WorkerConfig, WorkerPool};

/// Flags of `longcat worker` (each also read from the `LONGCAT_*` variable shown in `--help`).
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Job database shared with the server: `sqlite://path` or `postgres://…`.
    #[arg(
        long,
        env = "LONGCAT_DATABASE_URL",
        default_value = "sqlite://./data/longcat.db"
    )]
    pub database_url: String,
    /// Output storage: a directory or `s3://bucket/prefix` (AWS_* variables configure S3).
    #[arg(long, env = "LONGCAT_STORAGE", default_value = "./data/files")]
    pub storage: String,
    /// Official LongCat-Video checkpoint directory; without it the built-in tiny random model
    /// runs (its output is noise: for smoke tests only).
    #[arg(long, env = "LONGCAT_WEIGHTS")]
    pub weights: Option<PathBuf>,
    /// Number of workers (each runs one job at a time on its own model thread).
    #[arg(long, env = "LONGCAT_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// The server's externally visible base URL (output file URLs are `{public-url}/files/…`).
    #[arg(
        long,
        env = "LONGCAT_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_url: String,
    /// Where the model runs.
    #[arg(long, env = "LONGCAT_DEVICE", default_value = "auto", long_help = crate::device::DEVICE_HELP)]
    pub device: String,
    /// Where the text encoder stays between jobs: resident, offload or reload.
    #[arg(long, env = "LONGCAT_TEXT_ENCODER", default_value = "offload", value_name = "POLICY", value_parser = crate::device::parse_text_encoder, long_help = crate::device::TEXT_ENCODER_HELP)]
    pub text_encoder: TextEncoderPolicy,
    /// Spatial tiling of the VAE, TILE[,OVERLAP] in latent pixels [default: off].
    #[arg(long, env = "LONGCAT_VAE_TILING", value_name = "TILE[,OVERLAP]", long_help = crate::device::VAE_TILING_HELP)]
    pub vae_tiling: Option<VaeTiling>,
    /// Shared secret for the `X-Longcat-Signature` webhook header.
    #[arg(long, env = "LONGCAT_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Ed25519 key file for fal-style webhook signatures (created if missing; the server
    /// publishes its public key at /.well-known/jwks.json, so use the same file there).
    #[arg(
        long,
        env = "LONGCAT_WEBHOOK_KEY_FILE",
        default_value = "./data/webhook-ed25519.key"
    )]
    pub webhook_key_file: PathBuf,
    /// Let image_url reach loopback and private networks (trusted setups and tests only).
    #[arg(long, env = "LONGCAT_ALLOW_PRIVATE_IMAGE_URLS")]
    pub allow_private_image_urls: bool,
    /// Seconds a running job may take to finish after SIGTERM before it is stopped and requeued.
    #[arg(long, env = "LONGCAT_SHUTDOWN_GRACE_SECS", default_value_t = 600)]
    pub shutdown_grace_secs: u64,
    /// Lease on a claimed job, in seconds (renewed by heartbeats every lease/4).
    #[arg(long, env = "LONGCAT_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,
    /// The ffmpeg program.
    #[arg(long, env = "LONGCAT_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// Scratch directory for videos being encoded.
    #[arg(long, env = "LONGCAT_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
}

/// Runs workers until SIGTERM or Ctrl-C, then shuts down gracefully.
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    anyhow::ensure!(
        args.lease_seconds >= 2,
        "--lease-seconds must be at least 2"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: WorkerArgs) -> anyhow::Result<()> {
    let encoder = EncoderConfig {
        ffmpeg: args.ffmpeg.clone(),
        work_dir: args.work_dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    let ffmpeg = encoder.check().context("checking ffmpeg")?;
    tracing::info!(%ffmpeg, "ffmpeg found");
    let store = JobStore::connect(&args.database_url)
        .await
        .with_context(|| format!("opening the job database {}", args.database_url))?;
    let storage = Storage::from_config(&args.storage, &args.public_url)
        .with_context(|| format!("opening storage {}", args.storage))?;
    let signing_key = WebhookKey::load_or_create(&args.webhook_key_file)?;
    tracing::info!(kid = %signing_key.key_id(), file = %args.webhook_key_file.display(), "webhook signing key");

    let options = GeneratorOptions {
        weights_dir: args.weights.clone(),
        device: crate::device::parse_device(&args.device)?,
        text_encoder: args.text_encoder,
        vae_tiling: args.vae_tiling,
        ..Default::default()
    };
    let generator = tokio::task::spawn_blocking(move || load_generator(&options))
        .await
        .context("loading the model")??;
    let info = generator.info();
    if info.smoke_test_model {
        tracing::warn!(model = %info.name, "NO WEIGHTS GIVEN: running the built-in tiny random model; videos are noise (pass --weights DIR)");
    } else {
        tracing::info!(model = %info.name, "model loaded");
    }

    let lease = Duration::from_secs(args.lease_seconds);
    let config = WorkerConfig {
        lease,
        heartbeat_interval: lease / 4,
        allow_private_image_urls: args.allow_private_image_urls,
        public_base_url: args.public_url.clone(),
        encoder,
        webhook: WebhookConfig {
            hmac_secret: args.webhook_secret.clone(),
            signing_key: Some(signing_key),
            ..Default::default()
        },
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        ..Default::default()
    };
    let pool = WorkerPool::try_spawn(args.workers, store, storage, generator, config)?;
    tracing::info!(workers = args.workers, database = %args.database_url, "workers running; SIGTERM or Ctrl-C stops them gracefully");
    wait_for_signal().await?;
    tracing::info!("stopping: finishing the running jobs");
    pool.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
