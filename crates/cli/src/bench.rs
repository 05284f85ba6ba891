//! `longcat bench`: CPU benchmarks reported as ratios against a baseline measured in the same run.

use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::{Device, Tensor};
use clap::Subcommand;
use longcat_model::bsa::{flash_attn_bsa_3d, BsaParams};

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Block sparse attention against dense attention on the same inputs.
    Bsa {
        /// Token grid (T H W); the default is 16k tokens.
        #[arg(long, num_args = 3, default_values_t = [16, 32, 32])]
        grid: Vec<usize>,
        /// Attention heads.
        #[arg(long, default_value_t = 2)]
        heads: usize,
        /// Head dimension.
        #[arg(long, default_value_t = 64)]
        head_dim: usize,
        /// Sparsities to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [0.5, 0.75, 0.875])]
        sparsity: Vec<f64>,
        /// Timed repetitions (the best is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
}

/// Best wall time of `reps` runs of `f` (after one warm-up run).
fn best_of(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?;
    let mut best = Duration::MAX;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

/// Plain softmax attention, the baseline.
fn dense_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(3)? as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?;
    Ok(candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)?)
}

fn bench_bsa(
    grid: [usize; 3],
    heads: usize,
    head_dim: usize,
    sparsities: &[f64],
    reps: usize,
) -> Result<()> {
    let tokens: usize = grid.iter().product();
    let dev = Device::Cpu;
    let shape = (1, heads, tokens, head_dim);
    let q = Tensor::randn(0f32, 1.0, shape, &dev)?;
    let k = Tensor::randn(0f32, 1.0, shape, &dev)?;
    let v = Tensor::randn(0f32, 1.0, shape, &dev)?;
    println!(
        "BSA vs dense attention: grid {grid:?} ({tokens} tokens), {heads} heads, head_dim {head_dim}, chunks 4x4x4, CPU f32, best of {reps}"
    );
    let dense = best_of(reps, || dense_attention(&q, &k, &v).map(|_| ()))?;
    println!(
        "dense            {:>10.1} ms  1.000x",
        dense.as_secs_f64() * 1e3
    );
    for &s in sparsities {
        let params = BsaParams {
            sparsity: Some(s),
            cdf_threshold: None,
            chunk_3d_shape_q: [4, 4, 4],
            chunk_3d_shape_k: [4, 4, 4],
        };
        let t = best_of(reps, || {
            flash_attn_bsa_3d(&q, &k, &v, grid, grid, &params)
                .map(|_| ())
                .map_err(Into::into)
        })?;
        println!(
            "bsa sparsity {s:<5} {:>8.1} ms  {:.3}x dense",
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / dense.as_secs_f64()
        );
    }
    Ok(())
}

/// Runs a `bench` subcommand.
pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Bsa {
            grid,
            heads,
            head_dim,
            sparsity,
            reps,
        } => {
            let grid: [usize; 3] = grid
                .try_into()
                .map_err(|_| anyhow::anyhow!("--grid takes three numbers"))?;
            bench_bsa(grid, heads, head_dim, &sparsity, reps)
        }
    }
}
