//! `longcat gpu-check`: correctness and speed of the CUDA kernels on the GPU at hand, for
//! `scripts/gpu-check.sh`. Every check draws fresh random inputs, compares against the tiled
//! tensor-op path in f32 (the CPU kernels' reference) by relative error
//! ‖out − ref‖ / ‖ref‖, and fails on NaN or an error above the bf16 bound. Timings are the
//! median of several synchronised runs after a warm-up, with achieved TFLOP/s.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use longcat_model::attention::{self, Kernel};

/// Relative error a bf16 kernel may show against the f32 reference (bf16 operands land
/// between 1e-3 and 1e-2; the probabilities are rounded to bf16 before P·V).
const BF16_REL_BOUND: f64 = 2e-2;

/// `longcat gpu-check` arguments.
#[derive(Args)]
pub struct GpuCheckArgs {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// What to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Section>,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
}

/// Parts of the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Dense flash attention: odd sizes, strided inputs, key bias; then the stage-1 shape.
    Attention,
    /// Block-sparse attention: ragged and empty selections, then the refinement shape.
    Bsa,
}

/// Runs the check; fails if any correctness check fails.
pub fn run(args: GpuCheckArgs) -> Result<std::process::ExitCode> {
    let dev = Device::new_cuda(args.device).context(
        "gpu-check needs a CUDA device and a `cuda` build (cargo build --features cuda)",
    )?;
    let all = args.only.is_empty();
    let mut failures = 0;
    if all || args.only.contains(&Section::Attention) {
        failures += check_dense(&dev)?;
        time_dense(&dev, args.reps)?;
    }
    if all || args.only.contains(&Section::Bsa) {
        failures += check_block_sparse(&dev)?;
        time_block_sparse(&dev, args.reps)?;
    }
    println!("gpu-check: {failures} correctness failures");
    Ok(if failures == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// ‖a − b‖ / ‖b‖ in f32 (NaN if either has a NaN).
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_dtype(DType::F32)?;
    let b = b.to_dtype(DType::F32)?;
    let num = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    let den = b.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((num / den.max(f64::MIN_POSITIVE)).sqrt())
}

fn report(name: &str, err: f64) -> usize {
    let ok = err.is_finite() && err <= BF16_REL_BOUND;
    println!(
        "{} {name}: rel err {err:.2e} (bound {BF16_REL_BOUND:.0e})",
        if ok { "PASS" } else { "FAIL" }
    );
    usize::from(!ok)
}

/// `[B, S, H, D]` random bf16 viewed as `[B, H, S, D]` (the DiT's layout, no copy).
fn heads_view(b: usize, s: usize, h: usize, d: usize, dev: &Device) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1.0, (b, s, h, d), dev)?
        .to_dtype(DType::BF16)?
        .transpose(1, 2)?)
}

fn check_dense(dev: &Device) -> Result<usize> {
    let mut failures = 0;
    // (batch, heads, query rows, keys, head dim, with key bias)
    let cases = [
        (1, 2, 64, 64, 128, false),
        (2, 3, 1000, 777, 128, false),
        (2, 2, 333, 1200, 64, false),
        (2, 4, 517, 512, 128, true),
        (1, 2, 5, 3, 128, false),
    ];
    for (b, h, sq, sk, d, with_bias) in cases {
        let q = heads_view(b, sq, h, d, dev)?;
        let k = heads_view(b, sk, h, d, dev)?;
        let v = heads_view(b, sk, h, d, dev)?;
        if !attention::cuda_kernel_applies(&[&q, &k, &v]) {
            bail!("the CUDA kernel does not take bf16 [B,H,S,{d}] views: not a cuda build?");
        }
        // Padding mask: the last third of each row's keys (a different count per batch).
        let bias = if with_bias {
            let rows: Vec<f32> = (0..b)
                .flat_map(|bi| {
                    let valid = sk - (sk / 3) / (bi + 1);
                    (0..sk).map(move |j| if j < valid { 0.0 } else { -1e9 })
                })
                .collect();
            Some(Tensor::from_vec(rows, (b, 1, 1, sk), dev)?)
        } else {
            None
        };
        let scale = 1.0 / (d as f64).sqrt();
        let out = attention::flash_attention(&q, &k, &v, bias.as_ref(), scale)?;
        let reference = attention::flash_attention_with(
            &q.to_dtype(DType::F32)?,
            &k.to_dtype(DType::F32)?,
            &v.to_dtype(DType::F32)?,
            bias.as_ref(),
            scale,
            Kernel::Tiled,
        )?;
        let name = format!(
            "dense b{b} h{h} sq{sq} sk{sk} d{d}{}",
            if with_bias { " bias" } else { "" }
        );
        failures += report(&name, rel_err(&out, &reference)?);
    }
    Ok(failures)
}

