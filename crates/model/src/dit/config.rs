//! The DiT configuration (`dit/config.json` of the official checkpoint).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bsa::BsaParams;
use crate::error::{ModelError, Result};

/// Configuration of `LongCatVideoTransformer3DModel`; field names match the official JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DitConfig {
    /// Latent channels in (16).
    #[serde(default = "default_channels")]
    pub in_channels: usize,
    /// Latent channels out (16).
    #[serde(default = "default_channels")]
    pub out_channels: usize,
    /// Transformer width.
    pub hidden_size: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Width of the text encoder states.
    pub caption_channels: usize,
    /// FFN ratio before the SwiGLU 2/3 shrink and rounding.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
    /// Width of the timestep embedding that drives adaLN.
    pub adaln_tembed_dim: usize,
    /// Sinusoidal timestep embedding size (256).
    #[serde(default = "default_freq")]
    pub frequency_embedding_size: usize,
    /// Patch size (t, h, w); t must be 1.
    #[serde(default = "default_patch")]
    pub patch_size: [usize; 3],
    /// Zero padded text tokens and attend all of them (official: true) instead of dropping them.
    #[serde(default)]
    pub text_tokens_zero_pad: bool,
    /// Whether block sparse attention starts enabled.
    #[serde(default)]
    pub enable_bsa: bool,
    /// Block sparse attention parameters.
    #[serde(default)]
    pub bsa_params: Option<BsaParams>,
    /// Context-parallel split (only `[1, 1]` is supported here).
    #[serde(default)]
    pub cp_split_hw: Option<[usize; 2]>,
}

fn default_channels() -> usize {
    16
}
fn default_mlp_ratio() -> usize {
    4
}
fn default_freq() -> usize {
    256
}
fn default_patch() -> [usize; 3] {
    [1, 2, 2]
}

impl DitConfig {
    /// Reads a config JSON file (extra keys such as `_class_name` are ignored).
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_file::read_json(path)
    }

    /// Parses a config from a JSON value.
    pub fn from_value(value: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(value.clone()).map_err(|source| ModelError::Config {
            path: "<json value>".into(),
            source,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// SwiGLU hidden width: `2/3 * hidden*mlp_ratio` rounded up to a multiple of 256.
    pub fn ffn_hidden(&self) -> usize {
        let h = 2 * self.hidden_size * self.mlp_ratio / 3;
        h.div_ceil(256) * 256
    }

    /// Checks the invariants the forward relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidArgument(m));
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        if !self.head_dim().is_multiple_of(8) {
            return bad(format!(
                "head_dim {} must be a multiple of 8",
                self.head_dim()
            ));
        }
        if self.patch_size[0] != 1 || self.patch_size[1] == 0 || self.patch_size[2] == 0 {
            return bad(format!("unsupported patch_size {:?}", self.patch_size));
        }
        if let Some([a, b]) = self.cp_split_hw {
            if a * b > 1 {
                return bad(format!(
                    "context parallel split {:?} is not supported",
                    [a, b]
                ));
            }
        }
        Ok(())
    }
}
