//! Causal 3D convolution in bounded kernels, built from `cat` and one `matmul` per band.
//!
//! Tensors are laid out frame-major, `[B, T, C, H, W]`, so a clip is a batch of images
//! without copies. Temporal padding is causal: `2·p_t` frames in front, none behind;
//! frames cached from the previous chunk replace that many zero frames.
//!
//! The output is computed in bands of rows (and, for very wide inputs, groups of frames)
//! so that no single kernel (the im2col matrix of a band, its product, the padded band)
//! grows with the whole frame stack. Each band is zero padded and flattened to
//! `[T, C, rows·Wp]`; with the padded width `Wp`, the kernel tap `(dt, dy, dx)` reads the
//! contiguous run starting at `dy·Wp + dx` of frame `t + dt`. The taps are concatenated into
//! `[kt·kh·kw·C + 1, T·R·Wp]` (a ones row carries the bias) and multiplied by the kernel;
//! the `Wp − W_out` trailing columns of every row are discarded. Spatially strided
//! convolutions (the encoder's downsamplers) use candle's `conv2d` on each band instead.
//! Every planned kernel is checked against [`MAX_KERNEL_ELEMS`] before it runs.
//!
//! On the CPU in f32, stride-1 layers run a native kernel instead (`conv3d_cpu.rs`: per-tap
//! gemms on a padded band, no im2col, causal zero frames skipped); [`ConvPath::Banded`]
//! forces the tensor ops, which stay the reference and the path of everything else.

use candle_core::{DType, Device, Module, Storage, Tensor};
use candle_nn::VarBuilder;

use crate::{ModelError, Result};

#[path = "conv3d_cpu.rs"]
pub(crate) mod cpu;

pub use crate::limits::{check_kernel_elems, MAX_KERNEL_ELEMS};

/// Default element budget of one band's im2col matrix and product on an accelerator
/// (64 Mi elements: large matmuls, few launches).
pub const DEFAULT_BAND_ELEMS: usize = 1 << 26;

/// Default band budget on the CPU (1 Mi elements): bands that stay in cache and reuse
/// freed allocations decode ~1.6× faster than [`DEFAULT_BAND_ELEMS`] bands (docs/vae.md).
pub const CPU_BAND_ELEMS: usize = 1 << 20;

/// The default band budget for tensors on `device`.
pub fn default_band_elems(device: &Device) -> usize {
    if device.is_cpu() {
        CPU_BAND_ELEMS
    } else {
        DEFAULT_BAND_ELEMS
    }
}

/// Shape parameters of a [`CausalConv3d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `(t, h, w)`.
    pub kernel: (usize, usize, usize),
    /// Temporal stride.
    pub stride_t: usize,
    /// Spatial stride (1, or 2 for the downsamplers; needs `kernel.0 == 1`).
    pub stride_hw: usize,
    /// Temporal padding as given to torch; time is padded causally by `2·pad_t`.
    pub pad_t: usize,
    /// Spatial zero padding `[top, bottom, left, right]`.
    pub pad_hw: [usize; 4],
}

