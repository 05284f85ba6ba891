//! Video output: options, per-codec settings, the streaming FFmpeg encoder, the `File` object.

mod encoder;
mod file;
mod options;
mod settings;
mod temp_file;

pub use encoder::{EncoderConfig, VideoEncoder, REQUIRED_ENCODERS};
pub use file::{EncodedVideo, File};
pub use options::{VideoOptions, VideoOutputType, VideoQuality, VideoWriteMode, MAX_FPS, MIN_FPS};
pub use settings::{ffmpeg_args, output_dimensions, CodecSettings};

/// Errors of video encoding.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// An option is out of range (e.g. fps).
    #[error("invalid video options: {0}")]
    InvalidOptions(String),
    /// Frame size unusable for the chosen codec.
    #[error("invalid frame size {width}x{height}")]
    InvalidDimensions {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// A pushed frame had the wrong byte length.
    #[error("frame has {got} bytes, expected {expected} (RGB24)")]
    InvalidFrame {
        /// `width * height * 3`.
        expected: usize,
        /// What was pushed.
        got: usize,
    },
    /// `finish` was called before any frame.
    #[error("no frames were pushed")]
    NoFrames,
    /// The FFmpeg program could not be started.
    #[error("cannot start {program} (is FFmpeg installed?): {source}")]
    Spawn {
        /// The program that was run.
        program: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The installed FFmpeg lacks encoders we need.
    #[error("ffmpeg lacks required encoders: {0}")]
    MissingEncoders(String),
    /// FFmpeg failed; `message` is what it printed on stderr.
    #[error("ffmpeg failed ({status}): {message}")]
    Ffmpeg {
        /// Exit status.
        status: String,
        /// FFmpeg's error output.
        message: String,
    },
    /// Local I/O failure (scratch file, pipe).
    #[error("video encoding I/O: {0}")]
    Io(std::io::Error),
}
