//! [`Networks`]: the loaded networks of one generator (from a checkpoint or the built-in tiny
//! model), before they are wrapped into an engine.

use longcat_model::dit::LongCatDit;
use longcat_model::tokenizer::PromptTokenizer;
use longcat_model::vae::WanVae;

use crate::engine::EngineConfig;
use crate::text_encoder::{ManagedTextEncoder, TextEncoderPolicy};

/// The networks of one generator before they are wrapped into an [`Engine`](crate::engine::Engine).
pub struct Networks {
    /// umT5 encoder, held under a [`TextEncoderPolicy`].
    pub text_encoder: ManagedTextEncoder,
    /// Its tokenizer (fixed length).
    pub tokenizer: PromptTokenizer,
    /// Wan VAE.
    pub vae: WanVae,
    /// DiT with `cfg_step_lora` / `refinement_lora` registered.
    pub dit: LongCatDit,
    /// Engine settings (buckets, shift, names).
    pub config: EngineConfig,
}

/// Logs the text encoder's policy and where its weights are.
pub(crate) fn log_text_encoder(requested: TextEncoderPolicy, te: &ManagedTextEncoder) {
    tracing::info!(
        requested = %requested,
        effective = %te.policy(),
        device_bytes = te.device_bytes(),
        host_bytes = te.host_bytes(),
        "text encoder policy"
    );
}
