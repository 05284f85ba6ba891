//! Block sparse attention (BSA) as used by the LongCat DiT in the refinement stage.
//!
//! Tokens of a `(T, H, W)` grid are regrouped into 3D chunks; each query chunk scores every key
//! chunk through mean-pooled representatives, keeps a few key chunks (top-k, CDF, or both), and
//! attends only to the tokens of the chunks it kept. The selection is tensor ops on the inputs'
//! device; the attention visits each query block's own key blocks with an online softmax
//! ([`crate::attention::block_sparse_attention`]), so its cost falls with the sparsity and its
//! memory does not grow with query blocks × selected blocks.

use candle_core::{DType, Device, Tensor};

use crate::attention::{block_sparse_attention, Kernel};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// `bsa_params` of the DiT config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BsaParams {
    /// Fraction of key blocks dropped per query block (top-k keeps `int((1-s)*n)`).
    #[serde(default)]
    pub sparsity: Option<f64>,
    /// CDF threshold for CDF-based selection.
    #[serde(default)]
    pub cdf_threshold: Option<f64>,
    /// Query chunk shape (t, h, w) in tokens.
    pub chunk_3d_shape_q: [usize; 3],
    /// Key chunk shape (t, h, w) in tokens.
    pub chunk_3d_shape_k: [usize; 3],
}

/// What [`flash_attn_bsa_3d`] returns.
#[derive(Debug, Clone)]
pub struct BsaOutput {
    /// Attention output `[B, heads, Sq, D]` in `(T, H, W)` raster order.
    pub output: Tensor,
    /// Selected key-block ids per query block `[B, heads, n_q_blocks, S]` (i64); only the first
    /// `block_indices_lens` entries of each row are used.
    pub block_indices: Tensor,
    /// Number of selected blocks per query block `[B, heads, n_q_blocks]` (i64).
    pub block_indices_lens: Tensor,
    /// `[B, heads, n_q_blocks, n_k_blocks]` (u8): 1 where the key block is attended.
    pub block_mask: Tensor,
}

/// Number of blocks along each axis of a grid split into chunks; errors when not divisible.
fn blocks_of(grid: [usize; 3], chunk: [usize; 3], what: &str) -> Result<[usize; 3]> {
    let mut out = [0; 3];
    for i in 0..3 {
        if chunk[i] == 0 || !grid[i].is_multiple_of(chunk[i]) {
            return Err(ModelError::InvalidArgument(format!(
                "BSA: {what} grid {grid:?} is not divisible by chunk shape {chunk:?}"
            )));
        }
        out[i] = grid[i] / chunk[i];
    }
    Ok(out)
}

/// `[B, H, T*H*W, D]` raster order → `[B, H, S, D]` grouped by 3D chunk.
fn to_chunks(x: &Tensor, n: [usize; 3], c: [usize; 3]) -> Result<Tensor> {
    let (b, h, _, d) = x.dims4()?;
    let x = x.reshape(vec![b * h, n[0], c[0], n[1], c[1], n[2], c[2], d])?;
    let x = x.permute(vec![0, 1, 3, 5, 2, 4, 6, 7])?.contiguous()?;
    Ok(x.reshape((b, h, n[0] * n[1] * n[2] * c[0] * c[1] * c[2], d))?)
}

/// Inverse of [`to_chunks`].
fn from_chunks(x: &Tensor, n: [usize; 3], c: [usize; 3]) -> Result<Tensor> {
    let (b, h, _, d) = x.dims4()?;
    let x = x.reshape(vec![b * h, n[0], n[1], n[2], c[0], c[1], c[2], d])?;
    let x = x.permute(vec![0, 1, 4, 2, 5, 3, 6, 7])?.contiguous()?;
    Ok(x.reshape((b, h, n[0] * c[0] * n[1] * c[1] * n[2] * c[2], d))?)
}

