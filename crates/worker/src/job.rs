//! One job, start to end: parse the input of the job's app, fetch the image (image-to-video
//! apps), generate and encode on the model thread, upload, and build the endpoint output. Heartbeats and the cancel flag are watched
//! for the whole time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use longcat_api::{App, AppInput, I2vOutput, ValidationError, ValidationErrors};
use longcat_core::{CancelToken, RgbImage};
use longcat_media::File;
use longcat_storage::output_key;
use longcat_store::Job;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::failure::Failure;
use crate::metrics as m;
use crate::model_thread::{EnginePermit, Event, GenerateError, Generated, Task};
use crate::progress::{format_progress, ProgressThrottle};
use crate::prompt_expansion::{expand_or_keep_with, Expanded};
use crate::safety::{self, OutputCheck};
use crate::shared::Shared;

/// How a job's processing ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The endpoint output.
    Completed(Value),
    /// A failure to record.
    Failed(Failure),
    /// The job is no longer ours (lease lost): leave it alone.
    Lost,
    /// Stopped at shutdown after the grace period: release it for requeueing.
    Stopped,
}

/// Runs `job` to its ending. Never returns early without an ending.
pub(crate) async fn process(
    shared: &Shared,
    worker_id: &str,
    permit: EnginePermit,
    job: &Job,
    shutdown: &watch::Receiver<bool>,
) -> Ending {
    let cancel = CancelToken::new();
    let lost = AtomicBool::new(false);
    let stopped = AtomicBool::new(false);
    let keeper = keep_alive(
        shared,
        worker_id,
        job,
        &cancel,
        &lost,
        &stopped,
        shutdown.clone(),
    );
    let work = run(shared, permit, job, &cancel);
    let ending = tokio::select! {
        ending = work => ending,
        never = keeper => match never {},
    };
    if lost.load(Ordering::SeqCst) {
        return Ending::Lost;
    }
    if stopped.load(Ordering::SeqCst) && matches!(ending, Ending::Failed(Failure::Cancelled)) {
        return Ending::Stopped;
    }
    ending
}

/// Heartbeats, the cancel flag and the shutdown grace period, until the job's future ends.
async fn keep_alive(
    shared: &Shared,
    worker_id: &str,
    job: &Job,
    cancel: &CancelToken,
    lost: &AtomicBool,
    stopped: &AtomicBool,
    mut shutdown: watch::Receiver<bool>,
) -> std::convert::Infallible {
    let cfg = &shared.config;
    let mut heartbeat = tokio::time::interval(cfg.heartbeat_interval);
    let mut cancel_poll = tokio::time::interval(cfg.cancel_poll_interval);
    heartbeat.reset();
    let mut grace_deadline: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match grace_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = heartbeat.tick() => {
                match shared.store.heartbeat(&job.id, worker_id, cfg.lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        if !lost.swap(true, Ordering::SeqCst) {
                            tracing::warn!(job = %job.id, worker_id, "lease lost; stopping the job");
                            cancel.cancel();
                        }
                    }
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "heartbeat failed"),
                }
            }
            _ = cancel_poll.tick() => {
                if !cancel.is_cancelled() {
                    match shared.store.cancel_requested(&job.id).await {
                        Ok(true) => {
                            tracing::info!(job = %job.id, "cancellation requested");
                            cancel.cancel();
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(job = %job.id, error = %e, "reading the cancel flag failed"),
                    }
                }
            }
            Ok(()) = shutdown.changed(), if grace_deadline.is_none() => {
                if *shutdown.borrow() {
                    grace_deadline = Some(tokio::time::Instant::now() + cfg.shutdown_grace);
                    tracing::info!(job = %job.id, grace = ?cfg.shutdown_grace, "shutting down: letting the current job finish");
                }
            }
            _ = grace => {
                grace_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(86400 * 365));
                if !stopped.swap(true, Ordering::SeqCst) {
                    tracing::warn!(job = %job.id, "shutdown grace period over: stopping the job for requeueing");
                    cancel.cancel();
                }
            }
        }
    }
}

async fn run(shared: &Shared, permit: EnginePermit, job: &Job, cancel: &CancelToken) -> Ending {
    match run_inner(shared, permit, job, cancel).await {
        Ok(output) => Ending::Completed(output),
        Err(f) => Ending::Failed(f),
    }
}

