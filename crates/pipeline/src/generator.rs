//! Building a [`VideoGenerator`]: from an official checkpoint directory, or the built-in
//! deterministic tiny random model (smoke tests, CI, development without weights).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use longcat_model::checkpoint::{Checkpoint, Component, TrackedWeights};
use longcat_model::dit::{DitConfig, LongCatDit};
use longcat_model::lora::LoraMode;
use longcat_model::tokenizer::{PromptTokenizer, DEFAULT_MAX_LENGTH};
use longcat_model::vae::{VaeConfig, VaeTiling, WanVae};
use longcat_model::ModelError;

use crate::api::{PipelineError, VideoGenerator};
use crate::components::LoraKind;
use crate::engine::{Engine, EngineConfig, RebuildableEngine};
use crate::models::{DitDenoiser, Umt5PromptEncoder, WanVaeCodec};
use crate::networks::{log_text_encoder, Networks};
use crate::text_encoder::{ManagedTextEncoder, TextEncoderPolicy, TextEncoderWeights};
use crate::tiny;

/// How to build the generator.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    /// The official checkpoint directory; `None` selects the built-in tiny random model.
    pub weights_dir: Option<PathBuf>,
    /// Where the networks run.
    pub device: Device,
    /// Weight dtype; `None` picks f32 on the CPU and bf16 on a GPU (as the official demo).
    pub dtype: Option<DType>,
    /// Where the text encoder stays between jobs (default `offload`, which is `resident`
    /// on the CPU device).
    pub text_encoder: TextEncoderPolicy,
    /// Spatial tiling of VAE encode and decode (`None`, the default: whole frames, as the
    /// official code). Bounds the VAE's working set by the tile; see `docs/vae.md`.
    pub vae_tiling: Option<VaeTiling>,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        Self {
            weights_dir: None,
            device: Device::Cpu,
            dtype: None,
            text_encoder: TextEncoderPolicy::default(),
            vae_tiling: None,
        }
    }
}

impl GeneratorOptions {
    /// The dtype the networks are built in.
    pub fn resolved_dtype(&self) -> DType {
        self.dtype.unwrap_or(if self.device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        })
    }
}

/// A short name of a device for logs and reports: `cpu`, `cuda:N` or `metal:N`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Builds the generator the server and `longcat generate` use.
///
/// With `weights_dir` the official checkpoint layout is loaded (see `docs/checkpoint.md`);
/// errors name what is missing. Without it the built-in tiny random model is built: its
/// output is noise, [`crate::ModelInfo::smoke_test_model`] is true, and a warning is logged.
pub fn load_generator(opts: &GeneratorOptions) -> Result<Arc<dyn VideoGenerator>, PipelineError> {
    let dtype = opts.resolved_dtype();
    let device = opts.device.clone();
    if device.is_cuda() {
        // The few f32 GEMMs left on the bf16 GPU path (timestep/condition MLPs, f32 LoRA
        // merges) may use TF32 tensor cores: their results feed bf16 activations anyway.
        // The parity checks (`goldens check --device`) never come through here and keep
        // full f32 products.
        candle_core::cuda::set_gemm_reduced_precision_f32(true);
        tracing::info!("CUDA: TF32 enabled for f32 matrix products");
    }
    let policy = opts.text_encoder;
    let tiling = opts.vae_tiling;
    if let Some(t) = tiling {
        tracing::info!(
            tile = t.tile,
            overlap = t.overlap,
            "VAE spatial tiling (latent pixels)"
        );
    }
    let with_tiling = move |mut networks: Networks| {
        networks.vae.set_tiling(tiling);
        networks
    };
    match opts.weights_dir.clone() {
        Some(dir) => generator_from(
            move || load_checkpoint(&dir, &device, dtype, policy).map(with_tiling),
            &opts.device,
        ),
        None => {
            tracing::warn!(
                "NO WEIGHTS GIVEN: using the {} — every video it makes is noise; \
                 pass --weights DIR / LONGCAT_WEIGHTS for real output",
                tiny::NAME
            );
            generator_from(
                move || tiny::networks(&device, dtype, policy).map(with_tiling),
                &opts.device,
            )
        }
    }
}

/// Wraps networks into the engine [`load_generator`] uses.
pub fn into_engine(
    n: Networks,
    device: &Device,
) -> Engine<Umt5PromptEncoder, WanVaeCodec, DitDenoiser> {
    Engine {
        text: Umt5PromptEncoder::from_managed(n.text_encoder, n.tokenizer, device.clone()),
        vae: WanVaeCodec::new(n.vae),
        dit: DitDenoiser::new(n.dit).with_lora_mode(lora_mode_for(device)),
        config: n.config,
        device: device.clone(),
    }
}

