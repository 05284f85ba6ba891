//! Tests of the VAE on tiny and full widths (random weights).

use super::norm::RmsNorm;
use super::tiling::VaeTiling;
use super::*;
use crate::conv3d::DEFAULT_BAND_ELEMS;
use candle_core::Device;
use candle_nn::VarMap;

/// A VAE with random weights (std 0.05, gammas near 1).
fn random_vae(cfg: &VaeConfig, dev: &Device) -> WanVae {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
    WanVae::new(cfg, vb).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let noise = var.randn_like(0.0, 0.05).unwrap();
        let value = if name.ends_with("gamma") {
            (noise + 1.0).unwrap()
        } else {
            noise
        };
        var.set(&value).unwrap();
    }
    WanVae::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev)).unwrap()
}

fn tiny() -> VaeConfig {
    VaeConfig {
        base_dim: 4,
        ..VaeConfig::default()
    }
}

/// The fused CPU RMS norm (+ SiLU) equals the tensor ops, on odd sizes and on frames of
/// more than one pixel chunk, for the 5D and the 4D (attention) layouts.
#[test]
fn rms_norm_cpu_equals_tensor_ops() {
    let dev = Device::Cpu;
    for (dims, images) in [
        (vec![2, 3, 5, 7, 9], false),
        (vec![1, 2, 3, 33, 35], false),
        (vec![3, 6, 4, 5], true),
    ] {
        let c = dims[dims.len() - 3];
        let gamma = Tensor::randn(1f32, 0.1, (c, 1, 1), &dev).unwrap();
        let norm = if images {
            gamma.clone()
        } else {
            gamma.reshape((c, 1, 1, 1)).unwrap()
        };
        let vb = VarBuilder::from_tensors(
            [("gamma".to_string(), norm)].into_iter().collect(),
            DType::F32,
            &dev,
        );
        let norm = RmsNorm::new(c, images, vb).unwrap();
        let mut x = Tensor::randn(0f32, 1.0, dims.clone(), &dev).unwrap();
        // A pixel whose channels are all zero (the 1e-12 clamp).
        let n: usize = dims.iter().product();
        let mut v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let p = dims[dims.len() - 2] * dims[dims.len() - 1];
        for ch in 0..c {
            v[ch * p] = 0.0;
        }
        x = Tensor::from_vec(v, dims.clone(), &dev).unwrap();
        assert_eq!(x.elem_count(), n);
        for silu in [false, true] {
            let want = norm.forward_ops(&x).unwrap();
            let want = if silu { want.silu().unwrap() } else { want };
            let got = norm.forward_act(&x, silu).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = crate::test_util::max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "{dims:?} silu {silu}: {diff}");
        }
    }
}

