//! The generation contract: the request, progress, the sink, cancellation and the
//! [`VideoGenerator`] trait the workers call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::{App, AspectRatio};
use crate::error::GenerationError;
use crate::frame::{RgbImage, VideoFrame};
use crate::wire::wire_enum;

wire_enum! {
    /// `acceleration` as the endpoint names it.
    pub enum Acceleration {
        /// No acceleration: full stage 1.
        None = "none",
        /// The endpoint's default.
        #[default]
        Regular = "regular",
    }
}

/// One generation job, in the endpoint's terms (see the README for the mapping).
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The app asked for: decides the stage plan (refinement or not, distilled or not).
    pub app: App,
    /// The condition image, already fetched and decoded: `Some` for the image-to-video
    /// apps, `None` for text-to-video.
    pub image: Option<RgbImage>,
    /// The frame shape of text-to-video (image-to-video takes the image's shape).
    pub aspect_ratio: AspectRatio,
    /// Text prompt.
    pub prompt: String,
    /// Negative prompt (used with CFG).
    pub negative_prompt: String,
    /// Stage-1 frames at 15 fps (within [`crate::limits::NUM_FRAMES`]).
    pub num_frames: u32,
    /// Stage-1 denoising steps.
    pub num_inference_steps: u32,
    /// Refinement schedule length (only steps below `t_thresh` run).
    pub num_refine_inference_steps: u32,
    /// Stage-1 classifier-free guidance scale.
    pub guidance_scale: f32,
    /// Seed; the same seed gives the same video.
    pub seed: u64,
    /// Acceleration mode.
    pub acceleration: Acceleration,
}

/// Which part of the work is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Text encoding.
    EncodeText,
    /// Condition image encoding.
    EncodeImage,
    /// Stage-1 (480p/15fps) denoising.
    Base,
    /// Refinement (720p/30fps) denoising.
    Refine,
    /// VAE decoding.
    Decode,
}

/// One progress report (sent after every denoising step).
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Current stage.
    pub stage: Stage,
    /// Video segment (0-based) for long videos.
    pub segment: u32,
    /// Number of segments.
    pub segments: u32,
    /// Steps done in this stage of this segment.
    pub step: u32,
    /// Steps in this stage of this segment.
    pub total: u32,
    /// Estimated time left for the whole job, when known.
    pub eta: Option<Duration>,
}

/// Receives what a generation produces, as it is produced.
pub trait GenerationSink: Send {
    /// A progress report.
    fn progress(&mut self, progress: &Progress);
    /// A log line meant for the user.
    fn log(&mut self, message: &str);
    /// The next frame; an error stops the generation.
    fn frame(&mut self, frame: VideoFrame) -> Result<(), GenerationError>;
}

/// Cooperative cancellation, checked between denoising steps.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> Result<(), GenerationError> {
        if self.is_cancelled() {
            Err(GenerationError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// What the generator says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Human name, e.g. `LongCat-Video (weights: /models/longcat)`.
    pub name: String,
    /// True for the built-in random tiny model, whose output is noise.
    pub smoke_test_model: bool,
    /// Frames per second of the frames the generator delivers for the 720p apps (30); the
    /// 480p apps deliver stage-1 frames at 15 ([`crate::App::native_fps`] gives each app's).
    pub native_fps: u32,
}

/// What a finished generation reports.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationSummary {
    /// Frames delivered.
    pub frames: u32,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// The seed used.
    pub seed: u64,
}

/// A video generator the server's workers call (from their own threads).
pub trait VideoGenerator: Send + Sync {
    /// What model this is.
    fn info(&self) -> ModelInfo;
    /// Runs one generation, delivering frames to `sink` as they are ready.
    fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationSummary, GenerationError>;
    /// Called after a [`VideoGenerator::generate`] call panicked: restore or rebuild what
    /// the panic may have left half-changed. `Err` means the generator cannot run again
    /// (its caller then stops taking jobs and reports it).
    fn recover(&self) -> Result<(), GenerationError> {
        Ok(())
    }
}
