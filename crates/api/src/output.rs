//! The endpoint's output, `I2vOutput`.

use longcat_media::File;
use serde::{Deserialize, Serialize};

/// Output of `fal-ai/longcat-video/image-to-video/720p`: `{"video": File, "seed", "prompt"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct I2vOutput {
    /// The generated video (a data URI in `url` when `sync_mode` was set).
    pub video: File,
    /// The seed used (the one chosen when the input had none).
    pub seed: u64,
    /// The prompt used.
    pub prompt: String,
}
