//! Checkers for the pipeline goldens (`pipeline_i2v`, `pipeline_i2v_distill`,
//! `pipeline_refine`): the networks are loaded from the weights files the sidecar names, the
//! saved random draws are injected in the sidecar's `noise_order`, the stages of
//! `longcat_pipeline` run with a tracing hook, and every output tensor of the file is
//! compared with the tensor of the same name the stages recorded.
//!
//! Weights: `meta.files.{dit,vae,text_encoder}` when present, else the harness convention
//! `dit_weights`, `vae_weights`, `umt5_weights` (`.safetensors`, configs in their `config`
//! sidecars). The DiT config is `meta.dit_config` when present.

pub mod i2v;
pub mod refine;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context};
use candle_core::{DType, Tensor};
use longcat_model::checkpoint::TrackedWeights;
use longcat_model::dit::{DitConfig, LongCatDit};
use longcat_model::lora::LoraWeights;
use longcat_model::umt5::{Umt5Config, Umt5Encoder};
use longcat_model::vae::{VaeConfig, WanVae};
use longcat_pipeline::api::{CancelToken, RgbImage};
use longcat_pipeline::components::{LoraKind, TextConditioning};
use longcat_pipeline::hooks::{Hooks, MapTrace};
use longcat_pipeline::models::{encode_tokens, DitDenoiser, WanVaeCodec};
use longcat_pipeline::noise::InjectedNoise;
use longcat_pipeline::schedule::Schedule;
use serde_json::Value;

use crate::golden::{GoldenFile, Tolerance};

/// The networks of a pipeline golden.
pub struct Networks {
    /// Text encoder.
    pub text: Umt5Encoder,
    /// VAE.
    pub vae: WanVaeCodec,
    /// DiT (no LoRA active, dense attention).
    pub dit: DitDenoiser,
}

