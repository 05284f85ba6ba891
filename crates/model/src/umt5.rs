//! The umT5 text encoder (`UMT5EncoderModel`).
//!
//! Differences from candle's T5 that matter for parity: every layer owns its relative position
//! bias (T5 keeps one in layer 0), the feed-forward is gated GELU with the tanh approximation,
//! and attention scores are not scaled by `1/sqrt(d)`. Layer norms (RMS, no mean subtraction)
//! and the softmax run in f32 whatever the weights' dtype.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The fields of `text_encoder/config.json` the encoder needs (others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Umt5Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub d_model: usize,
    /// Per-head size.
    pub d_kv: usize,
    /// Feed-forward size.
    pub d_ff: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Relative position buckets.
    pub relative_attention_num_buckets: usize,
    /// Largest distance with its own bucket range.
    pub relative_attention_max_distance: usize,
    /// RMS norm epsilon.
    pub layer_norm_epsilon: f64,
    /// Feed-forward kind; only `gated-gelu` is supported.
    #[serde(default = "default_ff")]
    pub feed_forward_proj: String,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: u32,
    /// End-of-sequence token id.
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
}

fn default_ff() -> String {
    "gated-gelu".into()
}

fn default_eos() -> u32 {
    1
}

impl Umt5Config {
    /// Reads `text_encoder/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = serde_json::from_str(&text).map_err(|source| ModelError::Config {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses configurations this encoder does not implement.
    pub fn validate(&self) -> Result<()> {
        if self.feed_forward_proj != "gated-gelu" {
            return Err(ModelError::InvalidArgument(format!(
                "umT5: feed_forward_proj `{}` is not supported (expected gated-gelu)",
                self.feed_forward_proj
            )));
        }
        Ok(())
    }
}

/// T5 RMS norm: `w * x / sqrt(mean(x^2) + eps)`, computed in f32.
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = self.weight.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let var = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x32.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(normed.to_dtype(dtype)?.broadcast_mul(&self.weight)?)
    }
}

/// Bucket of a relative position (key minus query) for a bidirectional encoder.
fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> u32 {
    let half = (num_buckets / 2) as i64;
    let mut bucket = if relative > 0 { half } else { 0 };
    let distance = relative.abs();
    let max_exact = half / 2;
    if distance < max_exact {
        bucket += distance;
    } else {
        // f32 arithmetic as the reference: log(d / max_exact) / log(max_distance / max_exact).
        let log_ratio = (distance as f32 / max_exact as f32).ln()
            / ((max_distance as f64 / max_exact as f64).ln() as f32);
        let large = max_exact + (log_ratio * (half - max_exact) as f32) as i64;
        bucket += large.min(half - 1);
    }
    bucket as u32
}

/// Self-attention with its own relative position bias.
#[derive(Debug, Clone)]
struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    relative_bias: Embedding,
    num_heads: usize,
    d_kv: usize,
    num_buckets: usize,
    max_distance: usize,
}

impl SelfAttention {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        let inner = cfg.num_heads * cfg.d_kv;
        Ok(Self {
            q: candle_nn::linear_no_bias(cfg.d_model, inner, vb.pp("q"))?,
            k: candle_nn::linear_no_bias(cfg.d_model, inner, vb.pp("k"))?,
            v: candle_nn::linear_no_bias(cfg.d_model, inner, vb.pp("v"))?,
            o: candle_nn::linear_no_bias(inner, cfg.d_model, vb.pp("o"))?,
            relative_bias: candle_nn::embedding(
                cfg.relative_attention_num_buckets,
                cfg.num_heads,
                vb.pp("relative_attention_bias"),
            )?,
            num_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
            num_buckets: cfg.relative_attention_num_buckets,
            max_distance: cfg.relative_attention_max_distance,
        })
    }

    /// Position bias `[1, heads, L, L]` in f32.
    fn position_bias(&self, len: usize, device: &Device) -> Result<Tensor> {
        let buckets: Vec<u32> = (0..len as i64)
            .flat_map(|q| {
                (0..len as i64).map(move |k| (q, k)).map(|(q, k)| {
                    relative_position_bucket(k - q, self.num_buckets, self.max_distance)
                })
            })
            .collect();
        let buckets = Tensor::from_vec(buckets, (len, len), device)?;
        let bias = self.relative_bias.forward(&buckets)?; // [L, L, H]
        Ok(bias
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .to_dtype(DType::F32)?)
    }

    /// `x`: `[B, L, d_model]`; `mask_bias`: `[B, 1, 1, L]` f32 additive.
    fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (b, len, _) = x.dims3()?;
        let heads = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, len, self.num_heads, self.d_kv))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = heads(self.q.forward(x)?)?;
        let k = heads(self.k.forward(x)?)?;
        let v = heads(self.v.forward(x)?)?;
        // As the reference: scores and biases in the weights' dtype, softmax in float32,
        // probabilities cast back before the product with v.
        let dtype = q.dtype();
        let scores = q.matmul(&k.t()?)?;
        let bias = self
            .position_bias(len, x.device())?
            .to_dtype(dtype)?
            .broadcast_add(&mask_bias.to_dtype(dtype)?)?;
        let scores = scores.broadcast_add(&bias)?.to_dtype(DType::F32)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let out = weights.matmul(&v)?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, len, self.num_heads * self.d_kv))?;
        Ok(self.o.forward(&out)?)
    }
}

