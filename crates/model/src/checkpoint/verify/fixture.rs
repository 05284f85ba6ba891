//! A full-size LongCat-Video checkpoint as sparse files, for tests and benchmarks of
//! [`super::check_checkpoint`].
//!
//! Every safetensors file gets a real header (official names, shapes, dtypes and sharding)
//! and is then extended with `set_len` to its full length, so the tensor bytes are a hole:
//! the files read as zeros and use no disk. The tensor lists come from the recording of our
//! own modules' requests ([`super::dit_requests`] and friends) at the official configs below;
//! sharding and dtypes follow the published checkpoint (`docs/checkpoint.md`): DiT in bf16
//! in 6 shards of at most 5 GB, umT5 in fp32 in 5 shards (`model-*-of-00005`), VAE in one
//! fp32 file, LoRAs of rank 128 in fp32 with `alpha_scale` 0.5.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use safetensors::Dtype;

use super::{dit_requests, text_encoder_requests, vae_requests, Requested};
use crate::dit::DitConfig;
use crate::umt5::Umt5Config;
use crate::vae::VaeConfig;
use crate::{ModelError, Result};

/// `dit/config.json` as published (spec §2.1).
pub const DIT_CONFIG: &str = r#"{
  "_class_name": "LongCatVideoTransformer3DModel",
  "_diffusers_version": "0.35.1",
  "adaln_tembed_dim": 512,
  "bsa_params": {
    "chunk_3d_shape_k": [4, 4, 4],
    "chunk_3d_shape_q": [4, 4, 4],
    "sparsity": 0.9375
  },
  "caption_channels": 4096,
  "cp_split_hw": null,
  "depth": 48,
  "enable_bsa": false,
  "enable_flashattn2": true,
  "enable_flashattn3": false,
  "enable_xformers": false,
  "frequency_embedding_size": 256,
  "hidden_size": 4096,
  "in_channels": 16,
  "mlp_ratio": 4,
  "num_heads": 32,
  "out_channels": 16,
  "patch_size": [1, 2, 2],
  "text_tokens_zero_pad": true
}
"#;

/// `vae/config.json` (diffusers `AutoencoderKLWan`, the Wan2.1 values; spec §5).
pub const VAE_CONFIG: &str = r#"{
  "_class_name": "AutoencoderKLWan",
  "_diffusers_version": "0.35.1",
  "attn_scales": [],
  "base_dim": 96,
  "dim_mult": [1, 2, 4, 4],
  "dropout": 0.0,
  "latents_mean": [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                   0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
  "latents_std": [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                  3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916],
  "num_res_blocks": 2,
  "temperal_downsample": [false, true, true],
  "z_dim": 16
}
"#;

/// `text_encoder/config.json` (`UMT5EncoderModel`, google/umt5-xxl; spec §6).
pub const TEXT_ENCODER_CONFIG: &str = r#"{
  "_name_or_path": "google/umt5-xxl",
  "architectures": ["UMT5EncoderModel"],
  "classifier_dropout": 0.0,
  "d_ff": 10240,
  "d_kv": 64,
  "d_model": 4096,
  "decoder_start_token_id": 0,
  "dense_act_fn": "gelu_new",
  "dropout_rate": 0.1,
  "eos_token_id": 1,
  "feed_forward_proj": "gated-gelu",
  "initializer_factor": 1.0,
  "is_encoder_decoder": true,
  "is_gated_act": true,
  "layer_norm_epsilon": 1e-06,
  "model_type": "umt5",
  "num_decoder_layers": 24,
  "num_heads": 64,
  "num_layers": 24,
  "output_past": true,
  "pad_token_id": 0,
  "relative_attention_max_distance": 128,
  "relative_attention_num_buckets": 32,
  "scalable_attention": true,
  "tie_word_embeddings": false,
  "tokenizer_class": "T5Tokenizer",
  "torch_dtype": "float32",
  "transformers_version": "4.41.0",
  "use_cache": true,
  "vocab_size": 256384
}
"#;

/// `scheduler/scheduler_config.json` (FlowMatchEulerDiscreteScheduler, shift 12; spec §4).
pub const SCHEDULER_CONFIG: &str = r#"{
  "_class_name": "FlowMatchEulerDiscreteScheduler",
  "_diffusers_version": "0.35.1",
  "base_image_seq_len": 256,
  "base_shift": 0.5,
  "invert_sigmas": false,
  "max_image_seq_len": 4096,
  "max_shift": 1.15,
  "num_train_timesteps": 1000,
  "shift": 12.0,
  "shift_terminal": null,
  "stochastic_sampling": false,
  "time_shift_type": "exponential",
  "use_beta_sigmas": false,
  "use_dynamic_shifting": false,
  "use_exponential_sigmas": false,
  "use_karras_sigmas": false
}
"#;

