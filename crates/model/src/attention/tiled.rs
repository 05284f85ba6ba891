//! Flash-style attention from candle tensor ops, for any device and dtype: query tiles ×
//! key tiles with an online softmax. Products run in the input dtype (f32 on the CPU, whose
//! matmul has no bf16), the softmax statistics and the output accumulator in f32.

use candle_core::{DType, Tensor, D};

use crate::error::Result;

/// Score elements one tile step may hold (`B·H × query rows × key columns`).
const MAX_TILE_ELEMS: usize = 1 << 24;
/// Key columns per step.
const KEY_TILE: usize = 1024;

/// The dtype products run in on this tensor's device.
fn product_dtype(t: &Tensor) -> DType {
    if t.device().is_cpu() {
        DType::F32
    } else {
        t.dtype()
    }
}

/// Dense attention: see [`super::flash_attention`]. `key_bias` is f32 `[B, Sk]`.
pub fn dense(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let (b, h, sq, d) = q.dims4()?;
    let sk = k.dim(2)?;
    let mm = product_dtype(q);
    let key_tile = KEY_TILE.min(sk.max(1));
    let q_tile = (MAX_TILE_ELEMS / (b * h * key_tile).max(1)).clamp(1, sq.max(1));
    let mut outs = Vec::with_capacity(sq.div_ceil(q_tile));
    let mut q0 = 0;
    while q0 < sq {
        let rows = q_tile.min(sq - q0);
        let qt = q.narrow(2, q0, rows)?.to_dtype(mm)?.contiguous()?;
        let mut state = OnlineSoftmax::new((b, h, rows, d), q.device())?;
        let mut k0 = 0;
        while k0 < sk {
            let cols = key_tile.min(sk - k0);
            let kt = k.narrow(2, k0, cols)?.to_dtype(mm)?.contiguous()?;
            let vt = v.narrow(2, k0, cols)?.to_dtype(mm)?.contiguous()?;
            let mut s = (qt.matmul(&kt.t()?)?.to_dtype(DType::F32)? * scale)?;
            if let Some(bias) = key_bias {
                s = s.broadcast_add(&bias.narrow(1, k0, cols)?.reshape((b, 1, 1, cols))?)?;
            }
            state.step(&s, &vt, None)?;
            k0 += cols;
        }
        outs.push(state.finish()?);
        q0 += rows;
    }
    let out = if outs.len() == 1 {
        outs.remove(0)
    } else {
        Tensor::cat(&outs, 2)?
    };
    Ok(out.to_dtype(q.dtype())?)
}

/// Running max, sum and output accumulator of an online softmax over key tiles.
struct OnlineSoftmax {
    max: Tensor,
    sum: Tensor,
    acc: Tensor,
}

impl OnlineSoftmax {
    /// State for output `shape` (rows in dim -2, head dim last).
    fn new<S: Into<candle_core::Shape>>(shape: S, device: &candle_core::Device) -> Result<Self> {
        let shape: candle_core::Shape = shape.into();
        let mut row_shape = shape.dims().to_vec();
        if let Some(last) = row_shape.last_mut() {
            *last = 1;
        }
        Ok(Self {
            max: Tensor::full(f32::NEG_INFINITY, row_shape.as_slice(), device)?,
            sum: Tensor::zeros(row_shape.as_slice(), DType::F32, device)?,
            acc: Tensor::zeros(shape, DType::F32, device)?,
        })
    }

    /// Folds in the f32 scores `s` (`[.., rows, cols]`) of values `vt` (`[.., cols, D]`).
    /// `keep` (f32, broadcastable to `s`, 0 or 1) zeroes the weights of masked keys, so they
    /// contribute nothing even in a row where every key is masked.
    fn step(&mut self, s: &Tensor, vt: &Tensor, keep: Option<&Tensor>) -> Result<()> {
        let m_new = self.max.maximum(&s.max_keepdim(D::Minus1)?)?;
        // exp(-inf - finite) = 0 on the first step.
        let alpha = (&self.max - &m_new)?.exp()?;
        let mut p = s.broadcast_sub(&m_new)?.exp()?;
        if let Some(keep) = keep {
            p = p.broadcast_mul(keep)?;
        }
        self.sum = ((&self.sum * &alpha)? + p.sum_keepdim(D::Minus1)?)?;
        let pv = p.to_dtype(vt.dtype())?.matmul(vt)?.to_dtype(DType::F32)?;
        self.acc = (self.acc.broadcast_mul(&alpha)? + pv)?;
        self.max = m_new;
        Ok(())
    }