/// Random block selections: `lens` from 0 to `width`, distinct ids per query block.
fn selection(
    bh: usize,
    nq: usize,
    nk: usize,
    width: usize,
    dev: &Device,
) -> Result<(Tensor, Tensor)> {
    let mut ids = Vec::with_capacity(bh * nq * width);
    let mut lens = Vec::with_capacity(bh * nq);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..bh * nq {
        let len = (next() % (width as u64 + 1)) as usize;
        let start = (next() % nk as u64) as usize;
        let stride = 1 + (next() % 3) as usize;
        let mut row: Vec<u32> = Vec::with_capacity(width);
        let mut j = start;
        while row.len() < width {
            let id = (j % nk) as u32;
            if !row.contains(&id) {
                row.push(id);
            }
            j += stride;
            if j > start + 4 * nk {
                j = row.len();
            }
        }
        ids.extend(row);
        lens.push(len as u32);
    }
    Ok((
        Tensor::from_vec(ids, (bh, nq, width), dev)?,
        Tensor::from_vec(lens, (bh, nq), dev)?,
    ))
}

fn check_block_sparse(dev: &Device) -> Result<usize> {
    let mut failures = 0;
    // (batch*heads, query blocks, key blocks, block sizes cq ck, selected width, head dim)
    let cases = [
        (4, 12, 16, 64, 64, 3, 128),
        (3, 5, 9, 32, 32, 4, 128),
        (2, 4, 6, 128, 96, 2, 64),
        (2, 7, 7, 64, 64, 7, 128),
    ];
    for (bh, nq, nk, cq, ck, width, d) in cases {
        let rand = |rows: usize| -> Result<Tensor> {
            Ok(Tensor::randn(0f32, 1.0, (bh, rows, d), dev)?.to_dtype(DType::BF16)?)
        };
        let (q, k, v) = (rand(nq * cq)?, rand(nk * ck)?, rand(nk * ck)?);
        let (ids, lens) = selection(bh, nq, nk, width.min(nk), dev)?;
        let scale = 1.0 / (d as f64).sqrt();
        let out = attention::block_sparse_attention(
            &q,
            &k,
            &v,
            &ids,
            &lens,
            cq,
            ck,
            scale,
            Kernel::Auto,
        )?;
        let reference = attention::block_sparse_attention(
            &q.to_dtype(DType::F32)?,
            &k.to_dtype(DType::F32)?,
            &v.to_dtype(DType::F32)?,
            &ids,
            &lens,
            cq,
            ck,
            scale,
            Kernel::Tiled,
        )?;
        let name = format!("bsa bh{bh} nq{nq} nk{nk} cq{cq} ck{ck} w{width} d{d}");
        failures += report(&name, rel_err(&out, &reference)?);
    }
    Ok(failures)
}

/// Median seconds of `reps` synchronised runs after one warm-up.
fn time_on(dev: &Device, reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut times = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let out = f()?;
        dev.synchronize()?;
        times.push(start.elapsed().as_secs_f64());
        drop(out);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn time_dense(dev: &Device, reps: usize) -> Result<()> {
    // Stage 1 self-attention per layer: batch 2 (CFG), 32 heads, 37,440 tokens, d 128.
    let (b, h, s, d) = (2, 32, 37_440, 128);
    let q = heads_view(b, s, h, d, dev)?;
    let k = heads_view(b, s, h, d, dev)?;
    let v = heads_view(b, s, h, d, dev)?;
    let scale = 1.0 / (d as f64).sqrt();
    let secs = time_on(dev, reps, || {
        Ok(attention::flash_attention(&q, &k, &v, None, scale)?)
    })?;
    let flops = 4.0 * (b * h) as f64 * (s as f64) * (s as f64) * d as f64;
    println!(
        "TIME dense attention b{b} h{h} s{s} d{d}: {:.2} ms, {:.0} TFLOP/s",
        secs * 1e3,
        flops / secs / 1e12
    );
    Ok(())
}

fn time_block_sparse(dev: &Device, reps: usize) -> Result<()> {
    // Refinement noise call per layer: 32 heads, 48x44x80 query tokens over 52x44x80 keys in
    // 4x4x4 blocks, keeping 1/16 of the key blocks.
    let (bh, d, c) = (32, 128, 64);
    let (nq, nk) = (48 * 44 * 80 / c, 52 * 44 * 80 / c);
    let width = nk / 16;
    let rand = |rows: usize| -> Result<Tensor> {
        Ok(Tensor::randn(0f32, 1.0, (bh, rows, d), dev)?.to_dtype(DType::BF16)?)
    };
    let (q, k, v) = (rand(nq * c)?, rand(nk * c)?, rand(nk * c)?);
    // Distinct ids per query block (3 is coprime with the key block count), spread over the keys.
    let ids: Vec<u32> = (0..bh * nq)
        .flat_map(|row| (0..width).map(move |j| ((row % nq + 3 * j) % nk) as u32))
        .collect();
    let ids = Tensor::from_vec(ids, (bh, nq, width), dev)?;
    let lens = Tensor::full(width as u32, (bh, nq), dev)?;
    let scale = 1.0 / (d as f64).sqrt();
    let secs = time_on(dev, reps, || {
        Ok(attention::block_sparse_attention(
            &q,
            &k,
            &v,
            &ids,
            &lens,
            c,
            c,
            scale,
            Kernel::Auto,
        )?)
    })?;
    let flops = 4.0 * bh as f64 * (nq * c) as f64 * (width * c) as f64 * d as f64;
    println!(
        "TIME bsa bh{bh} q{} k{} kept {width}/{nk} blocks d{d}: {:.2} ms, {:.0} TFLOP/s",
        nq * c,
        nk * c,
        secs * 1e3,
        flops / secs / 1e12
    );
    Ok(())
}
