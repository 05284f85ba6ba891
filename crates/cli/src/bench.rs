//! `longcat bench`: CPU benchmarks reported as ratios against a baseline measured in the same run.

mod attn;
mod lora;
mod mem;
mod shapes;
mod vae;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use clap::Subcommand;
use longcat_model::dit::{DitConfig, LongCatDit, TextInput};

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Block sparse attention against dense attention (the flash kernel) on the same inputs.
    Bsa {
        /// Token grid T H W for both queries and keys (default 16k tokens); see --grid-q.
        #[arg(long, num_args = 3, default_values_t = [16, 32, 32])]
        grid: Vec<usize>,
        /// Query token grid `T×H×W` (e.g. 48x44x80); overrides --grid for the queries.
        #[arg(long)]
        grid_q: Option<String>,
        /// Key token grid `T×H×W` (e.g. 52x44x80); overrides --grid for the keys.
        #[arg(long)]
        grid_k: Option<String>,
        /// Attention heads.
        #[arg(long, default_value_t = 2)]
        heads: usize,
        /// Head dimension.
        #[arg(long, default_value_t = 64)]
        head_dim: usize,
        /// Sparsities to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [0.5, 0.75, 0.875])]
        sparsity: Vec<f64>,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Only the sparse attention (no dense baseline).
        #[arg(long)]
        sparse_only: bool,
        /// Query rows the dense baseline is measured on, its time scaled to all rows (0 = all
        /// rows up to 16,384 queries, 8,192 rows beyond).
        #[arg(long, default_value_t = 0)]
        dense_rows: usize,
    },
    /// Dense attention: the flash-style kernel against the previous chunked one.
    Attention {
        /// Tokens (queries = keys).
        #[arg(long, default_value_t = 16_384)]
        tokens: usize,
        /// Attention heads.
        #[arg(long, default_value_t = 2)]
        heads: usize,
        /// Head dimension.
        #[arg(long, default_value_t = 64)]
        head_dim: usize,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// VAE decode time (full width, random weights, CPU f32) of a small latent: the shape the
    /// PyTorch reference (`py_vae.py`) times; with peak RSS.
    Vae {
        /// Latent T H W.
        #[arg(long, num_args = 3, default_values_t = [2, 8, 8])]
        latent: Vec<usize>,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Spatial tiling `TILE[,OVERLAP]` in latent pixels (default: none, whole frames).
        #[arg(long, value_name = "TILE[,OVERLAP]")]
        tile: Option<longcat_model::vae::VaeTiling>,
        /// Time the encode of the matching video `[1, 3, 1 + 4(T-1), 8H, 8W]` instead.
        #[arg(long)]
        encode: bool,
    },
    /// Each heavy op once at the official shapes (CPU f32, reduced only in heads or layers),
    /// with time and peak RSS.
    Shapes {
        /// Cases to run (default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<shapes::ShapeCase>,
    },
    /// LoRA on one linear layer: unmerged (the official form) against fused (the weight
    /// folded per call, one GEMM), with the layer without LoRA as the baseline.
    Lora {
        /// Tokens of the call.
        #[arg(long, default_value_t = 8192)]
        tokens: usize,
        /// Layer width (square `[dim, dim]` weight).
        #[arg(long, default_value_t = 1024)]
        dim: usize,
        /// LoRA rank.
        #[arg(long, default_value_t = 128)]
        rank: usize,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// DiT forward time (random weights, CPU f32) for the tiny golden config and a mid config
    /// (hidden 1024, 4 layers, 8k tokens), against the machine's f32 matmul throughput
    /// measured in the same run.
    Dit {
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 1)]
        reps: usize,
        /// Skip the mid config (it takes tens of seconds per forward on 2 cores).
        #[arg(long)]
        tiny_only: bool,
    },
}