    /// `acc / sum`, zero where no key contributed.
    fn finish(self) -> Result<Tensor> {
        let empty = self.sum.eq(0f32)?;
        let sum = empty.where_cond(&self.sum.ones_like()?, &self.sum)?;
        Ok(self.acc.broadcast_div(&sum)?)
    }
}

/// Block sparse attention: see [`super::block_sparse_attention`]. Query blocks are processed
/// in groups whose gathered keys stay under [`MAX_TILE_ELEMS`] scores, each group attending to
/// its selected key blocks in key tiles with the online softmax.
#[allow(clippy::too_many_arguments)]
pub fn block_sparse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    ids: &Tensor,
    lens: &Tensor,
    cq: usize,
    ck: usize,
    scale: f64,
) -> Result<Tensor> {
    let (bh, sq, d) = q.dims3()?;
    let nk = k.dim(1)? / ck.max(1);
    let (_, nq, width) = ids.dims3()?;
    let device = q.device();
    let mm = product_dtype(q);
    let rows = bh * nq;
    if rows == 0 || width == 0 {
        return Ok(Tensor::zeros((bh, sq, d), q.dtype(), device)?);
    }
    // Global key-block ids into k viewed as [BH*nk, ck, D].
    let base =
        Tensor::arange_step(0u32, (bh * nk) as u32, nk as u32, device)?.reshape((bh, 1, 1))?;
    let global = ids
        .to_dtype(DType::U32)?
        .broadcast_add(&base)?
        .reshape((rows, width))?;
    let lens = lens.to_dtype(DType::U32)?.reshape((rows, 1))?;
    let k_all = k.reshape((bh * nk, ck, d))?;
    let v_all = v.reshape((bh * nk, ck, d))?;
    let q_rows = q.reshape((rows, cq, d))?;
    // Blocks per key step, and query blocks per group.
    let blocks_per_step = (KEY_TILE / ck.max(1)).clamp(1, width);
    let group = (MAX_TILE_ELEMS / (cq * blocks_per_step * ck).max(1)).clamp(1, rows);
    let mut outs = Vec::with_capacity(rows.div_ceil(group));
    let mut r0 = 0;
    while r0 < rows {
        let g = group.min(rows - r0);
        let qg = q_rows.narrow(0, r0, g)?.to_dtype(mm)?.contiguous()?;
        let ids_g = global.narrow(0, r0, g)?;
        let lens_g = lens.narrow(0, r0, g)?;
        let mut state = OnlineSoftmax::new((g, cq, d), device)?;
        let mut j0 = 0;
        while j0 < width {
            let nb = blocks_per_step.min(width - j0);
            let sel = ids_g.narrow(1, j0, nb)?.contiguous()?.flatten_all()?;
            let kt = k_all
                .index_select(&sel, 0)?
                .reshape((g, nb * ck, d))?
                .to_dtype(mm)?;
            let vt = v_all
                .index_select(&sel, 0)?
                .reshape((g, nb * ck, d))?
                .to_dtype(mm)?;
            let s = (qg.matmul(&kt.t()?)?.to_dtype(DType::F32)? * scale)?;
            // Blocks at or past a row's length are masked out.
            let slot = (Tensor::arange(j0 as u32, (j0 + nb) as u32, device)?).reshape((1, nb))?;
            let unused = slot.broadcast_ge(&lens_g)?; // [g, nb]
                                                      // A per-block [g, nb] tensor repeated over each block's ck keys: [g, 1, nb*ck].
            let per_key = |t: &Tensor| -> Result<Tensor> {
                Ok(t.reshape((g, 1, nb, 1))?
                    .broadcast_as((g, 1, nb, ck))?
                    .reshape((g, 1, nb * ck))?)
            };
            let neg = Tensor::full(f32::NEG_INFINITY, (g, nb), device)?;
            let s = s.broadcast_add(&per_key(&unused.where_cond(&neg, &neg.zeros_like()?)?)?)?;
            // A fully masked row keeps max = -inf; its step must not produce NaN.
            let s = finite_or_floor(&s)?;
            let keep = per_key(&unused.eq(0u8)?.to_dtype(DType::F32)?)?;
            state.step(&s, &vt, Some(&keep))?;
            j0 += nb;
        }
        outs.push(state.finish()?);
        r0 += g;
    }
    let out = if outs.len() == 1 {
        outs.remove(0)
    } else {
        Tensor::cat(&outs, 0)?
    };
    Ok(out.reshape((bh, sq, d))?.to_dtype(q.dtype())?)
}

/// Replaces `-inf` by the most negative finite f32 (so max/exp stay finite).
fn finite_or_floor(s: &Tensor) -> Result<Tensor> {
    Ok(s.maximum(f32::MIN)?)
}
