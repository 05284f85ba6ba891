//! `load_generator` over a checkpoint directory in the official layout (tiny networks saved
//! to safetensors): everything loads, and missing pieces are named.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use longcat_model::checkpoint::LoraKind;
use longcat_model::dit::random::random_lora;
use longcat_model::dit::LongCatDit;
use longcat_model::tokenizer::tiny_tokenizer_json;
use longcat_model::umt5::Umt5Encoder;
use longcat_model::vae::WanVae;
use longcat_pipeline::generator::{load_generator, GeneratorOptions};
use longcat_pipeline::{
    tiny, Acceleration, App, AspectRatio, CancelToken, GenerationError, GenerationRequest,
    GenerationSink, Progress, VideoFrame,
};

fn save_varmap(
    dir: &Path,
    file: &str,
    build: impl FnOnce(VarBuilder<'static>) -> longcat_model::Result<()>,
) {
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    varmap.save(dir.join(file)).unwrap();
}

fn write_lora(path: &Path, kind: LoraKind) {
    let cfg = tiny::dit_config().unwrap();
    let w = random_lora(&cfg, kind, 2, 1, &Device::Cpu, DType::F32).unwrap();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (module, layer) in &w.layers {
        let key = format!(
            "lora___lorahyphen___{}",
            module.replace('.', "___lorahyphen___")
        );
        tensors.insert(format!("{key}.lora_down.weight"), layer.down.clone());
        if layer.ups.len() == 1 {
            tensors.insert(format!("{key}.lora_up.weight"), layer.ups[0].clone());
        } else {
            for (j, up) in layer.ups.iter().enumerate() {
                tensors.insert(format!("{key}.lora_up.blocks.{j}.weight"), up.clone());
            }
        }
        tensors.insert(
            format!("{key}.alpha_scale"),
            Tensor::new(layer.alpha_scale as f32, &Device::Cpu).unwrap(),
        );
    }
    candle_core::safetensors::save(&tensors, path).unwrap();
}

fn write_checkpoint(root: &Path) {
    for d in [
        "dit",
        "vae",
        "text_encoder",
        "tokenizer",
        "scheduler",
        "lora",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let json = |p: &str, v: serde_json::Value| {
        std::fs::write(root.join(p), serde_json::to_string(&v).unwrap()).unwrap()
    };
    let dit_cfg = tiny::dit_config().unwrap();
    json("dit/config.json", serde_json::to_value(&dit_cfg).unwrap());
    save_varmap(
        &root.join("dit"),
        "diffusion_pytorch_model.safetensors",
        |vb| LongCatDit::new(dit_cfg.clone(), vb).map(drop),
    );
    let vae_cfg = tiny::vae_config();
    json("vae/config.json", serde_json::to_value(&vae_cfg).unwrap());
    save_varmap(
        &root.join("vae"),
        "diffusion_pytorch_model.safetensors",
        |vb| WanVae::new(&vae_cfg, vb).map(drop),
    );
    let te_cfg = tiny::text_encoder_config();
    json(
        "text_encoder/config.json",
        serde_json::to_value(&te_cfg).unwrap(),
    );
    save_varmap(&root.join("text_encoder"), "model.safetensors", |vb| {
        Umt5Encoder::new(&te_cfg, vb).map(drop)
    });
    let pieces = ["\u{2581}a", "\u{2581}cat"];
    std::fs::write(
        root.join("tokenizer/tokenizer.json"),
        tiny_tokenizer_json(&pieces),
    )
    .unwrap();
    json(
        "scheduler/scheduler_config.json",
        serde_json::json!({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 12.0}),
    );
    write_lora(
        &root.join("lora/refinement_lora.safetensors"),
        LoraKind::Refinement,
    );
    write_lora(
        &root.join("lora/cfg_step_lora.safetensors"),
        LoraKind::CfgStep,
    );
}

#[test]
fn loads_the_official_layout_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ckpt");
    write_checkpoint(&root);
    let opts = GeneratorOptions {
        weights_dir: Some(root.clone()),
        ..GeneratorOptions::default()
    };
    let generator = load_generator(&opts).unwrap();
    let info = generator.info();
    assert!(!info.smoke_test_model);
    assert!(info.name.contains("ckpt"), "{}", info.name);

    std::fs::remove_file(root.join("lora/refinement_lora.safetensors")).unwrap();
    let err = load_generator(&opts)
        .err()
        .expect("refinement LoRA is required")
        .to_string();
    assert!(err.contains("refinement_lora.safetensors"), "{err}");

    std::fs::remove_file(root.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let err = load_generator(&opts)
        .err()
        .expect("VAE weights are required")
        .to_string();
    assert!(err.contains("vae"), "{err}");
}

/// Counts frames and DiT steps.
#[derive(Default)]
struct Count {
    frames: u32,
    steps: u32,
}

impl GenerationSink for Count {
    fn progress(&mut self, p: &Progress) {
        self.steps += u32::from(p.step > 0);
    }
    fn log(&mut self, _: &str) {}
    fn frame(&mut self, _: VideoFrame) -> Result<(), GenerationError> {
        self.frames += 1;
        Ok(())
    }
}

/// Without `lora/cfg_step_lora.safetensors` the checkpoint still loads and serves the base
/// apps; a distilled app is refused as unavailable, naming the LoRA, before any step.
#[test]
fn distilled_apps_need_the_cfg_step_lora_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ckpt");
    write_checkpoint(&root);
    std::fs::remove_file(root.join("lora/cfg_step_lora.safetensors")).unwrap();
    let generator = load_generator(&GeneratorOptions {
        weights_dir: Some(root),
        ..GeneratorOptions::default()
    })
    .unwrap();
    let request = |id: &str| GenerationRequest {
        app: App::from_id(id).unwrap(),
        image: None,
        aspect_ratio: AspectRatio::Landscape,
        prompt: "a cat".into(),
        negative_prompt: String::new(),
        num_frames: 17,
        num_inference_steps: 2,
        num_refine_inference_steps: 8,
        guidance_scale: 1.0,
        seed: 1,
        acceleration: Acceleration::None,
    };
    let mut sink = Count::default();
    let err = generator
        .generate(
            &request("fal-ai/longcat-video/distilled/text-to-video/480p"),
            &mut sink,
            &CancelToken::new(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, GenerationError::Unavailable(m) if m.contains("cfg_step_lora")),
        "{err}"
    );
    assert_eq!((sink.frames, sink.steps), (0, 0));
    let mut sink = Count::default();
    generator
        .generate(
            &request("fal-ai/longcat-video/text-to-video/480p"),
            &mut sink,
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(sink.frames, 17);
}
