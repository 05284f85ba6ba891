//! Block sparse attention (BSA) as used by the LongCat DiT in the refinement stage.
//!
//! Tokens of a `(T, H, W)` grid are regrouped into 3D chunks; each query chunk scores every key
//! chunk through mean-pooled representatives, keeps a few key chunks (top-k, CDF, or both), and
//! attends only to the tokens of the chunks it kept. The attention itself is computed on the
//! gathered blocks only, so its cost falls with the sparsity.

use candle_core::{DType, Device, Tensor};
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

/// Selected key blocks of one query block: ids in selection order and how many are used.
struct Selection {
    ids: Vec<i64>,
    len: usize,
}

/// `int((1 - sparsity) * n)` with Python float arithmetic.
fn topk_count(sparsity: f64, n: usize) -> usize {
    ((1.0 - sparsity) * n as f64) as usize
}

/// Indices of `row` sorted by descending value (stable for equal values).
fn argsort_desc(row: &[f32]) -> Vec<i64> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx.into_iter().map(|i| i as i64).collect()
}

/// Applies the reference's selection rule to one row of block scores.
fn select_row(scores: &[f32], params: &BsaParams, sm_scale: f32) -> Result<Selection> {
    let n = scores.len();
    match (params.sparsity, params.cdf_threshold) {
        (Some(s), None) => {
            let k = topk_count(s, n);
            let mut ids = argsort_desc(scores);
            ids.truncate(k);
            Ok(Selection { ids, len: k })
        }
        (sparsity, Some(threshold)) => {
            // softmax(score * scale), sorted descending, cumulative sum, searchsorted(right).
            let scaled: Vec<f32> = scores.iter().map(|s| s * sm_scale).collect();
            let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = scaled.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            let weights: Vec<f32> = exps.iter().map(|e| e / sum).collect();
            let ids = argsort_desc(&weights);
            let threshold = threshold as f32;
            let mut cdf = 0f32;
            let mut len = 0;
            for &i in &ids {
                cdf += weights[i as usize];
                if cdf <= threshold {
                    len += 1;
                } else {
                    break;
                }
            }
            if let Some(s) = sparsity {
                len = len.max(topk_count(s, n));
            }
            Ok(Selection { ids, len })
        }
        (None, None) => Err(ModelError::InvalidArgument(
            "BSA needs a sparsity, a cdf_threshold, or both".into(),
        )),
    }
}

/// Block sparse attention over 3D token grids (the official `flash_attn_bsa_3d`).
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
    let nq: usize = nq_axes.iter().product();
    let nk: usize = nk_axes.iter().product();
    let cq: usize = cq_shape.iter().product();
    let ck: usize = ck_shape.iter().product();
    let device = q.device().clone();
    let dtype = q.dtype();
    let sm_scale = 1.0 / (d as f64).sqrt();

    let q_blocks = to_chunks(q, nq_axes, cq_shape)?;
    let k_blocks = to_chunks(k, nk_axes, ck_shape)?;
    let v_blocks = to_chunks(v, nk_axes, ck_shape)?;

    // Gating: mean-pooled chunk representatives and their scores (f32).
    let q_cmp = q_blocks
        .to_dtype(DType::F32)?
        .reshape((b, h, nq, cq, d))?
        .mean(3)?;
    let k_cmp = k_blocks
        .to_dtype(DType::F32)?
        .reshape((b, h, nk, ck, d))?
        .mean(3)?;
    let scores = q_cmp.matmul(&k_cmp.t()?)?; // [B, H, nq, nk]
    let rows: Vec<Vec<f32>> = scores
        .reshape((b * h * nq, nk))?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?;
    let selections = rows
        .iter()
        .map(|row| select_row(row, params, sm_scale as f32))
        .collect::<Result<Vec<_>>>()?;

    let width = selections.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    let max_len = selections.iter().map(|s| s.len).max().unwrap_or(0);

    // Outputs describing the selection.
    let mut indices = Vec::with_capacity(rows.len() * width);
    let mut lens = Vec::with_capacity(rows.len());
    let mut mask = vec![0u8; rows.len() * nk];
    for (r, sel) in selections.iter().enumerate() {
        indices.extend(sel.ids.iter().copied());
        indices.extend(std::iter::repeat_n(0, width - sel.ids.len()));
        lens.push(sel.len as i64);
        for &id in &sel.ids[..sel.len] {
            mask[r * nk + id as usize] = 1;
        }
    }
    let block_indices = Tensor::from_vec(indices, (b, h, nq, width), &Device::Cpu)?;
    let block_indices_lens = Tensor::from_vec(lens, (b, h, nq), &Device::Cpu)?;
    let block_mask = Tensor::from_vec(mask, (b, h, nq, nk), &Device::Cpu)?;

    let output = if max_len == 0 {
        Tensor::zeros((b, h, sq, d), dtype, &device)?
    } else {
        let out = sparse_attention(
            &q_blocks,
            &k_blocks,
            &v_blocks,
            &selections,
            SparseShape {
                nq,
                nk,
                cq,
                ck,
                d,
                max_len,
            },
            sm_scale,
        )?;
        from_chunks(&out.reshape((b, h, sq, d))?, nq_axes, cq_shape)?
    };
    Ok(BsaOutput {
        output,
        block_indices,
        block_indices_lens,
        block_mask,
    })
}

