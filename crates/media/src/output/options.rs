//! The endpoint's video output choices: container/codec, quality, write mode (defined with
//! their wire names in `longcat-core`, re-exported here) and frame rate.

pub use longcat_core::video::{VideoOutputType, VideoQuality, VideoWriteMode};
use serde::{Deserialize, Serialize};

use super::EncodeError;

/// Everything the user chose about the output video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoOptions {
    /// Container and codec.
    pub output_type: VideoOutputType,
    /// Quality level.
    pub quality: VideoQuality,
    /// Speed/size trade-off.
    pub write_mode: VideoWriteMode,
    /// Frames per second of the output (1..=60).
    pub fps: u32,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            output_type: VideoOutputType::default(),
            quality: VideoQuality::default(),
            write_mode: VideoWriteMode::default(),
            fps: 30,
        }
    }
}

/// Lowest accepted frame rate.
pub const MIN_FPS: u32 = 1;
/// Highest accepted frame rate.
pub const MAX_FPS: u32 = 60;

impl VideoOptions {
    /// Checks the frame rate range.
    pub fn validate(&self) -> Result<(), EncodeError> {
        if !(MIN_FPS..=MAX_FPS).contains(&self.fps) {
            return Err(EncodeError::InvalidOptions(format!(
                "fps must be between {MIN_FPS} and {MAX_FPS}, got {}",
                self.fps
            )));
        }
        Ok(())
    }
}
