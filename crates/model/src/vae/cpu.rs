//! Native CPU kernels of the VAE's elementwise stages (f32): the channel RMS norm fused with
//! the SiLU that follows it. One pass over the input instead of eight tensor ops; tasks of
//! one frame's pixel range run on candle's CPU pool, like the conv3d kernel.

use crate::conv3d::cpu::{run_tasks, SharedOut};

/// Pixels per task (and per partial-sum buffer).
const PIXELS: usize = 1024;

/// `y = x / max(‖x‖, 1e-12) · scale · γ_c` over the channels of `x` `[N, C, P]` (contiguous),
/// then `y · sigmoid(y)` when `silu`. Returns `[N, C, P]`.
pub(crate) fn rms_norm(
    x: &[f32],
    (n, c, p): (usize, usize, usize),
    gamma: &[f32],
    scale: f32,
    silu: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; n * c * p];
    if out.is_empty() {
        return out;
    }
    let chunks = p.div_ceil(PIXELS);
    let shared = SharedOut::new(&mut out);
    run_tasks(n * chunks, |i| {
        let (f, j0) = (i / chunks, (i % chunks) * PIXELS);
        let len = PIXELS.min(p - j0);
        let frame = &x[f * c * p..(f + 1) * c * p];
        let mut inv = vec![0f32; len];
        for ch in 0..c {
            let row = &frame[ch * p + j0..ch * p + j0 + len];
            for (a, v) in inv.iter_mut().zip(row) {
                *a += v * v;
            }
        }
        for a in inv.iter_mut() {
            *a = scale / a.sqrt().max(1e-12);
        }
        for (ch, g) in gamma.iter().enumerate().take(c) {
            let row = &frame[ch * p + j0..ch * p + j0 + len];
            // Safety: task `i` alone writes pixels `j0 .. j0 + len` of frame `f`.
            let dst = unsafe { shared.slice((f * c + ch) * p + j0, len) };
            if silu {
                for ((d, v), s) in dst.iter_mut().zip(row).zip(&inv) {
                    let y = v * s * g;
                    *d = y / (1.0 + (-y).exp());
                }
            } else {
                for ((d, v), s) in dst.iter_mut().zip(row).zip(&inv) {
                    *d = v * s * g;
                }
            }
        }
    });
    out
}
