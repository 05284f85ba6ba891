//! 3D rotary position embedding with interleaved (pairwise) rotation.
//!
//! The head dim is split into `t = d - 4*(d/6)` and `h = w = 2*(d/6)` channels; each part
//! rotates pairs `(x[2i], x[2i+1])` by `pos * base^(-2i/part)` with base 10000.
//!
//! The tables are built with tensor ops on the model's device (only the `head_dim/2`
//! frequencies come from the host) and cached per grid by [`RopeCache`], so repeated
//! forwards on one grid upload and compute nothing.

use std::sync::{Arc, Mutex};

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

/// `cos` and `sin` of `pos * f` for `pos` in `0..len` and the frequencies `f`: two
/// `[len, f.len()]` f32 tensors computed on `device`.
fn axis_tables(len: usize, f: &[f32], device: &Device) -> Result<(Tensor, Tensor)> {
    let pos = Tensor::arange(0u32, len as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((len, 1))?;
    let f = Tensor::from_slice(f, (1, f.len()), device)?;
    let angles = pos.broadcast_mul(&f)?;
    Ok((angles.cos()?, angles.sin()?))
}

impl Rope3d {
    /// Tables for the grid `[t, h, w]`, built on `device`.
    pub fn new(head_dim: usize, grid: [usize; 3], device: &Device) -> Result<Self> {
        let dim_hw = 2 * (head_dim / 6);
        let dim_t = head_dim - 2 * dim_hw;
        let [t, h, w] = grid;
        let half = head_dim / 2;
        let (ct, st) = axis_tables(t, &freqs(dim_t), device)?;
        let (ch, sh) = axis_tables(h, &freqs(dim_hw), device)?;
        let (cw, sw) = axis_tables(w, &freqs(dim_hw), device)?;
        // [T, H, W, half] = per axis tables broadcast over the other two axes, concatenated
        // along the channels in (t, h, w) order.
        let grid_table = |at: &Tensor, ah: &Tensor, aw: &Tensor| -> Result<Tensor> {
            let (nt, nh, nw) = (at.dims()[1], ah.dims()[1], aw.dims()[1]);
            let at = at.reshape((t, 1, 1, nt))?.broadcast_as((t, h, w, nt))?;
            let ah = ah.reshape((1, h, 1, nh))?.broadcast_as((t, h, w, nh))?;
            let aw = aw.reshape((1, 1, w, nw))?.broadcast_as((t, h, w, nw))?;
            Ok(Tensor::cat(&[at, ah, aw], 3)?.reshape((t * h * w, half))?)
        };
        Ok(Self {
            cos: grid_table(&ct, &ch, &cw)?,
            sin: grid_table(&st, &sh, &sw)?,
        })
    }

    /// Number of token rows the tables cover.
    pub fn len(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Whether the tables cover no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `[N, head_dim/2]` cos and sin tables.
    pub fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
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

/// How many grids [`RopeCache`] keeps (stage 1 and refinement, each with and without the
/// cached condition frames).
const CACHED_GRIDS: usize = 4;

/// The RoPE tables of the last few grids, most recently used first. Clones share nothing
/// (a cloned model starts with an empty cache).
#[derive(Debug, Default)]
pub struct RopeCache {
    entries: Mutex<Vec<(RopeKey, Arc<Rope3d>)>>,
}

/// What a table depends on: head dim, grid `[T, H, W]` and device.
type RopeKey = (usize, [usize; 3], candle_core::DeviceLocation);

impl Clone for RopeCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl RopeCache {
    /// The tables for `grid` on `device`, built on the first request and reused after.
    pub fn get(&self, head_dim: usize, grid: [usize; 3], device: &Device) -> Result<Arc<Rope3d>> {
        let key = (head_dim, grid, device.location());
        let mut entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
            let entry = entries.remove(i);
            let rope = Arc::clone(&entry.1);
            entries.insert(0, entry);
            return Ok(rope);
        }
        let rope = Arc::new(Rope3d::new(head_dim, grid, device)?);
        entries.insert(0, (key, Arc::clone(&rope)));
        entries.truncate(CACHED_GRIDS);
        Ok(rope)
    }

    /// Grids currently cached, most recently used first.
    pub fn grids(&self) -> Vec<[usize; 3]> {
        match self.entries.lock() {
            Ok(g) => g.iter().map(|(k, _)| k.1).collect(),
            Err(poisoned) => poisoned.into_inner().iter().map(|(k, _)| k.1).collect(),
        }
    }

    /// Drops every cached table.
    pub fn clear(&self) {
        match self.entries.lock() {
            Ok(mut g) => g.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The former host-side construction, kept as the reference of the device build.
    fn host_tables(head_dim: usize, grid: [usize; 3]) -> (Vec<f32>, Vec<f32>) {
        let dim_hw = 2 * (head_dim / 6);
        let dim_t = head_dim - 2 * dim_hw;
        let (ft, fh, fw) = (freqs(dim_t), freqs(dim_hw), freqs(dim_hw));
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
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
        (cos, sin)
    }

    #[test]
    fn device_tables_equal_the_host_tables_bit_for_bit() {
        for (head_dim, grid) in [(16, [3, 2, 5]), (128, [5, 4, 6]), (64, [1, 1, 1])] {
            let rope = Rope3d::new(head_dim, grid, &Device::Cpu).unwrap();
            let (cos, sin) = host_tables(head_dim, grid);
            let got_cos = rope.cos.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got_sin = rope.sin.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got_cos), bits(&cos), "cos {head_dim} {grid:?}");
            assert_eq!(bits(&got_sin), bits(&sin), "sin {head_dim} {grid:?}");
            assert_eq!(rope.len(), grid.iter().product::<usize>());
        }
    }

    #[test]
    fn cache_reuses_tables_per_grid_and_keeps_the_last_few() {
        let cache = RopeCache::default();
        let a = cache.get(16, [2, 3, 4], &Device::Cpu).unwrap();
        let b = cache.get(16, [2, 3, 4], &Device::Cpu).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same grid must reuse the tables");
        let c = cache.get(16, [3, 3, 4], &Device::Cpu).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(cache.grids(), vec![[3, 3, 4], [2, 3, 4]]);
        for t in 4..4 + CACHED_GRIDS {
            cache.get(16, [t, 1, 1], &Device::Cpu).unwrap();
        }
        assert_eq!(cache.grids().len(), CACHED_GRIDS);
        assert!(!cache.grids().contains(&[2, 3, 4]));
        assert!(cache.clone().grids().is_empty());
        cache.clear();
        assert!(cache.grids().is_empty());
    }
}