/// The decode with the native CPU kernels equals the banded tensor-op convolution.
#[test]
fn decode_native_cpu_equals_banded() {
    let dev = Device::Cpu;
    let mut vae = random_vae(&tiny(), &dev);
    let z = Tensor::randn(0f32, 1.0, (1, 16, 3, 3, 5), &dev).unwrap();
    let native = vae.decode(&z).unwrap();
    vae.set_conv_path(ConvPath::Banded);
    let banded = vae.decode(&z).unwrap();
    assert_eq!(native.dims(), &[1, 3, 9, 24, 40]);
    let diff = crate::test_util::max_abs_diff(&native, &banded);
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn config_defaults_match_wan21() {
    let cfg: VaeConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, VaeConfig::default());
    assert_eq!((cfg.scale_temporal(), cfg.scale_spatial()), (4, 8));
    let bad = VaeConfig {
        is_residual: true,
        ..VaeConfig::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn streaming_chunks_are_one_then_four_frames() {
    let dev = Device::Cpu;
    let vae = random_vae(&tiny(), &dev);
    let z = Tensor::randn(0f32, 1.0, (1, 16, 3, 2, 3), &dev).unwrap();
    let mut sizes = Vec::new();
    let mut chunks = Vec::new();
    vae.decode_streaming(&z, |c| {
        sizes.push(c.dims().to_vec());
        chunks.push(c);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        sizes,
        vec![
            vec![1, 3, 1, 16, 24],
            vec![1, 3, 4, 16, 24],
            vec![1, 3, 4, 16, 24]
        ]
    );
    let whole = vae.decode(&z).unwrap();
    let joined = Tensor::cat(&chunks, 2).unwrap();
    assert_eq!(crate::test_util::max_abs_diff(&whole, &joined), 0.0);
    let post = vae
        .encode(&Tensor::randn(0f32, 0.5, (1, 3, 5, 16, 16), &dev).unwrap())
        .unwrap();
    assert_eq!(post.mean.dims(), &[1, 16, 2, 2, 2]);
}

/// The shape-only plan lists exactly the convolution calls a real run makes, with
/// the same splits, at the default budget and at a tiny one.
#[test]
fn plan_matches_run() {
    let dev = Device::Cpu;
    let cfg = tiny();
    let mut vae = random_vae(&cfg, &dev);
    let video = Tensor::randn(0f32, 0.5, (1, 3, 9, 16, 24), &dev).unwrap();
    let z = Tensor::randn(0f32, 1.0, (1, 16, 3, 2, 3), &dev).unwrap();
    for band in [DEFAULT_BAND_ELEMS, 300] {
        vae.set_band_elems(band);
        let (_, enc) = vae.encode_traced(&video).unwrap();
        let plan = kernel_plan(&cfg, VaePass::Encode, 1, 9, 16, 24, band).unwrap();
        assert_eq!(enc, plan.convs);
        let (_, dec) = vae.decode_traced(&z).unwrap();
        let plan = kernel_plan(&cfg, VaePass::Decode, 1, 9, 16, 24, band).unwrap();
        assert_eq!(dec, plan.convs);
        if band == 300 {
            assert!(dec.iter().any(|p| p.bands > 1));
        }
    }
}

/// A tiny band budget (many bands and frame groups) gives the same video and latents.
#[test]
fn banded_vae_matches_default() {
    let dev = Device::Cpu;
    let mut vae = random_vae(&tiny(), &dev);
    let video = Tensor::randn(0f32, 0.5, (1, 3, 5, 16, 24), &dev).unwrap();
    let z = Tensor::randn(0f32, 1.0, (1, 16, 2, 2, 3), &dev).unwrap();
    let enc = vae.encode(&video).unwrap().mean;
    let dec = vae.decode(&z).unwrap();
    vae.set_band_elems(1);
    let encoded = vae.encode(&video).unwrap().mean;
    assert!(crate::test_util::max_abs_diff(&enc, &encoded) < 1e-5);
    let decoded = vae.decode(&z).unwrap();
    assert!(crate::test_util::max_abs_diff(&dec, &decoded) < 1e-5);
}

/// The official shapes (stage-1 decode at 480×832, refinement encode and decode at
/// 704×1280, and the 161-frame job) keep every kernel within one 32-bit launch.
#[test]
fn plan_at_official_sizes_fits_one_launch() {
    let cfg = VaeConfig::default();
    let cases = [
        (VaePass::Decode, 93, 480, 832),
        (VaePass::Encode, 205, 704, 1280),
        (VaePass::Decode, 205, 704, 1280),
        (VaePass::Encode, 349, 704, 1280),
        (VaePass::Decode, 349, 704, 1280),
    ];
    for (pass, f, h, w) in cases {
        for band in [DEFAULT_BAND_ELEMS, crate::conv3d::CPU_BAND_ELEMS] {
            let plan = kernel_plan(&cfg, pass, 1, f, h, w, band).unwrap();
            let (what, n) = plan.largest();
            assert!(
                n <= crate::conv3d::MAX_KERNEL_ELEMS,
                "{pass:?} {f}×{h}×{w}: {what} has {n} elements"
            );
            for c in &plan.convs {
                let one_row = c.frames_per_group == 1 && c.rows_per_band == 1;
                assert!(c.im2col_elems <= band || one_row, "{}", c.layer);
            }
        }
    }
    // The unbanded im2col of the last decoder conv was ~9.3e9 elements.
    let plan = kernel_plan(&cfg, VaePass::Decode, 1, 5, 704, 1280, usize::MAX).unwrap();
    assert!(plan.largest().1 > crate::conv3d::MAX_KERNEL_ELEMS);
}

/// Decode time of the full-width VAE (base_dim 96) on 2 latent frames (5 video
/// frames) of 64×64 pixels, one warm-up then `VAE_REPS` (default 3) timed runs, same
/// work as `../shared/bench/pytorch-reference/py_vae.py`:
/// `cargo test -p longcat-model --release vae_decode_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn vae_decode_timing() {
    let dev = Device::Cpu;
    let mut vae = random_vae(&VaeConfig::default(), &dev);
    if let Some(band) = std::env::var("VAE_BAND").ok().and_then(|v| v.parse().ok()) {
        vae.set_band_elems(band);
    }
    let z = Tensor::randn(0f32, 1.0, (1, 16, 2, 8, 8), &dev).unwrap();
    let reps: usize = std::env::var("VAE_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let video = vae.decode(&z).unwrap();
    assert_eq!(video.dims(), &[1, 3, 5, 64, 64]);
    let mut ms: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = std::time::Instant::now();
            vae.decode(&z).unwrap();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let all: Vec<String> = ms.iter().map(|v| format!("{v:.2}")).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "RESULT rust vae latent 2x8x8 band {} best_ms {:.2} median_ms {:.2} all_ms {}",
        vae.band_elems(),
        ms[0],
        ms[ms.len() / 2],
        all.join(",")
    );
}

/// Prints the computed rows of the docs/vae.md memory table:
/// `cargo test -p longcat-model vae_plan_table -- --ignored --nocapture`.
#[test]
#[ignore]
fn vae_plan_table() {
    let cfg = VaeConfig::default();
    let cases = [
        (VaePass::Decode, 93, 480, 832),
        (VaePass::Encode, 205, 704, 1280),
        (VaePass::Decode, 205, 704, 1280),
        (VaePass::Encode, 349, 704, 1280),
        (VaePass::Decode, 349, 704, 1280),
        (VaePass::Decode, 5, 128, 128),
        (VaePass::Decode, 5, 256, 256),
        (VaePass::Encode, 5, 256, 256),
    ];
    let gib = |e: usize, bytes: usize| (e * bytes) as f64 / (1u64 << 30) as f64;
    for (pass, f, h, w) in cases {
        for band in [usize::MAX, DEFAULT_BAND_ELEMS, 1 << 20] {
            let plan = kernel_plan(&cfg, pass, 1, f, h, w, band).unwrap();
            let (what, n) = plan.largest();
            let peak = plan.peak_activation_elems();
            let band = if band == usize::MAX {
                "unbanded".to_string()
            } else {
                format!("2^{}", band.trailing_zeros())
            };
            println!(
                "| {pass:?} {f}×{h}×{w} | {band} | {n:.3e} ({what}) | {:.2} | {:.2} |",
                gib(peak, 2),
                gib(peak, 4)
            );
        }
    }
}

/// Prints the tiled rows of the docs/vae.md memory table (GPU band budget, streaming decode):
/// `cargo test -p longcat-model vae_tiled_plan_table -- --ignored --nocapture`.
#[test]
#[ignore]
fn vae_tiled_plan_table() {
    let cfg = VaeConfig::default();
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    for (pass, f, h, w) in [
        (VaePass::Decode, 93, 480, 832),
        (VaePass::Encode, 205, 704, 1280),
        (VaePass::Decode, 205, 704, 1280),
    ] {
        for tiling in [None, VaeTiling::new(32, 8).ok(), VaeTiling::new(16, 4).ok()] {
            let mut plan =
                kernel_plan_tiled(&cfg, pass, 1, f, h, w, DEFAULT_BAND_ELEMS, tiling).unwrap();
            // decode_streaming (the pipeline's path) never concatenates the video.
            plan.ops.retain(|o| o.what != "decode output concatenation");
            let tiles = tiling.map_or(1, |t| t.tiles(h / 8, w / 8).len());
            let (what, n) = plan.largest();
            println!(
                "| {pass:?} {f}×{h}×{w} | {} | {tiles} | {n:.3e} ({what}) | {:.2} | {:.2} | {:.2} | {:.2} |",
                tiling.map_or("none".into(), |t| t.to_string()),
                gib(plan.cache_elems * 2),
                gib(plan.accumulator_elems * 4),
                gib(plan.peak_bytes(2)),
                gib(plan.peak_bytes(4)),
            );
        }
    }
}

/// Peak RSS of one pass of the full-width VAE at a reduced size, for docs/vae.md:
/// `VAE_PROBE=decode,FRAMES,H,W[,BAND] cargo test -p longcat-model --release
/// vae_memory_probe -- --ignored --nocapture` (one pass per process).
#[test]
#[ignore]
fn vae_memory_probe() {
    fn rss_kib(field: &str) -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
    let probe = std::env::var("VAE_PROBE").unwrap_or_else(|_| "decode,5,64,64".into());
    let f: Vec<&str> = probe.split(',').collect();
    let num = |i: usize| f[i].parse::<usize>().unwrap();
    let (frames, h, w) = (num(1), num(2), num(3));
    let band = f
        .get(4)
        .map_or(crate::conv3d::CPU_BAND_ELEMS, |v| v.parse().unwrap());
    let dev = Device::Cpu;
    let cfg = VaeConfig::default();
    let mut vae = random_vae(&cfg, &dev);
    vae.set_band_elems(band);
    let pass = if f[0] == "encode" {
        VaePass::Encode
    } else {
        VaePass::Decode
    };
    let plan = kernel_plan(&cfg, pass, 1, frames, h, w, band).unwrap();
    let input = match pass {
        VaePass::Encode => Tensor::randn(0f32, 0.5, (1, 3, frames, h, w), &dev).unwrap(),
        VaePass::Decode => {
            let t = (frames - 1).div_ceil(4) + 1;
            Tensor::randn(0f32, 1.0, (1, 16, t, h / 8, w / 8), &dev).unwrap()
        }
    };
    let base = rss_kib("VmRSS:");
    let start = std::time::Instant::now();
    match pass {
        VaePass::Encode => drop(vae.encode(&input).unwrap()),
        VaePass::Decode => vae.decode_streaming(&input, |_| Ok(())).unwrap(),
    }
    let secs = start.elapsed().as_secs_f64();
    let peak = rss_kib("VmHWM:");
    println!(
        "PROBE {probe} band {band}: rss before {:.0} MiB, peak {:.0} MiB, peak − before \
         {:.0} MiB; planned activations {:.0} MiB (f32); largest kernel {:?}; {secs:.1} s",
        base as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak - base) as f64 / 1024.0,
        plan.peak_activation_elems() as f64 * 4.0 / (1 << 20) as f64,
        plan.largest()
    );
}

fn stats_of(got: &Tensor, want: &Tensor) -> (f32, f32, f32) {
    let d = (got - want).unwrap().abs().unwrap();
    let max = d
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let mean = d.mean_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = want
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    (max, mean, scale)
}

/// Standard normal samples of `shape`, deterministic in `seed`.
fn normal(seed: u64, shape: &[usize]) -> Tensor {
    let vb = crate::random::random_var_builder(seed, DType::F32, &Device::Cpu);
    let t = vb.get(shape, "x").unwrap();
    let fan_in: usize = shape[1..].iter().product();
    (t * (fan_in as f64).sqrt()).unwrap()
}

/// [`random_vae`] made deterministic in `seed`: weights std 0.05, gammas near 1. Its
/// mid-block attention is weak, so a tile's error stays near its borders.
fn seeded_vae(cfg: &VaeConfig, seed: u64) -> WanVae {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    WanVae::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    let draw = crate::random::random_var_builder(seed, DType::F32, &dev);
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let dims = var.dims().to_vec();
        let t = draw.get(dims.as_slice(), name).unwrap();
        let value = if name.ends_with("gamma") {
            t
        } else if dims.len() <= 1 {
            (t * 2.5).unwrap()
        } else {
            let fan_in: usize = dims[1..].iter().product();
            (t * (0.05 * (fan_in as f64).sqrt())).unwrap()
        };
        var.set(&value).unwrap();
    }
    WanVae::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap()
}

