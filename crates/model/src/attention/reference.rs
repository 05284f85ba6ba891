//! The attention this crate used before the flash-style kernels: f32 copies of q, k and v,
//! query rows chunked so one `rows × keys` score block stays under 2^28 elements, three full
//! passes per chunk (scores, softmax, product). Kept as the baseline of `longcat bench` and as
//! a second reference in tests.

use candle_core::{DType, Tensor};

use crate::error::Result;

/// Score elements per chunk.
const MAX_SCORE_ELEMS: usize = 1 << 28;

/// `softmax(q kᵀ · scale + bias) v` in chunks of query rows; `bias` broadcastable to
/// `[B, H, Sq, Sk]` with a singleton query dim. Returns `q`'s dtype.
pub fn chunked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let (b, h, sq, _) = q.dims4()?;
    let sk = k.dims()[2];
    let kt = k.to_dtype(DType::F32)?.transpose(2, 3)?.contiguous()?;
    let vf = v.to_dtype(DType::F32)?.contiguous()?;
    let qf = q.to_dtype(DType::F32)?;
    let per_row = (b * h * sk).max(1);
    let chunk = (MAX_SCORE_ELEMS / per_row).clamp(1, sq.max(1));
    let mut outs = Vec::with_capacity(sq.div_ceil(chunk));
    let mut start = 0;
    while start < sq {
        let len = chunk.min(sq - start);
        let qc = qf.narrow(2, start, len)?.contiguous()?;
        let mut scores = (qc.matmul(&kt)? * scale)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        outs.push(probs.matmul(&vf)?);
        start += len;
    }
    let out = if outs.len() == 1 {
        outs.remove(0)
    } else {
        Tensor::cat(&outs, 2)?
    };
    Ok(out.to_dtype(dtype)?)
}
