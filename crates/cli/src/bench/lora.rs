//! LoRA on one DiT linear layer: unmerged (two low-rank products per call and an add over
//! the output, the official form) against fused (the weight folded per call, one GEMM), with
//! the layer without LoRA as the floor, on the same random inputs (CPU f32).

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use longcat_model::dit::layers::DitLinear;
use longcat_model::lora::{LoraAdapter, LoraLayer};

use super::median_of;

/// Times `[1, tokens, dim] x [dim, dim]` without LoRA, with a rank-`rank` adapter unmerged,
/// and fused.
pub fn bench_lora(tokens: usize, dim: usize, rank: usize, reps: usize) -> Result<()> {
    let dev = Device::Cpu;
    let weights = HashMap::from([(
        "layer.weight".to_string(),
        (Tensor::randn(0f32, 1.0, (dim, dim), &dev)? / (dim as f64).sqrt())?,
    )]);
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    let plain = DitLinear::load(&vb, "layer", dim, dim, false)?;
    let adapter = LoraAdapter::new(
        LoraLayer {
            down: (Tensor::randn(0f32, 1.0, (rank, dim), &dev)? * 0.01)?,
            ups: vec![(Tensor::randn(0f32, 1.0, (dim, rank), &dev)? * 0.01)?],
            alpha_scale: 1.0,
        },
        1.0,
    );
    let mut unmerged = plain.clone();
    unmerged.push_adapter(adapter.clone());
    let mut fused = plain.clone();
    fused.push_fused_adapter(adapter);
    let x = Tensor::randn(0f32, 1.0, (1, tokens, dim), &dev)?;

    let time = |layer: &DitLinear| {
        median_of(reps, || {
            layer.forward(&x)?;
            Ok(())
        })
    };
    let t_plain = time(&plain)?.as_secs_f64();
    let t_unmerged = time(&unmerged)?.as_secs_f64();
    let t_fused = time(&fused)?.as_secs_f64();
    let diff = (unmerged.forward(&x)? - fused.forward(&x)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;

    let gflop = |f: f64| f / 1e9;
    let (t, d, r) = (tokens as f64, dim as f64, rank as f64);
    println!("LoRA on one linear layer: {tokens} tokens, {dim}x{dim}, rank {rank}, CPU f32 (median of {reps})");
    println!(
        "  FLOPs: layer 2·T·D² = {:.1} G; unmerged adds 4·T·D·r = {:.2} G; fused adds 2·D²·r = {:.2} G (fused is cheaper above T = D/2 = {} tokens)",
        gflop(2.0 * t * d * d),
        gflop(4.0 * t * d * r),
        gflop(2.0 * d * d * r),
        dim / 2
    );
    println!("  no LoRA   {:>9.2} ms", t_plain * 1e3);
    println!(
        "  unmerged  {:>9.2} ms  ({:.3}x the layer without LoRA)",
        t_unmerged * 1e3,
        t_unmerged / t_plain
    );
    println!(
        "  fused     {:>9.2} ms  ({:.3}x the layer without LoRA, {:.3}x unmerged)",
        t_fused * 1e3,
        t_fused / t_plain,
        t_fused / t_unmerged
    );
    println!("  max |unmerged - fused| = {diff:.2e}");
    Ok(())
}
