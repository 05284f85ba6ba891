//! The Wan2.1 causal 3D VAE (`AutoencoderKLWan`, the non-residual 2.1 variant).
//!
//! The public API speaks `[B, C, F, H, W]` like the reference; internally every tensor is
//! frame-major `[B, F, C, H, W]` so causal convolutions and per-frame 2D layers run on
//! views. Encoding runs frame 0 alone and then chunks of 4 frames; decoding runs one
//! latent frame at a time (yielding 1, then 4 frames each). Causal convolutions carry the
//! last `CACHE_T = 2` input frames from one chunk to the next in a [`FeatCache`].

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::conv3d::{CausalConv3d, Conv3dSpec};
use crate::{ModelError, Result};

/// Frames each causal convolution keeps from the previous chunk.
const CACHE_T: usize = 2;

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
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = serde_json::from_str(&text).map_err(|source| ModelError::Config {
            path: path.to_path_buf(),
            source,
        })?;
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

/// One cache slot: nothing yet, the upsampler's "first chunk seen" marker, or frames.
#[derive(Debug, Clone, Default)]
enum Slot {
    #[default]
    Empty,
    Rep,
    Frames(Tensor),
}

/// Per-layer state carried between chunks; slots are handed out in call order.
#[derive(Debug, Default)]
pub struct FeatCache {
    slots: Vec<Slot>,
    idx: usize,
}

impl FeatCache {
    /// Starts the next chunk (slot order restarts, contents are kept).
    fn rewind(&mut self) {
        self.idx = 0;
    }

    fn next(&mut self) -> &mut Slot {
        if self.idx == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        let i = self.idx;
        self.idx += 1;
        &mut self.slots[i]
    }
}

fn last_frames(x: &Tensor, n: usize) -> Result<Tensor> {
    let t = x.dim(1)?;
    let n = n.min(t);
    Ok(x.narrow(1, t - n, n)?.copy()?)
}

/// Runs a causal conv on `x`, using and refreshing one cache slot.
fn cached_conv(conv: &CausalConv3d, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
    let slot = cache.next();
    let past = match std::mem::take(slot) {
        Slot::Frames(p) => Some(p),
        _ => None,
    };
    let mut keep = last_frames(x, CACHE_T)?;
    if keep.dim(1)? < CACHE_T {
        if let Some(p) = &past {
            keep = Tensor::cat(&[&last_frames(p, 1)?, &keep], 1)?;
        }
    }
    let y = conv.forward(x, past.as_ref())?;
    *slot = Slot::Frames(keep);
    Ok(y)
}

/// Wan RMS norm over channels: `x / max(‖x‖, 1e-12) · √C · γ`.
#[derive(Debug, Clone)]
struct RmsNorm {
    gamma: Tensor,
    scale: f64,
}

impl RmsNorm {
    /// `images` selects the stored gamma shape (`[C,1,1]` vs `[C,1,1,1]`).
    fn new(dim: usize, images: bool, vb: VarBuilder) -> Result<Self> {
        let gamma = if images {
            vb.get((dim, 1, 1), "gamma")?
        } else {
            vb.get((dim, 1, 1, 1), "gamma")?.reshape((dim, 1, 1))?
        };
        Ok(Self {
            gamma,
            scale: (dim as f64).sqrt(),
        })
    }

    /// Normalizes over the channel dim of `[.., C, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c_dim = x.rank() - 3;
        let norm = x
            .sqr()?
            .sum_keepdim(c_dim)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        let y = x.broadcast_div(&norm)?.affine(self.scale, 0.0)?;
        Ok(y.broadcast_mul(&self.gamma)?)
    }
}

