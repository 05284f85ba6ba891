//! Checker for the `dit_i2v` golden: DiT forward with clean condition latents, the
//! condition KV cache, and the cached forward over the noise frames.

use anyhow::Context;
use candle_core::{IndexOp, Tensor};
use longcat_model::dit::TextInput;

use super::dit_t2v::load_dit;
use crate::golden::{GoldenFile, Tolerance};

/// Case prefixes: `""` plus every `<case>.` whose `<case>.output` exists.
fn case_prefixes(golden: &GoldenFile) -> Vec<String> {
    golden
        .names()
        .filter_map(|n| n.strip_suffix("output"))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .map(str::to_string)
        .collect()
}

/// Checks every tensor of a `dit_i2v` golden file.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let dit = load_dit(golden)?;
    let tol = Tolerance::COMPONENT;
    for prefix in case_prefixes(golden) {
        let key = format!("/{prefix}num_cond_latents");
        let n_cond = golden
            .meta_at(&key)?
            .as_u64()
            .with_context(|| format!("meta {key} is not an integer"))?
            as usize;
        let x = golden.input(&format!("{prefix}hidden_states"))?;
        let t = golden.input(&format!("{prefix}timestep"))?;
        let y = golden.input(&format!("{prefix}encoder_hidden_states"))?;
        let mask = golden.input(&format!("{prefix}encoder_attention_mask"))?;
        let text = TextInput {
            states: &y,
            mask: Some(&mask),
        };

        let out = dit.forward(&x, &t, text, n_cond)?;
        golden.check_float(&format!("{prefix}output"), &out, tol);

        let frames = x.dims()[2];
        let cond = x.i((.., .., ..n_cond))?;
        let cache = dit.cache_condition(&cond)?;
        for (i, kv) in cache.blocks.iter().enumerate() {
            for (part, tensor) in [("k", &kv.k), ("v", &kv.v)] {
                let name = format!("{prefix}kv_cache.block{i}.{part}");
                if golden.has(&name) {
                    golden.check_float(&name, tensor, tol);
                }
            }
        }
        let noise = x.i((.., .., n_cond..))?;
        let t_noise: Tensor = if t.rank() == 2 {
            t.i((.., n_cond..frames))?
        } else {
            t.clone()
        };
        let name = format!("{prefix}output_kvcache");
        if golden.has(&name) {
            let out = dit.forward_cached(&noise, &t_noise, text, &cache)?;
            golden.check_float(&name, &out, tol);
        }
    }
    Ok(())
}