/// Median wall time of `reps` runs of `f` (after one warm-up run), as the PyTorch reference
/// scripts report theirs.
fn median_of(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?;
    let mut times = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// A DiT shape to benchmark.
struct DitCase {
    name: &'static str,
    hidden: usize,
    heads: usize,
    depth: usize,
    caption_channels: usize,
    /// Latent `[T, H, W]` (tokens = T*H*W/4 with the 1x2x2 patch).
    latent: [usize; 3],
    text_len: usize,
}

fn dit_config(case: &DitCase) -> Result<DitConfig> {
    Ok(DitConfig::from_value(&serde_json::json!({
        "adaln_tembed_dim": 32.max(case.hidden / 4),
        "caption_channels": case.caption_channels,
        "depth": case.depth,
        "frequency_embedding_size": 256,
        "hidden_size": case.hidden,
        "in_channels": 16,
        "out_channels": 16,
        "mlp_ratio": 4,
        "num_heads": case.heads,
        "patch_size": [1, 2, 2],
        "text_tokens_zero_pad": true,
    }))?)
}

/// FLOPs of one DiT forward (matmuls only; attention over all tokens).
fn dit_flops(case: &DitCase) -> f64 {
    let n = (case.latent[0] * case.latent[1] * case.latent[2] / 4) as f64;
    let c = case.hidden as f64;
    let l = case.text_len as f64;
    let ffn = ((c * 4.0 * 2.0 / 3.0 / 256.0).ceil() * 256.0).max(256.0);
    let per_block = 2.0 * n * c * c * 4.0 // qkv + proj
        + 2.0 * n * c * c * 2.0 // cross-attn q + proj
        + 2.0 * l * c * c * 2.0 // cross-attn kv
        + 2.0 * n * c * ffn * 3.0 // SwiGLU
        + 4.0 * n * n * c // self-attention scores and values
        + 4.0 * n * l * c; // cross-attention
    per_block * case.depth as f64
}

/// Sustained f32 matmul throughput (GFLOP/s) of this machine through candle.
fn matmul_gflops(reps: usize) -> Result<f64> {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let t = median_of(reps.max(2), || a.matmul(&b).map(|_| ()).map_err(Into::into))?;
    Ok(2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9)
}

fn bench_dit(reps: usize, tiny_only: bool) -> Result<()> {
    let mut cases = vec![DitCase {
        name: "tiny (golden config)",
        hidden: 64,
        heads: 2,
        depth: 2,
        caption_channels: 64,
        latent: [3, 8, 12],
        text_len: 16,
    }];
    if !tiny_only {
        cases.push(DitCase {
            name: "mid (hidden 1024, 4 layers, 8k tokens)",
            hidden: 1024,
            heads: 8,
            depth: 4,
            caption_channels: 4096,
            latent: [8, 64, 64],
            text_len: 128,
        });
    }
    let peak = matmul_gflops(reps)?;
    println!("baseline: 2048x2048 f32 matmul {peak:.1} GFLOP/s (CPU, this run)");
    for case in &cases {
        let dit = LongCatDit::random(dit_config(case)?, 7, &Device::Cpu, candle_core::DType::F32)?;
        let [t, h, w] = case.latent;
        let x = Tensor::randn(0f32, 1.0, (1, 16, t, h, w), &Device::Cpu)?;
        let y = Tensor::randn(
            0f32,
            1.0,
            (1, 1, case.text_len, case.caption_channels),
            &Device::Cpu,
        )?;
        let mask = Tensor::ones((1, case.text_len), candle_core::DType::I64, &Device::Cpu)?;
        let ts = Tensor::new(&[500f32], &Device::Cpu)?;
        let text = TextInput {
            states: &y,
            mask: Some(&mask),
        };
        let time = median_of(reps, || {
            dit.forward(&x, &ts, text, 0)
                .map(|_| ())
                .map_err(Into::into)
        })?;
        let gflops = dit_flops(case) / time.as_secs_f64() / 1e9;
        println!(
            "dit {:<40} {:>6} tokens {:>10.1} ms  {:>7.1} GFLOP/s  {:.2}x of matmul baseline",
            case.name,
            t * h * w / 4,
            time.as_secs_f64() * 1e3,
            gflops,
            gflops / peak
        );
    }
    Ok(())
}

/// Runs a `bench` subcommand.
pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Bsa {
            grid,
            grid_q,
            grid_k,
            heads,
            head_dim,
            sparsity,
            reps,
            sparse_only,
            dense_rows,
        } => {
            let grid: [usize; 3] = match grid.try_into() {
                Ok(g) => g,
                Err(_) => bail!("--grid takes three numbers"),
            };
            let pick = |s: Option<String>| s.map(|s| attn::parse_grid(&s)).unwrap_or(Ok(grid));
            attn::bench_bsa(&attn::BsaBench {
                grid_q: pick(grid_q)?,
                grid_k: pick(grid_k)?,
                heads,
                head_dim,
                sparsities: sparsity,
                reps,
                sparse_only,
                dense_rows,
            })
        }
        BenchCommand::Attention {
            tokens,
            heads,
            head_dim,
            reps,
        } => attn::bench_dense(tokens, heads, head_dim, reps),
        BenchCommand::Vae {
            latent,
            reps,
            tile,
            encode,
        } => {
            let latent: [usize; 3] = match latent.try_into() {
                Ok(l) => l,
                Err(_) => bail!("--latent takes three numbers"),
            };
            vae::bench_pass(latent, reps, tile, encode)
        }
        BenchCommand::Shapes { only } => {
            let all = [
                shapes::ShapeCase::Bsa,
                shapes::ShapeCase::Dense,
                shapes::ShapeCase::Block,
                shapes::ShapeCase::Vae,
            ];
            shapes::bench_shapes(if only.is_empty() { &all } else { &only })
        }
        BenchCommand::Dit { reps, tiny_only } => bench_dit(reps, tiny_only),
        BenchCommand::Lora {
            tokens,
            dim,
            rank,
            reps,
        } => lora::bench_lora(tokens, dim, rank, reps),
    }
}
