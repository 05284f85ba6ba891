//! VAE benchmarks: decode time (the shape the PyTorch reference times) and the kernel plan at
//! the official sizes.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use longcat_model::conv3d::{DEFAULT_BAND_ELEMS, MAX_KERNEL_ELEMS};
use longcat_model::vae::{kernel_plan, VaeConfig, VaePass, VaeTiling, WanVae};

use super::median_of;
use super::mem::{current_rss, fmt_bytes, peak_rss, reset_peak_rss};

/// `longcat bench vae`: decode of a `[1, 16, T, H, W]` latent (or, with `encode`, encode of
/// the matching video) with the full-width VAE (Wan 2.1, base_dim 96, random weights), CPU
/// f32, optionally tiled; reports the median time and the peak RSS over the runs minus the
/// RSS before them (weights and input already resident).
pub fn bench_pass(
    latent: [usize; 3],
    reps: usize,
    tile: Option<VaeTiling>,
    encode: bool,
) -> Result<()> {
    let dev = Device::Cpu;
    let mut vae = WanVae::random(&VaeConfig::default(), 7, &dev, DType::F32)?;
    vae.set_tiling(tile);
    let [t, h, w] = latent;
    let input = if encode {
        Tensor::randn(
            0f32,
            0.5,
            (1, 3, 1 + 4 * t.saturating_sub(1), 8 * h, 8 * w),
            &dev,
        )?
    } else {
        Tensor::randn(0f32, 1.0, (1, 16, t, h, w), &dev)?
    };
    let before = current_rss();
    reset_peak_rss();
    let time = median_of(reps, || {
        if encode {
            vae.encode(&input)?;
        } else {
            vae.decode(&input)?;
        }
        Ok(())
    })?;
    let peak = peak_rss();
    let tiling = tile.map_or("untiled".to_string(), |t| format!("tile {t}"));
    println!(
        "vae {} latent {t}x{h}x{w} (base_dim 96, band {} elements, {tiling}), {} threads, median of {reps}: {:.1} ms; peak RSS {} ({} above the {} before)",
        if encode { "encode" } else { "decode" },
        vae.band_elems(),
        candle_core::utils::get_num_threads(),
        time.as_secs_f64() * 1e3,
        fmt_bytes(peak),
        fmt_bytes(peak.zip(before).map(|(p, b)| p.saturating_sub(b))),
        fmt_bytes(before),
    );
    Ok(())
}

/// The VAE passes of the fal default job with the largest single kernel of each (planned from
/// shapes, nothing runs), at the GPU band budget.
pub fn print_plan() -> Result<()> {
    let cfg = VaeConfig::default();
    let cases = [
        (
            "stage-1 decode, 93 frames at 480x832",
            VaePass::Decode,
            93,
            480,
            832,
        ),
        (
            "refine encode, 205 frames at 704x1280",
            VaePass::Encode,
            205,
            704,
            1280,
        ),
        (
            "final decode, 205 frames at 704x1280",
            VaePass::Decode,
            205,
            704,
            1280,
        ),
    ];
    for (label, pass, frames, h, w) in cases {
        let plan = kernel_plan(&cfg, pass, 1, frames, h, w, DEFAULT_BAND_ELEMS)?;
        let (what, elems) = plan.largest();
        println!(
            "vae {label:<40} largest kernel {elems:>13} elements ({:.2} of the 2^31 limit, {what}); peak activations {:.2} GiB in bf16",
            elems as f64 / MAX_KERNEL_ELEMS as f64,
            (plan.peak_activation_elems() * 2) as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}
