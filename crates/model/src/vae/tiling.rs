//! Optional spatial tiling of encode and decode: overlapping tiles in latent H/W (pixel
//! tiles of `scale_spatial ×` that size for encode), each run through the untiled causal
//! pass with its own causal cache, blended across the overlaps with linear ramps.
//!
//! Blending: along each axis a tile weighs 1 inside and ramps linearly over the part it
//! shares with its neighbour (`(p + 1) / (o + 1)` up, mirrored down), so two neighbours'
//! weights sum to 1 across an overlap of `o` positions. The accumulated sum is divided by
//! the summed weights, which keeps the result a convex combination wherever the last tile
//! (moved back to end at the frame's edge) overlaps more. One tile covering the frame has
//! weight 1 everywhere: the result is the untiled pass bit for bit.

use candle_core::{DType, Device, Tensor};

use super::WanVae;
use crate::conv3d::ConvKernelPlan;
use crate::{ModelError, Result};

/// Spatial tiling of the VAE (defined in `longcat-core`, where the worker settings parse it).
pub use longcat_core::VaeTiling;

impl From<longcat_core::settings::InvalidVaeTiling> for ModelError {
    fn from(e: longcat_core::settings::InvalidVaeTiling) -> Self {
        ModelError::InvalidArgument(e.0)
    }
}

/// Blend weights along one axis for tile `k` of `spans` (all in the same unit).
fn ramp(spans: &[(usize, usize)], k: usize) -> Vec<f32> {
    let (start, len) = spans[k];
    let end = start + len;
    let prev = k
        .checked_sub(1)
        .map_or(0, |j| (spans[j].0 + spans[j].1).saturating_sub(start));
    let next = spans.get(k + 1).map_or(0, |s| end.saturating_sub(s.0));
    (0..len)
        .map(|p| {
            let mut w = 1f32;
            if p < prev {
                w = w.min((p + 1) as f32 / (prev + 1) as f32);
            }
            if p + next >= len {
                w = w.min((len - p) as f32 / (next + 1) as f32);
            }
            w
        })
        .collect()
}

/// The blend weights of every tile (`[th·s, tw·s]`, f32, on `dev`) at `s` samples per latent
/// pixel, and `1 / Σ weights` over the whole `[h·s, w·s]` frame.
fn weights(
    tiling: VaeTiling,
    (h, w): (usize, usize),
    s: usize,
    dev: &Device,
) -> Result<(Vec<Tensor>, Tensor)> {
    let scaled = |v: Vec<(usize, usize)>| -> Vec<(usize, usize)> {
        v.into_iter().map(|(a, n)| (a * s, n * s)).collect()
    };
    let (ys, xs) = (scaled(tiling.spans(h)), scaled(tiling.spans(w)));
    let (hs, ws) = (h * s, w * s);
    let mut sum = vec![0f32; hs * ws];
    let mut maps = Vec::with_capacity(ys.len() * xs.len());
    for ky in 0..ys.len() {
        let wy = ramp(&ys, ky);
        for kx in 0..xs.len() {
            let wx = ramp(&xs, kx);
            let mut map = Vec::with_capacity(wy.len() * wx.len());
            for (i, a) in wy.iter().enumerate() {
                let row = &mut sum[(ys[ky].0 + i) * ws + xs[kx].0..][..wx.len()];
                for (j, b) in wx.iter().enumerate() {
                    map.push(a * b);
                    row[j] += a * b;
                }
            }
            maps.push(Tensor::from_vec(map, (wy.len(), wx.len()), dev)?);
        }
    }
    let inv: Vec<f32> = sum.iter().map(|v| 1.0 / v).collect();
    Ok((maps, Tensor::from_vec(inv, (hs, ws), dev)?))
}

/// `weight · x` placed at `(y, x)` of an `hs × ws` plane (last two dims), zeros elsewhere.
fn place(
    x: &Tensor,
    weight: &Tensor,
    (y, xo): (usize, usize),
    (hs, ws): (usize, usize),
) -> Result<Tensor> {
    let r = x.rank();
    let (th, tw) = (x.dim(r - 2)?, x.dim(r - 1)?);
    let x = x.to_dtype(DType::F32)?.broadcast_mul(weight)?;
    let x = x.pad_with_zeros(r - 2, y, hs - y - th)?;
    Ok(x.pad_with_zeros(r - 1, xo, ws - xo - tw)?)
}

/// Tiled encode of `video` `[B, C, F, H, W]`: each pixel tile through the causal encoder;
/// returns the blended moments `[B, T, 2z, H/s, W/s]` in the VAE's dtype.
pub(super) fn encode(
    vae: &WanVae,
    tiling: VaeTiling,
    video: &Tensor,
    trace: bool,
    traces: &mut Vec<ConvKernelPlan>,
) -> Result<Tensor> {
    let s = vae.cfg.scale_spatial();
    let (_, _, _, height, width) = video.dims5()?;
    if !height.is_multiple_of(s) || !width.is_multiple_of(s) {
        return Err(ModelError::InvalidArgument(format!(
            "VAE tiled encode: {height}×{width} pixels (sides must be divisible by {s})"
        )));
    }
    let (h, w) = (height / s, width / s);
    let (maps, inv) = weights(tiling, (h, w), 1, video.device())?;
    let mut acc: Option<Tensor> = None;
    for (((y, th), (x, tw)), map) in tiling.tiles(h, w).into_iter().zip(&maps) {
        let tile = video.narrow(3, y * s, th * s)?.narrow(4, x * s, tw * s)?;
        let moments = vae.encode_tile(&tile, trace, traces)?;
        let placed = place(&moments, map, (y, x), (h, w))?;
        acc = Some(match acc {
            None => placed,
            Some(a) => (a + placed)?,
        });
    }
    let acc =
        acc.ok_or_else(|| ModelError::InvalidArgument("VAE tiled encode: no tiles".into()))?;
    Ok(acc.broadcast_mul(&inv)?.to_dtype(vae.dtype())?)
}

