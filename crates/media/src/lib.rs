//! Media handling for the LongCat-Video server.
//!
//! * [`input`]: turns an `image_url` (https URL, data URI, or one of our stored files) into an
//!   upright RGB image, with an SSRF guard, size/time caps and typed errors that map to fal's
//!   422 validation shape.
//! * [`output`]: encodes a stream of RGB frames with FFmpeg into MP4 (x264), WebM (VP9),
//!   MOV (ProRes 4444) or GIF, and describes the result as fal's `File` object.
//!
//! * `fixtures` (feature `test-fixtures`, for tests only): PNG files built in memory.
//!
//! See `docs/media.md` for the quality / write-mode mapping.

#[cfg(feature = "test-fixtures")]
pub mod fixtures;
pub mod input;
pub mod output;

pub use input::{DecodedImage, ImageInputConfig, ImageInputError, ImageLoader, LocalFiles};
pub use output::{
    EncodeError, EncodedVideo, EncoderConfig, File, VideoEncoder, VideoOptions, VideoOutputType,
    VideoQuality, VideoWriteMode,
};