/// Wan residual block: norm, SiLU, causal conv ×2, plus a 1×1×1 shortcut when widths differ.
#[derive(Debug, Clone)]
struct ResBlock {
    norm1: RmsNorm,
    conv1: CausalConv3d,
    norm2: RmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResBlock {
    fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let shortcut = if in_dim != out_dim {
            Some(CausalConv3d::new(
                Conv3dSpec::cube(in_dim, out_dim, 1, 0),
                vb.pp("conv_shortcut"),
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: RmsNorm::new(in_dim, false, vb.pp("norm1"))?,
            conv1: CausalConv3d::new(Conv3dSpec::cube(in_dim, out_dim, 3, 1), vb.pp("conv1"))?,
            norm2: RmsNorm::new(out_dim, false, vb.pp("norm2"))?,
            conv2: CausalConv3d::new(Conv3dSpec::cube(out_dim, out_dim, 3, 1), vb.pp("conv2"))?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let h = match &self.shortcut {
            Some(s) => s.forward(x, None)?,
            None => x.clone(),
        };
        let y = self.norm1.forward(x)?.silu()?;
        let y = cached_conv(&self.conv1, &y, cache)?;
        let y = self.norm2.forward(&y)?.silu()?;
        let y = cached_conv(&self.conv2, &y, cache)?;
        Ok((y + h)?)
    }
}

/// Single-head self-attention within each frame.
#[derive(Debug, Clone)]
struct AttnBlock {
    norm: RmsNorm,
    qkv_w: Tensor,
    qkv_b: Tensor,
    proj_w: Tensor,
    proj_b: Tensor,
}

impl AttnBlock {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let qkv = vb.pp("to_qkv");
        let proj = vb.pp("proj");
        Ok(Self {
            norm: RmsNorm::new(dim, true, vb.pp("norm"))?,
            qkv_w: qkv
                .get((3 * dim, dim, 1, 1), "weight")?
                .reshape((3 * dim, dim))?
                .t()?,
            qkv_b: qkv.get(3 * dim, "bias")?,
            proj_w: proj
                .get((dim, dim, 1, 1), "weight")?
                .reshape((dim, dim))?
                .t()?,
            proj_b: proj.get(dim, "bias")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let n = b * t;
        let y = self.norm.forward(&x.reshape((n, c, h, w))?)?;
        // [n, hw, c] tokens
        let tokens = y.reshape((n, c, h * w))?.transpose(1, 2)?.contiguous()?;
        let qkv = tokens
            .broadcast_matmul(&self.qkv_w)?
            .broadcast_add(&self.qkv_b)?;
        let q = qkv.narrow(D::Minus1, 0, c)?.contiguous()?;
        let k = qkv.narrow(D::Minus1, c, c)?.contiguous()?;
        let v = qkv.narrow(D::Minus1, 2 * c, c)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (c as f64).sqrt()))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?;
        let out = out
            .broadcast_matmul(&self.proj_w)?
            .broadcast_add(&self.proj_b)?;
        let out = out.transpose(1, 2)?.reshape((b, t, c, h, w))?;
        Ok((out + x)?)
    }
}

/// Residual block, attention, residual block.
#[derive(Debug, Clone)]
struct MidBlock {
    res0: ResBlock,
    attn: AttnBlock,
    res1: ResBlock,
}

impl MidBlock {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            res0: ResBlock::new(dim, dim, vb.pp("resnets.0"))?,
            attn: AttnBlock::new(dim, vb.pp("attentions.0"))?,
            res1: ResBlock::new(dim, dim, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let x = self.res0.forward(x, cache)?;
        let x = self.attn.forward(&x)?;
        self.res1.forward(&x, cache)
    }
}

/// What a [`Resample`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResampleMode {
    Up2d,
    Up3d,
    Down2d,
    Down3d,
}

/// Spatial ×2 up/down sampling (per frame), with a causal temporal conv for the 3D modes.
#[derive(Debug, Clone)]
struct Resample {
    mode: ResampleMode,
    conv_w: Tensor,
    conv_b: Tensor,
    time_conv: Option<CausalConv3d>,
}

impl Resample {
    fn new(dim: usize, mode: ResampleMode, vb: VarBuilder) -> Result<Self> {
        let out = match mode {
            ResampleMode::Up2d | ResampleMode::Up3d => dim / 2,
            ResampleMode::Down2d | ResampleMode::Down3d => dim,
        };
        let rv = vb.pp("resample.1");
        let conv_w = rv.get((out, dim, 3, 3), "weight")?;
        let conv_b = rv.get(out, "bias")?.reshape((1, out, 1, 1))?;
        let time_conv = match mode {
            ResampleMode::Up3d => Some(CausalConv3d::new(
                Conv3dSpec {
                    in_channels: dim,
                    out_channels: 2 * dim,
                    kernel: (3, 1, 1),
                    stride_t: 1,
                    padding: (1, 0, 0),
                },
                vb.pp("time_conv"),
            )?),
            ResampleMode::Down3d => Some(CausalConv3d::new(
                Conv3dSpec {
                    in_channels: dim,
                    out_channels: dim,
                    kernel: (3, 1, 1),
                    stride_t: 2,
                    padding: (0, 0, 0),
                },
                vb.pp("time_conv"),
            )?),
            _ => None,
        };
        Ok(Self {
            mode,
            conv_w,
            conv_b,
            time_conv,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let mut x = x.clone();
        if let (ResampleMode::Up3d, Some(tc)) = (self.mode, &self.time_conv) {
            x = Self::time_upsample(tc, &x, cache)?;
        }
        let (b, t, c, h, w) = x.dims5()?;
        let flat = x.reshape((b * t, c, h, w))?;
        let y = match self.mode {
            ResampleMode::Up2d | ResampleMode::Up3d => flat
                .upsample_nearest2d(2 * h, 2 * w)?
                .conv2d(&self.conv_w, 1, 1, 1, 1)?,
            ResampleMode::Down2d | ResampleMode::Down3d => flat
                .pad_with_zeros(2, 0, 1)?
                .pad_with_zeros(3, 0, 1)?
                .conv2d(&self.conv_w, 0, 2, 1, 1)?,
        };
        let y = y.broadcast_add(&self.conv_b)?;
        let (_, co, ho, wo) = y.dims4()?;
        let mut y = y.reshape((b, t, co, ho, wo))?;
        if let (ResampleMode::Down3d, Some(tc)) = (self.mode, &self.time_conv) {
            let slot = cache.next();
            match std::mem::take(slot) {
                Slot::Frames(p) => {
                    let keep = last_frames(&y, 1)?;
                    let joined = Tensor::cat(&[&last_frames(&p, 1)?, &y], 1)?;
                    y = tc.forward(&joined, None)?;
                    *slot = Slot::Frames(keep);
                }
                _ => *slot = Slot::Frames(y.copy()?),
            }
        }
        Ok(y)
    }

    /// Doubles the frame count with the time conv (skipped on the very first chunk).
    fn time_upsample(tc: &CausalConv3d, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let slot = cache.next();
        let past = match std::mem::take(slot) {
            Slot::Empty => {
                *slot = Slot::Rep;
                return Ok(x.clone());
            }
            Slot::Rep => None,
            Slot::Frames(p) => Some(p),
        };
        let mut keep = last_frames(x, CACHE_T)?;
        if keep.dim(1)? < CACHE_T {
            let prev = match &past {
                Some(p) => last_frames(p, 1)?,
                None => keep.zeros_like()?,
            };
            keep = Tensor::cat(&[&prev, &keep], 1)?;
        }
        let y = tc.forward(x, past.as_ref())?;
        *slot = Slot::Frames(keep);
        let (b, t, c2, h, w) = y.dims5()?;
        let c = c2 / 2;
        // channels [j·C + c] of frame t become channel c of frame 2t + j
        Ok(y.reshape((b, t * 2, c, h, w))?)
    }
}

/// One encoder stage entry.
#[derive(Debug, Clone)]
enum DownLayer {
    Res(ResBlock),
    Resample(Resample),
}

/// The causal 3D encoder (`WanEncoder3d`).
#[derive(Debug, Clone)]
struct Encoder {
    conv_in: CausalConv3d,
    down: Vec<DownLayer>,
    mid: MidBlock,
    norm_out: RmsNorm,
    conv_out: CausalConv3d,
}

impl Encoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.base_dim;
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| m * dim)
            .collect();
        let conv_in = CausalConv3d::new(
            Conv3dSpec::cube(cfg.in_channels, dims[0], 3, 1),
            vb.pp("conv_in"),
        )?;
        let levels = cfg.dim_mult.len();
        let mut down = Vec::new();
        let dvb = vb.pp("down_blocks");
        for i in 0..levels {
            let mut in_dim = dims[i];
            let out_dim = dims[i + 1];
            for _ in 0..cfg.num_res_blocks {
                let n = down.len();
                down.push(DownLayer::Res(ResBlock::new(in_dim, out_dim, dvb.pp(n))?));
                in_dim = out_dim;
            }
            if i != levels - 1 {
                let mode = if cfg.temperal_downsample[i] {
                    ResampleMode::Down3d
                } else {
                    ResampleMode::Down2d
                };
                let n = down.len();
                down.push(DownLayer::Resample(Resample::new(
                    out_dim,
                    mode,
                    dvb.pp(n),
                )?));
            }
        }
        let top = dims[levels];
        Ok(Self {
            conv_in,
            down,
            mid: MidBlock::new(top, vb.pp("mid_block"))?,
            norm_out: RmsNorm::new(top, false, vb.pp("norm_out"))?,
            conv_out: CausalConv3d::new(
                Conv3dSpec::cube(top, 2 * cfg.z_dim, 3, 1),
                vb.pp("conv_out"),
            )?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let mut x = cached_conv(&self.conv_in, x, cache)?;
        for layer in &self.down {
            x = match layer {
                DownLayer::Res(r) => r.forward(&x, cache)?,
                DownLayer::Resample(r) => r.forward(&x, cache)?,
            };
        }
        let x = self.mid.forward(&x, cache)?;
        let x = self.norm_out.forward(&x)?.silu()?;
        cached_conv(&self.conv_out, &x, cache)
    }
}

/// Residual blocks then an optional upsampler (`WanUpBlock`).
#[derive(Debug, Clone)]
struct UpBlock {
    resnets: Vec<ResBlock>,
    upsampler: Option<Resample>,
}

/// The causal 3D decoder (`WanDecoder3d`).
#[derive(Debug, Clone)]
struct Decoder {
    conv_in: CausalConv3d,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: RmsNorm,
    conv_out: CausalConv3d,
}

impl Decoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.decoder_base_dim.unwrap_or(cfg.base_dim);
        let levels = cfg.dim_mult.len();
        let dims: Vec<usize> = std::iter::once(cfg.dim_mult[levels - 1])
            .chain(cfg.dim_mult.iter().rev().copied())
            .map(|m| m * dim)
            .collect();
        let temporal_up: Vec<bool> = cfg.temperal_downsample.iter().rev().copied().collect();
        let conv_in =
            CausalConv3d::new(Conv3dSpec::cube(cfg.z_dim, dims[0], 3, 1), vb.pp("conv_in"))?;
        let mid = MidBlock::new(dims[0], vb.pp("mid_block"))?;
        let mut up = Vec::with_capacity(levels);
        for i in 0..levels {
            let mut in_dim = if i > 0 { dims[i] / 2 } else { dims[i] };
            let out_dim = dims[i + 1];
            let bvb = vb.pp("up_blocks").pp(i);
            let mut resnets = Vec::with_capacity(cfg.num_res_blocks + 1);
            for j in 0..=cfg.num_res_blocks {
                resnets.push(ResBlock::new(in_dim, out_dim, bvb.pp("resnets").pp(j))?);
                in_dim = out_dim;
            }
            let upsampler = if i != levels - 1 {
                let mode = if temporal_up[i] {
                    ResampleMode::Up3d
                } else {
                    ResampleMode::Up2d
                };
                Some(Resample::new(out_dim, mode, bvb.pp("upsamplers.0"))?)
            } else {
                None
            };
            up.push(UpBlock { resnets, upsampler });
        }
        let last = dims[levels];
        Ok(Self {
            conv_in,
            mid,
            up,
            norm_out: RmsNorm::new(last, false, vb.pp("norm_out"))?,
            conv_out: CausalConv3d::new(
                Conv3dSpec::cube(last, cfg.out_channels, 3, 1),
                vb.pp("conv_out"),
            )?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let x = cached_conv(&self.conv_in, x, cache)?;
        let mut x = self.mid.forward(&x, cache)?;
        for block in &self.up {
            for r in &block.resnets {
                x = r.forward(&x, cache)?;
            }
            if let Some(u) = &block.upsampler {
                x = u.forward(&x, cache)?;
            }
        }
        let x = self.norm_out.forward(&x)?.silu()?;
        cached_conv(&self.conv_out, &x, cache)
    }
}

/// The encoder's diagonal Gaussian over latents `[B, z, T, h, w]`.
#[derive(Debug, Clone)]
pub struct Posterior {
    /// Mean.
    pub mean: Tensor,
    /// Log-variance, clamped to `[-30, 20]`.
    pub logvar: Tensor,
}

impl Posterior {
    /// `exp(0.5·logvar)`.
    pub fn std(&self) -> Result<Tensor> {
        Ok((&self.logvar * 0.5)?.exp()?)
    }

