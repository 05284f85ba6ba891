//! One LongCat single-stream block: per-frame adaLN, 3D-RoPE self-attention (with condition
//! frames and KV cache), cross-attention to text, SwiGLU FFN.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::attend::{AttnOutput, SelfAttnBackend};
use super::config::DitConfig;
use super::layers::{
    attention, gated_residual, layer_norm_f32, modulate_f32, rms_norm_f32, DitLinear,
};
use super::rope::Rope3d;
use crate::error::Result;

/// Text states for cross-attention: `y` `[B, L, C]` in the model dtype and an optional f32
/// additive key bias `[B, 1, 1, L]` (0 = attend, large negative = dropped token).
#[derive(Debug, Clone)]
pub struct TextContext {
    /// Projected caption states.
    pub y: Tensor,
    /// Key bias for dropped (padded) tokens.
    pub bias: Option<Tensor>,
}

/// Cached keys (after q/k norm, before RoPE) and values `[B, heads, N_cond, D]` of one block.
#[derive(Debug, Clone)]
pub struct BlockKv {
    /// Keys.
    pub k: Tensor,
    /// Values.
    pub v: Tensor,
}

/// What a block returns.
#[derive(Debug, Clone)]
pub struct BlockOutput {
    /// Hidden states `[B, N, C]`.
    pub hidden: Tensor,
    /// Keys/values for the cache, when asked for.
    pub kv: Option<BlockKv>,
    /// Block sparse attention masks of this block's self-attention, labelled `""` (one
    /// call), or `"cond"` / `"noise"` (condition mode).
    pub bsa_masks: Vec<(String, Tensor)>,
}

/// Everything a block needs besides its input.
pub struct BlockArgs<'a> {
    /// f32 timestep embedding `[B, T, Ct]` (T = frames of this forward).
    pub t_emb: &'a Tensor,
    /// Text; `None` skips cross-attention.
    pub text: Option<&'a TextContext>,
    /// Token grid `[T, H, W]` of this forward's latents.
    pub grid: [usize; 3],
    /// Leading clean condition frames (0 = none); ignored with `cache`.
    pub num_cond: usize,
    /// RoPE tables of the full grid (condition frames of the cache included).
    pub rope: &'a Rope3d,
    /// Condition keys/values from the cache.
    pub cache: Option<&'a BlockKv>,
    /// Return this block's keys/values for caching.
    pub want_kv: bool,
    /// Self-attention kernel selection.
    pub backend: &'a SelfAttnBackend,
    /// Record BSA block masks in the output (tracing only).
    pub record_bsa: bool,
}

/// FFN hidden elements computed at once (see [`Block::ffn`]).
const FFN_HIDDEN_ELEMS: usize = 1 << 26;

/// A DiT block.
#[derive(Debug, Clone)]
pub struct Block {
    ada: DitLinear,
    qkv: DitLinear,
    q_norm: Tensor,
    k_norm: Tensor,
    proj: DitLinear,
    pre_norm_w: Tensor,
    pre_norm_b: Tensor,
    cq: DitLinear,
    ckv: DitLinear,
    cq_norm: Tensor,
    ck_norm: Tensor,
    cproj: DitLinear,
    w1: DitLinear,
    w2: DitLinear,
    w3: DitLinear,
    heads: usize,
}

impl Block {
    /// Loads `blocks.<i>.*`.
    pub fn load(vb: &VarBuilder, cfg: &DitConfig, i: usize) -> Result<Self> {
        let c = cfg.hidden_size;
        let d = cfg.head_dim();
        let f = cfg.ffn_hidden();
        let p = |s: &str| format!("blocks.{i}.{s}");
        let lin = |s: &str, i, o, b| DitLinear::load(vb, &p(s), i, o, b);
        Ok(Self {
            ada: lin("adaLN_modulation.1", cfg.adaln_tembed_dim, 6 * c, true)?,
            qkv: lin("attn.qkv", c, 3 * c, true)?,
            q_norm: vb.get(d, &p("attn.q_norm.weight"))?,
            k_norm: vb.get(d, &p("attn.k_norm.weight"))?,
            proj: lin("attn.proj", c, c, true)?,
            pre_norm_w: vb.get(c, &p("pre_crs_attn_norm.weight"))?,
            pre_norm_b: vb.get(c, &p("pre_crs_attn_norm.bias"))?,
            cq: lin("cross_attn.q_linear", c, c, true)?,
            ckv: lin("cross_attn.kv_linear", c, 2 * c, true)?,
            cq_norm: vb.get(d, &p("cross_attn.q_norm.weight"))?,
            ck_norm: vb.get(d, &p("cross_attn.k_norm.weight"))?,
            cproj: lin("cross_attn.proj", c, c, true)?,
            w1: lin("ffn.w1", c, f, false)?,
            w2: lin("ffn.w2", f, c, false)?,
            w3: lin("ffn.w3", c, f, false)?,
            heads: cfg.num_heads,
        })
    }

