//! Checker for the `dit_bsa` golden: the BSA operator cases (`op.<case>.*`).
//!
//! Block selections are compared exactly: `block_indices` in full (the reference returns the
//! top-k ids in descending score order, or for CDF modes every key block in descending weight
//! order, of which the first `block_indices_lens` are used), `block_indices_lens` and
//! `block_mask`. DiT-level cases (`dit.<case>.*`) run the whole DiT with BSA enabled (and once
//! disabled, for `output_dense`) and compare the per-block selections recorded by the trace.

use anyhow::Context;
use longcat_model::bsa::{flash_attn_bsa_3d, BsaParams};
use serde::Deserialize;

use longcat_model::dit::{DitTrace, TextInput};

use super::dit_t2v::load_dit;
use crate::golden::{GoldenFile, Tolerance};

#[derive(Deserialize)]
struct OpCase {
    grid_q: [usize; 3],
    grid_k: [usize; 3],
    chunk_q: [usize; 3],
    chunk_k: [usize; 3],
    sparsity: Option<f64>,
    cdf_threshold: Option<f64>,
}

/// Checks every `op.<case>` and every `dit.<case>` found in the file.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    check_ops(golden)?;
    if !golden.cases("dit.").is_empty() {
        check_dit(golden)?;
    }
    Ok(())
}

/// Checks every `op.<case>` against its parameters in `meta.ops.<case>`.
fn check_ops(golden: &GoldenFile) -> anyhow::Result<()> {
    for case in golden.cases("op.") {
        let meta: OpCase = serde_json::from_value(golden.meta_at(&format!("/ops/{case}"))?.clone())
            .with_context(|| format!("meta.ops.{case}"))?;
        let params = BsaParams {
            sparsity: meta.sparsity,
            cdf_threshold: meta.cdf_threshold,
            chunk_3d_shape_q: meta.chunk_q,
            chunk_3d_shape_k: meta.chunk_k,
        };
        let p = |name: &str| format!("op.{case}.{name}");
        let q = golden.input(&p("q"))?;
        let k = golden.input(&p("k"))?;
        let v = golden.input(&p("v"))?;
        let out = flash_attn_bsa_3d(&q, &k, &v, meta.grid_q, meta.grid_k, &params)?;
        golden.check_float(&p("output"), &out.output, Tolerance::COMPONENT);
        golden.check_int(&p("block_indices"), &out.block_indices);
        golden.check_int(&p("block_indices_lens"), &out.block_indices_lens);
        golden.check_int(&p("block_mask"), &out.block_mask);
    }
    Ok(())
}

/// Block index and role (`""`, `"cond"` or `"noise"`) of a
/// `block<i>[.cond|.noise].block_mask` name (the part after `dit.<case>.`).
fn mask_slot(rest: &str) -> Option<(usize, &str)> {
    let rest = rest.strip_prefix("block")?.strip_suffix(".block_mask")?;
    let (index, role) = rest.split_once('.').unwrap_or((rest, ""));
    Some((index.parse().ok()?, role))
}

/// Runs the DiT with BSA on every `dit.<case>` (shared inputs `dit.hidden_states`, ...).
fn check_dit(golden: &GoldenFile) -> anyhow::Result<()> {
    let mut dit = load_dit(golden)?;
    let params: BsaParams =
        serde_json::from_value(golden.meta_at("/bsa_params_used_by_dit")?.clone())
            .context("meta.bsa_params_used_by_dit")?;
    let x = golden.input("dit.hidden_states")?;
    let y = golden.input("dit.encoder_hidden_states")?;
    let mask = golden.input("dit.encoder_attention_mask")?;
    let text = TextInput {
        states: &y,
        mask: Some(&mask),
    };
    for case in golden.cases("dit.") {
        let p = |name: &str| format!("dit.{case}.{name}");
        let mask_names: Vec<String> = golden
            .names()
            .filter(|n| n.starts_with(&p("block")) && n.ends_with(".block_mask"))
            .map(str::to_string)
            .collect();
        let with_cond = mask_names.iter().any(|n| n.ends_with(".cond.block_mask"));
        let num_cond = if with_cond {
            golden
                .meta_at("/dit_num_cond_latents")?
                .as_u64()
                .context("meta.dit_num_cond_latents")? as usize
        } else {
            0
        };
        let t = golden.input(&p("timestep"))?;
        dit.enable_bsa(params.clone());
        let mut trace = DitTrace::default();
        let out = dit.forward_traced(&x, &t, text, num_cond, Some(&mut trace))?;
        golden.check_float(&p("output"), &out, Tolerance::COMPONENT);
        for name in &mask_names {
            let rest = &name[p("").len()..];
            let recorded = mask_slot(rest).and_then(|(i, role)| {
                let calls = trace.bsa_masks.get(i)?;
                calls
                    .iter()
                    .find(|(label, _)| label == role)
                    .map(|(_, m)| m)
            });
            match recorded {
                Some(m) => golden.check_int(name, m),
                None => golden.fail(name, "no matching BSA call recorded"),
            }
        }
        if golden.has(&p("output_dense")) {
            dit.disable_bsa();
            let dense = dit.forward(&x, &t, text, num_cond)?;
            golden.check_float(&p("output_dense"), &dense, Tolerance::COMPONENT);
        }
    }
    Ok(())
}