    /// `mean + std·noise` with standard normal `noise` shaped like `mean`.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        Ok((&self.mean + self.std()?.mul(&noise.to_dtype(self.mean.dtype())?)?)?)
    }
}

/// `AutoencoderKLWan` (Wan 2.1): causal video encoder and decoder.
#[derive(Debug, Clone)]
pub struct WanVae {
    cfg: VaeConfig,
    encoder: Encoder,
    quant_conv: CausalConv3d,
    post_quant_conv: CausalConv3d,
    decoder: Decoder,
}

/// `[B, C, F, H, W]` ↔ `[B, F, C, H, W]`.
fn swap_ct(x: &Tensor) -> Result<Tensor> {
    Ok(x.permute((0, 2, 1, 3, 4))?.contiguous()?)
}

impl WanVae {
    /// Builds the VAE from diffusers-named weights (`encoder.*`, `decoder.*`, `quant_conv.*`,
    /// `post_quant_conv.*`).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let z2 = 2 * cfg.z_dim;
        Ok(Self {
            cfg: cfg.clone(),
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            quant_conv: CausalConv3d::new(Conv3dSpec::cube(z2, z2, 1, 0), vb.pp("quant_conv"))?,
            post_quant_conv: CausalConv3d::new(
                Conv3dSpec::cube(cfg.z_dim, cfg.z_dim, 1, 0),
                vb.pp("post_quant_conv"),
            )?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
        })
    }

