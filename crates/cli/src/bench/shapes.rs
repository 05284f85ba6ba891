//! `longcat bench shapes`: each heavy op once at the official shapes on the CPU (f32),
//! reduced only in heads or layers, never in grid size, with its time and peak RSS.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use longcat_model::attention::{flash_attention, reference::chunked_attention};
use longcat_model::bsa::{bsa_attention, BsaParams};
use longcat_model::dit::{LongCatDit, TextInput};

use super::mem::{current_rss, fmt_bytes, peak_rss, reset_peak_rss};
use super::{dit_config, DitCase};

/// Stage-1 tokens: 480×832 → latent 60×104, 2×2 patches → 30×52 per frame, 24 latent frames.
const STAGE1_GRID: [usize; 3] = [24, 30, 52];
/// Refinement noise call: 48 noise latents attending to all 52 (4 condition) at 704×1280.
const REFINE_GRID_Q: [usize; 3] = [48, 44, 80];
const REFINE_GRID_K: [usize; 3] = [52, 44, 80];
const HEAD_DIM: usize = 128;

/// Which cases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShapeCase {
    /// BSA at the refinement grid, 1 head.
    Bsa,
    /// Dense attention over the stage-1 tokens, 1 head (flash and the previous kernel).
    Dense,
    /// One DiT block at hidden 4096 over the stage-1 tokens.
    Block,
    /// The VAE's kernel plan at the official sizes (largest single kernel; nothing runs).
    Vae,
}

/// Runs `f` once and prints its time and the process's peak RSS while it ran.
fn once(label: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let before = current_rss();
    reset_peak_rss();
    let start = Instant::now();
    f()?;
    let t = start.elapsed();
    println!(
        "{label:<58} {:>10.1} ms   peak RSS {} (RSS before {})",
        t.as_secs_f64() * 1e3,
        fmt_bytes(peak_rss()),
        fmt_bytes(before)
    );
    Ok(())
}

fn randn(shape: (usize, usize, usize, usize)) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1.0, shape, &Device::Cpu)?)
}

/// `longcat bench shapes`.
pub fn bench_shapes(cases: &[ShapeCase]) -> Result<()> {
    println!(
        "official shapes, CPU f32, {} threads; each op once; peak RSS is the whole process's while the op ran (inputs included)",
        candle_core::utils::get_num_threads()
    );
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    if cases.contains(&ShapeCase::Bsa) {
        let nq: usize = REFINE_GRID_Q.iter().product();
        let nk: usize = REFINE_GRID_K.iter().product();
        let params = BsaParams {
            sparsity: Some(0.9375),
            cdf_threshold: None,
            chunk_3d_shape_q: [4, 4, 4],
            chunk_3d_shape_k: [4, 4, 4],
        };
        once(
            &format!("bsa 0.9375, q {nq} / k {nk} tokens (704x1280, 52 lat), 1 head"),
            || {
                let q = randn((1, 1, nq, HEAD_DIM))?;
                let k = randn((1, 1, nk, HEAD_DIM))?;
                let v = randn((1, 1, nk, HEAD_DIM))?;
                bsa_attention(&q, &k, &v, REFINE_GRID_Q, REFINE_GRID_K, &params)?;
                Ok(())
            },
        )?;
    }
    if cases.contains(&ShapeCase::Dense) {
        let n: usize = STAGE1_GRID.iter().product();
        let make = || -> Result<[Tensor; 3]> {
            Ok([
                randn((1, 1, n, HEAD_DIM))?,
                randn((1, 1, n, HEAD_DIM))?,
                randn((1, 1, n, HEAD_DIM))?,
            ])
        };
        once(&format!("dense flash, {n} tokens, 1 head"), || {
            let [q, k, v] = make()?;
            flash_attention(&q, &k, &v, None, scale)?;
            Ok(())
        })?;
        once(
            &format!("dense chunked (previous), {n} tokens, 1 head"),
            || {
                let [q, k, v] = make()?;
                chunked_attention(&q, &k, &v, None, scale)?;
                Ok(())
            },
        )?;
    }
    if cases.contains(&ShapeCase::Vae) {
        super::vae::print_plan()?;
    }
    if cases.contains(&ShapeCase::Block) {
        let [t, h, w] = STAGE1_GRID;
        let case = DitCase {
            name: "one block",
            hidden: 4096,
            heads: 32,
            depth: 1,
            caption_channels: 4096,
            latent: [t, h * 2, w * 2],
            text_len: 512,
        };
        let dit = LongCatDit::random(dit_config(&case)?, 7, &Device::Cpu, DType::F32)?;
        let x = Tensor::randn(0f32, 1.0, (1, 16, t, h * 2, w * 2), &Device::Cpu)?;
        let y = Tensor::randn(0f32, 1.0, (1, 1, 512, 4096), &Device::Cpu)?;
        let mask = Tensor::ones((1, 512), DType::I64, &Device::Cpu)?;
        let ts = Tensor::new(&[500f32], &Device::Cpu)?;
        once(
            &format!(
                "DiT, 1 block at hidden 4096 / 32 heads, {} tokens + 512 text",
                t * h * w
            ),
            || {
                let text = TextInput {
                    states: &y,
                    mask: Some(&mask),
                };
                dit.forward(&x, &ts, text, 0)?;
                Ok(())
            },
        )?;
    }
    Ok(())
}
