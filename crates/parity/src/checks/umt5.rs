//! Checker for the `umt5` golden: encoder output and what the pipeline hands to the DiT.

use std::sync::Arc;

use anyhow::Context;
use longcat_model::checkpoint::TrackedWeights;
use longcat_model::umt5::{to_prompt_embeds, Umt5Config, Umt5Encoder};

use crate::golden::{GoldenFile, Tolerance};

/// Path of the weights a golden uses: `meta.weights_file`, else `<kind>_weights.safetensors`.
pub fn weights_path(golden: &GoldenFile) -> std::path::PathBuf {
    let name = golden
        .meta()
        .get("weights_file")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}_weights.safetensors", golden.kind()));
    golden.dir.join(name)
}

/// Checks `last_hidden_state`, `prompt_embeds` and `prompt_attention_mask`.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let cfg: Umt5Config =
        serde_json::from_value(golden.meta_at("/config")?.clone()).context("meta.config")?;
    let path = weights_path(golden);
    let weights = Arc::new(TrackedWeights::open_file(&path)?);
    let encoder = weights
        .build_exact(golden.dtype(), golden.device(), |vb| {
            Umt5Encoder::new(&cfg, vb)
        })
        .with_context(|| path.display().to_string())?;
    let ids = golden.input("input_ids")?;
    let mask = golden.input("attention_mask")?;
    let hidden = encoder.forward(&ids, &mask)?;
    golden.check_float("last_hidden_state", &hidden, Tolerance::COMPONENT);
    golden.check_float(
        "prompt_embeds",
        &to_prompt_embeds(&hidden)?,
        Tolerance::COMPONENT,
    );
    golden.check_int("prompt_attention_mask", &mask);
    Ok(())
}
