//! [`WorkerPool`]: N workers, each an async task on the caller's runtime that owns one model
//! OS thread, plus the periodic lease recovery.

use std::sync::Arc;
use std::time::Instant;

use longcat_media::ImageLoader;
use longcat_pipeline::VideoGenerator;
use longcat_storage::{Storage, StoredImageFiles};
use longcat_store::{Job, JobStore};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::WorkerConfig;
use crate::failure::{error_outcome, job_outcome, Failure};
use crate::job::{log, process, Ending};
use crate::metrics as m;
use crate::model_thread::ModelThread;
use crate::webhook::{
    webhook_body, AttemptRecorder, DeliveryAttempt, RecordFuture, WebhookError, WebhookOutcome,
    WebhookSender,
};
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
}

/// What every worker of a pool shares.
pub(crate) struct Shared {
    pub store: JobStore,
    pub storage: Storage,
    pub loader: ImageLoader,
    pub webhooks: WebhookSender,
    pub config: WorkerConfig,
    pub notify: Notify,
    pub deliveries: TaskTracker,
}

/// A set of workers running jobs from a [`JobStore`].
pub struct WorkerPool {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    recovery: Option<JoinHandle<()>>,
    ids: Vec<String>,
}

impl WorkerPool {
    /// Starts `count` workers on the current tokio runtime.
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

    /// Starts `count` workers on the current tokio runtime.
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
        let shared = Arc::new(Shared {
            store,
            storage,
            loader,
            webhooks,
            config,
            notify: Notify::new(),
            deliveries: TaskTracker::new(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let base = worker_id_base(&shared.config.worker_id_prefix);
        let mut workers = Vec::with_capacity(count);
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let id = format!("{base}-{n}");
            let model = ModelThread::spawn(format!("model-{n}"), generator.clone())?;
            let worker = Worker {
                id: id.clone(),
                shared: shared.clone(),
                model,
            };
            workers.push(tokio::spawn(worker.run(shutdown_rx.clone())));
            ids.push(id);
        }
        let recovery = shared
            .config
            .recover_interval
            .map(|every| tokio::spawn(recover_loop(shared.clone(), every, shutdown_rx.clone())));
        tracing::info!(count, ?ids, "worker pool started");
        Ok(Self {
            shared,
            shutdown,
            workers,
            recovery,
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

    /// Stops claiming, lets running jobs finish (up to `shutdown_grace`, after which they are
    /// stopped and left to lease recovery), stops webhook retries, and waits for everything.
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
        self.shared.deliveries.close();
        self.shared.deliveries.wait().await;
        tracing::info!("worker pool stopped");
    }
}

struct Worker {
    id: String,
    shared: Arc<Shared>,
    model: ModelThread,
}

impl Worker {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let cfg = &self.shared.config;
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Register interest before looking, so a submit between the claim and the wait
            // is not missed.
            let notified = self.shared.notify.notified();
            match self.shared.store.claim_next(&self.id, cfg.lease).await {
                Ok(Some(job)) => {
                    self.run_job(job, &shutdown).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(worker = %self.id, error = %e, "claiming a job failed"),
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(cfg.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        let model = self.model;
        let _ = tokio::task::spawn_blocking(move || model.join()).await;
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn run_job(&self, job: Job, shutdown: &watch::Receiver<bool>) {
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

        let ending = process(shared, &self.id, &self.model, &job, shutdown).await;
        let (outcome, webhook) = match ending {
            Ending::Completed(output) => {
                match shared
                    .store
                    .complete(&job.id, &self.id, output.clone())
                    .await
                {
                    Ok(true) => {
                        log(shared, &job.id, "INFO", "completed").await;
                        ("completed", Some(WebhookOutcome::Ok(output)))
                    }
                    Ok(false) => ("abandoned", None),
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "recording completion failed");
                        ("abandoned", None)
                    }
                }
            }
            Ending::Failed(Failure::Cancelled) => {
                log(shared, &job.id, "INFO", "cancelled").await;
                match shared.store.mark_cancelled(&job.id, &self.id).await {
                    Ok(true) => (
                        "cancelled",
                        Some(error_outcome(&Failure::Cancelled.to_job_error())),
                    ),
                    Ok(false) => ("abandoned", None),
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "recording cancellation failed");
                        ("abandoned", None)
                    }
                }
            }
            Ending::Failed(failure) => {
                let message = failure.message();
                tracing::warn!(job = %job.id, kind = failure.kind(), %message, "job failed");
                log(shared, &job.id, "ERROR", &format!("failed: {message}")).await;
                let error = failure.to_job_error();
                match shared.store.fail(&job.id, &self.id, error.clone()).await {
                    Ok(true) => ("failed", Some(error_outcome(&error))),
                    Ok(false) => ("abandoned", None),
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "recording the failure failed");
                        ("abandoned", None)
                    }
                }
            }
            Ending::Lost => {
                tracing::warn!(job = %job.id, "lease lost to another worker; result dropped");
                ("abandoned", None)
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
                    Ok(Some(longcat_store::JobStatus::Failed)) => {
                        ("failed", Some(error_outcome(&error)))
                    }
                    Ok(_) => ("requeued", None),
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "releasing the job failed");
                        ("abandoned", None)
                    }
                }
            }
        };
        m::job_finished(outcome);
        m::stage_seconds("total", started.elapsed().as_secs_f64());
        m::running(-1.0);
        tracing::info!(job = %job.id, outcome, seconds = started.elapsed().as_secs_f64(), "job finished");
        if let Some(outcome) = webhook {
            send_webhook(&self.shared, &job, outcome, shutdown.clone());
        }
    }
}