/// Gated-GELU feed-forward: `wo(gelu_tanh(wi_0 x) * wi_1 x)`.
#[derive(Debug, Clone)]
struct GatedFeedForward {
    wi_0: Linear,
    wi_1: Linear,
    wo: Linear,
}

impl GatedFeedForward {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            wi_0: candle_nn::linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp("wi_0"))?,
            wi_1: candle_nn::linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp("wi_1"))?,
            // transformers keeps `wo` in float32 (`_keep_in_fp32_modules = ["wo"]`).
            wo: candle_nn::linear_no_bias(cfg.d_ff, cfg.d_model, vb.pp("wo").to_dtype(DType::F32))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.wi_0.forward(x)?.gelu()?;
        let hidden = (gate * self.wi_1.forward(x)?)?;
        // The product is cast to wo's float32 before the projection, as the reference does;
        // the output (and from here on the residual stream) is float32.
        Ok(self.wo.forward(&hidden.to_dtype(DType::F32)?)?)
    }
}

/// `torch.finfo(dtype).min` (exactly representable in float32 for every float dtype).
fn finfo_min(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => f64::from(half::bf16::MIN),
        DType::F16 => f64::from(half::f16::MIN),
        _ => f64::from(f32::MIN),
    }
}

/// `a + b` with torch's type promotion: mixed bf16/f32 operands are added in f32.
fn add_promoted(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dtype() == b.dtype() {
        return Ok((a + b)?);
    }
    Ok((a.to_dtype(DType::F32)? + b.to_dtype(DType::F32)?)?)
}

/// One encoder block: pre-norm self-attention and pre-norm feed-forward, both residual.
#[derive(Debug, Clone)]
struct Block {
    attn_norm: RmsNorm,
    attn: SelfAttention,
    ff_norm: RmsNorm,
    ff: GatedFeedForward,
}

impl Block {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        let eps = cfg.layer_norm_epsilon;
        Ok(Self {
            attn_norm: RmsNorm::new(cfg.d_model, eps, vb.pp("layer.0.layer_norm"))?,
            attn: SelfAttention::new(cfg, vb.pp("layer.0.SelfAttention"))?,
            ff_norm: RmsNorm::new(cfg.d_model, eps, vb.pp("layer.1.layer_norm"))?,
            ff: GatedFeedForward::new(cfg, vb.pp("layer.1.DenseReluDense"))?,
        })
    }

    fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let x = add_promoted(
            x,
            &self.attn.forward(&self.attn_norm.forward(x)?, mask_bias)?,
        )?;
        add_promoted(&x, &self.ff.forward(&self.ff_norm.forward(&x)?)?)
    }
}

/// The umT5 encoder stack with its token embedding.
#[derive(Debug, Clone)]
pub struct Umt5Encoder {
    embed: Embedding,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    config: Umt5Config,
}