impl Conv3dSpec {
    /// A cubic kernel `k` with symmetric padding `p` and stride 1.
    pub fn cube(in_channels: usize, out_channels: usize, k: usize, p: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: (k, k, k),
            stride_t: 1,
            stride_hw: 1,
            pad_t: p,
            pad_hw: [p; 4],
        }
    }

    /// A temporal-only kernel `(kt, 1, 1)`.
    pub fn temporal(
        in_channels: usize,
        out_channels: usize,
        kt: usize,
        stride_t: usize,
        pad_t: usize,
    ) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: (kt, 1, 1),
            stride_t,
            stride_hw: 1,
            pad_t,
            pad_hw: [0; 4],
        }
    }

    /// A per-frame 2D kernel `(1, k, k)` with spatial stride and padding.
    pub fn spatial(
        in_channels: usize,
        out_channels: usize,
        k: usize,
        stride_hw: usize,
        pad_hw: [usize; 4],
    ) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: (1, k, k),
            stride_t: 1,
            stride_hw,
            pad_t: 0,
            pad_hw,
        }
    }

    /// Frames of zero padding in front of the clip when nothing is cached.
    pub fn causal_pad(&self) -> usize {
        2 * self.pad_t
    }

    /// Output `(frames, height, width)` for `frames` input frames after causal padding.
    pub fn out_dims(&self, frames: usize, h: usize, w: usize) -> Result<(usize, usize, usize)> {
        let (kt, kh, kw) = self.kernel;
        let [top, bottom, left, right] = self.pad_hw;
        let (hp, wp) = (h + top + bottom, w + left + right);
        if frames < kt || hp < kh || wp < kw {
            return Err(ModelError::InvalidArgument(format!(
                "causal conv3d: input {frames}×{h}×{w} (after padding) is smaller than the \
                 kernel {kt}×{kh}×{kw}"
            )));
        }
        let s = self.stride_hw;
        Ok((
            (frames - kt) / self.stride_t + 1,
            (hp - kh) / s + 1,
            (wp - kw) / s + 1,
        ))
    }

    /// `true` when the band is computed with the flat-shift im2col (spatial stride 1).
    fn flat(&self) -> bool {
        self.stride_hw == 1
    }

    /// Plans the bands of one call on `[batch, frames, C, h, w]` input, where `frames`
    /// counts the causal padding (zeros or cached frames) too. Pure: nothing runs.
    pub fn plan(
        &self,
        batch: usize,
        frames: usize,
        h: usize,
        w: usize,
        band_elems: usize,
    ) -> Result<ConvKernelPlan> {
        let (kt, kh, kw) = self.kernel;
        let (c, o) = (self.in_channels, self.out_channels);
        let (t_out, h_out, w_out) = self.out_dims(frames, h, w)?;
        let [_, _, left, right] = self.pad_hw;
        let wp = w + left + right;
        let s = self.stride_hw;
        // Columns of the im2col matrix per output row and frame, and its rows.
        let (row_cols, k_rows) = if self.flat() {
            (wp, kt * kh * kw * c + 1)
        } else {
            (w_out, kh * kw * c)
        };
        let per_row = k_rows.max(o) * row_cols;
        let budget = band_elems.max(1);
        let (ft, rows) = if per_row * t_out * h_out <= budget {
            (t_out, h_out)
        } else if per_row * t_out <= budget {
            (t_out, budget / (per_row * t_out))
        } else {
            let ft = (budget / per_row).max(1);
            (ft, (budget / (per_row * ft)).max(1))
        };
        let groups = t_out.div_ceil(ft);
        let ft = t_out.div_ceil(groups);
        let bands = h_out.div_ceil(rows);
        let rows = h_out.div_ceil(bands);
        let tf = (ft - 1) * self.stride_t + kt;
        let in_rows = if self.flat() {
            rows + kh - 1 + usize::from(kw > 1)
        } else {
            (rows - 1) * s + kh
        };
        let band_in_elems = tf * c * in_rows * wp;
        let im2col_elems = k_rows * ft * rows * row_cols;
        let band_out_elems = o * ft * rows * row_cols;
        let input_elems = batch * frames * c * h * w;
        let output_elems = batch * t_out * o * h_out * w_out;
        let largest_kernel_elems = [
            band_in_elems,
            im2col_elems,
            band_out_elems,
            input_elems,
            output_elems,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Ok(ConvKernelPlan {
            layer: String::new(),
            input: [batch, frames, c, h, w],
            output: [batch, t_out, o, h_out, w_out],
            frames_per_group: ft,
            groups,
            rows_per_band: rows,
            bands,
            band_in_elems,
            im2col_elems,
            band_out_elems,
            largest_kernel_elems,
        })
    }
}

/// How one convolution call is split, and its largest kernels (element counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvKernelPlan {
    /// Checkpoint path of the layer (`decoder.up_blocks.3.resnets.0.conv1`).
    pub layer: String,
    /// Input `[B, T, C, H, W]`, `T` counting the causal padding.
    pub input: [usize; 5],
    /// Output `[B, T, O, H, W]`.
    pub output: [usize; 5],
    /// Output frames computed together.
    pub frames_per_group: usize,
    /// Frame groups per batch item.
    pub groups: usize,
    /// Output rows per band.
    pub rows_per_band: usize,
    /// Bands per frame group.
    pub bands: usize,
    /// Elements of one padded input band.
    pub band_in_elems: usize,
    /// Elements of one band's im2col matrix.
    pub im2col_elems: usize,
    /// Elements of one band's matmul product.
    pub band_out_elems: usize,
    /// The largest single kernel of the call: max of the above, the input and the output.
    pub largest_kernel_elems: usize,
}

