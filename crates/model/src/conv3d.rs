//! Causal 3D convolution (candle has no conv3d).
//!
//! A `kt x kh x kw` convolution over `[B, C, T, H, W]` is computed as the sum over the `kt`
//! temporal taps of one batched `conv2d` each (all output frames of a tap in one call), so
//! the heavy lifting is candle's im2col + matmul. Temporal padding is causal: `2*pad_t` frames
//! in front, none behind; frames cached from the previous chunk replace that padding.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::error::{ModelError, Result};

/// A causal `Conv3d` with weight `[O, I, kt, kh, kw]` and bias `[O]`.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    /// One `[O, I, kh, kw]` kernel per temporal tap.
    taps: Vec<Tensor>,
    bias: Tensor,
    out_channels: usize,
    stride_t: usize,
    stride_hw: usize,
    pad_t: usize,
    pad_hw: usize,
}

impl CausalConv3d {
    /// Loads `weight`/`bias` under `vb`. `padding` is the official (t, h, w) padding of the
    /// layer (the temporal part becomes `2*pad_t` frames in front).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        padding: [usize; 3],
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get(
            (out_channels, in_channels, kernel[0], kernel[1], kernel[2]),
            "weight",
        )?;
        let bias = vb.get(out_channels, "bias")?;
        if stride[1] != stride[2] || padding[1] != padding[2] {
            return Err(ModelError::InvalidArgument(
                "conv3d: height and width must share stride and padding".into(),
            ));
        }
        let taps = (0..kernel[0])
            .map(|j| Ok(weight.narrow(2, j, 1)?.squeeze(2)?.contiguous()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            taps,
            bias,
            out_channels,
            stride_t: stride[0],
            stride_hw: stride[1],
            pad_t: padding[0],
            pad_hw: padding[1],
        })
    }

    /// Frames of causal padding this layer needs in front.
    pub fn front_padding(&self) -> usize {
        2 * self.pad_t
    }

    /// Convolves `x` `[B, C, T, H, W]`; `cache` holds frames of the previous chunk that take
    /// the place of (part of) the front padding.
    pub fn forward(&self, x: &Tensor, cache: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.clone();
        let mut front = self.front_padding();
        if let Some(cache) = cache {
            if front > 0 {
                let cached = cache.dim(2)?;
                x = Tensor::cat(&[&cache.to_dtype(x.dtype())?, &x], 2)?;
                front = front.saturating_sub(cached);
            }
        }
        if front > 0 {
            x = x.pad_with_zeros(2, front, 0)?;
        }
        let (b, c, t, h, w) = x.dims5()?;
        let kt = self.taps.len();
        if t < kt {
            return Err(ModelError::InvalidArgument(format!(
                "conv3d: {t} frames are fewer than the temporal kernel {kt}"
            )));
        }
        let t_out = (t - kt) / self.stride_t + 1;
        // [B, T, C, H, W] so that the frames of one tap are a contiguous run per batch item.
        let frames = x.permute((0, 2, 1, 3, 4))?.contiguous()?;
        let mut acc: Option<Tensor> = None;
        for (j, kernel) in self.taps.iter().enumerate() {
            let picked = if self.stride_t == 1 {
                frames.narrow(1, j, t_out)?
            } else {
                let idx: Vec<u32> = (0..t_out).map(|o| (o * self.stride_t + j) as u32).collect();
                let idx = Tensor::from_vec(idx, t_out, x.device())?;
                frames.index_select(&idx, 1)?
            };
            let picked = picked.reshape((b * t_out, c, h, w))?;
            let y = picked.conv2d(kernel, self.pad_hw, self.stride_hw, 1, 1)?;
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y)?,
            });
        }
        let y = acc.ok_or_else(|| ModelError::InvalidArgument("conv3d without taps".into()))?;
        let (_, o, ho, wo) = y.dims4()?;
        let y = y.broadcast_add(&self.bias.reshape((1, self.out_channels, 1, 1))?)?;
        Ok(y.reshape((b, t_out, o, ho, wo))?.permute((0, 2, 1, 3, 4))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::collections::HashMap;

    /// Direct definition of a (causally padded) 3D convolution, for comparison.
    fn naive(x: &[f32], xs: [usize; 4], w: &[f32], ws: [usize; 5], pad: [usize; 3]) -> Vec<f32> {
        let [c, t, h, wd] = xs;
        let [o, _, kt, kh, kw] = ws;
        let (tp, hp, wp) = (2 * pad[0], pad[1], pad[2]);
        let t_out = t + tp - kt + 1;
        let h_out = h + 2 * hp - kh + 1;
        let w_out = wd + 2 * wp - kw + 1;
        let mut out = vec![0f32; o * t_out * h_out * w_out];
        for oc in 0..o {
            for ot in 0..t_out {
                for oh in 0..h_out {
                    for ow in 0..w_out {
                        let mut s = 0f32;
                        for ic in 0..c {
                            for a in 0..kt {
                                for bb in 0..kh {
                                    for cc in 0..kw {
                                        let it = ot + a;
                                        let ih = oh + bb;
                                        let iw = ow + cc;
                                        if it < tp || ih < hp || iw < wp {
                                            continue;
                                        }
                                        let (it, ih, iw) = (it - tp, ih - hp, iw - wp);
                                        if ih >= h || iw >= wd {
                                            continue;
                                        }
                                        s += x[((ic * t + it) * h + ih) * wd + iw]
                                            * w[(((oc * c + ic) * kt + a) * kh + bb) * kw + cc];
                                    }
                                }
                            }
                        }
                        out[((oc * t_out + ot) * h_out + oh) * w_out + ow] = s;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_convolution() {
        let dev = Device::Cpu;
        let xs = [3, 5, 6, 7];
        let ws = [4, 3, 3, 3, 3];
        let x = Tensor::randn(0f32, 1.0, (1, 3, 5, 6, 7), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3, 3), &dev).unwrap();
        let mut map = HashMap::new();
        map.insert("weight".to_string(), w.clone());
        map.insert(
            "bias".to_string(),
            Tensor::zeros(4, DType::F32, &dev).unwrap(),
        );
        let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
        let conv = CausalConv3d::new(3, 4, [3, 3, 3], [1, 1, 1], [1, 1, 1], vb).unwrap();
        let ours = conv.forward(&x, None).unwrap();
        assert_eq!(ours.dims(), &[1, 4, 5, 6, 7]);
        let reference = naive(
            &x.flatten_all().unwrap().to_vec1().unwrap(),
            xs,
            &w.flatten_all().unwrap().to_vec1().unwrap(),
            ws,
            [1, 1, 1],
        );
        let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let max = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-4, "{max}");
    }

    #[test]
    fn cache_replaces_front_padding() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 2, 6, 4, 4), &dev).unwrap();
        let mut map = HashMap::new();
        map.insert(
            "weight".to_string(),
            Tensor::randn(0f32, 1.0, (2, 2, 3, 3, 3), &dev).unwrap(),
        );
        map.insert(
            "bias".to_string(),
            Tensor::ones(2, DType::F32, &dev).unwrap(),
        );
        let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
        let conv = CausalConv3d::new(2, 2, [3, 3, 3], [1, 1, 1], [1, 1, 1], vb).unwrap();
        let whole = conv.forward(&x, None).unwrap();
        let first = conv.forward(&x.narrow(2, 0, 2).unwrap(), None).unwrap();
        let second = conv
            .forward(
                &x.narrow(2, 2, 4).unwrap(),
                Some(&x.narrow(2, 0, 2).unwrap()),
            )
            .unwrap();
        let chunked = Tensor::cat(&[first, second], 2).unwrap();
        let diff = (whole - chunked)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