impl Umt5Encoder {
    /// Builds the encoder from `shared.weight` and `encoder.*` tensors.
    pub fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let embed = candle_nn::embedding(cfg.vocab_size, cfg.d_model, vb.pp("shared"))?;
        let enc = vb.pp("encoder");
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::new(cfg, enc.pp(format!("block.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = RmsNorm::new(
            cfg.d_model,
            cfg.layer_norm_epsilon,
            enc.pp("final_layer_norm"),
        )?;
        Ok(Self {
            embed,
            blocks,
            final_norm,
            config: cfg.clone(),
        })
    }

    /// An encoder of `cfg` with deterministic random weights (the built-in tiny model).
    pub fn random(cfg: &Umt5Config, seed: u64, device: &Device, dtype: DType) -> Result<Self> {
        Self::new(cfg, crate::random::random_var_builder(seed, dtype, device))
    }

    /// The configuration.
    pub fn config(&self) -> &Umt5Config {
        &self.config
    }

    /// Encodes token ids `[B, L]` (any integer dtype) with a 0/1 mask `[B, L]`; returns the
    /// last hidden state `[B, L, d_model]` for all positions (padding is not zeroed).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let ids = input_ids.to_dtype(DType::U32)?;
        let mut x = self.embed.forward(&ids)?;
        let (b, len) = attention_mask.dims2()?;
        // (1 - mask) * finfo(dtype).min, as an additive bias over keys, in the weights' dtype.
        let dtype = x.dtype();
        let mask = attention_mask.to_dtype(DType::F32)?;
        let mask_bias = ((1.0 - mask)? * finfo_min(dtype))?
            .to_dtype(dtype)?
            .reshape((b, 1, 1, len))?;
        for block in &self.blocks {
            x = block.forward(&x, &mask_bias)?;
        }
        self.final_norm.forward(&x)
    }
}

/// Turns encoder output `[B, L, C]` into the DiT's prompt embeds `[B, 1, L, C]`.
pub fn to_prompt_embeds(last_hidden_state: &Tensor) -> Result<Tensor> {
    Ok(last_hidden_state.unsqueeze(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_weights_keep_wo_and_the_residual_in_f32() {
        let dir = std::path::PathBuf::from(std::env::var_os("LONGCAT_GOLDENS").expect("LONGCAT_GOLDENS must name the golden directory (scripts/test.sh sets it; default there: ../shared/goldens)"));
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("umt5_weights.json")).unwrap())
                .unwrap();
        let cfg: Umt5Config = serde_json::from_value(meta["config"].clone()).unwrap();
        let golden =
            candle_core::safetensors::load(dir.join("umt5.safetensors"), &Device::Cpu).unwrap();
        let path = dir.join("umt5_weights.safetensors");
        // SAFETY: read-only map of a test file.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::BF16, &Device::Cpu) }
                .unwrap();
        let enc = Umt5Encoder::new(&cfg, vb).unwrap();
        assert_eq!(enc.blocks[0].ff.wo.weight().dtype(), DType::F32);
        assert_eq!(enc.blocks[0].ff.wi_0.weight().dtype(), DType::BF16);
        let out = enc
            .forward(&golden["input_ids"], &golden["attention_mask"])
            .unwrap();
        assert_eq!(
            out.dtype(),
            DType::BF16,
            "final norm output is in the weight dtype"
        );
        let reference = &golden["last_hidden_state"];
        let err = crate::test_util::max_abs_diff(&out.to_dtype(DType::F32).unwrap(), reference);
        let scale = reference
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err / scale < 0.05, "bf16 relative error {}", err / scale);
    }

    #[test]
    fn buckets_match_t5_rules() {
        // Small distances map to themselves; positive offsets use the upper half.
        assert_eq!(relative_position_bucket(0, 32, 128), 0);
        assert_eq!(relative_position_bucket(-3, 32, 128), 3);
        assert_eq!(relative_position_bucket(3, 32, 128), 19);
        // Far distances saturate at the last bucket of their half.
        assert_eq!(relative_position_bucket(-1000, 32, 128), 15);
        assert_eq!(relative_position_bucket(1000, 32, 128), 31);
    }

    #[test]
    fn prompt_embeds_add_the_frame_axis() {
        let h = Tensor::zeros((2, 5, 8), DType::F32, &Device::Cpu).unwrap();
        let e = to_prompt_embeds(&h).unwrap();
        assert_eq!(e.dims(), &[2, 1, 5, 8]);
    }
}