    /// A VAE of `cfg` with deterministic random weights (the built-in tiny model).
    pub fn random(
        cfg: &VaeConfig,
        seed: u64,
        device: &candle_core::Device,
        dtype: DType,
    ) -> Result<Self> {
        Self::new(
            cfg,
            crate::dit::random::random_var_builder(seed, dtype, device),
        )
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// Encodes `video` `[B, 3, F, H, W]` in `[-1, 1]` (`F = 1 + 4k`, `H, W` divisible by 8)
    /// into the posterior over `[B, z, 1 + (F-1)/4, H/8, W/8]`.
    pub fn encode(&self, video: &Tensor) -> Result<Posterior> {
        let x = swap_ct(video)?;
        let frames = x.dim(1)?;
        let mut cache = FeatCache::default();
        let mut outs = Vec::new();
        let mut start = 0;
        while start < frames {
            let len = if start == 0 { 1 } else { 4.min(frames - start) };
            cache.rewind();
            let chunk = x.narrow(1, start, len)?;
            outs.push(self.encoder.forward(&chunk, &mut cache)?);
            start += len;
        }
        let h = self.quant_conv.forward(&Tensor::cat(&outs, 1)?, None)?;
        let z = self.cfg.z_dim;
        let mean = swap_ct(&h.narrow(2, 0, z)?)?;
        let logvar = swap_ct(&h.narrow(2, z, z)?)?.clamp(-30f64, 20f64)?;
        Ok(Posterior { mean, logvar })
    }

    /// Decodes latents `[B, z, T, h, w]` to `[B, 3, 1 + 4(T-1), 8h, 8w]` in `[-1, 1]`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let mut chunks = Vec::new();
        self.decode_streaming(z, |c| {
            chunks.push(c);
            Ok(())
        })?;
        Ok(Tensor::cat(&chunks, 2)?)
    }

