//! The Wan2.1 causal 3D VAE (`AutoencoderKLWan`).
//!
//! Encoding runs frame 0 alone and then chunks of 4 frames, decoding one latent frame at a time;
//! between chunks every causal convolution keeps the last frames it saw (the feature cache), so
//! chunked processing equals processing the whole clip. [`WanVae::decode_streaming`] hands out
//! each decoded chunk as soon as it exists, which keeps memory bounded for long videos.

use std::path::Path;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::conv3d::CausalConv3d;
use crate::error::{ModelError, Result};

/// Frames each causal convolution caches between chunks.
const CACHE_T: usize = 2;

/// `vae/config.json` of the checkpoint (diffusers `AutoencoderKLWan`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Base channel count.
    pub base_dim: usize,
    /// Latent channels.
    pub z_dim: usize,
    /// Channel multipliers per level.
    pub dim_mult: Vec<usize>,
    /// Residual blocks per level.
    pub num_res_blocks: usize,
    /// Scales with attention (Wan2.1: none).
    #[serde(default)]
    pub attn_scales: Vec<f64>,
    /// Temporal downsampling per level (reference spelling).
    pub temperal_downsample: Vec<bool>,
    /// Per-channel latent means.
    pub latents_mean: Vec<f32>,
    /// Per-channel latent standard deviations.
    pub latents_std: Vec<f32>,
    /// Image channels in.
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Image channels out.
    #[serde(default = "three")]
    pub out_channels: usize,
    /// Wan2.2 residual variant (not supported).
    #[serde(default)]
    pub is_residual: bool,
    /// Patchified variant (not supported).
    #[serde(default)]
    pub patch_size: Option<usize>,
}

fn three() -> usize {
    3
}

impl VaeConfig {
    /// Reads `vae/config.json`.
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

    /// Refuses variants this implementation does not cover.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(ModelError::InvalidArgument(format!("VAE config: {m}")));
        if self.is_residual {
            return bad("is_residual (Wan2.2 VAE) is not supported");
        }
        if self.patch_size.is_some() {
            return bad("patch_size is not supported");
        }
        if !self.attn_scales.is_empty() {
            return bad("attn_scales must be empty (Wan2.1)");
        }
        if self.latents_mean.len() != self.z_dim || self.latents_std.len() != self.z_dim {
            return bad("latents_mean/latents_std must have z_dim entries");
        }
        if self.temperal_downsample.len() + 1 != self.dim_mult.len() {
            return bad("temperal_downsample needs one entry less than dim_mult");
        }
        Ok(())
    }

    /// Temporal compression factor (4 for Wan2.1).
    pub fn scale_temporal(&self) -> usize {
        1 << self.temperal_downsample.iter().filter(|d| **d).count()
    }

    /// Spatial compression factor (8 for Wan2.1).
    pub fn scale_spatial(&self) -> usize {
        1 << (self.dim_mult.len() - 1)
    }
}

/// One feature-cache slot.
#[derive(Debug, Clone)]
enum Slot {
    Empty,
    /// An upsampler that has seen its first chunk (its time conv starts next chunk).
    Rep,
    Frames(Tensor),
}

/// Feature cache of one encode or decode pass: one slot per cached layer, visited in order.
#[derive(Debug, Default)]
struct FeatCache {
    slots: Vec<Slot>,
    idx: usize,
}

impl FeatCache {
    fn start_chunk(&mut self) {
        self.idx = 0;
    }

    /// Takes the current slot and advances.
    fn next(&mut self) -> (usize, Slot) {
        if self.idx == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        let i = self.idx;
        self.idx += 1;
        (i, self.slots[i].clone())
    }

    fn set(&mut self, i: usize, slot: Slot) {
        self.slots[i] = slot;
    }
}

/// Last `CACHE_T` frames of `x`, topped up with the last cached frame when `x` is shorter.
fn frames_to_cache(x: &Tensor, previous: &Slot) -> Result<Tensor> {
    let t = x.dim(2)?;
    let keep = t.min(CACHE_T);
    let tail = x.narrow(2, t - keep, keep)?;
    match previous {
        Slot::Frames(prev) if keep < CACHE_T => {
            let last = prev.narrow(2, prev.dim(2)? - 1, 1)?;
            Ok(Tensor::cat(&[&last, &tail], 2)?)
        }
        _ => Ok(tail),
    }
}

