//! Checker for the `dit_t2v` golden: the text-to-video DiT forward, its intermediates and
//! the two alternative text-mask handlings.

use std::path::Path;

use anyhow::Context;
use longcat_model::dit::{DitConfig, DitTrace, LongCatDit, TextInput};

use crate::golden::{GoldenFile, Tolerance};

/// Loads the DiT named by `meta.weights_file`; the config comes from `meta.dit_config` or,
/// when absent, from the weights file's own sidecar (`config`).
pub(crate) fn load_dit(golden: &GoldenFile) -> anyhow::Result<LongCatDit> {
    let weights = golden
        .meta_at("/weights_file")?
        .as_str()
        .context("meta.weights_file is not a string")?;
    let weights_path = golden.dir.join(weights);
    let cfg_value = match golden.meta().get("dit_config") {
        Some(v) => v.clone(),
        None => weights_config(&weights_path)?,
    };
    let cfg = DitConfig::from_value(&cfg_value)?;
    Ok(LongCatDit::load(
        cfg,
        &[weights_path],
        golden.device(),
        golden.dtype(),
    )?)
}

fn weights_config(weights_path: &Path) -> anyhow::Result<serde_json::Value> {
    let sidecar = weights_path.with_extension("json");
    let text = std::fs::read_to_string(&sidecar)
        .with_context(|| format!("reading {}", sidecar.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v.get("config")
        .cloned()
        .with_context(|| format!("{} has no `config`", sidecar.display()))
}

/// Checks every tensor of a `dit_t2v` golden file.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let mut dit = load_dit(golden)?;
    let x = golden.input("hidden_states")?;
    let t = golden.input("timestep")?;
    let y = golden.input("encoder_hidden_states")?;
    let mask = golden.input("encoder_attention_mask")?;
    let tol = Tolerance::COMPONENT;

    let mut trace = DitTrace::default();
    let text = TextInput {
        states: &y,
        mask: Some(&mask),
    };
    dit.set_text_tokens_zero_pad(true);
    let out = dit.forward_traced(&x, &t, text, 0, Some(&mut trace))?;
    golden.check_float("output", &out, tol);
    let traced = [
        ("intermediate.x_embedder", trace.x_embedder.as_ref()),
        ("intermediate.t_embedder", trace.t_embedder.as_ref()),
        ("intermediate.y_embedder", trace.y_embedder.as_ref()),
        ("intermediate.final_layer", trace.final_layer.as_ref()),
    ];
    for (name, tensor) in traced {
        match tensor {
            Some(t) => golden.check_float(name, t, tol),
            None => golden.fail(name, "not recorded by the trace"),
        }
    }
    let block_names: Vec<String> = golden
        .names()
        .filter(|n| n.starts_with("intermediate.block"))
        .map(str::to_string)
        .collect();
    for name in block_names {
        let idx: Option<usize> = name["intermediate.block".len()..].parse().ok();
        match idx.and_then(|i| trace.blocks.get(i)) {
            Some(t) => golden.check_float(&name, t, tol),
            None => golden.fail(&name, "no such block in the trace"),
        }
    }

    if golden.has("output_text_tokens_zero_pad_false") {
        dit.set_text_tokens_zero_pad(false);
        let out = dit.forward(&x, &t, text, 0)?;
        golden.check_float("output_text_tokens_zero_pad_false", &out, tol);
        dit.set_text_tokens_zero_pad(true);
    }
    if golden.has("output_no_mask") {
        let out = dit.forward(
            &x,
            &t,
            TextInput {
                states: &y,
                mask: None,
            },
            0,
        )?;
        golden.check_float("output_no_mask", &out, tol);
    }
    Ok(())
}
