//! Spatial ×2 up- and downsampling, with the causal time convolution of the 3D modes.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::cache::{last_frames, FeatCache, Slot, CACHE_T};
use crate::conv3d::{CausalConv3d, Conv3dSpec};
use crate::Result;

/// What a [`Resample`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResampleMode {
    Up2d,
    Up3d,
    Down2d,
    Down3d,
}

/// Spatial ×2 up/down sampling (per frame), with a causal temporal conv for the 3D modes.
#[derive(Debug, Clone)]
pub(super) struct Resample {
    mode: ResampleMode,
    conv: CausalConv3d,
    time_conv: Option<CausalConv3d>,
}

/// Spec of a resampler's per-frame 3×3 conv.
pub(super) fn resample_spec(dim: usize, mode: ResampleMode) -> Conv3dSpec {
    match mode {
        ResampleMode::Up2d | ResampleMode::Up3d => Conv3dSpec::spatial(dim, dim / 2, 3, 1, [1; 4]),
        ResampleMode::Down2d | ResampleMode::Down3d => {
            Conv3dSpec::spatial(dim, dim, 3, 2, [0, 1, 0, 1])
        }
    }
}

/// Spec of a resampler's temporal conv.
pub(super) fn time_conv_spec(dim: usize, mode: ResampleMode) -> Option<Conv3dSpec> {
    match mode {
        ResampleMode::Up3d => Some(Conv3dSpec::temporal(dim, 2 * dim, 3, 1, 1)),
        ResampleMode::Down3d => Some(Conv3dSpec::temporal(dim, dim, 3, 2, 0)),
        _ => None,
    }
}

impl Resample {
    pub(super) fn new(dim: usize, mode: ResampleMode, vb: VarBuilder) -> Result<Self> {
        let conv = CausalConv3d::new_2d(resample_spec(dim, mode), vb.pp("resample.1"))?;
        let time_conv = match time_conv_spec(dim, mode) {
            Some(spec) => Some(CausalConv3d::new(spec, vb.pp("time_conv"))?),
            None => None,
        };
        Ok(Self {
            mode,
            conv,
            time_conv,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let mut x = x.clone();
        if let (ResampleMode::Up3d, Some(tc)) = (self.mode, &self.time_conv) {
            x = Self::time_upsample(tc, &x, cache)?;
        }
        if matches!(self.mode, ResampleMode::Up2d | ResampleMode::Up3d) {
            let (b, t, c, h, w) = x.dims5()?;
            x = x
                .reshape((b * t, c, h, w))?
                .upsample_nearest2d(2 * h, 2 * w)?
                .reshape((b, t, c, 2 * h, 2 * w))?;
        }
        let mut y = cache.conv(&self.conv, &x, None)?;
        if let (ResampleMode::Down3d, Some(tc)) = (self.mode, &self.time_conv) {
            let slot = cache.next();
            match cache.take(slot) {
                Slot::Frames(p) => {
                    let keep = last_frames(&y, 1)?;
                    let joined = Tensor::cat(&[&last_frames(&p, 1)?, &y], 1)?;
                    y = cache.conv(tc, &joined, None)?;
                    cache.slots[slot] = Slot::Frames(keep);
                }
                _ => cache.slots[slot] = Slot::Frames(y.copy()?),
            }
        }
        Ok(y)
    }

    /// Doubles the frame count with the time conv (skipped on the very first chunk).
    fn time_upsample(tc: &CausalConv3d, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let slot = cache.next();
        let past = match cache.take(slot) {
            Slot::Empty => {
                cache.slots[slot] = Slot::Rep;
                return Ok(x.clone());
            }
            Slot::Rep => None,
            Slot::Frames(p) => Some(p),
        };
        let mut keep = last_frames(x, CACHE_T)?;
        if keep.dim(1)? < CACHE_T {
            let prev = match &past {
                Some(p) => last_frames(p, 1)?,
                None => keep.zeros_like()?,
            };
            keep = Tensor::cat(&[&prev, &keep], 1)?;
        }
        let y = cache.conv(tc, x, past.as_ref())?;
        cache.slots[slot] = Slot::Frames(keep);
        let (b, t, c2, h, w) = y.dims5()?;
        let c = c2 / 2;
        // channels [j·C + c] of frame t become channel c of frame 2t + j
        Ok(y.reshape((b, t * 2, c, h, w))?)
    }
}
