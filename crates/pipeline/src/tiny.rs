//! The built-in deterministic tiny random model.
//!
//! Same structure and tensor names as the official networks (umT5 encoder, Wan2.1 VAE,
//! LongCat DiT with `cfg_step_lora` and `refinement_lora`), but a few thousand times
//! narrower, with weights drawn from a fixed seed and a built-in ASCII tokenizer, so the
//! whole product path (stage 1, continuation segments, refinement with block sparse
//! attention, streaming decode) runs on a laptop CPU in seconds. Its output is noise.
//!
//! To stay fast it also uses scaled-down resolution buckets: the official tables with every
//! side divided by 16 and rounded to a multiple of 16 (a 16:9 image: 32×48 in stage 1,
//! 48×80 after refinement). Everything else (frame counts, segments, schedules, seeds) is
//! the product's.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device};
use longcat_model::dit::random::random_lora;
use longcat_model::dit::{DitConfig, LongCatDit};
use longcat_model::random::random_var_builder;
use longcat_model::tokenizer::{PromptTokenizer, TINY_VOCAB_SIZE};
use longcat_model::umt5::Umt5Config;
use longcat_model::vae::{VaeConfig, WanVae};

use crate::api::PipelineError;
use crate::buckets::{shrink, ASPECT_RATIO_627, ASPECT_RATIO_960_F64};
use crate::components::LoraKind;
use crate::engine::{EngineConfig, PanicHook};
use crate::networks::{log_text_encoder, Networks};
use crate::text_encoder::{ManagedTextEncoder, TextEncoderPolicy, TextEncoderWeights};

/// [`crate::ModelInfo::name`] of the tiny model.
pub const NAME: &str = "built-in tiny random model (output is noise)";
/// Seed of every random weight.
pub const WEIGHT_SEED: u64 = 0x004c_6f6e_6743_6174; // "LongCat"
/// Text length (official: 512).
pub const TEXT_TOKENS: usize = 64;
/// Side divisor of the bucket tables.
pub const BUCKET_DIVISOR: u32 = 16;
/// LoRA rank (official: 128).
pub const LORA_RANK: usize = 4;

/// Test hook (fault injection for the worker's panic path; see docs/worker.md): a
/// comma-separated list of run numbers, e.g. `1` or `1,3`. The tiny model panics inside the
/// first stage-1 denoising step of those runs of this process (counted from 1 over every tiny
/// engine, rebuilds included). Read only when the tiny model is built; a checkpoint model
/// never reads it, and nothing in a request can reach it.
pub const PANIC_RUNS_ENV: &str = "LONGCAT_TEST_TINY_PANIC_RUNS";

/// The process-wide hook from [`PANIC_RUNS_ENV`] (one counter, so a rebuilt engine goes on
/// counting).
fn env_panic_hook() -> Option<PanicHook> {
    static HOOK: OnceLock<Option<PanicHook>> = OnceLock::new();
    HOOK.get_or_init(|| {
        let value = std::env::var(PANIC_RUNS_ENV).ok()?;
        let runs: Result<Vec<u32>, _> = value.split(',').map(|r| r.trim().parse()).collect();
        match runs {
            Ok(runs) if !runs.is_empty() => {
                tracing::warn!(
                    env = PANIC_RUNS_ENV,
                    ?runs,
                    "TEST HOOK: these tiny-model runs will panic"
                );
                Some(PanicHook::on_runs(&runs))
            }
            _ => {
                tracing::warn!(env = PANIC_RUNS_ENV, %value, "ignored: not a list of run numbers");
                None
            }
        }
    })
    .clone()
}

/// umT5 with 2 layers of width 32.
pub fn text_encoder_config() -> Umt5Config {
    Umt5Config {
        vocab_size: TINY_VOCAB_SIZE,
        d_model: 32,
        d_kv: 8,
        d_ff: 64,
        num_layers: 2,
        num_heads: 4,
        relative_attention_num_buckets: 32,
        relative_attention_max_distance: 128,
        layer_norm_epsilon: 1e-6,
        feed_forward_proj: "gated-gelu".into(),
        pad_token_id: 0,
        eos_token_id: 1,
    }
}

/// Wan2.1 VAE layout (4 levels, ÷4 time, ÷8 space, official latent statistics) with base
/// width 4 instead of 96.
pub fn vae_config() -> VaeConfig {
    VaeConfig {
        base_dim: 4,
        ..VaeConfig::default()
    }
}

/// LongCat DiT layout with 2 blocks of width 32 (2 heads of 16); BSA with 4×1×1 token
/// chunks and sparsity 0.5 (official: 4×4×4, 0.9375), so the small refinement grids split.
pub fn dit_config() -> Result<DitConfig, PipelineError> {
    let value = serde_json::json!({
        "in_channels": 16, "out_channels": 16, "hidden_size": 32, "depth": 2, "num_heads": 2,
        "caption_channels": 32, "mlp_ratio": 4, "adaln_tembed_dim": 32,
        "frequency_embedding_size": 256, "patch_size": [1, 2, 2],
        "text_tokens_zero_pad": true, "enable_bsa": false,
        "bsa_params": {"sparsity": 0.5, "cdf_threshold": null,
                       "chunk_3d_shape_q": [4, 1, 1], "chunk_3d_shape_k": [4, 1, 1]},
        "cp_split_hw": [1, 1]
    });
    Ok(DitConfig::from_value(&value)?)
}

/// Engine settings: the product's, with the scaled-down buckets and the smoke-test flag.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        name: NAME.into(),
        smoke_test_model: true,
        stage1_buckets: shrink(ASPECT_RATIO_627, BUCKET_DIVISOR, 16),
        refine_buckets: shrink(ASPECT_RATIO_960_F64, BUCKET_DIVISOR, 16),
        panic_hook: env_panic_hook(),
        ..EngineConfig::default()
    }
}

/// The tiny text encoder's weights (deterministic random, rebuilt identically on reload).
pub fn text_encoder_weights(dtype: DType) -> TextEncoderWeights {
    TextEncoderWeights {
        config: text_encoder_config(),
        dtype,
        open: Arc::new(move |dev: &Device| random_var_builder(WEIGHT_SEED, dtype, dev)),
    }
}

/// Builds the tiny networks (deterministic: the same bits on every run); the text encoder
/// is held under `policy`.
pub fn networks(
    device: &Device,
    dtype: DType,
    policy: TextEncoderPolicy,
) -> Result<Networks, PipelineError> {
    let dit_cfg = dit_config()?;
    let mut dit = LongCatDit::random(dit_cfg.clone(), WEIGHT_SEED, device, dtype)?;
    for kind in [LoraKind::CfgStep, LoraKind::Refinement] {
        let weights = random_lora(&dit_cfg, kind, LORA_RANK, WEIGHT_SEED, device, dtype)?;
        dit.register_lora(kind.name(), weights)?;
    }
    Ok(Networks {
        text_encoder: {
            let te = ManagedTextEncoder::new(text_encoder_weights(dtype), policy, device.clone())?;
            log_text_encoder(policy, &te);
            te
        },
        tokenizer: PromptTokenizer::builtin_tiny(TEXT_TOKENS)?,
        vae: WanVae::random(&vae_config(), WEIGHT_SEED, device, dtype)?,
        dit,
        config: engine_config(),
    })
}
