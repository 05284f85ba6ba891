//! The Wan2.1 causal 3D VAE (`AutoencoderKLWan`, the non-residual 2.1 variant).
//!
//! The public API speaks `[B, C, F, H, W]` like the reference; internally every tensor is
//! frame-major `[B, F, C, H, W]` so causal convolutions and per-frame 2D layers run on
//! views. Encoding runs frame 0 alone and then chunks of 4 frames; decoding runs one
//! latent frame at a time (yielding 1, then 4 frames each). Causal convolutions carry the
//! last `CACHE_T = 2` input frames from one chunk to the next in a [`FeatCache`].
//! Optionally ([`WanVae::set_tiling`], off by default) encode and decode run on overlapping
//! spatial tiles blended with linear ramps ([`VaeTiling`]).

mod attention;
mod cache;
mod config;
mod cpu;
mod decoder;
mod encoder;
mod norm;
mod plan;
mod resample;
mod resnet;
mod tiling;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

pub use cache::FeatCache;
pub use config::VaeConfig;
pub use plan::{kernel_plan, kernel_plan_tiled, OpKernel, VaePass, VaePlan};
pub use tiling::VaeTiling;

use crate::conv3d::{
    check_kernel_elems, default_band_elems, CausalConv3d, Conv3dSpec, ConvKernelPlan, ConvPath,
    ConvRun,
};
use crate::Result;
use decoder::Decoder;
use encoder::Encoder;

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
    /// Spatial tiling of encode and decode (`None`: whole frames, the official behaviour).
    tiling: Option<VaeTiling>,
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
            tiling: None,
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
        Self::new(cfg, crate::random::random_var_builder(seed, dtype, device))
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// Turns spatial tiling of encode and decode on (`Some`) or off (`None`, the default and
    /// the official behaviour). See [`VaeTiling`].
    pub fn set_tiling(&mut self, tiling: Option<VaeTiling>) {
        self.tiling = tiling;
    }

    /// The spatial tiling in use (`None`: whole frames).
    pub fn tiling(&self) -> Option<VaeTiling> {
        self.tiling
    }

    /// Encodes `video` `[B, 3, F, H, W]` in `[-1, 1]` (`F = 1 + 4k`, `H, W` divisible by 8)
    /// into the posterior over `[B, z, 1 + (F-1)/4, H/8, W/8]`.
    pub fn encode(&self, video: &Tensor) -> Result<Posterior> {
        Ok(self.encode_run(video, false)?.0)
    }

    /// [`Self::encode`], also returning the plan of every convolution call as run.
    pub fn encode_traced(&self, video: &Tensor) -> Result<(Posterior, Vec<ConvKernelPlan>)> {
        self.encode_run(video, true)
    }

    fn encode_run(&self, video: &Tensor, trace: bool) -> Result<(Posterior, Vec<ConvKernelPlan>)> {
        check_kernel_elems("VAE encode input", video.elem_count())?;
        let mut traces = Vec::new();
        let h = match self.tiling {
            None => self.encode_tile(video, trace, &mut traces)?,
            Some(t) => tiling::encode(self, t, video, trace, &mut traces)?,
        };
        let z = self.cfg.z_dim;
        let mean = swap_ct(&h.narrow(2, 0, z)?)?;
        let logvar = swap_ct(&h.narrow(2, z, z)?)?.clamp(-30f64, 20f64)?;
        Ok((Posterior { mean, logvar }, traces))
    }

    /// Encodes `video` `[B, 3, F, H, W]` (a whole frame or one tile) with its own causal
    /// cache; returns the moments `[B, T, 2z, h, w]` (frame-major).
    fn encode_tile(
        &self,
        video: &Tensor,
        trace: bool,
        traces: &mut Vec<ConvKernelPlan>,
    ) -> Result<Tensor> {
        let mut cache = self.new_cache();
        if trace {
            cache.run.trace = Some(Vec::new());
        }
        let x = swap_ct(video)?;
        let frames = x.dim(1)?;
        let mut outs = Vec::new();
        let mut start = 0;
        while start < frames {
            let len = if start == 0 { 1 } else { 4.min(frames - start) };
            cache.rewind();
            let chunk = x.narrow(1, start, len)?;
            outs.push(self.encoder.forward(&chunk, &mut cache)?);
            start += len;
        }
        let h = cache.conv(&self.quant_conv, &Tensor::cat(&outs, 1)?, None)?;
        traces.extend(cache.run.trace.take().unwrap_or_default());
        Ok(h)
    }

    /// Decodes latents `[B, z, T, h, w]` to `[B, 3, 1 + 4(T-1), 8h, 8w]` in `[-1, 1]`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.decode_run(z, false)?.0)
    }

    /// [`Self::decode`], also returning the plan of every convolution call as run.
    pub fn decode_traced(&self, z: &Tensor) -> Result<(Tensor, Vec<ConvKernelPlan>)> {
        self.decode_run(z, true)
    }

    fn decode_run(&self, z: &Tensor, trace: bool) -> Result<(Tensor, Vec<ConvKernelPlan>)> {
        let mut chunks = Vec::new();
        let traces = self.decode_sink(z, trace, &mut |c| {
            chunks.push(c);
            Ok(())
        })?;
        let elems: usize = chunks.iter().map(Tensor::elem_count).sum();
        check_kernel_elems("VAE decode output", elems)?;
        Ok((Tensor::cat(&chunks, 2)?, traces))
    }

    /// Decodes one latent frame at a time and hands each pixel chunk `[B, 3, f, H, W]`
    /// (`f` = 1 for the first, then 4) to `sink`, so the whole video is never held.
    /// With [`Self::set_tiling`] each tile is decoded through all frames before the next,
    /// so the blended video is held (f32) and the chunks reach `sink` at the end.
    pub fn decode_streaming(
        &self,
        z: &Tensor,
        mut sink: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        self.decode_sink(z, false, &mut sink).map(drop)
    }

    fn decode_sink(
        &self,
        z: &Tensor,
        trace: bool,
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<Vec<ConvKernelPlan>> {
        let mut traces = Vec::new();
        match self.tiling {
            None => self.decode_tile(z, trace, &mut traces, sink)?,
            Some(t) => tiling::decode(self, t, z, trace, &mut traces, sink)?,
        }
        Ok(traces)
    }

    /// Decodes latents `[B, z, T, h, w]` (a whole frame or one tile) one latent frame at a
    /// time with its own causal cache, handing each pixel chunk to `sink`.
    fn decode_tile(
        &self,
        z: &Tensor,
        trace: bool,
        traces: &mut Vec<ConvKernelPlan>,
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        let mut cache = self.new_cache();
        if trace {
            cache.run.trace = Some(Vec::new());
        }
        let x = cache.conv(&self.post_quant_conv, &swap_ct(z)?, None)?;
        for i in 0..x.dim(1)? {
            cache.rewind();
            let out = self.decoder.forward(&x.narrow(1, i, 1)?, &mut cache)?;
            sink(swap_ct(&out)?.clamp(-1f64, 1f64)?)?;
        }
        traces.extend(cache.run.trace.take().unwrap_or_default());
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
mod tests;
