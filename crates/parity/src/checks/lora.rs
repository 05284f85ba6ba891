//! Checker for the `lora` golden: DiT outputs with the official LoRA files enabled, checked
//! in both the unmerged (output delta) and the merged (weight delta) mode.

use anyhow::Context;
use longcat_model::dit::TextInput;
use longcat_model::lora::{LoraMode, LoraWeights};

use super::dit_t2v::load_dit;
use crate::golden::{GoldenFile, Tolerance};

/// Which LoRAs (registered names, multipliers) an `output_<case>` tensor uses.
///
/// `base` uses none, `<a>_and_<b>` enables several, a `_multiplier` suffix uses
/// `meta.extra_multiplier`; LoRA names are the keys of `meta.lora_files` with their
/// `_lora` suffix dropped (`cfg_step_lora` -> `cfg_step`).
fn case_loras(
    case: &str,
    names: &[String],
    extra_multiplier: f64,
) -> anyhow::Result<Vec<(String, f64)>> {
    if case == "base" {
        return Ok(Vec::new());
    }
    let (body, multiplier) = match case.strip_suffix("_multiplier") {
        Some(b) => (b, extra_multiplier),
        None => (case, 1.0),
    };
    body.split("_and_")
        .map(|short| {
            names
                .iter()
                .find(|n| n.strip_suffix("_lora").unwrap_or(n) == short)
                .map(|n| (n.clone(), multiplier))
                .with_context(|| format!("case `{case}` names unknown LoRA `{short}`"))
        })
        .collect()
}

/// Checks every `output_*` tensor of a `lora` golden in both modes.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let mut dit = load_dit(golden)?;
    let files = golden
        .meta_at("/lora_files")?
        .as_object()
        .context("meta.lora_files is not an object")?;
    let mut names = Vec::new();
    for (name, stem) in files {
        let stem = stem.as_str().context("lora file name is not a string")?;
        let path = golden.dir.join(format!("{stem}.safetensors"));
        let weights = LoraWeights::load(&path, dit.device(), golden.dtype())
            .with_context(|| format!("loading {}", path.display()))?;
        dit.register_lora(name, weights)?;
        names.push(name.clone());
    }
    let extra = golden
        .meta()
        .get("extra_multiplier")
        .and_then(|v| v.as_f64())
        .unwrap_or(1.0);

    let x = golden.input("hidden_states")?;
    let t = golden.input("timestep")?;
    let y = golden.input("encoder_hidden_states")?;
    let mask = golden.input("encoder_attention_mask")?;
    let text = TextInput {
        states: &y,
        mask: Some(&mask),
    };
    let cases: Vec<String> = golden
        .names()
        .filter_map(|n| n.strip_prefix("output_"))
        .map(str::to_string)
        .collect();
    for case in cases {
        let name = format!("output_{case}");
        let loras = case_loras(&case, &names, extra)?;
        let mut outs = Vec::new();
        for mode in [LoraMode::Unmerged, LoraMode::Merged, LoraMode::Fused] {
            dit.enable_loras(&loras, mode)?;
            outs.push(dit.forward(&x, &t, text, 0)?);
            dit.disable_loras()?;
        }
        // Record the worst of the modes under the tensor's name.
        let worst = {
            let errs: Vec<f64> = outs
                .iter()
                .map(|o| {
                    let r = golden.input(&name)?;
                    Ok::<f64, anyhow::Error>(crate::golden::float_errors(&r, o)?.0)
                })
                .collect::<anyhow::Result<_>>()?;
            (0..errs.len())
                .max_by(|&a, &b| {
                    let key = |e: f64| if e.is_nan() { f64::INFINITY } else { e };
                    key(errs[a]).total_cmp(&key(errs[b]))
                })
                .unwrap_or(0)
        };
        golden.check_float(&name, &outs[worst], Tolerance::COMPONENT);
    }
    Ok(())
}