/// Largest shard, as `save_pretrained(max_shard_size="5GB")` writes them.
const MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// Rank of the official LoRAs (the reference's `load_lora` default).
pub const LORA_RANK: usize = 128;

/// One tensor of a fixture file.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureTensor {
    /// State-dict name.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// A value written for scalars (e.g. `alpha_scale`); everything else reads as zeros.
    pub value: Option<f32>,
}

impl FixtureTensor {
    fn bytes(&self) -> u64 {
        let n: u64 = self.shape.iter().map(|&d| d as u64).product();
        (n * self.dtype.bitsize() as u64).div_ceil(8)
    }
}

/// One safetensors file of the fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureFile {
    /// Path relative to the checkpoint root.
    pub path: PathBuf,
    /// Tensors in file order.
    pub tensors: Vec<FixtureTensor>,
}

/// A checkpoint plan: files, shard indexes and text files, written by [`Fixture::write`].
/// Edit it before writing to make a broken checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    /// Safetensors files.
    pub files: Vec<FixtureFile>,
    /// Shard indexes (relative path -> weight map: tensor -> shard file name).
    pub indexes: BTreeMap<PathBuf, BTreeMap<String, String>>,
    /// Other files (configs) with their contents.
    pub texts: Vec<(PathBuf, String)>,
}

fn tensors_of(requests: &[Requested], dtype: Dtype) -> Vec<FixtureTensor> {
    let mut seen = std::collections::BTreeSet::new();
    requests
        .iter()
        .filter(|r| seen.insert(r.name.clone()))
        .map(|r| FixtureTensor {
            name: r.name.clone(),
            dtype,
            shape: r.shape.clone(),
            value: None,
        })
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| ModelError::Config {
        path: PathBuf::from(what),
        source,
    })
}

impl Fixture {
    /// The full-size official checkpoint (about 56 GB of holes).
    pub fn official() -> Result<Self> {
        let mut fx = Fixture::default();
        for (path, text) in [
            ("dit/config.json", DIT_CONFIG),
            ("vae/config.json", VAE_CONFIG),
            ("text_encoder/config.json", TEXT_ENCODER_CONFIG),
            ("scheduler/scheduler_config.json", SCHEDULER_CONFIG),
            // Only its presence is checked; a real one is the umT5 sentencepiece vocabulary.
            ("tokenizer/tokenizer.json", "{}\n"),
        ] {
            fx.texts.push((PathBuf::from(path), text.to_string()));
        }
        let dit_cfg: DitConfig = parse(DIT_CONFIG, "dit/config.json")?;
        let (_, dit) = dit_requests(&dit_cfg)?;
        fx.add_sharded(
            "dit",
            "diffusion_pytorch_model",
            tensors_of(&dit, Dtype::BF16),
        );
        let te_cfg: Umt5Config = parse(TEXT_ENCODER_CONFIG, "text_encoder/config.json")?;
        let te = text_encoder_requests(&te_cfg)?;
        fx.add_sharded("text_encoder", "model", tensors_of(&te, Dtype::F32));
        let vae_cfg: VaeConfig = parse(VAE_CONFIG, "vae/config.json")?;
        let vae = vae_requests(&vae_cfg)?;
        fx.files.push(FixtureFile {
            path: PathBuf::from("vae/diffusion_pytorch_model.safetensors"),
            tensors: tensors_of(&vae, Dtype::F32),
        });
        let shapes: BTreeMap<String, Vec<usize>> =
            dit.into_iter().map(|r| (r.name, r.shape)).collect();
        for (file, refinement) in [
            ("lora/cfg_step_lora.safetensors", false),
            ("lora/refinement_lora.safetensors", true),
        ] {
            fx.files.push(FixtureFile {
                path: PathBuf::from(file),
                tensors: lora_tensors(&dit_cfg, &shapes, refinement)?,
            });
        }
        Ok(fx)
    }

    /// Splits `tensors` into `<base>-0000i-of-0000n.safetensors` shards of at most 5 GB
    /// with a `<base>.safetensors.index.json`.
    fn add_sharded(&mut self, dir: &str, base: &str, tensors: Vec<FixtureTensor>) {
        let mut shards: Vec<Vec<FixtureTensor>> = vec![Vec::new()];
        let mut size = 0;
        for t in tensors {
            let b = t.bytes();
            if size + b > MAX_SHARD_BYTES && shards.last().is_some_and(|s| !s.is_empty()) {
                shards.push(Vec::new());
                size = 0;
            }
            size += b;
            if let Some(last) = shards.last_mut() {
                last.push(t);
            }
        }
        let n = shards.len();
        let mut map = BTreeMap::new();
        for (i, tensors) in shards.into_iter().enumerate() {
            let name = format!("{base}-{:05}-of-{n:05}.safetensors", i + 1);
            for t in &tensors {
                map.insert(t.name.clone(), name.clone());
            }
            self.files.push(FixtureFile {
                path: Path::new(dir).join(&name),
                tensors,
            });
        }
        self.indexes.insert(
            Path::new(dir).join(format!("{base}.safetensors.index.json")),
            map,
        );
    }

