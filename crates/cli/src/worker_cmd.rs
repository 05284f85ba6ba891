//! `longcat worker`: a process that only runs jobs from a shared job database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use longcat_pipeline::generator::{load_generator, GeneratorOptions};
use longcat_storage::Storage;
use longcat_store::JobStore;
use longcat_worker::settings::DEFAULT_WORKER_PUBLIC_URL;
use longcat_worker::webhook::WebhookKey;
use longcat_worker::{WorkerConfig, WorkerLayer, WorkerPool, WorkerSettings};

/// Flags of `longcat worker` (each also read from the `LONGCAT_*` variable shown in `--help`;
/// the same names, defaults and order as `longcat serve`: flag, variable, file, default).
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// TOML file with any of the settings below (the same file `longcat serve` reads; its
    /// server-only keys are ignored here).
    #[arg(long, env = "LONGCAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The settings shared with `longcat serve`.
    #[command(flatten)]
    pub worker: WorkerLayer,
}

/// Runs workers until SIGTERM or Ctrl-C, then shuts down gracefully. Exits with an error
/// when the engine is lost (a panic it could not recover from), so a supervisor restarts it.
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let settings = settings(&args)?;
    anyhow::ensure!(settings.workers > 0, "--workers must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

/// The worker settings: flags and environment over the `--config` file over the defaults.
pub(crate) fn settings(args: &WorkerArgs) -> anyhow::Result<WorkerSettings> {
    let file = crate::serve::read_config_file(args.config.as_deref())?;
    Ok(WorkerSettings::resolve(&args.worker, &file.worker)?.with_env_secrets())
}

async fn serve(settings: WorkerSettings) -> anyhow::Result<ExitCode> {
    let mut config = WorkerConfig {
        public_base_url: DEFAULT_WORKER_PUBLIC_URL.into(),
        ..WorkerConfig::default()
    };
    settings.apply(&mut config);
    config.safety = settings.load_safety();
    let ffmpeg = config.encoder.check().context("checking ffmpeg")?;
    tracing::info!(%ffmpeg, "ffmpeg found");
    let store = JobStore::connect(&settings.database_url)
        .await
        .with_context(|| format!("opening the job database {}", settings.database_url))?;
    let storage = Storage::from_config(&settings.storage, &config.public_base_url)
        .with_context(|| format!("opening storage {}", settings.storage))?;
    let signing_key = WebhookKey::load_or_create(&settings.webhook_key_file)?;
    tracing::info!(kid = %signing_key.key_id(), file = %settings.webhook_key_file.display(), "webhook signing key");
    config.webhook.signing_key = Some(signing_key);

    let options = GeneratorOptions {
        weights_dir: settings.weights.clone(),
        device: crate::device::parse_device(&settings.device)?,
        text_encoder: settings.text_encoder,
        vae_tiling: settings.vae_tiling,
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

    let pool = WorkerPool::try_spawn(settings.workers, store, storage, generator, config)?;
    tracing::info!(slots = settings.workers, database = %settings.database_url, "worker running; SIGTERM or Ctrl-C stops it gracefully");
    let lost = pool.engine_lost();
    let code = tokio::select! {
        r = wait_for_signal() => {
            r?;
            tracing::info!("stopping: finishing the running jobs");
            ExitCode::SUCCESS
        }
        why = lost => {
            tracing::error!(reason = %why, "the model engine is lost; stopping (restart the process)");
            ExitCode::FAILURE
        }
    };
    pool.shutdown().await;
    Ok(code)
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
