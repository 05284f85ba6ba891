//! The CPU kernel and the tiled tensor ops against plain `softmax(q kᵀ s + b) v`.

use crate::test_util::max_abs_diff;
use candle_core::{Device, Tensor, D};

use super::*;

fn naive(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f64) -> Tensor {
    let mut s = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
    if let Some(b) = bias {
        s = s.broadcast_add(b).unwrap();
    }
    candle_nn::ops::softmax_last_dim(&s)
        .unwrap()
        .matmul(v)
        .unwrap()
}

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
}

#[test]
fn dense_matches_naive_on_odd_sizes_and_both_kernels() {
    // Key counts below, at and across the key tile; query rows across the query tile.
    for (sq, sk) in [(1, 1), (7, 33), (130, 512), (129, 1100)] {
        let q = randn(&[2, 3, sq, 24]);
        let k = randn(&[2, 3, sk, 24]);
        let v = randn(&[2, 3, sk, 24]);
        let want = naive(&q, &k, &v, None, 0.3);
        for kernel in [Kernel::Auto, Kernel::Tiled] {
            let got = flash_attention_with(&q, &k, &v, None, 0.3, kernel).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 2e-5, "sq {sq} sk {sk} {kernel:?}: {diff}");
        }
    }
}

#[test]
fn dense_reads_strided_inputs_without_copies_of_its_own() {
    // q narrowed along the sequence and k/v viewed as [B, S, H, D] transposed.
    let big = randn(&[1, 2, 300, 16]);
    let q = big.narrow(2, 17, 200).unwrap();
    let kv = randn(&[1, 250, 2, 16]);
    let k = kv.transpose(1, 2).unwrap();
    let v = (kv.transpose(1, 2).unwrap() * 0.5).unwrap();
    let want = naive(
        &q.contiguous().unwrap(),
        &k.contiguous().unwrap(),
        &v.contiguous().unwrap(),
        None,
        0.25,
    );
    let got = flash_attention(&q, &k, &v, None, 0.25).unwrap();
    assert!(max_abs_diff(&got, &want) < 2e-5);
}

#[test]
fn key_bias_masks_keys_per_batch_item() {
    let q = randn(&[2, 2, 40, 8]);
    let k = randn(&[2, 2, 600, 8]);
    let v = randn(&[2, 2, 600, 8]);
    // Batch 0 keeps 10 keys, batch 1 keeps 590: the rest get -1e30 (as `mask_bias`).
    let keep: Vec<f32> = (0..1200)
        .map(|i| {
            let (b, j) = (i / 600, i % 600);
            if (b == 0 && j < 10) || (b == 1 && j < 590) {
                0.0
            } else {
                -1e30
            }
        })
        .collect();
    let bias = Tensor::from_vec(keep, (2, 1, 1, 600), &Device::Cpu).unwrap();
    let want = naive(&q, &k, &v, Some(&bias), 0.35);
    for kernel in [Kernel::Auto, Kernel::Tiled] {
        let got = flash_attention_with(&q, &k, &v, Some(&bias), 0.35, kernel).unwrap();
        assert!(max_abs_diff(&got, &want) < 2e-5, "{kernel:?}");
    }
}

/// Dense reference of block sparse attention: each query block over the concatenation of
/// its selected key blocks.
fn naive_bsa(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    ids: &[Vec<Vec<u32>>],
    cq: usize,
    ck: usize,
    scale: f64,
) -> Tensor {
    let (bh, sq, d) = q.dims3().unwrap();
    let mut rows = Vec::new();
    for (h, blocks) in ids.iter().enumerate() {
        for (i, sel) in blocks.iter().enumerate() {
            let qb = q.get(h).unwrap().narrow(0, i * cq, cq).unwrap();
            if sel.is_empty() {
                rows.push(Tensor::zeros((cq, d), DType::F32, &Device::Cpu).unwrap());
                continue;
            }
            let pick = |t: &Tensor| {
                let parts: Vec<Tensor> = sel
                    .iter()
                    .map(|&j| t.get(h).unwrap().narrow(0, j as usize * ck, ck).unwrap())
                    .collect();
                Tensor::cat(&parts, 0).unwrap()
            };
            let s = (qb.matmul(&pick(k).t().unwrap()).unwrap() * scale).unwrap();
            let p = candle_nn::ops::softmax(&s, D::Minus1).unwrap();
            rows.push(p.matmul(&pick(v)).unwrap());
        }
    }
    Tensor::cat(&rows, 0).unwrap().reshape((bh, sq, d)).unwrap()
}

#[test]
fn block_sparse_matches_naive_with_ragged_and_empty_selections() {
    let (bh, nq, nk, cq, ck, d) = (3, 5, 12, 8, 16, 20);
    let q = randn(&[bh, nq * cq, d]);
    let k = randn(&[bh, nk * ck, d]);
    let v = randn(&[bh, nk * ck, d]);
    let width = 9;
    let mut ids = Vec::new();
    let mut flat: Vec<u32> = Vec::new();
    let mut lens = Vec::new();
    for h in 0..bh {
        let mut blocks = Vec::new();
        for i in 0..nq {
            let len = (h * 7 + i * 3) % (width + 1); // 0..=width, includes empty rows
            let row: Vec<u32> = (0..width)
                .map(|j| ((i * 5 + j * 7 + h) % nk) as u32)
                .collect();
            flat.extend(&row);
            lens.push(len as u32);
            blocks.push(row[..len].to_vec());
        }
        ids.push(blocks);
    }
    assert!(lens.contains(&0));
    let ids_t = Tensor::from_vec(flat, (bh, nq, width), &Device::Cpu).unwrap();
    let lens_t = Tensor::from_vec(lens, (bh, nq), &Device::Cpu).unwrap();
    let want = naive_bsa(&q, &k, &v, &ids, cq, ck, 0.2);
    for kernel in [Kernel::Auto, Kernel::Tiled] {
        let got = block_sparse_attention(&q, &k, &v, &ids_t, &lens_t, cq, ck, 0.2, kernel).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 2e-5, "{kernel:?}: {diff}");
    }
}

#[test]
fn mismatched_shapes_are_refused() {
    let q = randn(&[1, 2, 4, 8]);
    let k = randn(&[1, 2, 5, 4]);
    assert!(flash_attention(&q, &k, &k, None, 1.0).is_err());
}
