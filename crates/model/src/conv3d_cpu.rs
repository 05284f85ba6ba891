//! Native CPU kernel of the stride-1 causal conv3d in f32: no im2col.
//!
//! One task per (batch item, output frame, block of output channels); candle's CPU thread
//! pool runs the tasks (the pool that runs every other CPU op of the network, so no second
//! set of threads competes with its spinning workers), `gemm` runs without threading of its
//! own. A task walks its frame in bands of output rows.
//! For each band it copies the `kt` input frames it reads (leading causal zero frames
//! skipped) zero padded into `[kt', C, R + kh − 1, Wp]`. With the padded width `Wp`,
//! output position `n = r·Wp + x` of the band and tap `(dy, dx)` read the band at
//! `n + dy·Wp + dx`, and the `kt'` frames × `C` channels of a tap form one matrix whose
//! rows are evenly strided (by one padded plane), so each spatial tap is one gemm
//! `[O_blk, kt'·C] · [kt'·C, N]` accumulated into the band's product (started from the
//! bias); the `Wp − W_out` junk columns of every row are dropped when it is written out.
//! Memory per task: one padded band and one product, both bounded by the band budget
//! (one output row at least).

use gemm::{gemm, Parallelism};

/// Frames of the causally padded input of one batch item: `zeros` zero frames, then
/// `frames` (each `[C, H, W]`, contiguous).
pub(crate) struct ItemFrames<'a> {
    pub zeros: usize,
    pub frames: Vec<&'a [f32]>,
}

/// Sizes of one call.
#[derive(Clone, Copy)]
pub(crate) struct Geometry {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kernel: (usize, usize, usize),
    /// Spatial padding `[top, bottom, left, right]`.
    pub pad_hw: [usize; 4],
    pub t_out: usize,
    pub h_out: usize,
    pub w_out: usize,
}

/// Threads of candle's CPU pool (its workers and the calling thread).
pub(crate) fn pool_threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// Runs `task(i)` for `i in 0..n` on candle's CPU pool.
pub(crate) fn run_tasks(n: usize, task: impl Fn(usize) + Sync) {
    candle_core::utils::barrier_pool().execute_chunked(n, |range| range.for_each(&task));
}

/// A pointer into a buffer that tasks fill in disjoint parts.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32);

// Safety: tasks write disjoint ranges only (each user states which).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(buf: &mut [f32]) -> Self {
        Self(buf.as_mut_ptr())
    }

    /// # Safety
    /// `start + len` lies inside the buffer, and no other live slice overlaps the range.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Output channels per task: enough tasks to keep every thread busy, blocks of at least 16.
fn channel_block(o: usize, frames: usize) -> usize {
    let want = 2 * pool_threads();
    let splits = want.div_ceil(frames.max(1)).clamp(1, o.div_ceil(16).max(1));
    o.div_ceil(splits)
}

/// Convolves every batch item with `kernel` `[O, kh·kw·kt·C + 1]` (row-major: taps `(dy, dx)`
/// outer, then frames `dt`, then channels; the bias last); returns `[B, T_out, O, H_out, W_out]` (contiguous).
pub(crate) fn conv3d(
    items: &[ItemFrames],
    g: Geometry,
    kernel: &[f32],
    band_elems: usize,
) -> Vec<f32> {
    let plane_out = g.h_out * g.w_out;
    let frame_out = g.o * plane_out;
    let mut out = vec![0f32; items.len() * g.t_out * frame_out];
    if frame_out == 0 {
        return out;
    }
    let o_blk = channel_block(g.o, items.len() * g.t_out);
    let blocks = g.o.div_ceil(o_blk);
    let shared = SharedOut::new(&mut out);
    run_tasks(items.len() * g.t_out * blocks, |i| {
        let (bf, ob) = (i / blocks, i % blocks);
        let (b, f) = (bf / g.t_out, bf % g.t_out);
        let o0 = ob * o_blk;
        let o_len = o_blk.min(g.o - o0);
        // Safety: task `i` alone writes channels `o0 .. o0 + o_len` of frame `bf`.
        let slab = unsafe { shared.slice(bf * frame_out + o0 * plane_out, o_len * plane_out) };
        frame_task(&items[b], f, (o0, o_len), g, kernel, band_elems, slab);
    });
    out
}

