//! The endpoint's video output choices: container/codec, quality, write mode and frame rate.

use serde::{Deserialize, Serialize};

use super::EncodeError;

/// `video_output_type`: container and codec of the output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum VideoOutputType {
    /// H.264 (libx264, yuv420p) in MP4 with the index at the front (faststart).
    #[default]
    #[serde(rename = "X264 (.mp4)")]
    X264Mp4,
    /// VP9 (libvpx-vp9, yuv420p) in WebM.
    #[serde(rename = "VP9 (.webm)")]
    Vp9Webm,
    /// ProRes 4444 (prores_ks, yuva444p10le) in QuickTime.
    #[serde(rename = "PRORES4444 (.mov)")]
    Prores4444Mov,
    /// Animated GIF (palette from the first frame, ordered dithering).
    #[serde(rename = "GIF (.gif)")]
    Gif,
}

impl VideoOutputType {
    /// All output types, in the endpoint's order.
    pub const ALL: [VideoOutputType; 4] = [
        VideoOutputType::X264Mp4,
        VideoOutputType::Vp9Webm,
        VideoOutputType::Prores4444Mov,
        VideoOutputType::Gif,
    ];

    /// The wire name, e.g. `X264 (.mp4)`.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoOutputType::X264Mp4 => "X264 (.mp4)",
            VideoOutputType::Vp9Webm => "VP9 (.webm)",
            VideoOutputType::Prores4444Mov => "PRORES4444 (.mov)",
            VideoOutputType::Gif => "GIF (.gif)",
        }
    }

    /// MIME type of the output file.
    pub fn content_type(self) -> &'static str {
        match self {
            VideoOutputType::X264Mp4 => "video/mp4",
            VideoOutputType::Vp9Webm => "video/webm",
            VideoOutputType::Prores4444Mov => "video/quicktime",
            VideoOutputType::Gif => "image/gif",
        }
    }

    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            VideoOutputType::X264Mp4 => "mp4",
            VideoOutputType::Vp9Webm => "webm",
            VideoOutputType::Prores4444Mov => "mov",
            VideoOutputType::Gif => "gif",
        }
    }
}

/// `video_quality`: how much detail the encoder keeps (maps to CRF / quantiser / palette size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VideoQuality {
    /// Smallest files, visible artefacts.
    Low,
    /// Everyday quality.
    Medium,
    /// The endpoint's default: visually clean.
    #[default]
    High,
    /// Near-transparent quality, large files.
    Maximum,
}

impl VideoQuality {
    /// All qualities, lowest first.
    pub const ALL: [VideoQuality; 4] = [
        VideoQuality::Low,
        VideoQuality::Medium,
        VideoQuality::High,
        VideoQuality::Maximum,
    ];
}

/// `video_write_mode`: encoder speed versus file size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VideoWriteMode {
    /// Fastest encoding, larger files.
    Fast,
    /// The endpoint's default.
    #[default]
    Balanced,
    /// Slower encoding, smaller files.
    Small,
}

impl VideoWriteMode {
    /// All write modes, fastest first.
    pub const ALL: [VideoWriteMode; 3] = [
        VideoWriteMode::Fast,
        VideoWriteMode::Balanced,
        VideoWriteMode::Small,
    ];
}

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
