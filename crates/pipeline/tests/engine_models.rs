//! The engine end to end over the real network adapters of `models.rs` (umT5 + tokenizer,
//! Wan VAE, LongCat DiT with both LoRAs and BSA) on tiny random weights: frame counts and
//! sizes, LoRA/BSA switching per stage, KV-cached continuation with CFG, determinism.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use longcat_model::dit::{DitConfig, LongCatDit};
use longcat_model::lora::{LoraLayer, LoraWeights};
use longcat_model::random::random_var_builder;
use longcat_model::tokenizer::{tiny_tokenizer_json, PromptTokenizer};
use longcat_model::umt5::{Umt5Config, Umt5Encoder};
use longcat_model::vae::{VaeConfig, WanVae};
use longcat_pipeline::components::LoraKind;
use longcat_pipeline::engine::{Engine, EngineConfig, Stage1Mode};
use longcat_pipeline::models::{DitDenoiser, Umt5PromptEncoder, WanVaeCodec};
use longcat_pipeline::{
    Acceleration, App, AspectRatio, CancelToken, GenerationError, GenerationRequest,
    GenerationSink, Progress, RgbImage, Stage, VideoFrame,
};

/// A umT5-like `tokenizer.json`: `<pad>`=0, `</s>`=1, `<unk>`=2, then `pieces`.
fn lora(dit: &DitConfig, seed: usize, with_adaln: bool) -> LoraWeights {
    let c = dit.hidden_size;
    let m = |r: usize, k: usize| {
        let v: Vec<f32> = (0..r * k)
            .map(|i| 0.02 * (((i * 7 + seed * 3) % 11) as f32 - 5.0))
            .collect();
        Tensor::from_vec(v, (r, k), &Device::Cpu).unwrap()
    };
    let mut w = LoraWeights::default();
    for b in 0..dit.depth {
        w.layers.insert(
            format!("blocks.{b}.attn.qkv"),
            LoraLayer {
                down: m(6, c),
                ups: (0..3).map(|_| m(c, 2)).collect(),
                alpha_scale: 0.5,
            },
        );
        if with_adaln {
            w.layers.insert(
                format!("blocks.{b}.ffn.w2"),
                LoraLayer {
                    down: m(2, dit.ffn_hidden()),
                    ups: vec![m(c, 2)],
                    alpha_scale: 0.5,
                },
            );
        }
    }
    w
}

type TinyEngine = Engine<Umt5PromptEncoder, WanVaeCodec, DitDenoiser>;

fn engine(regular_mode: Stage1Mode) -> TinyEngine {
    let dev = Device::Cpu;
    let dir = std::env::temp_dir().join(format!("longcat-engine-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("tokenizer-{regular_mode:?}.json"));
    std::fs::write(
        &path,
        tiny_tokenizer_json(&["▁a", "▁cat", "▁red", "▁ball", "▁blurry"]),
    )
    .unwrap();
    let tokenizer = PromptTokenizer::from_file(&path, 8).unwrap();
    let _ = std::fs::remove_file(&path);
    let t5: Umt5Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 8, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2,
        "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
        "layer_norm_epsilon": 1e-6
    }))
    .unwrap();
    let text = Umt5PromptEncoder::new(
        Umt5Encoder::new(&t5, random_var_builder(11, DType::F32, &dev)).unwrap(),
        tokenizer,
        dev.clone(),
    );
    let vae_cfg = VaeConfig {
        base_dim: 4,
        ..VaeConfig::default()
    };
    let vae =
        WanVaeCodec::new(WanVae::new(&vae_cfg, random_var_builder(12, DType::F32, &dev)).unwrap());
    let dit_cfg: DitConfig = serde_json::from_value(serde_json::json!({
        "adaln_tembed_dim": 16, "caption_channels": 16, "depth": 2, "hidden_size": 32,
        "in_channels": 16, "out_channels": 16, "num_heads": 2, "mlp_ratio": 4,
        "patch_size": [1, 2, 2], "text_tokens_zero_pad": true,
        "bsa_params": {"sparsity": 0.5, "cdf_threshold": null,
                       "chunk_3d_shape_q": [4, 2, 2], "chunk_3d_shape_k": [4, 2, 2]}
    }))
    .unwrap();
    let mut dit =
        DitDenoiser::new(LongCatDit::random(dit_cfg.clone(), 13, &dev, DType::F32).unwrap());
    dit.register_lora(LoraKind::CfgStep, lora(&dit_cfg, 1, false))
        .unwrap();
    dit.register_lora(LoraKind::Refinement, lora(&dit_cfg, 2, true))
        .unwrap();
    let config = EngineConfig {
        name: "tiny adapters".into(),
        stage1_buckets: vec![(1.0, [16, 16])],
        refine_buckets: vec![(1.0, [32, 32])],
        regular_mode,
        distill_steps: 2,
        ..EngineConfig::default()
    };
    Engine {
        text,
        vae,
        dit,
        config,
        device: dev,
    }
}