/// How LoRAs are applied on `device`: unmerged on the CPU (the official form, which the f32
/// goldens pin), fused on a GPU (one GEMM per layer call with the LoRA folded into the weight:
/// at the DiT's token counts it costs fewer FLOPs and no extra pass over the outputs, see
/// `docs/benchmarks.md`).
pub fn lora_mode_for(device: &Device) -> LoraMode {
    if device.is_cpu() {
        LoraMode::Unmerged
    } else {
        LoraMode::Fused
    }
}

/// A generator over the networks `build` makes: built once now, and again (after the old
/// ones are dropped) whenever a run panicked (see [`RebuildableEngine`]).
pub fn generator_from(
    build: impl Fn() -> Result<Networks, PipelineError> + Send + Sync + 'static,
    device: &Device,
) -> Result<Arc<dyn VideoGenerator>, PipelineError> {
    let device = device.clone();
    let engine = RebuildableEngine::new(Box::new(move || Ok(into_engine(build()?, &device))))?;
    Ok(Arc::new(engine))
}

/// Warns about stored tensors no module asked for (a different model variant shows up here).
fn report_unused(component: &str, weights: &TrackedWeights) {
    let unused = weights.unused();
    if !unused.is_empty() {
        tracing::warn!(
            component,
            count = unused.len(),
            first = ?unused.iter().take(5).collect::<Vec<_>>(),
            "checkpoint tensors not used by the model"
        );
    }
}

/// Loads every network of an official checkpoint directory; the text encoder is held under
/// `policy`.
pub fn load_checkpoint(
    dir: &Path,
    device: &Device,
    dtype: DType,
    policy: TextEncoderPolicy,
) -> Result<Networks, PipelineError> {
    let ckpt = Checkpoint::open(dir)?;
    tracing::info!(dir = %dir.display(), ?dtype, "loading LongCat-Video checkpoint");

    let te_cfg = ckpt.text_encoder_config()?;
    let te_weights = ckpt.weights(Component::TextEncoder)?;
    // The mapped files stay open for reloads (address space only: no tensor data is held).
    let reopen = Arc::clone(&te_weights);
    let weights = TextEncoderWeights {
        config: te_cfg,
        dtype,
        open: Arc::new(move |dev: &Device| reopen.var_builder(dtype, dev)),
    };
    let text_encoder = ManagedTextEncoder::new(weights, policy, device.clone())
        .map_err(|e| te_weights.take_error().map_or(e, PipelineError::from))?;
    report_unused("text_encoder", &te_weights);
    drop(te_weights);
    log_text_encoder(policy, &text_encoder);
    let tokenizer = PromptTokenizer::from_file(&ckpt.tokenizer_path(), DEFAULT_MAX_LENGTH)?;

    let vae_cfg: VaeConfig = ckpt.config(Component::Vae)?;
    vae_cfg.validate()?;
    let vae_weights = ckpt.weights(Component::Vae)?;
    let vae = vae_weights.build(dtype, device, |vb| WanVae::new(&vae_cfg, vb))?;
    report_unused("vae", &vae_weights);
    drop(vae_weights);

    let mut dit_cfg: DitConfig = ckpt.config(Component::Dit)?;
    // One device: no context parallelism (the official demo passes [1, 1] too).
    dit_cfg.cp_split_hw = None;
    if dit_cfg.bsa_params.is_none() {
        return Err(ModelError::NotACheckpoint {
            path: ckpt.config_path(Component::Dit),
            reason: "dit/config.json has no bsa_params (needed by the refinement stage)".into(),
        }
        .into());
    }
    let dit_weights = ckpt.weights(Component::Dit)?;
    let mut dit = dit_weights.build(dtype, device, |vb| LongCatDit::new(dit_cfg.clone(), vb))?;
    report_unused("dit", &dit_weights);
    drop(dit_weights);

    let refine = ckpt.lora_path(LoraKind::Refinement)?;
    dit.load_lora(LoraKind::Refinement.name(), &refine)?;
    let mut config = EngineConfig {
        name: format!("LongCat-Video ({})", dir.display()),
        ..EngineConfig::default()
    };
    match ckpt.lora_path(LoraKind::CfgStep) {
        Ok(path) => dit.load_lora(LoraKind::CfgStep.name(), &path)?,
        Err(e) if config.regular_mode == crate::engine::Stage1Mode::Distilled => {
            return Err(e.into())
        }
        Err(e) => tracing::info!(%e, "no cfg_step LoRA: distilled stage 1 unavailable"),
    }
    config.shift = ckpt.scheduler_config()?.shift;
    Ok(Networks {
        text_encoder,
        tokenizer,
        vae,
        dit,
        config,
    })
}
