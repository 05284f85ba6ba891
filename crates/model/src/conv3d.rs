//! Causal 3D convolution built from candle's `conv2d`.
//!
//! Tensors are laid out frame-major, `[B, T, C, H, W]`, so a clip is a batch of images
//! without copies. The temporal kernel taps are stacked along channels (a temporal
//! im2col), which turns one causal 3D convolution into a single 2D convolution over
//! `[B·T_out, kt·C, H, W]`. Temporal padding is causal: `2·p_t` frames in front, none
//! behind; frames cached from the previous chunk replace that many zero frames.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::Result;

/// Shape parameters of a [`CausalConv3d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `(t, h, w)`.
    pub kernel: (usize, usize, usize),
    /// Temporal stride (spatial stride is always 1 here).
    pub stride_t: usize,
    /// Padding `(t, h, w)` as given to torch; time is padded causally by `2·t`.
    pub padding: (usize, usize, usize),
}

impl Conv3dSpec {
    /// A cubic kernel `k` with symmetric padding `p` and stride 1.
    pub fn cube(in_channels: usize, out_channels: usize, k: usize, p: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: (k, k, k),
            stride_t: 1,
            padding: (p, p, p),
        }
    }
}

/// A causal `Conv3d` (Wan's `WanCausalConv3d`) on `[B, T, C, H, W]` tensors.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    spec: Conv3dSpec,
    /// `[O, kt·C, kh, kw]`: the torch kernel with taps moved next to channels.
    kernel: Tensor,
    /// `[1, O, 1, 1]`.
    bias: Tensor,
}

impl CausalConv3d {
    /// Loads `weight` `[O, C, kt, kh, kw]` and `bias` `[O]` from `vb`.
    pub fn new(spec: Conv3dSpec, vb: VarBuilder) -> Result<Self> {
        let (kt, kh, kw) = spec.kernel;
        let weight = vb.get((spec.out_channels, spec.in_channels, kt, kh, kw), "weight")?;
        let bias = vb.get(spec.out_channels, "bias")?;
        Self::from_tensors(spec, &weight, &bias)
    }

    /// Builds the layer from a torch-layout kernel `[O, C, kt, kh, kw]` and bias `[O]`.
    pub fn from_tensors(spec: Conv3dSpec, weight: &Tensor, bias: &Tensor) -> Result<Self> {
        let (kt, kh, kw) = spec.kernel;
        let kernel = weight.permute((0, 2, 1, 3, 4))?.contiguous()?.reshape((
            spec.out_channels,
            kt * spec.in_channels,
            kh,
            kw,
        ))?;
        let bias = bias.reshape((1, spec.out_channels, 1, 1))?;
        Ok(Self { spec, kernel, bias })
    }

    /// The layer's shape parameters.
    pub fn spec(&self) -> &Conv3dSpec {
        &self.spec
    }

    /// Frames of zero padding in front of the clip when nothing is cached.
    pub fn causal_pad(&self) -> usize {
        2 * self.spec.padding.0
    }

    /// Convolves `x` `[B, T, C, H, W]`; `past` (`[B, Tp, C, H, W]`, frames that precede
    /// `x`) replaces up to `Tp` of the causal zero frames. Returns `[B, T_out, O, H', W']`.
    pub fn forward(&self, x: &Tensor, past: Option<&Tensor>) -> Result<Tensor> {
        let (kt, _, _) = self.spec.kernel;
        let mut front = self.causal_pad();
        let mut x = x.clone();
        if front > 0 {
            if let Some(p) = past {
                let tp = p.dim(1)?;
                let keep = tp.min(front);
                let p = p.narrow(1, tp - keep, keep)?;
                x = Tensor::cat(&[&p, &x], 1)?;
                front -= keep;
            }
            if front > 0 {
                let (b, _, c, h, w) = x.dims5()?;
                let zeros = Tensor::zeros((b, front, c, h, w), x.dtype(), x.device())?;
                x = Tensor::cat(&[&zeros, &x], 1)?;
            }
        }
        let (b, t_in, c, h, w) = x.dims5()?;
        if t_in < kt {
            return Err(candle_core::Error::Msg(format!(
                "causal conv3d: {t_in} frames after padding, kernel needs {kt}"
            ))
            .into());
        }
        let st = self.spec.stride_t;
        let t_out = (t_in - kt) / st + 1;
        let stacked = if kt == 1 && st == 1 {
            x
        } else {
            let mut taps = Vec::with_capacity(kt);
            for k in 0..kt {
                let tap = if st == 1 {
                    x.narrow(1, k, t_out)?
                } else {
                    let idx: Vec<u32> = (0..t_out).map(|i| (k + st * i) as u32).collect();
                    let idx = Tensor::new(idx.as_slice(), x.device())?;
                    x.index_select(&idx, 1)?
                };
                taps.push(tap);
            }
            Tensor::cat(&taps, 2)?
        };
        let flat = stacked.reshape((b * t_out, kt * c, h, w))?;
        let (_, ph, pw) = self.spec.padding;
        let y = if ph == pw {
            flat.conv2d(&self.kernel, ph, 1, 1, 1)?
        } else {
            flat.pad_with_zeros(2, ph, ph)?
                .pad_with_zeros(3, pw, pw)?
                .conv2d(&self.kernel, 0, 1, 1, 1)?
        };
        let y = y.broadcast_add(&self.bias)?;
        let (_, o, ho, wo) = y.dims4()?;
        Ok(y.reshape((b, t_out, o, ho, wo))?)
    }
}