/// `int((1 - sparsity) * n)` with Python float arithmetic.
fn topk_count(sparsity: f64, n: usize) -> usize {
    ((1.0 - sparsity) * n as f64) as usize
}

/// Score elements the block selection holds at once (`heads × nq × nk`, at least one head).
const MAX_SELECTION_ELEMS: usize = 1 << 24;

/// The key blocks each query block attends to, on the device of the inputs.
#[derive(Debug, Clone)]
pub struct BlockSelection {
    /// `[B·heads, nq, W]` (u32): key-block ids in selection order; only the first `lens` of
    /// each row are used (`W` = the top-k count, or every key block in the CDF modes).
    pub ids: Tensor,
    /// `[B·heads, nq]` (u32): how many ids of each row are used.
    pub lens: Tensor,
    /// Key blocks per head.
    pub n_key_blocks: usize,
}

impl BlockSelection {
    /// `[B·heads, nq, nk]` (u8): 1 where a query block attends to a key block.
    pub fn mask(&self) -> Result<Tensor> {
        let (bh, nq, width) = self.ids.dims3()?;
        let device = self.ids.device();
        let slot = Tensor::arange(0u32, width as u32, device)?.reshape((1, 1, width))?;
        let used = slot
            .broadcast_lt(&self.lens.reshape((bh, nq, 1))?)?
            .to_dtype(DType::F32)?;
        let zeros = Tensor::zeros((bh, nq, self.n_key_blocks), DType::F32, device)?;
        let hits = zeros.scatter_add(&self.ids.contiguous()?, &used.contiguous()?, 2)?;
        Ok(hits.gt(0f32)?)
    }
}

/// Picks key blocks for every query block with tensor ops on the inputs' device: mean-pooled
/// block representatives, unscaled scores `q̄·k̄ᵀ`, then the reference's rule (top-k in
/// descending score order, ties in block order; or the CDF of the softmax-scaled scores).
///
/// `q_blocks` `[BH, nq*cq, D]`, `k_blocks` `[BH, nk*ck, D]` in chunk order. Heads are scored a
/// few at a time so the score matrix in memory stays under [`MAX_SELECTION_ELEMS`] elements
/// (one head at least).
pub fn select_blocks(
    q_blocks: &Tensor,
    k_blocks: &Tensor,
    cq: usize,
    ck: usize,
    params: &BsaParams,
) -> Result<BlockSelection> {
    let (bh, sq, d) = q_blocks.dims3()?;
    let sk = k_blocks.dim(1)?;
    let (nq, nk) = (sq / cq, sk / ck);
    let sm_scale = 1.0 / (d as f64).sqrt();
    let heads_per_chunk = (MAX_SELECTION_ELEMS / (nq * nk).max(1)).clamp(1, bh.max(1));
    let mut ids = Vec::new();
    let mut lens = Vec::new();
    let mut h0 = 0;
    while h0 < bh {
        let hc = heads_per_chunk.min(bh - h0);
        // Mean pooling in f32, a few heads at a time (no whole-tensor f32 copy of q or k).
        let pool = |t: &Tensor, n: usize, c: usize| -> Result<Tensor> {
            Ok(t.narrow(0, h0, hc)?
                .reshape((hc, n, c, d))?
                .to_dtype(DType::F32)?
                .mean(2)?)
        };
        let q_cmp = pool(q_blocks, nq, cq)?;
        let k_cmp = pool(k_blocks, nk, ck)?;
        let scores = q_cmp.matmul(&k_cmp.t()?)?; // [hc, nq, nk]
        let (i, l) = select_from_scores(&scores, params, sm_scale)?;
        ids.push(i);
        lens.push(l);
        h0 += hc;
    }
    let (ids, lens) = if ids.len() == 1 {
        (ids.remove(0), lens.remove(0))
    } else {
        (Tensor::cat(&ids, 0)?, Tensor::cat(&lens, 0)?)
    };
    Ok(BlockSelection {
        ids,
        lens,
        n_key_blocks: nk,
    })
}

