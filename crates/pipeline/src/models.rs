//! Adapters binding the `longcat_model` networks to the pipeline traits of
//! [`crate::components`]: the umT5 prompt encoder ([`Umt5PromptEncoder`]), the Wan VAE
//! ([`WanVaeCodec`]) and the LongCat DiT with its named LoRAs and block sparse attention
//! ([`DitDenoiser`]).
//!
//! The pipeline keeps latents and pixels in f32; the adapters cast to the networks' dtype on
//! the way in and back to f32 on the way out, so a bf16 model plugs in unchanged.

use candle_core::{DType, Device, Tensor};
use longcat_model::bsa::BsaParams;
use longcat_model::dit::{DitKvCache, LongCatDit, TextInput};
use longcat_model::lora::{LoraMode, LoraWeights};
use longcat_model::tokenizer::{PromptTokenizer, TokenizedPrompts};
use longcat_model::umt5::{to_prompt_embeds, Umt5Encoder};
use longcat_model::vae::WanVae;
use longcat_model::ModelError;

use crate::api::PipelineError;
use crate::components::{
    Denoiser, DenoiserMode, LatentCodec, LoraKind, Posterior, PromptEncoder, Result,
    TextConditioning,
};
use crate::text_encoder::{ManagedTextEncoder, TextEncoderPolicy, TextEncoderWeights};

/// umT5 + tokenizer as the official `_get_t5_prompt_embeds`: the cleaned prompt is
/// tokenized to exactly the tokenizer's fixed length (512 officially; padded, truncated with
/// the `</s>` kept), encoded, and every position (padding included) is handed on as
/// `[1, 1, L, C]` with the unchanged tokenizer mask. The encoder is held according to a
/// [`TextEncoderPolicy`] ([`PromptEncoder::acquire`] / [`PromptEncoder::release`] around
/// each job's prompts).
#[derive(Debug)]
pub struct Umt5PromptEncoder {
    encoder: ManagedTextEncoder,
    tokenizer: PromptTokenizer,
    device: Device,
}

impl Umt5PromptEncoder {
    /// Wraps an encoder that stays resident and its tokenizer; token tensors are created
    /// on `device`.
    pub fn new(encoder: Umt5Encoder, tokenizer: PromptTokenizer, device: Device) -> Self {
        Self {
            encoder: ManagedTextEncoder::resident(encoder, device.clone()),
            tokenizer,
            device,
        }
    }

    /// Builds the encoder from `weights` under `policy` (see [`ManagedTextEncoder::new`]).
    pub fn with_policy(
        weights: TextEncoderWeights,
        policy: TextEncoderPolicy,
        tokenizer: PromptTokenizer,
        device: Device,
    ) -> Result<Self> {
        let encoder = ManagedTextEncoder::new(weights, policy, device.clone())?;
        Ok(Self::from_managed(encoder, tokenizer, device))
    }

    /// Wraps an encoder already held under its policy.
    pub fn from_managed(
        encoder: ManagedTextEncoder,
        tokenizer: PromptTokenizer,
        device: Device,
    ) -> Self {
        Self {
            encoder,
            tokenizer,
            device,
        }
    }

    /// The fixed text length `L`.
    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// The encoder, when it is on the device.
    pub fn encoder(&self) -> Result<&Umt5Encoder> {
        self.encoder.loaded()
    }

    /// The encoder with its residency (policy, bytes on the device and in host RAM).
    pub fn managed(&self) -> &ManagedTextEncoder {
        &self.encoder
    }

    /// Encodes already tokenized prompts (`[B, L]` ids and mask) into `[B, 1, L, C]` states
    /// and the `[B, L]` i64 mask.
    pub fn encode_tokens(&self, tokens: &TokenizedPrompts) -> Result<TextConditioning> {
        encode_tokens(
            self.encoder.loaded()?,
            &tokens.input_ids.to_device(&self.device)?,
            &tokens.attention_mask.to_device(&self.device)?,
        )
    }
}