/// Tiled decode of latents `[B, z, T, h, w]`: each latent tile through all frames with its
/// own causal cache, blended into f32 chunks; then the chunks `[B, 3, f, H, W]` (VAE dtype)
/// go to `sink` in order.
pub(super) fn decode(
    vae: &WanVae,
    tiling: VaeTiling,
    z: &Tensor,
    trace: bool,
    traces: &mut Vec<ConvKernelPlan>,
    sink: &mut dyn FnMut(Tensor) -> Result<()>,
) -> Result<()> {
    let s = vae.cfg.scale_spatial();
    let (_, _, _, h, w) = z.dims5()?;
    let (maps, inv) = weights(tiling, (h, w), s, z.device())?;
    let mut chunks: Vec<Tensor> = Vec::new();
    for (((y, th), (x, tw)), map) in tiling.tiles(h, w).into_iter().zip(&maps) {
        let tile = z.narrow(3, y, th)?.narrow(4, x, tw)?;
        let mut i = 0;
        vae.decode_tile(&tile, trace, traces, &mut |chunk| {
            let placed = place(&chunk, map, (y * s, x * s), (h * s, w * s))?;
            match chunks.get_mut(i) {
                Some(c) => *c = (&*c + placed)?,
                None => chunks.push(placed),
            }
            i += 1;
            Ok(())
        })?;
    }
    for chunk in chunks {
        sink(chunk.broadcast_mul(&inv)?.to_dtype(vae.dtype())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tile_and_overlap() {
        assert_eq!(
            "32".parse::<VaeTiling>().unwrap(),
            VaeTiling::new(32, 8).unwrap()
        );
        assert_eq!(
            " 16 , 5".parse::<VaeTiling>().unwrap(),
            VaeTiling::new(16, 5).unwrap()
        );
        assert_eq!("3".parse::<VaeTiling>().unwrap().overlap, 0);
        for bad in ["", "0", "8,8", "8,9", "x", "8,", "8,2,1"] {
            assert!(bad.parse::<VaeTiling>().is_err(), "{bad:?}");
        }
        let t = VaeTiling::new(24, 6).unwrap();
        assert_eq!(t.to_string().parse::<VaeTiling>().unwrap(), t);
    }

    /// Tiles cover the axis, all of one size, stepping by `tile − overlap` except the last,
    /// which ends at the edge; odd sizes included.
    #[test]
    fn spans_cover_the_axis() {
        for tile in 1..9 {
            for overlap in 0..tile {
                let t = VaeTiling::new(tile, overlap).unwrap();
                for n in 1..30 {
                    let spans = t.spans(n);
                    assert_eq!(spans[0].0, 0);
                    let (last, len) = spans[spans.len() - 1];
                    assert_eq!(last + len, n, "{tile},{overlap} n {n}");
                    for w in spans.windows(2) {
                        assert_eq!(w[0].1, tile.min(n));
                        assert!(w[1].0 > w[0].0);
                        // neighbours overlap by at least `overlap` and leave no gap
                        assert!(w[0].0 + w[0].1 >= w[1].0 + overlap);
                    }
                    for p in spans.windows(2).take(spans.len().saturating_sub(2)) {
                        assert_eq!(p[1].0 - p[0].0, tile - overlap);
                    }
                }
            }
        }
        assert_eq!(
            VaeTiling::new(6, 2).unwrap().spans(13),
            [(0, 6), (4, 6), (7, 6)]
        );
    }

    /// Where at most two tiles meet, the ramps alone sum to 1, so the normalisation does
    /// not change the blend; every weight is positive.
    #[test]
    fn ramps_are_a_partition_of_unity() {
        let mut checked = 0;
        for (tile, overlap) in [(6, 2), (6, 3), (5, 1), (8, 0), (4, 2), (7, 5)] {
            let t = VaeTiling::new(tile, overlap).unwrap();
            for n in [4, 7, 13, 16, 21] {
                for s in [1, 8] {
                    let (h, w) = (n, n + 3);
                    let (maps, inv) = weights(t, (h, w), s, &Device::Cpu).unwrap();
                    let inv: Vec<f32> = inv.flatten_all().unwrap().to_vec1().unwrap();
                    let cover = |n: usize, p: usize| {
                        let spans = t.spans(n);
                        spans
                            .iter()
                            .filter(|(a, l)| p / s >= *a && p / s < a + l)
                            .count()
                    };
                    for (i, v) in inv.iter().enumerate() {
                        let (y, x) = (i / (w * s), i % (w * s));
                        if cover(h, y) <= 2 && cover(w, x) <= 2 {
                            assert!((v - 1.0).abs() < 1e-6, "{tile},{overlap} n {n} s {s}: {v}");
                            checked += 1;
                        }
                        assert!(*v > 0.0 && v.is_finite());
                    }
                    for m in maps {
                        let m: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
                        assert!(m.iter().all(|v| *v > 0.0 && *v <= 1.0));
                    }
                }
            }
        }
        assert!(checked > 10_000);
    }
}