/// A causal conv that reads and refreshes its cache slot.
fn cached_conv(conv: &CausalConv3d, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
    let (i, slot) = cache.next();
    let to_cache = frames_to_cache(x, &slot)?;
    let out = match &slot {
        Slot::Frames(prev) => conv.forward(x, Some(prev))?,
        _ => conv.forward(x, None)?,
    };
    cache.set(i, Slot::Frames(to_cache));
    Ok(out)
}

/// Wan RMS norm over channels: `x / max(||x||, 1e-12) * sqrt(C) * gamma` (dim 1).
#[derive(Debug, Clone)]
struct RmsNorm {
    gamma: Tensor,
    scale: f64,
}

impl RmsNorm {
    /// `images`: gamma `[C,1,1]` for 4D inputs, else `[C,1,1,1]` for 5D.
    fn new(dim: usize, images: bool, vb: VarBuilder) -> Result<Self> {
        let gamma = if images {
            vb.get((dim, 1, 1), "gamma")?
        } else {
            vb.get((dim, 1, 1, 1), "gamma")?
        };
        Ok(Self {
            gamma,
            scale: (dim as f64).sqrt(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let norm = x32.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
        let y = (x32.broadcast_div(&norm)? * self.scale)?;
        let gamma = self.gamma.to_dtype(DType::F32)?.unsqueeze(0)?;
        Ok(y.broadcast_mul(&gamma)?.to_dtype(dtype)?)
    }
}

/// A 2D convolution applied to every frame of `[B, C, T, H, W]`.
#[derive(Debug, Clone)]
struct FrameConv2d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    stride: usize,
}

impl FrameConv2d {
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        padding: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((cout, cin, k, k), "weight")?,
            bias: vb.get(cout, "bias")?,
            padding,
            stride,
        })
    }

    /// `x`: `[N, C, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?)
    }
}

/// `[B, C, T, H, W]` → `[B*T, C, H, W]`.
fn frames_of(x: &Tensor) -> Result<(Tensor, usize, usize)> {
    let (b, c, t, h, w) = x.dims5()?;
    let f = x.permute((0, 2, 1, 3, 4))?.reshape((b * t, c, h, w))?;
    Ok((f, b, t))
}

/// `[B*T, C, H, W]` → `[B, C, T, H, W]`.
fn video_of(x: &Tensor, b: usize, t: usize) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    Ok(x.reshape((b, t, c, h, w))?.permute((0, 2, 1, 3, 4))?)
}

