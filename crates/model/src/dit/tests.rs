//! Property tests of the DiT on a tiny random model.

use crate::test_util::max_abs_diff;
use candle_core::{DType, Device, IndexOp, Tensor};

use super::{DitConfig, LongCatDit, TextInput};
use crate::lora::{LoraLayer, LoraMode, LoraWeights};

fn tiny_config() -> DitConfig {
    serde_json::from_value(serde_json::json!({
        "adaln_tembed_dim": 16, "caption_channels": 24, "depth": 2, "hidden_size": 32,
        "in_channels": 4, "out_channels": 4, "num_heads": 2, "mlp_ratio": 4,
        "patch_size": [1, 2, 2], "text_tokens_zero_pad": true,
        "bsa_params": {"sparsity": 0.5, "cdf_threshold": null,
                       "chunk_3d_shape_q": [1, 2, 2], "chunk_3d_shape_k": [1, 2, 2]}
    }))
    .unwrap()
}

struct Inputs {
    x: Tensor,
    t: Tensor,
    y: Tensor,
    mask: Tensor,
}

fn inputs(frames: usize) -> Inputs {
    let dev = Device::Cpu;
    let n = 4 * frames * 4 * 8;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let y: Vec<f32> = (0..5 * 24)
        .map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0)
        .collect();
    let mut t = vec![0f32; frames];
    for (i, v) in t.iter_mut().enumerate().skip(1) {
        *v = 500.0 + i as f32;
    }
    Inputs {
        x: Tensor::from_vec(x, (1, 4, frames, 4, 8), &dev).unwrap(),
        t: Tensor::from_vec(t, (1, frames), &dev).unwrap(),
        y: Tensor::from_vec(y, (1, 1, 5, 24), &dev).unwrap(),
        mask: Tensor::new(&[[1i64, 1, 1, 0, 0]], &dev).unwrap(),
    }
}

fn model(seed: u64) -> LongCatDit {
    LongCatDit::random(tiny_config(), seed, &Device::Cpu, DType::F32).unwrap()
}

#[test]
fn random_weights_are_deterministic_per_seed() {
    let i = inputs(2);
    let text = TextInput {
        states: &i.y,
        mask: Some(&i.mask),
    };
    let a = model(7).forward(&i.x, &i.t, text, 0).unwrap();
    let b = model(7).forward(&i.x, &i.t, text, 0).unwrap();
    let c = model(8).forward(&i.x, &i.t, text, 0).unwrap();
    assert_eq!(a.dims(), &[1, 4, 2, 4, 8]);
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert!(max_abs_diff(&a, &c) > 1e-3);
}

#[test]
fn kv_cache_forward_matches_full_forward() {
    let dit = model(3);
    let i = inputs(3);
    let text = TextInput {
        states: &i.y,
        mask: Some(&i.mask),
    };
    let full = dit.forward(&i.x, &i.t, text, 1).unwrap();
    let cache = dit.cache_condition(&i.x.i((.., .., ..1)).unwrap()).unwrap();
    let cached = dit
        .forward_cached(
            &i.x.i((.., .., 1..)).unwrap(),
            &i.t.i((.., 1..)).unwrap(),
            text,
            &cache,
        )
        .unwrap();
    assert!(max_abs_diff(&full.i((.., .., 1..)).unwrap(), &cached) < 1e-5);
}

#[test]
fn condition_frames_ignore_noise_and_text() {
    let dit = model(4);
    let i = inputs(2);
    let text = TextInput {
        states: &i.y,
        mask: Some(&i.mask),
    };
    let a = dit.forward(&i.x, &i.t, text, 1).unwrap();
    let y2 = (&i.y * 2.0).unwrap();
    let text2 = TextInput {
        states: &y2,
        mask: Some(&i.mask),
    };
    let b = dit.forward(&i.x, &i.t, text2, 1).unwrap();
    assert_eq!(
        max_abs_diff(&a.i((.., .., ..1)).unwrap(), &b.i((.., .., ..1)).unwrap()),
        0.0
    );
    assert!(max_abs_diff(&a.i((.., .., 1..)).unwrap(), &b.i((.., .., 1..)).unwrap()) > 1e-4);
}

fn fused_lora(dev: &Device) -> LoraWeights {
    let mut w = LoraWeights::default();
    let ramp = |r: usize, c: usize, s: f32| {
        let v: Vec<f32> = (0..r * c)
            .map(|k| s * (((k * 7) % 11) as f32 - 5.0))
            .collect();
        Tensor::from_vec(v, (r, c), dev).unwrap()
    };
    w.layers.insert(
        "blocks.0.attn.qkv".into(),
        LoraLayer {
            down: ramp(6, 32, 0.02),
            ups: (0..3).map(|_| ramp(32, 2, 0.05)).collect(),
            alpha_scale: 0.5,
        },
    );
    w.layers.insert(
        "final_layer.linear".into(),
        LoraLayer {
            down: ramp(2, 32, 0.03),
            ups: vec![ramp(16, 2, 0.04)],
            alpha_scale: 0.5,
        },
    );
    w
}