async fn run_inner(
    shared: &Shared,
    permit: EnginePermit,
    job: &Job,
    cancel: &CancelToken,
) -> Result<Value, Failure> {
    let input = parse(&job.endpoint, &job.input)?;
    if shared
        .store
        .cancel_requested(&job.id)
        .await
        .unwrap_or(false)
    {
        return Err(Failure::Cancelled);
    }

    // A request asking for the check on a worker that cannot run it is refused here.
    let checker = shared
        .config
        .safety
        .for_request(input.enable_safety_checker)?;
    if input.enable_safety_checker && checker.is_none() {
        log(
            shared,
            &job.id,
            "WARN",
            "safety checker off on this worker (--safety-checker off): not checked",
        )
        .await;
    }

    // Text-to-video apps have no input image: nothing to fetch or check.
    let image = if input.app.takes_image() {
        Some(fetch_and_check(shared, job, &input, checker.as_ref(), cancel).await?)
    } else {
        None
    };
    // After the input check, so a flagged image never leaves for the expansion endpoint.
    let mut input = input;
    if input.enable_prompt_expansion {
        input.prompt =
            expand_prompt(shared, &job.id, &input.prompt, image.as_ref(), cancel).await?;
    }
    let output_check = match &checker {
        Some(c) => Some(
            OutputCheck::start(c.clone(), f64::from(input.fps))
                .map_err(|e| Failure::Internal(format!("starting the output safety check: {e}")))?,
        ),
        None => None,
    };

    let request = input.to_request(image);
    let seed = request.seed;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (reply_tx, reply_rx) = oneshot::channel();
    shared
        .engine
        .submit(Task {
            request,
            options: input.video_options(),
            encoder: shared.config.encoder.clone(),
            cancel: cancel.clone(),
            events: events_tx,
            reply: reply_tx,
            permit,
            span: tracing::Span::current(),
            output_check,
        })
        .map_err(|e| Failure::Internal(e.to_string()))?;
    log(
        shared,
        &job.id,
        "INFO",
        &format!("generating {} frames (seed {seed})", input.num_frames),
    )
    .await;
    let mut generated = relay_events(shared, &job.id, events_rx, reply_rx).await?;
    m::stage_seconds("generate", generated.generate_seconds);
    m::stage_seconds("encode", generated.encode_finish_seconds);
    log(
        shared,
        &job.id,
        "INFO",
        &format!(
            "generated {} frames {}x{}; encoded {} bytes",
            generated.summary.frames,
            generated.summary.width,
            generated.summary.height,
            generated.video.file_size
        ),
    )
    .await;

    // Sampled output frames were checked while they were generated; the last one finishes
    // here. A flagged output fails the job before the video is stored (the scratch file is
    // dropped with `generated`).
    if let Some(check) = generated.output_check.take() {
        let t = Instant::now();
        let verdict = tokio::task::spawn_blocking(move || check.finish())
            .await
            .map_err(|e| Failure::Internal(format!("output safety check: {e}")))?
            .map_err(Failure::Internal)?
            .into_result()?;
        m::stage_seconds("safety_output", t.elapsed().as_secs_f64());
        log(
            shared,
            &job.id,
            "INFO",
            &format!(
                "safety check: {} output frames passed",
                verdict.checked.len()
            ),
        )
        .await;
    }

    let t = Instant::now();
    let file = publish(shared, job, &input, &generated).await?;
    m::stage_seconds("upload", t.elapsed().as_secs_f64());
    let output = I2vOutput {
        video: file,
        seed,
        prompt: input.prompt.clone(),
    };
    serde_json::to_value(&output).map_err(|e| Failure::Internal(format!("output JSON: {e}")))
}

/// Fetches the input image of an image-to-video job and runs the input safety check on it.
async fn fetch_and_check(
    shared: &Shared,
    job: &Job,
    input: &AppInput,
    checker: Option<&std::sync::Arc<longcat_safety::SafetyChecker>>,
    cancel: &CancelToken,
) -> Result<RgbImage, Failure> {
    let t = Instant::now();
    log(shared, &job.id, "INFO", "fetching the input image").await;
    let image = tokio::select! {
        r = shared.loader.load(&input.image_url) => r.map_err(|e| Failure::Validation(ValidationErrors::from(&e)))?,
        _ = cancelled(cancel) => return Err(Failure::Cancelled),
    };
    m::stage_seconds("fetch_image", t.elapsed().as_secs_f64());
    log(
        shared,
        &job.id,
        "INFO",
        &format!("image {}x{} loaded", image.width, image.height),
    )
    .await;

    let image = RgbImage {
        width: image.width,
        height: image.height,
        data: image.data,
    };
    if let Some(checker) = checker {
        let t = Instant::now();
        safety::check_input(checker.clone(), image.clone(), &input.image_url).await?;
        m::stage_seconds("safety_input", t.elapsed().as_secs_f64());
        log(shared, &job.id, "INFO", "safety check: input image passed").await;
    }
    Ok(image)
}

