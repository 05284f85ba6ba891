//! Checkpoint tests on a temporary directory assembled from the golden weight files.

use std::collections::HashMap;

use serde_json::Value;

use super::*;
use crate::umt5::Umt5Encoder;

/// The goldens, only ever from `LONGCAT_GOLDENS` (tests reach nothing else outside the
/// repository).
fn goldens_dir() -> PathBuf {
    std::env::var_os("LONGCAT_GOLDENS")
        .map(PathBuf::from)
        .expect("LONGCAT_GOLDENS must name the golden directory (scripts/test.sh sets it; default there: ../shared/goldens)")
}

fn sidecar(stem: &str) -> Value {
    read_json(&goldens_dir().join(format!("{stem}.json"))).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn load_golden(stem: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        goldens_dir().join(format!("{stem}.safetensors")),
        &Device::Cpu,
    )
    .unwrap()
}

/// A complete checkpoint: the DiT split into two shards with an index, the VAE and umT5 as
/// single files, configs from the golden sidecars, a tiny tokenizer.
fn assemble() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for c in Component::ALL {
        std::fs::create_dir(root.join(c.dir_name())).unwrap();
    }
    std::fs::create_dir(root.join("lora")).unwrap();

    let dit = load_golden("dit_weights");
    let mut names: Vec<&String> = dit.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [(1, first), (2, second)] {
        let file = format!("diffusion_pytorch_model-0000{shard}-of-00002.safetensors");
        let tensors: HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), dit[*n].clone()))
            .collect();
        candle_core::safetensors::save(&tensors, root.join("dit").join(&file)).unwrap();
        for n in part {
            weight_map.insert((*n).clone(), Value::String(file.clone()));
        }
    }
    write_json(
        &root.join("dit/diffusion_pytorch_model.safetensors.index.json"),
        &serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map}),
    );
    write_json(
        &root.join("dit/config.json"),
        &sidecar("dit_weights")["config"],
    );

    std::fs::copy(
        goldens_dir().join("vae_weights.safetensors"),
        root.join("vae/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    write_json(
        &root.join("vae/config.json"),
        &sidecar("vae_weights")["config"],
    );

    std::fs::copy(
        goldens_dir().join("umt5_weights.safetensors"),
        root.join("text_encoder/model.safetensors"),
    )
    .unwrap();
    write_json(
        &root.join("text_encoder/config.json"),
        &sidecar("umt5_weights")["config"],
    );

    write_json(
        &root.join("scheduler/scheduler_config.json"),
        &sidecar("scheduler")["meta"]["scheduler_config"],
    );
    std::fs::write(
        root.join("tokenizer/tokenizer.json"),
        crate::tokenizer::tiny_tokenizer_json(&["\u{2581}a"]),
    )
    .unwrap();
    tmp
}

/// Replaces the text encoder weights with `tensors`.
fn rewrite_text_encoder(root: &Path, tensors: &HashMap<String, Tensor>) {
    candle_core::safetensors::save(tensors, root.join("text_encoder/model.safetensors")).unwrap();
}

#[test]
fn assembled_checkpoint_builds_umt5_matching_the_golden() {
    let tmp = assemble();
    let ckpt = Checkpoint::open(tmp.path()).unwrap();
    let cfg = ckpt.text_encoder_config().unwrap();
    assert_eq!(cfg.d_model, 64);
    assert_eq!(ckpt.scheduler_config().unwrap().shift, 12.0);
    let tok = crate::tokenizer::PromptTokenizer::from_file(&ckpt.tokenizer_path(), 4).unwrap();
    assert_eq!(tok.max_length(), 4);

    let weights = ckpt.weights(Component::TextEncoder).unwrap();
    assert_eq!(weights.unused().len(), weights.names().count());
    let encoder = weights
        .build(DType::F32, &Device::Cpu, |vb| Umt5Encoder::new(&cfg, vb))
        .unwrap();
    assert!(weights.unused().is_empty(), "{:?}", weights.unused());
    let exact = ckpt.weights(Component::TextEncoder).unwrap();
    exact
        .build_exact(DType::F32, &Device::Cpu, |vb| Umt5Encoder::new(&cfg, vb))
        .unwrap();

    let golden = load_golden("umt5");
    let out = encoder
        .forward(&golden["input_ids"], &golden["attention_mask"])
        .unwrap();
    let diff = crate::test_util::max_abs_diff(&out, &golden["last_hidden_state"]);
    assert!(diff < 1e-4, "max abs diff {diff}");

    // The same weights build in bf16: conversion happens per tensor on request.
    let bf16 = ckpt.weights(Component::TextEncoder).unwrap();
    let vb = bf16.var_builder(DType::BF16, &Device::Cpu);
    let t = vb.get((320, 64), "shared.weight").unwrap();
    assert_eq!(t.dtype(), DType::BF16);
}