    /// Decodes one latent frame at a time and hands each pixel chunk `[B, 3, f, H, W]`
    /// (`f` = 1 for the first, then 4) to `sink`, so the whole video is never held.
    pub fn decode_streaming(
        &self,
        z: &Tensor,
        mut sink: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        let x = self.post_quant_conv.forward(&swap_ct(z)?, None)?;
        let mut cache = FeatCache::default();
        for i in 0..x.dim(1)? {
            cache.rewind();
            let out = self.decoder.forward(&x.narrow(1, i, 1)?, &mut cache)?;
            sink(swap_ct(&out)?.clamp(-1f64, 1f64)?)?;
        }
        Ok(())
    }

    fn stats(&self, like: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = self.cfg.z_dim;
        let dev = like.device();
        let mean = Tensor::from_vec(self.cfg.latents_mean.clone(), (1, c, 1, 1, 1), dev)?;
        let inv: Vec<f32> = self.cfg.latents_std.iter().map(|s| 1.0 / s).collect();
        let inv = Tensor::from_vec(inv, (1, c, 1, 1, 1), dev)?;
        Ok((mean.to_dtype(like.dtype())?, inv.to_dtype(like.dtype())?))
    }

    /// `(z - latents_mean) · (1 / latents_std)` per channel of `[B, z, T, h, w]`.
    pub fn normalize_latents(&self, z: &Tensor) -> Result<Tensor> {
        let (mean, inv) = self.stats(z)?;
        Ok(z.broadcast_sub(&mean)?.broadcast_mul(&inv)?)
    }