/// Runs `encoder` on `[B, L]` token ids and mask and returns what the DiT receives: every
/// position of the last hidden state as `[B, 1, L, C]` and the mask as i64.
pub fn encode_tokens(
    encoder: &Umt5Encoder,
    input_ids: &Tensor,
    attention_mask: &Tensor,
) -> Result<TextConditioning> {
    let mask = attention_mask.to_dtype(DType::I64)?;
    let hidden = encoder.forward(input_ids, &mask)?;
    Ok(TextConditioning {
        embeds: to_prompt_embeds(&hidden)?,
        mask,
    })
}

impl PromptEncoder for Umt5PromptEncoder {
    fn encode_prompt(&self, prompt: &str) -> Result<TextConditioning> {
        let tokens = self.tokenizer.encode(&[prompt], &self.device)?;
        self.encode_tokens(&tokens)
    }

    fn acquire(&mut self) -> Result<()> {
        self.encoder.acquire().map(drop)
    }

    fn release(&mut self) -> Result<()> {
        self.encoder.release();
        Ok(())
    }
}

/// The Wan 2.1 VAE as the pipeline's latent codec. Decoding streams one latent frame at a
/// time (1 then 4 pixel frames per chunk) through [`WanVae::decode_streaming`].
#[derive(Debug, Clone)]
pub struct WanVaeCodec {
    vae: WanVae,
}

impl WanVaeCodec {
    /// Wraps a VAE.
    pub fn new(vae: WanVae) -> Self {
        Self { vae }
    }

    /// The wrapped VAE.
    pub fn vae(&self) -> &WanVae {
        &self.vae
    }
}

impl LatentCodec for WanVaeCodec {
    fn encode(&self, video: &Tensor) -> Result<Posterior> {
        let p = self.vae.encode(&video.to_dtype(self.vae.dtype())?)?;
        Ok(Posterior {
            mean: p.mean.to_dtype(DType::F32)?,
            logvar: p.logvar.to_dtype(DType::F32)?,
        })
    }

    fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let video = self.vae.decode(&latents.to_dtype(self.vae.dtype())?)?;
        Ok(video.to_dtype(DType::F32)?)
    }

    fn decode_chunks(
        &self,
        latents: &Tensor,
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        let z = latents.to_dtype(self.vae.dtype())?;
        // The model's callback speaks `ModelError`; keep the sink's own error to return it.
        let mut failure: Option<PipelineError> = None;
        let decoded = self.vae.decode_streaming(&z, |chunk| {
            let chunk = chunk.to_dtype(DType::F32)?;
            sink(chunk).map_err(|e| {
                failure = Some(e);
                ModelError::InvalidArgument("frame consumer stopped the decoder".into())
            })
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(decoded?),
        }
    }

    fn latent_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let cfg = self.vae.config();
        (cfg.latents_mean.clone(), cfg.latents_std.clone())
    }

    fn scale_temporal(&self) -> usize {
        self.vae.config().scale_temporal()
    }

    fn scale_spatial(&self) -> usize {
        self.vae.config().scale_spatial()
    }
}

/// The LongCat DiT as the pipeline's denoiser. LoRAs are registered under the official names
/// (`cfg_step_lora`, `refinement_lora`, see [`LoraKind::name`]) and [`Denoiser::set_mode`]
/// enables the selected one alone with multiplier 1 (unmerged by default, as the official
/// code) and switches block sparse attention with the config's `bsa_params`.
#[derive(Debug, Clone)]
pub struct DitDenoiser {
    dit: LongCatDit,
    bsa_params: Option<BsaParams>,
    lora_mode: LoraMode,
    mode: DenoiserMode,
}

