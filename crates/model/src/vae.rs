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

use crate::conv3d::{
    check_kernel_elems, default_band_elems, CausalConv3d, Conv3dSpec, ConvKernelPlan, ConvPath,
    ConvRun,
};
use crate::{ModelError, Result};

/// Frames each causal convolution keeps from the previous chunk.
const CACHE_T: usize = 2;

/// Largest attention score block of the mid block (query rows are chunked to stay below).
const ATTN_SCORE_ELEMS: usize = 1 << 24;

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

/// Per-layer state carried between chunks (slots are handed out in call order), and the
/// band budget of the convolutions.
#[derive(Debug, Default)]
pub struct FeatCache {
    slots: Vec<Slot>,
    idx: usize,
    run: ConvRun,
}

impl FeatCache {
    fn with_run(run: ConvRun) -> Self {
        Self {
            slots: Vec::new(),
            idx: 0,
            run,
        }
    }

    /// Starts the next chunk (slot order restarts, contents are kept).
    fn rewind(&mut self) {
        self.idx = 0;
    }

    /// Index of the next slot.
    fn next(&mut self) -> usize {
        if self.idx == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        self.idx += 1;
        self.idx - 1
    }

    fn take(&mut self, i: usize) -> Slot {
        std::mem::take(&mut self.slots[i])
    }

    fn conv(&mut self, conv: &CausalConv3d, x: &Tensor, past: Option<&Tensor>) -> Result<Tensor> {
        conv.forward_run(x, past, &mut self.run)
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
    let past = match cache.take(slot) {
        Slot::Frames(p) => Some(p),
        _ => None,
    };
    let mut keep = last_frames(x, CACHE_T)?;
    if keep.dim(1)? < CACHE_T {
        if let Some(p) = &past {
            keep = Tensor::cat(&[&last_frames(p, 1)?, &keep], 1)?;
        }
    }
    let y = cache.conv(conv, x, past.as_ref())?;
    cache.slots[slot] = Slot::Frames(keep);
    Ok(y)
}

#[path = "vae_cpu.rs"]
mod cpu;

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
            gamma: gamma.detach(),
            scale: (dim as f64).sqrt(),
        })
    }

    /// Normalizes over the channel dim of `[.., C, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, false)
    }

    /// [`Self::forward`], then SiLU.
    fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, true)
    }

    /// The native CPU kernel for f32 CPU tensors, tensor ops otherwise.
    fn forward_act(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        if cpu_f32(&self.gamma) && cpu_f32(x) {
            let gamma = self.gamma.flatten_all()?.to_vec1::<f32>()?;
            let dims = x.dims().to_vec();
            let r = dims.len();
            let (c, p) = (dims[r - 3], dims[r - 2] * dims[r - 1]);
            let n = dims[..r - 3].iter().product();
            let x = x.contiguous()?;
            let (st, l) = x.storage_and_layout();
            let data = crate::conv3d::cpu_f32(&st, l.start_offset())?;
            let y = cpu::rms_norm(data, (n, c, p), &gamma, self.scale as f32, silu);
            return Ok(Tensor::from_vec(y, dims, x.device())?);
        }
        let y = self.forward_ops(x)?;
        Ok(if silu { y.silu()? } else { y })
    }

    /// The tensor-op form (the reference, and the path of other devices and dtypes).
    fn forward_ops(&self, x: &Tensor) -> Result<Tensor> {
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
            Some(s) => cache.conv(s, x, None)?,
            None => x.clone(),
        };
        let y = self.norm1.forward_silu(x)?;
        let y = cached_conv(&self.conv1, &y, cache)?;
        let y = self.norm2.forward_silu(&y)?;
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
                .detach()
                .reshape((3 * dim, dim))?
                .t()?,
            qkv_b: qkv.get(3 * dim, "bias")?.detach(),
            proj_w: proj
                .get((dim, dim, 1, 1), "weight")?
                .detach()
                .reshape((dim, dim))?
                .t()?,
            proj_b: proj.get(dim, "bias")?.detach(),
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
        let hw = h * w;
        let q = qkv.narrow(D::Minus1, 0, c)?;
        let kt = qkv.narrow(D::Minus1, c, c)?.t()?.contiguous()?;
        let v = qkv.narrow(D::Minus1, 2 * c, c)?.contiguous()?;
        // Query rows in chunks, so the score block stays under ATTN_SCORE_ELEMS.
        let rows = attn_rows(n, hw);
        let mut outs = Vec::with_capacity(hw.div_ceil(rows));
        let mut r0 = 0;
        while r0 < hw {
            let r = rows.min(hw - r0);
            let qc = q.narrow(1, r0, r)?.contiguous()?;
            let scores = (qc.matmul(&kt)? * (1.0 / (c as f64).sqrt()))?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            outs.push(probs.matmul(&v)?);
            r0 += r;
        }
        let out = Tensor::cat(&outs, 1)?;
        let out = out
            .broadcast_matmul(&self.proj_w)?
            .broadcast_add(&self.proj_b)?;
        let out = out.transpose(1, 2)?.reshape((b, t, c, h, w))?;
        Ok((out + x)?)
    }
}