/// The weights file of `component` (`dit`, `vae`, `text_encoder`).
fn weights_file(golden: &GoldenFile, component: &str, fallback: &str) -> PathBuf {
    let name = golden
        .meta()
        .pointer(&format!("/files/{component}"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{fallback}_weights.safetensors"));
    golden.dir.join(name)
}

/// The `config` object of a weights file's JSON sidecar.
fn sidecar_config(weights: &Path) -> anyhow::Result<Value> {
    let path = weights.with_extension("json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text)?;
    v.get("config")
        .cloned()
        .with_context(|| format!("{} has no `config`", path.display()))
}

/// Builds a network from one weights file and fails if the file holds unused tensors.
fn build<T>(
    golden: &GoldenFile,
    path: &Path,
    f: impl FnOnce(candle_nn::VarBuilder<'static>) -> longcat_model::Result<T>,
) -> anyhow::Result<T> {
    let weights = Arc::new(TrackedWeights::open_file(path)?);
    weights
        .build_exact(golden.dtype(), golden.device(), f)
        .with_context(|| path.display().to_string())
}

/// Loads the umT5 encoder, the VAE and the DiT a pipeline golden names.
pub fn load_networks(golden: &GoldenFile) -> anyhow::Result<Networks> {
    let text_path = weights_file(golden, "text_encoder", "umt5");
    let text_cfg: Umt5Config = serde_json::from_value(sidecar_config(&text_path)?)
        .with_context(|| format!("config of {}", text_path.display()))?;
    let text = build(golden, &text_path, |vb| Umt5Encoder::new(&text_cfg, vb))?;

    let vae_path = weights_file(golden, "vae", "vae");
    let vae_cfg: VaeConfig = serde_json::from_value(sidecar_config(&vae_path)?)
        .with_context(|| format!("config of {}", vae_path.display()))?;
    let vae = WanVaeCodec::new(build(golden, &vae_path, |vb| WanVae::new(&vae_cfg, vb))?);

    let dit_path = weights_file(golden, "dit", "dit");
    let dit_cfg = match golden.meta().get("dit_config") {
        Some(v) => v.clone(),
        None => sidecar_config(&dit_path)?,
    };
    let dit_cfg = DitConfig::from_value(&dit_cfg)?;
    let dit = build(golden, &dit_path, |vb| LongCatDit::new(dit_cfg, vb))?;
    let mut dit = DitDenoiser::new(dit);
    if let Some(params) = golden.meta().get("bsa_params") {
        dit = dit.with_bsa_params(serde_json::from_value(params.clone()).context("bsa_params")?);
    }
    Ok(Networks { text, vae, dit })
}

/// Registers `meta.lora.file` as the LoRA of `kind` (multiplier must be 1, the pipeline's).
pub fn register_lora(
    golden: &GoldenFile,
    dit: &mut DitDenoiser,
    kind: LoraKind,
) -> anyhow::Result<()> {
    let file = golden
        .meta_at("/lora/file")?
        .as_str()
        .context("meta.lora.file is not a string")?;
    let multiplier = golden
        .meta()
        .pointer("/lora/multiplier")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    ensure!(
        multiplier == 1.0,
        "LoRA multiplier {multiplier}: the pipeline enables its LoRAs with multiplier 1"
    );
    let path = golden.dir.join(file);
    let weights = LoraWeights::load(&path, golden.device(), golden.dtype())
        .with_context(|| format!("loading {}", path.display()))?;
    dit.register_lora(kind, weights)?;
    Ok(())
}

/// Encodes the prompt `input.<which>.*` (token ids and mask) with our umT5 and checks the
/// embeddings against `input.<which>.embeds`; returns our conditioning, or `None` when the
/// golden has no such prompt.
pub fn encode_prompt(
    golden: &GoldenFile,
    text: &Umt5Encoder,
    which: &str,
) -> anyhow::Result<Option<TextConditioning>> {
    let ids_name = format!("input.{which}.input_ids");
    if !golden.has(&ids_name) {
        return Ok(None);
    }
    let ids = golden.input(&ids_name)?;
    let mask = golden.input(&format!("input.{which}.attention_mask"))?;
    let cond = encode_tokens(text, &ids, &mask)?;
    let embeds = format!("input.{which}.embeds");
    if golden.has(&embeds) {
        golden.check_float(&embeds, &cond.embeds, Tolerance::PIPELINE);
    }
    Ok(Some(cond))
}

/// An `[H, W, 3]` integer tensor as an RGB8 image.
pub fn rgb_image(t: &Tensor) -> anyhow::Result<RgbImage> {
    let (h, w, c) = t.dims3()?;
    ensure!(c == 3, "image has {c} channels, expected 3");
    let data = t
        .to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|v| u8::try_from(v).context("image value outside 0..=255"))
        .collect::<anyhow::Result<Vec<u8>>>()?;
    Ok(RgbImage {
        width: w as u32,
        height: h as u32,
        data,
    })
}

/// The injected draws: `input.init_noise` first when present (the pipeline draws the initial
/// latents before anything else), then every `meta.noise_order` entry `<stage>.<purpose>`
/// read from `input.<purpose>`.
pub fn injected_noise(golden: &GoldenFile) -> anyhow::Result<InjectedNoise> {
    let mut draws = Vec::new();
    if golden.has("input.init_noise") {
        draws.push(("init_noise".to_string(), golden.input("input.init_noise")?));
    }
    let order = golden
        .meta_at("/noise_order")?
        .as_array()
        .context("meta.noise_order is not a list")?;
    for entry in order {
        let entry = entry
            .as_str()
            .context("noise_order entry is not a string")?;
        let purpose = entry.rsplit_once('.').map_or(entry, |(_, p)| p);
        draws.push((
            purpose.to_string(),
            golden.input(&format!("input.{purpose}"))?,
        ));
    }
    Ok(InjectedNoise::new(draws))
}

/// A `meta` value as f64 / usize / bool, or an error naming it.
pub fn meta_f64(golden: &GoldenFile, pointer: &str) -> anyhow::Result<f64> {
    golden
        .meta_at(pointer)?
        .as_f64()
        .with_context(|| format!("meta {pointer} is not a number"))
}

/// See [`meta_f64`].
pub fn meta_usize(golden: &GoldenFile, pointer: &str) -> anyhow::Result<usize> {
    Ok(golden
        .meta_at(pointer)?
        .as_u64()
        .with_context(|| format!("meta {pointer} is not an integer"))? as usize)
}

/// See [`meta_f64`]; a missing value is `false`.
pub fn meta_bool(golden: &GoldenFile, pointer: &str) -> anyhow::Result<bool> {
    match golden.meta().pointer(pointer) {
        None | Some(Value::Null) => Ok(false),
        Some(v) => v
            .as_bool()
            .with_context(|| format!("meta {pointer} is not a boolean")),
    }
}

/// Fails unless `ours` is the schedule of `meta.schedule` (timesteps and sigmas).
pub fn check_schedule(golden: &GoldenFile, ours: &Schedule) -> anyhow::Result<()> {
    let list = |key: &str| -> anyhow::Result<Vec<f64>> {
        golden
            .meta_at(&format!("/schedule/{key}"))?
            .as_array()
            .with_context(|| format!("meta.schedule.{key} is not a list"))?
            .iter()
            .map(|v| v.as_f64().context("schedule value is not a number"))
            .collect()
    };
    let close = |a: &[f64], b: &[f32]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - *y as f64).abs() <= 1e-5 * x.abs().max(1.0))
    };
    let timesteps = list("timesteps")?;
    let sigmas = list("sigmas")?;
    ensure!(
        close(&timesteps, &ours.timesteps),
        "schedule timesteps differ: golden {timesteps:?}, ours {:?}",
        ours.timesteps
    );
    let n = ours.sigmas.len().saturating_sub(1);
    ensure!(
        close(&sigmas, &ours.sigmas[..n]),
        "schedule sigmas differ: golden {sigmas:?}, ours {:?}",
        ours.sigmas
    );
    Ok(())
}

/// A hooks bundle that records into `trace`.
pub fn tracing_hooks<'a>(
    cancel: &'a CancelToken,
    on_step: &'a mut dyn FnMut(u32, u32),
    trace: &'a mut MapTrace,
) -> Hooks<'a> {
    Hooks {
        cancel,
        on_step,
        trace,
    }
}

/// Compares every golden tensor that is not an input with the recorded tensor of the same
/// name (integers exactly, floats at the pipeline tolerance). Tensors the stages did not
/// record stay unaccounted and so fail.
pub fn check_recorded(golden: &GoldenFile, recorded: &BTreeMap<String, Tensor>) {
    let names: Vec<String> = golden
        .names()
        .filter(|n| !n.starts_with("input."))
        .map(str::to_string)
        .collect();
    for name in names {
        let Some(ours) = recorded.get(&name) else {
            continue;
        };
        let is_int = golden
            .sidecar
            .pointer(&format!("/tensors/{}/dtype", name.replace('/', "~1")))
            .and_then(Value::as_str)
            .is_some_and(|d| d.starts_with("int") || d.starts_with("uint") || d == "bool");
        if is_int {
            golden.check_int(&name, ours);
        } else {
            golden.check_float(&name, ours, Tolerance::PIPELINE);
        }
    }
}

/// Fails when injected draws were left over (the stages drew fewer than the golden saved).
pub fn ensure_noise_used(noise: &InjectedNoise) -> anyhow::Result<()> {
    ensure!(
        noise.remaining() == 0,
        "{} injected random draws were never used",
        noise.remaining()
    );
    Ok(())
}