/// Which implementation runs a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvPath {
    /// The native CPU kernel for f32 CPU tensors with stride 1 (no im2col, per-tap gemms
    /// on a padded band), the banded tensor ops otherwise.
    #[default]
    Auto,
    /// Always the banded tensor ops (the reference; the path of other devices and dtypes).
    Banded,
}

/// Band budget, implementation and an optional record of every call's plan (for tests and
/// benches).
#[derive(Debug, Clone)]
pub struct ConvRun {
    /// Element budget of one band's im2col matrix and product (the native CPU kernel: of
    /// one padded input band and its product).
    pub band_elems: usize,
    /// When set, each call appends its plan (the banded split, whichever path runs).
    pub trace: Option<Vec<ConvKernelPlan>>,
    /// Implementation choice.
    pub path: ConvPath,
}

impl Default for ConvRun {
    fn default() -> Self {
        Self {
            band_elems: DEFAULT_BAND_ELEMS,
            trace: None,
            path: ConvPath::Auto,
        }
    }
}

/// The f32 data of a CPU storage from `start` on.
pub(crate) fn cpu_f32(s: &Storage, start: usize) -> Result<&[f32]> {
    match s {
        Storage::Cpu(cpu) => Ok(&cpu.as_slice::<f32>()?[start..]),
        _ => Err(ModelError::InvalidArgument(
            "causal conv3d: the CPU kernel needs CPU tensors".into(),
        )),
    }
}

/// Where the frames of the causally padded input come from.
enum Src<'a> {
    Zeros(usize),
    Frames(&'a Tensor),
}

impl Src<'_> {
    fn len(&self) -> Result<usize> {
        Ok(match self {
            Src::Zeros(n) => *n,
            Src::Frames(t) => t.dim(0)?,
        })
    }
}

/// Padded input band `[t1 − t0, C, rows + extra, left + W + right]` (contiguous) of the
/// padded frames `t0..t1` and input rows `row0 .. row0 + rows` (outside `0..H` is zero).
#[allow(clippy::too_many_arguments)]
fn band_input(
    srcs: &[Src],
    (t0, t1): (usize, usize),
    row0: isize,
    rows: usize,
    extra: usize,
    (left, right): (usize, usize),
    (c, h, w): (usize, usize, usize),
    (dtype, dev): (DType, &Device),
) -> Result<Tensor> {
    let lo = row0.clamp(0, h as isize) as usize;
    let hi = (row0 + rows as isize).clamp(lo as isize, h as isize) as usize;
    let top = (lo as isize - row0) as usize;
    let bottom = rows - top - (hi - lo) + extra;
    let mut pieces = Vec::with_capacity(srcs.len());
    let mut t = 0;
    for s in srcs {
        let n = s.len()?;
        let (a, b) = (t0.max(t), t1.min(t + n));
        if a < b && hi > lo {
            pieces.push(match s {
                Src::Zeros(_) => Tensor::zeros((b - a, c, hi - lo, w), dtype, dev)?,
                Src::Frames(x) => x.narrow(0, a - t, b - a)?.narrow(2, lo, hi - lo)?,
            });
        }
        t += n;
    }
    let x = if pieces.is_empty() {
        Tensor::zeros((t1 - t0, c, 0, w), dtype, dev)?
    } else {
        Tensor::cat(&pieces, 0)?
    };
    let x = x.pad_with_zeros(3, left, right)?;
    let x = x.pad_with_zeros(2, top, bottom)?;
    Ok(x.contiguous()?)
}

/// A causal `Conv3d` (Wan's `WanCausalConv3d`) on `[B, T, C, H, W]` tensors.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    spec: Conv3dSpec,
    name: String,
    /// Flat-shift path: `[O, kh·kw·kt·C + 1]`, taps `(dy, dx, dt)` outer, channels inner,
    /// the bias last. Strided path: the torch kernel `[O, C, kh, kw]`.
    kernel: Tensor,
    /// `[1, O, 1, 1]` (strided path only).
    bias: Tensor,
}

impl CausalConv3d {
    /// Loads `weight` `[O, C, kt, kh, kw]` and `bias` `[O]` from `vb`.
    pub fn new(spec: Conv3dSpec, vb: VarBuilder) -> Result<Self> {
        let (kt, kh, kw) = spec.kernel;
        let weight = vb.get((spec.out_channels, spec.in_channels, kt, kh, kw), "weight")?;
        let bias = vb.get(spec.out_channels, "bias")?;
        Ok(Self::from_tensors(spec, &weight, &bias)?.named(vb.prefix()))
    }

