//! 3D rotary position embedding with interleaved (pairwise) rotation.
//!
//! The head dim is split into `t = d - 4*(d/6)` and `h = w = 2*(d/6)` channels; each part
//! rotates pairs `(x[2i], x[2i+1])` by `pos * base^(-2i/part)` with base 10000.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// Cos/sin tables `[T*H*W, head_dim/2]` (f32) for a token grid in (T, H, W) raster order.
#[derive(Debug, Clone)]
pub struct Rope3d {
    cos: Tensor,
    sin: Tensor,
}

fn freqs(dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| 1.0f32 / 10000f32.powf((2 * i) as f32 / dim as f32))
        .collect()
}

impl Rope3d {
    /// Tables for the grid `[t, h, w]`.
    pub fn new(head_dim: usize, grid: [usize; 3], device: &Device) -> Result<Self> {
        let dim_hw = 2 * (head_dim / 6);
        let dim_t = head_dim - 2 * dim_hw;
        let (ft, fh, fw) = (freqs(dim_t), freqs(dim_hw), freqs(dim_hw));
        let half = head_dim / 2;
        let n = grid[0] * grid[1] * grid[2];
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for t in 0..grid[0] {
            for h in 0..grid[1] {
                for w in 0..grid[2] {
                    let angles = ft
                        .iter()
                        .map(|f| t as f32 * f)
                        .chain(fh.iter().map(|f| h as f32 * f))
                        .chain(fw.iter().map(|f| w as f32 * f));
                    for a in angles {
                        cos.push(a.cos());
                        sin.push(a.sin());
                    }
                }
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (n, half), device)?,
            sin: Tensor::from_vec(sin, (n, half), device)?,
        })
    }

    /// Rotates `x` `[B, H, S, D]` whose tokens are rows `offset..offset+S` of the grid;
    /// computed in f32, returned in `x`'s dtype.
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let s = x.dims()[2];
        let cos = self.cos.narrow(0, offset, s)?.contiguous()?;
        let sin = self.sin.narrow(0, offset, s)?.contiguous()?;
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        Ok(candle_nn::rotary_emb::rope_i(&xf, &cos, &sin)?.to_dtype(x.dtype())?)
    }
}