/// Output frame `f`, channels `o0 .. o0 + o_len`, written to `slab` `[o_len, H_out, W_out]`.
fn frame_task(
    item: &ItemFrames,
    f: usize,
    (o0, o_len): (usize, usize),
    g: Geometry,
    kernel: &[f32],
    band_elems: usize,
    slab: &mut [f32],
) {
    let (kt, kh, kw) = g.kernel;
    let [top, _, left, right] = g.pad_hw;
    let (c, h, w) = (g.c, g.h, g.w);
    let wp = w + left + right;
    let k_all = kh * kw * kt * c + 1;
    // Taps that read causal zero frames contribute nothing.
    let dt0 = item.zeros.saturating_sub(f).min(kt);
    let kt_eff = kt - dt0;
    // Rows per band: padded band and product within the budget, one row at least.
    let budget = band_elems.max(1);
    let rows_in = (budget / (kt_eff.max(1) * c * wp).max(1)).saturating_sub(kh - 1);
    let rows_out = budget / (o_len * wp).max(1);
    let rows = rows_in.min(rows_out).clamp(1, g.h_out);
    let rp = rows + kh - 1;
    let plane = rp * wp;
    let bias_at = |o: usize| kernel[(o0 + o) * k_all + k_all - 1];
    let mut band = Vec::new();
    let mut prod = Vec::new();
    let mut r0 = 0;
    while r0 < g.h_out {
        let r = rows.min(g.h_out - r0);
        let n = (r - 1) * wp + g.w_out;
        prod.clear();
        for o in 0..o_len {
            let b = bias_at(o);
            prod.extend(std::iter::repeat_n(b, n));
        }
        if kt_eff > 0 {
            band.clear();
            band.resize(kt_eff * c * plane, 0f32);
            for j in 0..kt_eff {
                let src = item.frames[f + dt0 + j - item.zeros];
                for ch in 0..c {
                    for rr in 0..(r + kh - 1) {
                        let y = (r0 + rr) as isize - top as isize;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        let s = ch * h * w + y as usize * w;
                        let d = (j * c + ch) * plane + rr * wp + left;
                        band[d..d + w].copy_from_slice(&src[s..s + w]);
                    }
                }
            }
            let lhs_row0 = o0 * k_all;
            for dy in 0..kh {
                for dx in 0..kw {
                    let lhs_off = lhs_row0 + ((dy * kw + dx) * kt + dt0) * c;
                    let rhs_off = dy * wp + dx;
                    // The last column read is `n − 1 + (kh − 1)·Wp + kw − 1 < plane` of the
                    // last row `kt_eff·C − 1`: inside `band`. The kernel rows `o0 .. o0 +
                    // o_len` and columns up to `lhs_off + kt_eff·C` lie inside `kernel`.
                    debug_assert!(n - 1 + rhs_off < plane);
                    debug_assert!(lhs_off + (o_len - 1) * k_all + kt_eff * c <= kernel.len());
                    // Safety: the bounds above; `prod` is `o_len × n`, row-major.
                    unsafe {
                        gemm(
                            o_len,
                            n,
                            kt_eff * c,
                            prod.as_mut_ptr(),
                            1,
                            n as isize,
                            true,
                            kernel.as_ptr().add(lhs_off),
                            1,
                            k_all as isize,
                            band.as_ptr().add(rhs_off),
                            1,
                            plane as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                }
            }
        }
        for o in 0..o_len {
            for rr in 0..r {
                let d = (o * g.h_out + r0 + rr) * g.w_out;
                let s = o * n + rr * wp;
                slab[d..d + g.w_out].copy_from_slice(&prod[s..s + g.w_out]);
            }
        }
        r0 += r;
    }
}
