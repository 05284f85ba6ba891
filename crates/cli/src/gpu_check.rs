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
use longcat_model::bsa::BsaParams;
use longcat_model::dit::{DitConfig, LongCatDit, TextInput};
use longcat_model::lora::{LoraLayer, LoraMode, LoraWeights};

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
    /// Seconds the `job` section may run before it stops the job at the next step.
    #[arg(long, default_value_t = 150)]
    pub job_seconds: u64,
}

/// Parts of the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Dense flash attention: odd sizes, strided inputs, key bias; then the stage-1 shape.
    Attention,
    /// Block-sparse attention: ragged and empty selections, then the refinement shape.
    Bsa,
    /// The full-size DiT (48 blocks, random bf16 weights drawn on the GPU): one stage-1 step
    /// (480x832, 93 frames, batch 2 for CFG) and one refinement step (704x1280, BSA 0.9375),
    /// that step again with a random rank-128 LoRA, unmerged and fused.
    Dit,
    /// fal's default job (162 frames, 40 + 40 steps, CFG 4) through the engine on full-size
    /// random networks, until done or `--job-seconds`: time per stage and step, and
    /// `STAGE ... at_ms` lines for peak memory per stage (scripts/gpu-check.sh).
    Job,
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
    if all || args.only.contains(&Section::Dit) {
        time_dit(&dev)?;
    }
    if all || args.only.contains(&Section::Job) {
        crate::gpu_job::run_job(&dev, std::time::Duration::from_secs(args.job_seconds))?;
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

/// The official DiT config (`dit/config.json` of LongCat-Video).
pub(crate) fn official_dit_config() -> Result<DitConfig> {
    Ok(DitConfig::from_value(&serde_json::json!({
        "in_channels": 16, "out_channels": 16, "hidden_size": 4096, "depth": 48,
        "num_heads": 32, "caption_channels": 4096, "mlp_ratio": 4, "adaln_tembed_dim": 512,
        "frequency_embedding_size": 256, "patch_size": [1, 2, 2], "text_tokens_zero_pad": true,
    }))?)
}

/// Matmul and attention FLOPs of one DiT forward.
///
/// Per block, with n tokens, c = 4096, f the FFN width, l text tokens: 2nc²·4 (qkv, out),
/// 2nc²·2 (cross q, out), 2lc²·2 (cross k, v), 2ncf·3 (SwiGLU), 4nlc (cross attention) and
/// 4c·A for self attention, where A sums the keys each query row attends to: n² dense; with
/// BSA 64·(Nc·kc + Nn·kn), k = ⌊(1−s)·key blocks⌋ per call (condition and noise calls).
fn dit_forward_flops(cfg: &DitConfig, n: usize, l: usize, attended: f64) -> f64 {
    let (n, c, f, l) = (
        n as f64,
        cfg.hidden_size as f64,
        cfg.ffn_hidden() as f64,
        l as f64,
    );
    let per_block = 2.0 * n * c * c * 4.0
        + 2.0 * n * c * c * 2.0
        + 2.0 * l * c * c * 2.0
        + 2.0 * n * c * f * 3.0
        + 4.0 * n * l * c
        + 4.0 * c * attended;
    per_block * cfg.depth as f64
}

/// Seconds of one synchronised forward (after one warm-up forward).
fn time_forward(dev: &Device, f: impl Fn() -> Result<Tensor>) -> Result<f64> {
    drop(f()?);
    dev.synchronize()?;
    let start = Instant::now();
    let out = f()?;
    dev.synchronize()?;
    let secs = start.elapsed().as_secs_f64();
    let finite = out
        .to_dtype(DType::F32)?
        .abs()?
        .max_keepdim(0)?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?
        .is_finite();
    if !finite {
        bail!("the DiT output has NaN or infinite values");
    }
    Ok(secs)
}

fn report_step(name: &str, secs: f64, flops: f64) {
    println!(
        "TIME {name}: {secs:.2} s per step, {:.2} PFLOP, {:.0} TFLOP/s achieved",
        flops / 1e15,
        flops / secs / 1e12
    );
}

fn time_dit(dev: &Device) -> Result<()> {
    let cfg = official_dit_config()?;
    let build = Instant::now();
    let mut dit = LongCatDit::random_on_device(cfg.clone(), dev, DType::BF16)?;
    dev.synchronize()?;
    println!(
        "DiT: 48 blocks, random bf16 weights drawn on the GPU in {:.1} s",
        build.elapsed().as_secs_f64()
    );
    let text_len = 512;
    let text = |b: usize| -> Result<(Tensor, Tensor)> {
        let y = Tensor::randn(0f32, 1.0, (b, 1, text_len, 4096), dev)?.to_dtype(DType::BF16)?;
        // Official prompts are padded to 512 tokens; a typical prompt uses ~100 of them.
        let mask: Vec<i64> = (0..b * text_len)
            .map(|i| i64::from(i % text_len < 100))
            .collect();
        Ok((y, Tensor::from_vec(mask, (b, text_len), dev)?))
    };

    // Stage 1: 480x832, 93 frames -> latent 24x60x104, 37,440 tokens; batch 2 (CFG), one
    // condition latent (the image).
    let (t, h, w) = (24, 60, 104);
    let n = t * h * w / 4;
    let x = Tensor::randn(0f32, 1.0, (2, 16, t, h, w), dev)?.to_dtype(DType::BF16)?;
    let ts = Tensor::new(&[700f32, 700.0], dev)?;
    let (y, mask) = text(2)?;
    let secs = time_forward(dev, || {
        let text = TextInput {
            states: &y,
            mask: Some(&mask),
        };
        Ok(dit.forward(&x, &ts, text, 1)?)
    })?;
    let flops = 2.0 * dit_forward_flops(&cfg, n, text_len, (n * n) as f64);
    report_step("stage-1 step 480x832 93f batch 2 (CFG)", secs, flops);
    drop((x, y, mask));

    // Refinement: 704x1280, 4 condition + 48 noise latents -> 52x88x160 latent, 183,040
    // tokens; BSA 0.9375 with 4x4x4 blocks; no CFG.
    let (t, h, w, cond) = (52, 88, 160, 4);
    let n = t * h * w / 4;
    let per_frame = h * w / 4;
    let (nc, nn) = (cond * per_frame, (t - cond) * per_frame);
    let keep = |blocks: usize| (blocks as f64 * (1.0 - 0.9375)).floor();
    let attended = 64.0 * (nc as f64 * keep(nc / 64) + nn as f64 * keep(n / 64));
    dit.enable_bsa(BsaParams {
        sparsity: Some(0.9375),
        cdf_threshold: None,
        chunk_3d_shape_q: [4, 4, 4],
        chunk_3d_shape_k: [4, 4, 4],
    });
    let x = Tensor::randn(0f32, 1.0, (1, 16, t, h, w), dev)?.to_dtype(DType::BF16)?;
    let steps: Vec<f32> = (0..t).map(|i| if i < cond { 0.0 } else { 500.0 }).collect();
    let ts = Tensor::from_vec(steps, (1, t), dev)?;
    let (y, mask) = text(1)?;
    let secs = time_forward(dev, || {
        let text = TextInput {
            states: &y,
            mask: Some(&mask),
        };
        Ok(dit.forward(&x, &ts, text, cond)?)
    })?;
    let flops = dit_forward_flops(&cfg, n, text_len, attended);
    report_step(
        "refinement step 704x1280 52 latents BSA 0.9375",
        secs,
        flops,
    );

    // The same step with a rank-128 LoRA on every block's linear layers (as the refinement
    // LoRA), applied unmerged (the official form) and fused into the GEMM (our GPU default).
    dit.register_lora("refinement", random_block_lora(&cfg, 128, dev)?)?;
    for (mode, name) in [(LoraMode::Unmerged, "unmerged"), (LoraMode::Fused, "fused")] {
        dit.enable_loras(&[("refinement".to_string(), 1.0)], mode)?;
        let secs = time_forward(dev, || {
            let text = TextInput {
                states: &y,
                mask: Some(&mask),
            };
            Ok(dit.forward(&x, &ts, text, cond)?)
        })?;
        report_step(
            &format!("refinement step with a rank-128 LoRA, {name} (FLOPs without the LoRA)"),
            secs,
            flops,
        );
        dit.disable_loras()?;
    }
    Ok(())
}

/// A random rank-`rank` LoRA (bf16, drawn on `dev`) over every block's attention,
/// cross-attention and FFN linears: the refinement LoRA's block targets.
pub(crate) fn random_block_lora(cfg: &DitConfig, rank: usize, dev: &Device) -> Result<LoraWeights> {
    let (c, f) = (cfg.hidden_size, cfg.ffn_hidden());
    let factor = |rows: usize, cols: usize| -> Result<Tensor> {
        Ok((Tensor::randn(0f32, 1.0, (rows, cols), dev)? * 0.01)?.to_dtype(DType::BF16)?)
    };
    let mut weights = LoraWeights::default();
    for i in 0..cfg.depth {
        for (name, inp, out) in [
            ("attn.qkv", c, 3 * c),
            ("attn.proj", c, c),
            ("cross_attn.q_linear", c, c),
            ("cross_attn.kv_linear", c, 2 * c),
            ("ffn.w1", c, f),
            ("ffn.w3", c, f),
            ("ffn.w2", f, c),
        ] {
            weights.layers.insert(
                format!("blocks.{i}.{name}"),
                LoraLayer {
                    down: factor(rank, inp)?,
                    ups: vec![factor(out, rank)?],
                    alpha_scale: 0.5,
                },
            );
        }
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FLOP counts match the spec's (shared/spec/longcat-model.md §9): 1.92 PF per batch
    /// item at stage 1, 5.74 PF for a refinement forward with BSA 0.9375.
    #[test]
    fn flop_counts_match_the_spec() {
        let cfg = official_dit_config().unwrap();
        let n = 24 * 60 * 104 / 4;
        let stage1 = dit_forward_flops(&cfg, n, 512, (n * n) as f64);
        assert!((stage1 / 1.92e15 - 1.0).abs() < 0.03, "{stage1:e}");

        let (n, per_frame) = (52 * 88 * 160 / 4, 88 * 160 / 4);
        let (nc, nn) = (4 * per_frame, 48 * per_frame);
        let attended = 64.0 * (nc as f64 * 13.0 + nn as f64 * 178.0);
        let refine = dit_forward_flops(&cfg, n, 512, attended);
        assert!((refine / 5.74e15 - 1.0).abs() < 0.03, "{refine:e}");
    }
}