#[test]
fn sharded_dit_and_vae_resolve_every_tensor() {
    let tmp = assemble();
    let ckpt = Checkpoint::open(tmp.path()).unwrap();
    let files = ckpt.weight_files(Component::Dit).unwrap();
    assert_eq!(files.files.len(), 2);
    assert!(files.index.is_some());
    let dit_cfg: Value = ckpt.config(Component::Dit).unwrap();
    assert_eq!(dit_cfg["hidden_size"], 64);

    let reference = load_golden("dit_weights");
    let weights = ckpt.weights(Component::Dit).unwrap();
    let vb = weights.var_builder(DType::F32, &Device::Cpu);
    for (name, want) in &reference {
        let got = vb.get(want.dims(), name).unwrap();
        let same = got
            .eq(want)
            .unwrap()
            .flatten_all()
            .unwrap()
            .min(0)
            .unwrap()
            .to_scalar::<u8>()
            .unwrap();
        assert_eq!(same, 1, "{name} differs");
        assert!(weights.file_of(name).is_some());
    }
    assert!(weights.unused().is_empty());

    let vae = ckpt.weights(Component::Vae).unwrap();
    assert_eq!(vae.names().count(), load_golden("vae_weights").len());
    assert!(ckpt.lora_path(LoraKind::CfgStep).is_err());
}

#[test]
fn extra_tensors_are_reported() {
    let tmp = assemble();
    let mut tensors = load_golden("umt5_weights");
    tensors.insert(
        "encoder.unused_extra.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    rewrite_text_encoder(tmp.path(), &tensors);
    let ckpt = Checkpoint::open(tmp.path()).unwrap();
    let cfg = ckpt.text_encoder_config().unwrap();
    let weights = ckpt.weights(Component::TextEncoder).unwrap();
    weights
        .build(DType::F32, &Device::Cpu, |vb| Umt5Encoder::new(&cfg, vb))
        .unwrap();
    assert_eq!(
        weights.unused(),
        vec!["encoder.unused_extra.weight".to_string()]
    );
    let fresh = ckpt.weights(Component::TextEncoder).unwrap();
    match fresh.build_exact(DType::F32, &Device::Cpu, |vb| Umt5Encoder::new(&cfg, vb)) {
        Err(ModelError::UnusedTensors { file, tensors }) => {
            assert!(file.contains("text_encoder"), "{file}");
            assert_eq!(tensors, vec!["encoder.unused_extra.weight".to_string()]);
        }
        other => panic!("expected UnusedTensors, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn missing_tensor_names_tensor_and_file() {
    let tmp = assemble();
    let mut tensors = load_golden("umt5_weights");
    tensors.remove("encoder.final_layer_norm.weight").unwrap();
    rewrite_text_encoder(tmp.path(), &tensors);
    let ckpt = Checkpoint::open(tmp.path()).unwrap();
    let cfg = ckpt.text_encoder_config().unwrap();
    let weights = ckpt.weights(Component::TextEncoder).unwrap();
    let err = weights
        .build(DType::F32, &Device::Cpu, |vb| Umt5Encoder::new(&cfg, vb))
        .unwrap_err();
    match &err {
        ModelError::MissingTensor { tensor, file } => {
            assert_eq!(tensor, "encoder.final_layer_norm.weight");
            assert!(file.contains("text_encoder/model.safetensors"), "{file}");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn wrong_shape_names_tensor_file_and_shapes() {
    let tmp = assemble();
    let mut tensors = load_golden("umt5_weights");
    tensors.insert(
        "encoder.block.1.layer.0.SelfAttention.q.weight".into(),
        Tensor::zeros((64, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    rewrite_text_encoder(tmp.path(), &tensors);
    let ckpt = Checkpoint::open(tmp.path()).unwrap();
    let cfg = ckpt.text_encoder_config().unwrap();
    let weights = ckpt.weights(Component::TextEncoder).unwrap();
    let err = weights
        .build(DType::F32, &Device::Cpu, |vb| Umt5Encoder::new(&cfg, vb))
        .unwrap_err();
    match &err {
        ModelError::ShapeMismatch {
            tensor,
            file,
            expected,
            actual,
        } => {
            assert_eq!(tensor, "encoder.block.1.layer.0.SelfAttention.q.weight");
            assert!(file.ends_with("text_encoder/model.safetensors"), "{file}");
            assert_eq!(expected, &[64, 64]);
            assert_eq!(actual, &[64, 32]);
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn index_naming_the_wrong_shard_is_refused() {
    let tmp = assemble();
    let index_path = tmp
        .path()
        .join("dit/diffusion_pytorch_model.safetensors.index.json");
    let mut index: Value = read_json(&index_path).unwrap();
    let map = index["weight_map"].as_object_mut().unwrap();
    let (name, shard) = map
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let other = if shard.as_str().unwrap().contains("00001") {
        "diffusion_pytorch_model-00002-of-00002.safetensors"
    } else {
        "diffusion_pytorch_model-00001-of-00002.safetensors"
    };
    map.insert(name.clone(), Value::String(other.into()));
    write_json(&index_path, &index);
    let ckpt = Checkpoint::open(tmp.path()).unwrap();
    let err = ckpt.weights(Component::Dit).unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
    assert!(err.to_string().contains(other), "{err}");
}

#[test]
fn directories_that_are_not_checkpoints_are_refused() {
    let empty = tempfile::tempdir().unwrap();
    let err = Checkpoint::open(empty.path()).unwrap_err();
    assert!(matches!(err, ModelError::NotACheckpoint { .. }));
    assert!(err.to_string().contains("expected"), "{err}");

    let file = empty.path().join("model.safetensors");
    std::fs::write(&file, b"x").unwrap();
    let err = Checkpoint::open(&file).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");

    let tmp = assemble();
    std::fs::remove_dir_all(tmp.path().join("vae")).unwrap();
    std::fs::remove_file(tmp.path().join("scheduler/scheduler_config.json")).unwrap();
    let err = Checkpoint::open(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("missing folder vae/"), "{err}");
    assert!(err.contains("scheduler/scheduler_config.json"), "{err}");
}
