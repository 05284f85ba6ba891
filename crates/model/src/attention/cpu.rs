//! The CPU kernel of flash-style attention: f32, one task per (batch·head, query tile), keys
//! visited in runs, online softmax in base 2, both products through `gemm` without threading
//! of its own (rayon runs the tasks). Memory per task: one score tile and one output tile.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::softmax::{row_kernels, RowKernels};

/// Query rows per task of dense attention.
pub const DENSE_QUERY_TILE: usize = 128;
/// Key columns per online-softmax step (dense attention; BSA groups whole key blocks up to it).
pub const KEY_TILE: usize = 512;

/// A `[BH, S, D]` f32 view whose rows are contiguous (`D` elements) and strided by
/// `row_stride`; `bh_stride[0]`/`bh_stride[1]` step over the batch and the head.
#[derive(Clone, Copy)]
pub struct RowsView<'a> {
    /// The whole storage.
    pub data: &'a [f32],
    /// Offset of element `[0, 0, 0]`.
    pub start: usize,
    /// Heads per batch item (to split a flat `bh` index).
    pub heads: usize,
    /// Strides of the batch and head dims.
    pub bh_stride: [usize; 2],
    /// Stride between consecutive rows.
    pub row_stride: usize,
}

impl RowsView<'_> {
    fn row_ptr(&self, bh: usize, row: usize) -> *const f32 {
        let (b, h) = (bh / self.heads, bh % self.heads);
        let off =
            self.start + b * self.bh_stride[0] + h * self.bh_stride[1] + row * self.row_stride;
        debug_assert!(off < self.data.len());
        // In bounds: the caller built the view from a layout that covers every row it asks for.
        self.data[off..].as_ptr()
    }
}

/// One run of consecutive keys: rows `start..start + len` of head `bh`.
#[derive(Clone, Copy)]
struct KeyRun {
    start: usize,
    len: usize,
}

/// Scratch of one task.
struct Tile {
    scores: Vec<f32>,
    acc: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl Tile {
    fn new(rows: usize, d: usize) -> Self {
        Self {
            scores: vec![0.0; rows * KEY_TILE],
            acc: vec![0.0; rows * d],
            max: vec![f32::NEG_INFINITY; rows],
            sum: vec![0.0; rows],
        }
    }
}

/// Shapes and constants shared by every task of one call.
#[derive(Clone, Copy)]
struct Problem<'a> {
    q: RowsView<'a>,
    k: RowsView<'a>,
    v: RowsView<'a>,
    d: usize,
    /// `scale * log2(e)`.
    c: f32,
    kernels: RowKernels,
}

/// Attends `rows` query rows from `q_row0` of head `bh` to the key runs, in order, and writes
/// the normalised output to `out` (`rows * d`). `bias(start, len)` gives the additive key bias
/// of a run (natural-log units), if any. Rows whose runs are empty get zeros.
fn attend_rows<'b>(
    p: &Problem,
    bh: usize,
    q_row0: usize,
    rows: usize,
    runs: impl Iterator<Item = KeyRun>,
    bias: impl Fn(usize, usize) -> Option<&'b [f32]>,
    out: &mut [f32],
) {
    let d = p.d;
    let mut tile = Tile::new(rows, d);
    let q_ptr = p.q.row_ptr(bh, q_row0);
    let mut group: Vec<KeyRun> = Vec::with_capacity(KEY_TILE);
    let mut cols = 0;
    let flush = |group: &mut Vec<KeyRun>, cols: usize, tile: &mut Tile| {
        if cols > 0 {
            step(p, bh, q_ptr, rows, group, cols, &bias, tile);
        }
        group.clear();
    };
    for run in runs {
        // Split runs longer than a tile; group short ones up to a tile.
        let mut start = run.start;
        let mut left = run.len;
        while left > 0 {
            if cols == KEY_TILE {
                flush(&mut group, cols, &mut tile);
                cols = 0;
            }
            let len = left.min(KEY_TILE - cols);
            group.push(KeyRun { start, len });
            cols += len;
            start += len;
            left -= len;
        }
    }
    flush(&mut group, cols, &mut tile);
    for r in 0..rows {
        let o = &mut out[r * d..(r + 1) * d];
        let l = tile.sum[r];
        let a = &tile.acc[r * d..(r + 1) * d];
        if l > 0.0 {
            let inv = 1.0 / l;
            for (o, a) in o.iter_mut().zip(a) {
                *o = a * inv;
            }
        } else {
            o.fill(0.0);
        }
    }
}