/// Residual block: norm, SiLU, conv, norm, SiLU, conv, plus a 1x1x1 shortcut when widths differ.
#[derive(Debug, Clone)]
struct ResidualBlock {
    norm1: RmsNorm,
    conv1: CausalConv3d,
    norm2: RmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    fn new(cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        let conv = |ci, co, name: &str| {
            CausalConv3d::new(ci, co, [3, 3, 3], [1, 1, 1], [1, 1, 1], vb.pp(name))
        };
        let shortcut = if cin != cout {
            Some(CausalConv3d::new(
                cin,
                cout,
                [1, 1, 1],
                [1, 1, 1],
                [0, 0, 0],
                vb.pp("conv_shortcut"),
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: RmsNorm::new(cin, false, vb.pp("norm1"))?,
            conv1: conv(cin, cout, "conv1")?,
            norm2: RmsNorm::new(cout, false, vb.pp("norm2"))?,
            conv2: conv(cout, cout, "conv2")?,
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

/// Single-head spatial self-attention applied per frame.
#[derive(Debug, Clone)]
struct AttentionBlock {
    norm: RmsNorm,
    to_qkv: FrameConv2d,
    proj: FrameConv2d,
}

impl AttentionBlock {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: RmsNorm::new(dim, true, vb.pp("norm"))?,
            to_qkv: FrameConv2d::new(dim, dim * 3, 1, 0, 1, vb.pp("to_qkv"))?,
            proj: FrameConv2d::new(dim, dim, 1, 0, 1, vb.pp("proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (frames, b, t) = frames_of(x)?;
        let (n, c, h, w) = frames.dims4()?;
        let qkv = self.to_qkv.forward(&self.norm.forward(&frames)?)?; // [N, 3C, H, W]
        let qkv = qkv.reshape((n, 3 * c, h * w))?.transpose(1, 2)?; // [N, HW, 3C]
        let q = qkv.narrow(2, 0, c)?.contiguous()?;
        let k = qkv.narrow(2, c, c)?.contiguous()?;
        let v = qkv.narrow(2, 2 * c, c)?.contiguous()?;
        let scores = (q
            .to_dtype(DType::F32)?
            .matmul(&k.to_dtype(DType::F32)?.t()?)?
            / (c as f64).sqrt())?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let out = weights.matmul(&v)?; // [N, HW, C]
        let out = out.transpose(1, 2)?.reshape((n, c, h, w))?;
        let out = self.proj.forward(&out)?;
        Ok((video_of(&out, b, t)? + x)?)
    }
}

/// Resnet, attention, resnet at the narrowest level.
#[derive(Debug, Clone)]
struct MidBlock {
    res0: ResidualBlock,
    attn: AttentionBlock,
    res1: ResidualBlock,
}

impl MidBlock {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            res0: ResidualBlock::new(dim, dim, vb.pp("resnets.0"))?,
            attn: AttentionBlock::new(dim, vb.pp("attentions.0"))?,
            res1: ResidualBlock::new(dim, dim, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let x = self.res0.forward(x, cache)?;
        let x = self.attn.forward(&x)?;
        self.res1.forward(&x, cache)
    }
}

/// Spatial (and optionally temporal) resampling.
#[derive(Debug, Clone)]
enum Resample {
    Down2d(FrameConv2d),
    Down3d(FrameConv2d, CausalConv3d),
    Up2d(FrameConv2d),
    Up3d(FrameConv2d, CausalConv3d),
}

impl Resample {
    fn down(dim: usize, temporal: bool, vb: VarBuilder) -> Result<Self> {
        let conv = FrameConv2d::new(dim, dim, 3, 0, 2, vb.pp("resample.1"))?;
        Ok(if temporal {
            let tc = CausalConv3d::new(
                dim,
                dim,
                [3, 1, 1],
                [2, 1, 1],
                [0, 0, 0],
                vb.pp("time_conv"),
            )?;
            Resample::Down3d(conv, tc)
        } else {
            Resample::Down2d(conv)
        })
    }

    fn up(dim: usize, temporal: bool, vb: VarBuilder) -> Result<Self> {
        let conv = FrameConv2d::new(dim, dim / 2, 3, 1, 1, vb.pp("resample.1"))?;
        Ok(if temporal {
            let tc = CausalConv3d::new(
                dim,
                dim * 2,
                [3, 1, 1],
                [1, 1, 1],
                [1, 0, 0],
                vb.pp("time_conv"),
            )?;
            Resample::Up3d(conv, tc)
        } else {
            Resample::Up2d(conv)
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let x = match self {
            Resample::Up3d(_, time_conv) => upsample_time(x, time_conv, cache)?,
            _ => x.clone(),
        };
        let (frames, b, t) = frames_of(&x)?;
        let frames = match self {
            Resample::Down2d(conv) | Resample::Down3d(conv, _) => {
                // Zero-pad right and bottom by one, then a stride-2 3x3 convolution.
                let padded = frames.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
                conv.forward(&padded)?
            }
            Resample::Up2d(conv) | Resample::Up3d(conv, _) => {
                let (_, _, h, w) = frames.dims4()?;
                let up = frames
                    .to_dtype(DType::F32)?
                    .upsample_nearest2d(h * 2, w * 2)?
                    .to_dtype(frames.dtype())?;
                conv.forward(&up)?
            }
        };
        let x = video_of(&frames, b, t)?;
        match self {
            Resample::Down3d(_, time_conv) => downsample_time(&x, time_conv, cache),
            _ => Ok(x),
        }
    }
}

/// Temporal 2x upsampling of the decoder (skipped on the first chunk, as the reference).
fn upsample_time(x: &Tensor, time_conv: &CausalConv3d, cache: &mut FeatCache) -> Result<Tensor> {
    let (i, slot) = cache.next();
    let (b, c, t, h, w) = x.dims5()?;
    let y = match &slot {
        Slot::Empty => {
            cache.set(i, Slot::Rep);
            return Ok(x.clone());
        }
        Slot::Rep => {
            let tail = x.narrow(2, t - t.min(CACHE_T), t.min(CACHE_T))?;
            let to_cache = if tail.dim(2)? < CACHE_T {
                Tensor::cat(&[&tail.zeros_like()?, &tail], 2)?
            } else {
                tail
            };
            let y = time_conv.forward(x, None)?;
            cache.set(i, Slot::Frames(to_cache));
            y
        }
        Slot::Frames(prev) => {
            let to_cache = frames_to_cache(x, &slot)?;
            let y = time_conv.forward(x, Some(prev))?;
            cache.set(i, Slot::Frames(to_cache));
            y
        }
    };
    // Channels [2, C] interleave into frames: t0a, t0b, t1a, t1b, ...
    let y = y.reshape((b, 2, c, t, h, w))?;
    let y = Tensor::stack(
        &[
            y.narrow(1, 0, 1)?.squeeze(1)?,
            y.narrow(1, 1, 1)?.squeeze(1)?,
        ],
        3,
    )?;
    Ok(y.reshape((b, c, t * 2, h, w))?)
}

/// Temporal 2x downsampling of the encoder (the first chunk passes through).
fn downsample_time(x: &Tensor, time_conv: &CausalConv3d, cache: &mut FeatCache) -> Result<Tensor> {
    let (i, slot) = cache.next();
    match slot {
        Slot::Frames(prev) => {
            let t = x.dim(2)?;
            let last_prev = prev.narrow(2, prev.dim(2)? - 1, 1)?;
            let to_cache = x.narrow(2, t - 1, 1)?;
            let y = time_conv.forward(&Tensor::cat(&[&last_prev, x], 2)?, None)?;
            cache.set(i, Slot::Frames(to_cache));
            Ok(y)
        }
        _ => {
            cache.set(i, Slot::Frames(x.clone()));
            Ok(x.clone())
        }
    }
}

/// A layer of the encoder's flat `down_blocks` list.
#[derive(Debug, Clone)]
enum DownLayer {
    Res(ResidualBlock),
    Resample(Resample),
}

/// The encoder: video → `[mean, logvar]` pre-quantisation features.
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
            cfg.in_channels,
            dims[0],
            [3, 3, 3],
            [1, 1, 1],
            [1, 1, 1],
            vb.pp("conv_in"),
        )?;
        let mut down = Vec::new();
        let levels = cfg.dim_mult.len();
        for i in 0..levels {
            let mut cin = dims[i];
            let cout = dims[i + 1];
            for _ in 0..cfg.num_res_blocks {
                let vbi = vb.pp(format!("down_blocks.{}", down.len()));
                down.push(DownLayer::Res(ResidualBlock::new(cin, cout, vbi)?));
                cin = cout;
            }
            if i != levels - 1 {
                let vbi = vb.pp(format!("down_blocks.{}", down.len()));
                let temporal = cfg.temperal_downsample[i];
                down.push(DownLayer::Resample(Resample::down(cout, temporal, vbi)?));
            }
        }
        let top = dims[levels];
        Ok(Self {
            conv_in,
            down,
            mid: MidBlock::new(top, vb.pp("mid_block"))?,
            norm_out: RmsNorm::new(top, false, vb.pp("norm_out"))?,
            conv_out: CausalConv3d::new(
                top,
                cfg.z_dim * 2,
                [3, 3, 3],
                [1, 1, 1],
                [1, 1, 1],
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

/// One decoder level: residual blocks then an optional upsampler.
#[derive(Debug, Clone)]
struct UpBlock {
    resnets: Vec<ResidualBlock>,
    upsampler: Option<Resample>,
}

/// The decoder: latents → video.
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
        let dim = cfg.base_dim;
        let levels = cfg.dim_mult.len();
        let mut mults = vec![cfg.dim_mult[levels - 1]];
        mults.extend(cfg.dim_mult.iter().rev().copied());
        let dims: Vec<usize> = mults.iter().map(|m| m * dim).collect();
        let temporal_up: Vec<bool> = cfg.temperal_downsample.iter().rev().copied().collect();
        let conv_in = CausalConv3d::new(
            cfg.z_dim,
            dims[0],
            [3, 3, 3],
            [1, 1, 1],
            [1, 1, 1],
            vb.pp("conv_in"),
        )?;
        let mid = MidBlock::new(dims[0], vb.pp("mid_block"))?;
        let mut up = Vec::new();
        for i in 0..levels {
            let vbi = vb.pp(format!("up_blocks.{i}"));
            let mut cin = if i > 0 { dims[i] / 2 } else { dims[i] };
            let cout = dims[i + 1];
            let mut resnets = Vec::new();
            for j in 0..=cfg.num_res_blocks {
                resnets.push(ResidualBlock::new(
                    cin,
                    cout,
                    vbi.pp(format!("resnets.{j}")),
                )?);
                cin = cout;
            }
            let upsampler = if i != levels - 1 {
                Some(Resample::up(cout, temporal_up[i], vbi.pp("upsamplers.0"))?)
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
                last,
                cfg.out_channels,
                [3, 3, 3],
                [1, 1, 1],
                [1, 1, 1],
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

/// The VAE posterior: a diagonal Gaussian.
#[derive(Debug, Clone)]
pub struct Posterior {
    /// Mean `[B, z, T, h, w]`.
    pub mean: Tensor,
    /// Log-variance, clamped to [-30, 20].
    pub logvar: Tensor,
}

impl Posterior {
    /// `exp(0.5 * logvar)`.
    pub fn std(&self) -> Result<Tensor> {
        Ok((&self.logvar * 0.5)?.exp()?)
    }

    /// `mean + std * noise` with caller-provided standard normal noise.
    pub fn sample(&self, noise: &Tensor) -> Result<Tensor> {
        Ok((&self.mean + self.std()?.mul(&noise.to_dtype(self.mean.dtype())?)?)?)
    }
}

/// The Wan2.1 VAE.
#[derive(Debug, Clone)]
pub struct WanVae {
    encoder: Encoder,
    quant_conv: CausalConv3d,
    post_quant_conv: CausalConv3d,
    decoder: Decoder,
    config: VaeConfig,
}

impl WanVae {
    /// Builds the VAE from `encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*`.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let z2 = cfg.z_dim * 2;
        Ok(Self {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            quant_conv: CausalConv3d::new(
                z2,
                z2,
                [1, 1, 1],
                [1, 1, 1],
                [0, 0, 0],
                vb.pp("quant_conv"),
            )?,
            post_quant_conv: CausalConv3d::new(
                cfg.z_dim,
                cfg.z_dim,
                [1, 1, 1],
                [1, 1, 1],
                [0, 0, 0],
                vb.pp("post_quant_conv"),
            )?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            config: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Encodes a video `[B, 3, F, H, W]` in [-1, 1] (F = 1 + 4k) into its posterior.
    pub fn encode(&self, video: &Tensor) -> Result<Posterior> {
        let frames = video.dim(2)?;
        let mut cache = FeatCache::default();
        let mut outs = Vec::new();
        let chunks = 1 + frames.saturating_sub(1) / 4;
        for i in 0..chunks {
            cache.start_chunk();
            let chunk = if i == 0 {
                video.narrow(2, 0, 1)?
            } else {
                video.narrow(2, 1 + 4 * (i - 1), 4)?
            };
            outs.push(self.encoder.forward(&chunk, &mut cache)?);
        }
        let enc = self.quant_conv.forward(&Tensor::cat(&outs, 2)?, None)?;
        let z = self.config.z_dim;
        Ok(Posterior {
            mean: enc.narrow(1, 0, z)?,
            logvar: enc.narrow(1, z, z)?.clamp(-30f32, 20f32)?,
        })
    }

    fn latent_stats(&self, like: &Tensor) -> Result<(Tensor, Tensor)> {
        let shape = (1, self.config.z_dim, 1, 1, 1);
        let dev = like.device();
        let mean = Tensor::new(self.config.latents_mean.as_slice(), dev)?.reshape(shape)?;
        let std = Tensor::new(self.config.latents_std.as_slice(), dev)?.reshape(shape)?;
        Ok((mean.to_dtype(like.dtype())?, std.to_dtype(like.dtype())?))
    }

    /// `(z - latents_mean) / latents_std` per channel: the DiT's latent space.
    pub fn normalize_latents(&self, z: &Tensor) -> Result<Tensor> {
        let (mean, std) = self.latent_stats(z)?;
        Ok(z.broadcast_sub(&mean)?.broadcast_div(&std)?)
    }

    /// `z * latents_std + latents_mean`: back to the decoder's input space.
    pub fn denormalize_latents(&self, z: &Tensor) -> Result<Tensor> {
        let (mean, std) = self.latent_stats(z)?;
        Ok(z.broadcast_mul(&std)?.broadcast_add(&mean)?)
    }

    /// Decodes latents `[B, z, T, h, w]` chunk by chunk, handing each decoded chunk
    /// (`[B, 3, 1 or 4, H, W]`, clamped to [-1, 1]) to `on_chunk` as soon as it is ready.
    pub fn decode_streaming(
        &self,
        z: &Tensor,
        mut on_chunk: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        let x = self.post_quant_conv.forward(z, None)?;
        let mut cache = FeatCache::default();
        for i in 0..x.dim(2)? {
            cache.start_chunk();
            let out = self.decoder.forward(&x.narrow(2, i, 1)?, &mut cache)?;
            on_chunk(out.clamp(-1f32, 1f32)?)?;
        }
        Ok(())
    }

    /// Decodes latents `[B, z, T, h, w]` into a video `[B, 3, 1 + 4(T-1), H, W]` in [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let mut chunks = Vec::new();
        self.decode_streaming(z, |c| {
            chunks.push(c);
            Ok(())
        })?;
        Ok(Tensor::cat(&chunks, 2)?)
    }
}