#[test]
fn lora_modes_agree_and_disable_restores() {
    let mut dit = model(5);
    let i = inputs(2);
    let text = TextInput {
        states: &i.y,
        mask: Some(&i.mask),
    };
    let base = dit.forward(&i.x, &i.t, text, 0).unwrap();
    dit.register_lora("a", fused_lora(&Device::Cpu)).unwrap();
    let loras = vec![("a".to_string(), 0.7)];
    dit.enable_loras(&loras, LoraMode::Unmerged).unwrap();
    let unmerged = dit.forward(&i.x, &i.t, text, 0).unwrap();
    dit.enable_loras(&loras, LoraMode::Merged).unwrap();
    let merged = dit.forward(&i.x, &i.t, text, 0).unwrap();
    dit.enable_loras(&loras, LoraMode::Fused).unwrap();
    let fused = dit.forward(&i.x, &i.t, text, 0).unwrap();
    dit.disable_loras().unwrap();
    let restored = dit.forward(&i.x, &i.t, text, 0).unwrap();
    assert!(max_abs_diff(&base, &unmerged) > 1e-3);
    assert!(max_abs_diff(&unmerged, &merged) < 1e-5);
    assert!(max_abs_diff(&unmerged, &fused) < 1e-5);
    assert_eq!(max_abs_diff(&base, &restored), 0.0);
    assert!(dit
        .enable_loras(&[("missing".to_string(), 1.0)], LoraMode::Unmerged)
        .is_err());
    assert!(dit.active_loras().is_empty());
}

#[test]
fn bsa_seam_is_only_used_on_multi_frame_latents() {
    let mut dit = model(6);
    let params = dit.config().bsa_params.clone().unwrap();
    let one = inputs(1);
    let text = TextInput {
        states: &one.y,
        mask: Some(&one.mask),
    };
    let dense = dit.forward(&one.x, &one.t, text, 0).unwrap();
    dit.enable_bsa(params);
    let sparse_single = dit.forward(&one.x, &one.t, text, 0).unwrap();
    assert_eq!(max_abs_diff(&dense, &sparse_single), 0.0);
    dit.disable_bsa();
    assert!(matches!(
        dit.attention_backend(),
        super::SelfAttnBackend::Dense
    ));
}

#[test]
fn bsa_with_zero_sparsity_equals_dense_and_records_masks() {
    let mut dit = model(9);
    let i = inputs(2);
    let text = TextInput {
        states: &i.y,
        mask: Some(&i.mask),
    };
    let dense = dit.forward(&i.x, &i.t, text, 1).unwrap();
    let mut params = dit.config().bsa_params.clone().unwrap();
    params.sparsity = Some(0.0);
    dit.enable_bsa(params.clone());
    let mut trace = super::DitTrace::default();
    let full = dit
        .forward_traced(&i.x, &i.t, text, 1, Some(&mut trace))
        .unwrap();
    assert!(max_abs_diff(&dense, &full) < 1e-5);
    let labels: Vec<&str> = trace.bsa_masks[0].iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["cond", "noise"]);
    let ones: f32 = trace.bsa_masks[0][1]
        .1
        .to_dtype(DType::F32)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(ones, 1.0);
    params.sparsity = Some(0.5);
    dit.enable_bsa(params);
    let sparse = dit.forward(&i.x, &i.t, text, 1).unwrap();
    assert!(max_abs_diff(&dense, &sparse) > 1e-4);
}