/// One online-softmax step over the key runs of `group` (`cols` keys in all).
#[allow(clippy::too_many_arguments)]
fn step<'b>(
    p: &Problem,
    bh: usize,
    q_ptr: *const f32,
    rows: usize,
    group: &[KeyRun],
    cols: usize,
    bias: &impl Fn(usize, usize) -> Option<&'b [f32]>,
    tile: &mut Tile,
) {
    let d = p.d;
    let ld = KEY_TILE;
    // S[:, col..col+len] = Q · K_runᵀ
    let mut col = 0;
    for run in group {
        let k_ptr = p.k.row_ptr(bh, run.start);
        // Safety: pointers come from views that cover `rows`/`run.len` rows of `d` elements;
        // the destination block lies inside `scores` (rows * KEY_TILE).
        unsafe {
            gemm(
                rows,
                run.len,
                d,
                tile.scores.as_mut_ptr().add(col),
                1,
                ld as isize,
                false,
                q_ptr,
                1,
                p.q.row_stride as isize,
                k_ptr,
                p.k.row_stride as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        col += run.len;
    }
    // Online softmax per row, bias gathered per run.
    let biases: Vec<Option<&[f32]>> = group.iter().map(|r| bias(r.start, r.len)).collect();
    let any_bias = biases.iter().any(Option::is_some);
    for r in 0..rows {
        let row = &mut tile.scores[r * ld..r * ld + cols];
        let mut mx = f32::NEG_INFINITY;
        if any_bias {
            let mut c0 = 0;
            for (run, b) in group.iter().zip(&biases) {
                let seg = &mut row[c0..c0 + run.len];
                mx = mx.max((p.kernels.scale_max)(seg, p.c, *b));
                c0 += run.len;
            }
        } else {
            mx = (p.kernels.scale_max)(row, p.c, None);
        }
        let m_old = tile.max[r];
        let m_new = m_old.max(mx);
        let alpha = if m_old == f32::NEG_INFINITY {
            0.0
        } else {
            super::softmax::exp2(m_old - m_new)
        };
        let s = (p.kernels.exp2_sum)(row, m_new);
        tile.sum[r] = tile.sum[r] * alpha + s;
        tile.max[r] = m_new;
        if alpha != 1.0 {
            (p.kernels.scale)(&mut tile.acc[r * d..(r + 1) * d], alpha);
        }
    }
    // O += P[:, col..col+len] · V_run
    let mut col = 0;
    for run in group {
        let v_ptr = p.v.row_ptr(bh, run.start);
        // Safety: as above; `acc` is rows * d.
        unsafe {
            gemm(
                rows,
                d,
                run.len,
                tile.acc.as_mut_ptr(),
                1,
                d as isize,
                true,
                tile.scores.as_ptr().add(col),
                1,
                ld as isize,
                v_ptr,
                1,
                p.v.row_stride as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        col += run.len;
    }
}

/// Dense attention `softmax(q kᵀ · scale + bias) v` of `[BH, sq, d]` queries over `[BH, sk, d]`
/// keys; `key_bias` is `[B, sk]` (natural-log units, added to every head and query row).
/// Returns the contiguous `[BH, sq, d]` output.
#[allow(clippy::too_many_arguments)]
pub fn dense(
    q: RowsView,
    k: RowsView,
    v: RowsView,
    bh: usize,
    sq: usize,
    sk: usize,
    d: usize,
    scale: f32,
    key_bias: Option<&[f32]>,
) -> Vec<f32> {
    let p = Problem {
        q,
        k,
        v,
        d,
        c: scale * super::softmax::LOG2_E,
        kernels: row_kernels(),
    };
    let heads = q.heads;
    let mut out = vec![0f32; bh * sq * d];
    if sq == 0 || d == 0 {
        return out;
    }
    out.par_chunks_mut(sq * d)
        .enumerate()
        .for_each(|(h, out_h)| {
            let batch = h / heads;
            let bias_row = key_bias.map(|b| &b[batch * sk..(batch + 1) * sk]);
            out_h
                .par_chunks_mut(DENSE_QUERY_TILE * d)
                .enumerate()
                .for_each(|(t, o)| {
                    let rows = o.len() / d;
                    let runs = (0..sk).step_by(KEY_TILE).map(|s| KeyRun {
                        start: s,
                        len: KEY_TILE.min(sk - s),
                    });
                    attend_rows(
                        &p,
                        h,
                        t * DENSE_QUERY_TILE,
                        rows,
                        runs,
                        |s, l| bias_row.map(|b| &b[s..s + l]),
                        o,
                    );
                });
        });
    out
}

/// Block sparse attention: query block `i` of head `h` (rows `i*cq..(i+1)*cq` of `q`) attends to
/// key blocks `ids[h][i][..lens[h][i]]` (rows `id*ck..(id+1)*ck` of `k`/`v`), in that order.
/// `ids` is `[BH, nq, width]`, `lens` `[BH, nq]`. Returns the contiguous `[BH, nq*cq, d]`
/// output; a query block with no key block gets zeros.
#[allow(clippy::too_many_arguments)]
pub fn block_sparse(
    q: RowsView,
    k: RowsView,
    v: RowsView,
    ids: &[u32],
    lens: &[u32],
    bh: usize,
    nq: usize,
    width: usize,
    cq: usize,
    ck: usize,
    d: usize,
    scale: f32,
) -> Vec<f32> {
    let p = Problem {
        q,
        k,
        v,
        d,
        c: scale * super::softmax::LOG2_E,
        kernels: row_kernels(),
    };
    let mut out = vec![0f32; bh * nq * cq * d];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(cq * d).enumerate().for_each(|(row, o)| {
        let (h, i) = (row / nq, row % nq);
        let len = (lens[row] as usize).min(width);
        let sel = &ids[row * width..row * width + len];
        let runs = sel.iter().map(|&id| KeyRun {
            start: id as usize * ck,
            len: ck,
        });
        attend_rows(&p, h, i * cq, cq, runs, |_, _| None, o);
    });
    out
}