    pub(crate) fn linears_mut(&mut self) -> Vec<&mut DitLinear> {
        vec![
            &mut self.ada,
            &mut self.qkv,
            &mut self.proj,
            &mut self.cq,
            &mut self.ckv,
            &mut self.cproj,
            &mut self.w1,
            &mut self.w2,
            &mut self.w3,
        ]
    }

    /// `x` `[B, N, C]` to `[B, N, C]`, plus this block's keys/values when asked.
    pub fn forward(&self, x: &Tensor, a: &BlockArgs) -> Result<BlockOutput> {
        let (b, n, c) = x.dims3()?;
        let tt = a.grid[0];
        let m = self
            .ada
            .forward_f32(&candle_nn::ops::silu(a.t_emb)?)?
            .reshape((b, tt, 1, 6 * c))?;
        let chunk = |i: usize| m.narrow(3, i * c, c);
        let (shift_msa, scale_msa, gate_msa) = (chunk(0)?, chunk(1)?, chunk(2)?);
        let (shift_mlp, scale_mlp, gate_mlp) = (chunk(3)?, chunk(4)?, chunk(5)?);

        let xm = modulate_f32(x, &shift_msa, &scale_msa)?;
        let (xs, kv, bsa_masks) = self.self_attention(&xm, a)?;
        let mut x = gated_residual(x, &xs, &gate_msa)?;

        if let Some(text) = a.text {
            let xn = layer_norm_f32(&x, Some((&self.pre_norm_w, &self.pre_norm_b)))?
                .to_dtype(x.dtype())?;
            let cond_tokens = if a.cache.is_some() {
                0
            } else {
                a.num_cond * (n / tt)
            };
            let out = if cond_tokens == 0 {
                self.cross_attention(&xn, text)?
            } else {
                let noise =
                    self.cross_attention(&xn.narrow(1, cond_tokens, n - cond_tokens)?, text)?;
                let zeros = Tensor::zeros((b, cond_tokens, c), noise.dtype(), noise.device())?;
                Tensor::cat(&[zeros, noise], 1)?
            };
            x = (x + out)?;
        }

        let xm = modulate_f32(&x, &shift_mlp, &scale_mlp)?;
        let xs = self.ffn(&xm)?;
        Ok(BlockOutput {
            hidden: gated_residual(&x, &xs, &gate_mlp)?,
            kv,
            bsa_masks,
        })
    }

    /// SwiGLU `w2(silu(w1 x) * w3 x)` over chunks of tokens, so the hidden states held at once
    /// stay under [`FFN_HIDDEN_ELEMS`] elements (at refinement the whole hidden tensor would
    /// be 183,040 × 11,008 elements, near one kernel's 2^31 limit and 8 GB in f32).
    fn ffn(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let hidden = self.w1.out_dim();
        let tokens = (FFN_HIDDEN_ELEMS / (b * hidden).max(1)).clamp(1, n.max(1));
        let mut outs = Vec::with_capacity(n.div_ceil(tokens));
        let mut t0 = 0;
        while t0 < n {
            let len = tokens.min(n - t0);
            let xc = x.narrow(1, t0, len)?;
            let h = (candle_nn::ops::silu(&self.w1.forward(&xc)?)? * self.w3.forward(&xc)?)?;
            outs.push(self.w2.forward(&h)?);
            t0 += len;
        }
        Ok(if outs.len() == 1 {
            outs.remove(0)
        } else {
            Tensor::cat(&outs, 1)?
        })
    }

    /// Part `i` of `k` of a fused projection as heads `[B, H, N, D]` (a strided view: the
    /// part is computed on its own, so no fused output exists).
    fn project_heads(&self, layer: &DitLinear, x: &Tensor, i: usize, k: usize) -> Result<Tensor> {
        Ok(self.project_rows(layer, x, i, k)?.transpose(1, 2)?)
    }

    /// [`Self::project_heads`] with the per-head RMS norm `weight` applied while the rows are
    /// still contiguous `[B, N, H, D]` (one fused pass, no copy of a transposed view).
    fn project_heads_normed(
        &self,
        layer: &DitLinear,
        x: &Tensor,
        i: usize,
        k: usize,
        weight: &Tensor,
    ) -> Result<Tensor> {
        let rows = self.project_rows(layer, x, i, k)?;
        Ok(rms_norm_f32(&rows, weight)?.transpose(1, 2)?)
    }

