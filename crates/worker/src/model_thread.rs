//! The engine thread: one OS thread per pool (one engine per device) owns the generator and
//! runs one job at a time, pushing every frame into the streaming encoder, so neither the
//! model nor FFmpeg's back-pressure ever blocks the async runtime. In front of it sits an
//! admission permit: a worker takes it before claiming a job, so a claimed job never waits
//! for the engine (the job store's queue is the queue). A panic in a job fails that job; the
//! generator is then recovered (rebuilt), or the engine is reported lost and no more jobs
//! are claimed.

use crate::safety::OutputCheck;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use longcat_core::{
    CancelToken, GenerationError, GenerationRequest, GenerationSink, GenerationSummary, Progress,
    VideoFrame, VideoGenerator,
};
use longcat_media::{EncodedVideo, EncoderConfig, VideoEncoder, VideoOptions};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

/// What the model thread reports while it works.
#[derive(Debug)]
pub(crate) enum Event {
    /// A progress report from the generator.
    Progress(Progress),
    /// A user-facing log line from the generator.
    Log(String),
}

/// A finished generation: the summary, the encoded file, and the time split.
#[derive(Debug)]
pub(crate) struct Generated {
    pub summary: GenerationSummary,
    pub video: EncodedVideo,
    /// Seconds inside `generate` (frames were encoded while it ran).
    pub generate_seconds: f64,
    /// Seconds spent finishing the encoder after the last frame.
    pub encode_finish_seconds: f64,
    /// The output safety check, still finishing its last frame (`None`: not asked for).
    pub output_check: Option<OutputCheck>,
}

/// Why a generation did not produce a video.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GenerateError {
    /// The cancel token was tripped.
    #[error("cancelled")]
    Cancelled,
    /// The generator rejected the request.
    #[error("{0}")]
    InvalidRequest(String),
    /// The generator, the encoder or the thread failed.
    #[error("{0}")]
    Failed(String),
}

/// The engine as the pool and `/health` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    /// Running jobs (or ready to).
    Ready,
    /// A job panicked and the generator could not be recovered: no more jobs are claimed.
    Lost(String),
}

/// The right to hand the engine one job (taken before the job is claimed).
pub(crate) struct EnginePermit {
    _held: OwnedSemaphorePermit,
}

/// One job for the model thread.
pub(crate) struct Task {
    pub request: GenerationRequest,
    pub options: VideoOptions,
    pub encoder: EncoderConfig,
    pub cancel: CancelToken,
    pub events: mpsc::UnboundedSender<Event>,
    pub reply: oneshot::Sender<Result<Generated, GenerateError>>,
    /// Released when the engine is done with the job (after a rebuild, if it panicked).
    pub permit: EnginePermit,
    /// Sees every output frame when the safety checker runs on the output.
    pub output_check: Option<OutputCheck>,
    /// The job's span (`request_id`, `worker`, `attempt`), entered on the model thread for
    /// the whole task so the pipeline's and encoder's log lines carry the request id.
    pub span: tracing::Span,
}

/// Handle to a pool's engine thread.
pub(crate) struct ModelThread {
    tasks: Mutex<Option<std::sync::mpsc::Sender<Task>>>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
    admission: Arc<Semaphore>,
    state: watch::Receiver<EngineState>,
}