#[derive(Default)]
struct Collect {
    frames: Vec<VideoFrame>,
    steps: BTreeMap<(u32, String), u32>,
    zero_etas: usize,
}

impl GenerationSink for Collect {
    fn progress(&mut self, p: &Progress) {
        if matches!(p.stage, Stage::Base | Stage::Refine) {
            let e = self
                .steps
                .entry((p.segment, format!("{:?}", p.stage)))
                .or_default();
            *e = (*e).max(p.step);
            if p.eta == Some(std::time::Duration::ZERO) {
                self.zero_etas += 1;
            }
        }
    }
    fn log(&mut self, _message: &str) {}
    fn frame(&mut self, frame: VideoFrame) -> Result<(), GenerationError> {
        self.frames.push(frame);
        Ok(())
    }
}

fn request(num_frames: u32, seed: u64, acceleration: Acceleration) -> GenerationRequest {
    let (w, h) = (40u32, 30u32);
    let data = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
    GenerationRequest {
        app: App::DEFAULT,
        image: Some(RgbImage {
            width: w,
            height: h,
            data,
        }),
        aspect_ratio: AspectRatio::default(),
        prompt: "a red cat".into(),
        negative_prompt: "blurry".into(),
        num_frames,
        num_inference_steps: 2,
        num_refine_inference_steps: 4,
        guidance_scale: 4.0,
        seed,
        acceleration,
    }
}

fn run(engine: &mut TinyEngine, req: &GenerationRequest) -> Collect {
    let mut sink = Collect::default();
    let summary = engine.run(req, &mut sink, &CancelToken::new()).unwrap();
    assert_eq!(summary.frames as usize, sink.frames.len());
    assert_eq!((summary.width, summary.height), (32, 32));
    sink
}

#[test]
fn distilled_short_video_is_deterministic() {
    let mut e = engine(Stage1Mode::Distilled);
    let a = run(&mut e, &request(17, 5, Acceleration::Regular));
    assert_eq!(a.frames.len(), 34);
    for (i, f) in a.frames.iter().enumerate() {
        assert_eq!(f.index as usize, i);
        assert_eq!((f.width, f.height, f.data.len()), (32, 32, 32 * 32 * 3));
    }
    // Two distilled steps, then the refinement steps below t_thresh.
    assert_eq!(a.steps[&(0, "Base".into())], 2);
    assert_eq!(a.steps[&(0, "Refine".into())], 2);
    let b = run(&mut e, &request(17, 5, Acceleration::Regular));
    assert!(a
        .frames
        .iter()
        .zip(&b.frames)
        .all(|(x, y)| x.data == y.data));
    let c = run(&mut e, &request(17, 6, Acceleration::Regular));
    assert!(a
        .frames
        .iter()
        .zip(&c.frames)
        .any(|(x, y)| x.data != y.data));
}

#[test]
fn full_cfg_long_video_uses_kv_cached_continuation() {
    let mut e = engine(Stage1Mode::Full);
    // 101 stage-1 frames: 93 + one continuation segment adding 8.
    let out = run(&mut e, &request(101, 9, Acceleration::None));
    assert_eq!(out.frames.len(), 202);
    assert!(out
        .frames
        .iter()
        .enumerate()
        .all(|(i, f)| f.index as usize == i && f.data.len() == 32 * 32 * 3));
    assert_eq!(out.steps[&(0, "Base".into())], 2);
    // The continuation runs the `enhance_hf` schedule: the step above 500, then ten more.
    assert_eq!(out.steps[&(1, "Base".into())], 11);
    for seg in 0..2 {
        assert_eq!(out.steps[&(seg, "Refine".into())], 2, "segment {seg}");
    }
    // The ETA planned exactly the steps that ran: it reaches zero at the last step only.
    assert_eq!(out.zero_etas, 1);
}