fn tiled(vae: &WanVae, tile: usize, overlap: usize) -> WanVae {
    let mut v = vae.clone();
    v.set_tiling(Some(VaeTiling::new(tile, overlap).unwrap()));
    v
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// One tile covering the whole (odd-sized) frame gives the untiled encode and decode bit
/// for bit, through the blend path.
#[test]
fn tiling_one_tile_is_bit_exact() {
    let vae = seeded_vae(&tiny(), 3);
    let z = normal(5, &[1, 16, 3, 5, 7]);
    let want = vae.decode(&z).unwrap();
    for (t, o) in [(7, 3), (64, 0)] {
        let got = tiled(&vae, t, o).decode(&z).unwrap();
        assert_eq!(got.dims(), want.dims());
        assert_eq!(values(&got), values(&want), "tile {t},{o}");
    }
    let video = (normal(6, &[1, 3, 5, 40, 56]) * 0.5).unwrap();
    let want = vae.encode(&video).unwrap();
    let got = tiled(&vae, 7, 2).encode(&video).unwrap();
    assert_eq!(values(&got.mean), values(&want.mean));
    assert_eq!(values(&got.logvar), values(&want.logvar));
}

/// Small tiles: the VAE's receptive field (and its per-frame mid-block attention) crosses
/// tile borders, so tiles cannot equal the untiled pass; with the linear ramps the error is
/// small and sits in the overlaps. Measured on this VAE (mean / max abs error, output mean
/// magnitude ~0.11): tile 28 overlap 16 along one axis 0.0075 / 0.18 (W), 0.0065 / 0.18 (H);
/// 2D tile 14 overlap 8 on an odd 21×23 frame 0.034 / 0.56. Without the ramps (plain
/// averaging) the means are 0.018, 0.015, 0.053; with the tiles after the first moved by one
/// latent pixel 0.068 and 0.082. The bounds sit between.
#[test]
fn tiled_decode_is_close_to_untiled() {
    let vae = seeded_vae(&tiny(), 3);
    for (shape, t, o, mean_bound, max_bound) in [
        ([1, 16, 2, 4, 40], 28, 16, 0.01, 0.25),
        ([1, 16, 2, 40, 4], 28, 16, 0.01, 0.25),
        ([1, 16, 2, 21, 23], 14, 8, 0.04, 1.0),
    ] {
        let z = normal(5, &shape);
        let want = vae.decode(&z).unwrap();
        let tv = tiled(&vae, t, o);
        assert!(tv.tiling().unwrap().tiles(shape[3], shape[4]).len() > 1);
        let mut sizes = Vec::new();
        let mut chunks = Vec::new();
        tv.decode_streaming(&z, |c| {
            sizes.push(c.dim(2)?);
            chunks.push(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes, [1, 4]);
        let got = Tensor::cat(&chunks, 2).unwrap();
        let (max, mean, _) = stats_of(&got, &want);
        assert!(
            mean <= mean_bound && max <= max_bound,
            "{shape:?} tile {t},{o}: mean {mean} max {max}"
        );
    }
}

/// As [`tiled_decode_is_close_to_untiled`] for encode (latent mean). Measured: tile 28
/// overlap 16 along W 0.0014 / 0.037, 2D tile 14 overlap 8 on 168×184 pixels 0.0093 / 0.094;
/// without the ramps 0.0047 / 0.12 and 0.021 / 0.26.
#[test]
fn tiled_encode_is_close_to_untiled() {
    let vae = seeded_vae(&tiny(), 3);
    for (shape, t, o, mean_bound, max_bound) in [
        ([1, 3, 5, 32, 320], 28, 16, 0.002, 0.06),
        ([1, 3, 5, 168, 184], 14, 8, 0.012, 0.2),
    ] {
        let video = (normal(5, &shape) * 0.5).unwrap();
        let want = vae.encode(&video).unwrap();
        let got = tiled(&vae, t, o).encode(&video).unwrap();
        assert_eq!(got.mean.dims(), want.mean.dims());
        let (max, mean, _) = stats_of(&got.mean, &want.mean);
        assert!(
            mean <= mean_bound && max <= max_bound,
            "{shape:?} tile {t},{o}: mean {mean} max {max}"
        );
    }
}

/// The tiled plan lists exactly the convolution calls of a tiled run, tile by tile.
#[test]
fn tiled_plan_matches_run() {
    let cfg = tiny();
    let vae = tiled(&seeded_vae(&cfg, 3), 2, 1);
    let video = (normal(5, &[1, 3, 9, 16, 24]) * 0.5).unwrap();
    let z = normal(6, &[1, 16, 3, 2, 3]);
    let tiling = vae.tiling();
    let band = vae.band_elems();
    let (_, enc) = vae.encode_traced(&video).unwrap();
    let plan = kernel_plan_tiled(&cfg, VaePass::Encode, 1, 9, 16, 24, band, tiling).unwrap();
    assert_eq!(enc, plan.convs);
    let (_, dec) = vae.decode_traced(&z).unwrap();
    let plan = kernel_plan_tiled(&cfg, VaePass::Decode, 1, 9, 16, 24, band, tiling).unwrap();
    assert_eq!(dec, plan.convs);
    let untiled = kernel_plan(&cfg, VaePass::Decode, 1, 9, 16, 24, band).unwrap();
    assert_eq!(plan.convs.len(), 2 * untiled.convs.len());
}

/// Tiled, the working set at the official sizes is the tile's: the causal caches and the
/// largest convolution equal those of one tile-sized frame; only the f32 accumulators
/// grow with the frame.
#[test]
fn tiled_plan_is_bounded_by_the_tile() {
    let cfg = VaeConfig::default();
    let tiling = VaeTiling::new(32, 8).ok();
    for (pass, f, h, w) in [
        (VaePass::Decode, 93, 480, 832),
        (VaePass::Encode, 205, 704, 1280),
        (VaePass::Decode, 205, 704, 1280),
    ] {
        let band = DEFAULT_BAND_ELEMS;
        let plan = kernel_plan_tiled(&cfg, pass, 1, f, h, w, band, tiling).unwrap();
        let one = kernel_plan(&cfg, pass, 1, f, 256, 256, band).unwrap();
        let whole = kernel_plan(&cfg, pass, 1, f, h, w, band).unwrap();
        let conv = |p: &VaePlan| p.convs.iter().map(|c| c.largest_kernel_elems).max();
        assert_eq!(plan.cache_elems, one.cache_elems, "{pass:?} {h}×{w}");
        assert_eq!(conv(&plan), conv(&one));
        assert!(plan.peak_bytes(2) < whole.peak_bytes(2) / 2);
        assert!(plan.largest().1 <= crate::conv3d::MAX_KERNEL_ELEMS);
    }
}