/// The prompt `enable_prompt_expansion` gives (docs/worker.md, "Prompt expansion"): the
/// endpoint's rewrite, or the prompt as given with a `WARN` log line saying why.
async fn expand_prompt(
    shared: &Shared,
    job_id: &str,
    prompt: &str,
    image: Option<&RgbImage>,
    cancel: &CancelToken,
) -> Result<String, Failure> {
    let expander = shared.prompt_expander.as_ref();
    if let Some(expander) = expander {
        log(
            shared,
            job_id,
            "INFO",
            &format!("expanding the prompt with {}", expander.config().model),
        )
        .await;
    }
    let t = Instant::now();
    let step = tokio::select! {
        r = expand_or_keep_with(expander, prompt, image) => r,
        _ = cancelled(cancel) => return Err(Failure::Cancelled),
    };
    match step {
        Ok(Expanded::Rewritten(text)) => {
            m::stage_seconds("prompt_expansion", t.elapsed().as_secs_f64());
            log(
                shared,
                job_id,
                "INFO",
                &format!("prompt expanded ({} characters)", text.chars().count()),
            )
            .await;
            Ok(text)
        }
        Ok(Expanded::Kept { prompt, warning }) => {
            tracing::warn!("{warning}");
            log(shared, job_id, "WARN", &warning).await;
            Ok(prompt)
        }
        Err(e) => Err(Failure::Internal(format!("prompt expansion failed: {e}"))),
    }
}

/// The stored input as the input of the job's app, from its `endpoint` column (validated
/// again: it may come from another version).
fn parse(endpoint: &str, value: &Value) -> Result<AppInput, Failure> {
    let app = App::from_id(endpoint).ok_or_else(|| {
        Failure::Internal(format!(
            "the job's endpoint '{endpoint}' is not an app of this worker"
        ))
    })?;
    let input = longcat_api::parse_value_for(app, value).map_err(Failure::Validation)?;
    input.validate().map_err(Failure::Validation)?;
    Ok(input)
}

/// Writes the model thread's progress and log lines to the job log until it answers.
async fn relay_events(
    shared: &Shared,
    job_id: &str,
    mut events: mpsc::UnboundedReceiver<Event>,
    mut reply: oneshot::Receiver<Result<Generated, GenerateError>>,
) -> Result<Generated, Failure> {
    let mut throttle = ProgressThrottle::new(shared.config.progress_log_interval);
    let result = loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => relay(shared, job_id, &mut throttle, event).await,
            r = &mut reply => break r,
        }
    };
    while let Ok(event) = events.try_recv() {
        relay(shared, job_id, &mut throttle, event).await;
    }
    match result {
        Ok(Ok(generated)) => Ok(generated),
        Ok(Err(GenerateError::Cancelled)) => Err(Failure::Cancelled),
        Ok(Err(GenerateError::InvalidRequest(m))) => Err(Failure::Validation(
            ValidationError::body("value_error", m).into(),
        )),
        Ok(Err(GenerateError::Failed(m))) => Err(Failure::Internal(m)),
        Err(_) => Err(Failure::Internal("the model thread stopped".into())),
    }
}

async fn relay(shared: &Shared, job_id: &str, throttle: &mut ProgressThrottle, event: Event) {
    match event {
        Event::Progress(p) => {
            if throttle.admit(&p, Instant::now()) {
                log(shared, job_id, "INFO", &format_progress(&p)).await;
            }
        }
        Event::Log(line) => log(shared, job_id, "INFO", &line).await,
    }
}

/// Uploads the video (or inlines it as a data URI for `sync_mode`) and returns its `File`.
async fn publish(
    shared: &Shared,
    job: &Job,
    input: &AppInput,
    generated: &Generated,
) -> Result<File, Failure> {
    let video = &generated.video;
    if input.sync_mode {
        let max = shared.config.sync_mode_max_bytes;
        if video.file_size > max {
            return Err(Failure::Validation(
                ValidationError::field(
                    "sync_mode",
                    "value_error",
                    format!(
                        "the video is {} bytes; sync_mode returns at most {max} bytes inline \
                         (submit without sync_mode to get a download URL)",
                        video.file_size
                    ),
                )
                .into(),
            ));
        }
        let bytes = tokio::fs::read(video.path())
            .await
            .map_err(|e| Failure::Internal(format!("reading the encoded video: {e}")))?;
        let url = format!(
            "data:{};base64,{}",
            video.content_type,
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
        return Ok(video.to_file(url));
    }
    let key =
        output_key(&job.id, &video.file_name).map_err(|e| Failure::Internal(e.to_string()))?;
    let stored = shared
        .storage
        .put_file(&key, video.path(), video.content_type)
        .await
        .map_err(|e| Failure::Internal(format!("storing the video failed: {e}")))?;
    Ok(video.to_file(stored.url))
}

/// Resolves once `cancel` is tripped.
async fn cancelled(cancel: &CancelToken) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Appends a job log line; a failing store only costs the line.
pub(crate) async fn log(shared: &Shared, job_id: &str, level: &str, message: &str) {
    if let Err(e) = shared.store.append_log(job_id, level, message).await {
        tracing::warn!(job = job_id, error = %e, "writing a job log line failed");
    }
}
