//! The adapters on tiny random networks.

use candle_core::{DType, Device, Tensor};
use longcat_model::dit::{DitConfig, LongCatDit};
use longcat_model::lora::{LoraLayer, LoraWeights};
use longcat_model::random::random_var_builder;
use longcat_model::test_util::max_abs_diff;
use longcat_model::tokenizer::{tiny_tokenizer_json, PromptTokenizer};
use longcat_model::umt5::{Umt5Config, Umt5Encoder};
use longcat_model::vae::{VaeConfig, WanVae};

use super::*;

/// A umT5-like `tokenizer.json`: `<pad>`=0, `</s>`=1, `<unk>`=2, then `pieces`.
fn prompt_encoder(max_length: usize) -> Umt5PromptEncoder {
    let dev = Device::Cpu;
    let dir = std::env::temp_dir().join(format!("longcat-models-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tiny_tokenizer_json(&["▁a", "▁cat", "▁red", "▁ball"])).unwrap();
    let tokenizer = PromptTokenizer::from_file(&path, max_length).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let cfg: Umt5Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 7, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2,
        "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
        "layer_norm_epsilon": 1e-6
    }))
    .unwrap();
    let encoder = Umt5Encoder::new(&cfg, random_var_builder(1, DType::F32, &dev)).unwrap();
    Umt5PromptEncoder::new(encoder, tokenizer, dev)
}

#[test]
fn prompt_encoder_pads_to_fixed_length() {
    let enc = prompt_encoder(6);
    let text = enc.encode_prompt("a red cat").unwrap();
    assert_eq!(text.embeds.dims(), &[1, 1, 6, 16]);
    assert_eq!(text.mask.dtype(), DType::I64);
    // Three pieces and `</s>`, then padding.
    assert_eq!(
        text.mask.to_vec2::<i64>().unwrap(),
        vec![vec![1, 1, 1, 1, 0, 0]]
    );
    // Padding positions are encoded too (not zeroed), as the official pipeline hands them on.
    let pad = text.embeds.narrow(2, 5, 1).unwrap();
    assert!(
        pad.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
    let other = enc.encode_prompt("a ball").unwrap();
    assert!(max_abs_diff(&text.embeds, &other.embeds) > 0.0);
}

fn tiny_vae() -> WanVaeCodec {
    let cfg = VaeConfig {
        base_dim: 4,
        ..VaeConfig::default()
    };
    let vae = WanVae::new(&cfg, random_var_builder(2, DType::F32, &Device::Cpu)).unwrap();
    WanVaeCodec::new(vae)
}

#[test]
fn vae_codec_shapes_and_streaming_decode() {
    let vae = tiny_vae();
    assert_eq!((vae.scale_temporal(), vae.scale_spatial()), (4, 8));
    let video = Tensor::randn(0f32, 0.5, (1, 3, 5, 16, 16), &Device::Cpu).unwrap();
    let post = vae.encode(&video).unwrap();
    assert_eq!(post.mean.dims(), &[1, 16, 2, 2, 2]);
    assert_eq!(post.logvar.dims(), &[1, 16, 2, 2, 2]);
    let whole = vae.decode(&post.mean).unwrap();
    assert_eq!(whole.dims(), &[1, 3, 5, 16, 16]);
    let mut chunks = Vec::new();
    vae.decode_chunks(&post.mean, &mut |c| {
        chunks.push(c);
        Ok(())
    })
    .unwrap();
    let sizes: Vec<usize> = chunks.iter().map(|c| c.dim(2).unwrap()).collect();
    assert_eq!(sizes, vec![1, 4]);
    let streamed = Tensor::cat(&chunks, 2).unwrap();
    assert_eq!(max_abs_diff(&whole, &streamed), 0.0);
    // A failing consumer stops decoding with its own error.
    let mut calls = 0;
    let err = vae
        .decode_chunks(&post.mean, &mut |_| {
            calls += 1;
            Err(PipelineError::Sink("disk full".into()))
        })
        .unwrap_err();
    assert!(matches!(err, PipelineError::Sink(m) if m == "disk full"));
    assert_eq!(calls, 1);
    let (mean, std) = vae.latent_stats();
    assert_eq!((mean.len(), std.len()), (16, 16));
}

fn tiny_dit() -> LongCatDit {
    let cfg: DitConfig = serde_json::from_value(serde_json::json!({
        "adaln_tembed_dim": 16, "caption_channels": 16, "depth": 2, "hidden_size": 32,
        "in_channels": 16, "out_channels": 16, "num_heads": 2, "mlp_ratio": 4,
        "patch_size": [1, 2, 2], "text_tokens_zero_pad": true,
        "bsa_params": {"sparsity": 0.5, "cdf_threshold": null,
                       "chunk_3d_shape_q": [1, 2, 2], "chunk_3d_shape_k": [1, 2, 2]}
    }))
    .unwrap();
    LongCatDit::random(cfg, 3, &Device::Cpu, DType::F32).unwrap()
}

fn lora(scale: f32) -> LoraWeights {
    let dev = Device::Cpu;
    let ramp = |r: usize, c: usize, s: f32| {
        let v: Vec<f32> = (0..r * c)
            .map(|k| s * (((k * 7) % 11) as f32 - 5.0))
            .collect();
        Tensor::from_vec(v, (r, c), &dev).unwrap()
    };
    let mut w = LoraWeights::default();
    w.layers.insert(
        "blocks.0.attn.qkv".into(),
        LoraLayer {
            down: ramp(6, 32, 0.02 * scale),
            ups: (0..3).map(|_| ramp(32, 2, 0.05)).collect(),
            alpha_scale: 0.5,
        },
    );
    w.layers.insert(
        "final_layer.linear".into(),
        LoraLayer {
            down: ramp(2, 32, 0.03 * scale),
            ups: vec![ramp(64, 2, 0.04)],
            alpha_scale: 0.5,
        },
    );
    w
}

fn dit_inputs(frames: usize) -> (Tensor, Tensor, TextConditioning) {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (1, 16, frames, 4, 4), &dev).unwrap();
    let mut t = vec![700f32; frames];
    t[0] = 0.0;
    let t = Tensor::from_vec(t, (1, frames), &dev).unwrap();
    let text = TextConditioning {
        embeds: Tensor::randn(0f32, 1.0, (1, 1, 4, 16), &dev).unwrap(),
        mask: Tensor::new(&[[1i64, 1, 1, 0]], &dev).unwrap(),
    };
    (x, t, text)
}