#[test]
fn from_dir_reads_config_and_weights() {
    let dir = std::env::temp_dir().join(format!("longcat_dit_dir_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = tiny_config();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    assert!(LongCatDit::from_dir(&dir, &Device::Cpu, DType::F32).is_err());

    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let built = LongCatDit::new(cfg.clone(), vb).unwrap();
    drop(built);
    for (k, var) in varmap.data().lock().unwrap().iter() {
        let r = Tensor::randn(0f32, 0.2, var.shape(), &Device::Cpu).unwrap();
        let r = if k.ends_with("norm.weight") {
            (r + 1.0).unwrap()
        } else {
            r
        };
        var.set(&r).unwrap();
    }
    varmap
        .save(dir.join("diffusion_pytorch_model.safetensors"))
        .unwrap();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let direct = LongCatDit::new(cfg, vb).unwrap();
    let loaded = LongCatDit::from_dir(&dir, &Device::Cpu, DType::F32).unwrap();
    let i = inputs(2);
    let text = TextInput {
        states: &i.y,
        mask: Some(&i.mask),
    };
    let a = direct.forward(&i.x, &i.t, text, 0).unwrap();
    let b = loaded.forward(&i.x, &i.t, text, 0).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert!(
        a.abs()
            .unwrap()
            .max_keepdim(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
}

#[test]
fn random_loras_fit_and_change_the_output() {
    use crate::lora::LoraKind;
    let dev = Device::Cpu;
    let cfg = tiny_config();
    let mut dit = model(3);
    let i = inputs(2);
    let text = TextInput {
        states: &i.y,
        mask: Some(&i.mask),
    };
    let base = dit.forward(&i.x, &i.t, text, 0).unwrap();
    for kind in [LoraKind::CfgStep, LoraKind::Refinement] {
        let w = super::random::random_lora(&cfg, kind, 4, 9, &dev, DType::F32).unwrap();
        let again = super::random::random_lora(&cfg, kind, 4, 9, &dev, DType::F32).unwrap();
        let expected = if kind == LoraKind::CfgStep { 7 } else { 8 } * cfg.depth
            + if kind == LoraKind::CfgStep { 0 } else { 2 };
        assert_eq!(w.layers.len(), expected);
        for (k, l) in &w.layers {
            let a = l.down.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = again.layers[k]
                .down
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(a, b, "{k} not deterministic");
        }
        dit.register_lora("x", w).unwrap();
        dit.enable_loras(&[("x".into(), 1.0)], LoraMode::Unmerged)
            .unwrap();
        let out = dit.forward(&i.x, &i.t, text, 0).unwrap();
        let diff = max_abs_diff(&out, &base);
        assert!(diff > 0.0, "{kind:?} LoRA changed nothing");
        dit.disable_loras().unwrap();
    }
}

/// Every linear weight of the DiT as raw bits (bf16 stored as u16).
fn weight_bits(dit: &mut LongCatDit) -> Vec<(String, Vec<u16>)> {
    dit.linears_mut()
        .into_iter()
        .map(|l| {
            let w = l.weight().flatten_all().unwrap();
            let bits = w
                .to_vec1::<half::bf16>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            (l.path.clone(), bits)
        })
        .collect()
}

/// A bf16 DiT memory-mapped from a safetensors file, as a real checkpoint is loaded.
fn mmapped_bf16_model(dir: &std::path::Path) -> LongCatDit {
    let cfg = tiny_config();
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    drop(LongCatDit::new(cfg.clone(), vb).unwrap());
    let mut tensors = std::collections::HashMap::new();
    for (k, var) in varmap.data().lock().unwrap().iter() {
        let r = Tensor::randn(0f32, 0.2, var.shape(), &Device::Cpu).unwrap();
        tensors.insert(k.clone(), r.to_dtype(DType::BF16).unwrap());
    }
    let path = dir.join("dit.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    LongCatDit::load(cfg, &[path], &Device::Cpu, DType::BF16).unwrap()
}

#[test]
fn merged_lora_keeps_no_copy_and_clear_restores_the_exact_weights() {
    use crate::lora::LoraKind;
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config();
    for (what, mut dit) in [
        ("mmapped bf16", mmapped_bf16_model(dir.path())),
        (
            "random bf16",
            LongCatDit::random(cfg.clone(), 4, &Device::Cpu, DType::BF16).unwrap(),
        ),
    ] {
        let before = weight_bits(&mut dit);
        let bytes = dit.linear_weight_bytes();
        let w =
            super::random::random_lora(&cfg, LoraKind::Refinement, 4, 2, &Device::Cpu, DType::BF16)
                .unwrap();
        dit.register_lora("r", w).unwrap();
        for round in 0..2 {
            dit.enable_loras(&[("r".into(), 1.0)], LoraMode::Merged)
                .unwrap();
            let merged = weight_bits(&mut dit);
            let changed = before.iter().zip(&merged).filter(|(a, b)| a != b).count();
            assert!(
                changed >= 16,
                "{what}: the merge changed only {changed} layers"
            );
            assert_eq!(
                dit.linear_weight_bytes(),
                bytes,
                "{what} round {round}: merged layers hold nothing besides their weights"
            );
            assert!(dit.linears_mut().iter().any(|l| l.is_merged()));
            dit.disable_loras().unwrap();
            assert!(dit.linears_mut().iter().all(|l| !l.is_merged()));
            assert_eq!(
                weight_bits(&mut dit),
                before,
                "{what} round {round}: clear restores every weight bit for bit"
            );
        }
    }
}

#[test]
fn rope_tables_are_cached_per_grid_across_forwards() {
    let dit = model(6);
    assert!(dit.cached_rope_grids().is_empty());
    let i = inputs(2);
    let text = TextInput {
        states: &i.y,
        mask: Some(&i.mask),
    };
    let a = dit.forward(&i.x, &i.t, text, 1).unwrap();
    assert_eq!(dit.cached_rope_grids(), vec![[2, 2, 4]]);
    let b = dit.forward(&i.x, &i.t, text, 1).unwrap();
    assert_eq!(
        dit.cached_rope_grids(),
        vec![[2, 2, 4]],
        "same grid, no new table"
    );
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    // With a cache of one condition frame the positions run over 1 + 2 frames.
    let cache = dit.cache_condition(&i.x.narrow(2, 0, 1).unwrap()).unwrap();
    assert_eq!(dit.cached_rope_grids(), vec![[1, 2, 4], [2, 2, 4]]);
    dit.forward_cached(&i.x, &i.t, text, &cache).unwrap();
    assert_eq!(
        dit.cached_rope_grids(),
        vec![[3, 2, 4], [1, 2, 4], [2, 2, 4]]
    );
}