impl ModelThread {
    /// Starts the thread `name`, which owns `generator` from now on.
    pub fn spawn(name: String, generator: Arc<dyn VideoGenerator>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Task>();
        let admission = Arc::new(Semaphore::new(1));
        let (state_tx, state) = watch::channel(EngineState::Ready);
        let gate = admission.clone();
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            while let Ok(task) = rx.recv() {
                let Task {
                    request,
                    options,
                    encoder,
                    cancel,
                    events,
                    reply,
                    permit,
                    span,
                    output_check,
                } = task;
                let _job = span.enter();
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    run(
                        generator.as_ref(),
                        &request,
                        options,
                        &encoder,
                        &cancel,
                        events,
                        output_check,
                    )
                }));
                let panic = match outcome {
                    Ok(result) => {
                        let _ = reply.send(result);
                        None
                    }
                    Err(panic) => Some((panic_message(panic.as_ref()), reply)),
                };
                if let Some((what, reply)) = panic {
                    tracing::error!(panic = %what, "the model panicked; recovering the engine");
                    let recovered = generator.recover();
                    let note = match &recovered {
                        Ok(()) => "the engine was rebuilt".to_string(),
                        Err(e) => format!("the engine could not be recovered: {e}"),
                    };
                    let _ = reply.send(Err(GenerateError::Failed(format!(
                        "the model panicked during generation: {what} ({note})"
                    ))));
                    if let Err(e) = recovered {
                        tracing::error!(error = %e, "model engine lost: no more jobs are taken");
                        let _ = state_tx.send(EngineState::Lost(e.to_string()));
                        gate.close();
                    }
                }
                drop(permit);
            }
        })?;
        Ok(Self {
            tasks: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
            admission,
            state,
        })
    }

    /// Waits until the engine can take a job; `Err` with the reason once the engine is lost.
    pub async fn admit(&self) -> Result<EnginePermit, String> {
        match self.admission.clone().acquire_owned().await {
            Ok(permit) => Ok(EnginePermit { _held: permit }),
            Err(_) => Err(match self.state() {
                EngineState::Lost(why) => why,
                EngineState::Ready => "the engine is shut down".into(),
            }),
        }
    }

    /// The engine's current state.
    pub fn state(&self) -> EngineState {
        self.state.borrow().clone()
    }

    /// A receiver of state changes.
    pub fn watch_state(&self) -> watch::Receiver<EngineState> {
        self.state.clone()
    }

    /// Queues `task` (the thread runs one task at a time).
    pub fn submit(&self, task: Task) -> Result<(), GenerateError> {
        let tasks = self
            .tasks
            .lock()
            .map_err(|_| GenerateError::Failed("the model thread handle is poisoned".into()))?;
        let sender = tasks
            .as_ref()
            .ok_or_else(|| GenerateError::Failed("the model thread is stopped".into()))?;
        sender
            .send(task)
            .map_err(|_| GenerateError::Failed("the model thread is gone".into()))
    }

    /// Ends the thread once its current task is done and waits for it (blocking).
    pub fn join(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.take();
        }
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// The text of a panic payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Feeds frames to a lazily started encoder (the frame size is known at the first frame).
struct EncodingSink<'a> {
    config: &'a EncoderConfig,
    options: VideoOptions,
    encoder: Option<VideoEncoder>,
    events: mpsc::UnboundedSender<Event>,
    output_check: Option<OutputCheck>,
}

impl GenerationSink for EncodingSink<'_> {
    fn progress(&mut self, progress: &Progress) {
        let _ = self.events.send(Event::Progress(progress.clone()));
    }

    fn log(&mut self, message: &str) {
        tracing::debug!(message, "generator");
        let _ = self.events.send(Event::Log(message.to_string()));
    }

    fn frame(&mut self, frame: VideoFrame) -> Result<(), GenerationError> {
        if self.encoder.is_none() {
            let enc = VideoEncoder::new(self.config, &self.options, frame.width, frame.height)
                .map_err(|e| GenerationError::Sink(e.to_string()))?;
            self.encoder = Some(enc);
        }
        let Some(enc) = self.encoder.as_mut() else {
            return Err(GenerationError::Sink("encoder missing".into()));
        };
        if let Some(check) = self.output_check.as_mut() {
            check.offer(&frame);
        }
        enc.push_frame(&frame.data)
            .map_err(|e| GenerationError::Sink(e.to_string()))
    }
}

fn run(
    generator: &dyn VideoGenerator,
    request: &GenerationRequest,
    options: VideoOptions,
    config: &EncoderConfig,
    cancel: &CancelToken,
    events: mpsc::UnboundedSender<Event>,
    output_check: Option<OutputCheck>,
) -> Result<Generated, GenerateError> {
    let mut sink = EncodingSink {
        config,
        options,
        encoder: None,
        events,
        output_check,
    };
    let started = Instant::now();
    let summary = generator
        .generate(request, &mut sink, cancel)
        .map_err(|e| match e {
            GenerationError::Cancelled => GenerateError::Cancelled,
            GenerationError::InvalidRequest(m) => GenerateError::InvalidRequest(m),
            other => GenerateError::Failed(other.to_string()),
        })?;
    let generate_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        frames = summary.frames,
        width = summary.width,
        height = summary.height,
        seconds = generate_seconds,
        "generation finished"
    );
    // A cancel that arrived after the last step still wins: the user asked to stop.
    if cancel.is_cancelled() {
        return Err(GenerateError::Cancelled);
    }
    let _encode = tracing::info_span!("video_encode").entered();
    let finishing = Instant::now();
    let encoder = sink
        .encoder
        .take()
        .ok_or_else(|| GenerateError::Failed("the generator delivered no frames".into()))?;
    let video = encoder
        .finish()
        .map_err(|e| GenerateError::Failed(format!("video encoding failed: {e}")))?;
    let encode_finish_seconds = finishing.elapsed().as_secs_f64();
    tracing::info!(
        bytes = video.file_size,
        seconds = encode_finish_seconds,
        "video encoded"
    );
    Ok(Generated {
        summary,
        video,
        generate_seconds,
        encode_finish_seconds,
        output_check: sink.output_check.take(),
    })
}