#[test]
fn denoiser_switches_loras_by_name_and_bsa() {
    let mut d = DitDenoiser::new(tiny_dit());
    let (x, t, text) = dit_inputs(2);
    let base = d.forward(&x, &t, &text, 1).unwrap();
    assert_eq!(base.dims(), x.dims());

    // Not registered: refused, and nothing stays active.
    let cfg_step = DenoiserMode {
        lora: Some(LoraKind::CfgStep),
        bsa: false,
    };
    assert!(d.set_mode(cfg_step).is_err());
    assert_eq!(
        max_abs_diff(&d.forward(&x, &t, &text, 1).unwrap(), &base),
        0.0
    );

    d.register_lora(LoraKind::CfgStep, lora(1.0)).unwrap();
    d.register_lora(LoraKind::Refinement, lora(-2.0)).unwrap();
    d.set_mode(cfg_step).unwrap();
    assert_eq!(
        d.dit().active_loras(),
        &[("cfg_step_lora".to_string(), 1.0)]
    );
    let with_cfg = d.forward(&x, &t, &text, 1).unwrap();
    assert!(max_abs_diff(&with_cfg, &base) > 1e-4);

    let refine = DenoiserMode {
        lora: Some(LoraKind::Refinement),
        bsa: false,
    };
    d.set_mode(refine).unwrap();
    assert_eq!(
        d.dit().active_loras(),
        &[("refinement_lora".to_string(), 1.0)]
    );
    let with_refine = d.forward(&x, &t, &text, 1).unwrap();
    assert!(max_abs_diff(&with_refine, &with_cfg) > 1e-4);

    // BSA on: the attention backend follows.
    d.set_mode(DenoiserMode {
        lora: Some(LoraKind::Refinement),
        bsa: true,
    })
    .unwrap();
    assert!(matches!(
        d.dit().attention_backend(),
        longcat_model::dit::SelfAttnBackend::BlockSparse(_)
    ));
    let (x4, t4, _) = dit_inputs(4);
    assert_eq!(d.forward(&x4, &t4, &text, 1).unwrap().dims(), x4.dims());

    // Back to the base model: bitwise the first output.
    d.set_mode(DenoiserMode::default()).unwrap();
    assert!(d.dit().active_loras().is_empty());
    assert!(matches!(
        d.dit().attention_backend(),
        longcat_model::dit::SelfAttnBackend::Dense
    ));
    assert_eq!(
        max_abs_diff(&d.forward(&x, &t, &text, 1).unwrap(), &base),
        0.0
    );
}

#[test]
fn denoiser_kv_cache_matches_in_batch_condition() {
    let d = DitDenoiser::new(tiny_dit());
    let (x, t, text) = dit_inputs(3);
    let full = d.forward(&x, &t, &text, 1).unwrap();
    let cache = d
        .cache_condition(&x.narrow(2, 0, 1).unwrap(), &text)
        .unwrap();
    // CFG-sized batch against a batch-1 cache.
    let noisy = x.narrow(2, 1, 2).unwrap();
    let noisy2 = Tensor::cat(&[&noisy, &noisy], 0).unwrap();
    let t2 = Tensor::cat(&[&t.narrow(1, 1, 2).unwrap(); 2], 0).unwrap();
    let text2 = TextConditioning::cfg_batch(&text, &text).unwrap();
    let cached = d.forward_cached(&noisy2, &t2, &text2, &cache).unwrap();
    let want = full.narrow(2, 1, 2).unwrap();
    assert!(max_abs_diff(&cached.narrow(0, 0, 1).unwrap(), &want) < 1e-4);
    assert!(max_abs_diff(&cached.narrow(0, 1, 1).unwrap(), &want) < 1e-4);
}

#[test]
fn bsa_without_params_is_refused() {
    let mut cfg = tiny_dit().config().clone();
    cfg.bsa_params = None;
    let dit = LongCatDit::random(cfg, 3, &Device::Cpu, DType::F32).unwrap();
    let mut d = DitDenoiser::new(dit);
    assert!(d
        .set_mode(DenoiserMode {
            lora: None,
            bsa: true
        })
        .is_err());
}