    /// Loads a 2D `weight` `[O, C, kh, kw]` and `bias` `[O]` as a `(1, kh, kw)` kernel.
    pub fn new_2d(spec: Conv3dSpec, vb: VarBuilder) -> Result<Self> {
        let (kt, kh, kw) = spec.kernel;
        let (o, c) = (spec.out_channels, spec.in_channels);
        let weight = vb
            .get((o, c, kh, kw), "weight")?
            .reshape((o, c, kt, kh, kw))?;
        let bias = vb.get(o, "bias")?;
        Ok(Self::from_tensors(spec, &weight, &bias)?.named(vb.prefix()))
    }

    /// Builds the layer from a torch-layout kernel `[O, C, kt, kh, kw]` and bias `[O]`.
    /// The weights are detached: no activation ever records a backprop graph.
    pub fn from_tensors(spec: Conv3dSpec, weight: &Tensor, bias: &Tensor) -> Result<Self> {
        let (weight, bias) = (weight.detach(), bias.detach());
        let (kt, kh, kw) = spec.kernel;
        let (o, c) = (spec.out_channels, spec.in_channels);
        if spec.stride_hw != 1 && kt != 1 {
            return Err(ModelError::InvalidArgument(
                "causal conv3d: spatial stride needs a temporal kernel of 1".into(),
            ));
        }
        let (kernel, bias) = if spec.flat() {
            let k = weight
                .permute((0, 3, 4, 2, 1))?
                .contiguous()?
                .reshape((o, kh * kw * kt * c))?;
            let b = bias.reshape((o, 1))?.to_dtype(k.dtype())?;
            (Tensor::cat(&[&k, &b], 1)?, b.reshape((1, o, 1, 1))?)
        } else {
            (
                weight.reshape((o, c, kh, kw))?.contiguous()?,
                bias.reshape((1, o, 1, 1))?,
            )
        };
        Ok(Self {
            spec,
            name: String::new(),
            kernel,
            bias,
        })
    }

    fn named(mut self, name: String) -> Self {
        self.name = name;
        self
    }

    /// The layer's shape parameters.
    pub fn spec(&self) -> &Conv3dSpec {
        &self.spec
    }

    /// The checkpoint path of the layer (empty when built from tensors).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frames of zero padding in front of the clip when nothing is cached.
    pub fn causal_pad(&self) -> usize {
        self.spec.causal_pad()
    }

    /// Convolves `x` `[B, T, C, H, W]` with the device's default band budget; `past`
    /// (`[B, Tp, C, H, W]`, frames that precede `x`) replaces up to `Tp` of the causal zero
    /// frames. Returns `[B, T_out, O, H', W']`.
    pub fn forward(&self, x: &Tensor, past: Option<&Tensor>) -> Result<Tensor> {
        let mut run = ConvRun {
            band_elems: default_band_elems(x.device()),
            ..ConvRun::default()
        };
        self.forward_run(x, past, &mut run)
    }