    /// `z / (1 / latents_std) + latents_mean` per channel.
    pub fn denormalize_latents(&self, z: &Tensor) -> Result<Tensor> {
        let (mean, inv) = self.stats(z)?;
        Ok(z.broadcast_div(&inv)?.broadcast_add(&mean)?)
    }

    /// Dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.decoder.norm_out.gamma.dtype()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    /// A VAE with random weights (std 0.05, gammas near 1).
    fn random_vae(cfg: &VaeConfig, dev: &Device) -> WanVae {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        WanVae::new(cfg, vb).unwrap();
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let noise = var.randn_like(0.0, 0.05).unwrap();
            let value = if name.ends_with("gamma") {
                (noise + 1.0).unwrap()
            } else {
                noise
            };
            var.set(&value).unwrap();
        }
        WanVae::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev)).unwrap()
    }

    fn tiny() -> VaeConfig {
        VaeConfig {
            base_dim: 4,
            ..VaeConfig::default()
        }
    }

    #[test]
    fn config_defaults_match_wan21() {
        let cfg: VaeConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, VaeConfig::default());
        assert_eq!((cfg.scale_temporal(), cfg.scale_spatial()), (4, 8));
        let bad = VaeConfig {
            is_residual: true,
            ..VaeConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn streaming_chunks_are_one_then_four_frames() {
        let dev = Device::Cpu;
        let vae = random_vae(&tiny(), &dev);
        let z = Tensor::randn(0f32, 1.0, (1, 16, 3, 2, 3), &dev).unwrap();
        let mut sizes = Vec::new();
        let mut chunks = Vec::new();
        vae.decode_streaming(&z, |c| {
            sizes.push(c.dims().to_vec());
            chunks.push(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            sizes,
            vec![
                vec![1, 3, 1, 16, 24],
                vec![1, 3, 4, 16, 24],
                vec![1, 3, 4, 16, 24]
            ]
        );
        let whole = vae.decode(&z).unwrap();
        let joined = Tensor::cat(&chunks, 2).unwrap();
        let diff = (whole - joined).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let post = vae
            .encode(&Tensor::randn(0f32, 0.5, (1, 3, 5, 16, 16), &dev).unwrap())
            .unwrap();
        assert_eq!(post.mean.dims(), &[1, 16, 2, 2, 2]);
    }

    /// Decode time of the full-width VAE (base_dim 96) on 2 latent frames (5 video
    /// frames) of 64×64 pixels: `cargo test -p longcat-model --release vae_decode_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn vae_decode_timing() {
        let dev = Device::Cpu;
        let vae = random_vae(&VaeConfig::default(), &dev);
        let z = Tensor::randn(0f32, 1.0, (1, 16, 2, 8, 8), &dev).unwrap();
        let start = std::time::Instant::now();
        let video = vae.decode(&z).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(video.dims(), &[1, 3, 5, 64, 64]);
        println!("decode base_dim 96, 5 frames 64x64: {secs:.3} s");
    }
}
