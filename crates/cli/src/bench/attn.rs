//! Attention benchmarks: block sparse attention against dense attention on the same grid, and
//! the flash-style dense kernel against the chunked one it replaced.

use std::time::Duration;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use longcat_model::attention::{flash_attention, reference::chunked_attention};
use longcat_model::bsa::{bsa_attention, BsaParams};

use super::median_of;
use super::mem::{fmt_bytes, peak_rss, reset_peak_rss};

/// Parses `T×H×W` / `TxHxW` into a grid.
pub fn parse_grid(s: &str) -> Result<[usize; 3]> {
    let parts: Vec<&str> = s.split(['x', 'X', '×']).map(str::trim).collect();
    let nums: Vec<usize> = parts
        .iter()
        .map(|p| p.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("grid {s:?}: expected T×H×W, e.g. 48x44x80"))?;
    match nums.as_slice() {
        [t, h, w] if t * h * w > 0 => Ok([*t, *h, *w]),
        _ => bail!("grid {s:?}: expected three positive numbers T×H×W, e.g. 48x44x80"),
    }
}

/// What `bench bsa` measures.
pub struct BsaBench {
    /// Query token grid.
    pub grid_q: [usize; 3],
    /// Key token grid.
    pub grid_k: [usize; 3],
    /// Heads.
    pub heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Sparsities.
    pub sparsities: Vec<f64>,
    /// Timed repetitions.
    pub reps: usize,
    /// Skip the dense baseline.
    pub sparse_only: bool,
    /// Query rows of the dense baseline (its time is scaled to all rows); 0 = all rows.
    pub dense_rows: usize,
}

/// Random `[1, heads, T·H·W, D]` f32.
fn rand_heads(heads: usize, grid: [usize; 3], d: usize) -> Result<Tensor> {
    let n: usize = grid.iter().product();
    Ok(Tensor::randn(0f32, 1.0, (1, heads, n, d), &Device::Cpu)?)
}

/// Dense time for all `sq` query rows, measured on `rows` of them and scaled when fewer.
fn dense_time(q: &Tensor, k: &Tensor, v: &Tensor, rows: usize, reps: usize) -> Result<Duration> {
    let sq = q.dim(2)?;
    let rows = if rows == 0 { sq } else { rows.min(sq) };
    let qr = q.narrow(2, 0, rows)?;
    let scale = 1.0 / (q.dim(3)? as f64).sqrt();
    let t = median_of(reps, || {
        flash_attention(&qr, k, v, None, scale)?;
        Ok(())
    })?;
    Ok(t.mul_f64(sq as f64 / rows as f64))
}

/// `longcat bench bsa`.
pub fn bench_bsa(b: &BsaBench) -> Result<()> {
    let (sq, sk) = (
        b.grid_q.iter().product::<usize>(),
        b.grid_k.iter().product::<usize>(),
    );
    println!(
        "BSA vs dense attention: q grid {:?} ({sq} tokens), k grid {:?} ({sk} tokens), {} heads, head_dim {}, chunks 4x4x4, CPU f32, {} threads, median of {}",
        b.grid_q, b.grid_k, b.heads, b.head_dim, candle_core::utils::get_num_threads(), b.reps
    );
    reset_peak_rss();
    let q = rand_heads(b.heads, b.grid_q, b.head_dim)?;
    let k = rand_heads(b.heads, b.grid_k, b.head_dim)?;
    let v = rand_heads(b.heads, b.grid_k, b.head_dim)?;
    println!("inputs: peak RSS {}", fmt_bytes(peak_rss()));
    let dense = if b.sparse_only {
        None
    } else {
        let rows = if b.dense_rows == 0 && sq > 16_384 {
            8_192
        } else {
            b.dense_rows
        };
        reset_peak_rss();
        let t = dense_time(&q, &k, &v, rows, b.reps)?;
        let how = if rows == 0 || rows >= sq {
            "measured".to_string()
        } else {
            format!("measured on {rows} of {sq} query rows, scaled")
        };
        println!(
            "dense (flash)    {:>10.1} ms  1.000x   peak RSS {}  ({how})",
            t.as_secs_f64() * 1e3,
            fmt_bytes(peak_rss())
        );
        Some(t)
    };
    for &s in &b.sparsities {
        let params = BsaParams {
            sparsity: Some(s),
            cdf_threshold: None,
            chunk_3d_shape_q: [4, 4, 4],
            chunk_3d_shape_k: [4, 4, 4],
        };
        reset_peak_rss();
        let t = median_of(b.reps, || {
            bsa_attention(&q, &k, &v, b.grid_q, b.grid_k, &params)?;
            Ok(())
        })?;
        let ratio = dense
            .map(|d| format!("{:.3}x dense", t.as_secs_f64() / d.as_secs_f64()))
            .unwrap_or_else(|| "(no dense baseline)".into());
        println!(
            "bsa sparsity {s:<7} {:>8.1} ms  {ratio}   peak RSS {}",
            t.as_secs_f64() * 1e3,
            fmt_bytes(peak_rss())
        );
    }
    Ok(())
}

/// `longcat bench attention`: the flash-style dense kernel against the chunked one, same
/// inputs, over `tokens` keys and queries.
pub fn bench_dense(tokens: usize, heads: usize, head_dim: usize, reps: usize) -> Result<()> {
    let flops = 4.0 * (tokens as f64).powi(2) * (heads * head_dim) as f64;
    println!(
        "dense attention: {tokens} tokens, {heads} heads, head_dim {head_dim}, CPU f32, {} threads, median of {reps} ({:.1} GFLOP per call)",
        candle_core::utils::get_num_threads(),
        flops / 1e9
    );
    reset_peak_rss();
    let q = Tensor::randn(0f32, 1.0, (1, heads, tokens, head_dim), &Device::Cpu)?;
    let k = Tensor::randn(0f32, 1.0, (1, heads, tokens, head_dim), &Device::Cpu)?;
    let v = Tensor::randn(0f32, 1.0, (1, heads, tokens, head_dim), &Device::Cpu)?;
    let inputs = peak_rss();
    println!("inputs: peak RSS {}", fmt_bytes(inputs));
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut times = Vec::new();
    type Kernel<'a> = (&'a str, Box<dyn Fn() -> Result<()> + 'a>);
    let kernels: Vec<Kernel> = vec![
        (
            "flash (tiled, online softmax)",
            Box::new(|| {
                flash_attention(&q, &k, &v, None, scale)?;
                Ok(())
            }),
        ),
        (
            "chunked (previous kernel)",
            Box::new(|| {
                chunked_attention(&q, &k, &v, None, scale)?;
                Ok(())
            }),
        ),
    ];
    for (name, f) in &kernels {
        reset_peak_rss();
        let t = median_of(reps, f)?;
        times.push(t);
        println!(
            "{name:<30} {:>10.1} ms  {:>6.1} GFLOP/s  peak RSS {}",
            t.as_secs_f64() * 1e3,
            flops / t.as_secs_f64() / 1e9,
            fmt_bytes(peak_rss())
        );
    }
    println!(
        "flash / chunked time: {:.3}",
        times[0].as_secs_f64() / times[1].as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse_in_both_spellings() {
        assert_eq!(parse_grid("48x44x80").unwrap(), [48, 44, 80]);
        assert_eq!(parse_grid("52×44×80").unwrap(), [52, 44, 80]);
        assert!(parse_grid("48x44").is_err());
        assert!(parse_grid("0x1x1").is_err());
        assert!(parse_grid("ax1x1").is_err());
    }
}
