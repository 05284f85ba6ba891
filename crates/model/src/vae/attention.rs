//! The mid block: residual block, single-head attention within each frame, residual block.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use super::cache::FeatCache;
use super::norm::RmsNorm;
use super::resnet::ResBlock;
use crate::Result;

/// Largest attention score block of the mid block (query rows are chunked to stay below).
const ATTN_SCORE_ELEMS: usize = 1 << 24;

/// Single-head self-attention within each frame.
#[derive(Debug, Clone)]
struct AttnBlock {
    norm: RmsNorm,
    qkv_w: Tensor,
    qkv_b: Tensor,
    proj_w: Tensor,
    proj_b: Tensor,
}

impl AttnBlock {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let qkv = vb.pp("to_qkv");
        let proj = vb.pp("proj");
        Ok(Self {
            norm: RmsNorm::new(dim, true, vb.pp("norm"))?,
            qkv_w: qkv
                .get((3 * dim, dim, 1, 1), "weight")?
                .detach()
                .reshape((3 * dim, dim))?
                .t()?,
            qkv_b: qkv.get(3 * dim, "bias")?.detach(),
            proj_w: proj
                .get((dim, dim, 1, 1), "weight")?
                .detach()
                .reshape((dim, dim))?
                .t()?,
            proj_b: proj.get(dim, "bias")?.detach(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let n = b * t;
        let y = self.norm.forward(&x.reshape((n, c, h, w))?)?;
        // [n, hw, c] tokens
        let tokens = y.reshape((n, c, h * w))?.transpose(1, 2)?.contiguous()?;
        let qkv = tokens
            .broadcast_matmul(&self.qkv_w)?
            .broadcast_add(&self.qkv_b)?;
        let hw = h * w;
        let q = qkv.narrow(D::Minus1, 0, c)?;
        let kt = qkv.narrow(D::Minus1, c, c)?.t()?.contiguous()?;
        let v = qkv.narrow(D::Minus1, 2 * c, c)?.contiguous()?;
        // Query rows in chunks, so the score block stays under ATTN_SCORE_ELEMS.
        let rows = attn_rows(n, hw);
        let mut outs = Vec::with_capacity(hw.div_ceil(rows));
        let mut r0 = 0;
        while r0 < hw {
            let r = rows.min(hw - r0);
            let qc = q.narrow(1, r0, r)?.contiguous()?;
            let scores = (qc.matmul(&kt)? * (1.0 / (c as f64).sqrt()))?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            outs.push(probs.matmul(&v)?);
            r0 += r;
        }
        let out = Tensor::cat(&outs, 1)?;
        let out = out
            .broadcast_matmul(&self.proj_w)?
            .broadcast_add(&self.proj_b)?;
        let out = out.transpose(1, 2)?.reshape((b, t, c, h, w))?;
        Ok((out + x)?)
    }
}

/// Query rows per attention chunk for `n` frames of `hw` tokens.
pub(super) fn attn_rows(n: usize, hw: usize) -> usize {
    (ATTN_SCORE_ELEMS / (n * hw).max(1)).clamp(1, hw.max(1))
}

/// Residual block, attention, residual block.
#[derive(Debug, Clone)]
pub(super) struct MidBlock {
    res0: ResBlock,
    attn: AttnBlock,
    res1: ResBlock,
}

impl MidBlock {
    pub(super) fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            res0: ResBlock::new(dim, dim, vb.pp("resnets.0"))?,
            attn: AttnBlock::new(dim, vb.pp("attentions.0"))?,
            res1: ResBlock::new(dim, dim, vb.pp("resnets.1"))?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let x = self.res0.forward(x, cache)?;
        let x = self.attn.forward(&x)?;
        self.res1.forward(&x, cache)
    }
}