    /// [`Self::forward`] with an explicit band budget and optional plan trace.
    pub fn forward_run(
        &self,
        x: &Tensor,
        past: Option<&Tensor>,
        run: &mut ConvRun,
    ) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let front = self.causal_pad();
        let kept = match past {
            Some(p) if front > 0 => {
                let tp = p.dim(1)?;
                let keep = tp.min(front);
                Some(p.narrow(1, tp - keep, keep)?)
            }
            _ => None,
        };
        let n_kept = match &kept {
            Some(k) => k.dim(1)?,
            None => 0,
        };
        let zeros = front - n_kept;
        let frames = zeros + n_kept + t;
        let mut plan = self
            .spec
            .plan(b, frames, h, w, run.band_elems)
            .map_err(|e| ModelError::InvalidArgument(format!("{}: {e}", self.name)))?;
        plan.layer = self.name.clone();
        let what = if self.name.is_empty() {
            "causal conv3d"
        } else {
            self.name.as_str()
        };
        check_kernel_elems(what, plan.largest_kernel_elems)?;
        if run.path == ConvPath::Auto && self.native_cpu(x) {
            let y = self.forward_cpu(x, kept.as_ref(), zeros, &plan, run.band_elems)?;
            if let Some(trace) = run.trace.as_mut() {
                trace.push(plan);
            }
            return Ok(y);
        }
        let mut items = Vec::with_capacity(b);
        for bi in 0..b {
            let xb = x.get(bi)?;
            let kb = match &kept {
                Some(k) => Some(k.get(bi)?),
                None => None,
            };
            let mut srcs = Vec::with_capacity(3);
            if zeros > 0 {
                srcs.push(Src::Zeros(zeros));
            }
            if let Some(k) = &kb {
                srcs.push(Src::Frames(k));
            }
            srcs.push(Src::Frames(&xb));
            items.push(self.forward_item(&srcs, (c, h, w), &plan, x.dtype(), x.device())?);
        }
        if let Some(trace) = run.trace.as_mut() {
            trace.push(plan);
        }
        let items: Vec<Tensor> = items
            .into_iter()
            .map(|t| t.unsqueeze(0))
            .collect::<candle_core::Result<_>>()?;
        Ok(Tensor::cat(&items, 0)?)
    }

    /// `true` when the native CPU kernel can run this layer on `x`.
    fn native_cpu(&self, x: &Tensor) -> bool {
        self.spec.flat()
            && self.spec.stride_t == 1
            && x.device().is_cpu()
            && x.dtype() == DType::F32
            && self.kernel.dtype() == DType::F32
            && self.kernel.device().is_cpu()
    }

    /// The native CPU kernel (see [`Self::native_cpu`]): `kept` `[B, n, C, H, W]` frames
    /// follow `zeros` causal zero frames and precede `x`.
    fn forward_cpu(
        &self,
        x: &Tensor,
        kept: Option<&Tensor>,
        zeros: usize,
        plan: &ConvKernelPlan,
        band_elems: usize,
    ) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let x = x.contiguous()?;
        let kept = kept.map(Tensor::contiguous).transpose()?;
        let kernel = self.kernel.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let ks = kept.as_ref().map(|k| k.storage_and_layout());
        let (ws, wl) = kernel.storage_and_layout();
        let frame = c * h * w;
        let x_data = cpu_f32(&xs, xl.start_offset())?;
        let k_data = match &ks {
            Some((s, l)) => Some(cpu_f32(s, l.start_offset())?),
            None => None,
        };
        let n_kept = match &kept {
            Some(k) => k.dim(1)?,
            None => 0,
        };
        let mut items = Vec::with_capacity(b);
        for bi in 0..b {
            let mut frames = Vec::with_capacity(n_kept + t);
            if let Some(kd) = k_data {
                for i in 0..n_kept {
                    let s = (bi * n_kept + i) * frame;
                    frames.push(&kd[s..s + frame]);
                }
            }
            for i in 0..t {
                let s = (bi * t + i) * frame;
                frames.push(&x_data[s..s + frame]);
            }
            items.push(cpu::ItemFrames { zeros, frames });
        }
        let [_, t_out, o, h_out, w_out] = plan.output;
        let g = cpu::Geometry {
            c,
            h,
            w,
            o,
            kernel: self.spec.kernel,
            pad_hw: self.spec.pad_hw,
            t_out,
            h_out,
            w_out,
        };
        let out = cpu::conv3d(&items, g, cpu_f32(&ws, wl.start_offset())?, band_elems);
        Ok(Tensor::from_vec(
            out,
            (b, t_out, o, h_out, w_out),
            x.device(),
        )?)
    }

    /// One batch item: `srcs` are `[n, C, H, W]` pieces of the padded frame sequence.
    fn forward_item(
        &self,
        srcs: &[Src],
        (c, h, w): (usize, usize, usize),
        plan: &ConvKernelPlan,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let (kt, kh, kw) = self.spec.kernel;
        let [top, _, left, right] = self.spec.pad_hw;
        let (st, s) = (self.spec.stride_t, self.spec.stride_hw);
        let [_, t_out, o, h_out, w_out] = plan.output;
        let wp = w + left + right;
        let mut groups = Vec::with_capacity(plan.groups);
        let mut f0 = 0;
        while f0 < t_out {
            let ft = plan.frames_per_group.min(t_out - f0);
            let t0 = f0 * st;
            let t1 = t0 + (ft - 1) * st + kt;
            let mut bands = Vec::with_capacity(plan.bands);
            let mut r0 = 0;
            while r0 < h_out {
                let r = plan.rows_per_band.min(h_out - r0);
                let row0 = (r0 * s) as isize - top as isize;
                let y = if self.spec.flat() {
                    let extra = usize::from(kw > 1);
                    let rows_in = r + kh - 1;
                    let p = band_input(
                        srcs,
                        (t0, t1),
                        row0,
                        rows_in,
                        extra,
                        (left, right),
                        (c, h, w),
                        (dtype, dev),
                    )?;
                    let p = p.reshape((t1 - t0, c, (rows_in + extra) * wp))?;
                    let n = r * wp;
                    let mut frames = Vec::with_capacity(kt);
                    for dt in 0..kt {
                        frames.push(if st == 1 {
                            p.narrow(0, dt, ft)?
                        } else {
                            let idx: Vec<u32> = (0..ft).map(|i| (dt + st * i) as u32).collect();
                            p.index_select(&Tensor::new(idx.as_slice(), dev)?, 0)?
                        });
                    }
                    let mut cols = Vec::with_capacity(kt * kh * kw + 1);
                    for dy in 0..kh {
                        for dx in 0..kw {
                            for f in &frames {
                                cols.push(f.narrow(2, dy * wp + dx, n)?.transpose(0, 1)?);
                            }
                        }
                    }
                    cols.push(Tensor::ones((1, ft, n), dtype, dev)?);
                    let k_rows = kt * kh * kw * c + 1;
                    let im2col = Tensor::cat(&cols, 0)?.reshape((k_rows, ft * n))?;
                    drop(cols);
                    let y = self.kernel.matmul(&im2col)?;
                    drop(im2col);
                    y.reshape((o, ft, r, wp))?
                        .narrow(3, 0, w_out)?
                        .permute((1, 0, 2, 3))?
                        .contiguous()?
                } else {
                    let rows_in = (r - 1) * s + kh;
                    let p = band_input(
                        srcs,
                        (t0, t1),
                        row0,
                        rows_in,
                        0,
                        (left, right),
                        (c, h, w),
                        (dtype, dev),
                    )?;
                    p.conv2d(&self.kernel, 0, s, 1, 1)?
                        .broadcast_add(&self.bias)?
                };
                bands.push(y);
                r0 += r;
            }
            groups.push(Tensor::cat(&bands, 2)?);
            f0 += ft;
        }
        Ok(Tensor::cat(&groups, 0)?)
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
    use candle_core::Device;

    /// Direct definition: causal zero padding, then a sum over every kernel element.
    fn naive(x: &[f32], dims: [usize; 5], w: &[f32], bias: &[f32], spec: Conv3dSpec) -> Vec<f32> {
        naive_zeros(x, dims, w, bias, spec, spec.causal_pad())
    }

    /// [`naive`] with `zeros` zero frames in front instead of the causal padding.
    fn naive_zeros(
        x: &[f32],
        dims: [usize; 5],
        w: &[f32],
        bias: &[f32],
        spec: Conv3dSpec,
        zeros: usize,
    ) -> Vec<f32> {
        let [b, t, c, h, wd] = dims;
        let (kt, kh, kw) = spec.kernel;
        let [top, _, left, _] = spec.pad_hw;
        let s = spec.stride_hw;
        let o = spec.out_channels;
        let (t_out, h_out, w_out) = spec.out_dims(t + zeros, h, wd).unwrap();
        let mut out = vec![0f32; b * t_out * o * h_out * w_out];
        for bi in 0..b {
            for to in 0..t_out {
                for oc in 0..o {
                    for yo in 0..h_out {
                        for xo in 0..w_out {
                            let mut acc = bias[oc];
                            for ic in 0..c {
                                for dt in 0..kt {
                                    let ti = (to * spec.stride_t + dt) as isize - zeros as isize;
                                    if ti < 0 {
                                        continue;
                                    }
                                    for dy in 0..kh {
                                        let yi = (yo * s + dy) as isize - top as isize;
                                        if yi < 0 || yi >= h as isize {
                                            continue;
                                        }
                                        for dx in 0..kw {
                                            let xi = (xo * s + dx) as isize - left as isize;
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

    fn layer(spec: Conv3dSpec) -> (CausalConv3d, Vec<f32>, Vec<f32>) {
        let dev = Device::Cpu;
        let (kt, kh, kw) = spec.kernel;
        let nw = spec.out_channels * spec.in_channels * kt * kh * kw;
        let wv = pseudo(nw, 2);
        let bv = pseudo(spec.out_channels, 3);
        let w = Tensor::from_vec(
            wv.clone(),
            (spec.out_channels, spec.in_channels, kt, kh, kw),
            &dev,
        )
        .unwrap();
        let b = Tensor::from_vec(bv.clone(), spec.out_channels, &dev).unwrap();
        (CausalConv3d::from_tensors(spec, &w, &b).unwrap(), wv, bv)
    }

    /// Checks `spec` on `dims` against the naive sum, once per band budget; returns the
    /// plans of the calls.
    fn run_case(spec: Conv3dSpec, dims: [usize; 5], budgets: &[usize]) -> Vec<ConvKernelPlan> {
        let dev = Device::Cpu;
        let (conv, wv, bv) = layer(spec);
        let nx: usize = dims.iter().product();
        let xv = pseudo(nx, 1);
        let x = Tensor::from_vec(xv.clone(), dims.to_vec(), &dev).unwrap();
        let want = naive(&xv, dims, &wv, &bv, spec);
        let mut plans = Vec::new();
        for path in [ConvPath::Banded, ConvPath::Auto] {
            for &band_elems in budgets {
                let mut run = ConvRun {
                    band_elems,
                    trace: Some(Vec::new()),
                    path,
                };
                let ours = conv.forward_run(&x, None, &mut run).unwrap();
                let got: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(got.len(), want.len());
                for (g, r) in got.iter().zip(&want) {
                    assert!(
                        (g - r).abs() < 1e-4,
                        "{path:?} budget {band_elems}: {g} vs {r}"
                    );
                }
                if path == ConvPath::Auto {
                    plans.extend(run.trace.unwrap());
                }
            }
        }
        plans
    }

    #[test]
    fn matches_naive_cube() {
        run_case(
            Conv3dSpec::cube(3, 5, 3, 1),
            [2, 4, 3, 5, 6],
            &[DEFAULT_BAND_ELEMS],
        );
    }

    #[test]
    fn matches_naive_time_only_strided() {
        run_case(
            Conv3dSpec::temporal(4, 4, 3, 2, 0),
            [1, 5, 4, 3, 3],
            &[DEFAULT_BAND_ELEMS, 1],
        );
    }

    #[test]
    fn matches_naive_pointwise() {
        run_case(
            Conv3dSpec::cube(4, 2, 1, 0),
            [1, 3, 4, 2, 3],
            &[DEFAULT_BAND_ELEMS, 1],
        );
    }

    #[test]
    fn matches_naive_spatial_stride_two() {
        let spec = Conv3dSpec::spatial(3, 4, 3, 2, [0, 1, 0, 1]);
        run_case(spec, [1, 2, 3, 7, 6], &[DEFAULT_BAND_ELEMS, 1, 200]);
    }

    /// Tiny band budgets split rows and frames; every split equals the one-band result
    /// and the naive sum.
    #[test]
    fn banded_equals_unbanded() {
        let spec = Conv3dSpec::cube(3, 4, 3, 1);
        let dims = [1, 5, 3, 9, 7];
        let (k_rows, wp) = (27 * 3 + 1, 7 + 2);
        let one_row_all_frames = k_rows * wp * 5;
        let plans = run_case(
            spec,
            dims,
            &[
                DEFAULT_BAND_ELEMS,
                one_row_all_frames * 3,
                one_row_all_frames,
                1,
            ],
        );
        let splits: Vec<(usize, usize, usize, usize)> = plans
            .iter()
            .map(|p| (p.groups, p.frames_per_group, p.bands, p.rows_per_band))
            .collect();
        assert_eq!(
            splits,
            vec![(1, 5, 1, 9), (1, 5, 3, 3), (1, 5, 9, 1), (5, 1, 9, 1)]
        );
        assert_eq!(plans[0].im2col_elems, plans[3].im2col_elems * 45);
    }

    #[test]
    fn guard_refuses_kernels_over_two_to_the_31() {
        assert!(check_kernel_elems("x", MAX_KERNEL_ELEMS).is_ok());
        let err = check_kernel_elems("x", MAX_KERNEL_ELEMS + 1).unwrap_err();
        assert!(err.to_string().contains("2^31"), "{err}");
        // A one-row band of this layer at 4096 frames is planned over the limit.
        let spec = Conv3dSpec::cube(512, 512, 3, 1);
        let plan = spec.plan(1, 4096, 1024, 1024, 1).unwrap();
        assert!(plan.largest_kernel_elems > MAX_KERNEL_ELEMS);
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
        let diff = crate::test_util::max_abs_diff(&whole, &joined);
        assert!(diff < 1e-5, "{diff}");
    }

    /// The native CPU kernel equals the banded path and the naive sum on odd sizes, with
    /// and without past frames, for every kernel shape the VAE's stride-1 layers use, at
    /// the default, a mid and a one-row budget.
    #[test]
    fn native_cpu_equals_banded_and_naive_with_past() {
        let dev = Device::Cpu;
        let specs = [
            Conv3dSpec::cube(5, 7, 3, 1),
            Conv3dSpec::cube(6, 3, 1, 0),
            Conv3dSpec::spatial(5, 4, 3, 1, [1; 4]),
            Conv3dSpec::temporal(3, 6, 3, 1, 1),
            Conv3dSpec {
                pad_hw: [2, 0, 0, 1],
                ..Conv3dSpec::cube(3, 4, 3, 1)
            },
        ];
        // 35 output channels: more than one channel block per task.
        let wide = Conv3dSpec::cube(4, 35, 3, 1);
        for spec in specs.into_iter().chain([wide]) {
            let (conv, wv, bv) = layer(spec);
            let (c, front) = (spec.in_channels, spec.causal_pad());
            for (t, tp) in [(1, 0), (3, 0), (1, 1), (2, 2), (4, 3)] {
                let (h, w) = (5, 7);
                let frame = c * h * w;
                let all = pseudo((tp + t) * frame, 11 + t as u32);
                let x =
                    Tensor::from_vec(all[tp * frame..].to_vec(), (1, t, c, h, w), &dev).unwrap();
                let past = (tp > 0).then(|| {
                    Tensor::from_vec(all[..tp * frame].to_vec(), (1, tp, c, h, w), &dev).unwrap()
                });
                // The naive input: the kept past frames, then x, behind the remaining zeros.
                let kept = tp.min(front);
                let naive_in = &all[(tp - kept) * frame..];
                let want = naive_zeros(
                    naive_in,
                    [1, kept + t, c, h, w],
                    &wv,
                    &bv,
                    spec,
                    front - kept,
                );
                for band_elems in [DEFAULT_BAND_ELEMS, 300, 1] {
                    let mut outs = Vec::new();
                    for path in [ConvPath::Banded, ConvPath::Auto] {
                        let mut run = ConvRun {
                            band_elems,
                            trace: None,
                            path,
                        };
                        let y = conv.forward_run(&x, past.as_ref(), &mut run).unwrap();
                        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
                        assert_eq!(got.len(), want.len(), "{spec:?} t {t} past {tp}");
                        for (g, r) in got.iter().zip(&want) {
                            assert!(
                                (g - r).abs() < 1e-4,
                                "{spec:?} t {t} past {tp} {path:?} budget {band_elems}: {g} vs {r}"
                            );
                        }
                        outs.push(got);
                    }
                    for (a, b) in outs[0].iter().zip(&outs[1]) {
                        assert!((a - b).abs() < 1e-5, "banded {a} vs native {b}");
                    }
                }
            }
        }
    }

    /// Several batch items, each with its own past frames.
    #[test]
    fn native_cpu_batched_with_past() {
        let dev = Device::Cpu;
        let spec = Conv3dSpec::cube(3, 5, 3, 1);
        let (conv, _, _) = layer(spec);
        let x = Tensor::from_vec(pseudo(2 * 3 * 3 * 4 * 6, 21), (2, 3, 3, 4, 6), &dev).unwrap();
        let past = Tensor::from_vec(pseudo(2 * 2 * 3 * 4 * 6, 22), (2, 2, 3, 4, 6), &dev).unwrap();
        let mut outs = Vec::new();
        for path in [ConvPath::Banded, ConvPath::Auto] {
            let mut run = ConvRun {
                band_elems: 500,
                trace: None,
                path,
            };
            let y = conv.forward_run(&x, Some(&past), &mut run).unwrap();
            assert_eq!(y.dims(), &[2, 3, 5, 4, 6]);
            outs.push(y.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
        for (a, b) in outs[0].iter().zip(&outs[1]) {
            assert!((a - b).abs() < 1e-5, "banded {a} vs native {b}");
        }
    }
}
