//! The model thread: each worker owns one OS thread that runs `VideoGenerator::generate` and
//! pushes every frame into the streaming encoder, so neither the model nor FFmpeg's
//! back-pressure ever blocks the async runtime.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use longcat_media::{EncodedVideo, EncoderConfig, VideoEncoder, VideoOptions};
use longcat_pipeline::{
    CancelToken, GenerationRequest, GenerationSink, GenerationSummary, PipelineError, Progress,
    VideoFrame, VideoGenerator,
};
use tokio::sync::{mpsc, oneshot};

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

/// One job for the model thread.
pub(crate) struct Task {
    pub request: GenerationRequest,
    pub options: VideoOptions,
    pub encoder: EncoderConfig,
    pub cancel: CancelToken,
    pub events: mpsc::UnboundedSender<Event>,
    pub reply: oneshot::Sender<Result<Generated, GenerateError>>,
}

/// Handle to a worker's model thread; dropping it ends the thread after its current task.
pub(crate) struct ModelThread {
    tasks: std::sync::mpsc::Sender<Task>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ModelThread {
    /// Starts the thread `name` running `generator`.
    pub fn spawn(name: String, generator: Arc<dyn VideoGenerator>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Task>();
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            while let Ok(task) = rx.recv() {
                let Task {
                    request,
                    options,
                    encoder,
                    cancel,
                    events,
                    reply,
                } = task;
                let result = catch_unwind(AssertUnwindSafe(|| {
                    run(
                        generator.as_ref(),
                        &request,
                        options,
                        &encoder,
                        &cancel,
                        events,
                    )
                }))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(GenerateError::Failed(format!(
                        "the generator panicked: {what}"
                    )))
                });
                let _ = reply.send(result);
            }
        })?;
        Ok(Self {
            tasks: tx,
            handle: Some(handle),
        })
    }

    /// Queues `task` (the thread runs one task at a time).
    pub fn submit(&self, task: Task) -> Result<(), GenerateError> {
        self.tasks
            .send(task)
            .map_err(|_| GenerateError::Failed("the model thread is gone".into()))
    }

    /// Ends the thread once its current task is done and waits for it.
    pub fn join(mut self) {
        let (dead, _) = std::sync::mpsc::channel();
        self.tasks = dead;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Feeds frames to a lazily started encoder (the frame size is known at the first frame).
struct EncodingSink<'a> {
    config: &'a EncoderConfig,
    options: VideoOptions,
    encoder: Option<VideoEncoder>,
    events: mpsc::UnboundedSender<Event>,
}

impl GenerationSink for EncodingSink<'_> {
    fn progress(&mut self, progress: &Progress) {
        let _ = self.events.send(Event::Progress(progress.clone()));
    }

    fn log(&mut self, message: &str) {
        let _ = self.events.send(Event::Log(message.to_string()));
    }

    fn frame(&mut self, frame: VideoFrame) -> Result<(), PipelineError> {
        if self.encoder.is_none() {
            let enc = VideoEncoder::new(self.config, &self.options, frame.width, frame.height)
                .map_err(|e| PipelineError::Sink(e.to_string()))?;
            self.encoder = Some(enc);
        }
        let Some(enc) = self.encoder.as_mut() else {
            return Err(PipelineError::Sink("encoder missing".into()));
        };
        enc.push_frame(&frame.data)
            .map_err(|e| PipelineError::Sink(e.to_string()))
    }
}

fn run(
    generator: &dyn VideoGenerator,
    request: &GenerationRequest,
    options: VideoOptions,
    config: &EncoderConfig,
    cancel: &CancelToken,
    events: mpsc::UnboundedSender<Event>,
) -> Result<Generated, GenerateError> {
    let mut sink = EncodingSink {
        config,
        options,
        encoder: None,
        events,
    };
    let started = Instant::now();
    let summary = generator
        .generate(request, &mut sink, cancel)
        .map_err(|e| match e {
            PipelineError::Cancelled => GenerateError::Cancelled,
            PipelineError::InvalidRequest(m) => GenerateError::InvalidRequest(m),
            other => GenerateError::Failed(other.to_string()),
        })?;
    let generate_seconds = started.elapsed().as_secs_f64();
    // A cancel that arrived after the last step still wins: the user asked to stop.
    if cancel.is_cancelled() {
        return Err(GenerateError::Cancelled);
    }
    let finishing = Instant::now();
    let encoder = sink
        .encoder
        .take()
        .ok_or_else(|| GenerateError::Failed("the generator delivered no frames".into()))?;
    let video = encoder
        .finish()
        .map_err(|e| GenerateError::Failed(format!("video encoding failed: {e}")))?;
    Ok(Generated {
        summary,
        video,
        generate_seconds,
        encode_finish_seconds: finishing.elapsed().as_secs_f64(),
    })
}