/// Sends `job`'s webhook in the background (tracked, so shutdown waits for it).
fn send_webhook(
    shared: &Arc<Shared>,
    job: &Job,
    outcome: WebhookOutcome,
    stop: watch::Receiver<bool>,
) {
    let Some(url) = job.webhook_url.clone() else {
        return;
    };
    let shared2 = shared.clone();
    let id = job.id.clone();
    let key_id = job.key_id.clone();
    shared.deliveries.spawn(async move {
        let body = webhook_body(&id, &outcome);
        let recorder = StoreRecorder(shared2.store.clone());
        let report = shared2
            .webhooks
            .deliver(&url, &id, key_id.as_deref(), &body, &recorder, stop)
            .await;
        m::webhook_finished(report.delivered);
    });
}

/// Records webhook attempts in the job store.
struct StoreRecorder(JobStore);

impl AttemptRecorder for StoreRecorder {
    fn record<'a>(&'a self, request_id: &'a str, a: &'a DeliveryAttempt) -> RecordFuture<'a> {
        Box::pin(async move {
            if let Err(e) = self
                .0
                .record_webhook_attempt(request_id, a.attempt, a.status_code, a.error.as_deref())
                .await
            {
                tracing::warn!(job = request_id, error = %e, "recording a webhook attempt failed");
            }
        })
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
                        // Jobs ended here never reach a worker: send their webhooks now.
                        let ended = report
                            .failed
                            .iter()
                            .chain(&report.cancelled)
                            .chain(&report.timed_out);
                        for id in ended {
                            notify_ended(&shared, id, &shutdown).await;
                        }
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

/// Sends the webhook of a job that recovery ended (failed, cancelled or timed out).
async fn notify_ended(shared: &Arc<Shared>, id: &str, shutdown: &watch::Receiver<bool>) {
    match shared.store.get(id).await {
        Ok(Some(job)) => {
            match job.status {
                longcat_store::JobStatus::Failed => m::job_finished("failed"),
                longcat_store::JobStatus::Cancelled => m::job_finished("cancelled"),
                _ => {}
            }
            if let Some(outcome) = job_outcome(&job) {
                send_webhook(shared, &job, outcome, shutdown.clone());
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(job = id, error = %e, "reading a recovered job failed"),
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
