//! The encoded result and fal's `File` output object.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::options::VideoOutputType;
use super::temp_file::TempFile;

/// fal's `File` object as returned in the endpoint output (`video`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Where the file can be downloaded (filled by the storage layer; a data URI in sync mode).
    pub url: String,
    /// MIME type, e.g. `video/mp4`.
    pub content_type: String,
    /// File name, e.g. `output.mp4`.
    pub file_name: String,
    /// Size in bytes.
    pub file_size: u64,
}

/// A finished video, held in a scratch file that is deleted when this is dropped
/// (unless [`EncodedVideo::persist`] moved it).
#[derive(Debug)]
pub struct EncodedVideo {
    pub(crate) file: TempFile,
    /// The container/codec.
    pub output_type: VideoOutputType,
    /// MIME type (`video/mp4`, `video/webm`, `video/quicktime`, `image/gif`).
    pub content_type: &'static str,
    /// Suggested file name, `output.<ext>`.
    pub file_name: String,
    /// Size in bytes.
    pub file_size: u64,
    /// Width of the encoded video (x264 crops odd sizes to even).
    pub width: u32,
    /// Height of the encoded video.
    pub height: u32,
    /// Frames encoded.
    pub frames: u32,
    /// Frames per second.
    pub fps: u32,
}

impl EncodedVideo {
    /// Where the encoded file lies now.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Reads the whole file into memory.
    pub fn read_bytes(&self) -> io::Result<Vec<u8>> {
        std::fs::read(self.file.path())
    }

    /// Moves the file to `dest`; afterwards it is kept and [`EncodedVideo::path`] is `dest`.
    pub fn persist(&mut self, dest: &Path) -> io::Result<()> {
        self.file.persist(dest)
    }

    /// The `File` object for this video, once the storage layer knows its URL.
    pub fn to_file(&self, url: impl Into<String>) -> File {
        File {
            url: url.into(),
            content_type: self.content_type.to_string(),
            file_name: self.file_name.clone(),
            file_size: self.file_size,
        }
    }
}