/// The selection rule on `[h, nq, nk]` f32 scores: `(ids, lens)`, u32.
fn select_from_scores(
    scores: &Tensor,
    params: &BsaParams,
    sm_scale: f64,
) -> Result<(Tensor, Tensor)> {
    let (h, nq, nk) = scores.dims3()?;
    let device = scores.device();
    match (params.sparsity, params.cdf_threshold) {
        (Some(s), None) => {
            let k = topk_count(s, nk);
            // A stable descending sort: equal scores keep block order, as before.
            let order = scores.arg_sort_last_dim(false)?;
            let ids = order.narrow(2, 0, k)?.contiguous()?;
            let lens = Tensor::full(k as u32, (h, nq), device)?;
            Ok((ids, lens))
        }
        (sparsity, Some(threshold)) => {
            let weights = candle_nn::ops::softmax_last_dim(&(scores * sm_scale)?)?;
            let order = weights.arg_sort_last_dim(false)?;
            let sorted = weights.contiguous()?.gather(&order, 2)?;
            let cdf = sorted.cumsum(2)?;
            let mut lens = cdf.le(threshold as f32)?.to_dtype(DType::U32)?.sum(2)?;
            if let Some(s) = sparsity {
                let floor = Tensor::full(topk_count(s, nk) as u32, (h, nq), device)?;
                lens = lens.maximum(&floor)?;
            }
            Ok((order, lens))
        }
        (None, None) => Err(ModelError::InvalidArgument(
            "BSA needs a sparsity, a cdf_threshold, or both".into(),
        )),
    }
}

/// Output of [`bsa_attention`].
#[derive(Debug, Clone)]
pub struct BsaAttention {
    /// `[B, heads, Sq, D]` in raster order.
    pub output: Tensor,
    /// Which key blocks were used.
    pub selection: BlockSelection,
}

/// Block sparse attention over 3D token grids as the DiT runs it: the selection stays on the
/// device and the attention visits each query block's own key blocks with the online softmax
/// of [`crate::attention`], so memory does not grow with query blocks × selected blocks.
///
/// `q`: `[B, heads, Sq, D]`, `k`/`v`: `[B, heads, Sk, D]`, tokens in `(T, H, W)` raster order of
/// `grid_q` / `grid_k`. Each grid must be divisible by its chunk shape.
pub fn bsa_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    grid_q: [usize; 3],
    grid_k: [usize; 3],
    params: &BsaParams,
) -> Result<BsaAttention> {
    let (b, h, sq, d) = q.dims4()?;
    let sk = k.dim(2)?;
    if grid_q.iter().product::<usize>() != sq || grid_k.iter().product::<usize>() != sk {
        return Err(ModelError::InvalidArgument(format!(
            "BSA: grids {grid_q:?}/{grid_k:?} do not match sequence lengths {sq}/{sk}"
        )));
    }
    let cq_shape = params.chunk_3d_shape_q;
    let ck_shape = params.chunk_3d_shape_k;
    let nq_axes = blocks_of(grid_q, cq_shape, "query")?;
    let nk_axes = blocks_of(grid_k, ck_shape, "key")?;
    let cq: usize = cq_shape.iter().product();
    let ck: usize = ck_shape.iter().product();
    let sm_scale = 1.0 / (d as f64).sqrt();

    let q_blocks = to_chunks(q, nq_axes, cq_shape)?.reshape((b * h, sq, d))?;
    let k_blocks = to_chunks(k, nk_axes, ck_shape)?.reshape((b * h, sk, d))?;
    let v_blocks = to_chunks(v, nk_axes, ck_shape)?.reshape((b * h, sk, d))?;
    let selection = select_blocks(&q_blocks, &k_blocks, cq, ck, params)?;
    let out = block_sparse_attention(
        &q_blocks,
        &k_blocks,
        &v_blocks,
        &selection.ids,
        &selection.lens,
        cq,
        ck,
        sm_scale,
        Kernel::Auto,
    )?;
    let output = from_chunks(&out.reshape((b, h, sq, d))?, nq_axes, cq_shape)?;
    Ok(BsaAttention { output, selection })
}

