//! The contract between the web side (`api`, `server`, `worker`, `media`) and the model
//! side (`pipeline`): what a generator is asked, what it reports and returns, and the limits
//! of its input. Nothing here depends on candle, so the web side builds without it.

pub mod app;
pub mod error;
pub mod frame;
pub mod generator;
pub mod limits;
pub mod settings;
pub mod video;
pub mod wire;

pub use app::{App, AspectRatio, Resolution, Task};
pub use error::{GenerationError, JobErrorKind};
pub use frame::{RgbImage, VideoFrame};
pub use generator::{
    Acceleration, CancelToken, GenerationRequest, GenerationSink, GenerationSummary, ModelInfo,
    Progress, Stage, VideoGenerator,
};
pub use settings::{TextEncoderPolicy, VaeTiling};
pub use video::{VideoOutputType, VideoQuality, VideoWriteMode};
pub use wire::{UnknownWireName, WireEnum};