    /// Part `i` of `k` of `layer`'s output as `[B, N, H, D]`.
    fn project_rows(&self, layer: &DitLinear, x: &Tensor, i: usize, k: usize) -> Result<Tensor> {
        let c = layer.out_dim() / k;
        let part = layer.forward_rows(x, i * c, c)?;
        let (b, n, _) = part.dims3()?;
        Ok(part.reshape((b, n, self.heads, c / self.heads))?)
    }

    fn merge_heads(t: &Tensor) -> Result<Tensor> {
        let (b, h, n, d) = t.dims4()?;
        Ok(t.transpose(1, 2)?.contiguous()?.reshape((b, n, h * d))?)
    }

    #[allow(clippy::type_complexity)]
    fn self_attention(
        &self,
        x: &Tensor,
        a: &BlockArgs,
    ) -> Result<(Tensor, Option<BlockKv>, Vec<(String, Tensor)>)> {
        let n = x.dims()[1];
        let q = self.project_heads_normed(&self.qkv, x, 0, 3, &self.q_norm)?;
        let k = self.project_heads_normed(&self.qkv, x, 1, 3, &self.k_norm)?;
        let v = self.project_heads(&self.qkv, x, 2, 3)?;
        let kv = if a.want_kv {
            Some(BlockKv {
                k: k.clone(),
                v: v.clone(),
            })
        } else {
            None
        };
        let [tt, hh, ww] = a.grid;
        let hw = hh * ww;
        let mut masks = Vec::new();
        let mut keep = |label: &str, o: AttnOutput| {
            if let Some(m) = o.block_mask {
                masks.push((label.to_string(), m));
            }
            o.output
        };
        let out = if let Some(cache) = a.cache {
            let b = q.dims()[0];
            let (ck, cv) = (expand_batch(&cache.k, b)?, expand_batch(&cache.v, b)?);
            let nc = ck.dims()[2];
            let k_full = a.rope.apply(&Tensor::cat(&[&ck, &k], 2)?, 0)?;
            let v_full = Tensor::cat(&[&cv, &v], 2)?;
            let q = a.rope.apply(&q, nc)?;
            let tk = (nc + n) / hw;
            let o = a.backend.attend(
                &q,
                &k_full,
                &v_full,
                [tt, hh, ww],
                [tk, hh, ww],
                tt,
                a.record_bsa,
            )?;
            keep("", o)
        } else {
            let q = a.rope.apply(&q, 0)?;
            let k = a.rope.apply(&k, 0)?;
            if a.num_cond > 0 {
                let nc = a.num_cond * hw;
                let tc = a.num_cond;
                let qc = q.narrow(2, 0, nc)?;
                let kc = k.narrow(2, 0, nc)?;
                let vc = v.narrow(2, 0, nc)?;
                let o = a.backend.attend(
                    &qc,
                    &kc,
                    &vc,
                    [tc, hh, ww],
                    [tc, hh, ww],
                    tt,
                    a.record_bsa,
                )?;
                let xc = keep("cond", o);
                let qn = q.narrow(2, nc, n - nc)?;
                let o = a.backend.attend(
                    &qn,
                    &k,
                    &v,
                    [tt - tc, hh, ww],
                    [tt, hh, ww],
                    tt,
                    a.record_bsa,
                )?;
                let xn = keep("noise", o);
                Tensor::cat(&[xc, xn], 2)?
            } else {
                let o =
                    a.backend
                        .attend(&q, &k, &v, [tt, hh, ww], [tt, hh, ww], tt, a.record_bsa)?;
                keep("", o)
            }
        };
        Ok((self.proj.forward(&Self::merge_heads(&out)?)?, kv, masks))
    }

    fn cross_attention(&self, x: &Tensor, text: &TextContext) -> Result<Tensor> {
        let q = self.project_heads_normed(&self.cq, x, 0, 1, &self.cq_norm)?;
        let k = self.project_heads_normed(&self.ckv, &text.y, 0, 2, &self.ck_norm)?;
        let v = self.project_heads(&self.ckv, &text.y, 1, 2)?;
        let out = attention(&q, &k, &v, text.bias.as_ref())?;
        self.cproj.forward(&Self::merge_heads(&out)?)
    }
}

/// Repeats a batch-1 cache to batch `b` (a batch-`b` cache is returned as is).
fn expand_batch(t: &Tensor, b: usize) -> Result<Tensor> {
    if t.dims()[0] == b {
        Ok(t.clone())
    } else {
        Ok(t.repeat((b, 1, 1, 1))?)
    }
}

/// Converts a `[B, L]` 0/1 mask to an f32 additive key bias `[B, 1, 1, L]`.
pub fn mask_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, l) = mask.dims2()?;
    let m = mask.to_dtype(DType::F32)?.ne(0f32)?.to_dtype(DType::F32)?;
    Ok(((m - 1.0)? * 1e30)?.reshape((b, 1, 1, l))?)
}