/// Sizes for [`sparse_attention`].
#[derive(Clone, Copy)]
struct SparseShape {
    nq: usize,
    nk: usize,
    cq: usize,
    ck: usize,
    d: usize,
    max_len: usize,
}

/// Attention of every query block over its gathered key blocks only.
///
/// All query blocks are batched: their selected key/value blocks are gathered into
/// `[rows, max_len * ck, D]` (rows with fewer blocks are padded and the padding masked out),
/// so the work is proportional to the number of selected blocks, not to `Sk`.
fn sparse_attention(
    q_blocks: &Tensor,
    k_blocks: &Tensor,
    v_blocks: &Tensor,
    selections: &[Selection],
    s: SparseShape,
    sm_scale: f64,
) -> Result<Tensor> {
    let rows = selections.len(); // B * H * nq
    let bh = rows / s.nq;
    let device = q_blocks.device();
    let dtype = q_blocks.dtype();
    // Global block ids into k_blocks viewed as [B*H*nk, ck, D].
    let mut gather = Vec::with_capacity(rows * s.max_len);
    let mut bias = Vec::with_capacity(rows * s.max_len);
    let mut empty_rows = Vec::new();
    for (r, sel) in selections.iter().enumerate() {
        let base = (r / s.nq) * s.nk;
        for j in 0..s.max_len {
            if j < sel.len {
                gather.push((base + sel.ids[j] as usize) as u32);
                bias.push(0f32);
            } else {
                gather.push(base as u32);
                bias.push(f32::NEG_INFINITY);
            }
        }
        if sel.len == 0 {
            empty_rows.push(r);
        }
    }
    let gather = Tensor::from_vec(gather, rows * s.max_len, device)?;
    let k_all = k_blocks.reshape((bh * s.nk, s.ck, s.d))?;
    let v_all = v_blocks.reshape((bh * s.nk, s.ck, s.d))?;
    let k_sel = k_all
        .index_select(&gather, 0)?
        .reshape((rows, s.max_len * s.ck, s.d))?;
    let v_sel = v_all
        .index_select(&gather, 0)?
        .reshape((rows, s.max_len * s.ck, s.d))?;
    let q_rows = q_blocks.reshape((rows, s.cq, s.d))?;

    let scores = q_rows
        .to_dtype(DType::F32)?
        .matmul(&k_sel.to_dtype(DType::F32)?.t()?)?
        .affine(sm_scale, 0.0)?; // [rows, cq, max_len*ck]
    let needs_mask = selections.iter().any(|sel| sel.len < s.max_len);
    let scores = if needs_mask {
        let bias = Tensor::from_vec(bias, (rows, 1, s.max_len, 1), device)?
            .broadcast_as((rows, 1, s.max_len, s.ck))?
            .reshape((rows, 1, s.max_len * s.ck))?;
        scores.broadcast_add(&bias)?
    } else {
        scores
    };
    let weights = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = weights.to_dtype(dtype)?.matmul(&v_sel)?; // [rows, cq, D]
    if empty_rows.is_empty() {
        return Ok(out);
    }
    // Query blocks with no selected key block output zeros (their softmax is all NaN).
    let keep: Vec<f32> = (0..rows)
        .map(|r| if empty_rows.contains(&r) { 0.0 } else { 1.0 })
        .collect();
    let keep = Tensor::from_vec(keep, (rows, 1, 1), device)?.to_dtype(dtype)?;
    let out = out.where_cond(
        &keep.ne(0.0)?.broadcast_as(out.shape())?,
        &Tensor::zeros(out.shape(), dtype, device)?,
    )?;
    Ok(out)
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
        let diff = (back - &x).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
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
        let diff = (out.output - dense)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
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
    fn argsort_is_descending() {
        assert_eq!(argsort_desc(&[0.1, 0.9, 0.5]), vec![1, 2, 0]);
    }

    #[test]
    fn topk_count_truncates_like_python() {
        assert_eq!(topk_count(0.875, 16), 2);
        assert_eq!(topk_count(0.9375, 8), 0);
        assert_eq!(topk_count(0.5, 8), 4);
    }
}
