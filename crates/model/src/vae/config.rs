//! The diffusers `vae/config.json` of `AutoencoderKLWan` and what this implementation supports.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

fn default_base_dim() -> usize {
    96
}
fn default_z_dim() -> usize {
    16
}
fn default_dim_mult() -> Vec<usize> {
    vec![1, 2, 4, 4]
}
fn default_num_res_blocks() -> usize {
    2
}
fn default_temporal_downsample() -> Vec<bool> {
    vec![false, true, true]
}
fn default_channels() -> usize {
    3
}
fn default_latents_mean() -> Vec<f32> {
    vec![
        -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715,
        0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
    ]
}
fn default_latents_std() -> Vec<f32> {
    vec![
        2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652,
        1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
    ]
}
fn default_scale_temporal() -> usize {
    4
}
fn default_scale_spatial() -> usize {
    8
}

/// The diffusers `vae/config.json` of `AutoencoderKLWan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Encoder base channels.
    #[serde(default = "default_base_dim")]
    pub base_dim: usize,
    /// Decoder base channels (defaults to `base_dim`).
    #[serde(default)]
    pub decoder_base_dim: Option<usize>,
    /// Latent channels.
    #[serde(default = "default_z_dim")]
    pub z_dim: usize,
    /// Channel multipliers per level.
    #[serde(default = "default_dim_mult")]
    pub dim_mult: Vec<usize>,
    /// Residual blocks per level.
    #[serde(default = "default_num_res_blocks")]
    pub num_res_blocks: usize,
    /// Scales with attention blocks (only `[]` is supported).
    #[serde(default)]
    pub attn_scales: Vec<f64>,
    /// Temporal downsampling per level transition (the config's spelling).
    #[serde(default = "default_temporal_downsample")]
    pub temperal_downsample: Vec<bool>,
    /// Wan 2.2 residual blocks (only `false` is supported).
    #[serde(default)]
    pub is_residual: bool,
    /// Pixel channels in.
    #[serde(default = "default_channels")]
    pub in_channels: usize,
    /// Pixel channels out.
    #[serde(default = "default_channels")]
    pub out_channels: usize,
    /// Patchification (only `None` is supported).
    #[serde(default)]
    pub patch_size: Option<usize>,
    /// Per-channel latent mean.
    #[serde(default = "default_latents_mean")]
    pub latents_mean: Vec<f32>,
    /// Per-channel latent std.
    #[serde(default = "default_latents_std")]
    pub latents_std: Vec<f32>,
    /// Temporal compression.
    #[serde(default = "default_scale_temporal")]
    pub scale_factor_temporal: usize,
    /// Spatial compression.
    #[serde(default = "default_scale_spatial")]
    pub scale_factor_spatial: usize,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            base_dim: default_base_dim(),
            decoder_base_dim: None,
            z_dim: default_z_dim(),
            dim_mult: default_dim_mult(),
            num_res_blocks: default_num_res_blocks(),
            attn_scales: Vec::new(),
            temperal_downsample: default_temporal_downsample(),
            is_residual: false,
            in_channels: 3,
            out_channels: 3,
            patch_size: None,
            latents_mean: default_latents_mean(),
            latents_std: default_latents_std(),
            scale_factor_temporal: 4,
            scale_factor_spatial: 8,
        }
    }
}

fn unsupported(what: &str) -> ModelError {
    ModelError::InvalidArgument(format!("VAE config: {what} is not supported"))
}

impl VaeConfig {
    /// Reads and validates `vae/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: Self = crate::config_file::read_json(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses variants this implementation does not cover (Wan 2.2 residual blocks,
    /// patchification, attention outside the mid block, inconsistent lengths).
    pub fn validate(&self) -> Result<()> {
        if self.is_residual {
            return Err(unsupported("is_residual = true (Wan 2.2)"));
        }
        if self.patch_size.is_some() {
            return Err(unsupported("patch_size"));
        }
        if !self.attn_scales.is_empty() {
            return Err(unsupported("non-empty attn_scales"));
        }
        if self.dim_mult.is_empty() || self.temperal_downsample.len() + 1 != self.dim_mult.len() {
            return Err(unsupported(
                "temperal_downsample not one shorter than dim_mult",
            ));
        }
        if self.latents_mean.len() != self.z_dim || self.latents_std.len() != self.z_dim {
            return Err(unsupported("latents_mean/std not of length z_dim"));
        }
        Ok(())
    }

    /// Temporal compression implied by the layers (4 for Wan 2.1).
    pub fn scale_temporal(&self) -> usize {
        1 << self.temperal_downsample.iter().filter(|d| **d).count()
    }

    /// Spatial compression implied by the layers (8 for Wan 2.1).
    pub fn scale_spatial(&self) -> usize {
        1 << self.dim_mult.len().saturating_sub(1)
    }
}
