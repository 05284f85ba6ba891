//! What the pipeline needs from the networks, as traits: a prompt encoder, a latent video
//! codec (the VAE) and a denoiser (the DiT). Adapters in the `models` module bind them to
//! `longcat_model`; tests can plug in anything.

use candle_core::{DType, Tensor};

use crate::api::PipelineError;

/// Result alias of the pipeline.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Text conditioning as the DiT receives it.
#[derive(Debug, Clone)]
pub struct TextConditioning {
    /// `[B, 1, L, C]` encoder states (padding positions included).
    pub embeds: Tensor,
    /// `[B, L]` i64 mask (1 = real token).
    pub mask: Tensor,
}

impl TextConditioning {
    /// The CFG batch `[negative, positive]`.
    pub fn cfg_batch(negative: &Self, positive: &Self) -> Result<Self> {
        Ok(Self {
            embeds: Tensor::cat(&[&negative.embeds, &positive.embeds], 0)?,
            mask: Tensor::cat(&[&negative.mask, &positive.mask], 0)?,
        })
    }

    /// Text length `L`.
    pub fn len(&self) -> usize {
        self.mask.dims().last().copied().unwrap_or(0)
    }

    /// Whether `L` is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encodes one prompt into `[1, 1, L, C]` states and its `[1, L]` mask.
pub trait PromptEncoder {
    /// Tokenizes (fixed length, padded) and encodes `prompt`.
    fn encode_prompt(&self, prompt: &str) -> Result<TextConditioning>;
    /// Makes the encoder ready on the device before a job's prompts (default: it always is).
    fn acquire(&mut self) -> Result<()> {
        Ok(())
    }
    /// Called once a job's prompts are encoded: the encoder may free its device memory
    /// (default: keeps it).
    fn release(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A diagonal Gaussian posterior of the VAE encoder (the model's own type).
pub use longcat_model::vae::Posterior;

/// The video VAE: encode pixels to a posterior, decode latents to pixels.
pub trait LatentCodec {
    /// Encodes `[B, 3, F, H, W]` in `[-1, 1]`.
    fn encode(&self, video: &Tensor) -> Result<Posterior>;
    /// Decodes (denormalized) latents to `[B, 3, F, H, W]` clamped to `[-1, 1]`.
    fn decode(&self, latents: &Tensor) -> Result<Tensor>;
    /// Decodes in temporal chunks, in order, handing each `[B, 3, f, H, W]` chunk to `sink`
    /// (the default decodes everything at once).
    fn decode_chunks(
        &self,
        latents: &Tensor,
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        sink(self.decode(latents)?)
    }
    /// Per-channel latent mean and std used to (de)normalize.
    fn latent_stats(&self) -> (Vec<f32>, Vec<f32>);
    /// Temporal compression (4).
    fn scale_temporal(&self) -> usize {
        4
    }
    /// Spatial compression (8).
    fn scale_spatial(&self) -> usize {
        8
    }
}

/// `(z − mean)·(1/std)` per channel of `[B, C, T, h, w]`.
pub fn normalize_latents<V: LatentCodec + ?Sized>(vae: &V, z: &Tensor) -> Result<Tensor> {
    let (mean, inv_std) = stats_tensors(vae, z)?;
    Ok(z.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?)
}

/// `z / (1/std) + mean` per channel.
pub fn denormalize_latents<V: LatentCodec + ?Sized>(vae: &V, z: &Tensor) -> Result<Tensor> {
    let (mean, inv_std) = stats_tensors(vae, z)?;
    Ok(z.broadcast_div(&inv_std)?.broadcast_add(&mean)?)
}

fn stats_tensors<V: LatentCodec + ?Sized>(vae: &V, z: &Tensor) -> Result<(Tensor, Tensor)> {
    let (mean, std) = vae.latent_stats();
    let c = mean.len();
    let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
    let dev = z.device();
    let mean = Tensor::from_vec(mean, (1, c, 1, 1, 1), dev)?.to_dtype(z.dtype())?;
    let inv = Tensor::from_vec(inv, (1, c, 1, 1, 1), dev)?.to_dtype(z.dtype())?;
    Ok((mean, inv))
}

/// Which LoRA the denoiser runs with (the checkpoint's LoRA files).
pub use longcat_model::checkpoint::LoraKind;

/// Adapter state of the denoiser for one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DenoiserMode {
    /// The active LoRA (multiplier 1), if any.
    pub lora: Option<LoraKind>,
    /// Block sparse attention on.
    pub bsa: bool,
}

/// The DiT.
pub trait Denoiser {
    /// Per-layer keys/values of clean condition latents.
    type KvCache;
    /// Whether a LoRA of `kind` is loaded (the engine asks before a request that needs it).
    fn has_lora(&self, kind: LoraKind) -> bool;
    /// Selects the LoRA and attention mode for the next forwards.
    fn set_mode(&mut self, mode: DenoiserMode) -> Result<()>;
    /// Forward over `[B, 16, T, h, w]` latents whose first `num_cond_latents` frames are clean
    /// condition frames; `timestep` is `[B, T]`.
    fn forward(
        &self,
        latents: &Tensor,
        timestep: &Tensor,
        text: &TextConditioning,
        num_cond_latents: usize,
    ) -> Result<Tensor>;
    /// Caches keys/values of clean condition latents (timestep 0, no cross-attention).
    fn cache_condition(
        &self,
        cond_latents: &Tensor,
        text: &TextConditioning,
    ) -> Result<Self::KvCache>;
    /// Forward over noise latents only, attending to the cached condition.
    fn forward_cached(
        &self,
        latents: &Tensor,
        timestep: &Tensor,
        text: &TextConditioning,
        cache: &Self::KvCache,
    ) -> Result<Tensor>;
}

/// Converts a float tensor to f32 (no-op when it already is).
pub fn f32(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?)
}