/// Block sparse attention over 3D token grids (the official `flash_attn_bsa_3d`), with the
/// selection in the reference's output format (for parity checks).
///
/// `q`: `[B, heads, Sq, D]`, `k`/`v`: `[B, heads, Sk, D]`, tokens in `(T, H, W)` raster order of
/// `grid_q` / `grid_k`. Each grid must be divisible by its chunk shape.
pub fn flash_attn_bsa_3d(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    grid_q: [usize; 3],
    grid_k: [usize; 3],
    params: &BsaParams,
) -> Result<BsaOutput> {
    let (b, h, _, _) = q.dims4()?;
    let out = bsa_attention(q, k, v, grid_q, grid_k, params)?;
    let sel = &out.selection;
    let (_, nq, width) = sel.ids.dims3()?;
    let cpu = Device::Cpu;
    Ok(BsaOutput {
        block_indices: sel
            .ids
            .to_dtype(DType::I64)?
            .reshape((b, h, nq, width))?
            .to_device(&cpu)?,
        block_indices_lens: sel
            .lens
            .to_dtype(DType::I64)?
            .reshape((b, h, nq))?
            .to_device(&cpu)?,
        block_mask: sel
            .mask()?
            .reshape((b, h, nq, sel.n_key_blocks))?
            .to_device(&cpu)?,
        output: out.output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sparsity: Option<f64>, cdf: Option<f64>) -> BsaParams {
        BsaParams {
            sparsity,
            cdf_threshold: cdf,
            chunk_3d_shape_q: [2, 2, 2],
            chunk_3d_shape_k: [2, 2, 2],
        }
    }

    #[test]
    fn regrouping_round_trips() {
        let x = Tensor::arange(0f32, 2.0 * 64.0 * 3.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 64, 3))
            .unwrap();
        let g = to_chunks(&x, [2, 2, 2], [2, 2, 2]).unwrap();
        let back = from_chunks(&g, [2, 2, 2], [2, 2, 2]).unwrap();
        assert_eq!(crate::test_util::max_abs_diff(&back, &x), 0.0);
    }

    #[test]
    fn zero_sparsity_equals_dense_attention() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 64, 16), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 2, 64, 16), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 2, 64, 16), &dev).unwrap();
        let out =
            flash_attn_bsa_3d(&q, &k, &v, [4, 4, 4], [4, 4, 4], &params(Some(0.0), None)).unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * 0.25).unwrap();
        let dense = candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&v)
            .unwrap();
        let diff = crate::test_util::max_abs_diff(&out.output, &dense);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn full_sparsity_gives_zeros() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 1, 64, 16), &dev).unwrap();
        let out =
            flash_attn_bsa_3d(&q, &q, &q, [4, 4, 4], [4, 4, 4], &params(Some(0.9), None)).unwrap();
        assert_eq!(out.block_indices.dims(), &[1, 1, 8, 0]);
        let max = out.output.abs().unwrap().max_all().unwrap();
        assert_eq!(max.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn indivisible_grid_is_refused() {
        let q = Tensor::zeros((1, 1, 27, 16), DType::F32, &Device::Cpu).unwrap();
        let err = flash_attn_bsa_3d(&q, &q, &q, [3, 3, 3], [3, 3, 3], &params(Some(0.5), None));
        assert!(err.is_err());
    }

    #[test]
    fn topk_count_truncates_like_python() {
        assert_eq!(topk_count(0.875, 16), 2);
        assert_eq!(topk_count(0.9375, 8), 0);
        assert_eq!(topk_count(0.5, 8), 4);
    }
}
