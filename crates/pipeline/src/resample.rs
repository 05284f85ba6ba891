//! Linear resampling with `align_corners=True` (PyTorch `F.interpolate` bilinear/trilinear),
//! used to upsample stage-1 frames for the refinement stage.

use candle_core::{Device, Tensor};

use crate::api::RgbImage;
use crate::components::Result;

/// Source indices and weights of a 1-D `align_corners=True` linear resize.
fn linear_taps(in_size: usize, out_size: usize) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    let scale = if out_size > 1 {
        (in_size as f32 - 1.0) / (out_size as f32 - 1.0)
    } else {
        0.0
    };
    let mut i0 = Vec::with_capacity(out_size);
    let mut i1 = Vec::with_capacity(out_size);
    let mut w = Vec::with_capacity(out_size);
    for j in 0..out_size {
        let src = scale * j as f32;
        let lo = (src as usize).min(in_size - 1);
        let hi = if lo < in_size - 1 { lo + 1 } else { lo };
        let lambda = (src - lo as f32).clamp(0.0, 1.0);
        i0.push(lo as u32);
        i1.push(hi as u32);
        w.push(lambda);
    }
    (i0, i1, w)
}

/// Resizes dimension `dim` of `x` to `out_size` by linear interpolation (align corners).
pub fn resize_dim(x: &Tensor, dim: usize, out_size: usize) -> Result<Tensor> {
    let in_size = x.dim(dim)?;
    if in_size == out_size {
        return Ok(x.clone());
    }
    let (i0, i1, w) = linear_taps(in_size, out_size);
    let dev = x.device();
    let x = x.contiguous()?;
    let a = x.index_select(&Tensor::new(i0.as_slice(), dev)?, dim)?;
    let b = x.index_select(&Tensor::new(i1.as_slice(), dev)?, dim)?;
    let mut shape = vec![1usize; x.rank()];
    shape[dim] = out_size;
    let w1 = Tensor::from_vec(w, shape, dev)?.to_dtype(x.dtype())?;
    let w0 = (1.0 - &w1)?;
    Ok((a.broadcast_mul(&w0)? + b.broadcast_mul(&w1)?)?)
}

/// Stage-1 frames → the refinement input `[1, 3, F2, H, W]` in `[-1, 1]`: bilinear resize of
/// the 8-bit frames to `(height, width)`, `/255`, linear resize in time to `out_frames`,
/// then `·2 − 1`.
pub fn upsample_video(
    frames: &[RgbImage],
    height: usize,
    width: usize,
    out_frames: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut per_frame = Vec::with_capacity(frames.len());
    for f in frames {
        let v: Vec<f32> = f.data.iter().map(|&b| b as f32).collect();
        let t = Tensor::from_vec(v, (f.height as usize, f.width as usize, 3), device)?
            .permute((2, 0, 1))?;
        // Width first, then height: the same expression order as PyTorch's bilinear kernel.
        let t = resize_dim(&resize_dim(&t, 2, width)?, 1, height)?;
        per_frame.push((t / 255.0)?);
    }
    let video = Tensor::stack(&per_frame, 1)?.unsqueeze(0)?; // [1, 3, F1, H, W]
    let video = resize_dim(&video, 2, out_frames)?;
    Ok(((video * 2.0)? - 1.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_corners_endpoints_and_midpoint() {
        let x = Tensor::new(&[0f32, 10.0], &Device::Cpu).unwrap();
        let y = resize_dim(&x, 0, 3).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![0.0, 5.0, 10.0]);
    }

    #[test]
    fn video_shape_and_range() {
        let f = RgbImage {
            width: 4,
            height: 2,
            data: vec![255; 24],
        };
        let v = upsample_video(&[f.clone(), f], 4, 8, 4, &Device::Cpu).unwrap();
        assert_eq!(v.dims(), &[1, 3, 4, 4, 8]);
        let max = v.max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((max - 1.0).abs() < 1e-6);
    }
}