impl Module for CausalConv3d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        CausalConv3d::forward(self, x, None).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Direct definition: causal zero padding, then a sum over every kernel element.
    fn naive(x: &[f32], dims: [usize; 5], w: &[f32], bias: &[f32], spec: Conv3dSpec) -> Vec<f32> {
        let [b, t, c, h, wd] = dims;
        let (kt, kh, kw) = spec.kernel;
        let (pt, ph, pw) = spec.padding;
        let o = spec.out_channels;
        let tp = t + 2 * pt;
        let t_out = (tp - kt) / spec.stride_t + 1;
        let h_out = h + 2 * ph - kh + 1;
        let w_out = wd + 2 * pw - kw + 1;
        let mut out = vec![0f32; b * t_out * o * h_out * w_out];
        for bi in 0..b {
            for to in 0..t_out {
                for oc in 0..o {
                    for yo in 0..h_out {
                        for xo in 0..w_out {
                            let mut acc = bias[oc];
                            for ic in 0..c {
                                for dt in 0..kt {
                                    let ti = (to * spec.stride_t + dt) as isize - 2 * pt as isize;
                                    if ti < 0 {
                                        continue;
                                    }
                                    for dy in 0..kh {
                                        let yi = (yo + dy) as isize - ph as isize;
                                        if yi < 0 || yi >= h as isize {
                                            continue;
                                        }
                                        for dx in 0..kw {
                                            let xi = (xo + dx) as isize - pw as isize;
                                            if xi < 0 || xi >= wd as isize {
                                                continue;
                                            }
                                            let xv = x[(((bi * t + ti as usize) * c + ic) * h
                                                + yi as usize)
                                                * wd
                                                + xi as usize];
                                            let wv =
                                                w[(((oc * c + ic) * kt + dt) * kh + dy) * kw + dx];
                                            acc += xv * wv;
                                        }
                                    }
                                }
                            }
                            out[(((bi * t_out + to) * o + oc) * h_out + yo) * w_out + xo] = acc;
                        }
                    }
                }
            }
        }
        out
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000;
                v as f32 / 500.0 - 1.0
            })
            .collect()
    }

    fn run_case(spec: Conv3dSpec, dims: [usize; 5]) {
        let dev = Device::Cpu;
        let (kt, kh, kw) = spec.kernel;
        let nx: usize = dims.iter().product();
        let nw = spec.out_channels * spec.in_channels * kt * kh * kw;
        let xv = pseudo(nx, 1);
        let wv = pseudo(nw, 2);
        let bv = pseudo(spec.out_channels, 3);
        let x = Tensor::from_vec(xv.clone(), dims.to_vec(), &dev).unwrap();
        let w = Tensor::from_vec(
            wv.clone(),
            (spec.out_channels, spec.in_channels, kt, kh, kw),
            &dev,
        )
        .unwrap();
        let b = Tensor::from_vec(bv.clone(), spec.out_channels, &dev).unwrap();
        let conv = CausalConv3d::from_tensors(spec, &w, &b).unwrap();
        let ours = conv.forward(&x, None).unwrap();
        let want = naive(&xv, dims, &wv, &bv, spec);
        let got: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, r) in got.iter().zip(&want) {
            assert!((g - r).abs() < 1e-4, "{g} vs {r}");
        }
    }

    #[test]
    fn matches_naive_cube() {
        run_case(Conv3dSpec::cube(3, 5, 3, 1), [2, 4, 3, 5, 6]);
    }

    #[test]
    fn matches_naive_time_only_strided() {
        let spec = Conv3dSpec {
            in_channels: 4,
            out_channels: 4,
            kernel: (3, 1, 1),
            stride_t: 2,
            padding: (0, 0, 0),
        };
        run_case(spec, [1, 5, 4, 3, 3]);
    }

    #[test]
    fn matches_naive_pointwise() {
        run_case(Conv3dSpec::cube(4, 2, 1, 0), [1, 3, 4, 2, 3]);
    }

    /// Convolving chunk by chunk with the last frames as `past` equals one pass.
    #[test]
    fn chunked_with_past_equals_whole() {
        let dev = Device::Cpu;
        let spec = Conv3dSpec::cube(2, 3, 3, 1);
        let w = Tensor::from_vec(pseudo(3 * 2 * 27, 5), (3, 2, 3, 3, 3), &dev).unwrap();
        let b = Tensor::from_vec(pseudo(3, 6), 3, &dev).unwrap();
        let conv = CausalConv3d::from_tensors(spec, &w, &b).unwrap();
        let x = Tensor::from_vec(pseudo(5 * 2 * 16, 7), (1, 5, 2, 4, 4), &dev).unwrap();
        let whole = conv.forward(&x, None).unwrap();
        let first = conv.forward(&x.narrow(1, 0, 1).unwrap(), None).unwrap();
        let past = x.narrow(1, 0, 1).unwrap();
        let rest = conv
            .forward(&x.narrow(1, 1, 4).unwrap(), Some(&past))
            .unwrap();
        let joined = Tensor::cat(&[&first, &rest], 1).unwrap();
        let diff = (whole - joined)
            .unwrap()
            .abs()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
