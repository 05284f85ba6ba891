//! [`WorkerPool`]: one engine (a model OS thread owning the generator) and N job slots in
//! front of it, each an async task on the caller's runtime, plus the periodic lease recovery
//! and the webhook outbox loop.

use std::sync::Arc;
use std::time::Instant;

use longcat_core::VideoGenerator;
use longcat_media::ImageLoader;
use longcat_storage::{Storage, StoredImageFiles};
use longcat_store::{Job, JobStore};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::failure::Failure;
use crate::job::{log, process, Ending};
use crate::metrics as m;
use crate::model_thread::{EnginePermit, EngineState, ModelThread};
use crate::outbox::webhook_loop;
use crate::shared::Shared;
use crate::webhook::{WebhookError, WebhookSender};
use longcat_store::JobError;

/// Errors starting a pool.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The image download client could not be built.
    #[error(transparent)]
    ImageClient(#[from] longcat_media::input::ClientBuildError),
    /// The webhook client could not be built.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// A model thread could not be started.
    #[error("cannot start a model thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The prompt expansion client could not be built.
    #[error("prompt expansion client: {0}")]
    PromptExpansion(#[from] crate::prompt_expansion::ExpansionError),
}

/// A set of workers running jobs from a [`JobStore`].
pub struct WorkerPool {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    recovery: Option<JoinHandle<()>>,
    webhook_loop: JoinHandle<()>,
    ids: Vec<String>,
}

impl WorkerPool {
    /// Starts one engine over `generator` and `count` job slots in front of it on the current
    /// tokio runtime. A slot claims a job only once the engine can take it, so a claimed job
    /// never waits for the engine; the other slots meanwhile finish their jobs (upload,
    /// completion). See `docs/worker.md`.
    ///
    /// # Panics
    /// If the HTTP clients or the model threads cannot be created (start-up only); use
    /// [`WorkerPool::try_spawn`] to handle that.
    pub fn spawn(
        count: usize,
        store: JobStore,
        storage: Storage,
        generator: Arc<dyn VideoGenerator>,
        config: WorkerConfig,
    ) -> Self {
        match Self::try_spawn(count, store, storage, generator, config) {
            Ok(pool) => pool,
            Err(e) => panic!("cannot start the worker pool: {e}"),
        }
    }

    /// Starts one engine and `count` job slots (see [`WorkerPool::spawn`]).
    pub fn try_spawn(
        count: usize,
        store: JobStore,
        storage: Storage,
        generator: Arc<dyn VideoGenerator>,
        config: WorkerConfig,
    ) -> Result<Self, WorkerError> {
        let image_cfg = config.effective_image_input();
        let max_bytes = image_cfg.max_bytes;
        let own_files = storage.with_public_base_url(&config.public_base_url);
        let loader = ImageLoader::new(image_cfg)?
            .with_local_files(Arc::new(StoredImageFiles::new(own_files, max_bytes)));
        let webhooks = WebhookSender::new(config.webhook.clone())?;
        // One client for the pool's prompt expansion calls (connections are reused).
        let prompt_expander = config
            .prompt_expansion
            .clone()
            .map(crate::prompt_expansion::PromptExpander::new)
            .transpose()?;
        let engine = ModelThread::spawn("model".into(), generator)?;
        let shared = Arc::new(Shared {
            store,
            storage,
            loader,
            webhooks,
            prompt_expander,
            config,
            notify: Notify::new(),
            webhook_wake: Notify::new(),
            deliveries: TaskTracker::new(),
            engine,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let base = worker_id_base(&shared.config.worker_id_prefix);
        let mut workers = Vec::with_capacity(count);
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let id = format!("{base}-{n}");
            let worker = Worker {
                id: id.clone(),
                shared: shared.clone(),
            };
            workers.push(tokio::spawn(worker.run(shutdown_rx.clone())));
            ids.push(id);
        }
        let recovery = shared
            .config
            .recover_interval
            .map(|every| tokio::spawn(recover_loop(shared.clone(), every, shutdown_rx.clone())));
        let webhook_loop = tokio::spawn(webhook_loop(shared.clone(), shutdown_rx.clone()));
        tracing::info!(count, ?ids, "worker pool started");
        Ok(Self {
            shared,
            shutdown,
            workers,
            recovery,
            webhook_loop,
            ids,
        })
    }

    /// Wakes idle workers (call after a submit).
    pub fn notify(&self) {
        self.shared.notify.notify_waiters();
    }

    /// The workers' ids (as recorded on the jobs they claim).
    pub fn worker_ids(&self) -> &[String] {
        &self.ids
    }

    /// The engine's state: [`EngineState::Lost`] once a panic left it unrecoverable (the
    /// pool then claims no more jobs).
    pub fn engine_state(&self) -> EngineState {
        self.shared.engine.state()
    }

    /// Resolves with the reason once the engine is lost (never while it works).
    pub fn engine_lost(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut state = self.shared.engine.watch_state();
        async move {
            loop {
                if let EngineState::Lost(why) = &*state.borrow_and_update() {
                    return why.clone();
                }
                if state.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }

    /// Stops claiming, lets running jobs finish (up to `shutdown_grace`, after which they are
    /// stopped and left to lease recovery), stops webhook attempts (what is left stays due in
    /// the store for the next process), and waits for everything.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for w in self.workers {
            if let Err(e) = w.await {
                tracing::error!(error = %e, "a worker task failed");
            }
        }
        if let Some(r) = self.recovery {
            let _ = r.await;
        }
        let _ = self.webhook_loop.await;
        self.shared.deliveries.close();
        self.shared.deliveries.wait().await;
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.engine.join()).await;
        tracing::info!("worker pool stopped");
    }
}

struct Worker {
    id: String,
    shared: Arc<Shared>,
}

impl Worker {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.shared.config;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // The engine first, then the claim: a job is claimed (shown IN_PROGRESS) only
            // when the engine can start it at once.
            let permit = tokio::select! {
                p = self.shared.engine.admit() => match p {
                    Ok(p) => p,
                    Err(why) => {
                        tracing::error!(worker = %self.id, reason = %why, "engine lost: this worker claims no more jobs");
                        let _ = shutdown.wait_for(|stop| *stop).await;
                        break;
                    }
                },
                _ = shutdown.changed() => continue,
            };
            // Register interest before looking, so a submit between the claim and the wait
            // is not missed.
            let notified = self.shared.notify.notified();
            match self.shared.store.claim_next(&self.id, cfg.lease).await {
                Ok(Some(job)) => {
                    let span = tracing::info_span!(
                        "job",
                        request_id = %job.id,
                        worker = %self.id,
                        attempt = job.attempts,
                        endpoint = %job.endpoint,
                    );
                    self.run_job(job, permit, &shutdown).instrument(span).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(worker = %self.id, error = %e, "claiming a job failed"),
            }
            drop(permit);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(cfg.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn run_job(&self, job: Job, permit: EnginePermit, shutdown: &watch::Receiver<bool>) {
        let shared = &self.shared;
        let started = Instant::now();
        m::running(1.0);
        if let Some(s) = job.started_at {
            let waited = (s - job.created_at).num_milliseconds().max(0) as f64 / 1000.0;
            m::stage_seconds("queue_wait", waited);
        }
        tracing::info!(job = %job.id, worker = %self.id, attempt = job.attempts, "job started");
        log(
            shared,
            &job.id,
            "INFO",
            &format!("attempt {} started on worker {}", job.attempts, self.id),
        )
        .await;

        let ending = process(shared, &self.id, permit, &job, shutdown).await;
        // The second value: whether the job ended here (its webhook, if any, is now due).
        let (outcome, ended) = match ending {
            Ending::Completed(output) => {
                match shared.store.complete(&job.id, &self.id, output).await {
                    Ok(true) => {
                        log(shared, &job.id, "INFO", "completed").await;
                        ("completed", true)
                    }
                    Ok(false) => ("abandoned", false),
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "recording completion failed");
                        ("abandoned", false)
                    }
                }
            }
            Ending::Failed(Failure::Cancelled) => {
                log(shared, &job.id, "INFO", "cancelled").await;
                match shared.store.mark_cancelled(&job.id, &self.id).await {
                    Ok(true) => ("cancelled", true),
                    Ok(false) => ("abandoned", false),
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "recording cancellation failed");
                        ("abandoned", false)
                    }
                }
            }
            Ending::Failed(failure) => {
                let message = failure.message();
                tracing::warn!(job = %job.id, kind = failure.kind(), %message, "job failed");
                log(shared, &job.id, "ERROR", &format!("failed: {message}")).await;
                let error = failure.to_job_error();
                match shared.store.fail(&job.id, &self.id, error.clone()).await {
                    Ok(true) => ("failed", true),
                    Ok(false) => ("abandoned", false),
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "recording the failure failed");
                        ("abandoned", false)
                    }
                }
            }
            Ending::Lost => {
                tracing::warn!(job = %job.id, "lease lost to another worker; result dropped");
                ("abandoned", false)
            }
            Ending::Stopped => {
                let error = JobError::new(
                    longcat_api::failure::kinds::INTERNAL,
                    "the worker shut down before the job finished",
                );
                log(
                    shared,
                    &job.id,
                    "WARN",
                    "worker shutting down: job released",
                )
                .await;
                match shared.store.release(&job.id, &self.id, error.clone()).await {
                    Ok(Some(longcat_store::JobStatus::Failed)) => ("failed", true),
                    Ok(_) => ("requeued", false),
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "releasing the job failed");
                        ("abandoned", false)
                    }
                }
            }
        };
        m::job_finished(outcome);
        m::stage_seconds("total", started.elapsed().as_secs_f64());
        m::running(-1.0);
        tracing::info!(job = %job.id, outcome, seconds = started.elapsed().as_secs_f64(), "job finished");
        if ended && job.webhook_url.is_some() {
            self.shared.webhook_wake.notify_one();
        }
    }
}

async fn recover_loop(
    shared: Arc<Shared>,
    every: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match shared.store.recover_expired().await {
                    Ok(report) => {
                        if !report.is_empty() {
                            tracing::info!(?report, "lease recovery");
                        }
                        // Jobs ended here never reach a worker: count them, and let the
                        // webhook loop send their webhooks.
                        for _ in report.failed.iter().chain(&report.timed_out) {
                            m::job_finished("failed");
                        }
                        for _ in &report.cancelled {
                            m::job_finished("cancelled");
                        }
                        shared.webhook_wake.notify_one();
                        if !report.requeued.is_empty() {
                            shared.notify.notify_waiters();
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "lease recovery failed"),
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
        }
    }
}

/// `{prefix}-{host}-{pid}`.
fn worker_id_base(prefix: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{prefix}-{host}-{}", std::process::id())
}