    /// The file holding `tensor` (index into `files`) and its position there.
    pub fn find(&self, tensor: &str) -> Option<(usize, usize)> {
        self.files.iter().enumerate().find_map(|(f, file)| {
            file.tensors
                .iter()
                .position(|t| t.name == tensor)
                .map(|t| (f, t))
        })
    }

    /// Writes the checkpoint under `root` (sparse: only headers and scalars hit the disk).
    pub fn write(&self, root: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModelError::Io { path, source }
        };
        for (rel, text) in &self.texts {
            let path = root.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        for (rel, map) in &self.indexes {
            let path = root.join(rel);
            let total: u64 = self
                .files
                .iter()
                .filter(|f| f.path.parent() == rel.parent())
                .flat_map(|f| &f.tensors)
                .map(FixtureTensor::bytes)
                .sum();
            let json = serde_json::json!({"metadata": {"total_size": total}, "weight_map": map});
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            std::fs::write(&path, format!("{json:#}\n")).map_err(io(&path))?;
        }
        for f in &self.files {
            write_sparse(&root.join(&f.path), &f.tensors)?;
        }
        Ok(())
    }
}

/// Writes one safetensors file: header, scalar values, and a hole for everything else.
pub fn write_sparse(path: &Path, tensors: &[FixtureTensor]) -> Result<()> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0u64;
    let mut values = Vec::new();
    for t in tensors {
        let end = offset + t.bytes();
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end]}),
        );
        if let Some(v) = t.value {
            values.push((offset, t.dtype, v));
        }
        offset = end;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(&(json.len() as u64).to_le_bytes())
        .map_err(io)?;
    file.write_all(&json).map_err(io)?;
    let data_start = 8 + json.len() as u64;
    for (at, dtype, v) in values {
        let bytes = match dtype {
            Dtype::F32 => v.to_le_bytes().to_vec(),
            Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
            Dtype::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
            other => {
                return Err(ModelError::InvalidArgument(format!(
                    "fixture scalar of dtype {other:?}"
                )))
            }
        };
        file.seek(SeekFrom::Start(data_start + at)).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
    }
    file.set_len(data_start + offset).map_err(io)?;
    Ok(())
}

/// The official LoRA layout at rank 128 (spec §2.9): cfg_step targets the attention,
/// cross-attention and FFN linears of every block; refinement also every block's adaLN
/// modulation and the final layer's modulation and linear. Fused layers get one up block per
/// output chunk. Shapes come from the recorded DiT requests.
fn lora_tensors(
    cfg: &DitConfig,
    shapes: &BTreeMap<String, Vec<usize>>,
    refinement: bool,
) -> Result<Vec<FixtureTensor>> {
    let mut targets: Vec<(String, usize)> = Vec::new();
    for i in 0..cfg.depth {
        let p = |s: &str| format!("blocks.{i}.{s}");
        targets.extend([
            (p("attn.qkv"), 3),
            (p("attn.proj"), 1),
            (p("cross_attn.q_linear"), 1),
            (p("cross_attn.kv_linear"), 2),
            (p("ffn.w1"), 1),
            (p("ffn.w2"), 1),
            (p("ffn.w3"), 1),
        ]);
        if refinement {
            targets.push((p("adaLN_modulation.1"), 6));
        }
    }
    if refinement {
        targets.push(("final_layer.adaLN_modulation.1".into(), 2));
        targets.push(("final_layer.linear".into(), 1));
    }
    let mut tensors = Vec::new();
    for (module, n) in targets {
        let Some(&[out, inp]) = shapes.get(&format!("{module}.weight")).map(Vec::as_slice) else {
            return Err(ModelError::InvalidArgument(format!(
                "the DiT has no linear `{module}`"
            )));
        };
        let key = super::lora_key(&module);
        let t = |name: String, shape: Vec<usize>| FixtureTensor {
            name,
            dtype: Dtype::F32,
            shape,
            value: None,
        };
        tensors.push(t(
            format!("{key}.lora_down.weight"),
            vec![n * LORA_RANK, inp],
        ));
        if n == 1 {
            tensors.push(t(format!("{key}.lora_up.weight"), vec![out, LORA_RANK]));
        } else {
            for j in 0..n {
                tensors.push(t(
                    format!("{key}.lora_up.blocks.{j}.weight"),
                    vec![out / n, LORA_RANK],
                ));
            }
        }
        tensors.push(FixtureTensor {
            value: Some(0.5),
            ..t(format!("{key}.alpha_scale"), vec![])
        });
    }
    Ok(tensors)
}