/// Query rows per attention chunk for `n` frames of `hw` tokens.
fn attn_rows(n: usize, hw: usize) -> usize {
    (ATTN_SCORE_ELEMS / (n * hw).max(1)).clamp(1, hw.max(1))
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
    conv: CausalConv3d,
    time_conv: Option<CausalConv3d>,
}

/// Spec of a resampler's per-frame 3×3 conv.
fn resample_spec(dim: usize, mode: ResampleMode) -> Conv3dSpec {
    match mode {
        ResampleMode::Up2d | ResampleMode::Up3d => Conv3dSpec::spatial(dim, dim / 2, 3, 1, [1; 4]),
        ResampleMode::Down2d | ResampleMode::Down3d => {
            Conv3dSpec::spatial(dim, dim, 3, 2, [0, 1, 0, 1])
        }
    }
}

/// Spec of a resampler's temporal conv.
fn time_conv_spec(dim: usize, mode: ResampleMode) -> Option<Conv3dSpec> {
    match mode {
        ResampleMode::Up3d => Some(Conv3dSpec::temporal(dim, 2 * dim, 3, 1, 1)),
        ResampleMode::Down3d => Some(Conv3dSpec::temporal(dim, dim, 3, 2, 0)),
        _ => None,
    }
}

impl Resample {
    fn new(dim: usize, mode: ResampleMode, vb: VarBuilder) -> Result<Self> {
        let conv = CausalConv3d::new_2d(resample_spec(dim, mode), vb.pp("resample.1"))?;
        let time_conv = match time_conv_spec(dim, mode) {
            Some(spec) => Some(CausalConv3d::new(spec, vb.pp("time_conv"))?),
            None => None,
        };
        Ok(Self {
            mode,
            conv,
            time_conv,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let mut x = x.clone();
        if let (ResampleMode::Up3d, Some(tc)) = (self.mode, &self.time_conv) {
            x = Self::time_upsample(tc, &x, cache)?;
        }
        if matches!(self.mode, ResampleMode::Up2d | ResampleMode::Up3d) {
            let (b, t, c, h, w) = x.dims5()?;
            x = x
                .reshape((b * t, c, h, w))?
                .upsample_nearest2d(2 * h, 2 * w)?
                .reshape((b, t, c, 2 * h, 2 * w))?;
        }
        let mut y = cache.conv(&self.conv, &x, None)?;
        if let (ResampleMode::Down3d, Some(tc)) = (self.mode, &self.time_conv) {
            let slot = cache.next();
            match cache.take(slot) {
                Slot::Frames(p) => {
                    let keep = last_frames(&y, 1)?;
                    let joined = Tensor::cat(&[&last_frames(&p, 1)?, &y], 1)?;
                    y = cache.conv(tc, &joined, None)?;
                    cache.slots[slot] = Slot::Frames(keep);
                }
                _ => cache.slots[slot] = Slot::Frames(y.copy()?),
            }
        }
        Ok(y)
    }

    /// Doubles the frame count with the time conv (skipped on the very first chunk).
    fn time_upsample(tc: &CausalConv3d, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let slot = cache.next();
        let past = match cache.take(slot) {
            Slot::Empty => {
                cache.slots[slot] = Slot::Rep;
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
        let y = cache.conv(tc, x, past.as_ref())?;
        cache.slots[slot] = Slot::Frames(keep);
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
        let x = self.norm_out.forward_silu(&x)?;
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
        let x = self.norm_out.forward_silu(&x)?;
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
    /// `None`: the device default ([`default_band_elems`]).
    band_elems: Option<usize>,
    /// Convolution implementation ([`ConvPath::Auto`]: the native CPU kernel where it applies).
    conv_path: ConvPath,
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
            band_elems: None,
            conv_path: ConvPath::Auto,
        })
    }

    /// Sets the element budget of one convolution band (im2col matrix and product);
    /// smaller budgets bound memory tighter at some speed. Results do not change.
    pub fn set_band_elems(&mut self, band_elems: usize) {
        self.band_elems = Some(band_elems.max(1));
    }

    /// The element budget of one convolution band (by default [`default_band_elems`] of
    /// the weights' device: 2^20 on the CPU, 2^26 on an accelerator).
    pub fn band_elems(&self) -> usize {
        self.band_elems
            .unwrap_or_else(|| default_band_elems(self.decoder.norm_out.gamma.device()))
    }

    /// Chooses the convolution implementation (results agree to rounding).
    pub fn set_conv_path(&mut self, path: ConvPath) {
        self.conv_path = path;
    }

    fn new_cache(&self) -> FeatCache {
        FeatCache::with_run(ConvRun {
            band_elems: self.band_elems(),
            trace: None,
            path: self.conv_path,
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
        self.encode_with(video, &mut self.new_cache())
    }

    fn encode_with(&self, video: &Tensor, cache: &mut FeatCache) -> Result<Posterior> {
        check_kernel_elems("VAE encode input", video.elem_count())?;
        let x = swap_ct(video)?;
        let frames = x.dim(1)?;
        let mut outs = Vec::new();
        let mut start = 0;
        while start < frames {
            let len = if start == 0 { 1 } else { 4.min(frames - start) };
            cache.rewind();
            let chunk = x.narrow(1, start, len)?;
            outs.push(self.encoder.forward(&chunk, cache)?);
            start += len;
        }
        let h = cache.conv(&self.quant_conv, &Tensor::cat(&outs, 1)?, None)?;
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
        let elems: usize = chunks.iter().map(Tensor::elem_count).sum();
        check_kernel_elems("VAE decode output", elems)?;
        Ok(Tensor::cat(&chunks, 2)?)
    }

    /// Decodes one latent frame at a time and hands each pixel chunk `[B, 3, f, H, W]`
    /// (`f` = 1 for the first, then 4) to `sink`, so the whole video is never held.
    pub fn decode_streaming(
        &self,
        z: &Tensor,
        sink: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        self.decode_with(z, &mut self.new_cache(), sink)
    }

    fn decode_with(
        &self,
        z: &Tensor,
        cache: &mut FeatCache,
        mut sink: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        let x = cache.conv(&self.post_quant_conv, &swap_ct(z)?, None)?;
        for i in 0..x.dim(1)? {
            cache.rewind();
            let out = self.decoder.forward(&x.narrow(1, i, 1)?, cache)?;
            sink(swap_ct(&out)?.clamp(-1f64, 1f64)?)?;
        }
        Ok(())
    }

    /// [`Self::encode`], also returning the plan of every convolution call as run.
    pub fn encode_traced(&self, video: &Tensor) -> Result<(Posterior, Vec<ConvKernelPlan>)> {
        let mut cache = self.new_cache();
        cache.run.trace = Some(Vec::new());
        let post = self.encode_with(video, &mut cache)?;
        Ok((post, cache.run.trace.take().unwrap_or_default()))
    }

    /// [`Self::decode`], also returning the plan of every convolution call as run.
    pub fn decode_traced(&self, z: &Tensor) -> Result<(Tensor, Vec<ConvKernelPlan>)> {
        let mut cache = self.new_cache();
        cache.run.trace = Some(Vec::new());
        let mut chunks = Vec::new();
        self.decode_with(z, &mut cache, |c| {
            chunks.push(c);
            Ok(())
        })?;
        Ok((
            Tensor::cat(&chunks, 2)?,
            cache.run.trace.take().unwrap_or_default(),
        ))
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

/// Which VAE pass a [`kernel_plan`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaePass {
    /// `encode` of a pixel video.
    Encode,
    /// `decode` to a pixel video.
    Decode,
}

/// One large kernel of a plan that is not a convolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpKernel {
    /// What the kernel is.
    pub what: String,
    /// Its element count.
    pub elems: usize,
}

/// Every convolution call of one VAE pass, in call order, and its other large kernels,
/// computed from the config and sizes alone (nothing runs).
#[derive(Debug, Clone)]
pub struct VaePlan {
    /// The pass.
    pub pass: VaePass,
    /// Pixel frames in (encode) or out (decode).
    pub frames: usize,
    /// Pixel height.
    pub height: usize,
    /// Pixel width.
    pub width: usize,
    /// Band budget the convolutions were planned with.
    pub band_elems: usize,
    /// Each convolution call.
    pub convs: Vec<ConvKernelPlan>,
    /// Other large kernels (whole-video permutes and concatenations, attention blocks).
    pub ops: Vec<OpKernel>,
    /// Elements held by the causal caches between chunks (largest chunk).
    pub cache_elems: usize,
}

impl VaePlan {
    /// The largest single kernel of the pass: `(layer or op, elements)`.
    pub fn largest(&self) -> (String, usize) {
        let convs = self
            .convs
            .iter()
            .map(|c| (c.layer.clone(), c.largest_kernel_elems));
        let ops = self.ops.iter().map(|o| (o.what.clone(), o.elems));
        convs.chain(ops).max_by_key(|(_, n)| *n).unwrap_or_default()
    }

    /// For each layer (first-call order), its call with the largest kernel.
    pub fn per_layer(&self) -> Vec<ConvKernelPlan> {
        let mut out: Vec<ConvKernelPlan> = Vec::new();
        for c in &self.convs {
            match out.iter_mut().find(|o| o.layer == c.layer) {
                Some(o) if o.largest_kernel_elems < c.largest_kernel_elems => *o = c.clone(),
                Some(_) => {}
                None => out.push(c.clone()),
            }
        }
        out
    }

    /// Estimated peak elements of activations: the largest convolution working set (its
    /// input, output, one padded band, im2col and product), two more activations of that
    /// size (a residual block's input and shortcut) and the caches. Weights not included.
    pub fn peak_activation_elems(&self) -> usize {
        let conv = self
            .convs
            .iter()
            .map(|c| {
                let input: usize = c.input.iter().product();
                let output: usize = c.output.iter().product();
                let act = input.max(output);
                input + output + c.band_in_elems + c.im2col_elems + c.band_out_elems + 2 * act
            })
            .max()
            .unwrap_or(0);
        let ops = self.ops.iter().map(|o| o.elems).max().unwrap_or(0);
        conv.max(ops) + self.cache_elems
    }
}

/// Shape-only walk over the encoder and decoder, mirroring their `forward`s.
struct PlanWalk {
    batch: usize,
    band_elems: usize,
    convs: Vec<ConvKernelPlan>,
    ops: Vec<OpKernel>,
    cache: usize,
}

impl PlanWalk {
    /// One conv call on `frames` (causal padding included); returns `(T, O, H, W)` out.
    fn conv(
        &mut self,
        layer: String,
        spec: Conv3dSpec,
        frames: usize,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize, usize)> {
        let mut p = spec.plan(self.batch, frames, h, w, self.band_elems)?;
        p.layer = layer;
        let [_, t, o, ho, wo] = p.output;
        self.convs.push(p);
        Ok((t, o, ho, wo))
    }

    fn cached(
        &mut self,
        layer: String,
        spec: Conv3dSpec,
        t: usize,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize, usize)> {
        self.cache += self.batch * CACHE_T * spec.in_channels * h * w;
        self.conv(layer, spec, t + spec.causal_pad(), h, w)
    }

    fn res(&mut self, name: &str, i: usize, o: usize, t: usize, h: usize, w: usize) -> Result<()> {
        if i != o {
            let spec = Conv3dSpec::cube(i, o, 1, 0);
            self.conv(format!("{name}.conv_shortcut"), spec, t, h, w)?;
        }
        self.cached(
            format!("{name}.conv1"),
            Conv3dSpec::cube(i, o, 3, 1),
            t,
            h,
            w,
        )?;
        self.cached(
            format!("{name}.conv2"),
            Conv3dSpec::cube(o, o, 3, 1),
            t,
            h,
            w,
        )?;
        Ok(())
    }

    fn mid(&mut self, name: &str, c: usize, t: usize, h: usize, w: usize) -> Result<()> {
        self.res(&format!("{name}.resnets.0"), c, c, t, h, w)?;
        let (n, hw) = (self.batch * t, h * w);
        self.ops.push(OpKernel {
            what: format!("{name}.attentions.0 qkv"),
            elems: n * hw * 3 * c,
        });
        self.ops.push(OpKernel {
            what: format!("{name}.attentions.0 score block"),
            elems: n * attn_rows(n, hw) * hw,
        });
        self.res(&format!("{name}.resnets.1"), c, c, t, h, w)
    }

    fn encoder_chunk(
        &mut self,
        cfg: &VaeConfig,
        first: bool,
        t: usize,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize)> {
        let dim = cfg.base_dim;
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| m * dim)
            .collect();
        let spec = Conv3dSpec::cube(cfg.in_channels, dims[0], 3, 1);
        let (mut t, _, mut h, mut w) = self.cached("encoder.conv_in".into(), spec, t, h, w)?;
        let levels = cfg.dim_mult.len();
        let mut n = 0;
        for i in 0..levels {
            let mut in_dim = dims[i];
            let out_dim = dims[i + 1];
            for _ in 0..cfg.num_res_blocks {
                self.res(
                    &format!("encoder.down_blocks.{n}"),
                    in_dim,
                    out_dim,
                    t,
                    h,
                    w,
                )?;
                in_dim = out_dim;
                n += 1;
            }
            if i != levels - 1 {
                let mode = if cfg.temperal_downsample[i] {
                    ResampleMode::Down3d
                } else {
                    ResampleMode::Down2d
                };
                let name = format!("encoder.down_blocks.{n}");
                let spec = resample_spec(out_dim, mode);
                (t, _, h, w) = self.conv(format!("{name}.resample.1"), spec, t, h, w)?;
                if let Some(spec) = time_conv_spec(out_dim, mode) {
                    self.cache += self.batch * out_dim * h * w;
                    if !first {
                        (t, _, _, _) = self.conv(format!("{name}.time_conv"), spec, t + 1, h, w)?;
                    }
                }
                n += 1;
            }
        }
        let top = dims[levels];
        self.mid("encoder.mid_block", top, t, h, w)?;
        let spec = Conv3dSpec::cube(top, 2 * cfg.z_dim, 3, 1);
        self.cached("encoder.conv_out".into(), spec, t, h, w)?;
        Ok((t, h, w))
    }

    fn decoder_chunk(
        &mut self,
        cfg: &VaeConfig,
        first: bool,
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize)> {
        let dim = cfg.decoder_base_dim.unwrap_or(cfg.base_dim);
        let levels = cfg.dim_mult.len();
        let dims: Vec<usize> = std::iter::once(cfg.dim_mult[levels - 1])
            .chain(cfg.dim_mult.iter().rev().copied())
            .map(|m| m * dim)
            .collect();
        let temporal_up: Vec<bool> = cfg.temperal_downsample.iter().rev().copied().collect();
        let spec = Conv3dSpec::cube(cfg.z_dim, dims[0], 3, 1);
        let (mut t, _, mut h, mut w) = self.cached("decoder.conv_in".into(), spec, 1, h, w)?;
        self.mid("decoder.mid_block", dims[0], t, h, w)?;
        for i in 0..levels {
            let mut in_dim = if i > 0 { dims[i] / 2 } else { dims[i] };
            let out_dim = dims[i + 1];
            for j in 0..=cfg.num_res_blocks {
                let name = format!("decoder.up_blocks.{i}.resnets.{j}");
                self.res(&name, in_dim, out_dim, t, h, w)?;
                in_dim = out_dim;
            }
            if i != levels - 1 {
                let mode = if temporal_up[i] {
                    ResampleMode::Up3d
                } else {
                    ResampleMode::Up2d
                };
                let name = format!("decoder.up_blocks.{i}.upsamplers.0");
                if let Some(spec) = time_conv_spec(out_dim, mode) {
                    self.cache += self.batch * CACHE_T * out_dim * h * w;
                    if !first {
                        let frames = t + spec.causal_pad();
                        self.conv(format!("{name}.time_conv"), spec, frames, h, w)?;
                        t *= 2;
                    }
                }
                let spec = resample_spec(out_dim, mode);
                (t, _, h, w) = self.conv(format!("{name}.resample.1"), spec, t, 2 * h, 2 * w)?;
            }
        }
        let last = dims[levels];
        let spec = Conv3dSpec::cube(last, cfg.out_channels, 3, 1);
        let (t, _, h, w) = self.cached("decoder.conv_out".into(), spec, t, h, w)?;
        Ok((t, h, w))
    }
}

/// Plans every convolution of one VAE pass over a `batch × frames × height × width` pixel
/// video with band budget `band_elems`, from the config alone (nothing is allocated or
/// run). Encode reads `1 + 4⌊(F−1)/4⌋` frames; decode plans `⌈(F−1)/4⌉ + 1` latent frames.
pub fn kernel_plan(
    cfg: &VaeConfig,
    pass: VaePass,
    batch: usize,
    frames: usize,
    height: usize,
    width: usize,
    band_elems: usize,
) -> Result<VaePlan> {
    cfg.validate()?;
    let (st, ss) = (cfg.scale_temporal(), cfg.scale_spatial());
    if frames == 0 || !height.is_multiple_of(ss) || !width.is_multiple_of(ss) {
        return Err(ModelError::InvalidArgument(format!(
            "VAE plan: {frames} frames of {height}×{width} (need ≥ 1 frame, sides divisible \
             by {ss})"
        )));
    }
    let mut walk = PlanWalk {
        batch,
        band_elems: band_elems.max(1),
        convs: Vec::new(),
        ops: Vec::new(),
        cache: 0,
    };
    let (h, w) = (height / ss, width / ss);
    let z2 = 2 * cfg.z_dim;
    match pass {
        VaePass::Encode => {
            let used = 1 + st * ((frames - 1) / st);
            walk.ops.push(OpKernel {
                what: "encode input permute".into(),
                elems: batch * cfg.in_channels * frames * height * width,
            });
            let (mut start, mut latents, mut cache) = (0, 0, 0);
            while start < used {
                let len = if start == 0 { 1 } else { st.min(used - start) };
                walk.cache = 0;
                let (t, _, _) = walk.encoder_chunk(cfg, start == 0, len, height, width)?;
                cache = cache.max(walk.cache);
                latents += t;
                start += len;
            }
            walk.cache = cache;
            walk.conv(
                "quant_conv".into(),
                Conv3dSpec::cube(z2, z2, 1, 0),
                latents,
                h,
                w,
            )?;
        }
        VaePass::Decode => {
            let latents = (frames - 1).div_ceil(st) + 1;
            let spec = Conv3dSpec::cube(cfg.z_dim, cfg.z_dim, 1, 0);
            walk.conv("post_quant_conv".into(), spec, latents, h, w)?;
            let mut out_frames = 0;
            let mut cache = 0;
            for i in 0..latents {
                walk.cache = 0;
                let (t, ho, wo) = walk.decoder_chunk(cfg, i == 0, h, w)?;
                cache = cache.max(walk.cache);
                out_frames += t;
                walk.ops.push(OpKernel {
                    what: "decode chunk permute".into(),
                    elems: batch * cfg.out_channels * t * ho * wo,
                });
            }
            walk.cache = cache;
            walk.ops.push(OpKernel {
                what: "decode output concatenation".into(),
                elems: batch * cfg.out_channels * out_frames * height * width,
            });
        }
    }
    Ok(VaePlan {
        pass,
        frames,
        height,
        width,
        band_elems: walk.band_elems,
        convs: walk.convs,
        ops: walk.ops,
        cache_elems: walk.cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv3d::DEFAULT_BAND_ELEMS;
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

    /// The fused CPU RMS norm (+ SiLU) equals the tensor ops, on odd sizes and on frames of
    /// more than one pixel chunk, for the 5D and the 4D (attention) layouts.
    #[test]
    fn rms_norm_cpu_equals_tensor_ops() {
        let dev = Device::Cpu;
        for (dims, images) in [
            (vec![2, 3, 5, 7, 9], false),
            (vec![1, 2, 3, 33, 35], false),
            (vec![3, 6, 4, 5], true),
        ] {
            let c = dims[dims.len() - 3];
            let gamma = Tensor::randn(1f32, 0.1, (c, 1, 1), &dev).unwrap();
            let norm = if images {
                gamma.clone()
            } else {
                gamma.reshape((c, 1, 1, 1)).unwrap()
            };
            let vb = VarBuilder::from_tensors(
                [("gamma".to_string(), norm)].into_iter().collect(),
                DType::F32,
                &dev,
            );
            let norm = RmsNorm::new(c, images, vb).unwrap();
            let mut x = Tensor::randn(0f32, 1.0, dims.clone(), &dev).unwrap();
            // A pixel whose channels are all zero (the 1e-12 clamp).
            let n: usize = dims.iter().product();
            let mut v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let p = dims[dims.len() - 2] * dims[dims.len() - 1];
            for ch in 0..c {
                v[ch * p] = 0.0;
            }
            x = Tensor::from_vec(v, dims.clone(), &dev).unwrap();
            assert_eq!(x.elem_count(), n);
            for silu in [false, true] {
                let want = norm.forward_ops(&x).unwrap();
                let want = if silu { want.silu().unwrap() } else { want };
                let got = norm.forward_act(&x, silu).unwrap();
                assert_eq!(got.dims(), want.dims());
                let diff = crate::test_util::max_abs_diff(&got, &want);
                assert!(diff < 1e-5, "{dims:?} silu {silu}: {diff}");
            }
        }
    }

    /// The decode with the native CPU kernels equals the banded tensor-op convolution.
    #[test]
    fn decode_native_cpu_equals_banded() {
        let dev = Device::Cpu;
        let mut vae = random_vae(&tiny(), &dev);
        let z = Tensor::randn(0f32, 1.0, (1, 16, 3, 3, 5), &dev).unwrap();
        let native = vae.decode(&z).unwrap();
        vae.set_conv_path(ConvPath::Banded);
        let banded = vae.decode(&z).unwrap();
        assert_eq!(native.dims(), &[1, 3, 9, 24, 40]);
        let diff = crate::test_util::max_abs_diff(&native, &banded);
        assert!(diff < 1e-4, "{diff}");
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

    /// The shape-only plan lists exactly the convolution calls a real run makes, with
    /// the same splits, at the default budget and at a tiny one.
    #[test]
    fn plan_matches_run() {
        let dev = Device::Cpu;
        let cfg = tiny();
        let mut vae = random_vae(&cfg, &dev);
        let video = Tensor::randn(0f32, 0.5, (1, 3, 9, 16, 24), &dev).unwrap();
        let z = Tensor::randn(0f32, 1.0, (1, 16, 3, 2, 3), &dev).unwrap();
        for band in [DEFAULT_BAND_ELEMS, 300] {
            vae.set_band_elems(band);
            let (_, enc) = vae.encode_traced(&video).unwrap();
            let plan = kernel_plan(&cfg, VaePass::Encode, 1, 9, 16, 24, band).unwrap();
            assert_eq!(enc, plan.convs);
            let (_, dec) = vae.decode_traced(&z).unwrap();
            let plan = kernel_plan(&cfg, VaePass::Decode, 1, 9, 16, 24, band).unwrap();
            assert_eq!(dec, plan.convs);
            if band == 300 {
                assert!(dec.iter().any(|p| p.bands > 1));
            }
        }
    }

    /// A tiny band budget (many bands and frame groups) gives the same video and latents.
    #[test]
    fn banded_vae_matches_default() {
        let dev = Device::Cpu;
        let mut vae = random_vae(&tiny(), &dev);
        let video = Tensor::randn(0f32, 0.5, (1, 3, 5, 16, 24), &dev).unwrap();
        let z = Tensor::randn(0f32, 1.0, (1, 16, 2, 2, 3), &dev).unwrap();
        let enc = vae.encode(&video).unwrap().mean;
        let dec = vae.decode(&z).unwrap();
        vae.set_band_elems(1);
        let encoded = vae.encode(&video).unwrap().mean;
        assert!(crate::test_util::max_abs_diff(&enc, &encoded) < 1e-5);
        let decoded = vae.decode(&z).unwrap();
        assert!(crate::test_util::max_abs_diff(&dec, &decoded) < 1e-5);
    }

    /// The official shapes (stage-1 decode at 480×832, refinement encode and decode at
    /// 704×1280, and the 161-frame job) keep every kernel within one 32-bit launch.
    #[test]
    fn plan_at_official_sizes_fits_one_launch() {
        let cfg = VaeConfig::default();
        let cases = [
            (VaePass::Decode, 93, 480, 832),
            (VaePass::Encode, 205, 704, 1280),
            (VaePass::Decode, 205, 704, 1280),
            (VaePass::Encode, 349, 704, 1280),
            (VaePass::Decode, 349, 704, 1280),
        ];
        for (pass, f, h, w) in cases {
            for band in [DEFAULT_BAND_ELEMS, crate::conv3d::CPU_BAND_ELEMS] {
                let plan = kernel_plan(&cfg, pass, 1, f, h, w, band).unwrap();
                let (what, n) = plan.largest();
                assert!(
                    n <= crate::conv3d::MAX_KERNEL_ELEMS,
                    "{pass:?} {f}×{h}×{w}: {what} has {n} elements"
                );
                for c in &plan.convs {
                    let one_row = c.frames_per_group == 1 && c.rows_per_band == 1;
                    assert!(c.im2col_elems <= band || one_row, "{}", c.layer);
                }
            }
        }
        // The unbanded im2col of the last decoder conv was ~9.3e9 elements.
        let plan = kernel_plan(&cfg, VaePass::Decode, 1, 5, 704, 1280, usize::MAX).unwrap();
        assert!(plan.largest().1 > crate::conv3d::MAX_KERNEL_ELEMS);
    }

    /// Decode time of the full-width VAE (base_dim 96) on 2 latent frames (5 video
    /// frames) of 64×64 pixels, one warm-up then `VAE_REPS` (default 3) timed runs, same
    /// work as `../shared/bench/pytorch-reference/py_vae.py`:
    /// `cargo test -p longcat-model --release vae_decode_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn vae_decode_timing() {
        let dev = Device::Cpu;
        let mut vae = random_vae(&VaeConfig::default(), &dev);
        if let Some(band) = std::env::var("VAE_BAND").ok().and_then(|v| v.parse().ok()) {
            vae.set_band_elems(band);
        }
        let z = Tensor::randn(0f32, 1.0, (1, 16, 2, 8, 8), &dev).unwrap();
        let reps: usize = std::env::var("VAE_REPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        let video = vae.decode(&z).unwrap();
        assert_eq!(video.dims(), &[1, 3, 5, 64, 64]);
        let mut ms: Vec<f64> = (0..reps.max(1))
            .map(|_| {
                let start = std::time::Instant::now();
                vae.decode(&z).unwrap();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let all: Vec<String> = ms.iter().map(|v| format!("{v:.2}")).collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "RESULT rust vae latent 2x8x8 band {} best_ms {:.2} median_ms {:.2} all_ms {}",
            vae.band_elems(),
            ms[0],
            ms[ms.len() / 2],
            all.join(",")
        );
    }

    /// Prints the computed rows of the docs/vae.md memory table:
    /// `cargo test -p longcat-model vae_plan_table -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn vae_plan_table() {
        let cfg = VaeConfig::default();
        let cases = [
            (VaePass::Decode, 93, 480, 832),
            (VaePass::Encode, 205, 704, 1280),
            (VaePass::Decode, 205, 704, 1280),
            (VaePass::Encode, 349, 704, 1280),
            (VaePass::Decode, 349, 704, 1280),
            (VaePass::Decode, 5, 128, 128),
            (VaePass::Decode, 5, 256, 256),
            (VaePass::Encode, 5, 256, 256),
        ];
        let gib = |e: usize, bytes: usize| (e * bytes) as f64 / (1u64 << 30) as f64;
        for (pass, f, h, w) in cases {
            for band in [usize::MAX, DEFAULT_BAND_ELEMS, 1 << 20] {
                let plan = kernel_plan(&cfg, pass, 1, f, h, w, band).unwrap();
                let (what, n) = plan.largest();
                let peak = plan.peak_activation_elems();
                let band = if band == usize::MAX {
                    "unbanded".to_string()
                } else {
                    format!("2^{}", band.trailing_zeros())
                };
                println!(
                    "| {pass:?} {f}×{h}×{w} | {band} | {n:.3e} ({what}) | {:.2} | {:.2} |",
                    gib(peak, 2),
                    gib(peak, 4)
                );
            }
        }
    }

    /// Peak RSS of one pass of the full-width VAE at a reduced size, for docs/vae.md:
    /// `VAE_PROBE=decode,FRAMES,H,W[,BAND] cargo test -p longcat-model --release
    /// vae_memory_probe -- --ignored --nocapture` (one pass per process).
    #[test]
    #[ignore]
    fn vae_memory_probe() {
        fn rss_kib(field: &str) -> usize {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        }
        let probe = std::env::var("VAE_PROBE").unwrap_or_else(|_| "decode,5,64,64".into());
        let f: Vec<&str> = probe.split(',').collect();
        let num = |i: usize| f[i].parse::<usize>().unwrap();
        let (frames, h, w) = (num(1), num(2), num(3));
        let band = f
            .get(4)
            .map_or(crate::conv3d::CPU_BAND_ELEMS, |v| v.parse().unwrap());
        let dev = Device::Cpu;
        let cfg = VaeConfig::default();
        let mut vae = random_vae(&cfg, &dev);
        vae.set_band_elems(band);
        let pass = if f[0] == "encode" {
            VaePass::Encode
        } else {
            VaePass::Decode
        };
        let plan = kernel_plan(&cfg, pass, 1, frames, h, w, band).unwrap();
        let input = match pass {
            VaePass::Encode => Tensor::randn(0f32, 0.5, (1, 3, frames, h, w), &dev).unwrap(),
            VaePass::Decode => {
                let t = (frames - 1).div_ceil(4) + 1;
                Tensor::randn(0f32, 1.0, (1, 16, t, h / 8, w / 8), &dev).unwrap()
            }
        };
        let base = rss_kib("VmRSS:");
        let start = std::time::Instant::now();
        match pass {
            VaePass::Encode => drop(vae.encode(&input).unwrap()),
            VaePass::Decode => vae.decode_streaming(&input, |_| Ok(())).unwrap(),
        }
        let secs = start.elapsed().as_secs_f64();
        let peak = rss_kib("VmHWM:");
        println!(
            "PROBE {probe} band {band}: rss before {:.0} MiB, peak {:.0} MiB, peak − before \
             {:.0} MiB; planned activations {:.0} MiB (f32); largest kernel {:?}; {secs:.1} s",
            base as f64 / 1024.0,
            peak as f64 / 1024.0,
            (peak - base) as f64 / 1024.0,
            plan.peak_activation_elems() as f64 * 4.0 / (1 << 20) as f64,
            plan.largest()
        );
    }
}