impl DitDenoiser {
    /// Wraps a DiT (no LoRA active, dense attention); BSA uses the config's `bsa_params`.
    pub fn new(mut dit: LongCatDit) -> Self {
        let bsa_params = dit.config().bsa_params.clone();
        // Only a DiT handed over with merged LoRAs can fail here (re-reading its weights).
        if let Err(e) = dit.disable_loras() {
            tracing::warn!(%e, "could not restore the merged LoRA weights of the DiT");
        }
        dit.disable_bsa();
        Self {
            dit,
            bsa_params,
            lora_mode: LoraMode::Unmerged,
            mode: DenoiserMode::default(),
        }
    }

    /// Applies LoRAs merged into the weights instead of as output deltas (faster forwards,
    /// a weight rewrite on every LoRA switch).
    pub fn with_lora_mode(mut self, mode: LoraMode) -> Self {
        self.lora_mode = mode;
        self
    }

    /// Overrides the block sparse attention parameters.
    pub fn with_bsa_params(mut self, params: BsaParams) -> Self {
        self.bsa_params = Some(params);
        self
    }

    /// Registers `weights` as the LoRA of `kind`.
    pub fn register_lora(&mut self, kind: LoraKind, weights: LoraWeights) -> Result<()> {
        self.dit.register_lora(kind.name(), weights)?;
        Ok(())
    }

    /// Loads an official LoRA file as the LoRA of `kind`.
    pub fn load_lora(&mut self, kind: LoraKind, path: &std::path::Path) -> Result<()> {
        self.dit.load_lora(kind.name(), path)?;
        Ok(())
    }

    /// The current mode.
    pub fn mode(&self) -> DenoiserMode {
        self.mode
    }

    /// The wrapped DiT.
    pub fn dit(&self) -> &LongCatDit {
        &self.dit
    }

    fn text<'a>(text: &'a TextConditioning) -> TextInput<'a> {
        TextInput {
            states: &text.embeds,
            mask: Some(&text.mask),
        }
    }
}

impl Denoiser for DitDenoiser {
    type KvCache = DitKvCache;

    fn has_lora(&self, kind: LoraKind) -> bool {
        self.dit.lora_names().iter().any(|n| n == kind.name())
    }

    fn set_mode(&mut self, mode: DenoiserMode) -> Result<()> {
        if mode.bsa {
            let params = self.bsa_params.clone().ok_or_else(|| {
                PipelineError::InvalidRequest(
                    "block sparse attention requested but the DiT config has no bsa_params".into(),
                )
            })?;
            self.dit.enable_bsa(params);
        } else {
            self.dit.disable_bsa();
        }
        if mode.lora != self.mode.lora {
            match mode.lora {
                None => self.dit.disable_loras()?,
                Some(kind) => {
                    if !self.has_lora(kind) {
                        self.dit.disable_loras()?;
                        self.mode.lora = None;
                        return Err(PipelineError::InvalidRequest(format!(
                            "LoRA `{}` is not loaded",
                            kind.name()
                        )));
                    }
                    let set = [(kind.name().to_string(), 1.0)];
                    if let Err(e) = self.dit.enable_loras(&set, self.lora_mode) {
                        self.mode.lora = None;
                        return Err(e.into());
                    }
                }
            }
        }
        self.mode = mode;
        Ok(())
    }

    fn forward(
        &self,
        latents: &Tensor,
        timestep: &Tensor,
        text: &TextConditioning,
        num_cond_latents: usize,
    ) -> Result<Tensor> {
        Ok(self
            .dit
            .forward(latents, timestep, Self::text(text), num_cond_latents)?)
    }

    fn cache_condition(
        &self,
        cond_latents: &Tensor,
        _text: &TextConditioning,
    ) -> Result<Self::KvCache> {
        Ok(self.dit.cache_condition(cond_latents)?)
    }

    fn forward_cached(
        &self,
        latents: &Tensor,
        timestep: &Tensor,
        text: &TextConditioning,
        cache: &Self::KvCache,
    ) -> Result<Tensor> {
        Ok(self
            .dit
            .forward_cached(latents, timestep, Self::text(text), cache)?)
    }
}

#[cfg(test)]
mod tests;
