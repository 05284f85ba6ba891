//! Building blocks of the DiT: linear layers with LoRA hooks, f32 norms, modulation and
//! softmax attention.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

use crate::error::Result;
use crate::limits::check_kernel_elems;
use crate::lora::LoraAdapter;
#[cfg(doc)]
use crate::lora::LoraMode;
use crate::ops::matmul_last;

/// Epsilon of every norm in the DiT.
pub const NORM_EPS: f64 = 1e-6;

/// A linear layer `y = x W^T + b` that can carry unmerged LoRA adapters or have them merged
/// into its weight. A merged layer keeps no copy of its original weight: clearing re-reads
/// it from the weights the model was built from (memory-mapped, so this costs no memory
/// and restores the original bit for bit).
#[derive(Debug, Clone)]
pub struct DitLinear {
    /// Module path in the official state dict (e.g. `blocks.0.attn.qkv`).
    pub path: String,
    weight: Tensor,
    bias: Option<Tensor>,
    adapters: Vec<LoraAdapter>,
    /// LoRA deltas are merged into `weight`.
    merged: bool,
    /// The adapters are folded into the weight at each call (one GEMM, [`LoraMode::Fused`]).
    fused: bool,
}

impl DitLinear {
    /// Loads `<path>.weight` `[out, in]` and, with `bias`, `<path>.bias`.
    pub fn load(
        vb: &VarBuilder,
        path: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        let vb = vb.pp(path);
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self {
            path: path.to_string(),
            weight,
            bias,
            adapters: Vec::new(),
            merged: false,
            fused: false,
        })
    }

    /// `[out, in]` weight as currently used (merged LoRAs included).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Applies the layer in the weight dtype (LoRA deltas added on the output).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_as(x, self.weight.dtype())
    }

    /// Applies the layer with weights and input cast to f32 (the reference's fp32 autocast).
    pub fn forward_f32(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_as(x, DType::F32)
    }

    /// Output features `start..start + len` only (the rows of the weight), e.g. the q, k or v
    /// part of a fused projection: at refinement size the fused output would exceed
    /// [`crate::limits::MAX_KERNEL_ELEMS`], the limit of one device kernel.
    pub fn forward_rows(&self, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let dtype = self.weight.dtype();
        let x = x.to_dtype(dtype)?;
        let mut y = if self.fuses() {
            matmul_last(&x, &self.fused_weight(Some((start, len)), dtype)?)?
        } else {
            matmul_last(&x, &self.weight.narrow(0, start, len)?)?
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.narrow(0, start, len)?)?;
        }
        if !self.fuses() {
            for a in &self.adapters {
                y = (y + a.delta_rows(&x, start, len)?)?;
            }
        }
        check_kernel_elems(&self.path, y.elem_count())?;
        Ok(y)
    }

    fn forward_as(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        let x = x.to_dtype(dtype)?;
        let w = if self.fuses() {
            self.fused_weight(None, dtype)?
        } else {
            self.weight.to_dtype(dtype)?
        };
        let mut y = matmul_last(&x, &w)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.to_dtype(dtype)?)?;
        }
        if !self.fuses() {
            for a in &self.adapters {
                y = (y + a.delta(&x)?)?;
            }
        }
        check_kernel_elems(&self.path, y.elem_count())?;
        Ok(y)
    }

    /// Whether calls fold the adapters into the weight ([`LoraMode::Fused`] with adapters).
    fn fuses(&self) -> bool {
        self.fused && !self.adapters.is_empty()
    }

    /// The weight (output rows `start..start + len` with `rows`) plus every adapter's delta,
    /// summed in f32 and rounded once to `dtype`: a temporary for one call.
    fn fused_weight(&self, rows: Option<(usize, usize)>, dtype: DType) -> Result<Tensor> {
        let pick = |t: Tensor| match rows {
            Some((start, len)) => t.narrow(0, start, len),
            None => Ok(t),
        };
        let mut w = pick(self.weight.to_dtype(DType::F32)?)?;
        for a in &self.adapters {
            w = (w + pick(a.weight_delta()?)?)?;
        }
        Ok(w.to_dtype(dtype)?)
    }

    /// Attaches an unmerged adapter.
    pub fn push_adapter(&mut self, adapter: LoraAdapter) {
        self.adapters.push(adapter);
    }

    /// Attaches an adapter folded into the weight at every call ([`LoraMode::Fused`]).
    pub fn push_fused_adapter(&mut self, adapter: LoraAdapter) {
        self.adapters.push(adapter);
        self.fused = true;
    }

    /// Adds `adapter`'s weight delta into the weight, in f32, rounded once to the weight
    /// dtype. The original is not kept (see [`Self::clear_adapters`]).
    pub fn merge_adapter(&mut self, adapter: &LoraAdapter) -> Result<()> {
        let delta = adapter.weight_delta()?;
        let merged = (self.weight.to_dtype(DType::F32)? + delta)?;
        self.weight = merged.to_dtype(self.weight.dtype())?;
        self.merged = true;
        Ok(())
    }

    /// Whether LoRA deltas are merged into the weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// Drops all adapters; a merged weight is replaced by `<path>.weight` re-read from
    /// `source` (the builder the model was loaded from), so the original comes back exactly.
    /// On error the layer stays merged.
    pub fn clear_adapters(&mut self, source: &VarBuilder) -> Result<()> {
        self.adapters.clear();
        self.fused = false;
        if self.merged {
            let shape = (self.out_dim(), self.in_dim());
            self.weight = source.pp(&self.path).get(shape, "weight")?;
            self.merged = false;
        }
        Ok(())
    }

    /// Bytes of every tensor the layer holds (weight, bias, unmerged LoRA factors).
    pub fn held_bytes(&self) -> usize {
        let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        bytes(&self.weight)
            + self.bias.as_ref().map_or(0, bytes)
            + self
                .adapters
                .iter()
                .map(LoraAdapter::held_bytes)
                .sum::<usize>()
    }
}

/// RMS norm over the last dim computed in f32, cast back, then scaled by `weight` (the
/// official `RMSNorm_FP32`). The f32 normalisation is candle's fused row kernel (CPU and
/// CUDA: sum of squares in f32, one pass over the rows) with a unit scale, so the weight is
/// applied after the cast as the official code does; [`rms_norm_reference`] is the op-by-op
/// form it is tested against.
pub fn rms_norm_f32(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?.contiguous()?;
    let unit = Tensor::ones(xf.dim(D::Minus1)?, DType::F32, xf.device())?;
    let normed = candle_nn::ops::rms_norm(&xf, &unit, NORM_EPS as f32)?;
    Ok(normed
        .to_dtype(dtype)?
        .broadcast_mul(&weight.to_dtype(dtype)?)?)
}

/// [`rms_norm_f32`] op by op (square, mean, add, sqrt, divide): the reference for tests.
pub fn rms_norm_reference(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xf.broadcast_div(&(ms + NORM_EPS)?.sqrt()?)?;
    Ok(normed
        .to_dtype(dtype)?
        .broadcast_mul(&weight.to_dtype(dtype)?)?)
}

/// Layer norm over the last dim in f32 (optional affine), returned in f32.
pub fn layer_norm_f32(x: &Tensor, affine: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    let xf = x.to_dtype(DType::F32)?;
    let mean = xf.mean_keepdim(D::Minus1)?;
    let centered = xf.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let mut y = centered.broadcast_div(&(var + NORM_EPS)?.sqrt()?)?;
    if let Some((w, b)) = affine {
        y = y
            .broadcast_mul(&w.to_dtype(DType::F32)?)?
            .broadcast_add(&b.to_dtype(DType::F32)?)?;
    }
    Ok(y)
}

/// Elements of `[B, N, C]` the per-frame f32 ops ([`modulate_f32`], [`gated_residual`]) work
/// on at once: bigger inputs go frame range by frame range, so their f32 temporaries stay
/// bounded (at refinement one f32 `[1, 183040, 4096]` temporary is 3 GB).
const FRAME_CHUNK_ELEMS: usize = 1 << 26;

/// Applies `f` to `[B, frames, S, C]` views of `x` (`[B, N, C]`, `N = T * S`) over frame
/// ranges `(start, len)` of at most [`FRAME_CHUNK_ELEMS`] elements and concatenates the
/// results back to `[B, N, C]`.
fn by_frames(
    x: &Tensor,
    t: usize,
    f: impl Fn(&Tensor, usize, usize) -> Result<Tensor>,
) -> Result<Tensor> {
    by_frames_within(x, t, FRAME_CHUNK_ELEMS, f)
}

/// [`by_frames`] with an explicit element budget per range.
fn by_frames_within(
    x: &Tensor,
    t: usize,
    budget: usize,
    f: impl Fn(&Tensor, usize, usize) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    let s = n / t.max(1);
    let x4 = x.reshape((b, t, s, c))?;
    let frames = (budget / (b * s * c).max(1)).clamp(1, t.max(1));
    if frames >= t {
        return Ok(f(&x4, 0, t)?.reshape((b, n, c))?);
    }
    let mut outs = Vec::with_capacity(t.div_ceil(frames));
    let mut t0 = 0;
    while t0 < t {
        let len = frames.min(t - t0);
        outs.push(f(&x4.narrow(1, t0, len)?, t0, len)?);
        t0 += len;
    }
    Ok(Tensor::cat(&outs, 1)?.reshape((b, n, c))?)
}

/// `norm(x) * (1 + scale) + shift` per frame, in f32, cast to `x`'s dtype.
///
/// `x` is `[B, N, C]` with `N = T * S`; `shift`/`scale` are f32 `[B, T, 1, C]`.
pub fn modulate_f32(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let t = shift.dims()[1];
    by_frames(x, t, |xc, t0, len| {
        let xn = layer_norm_f32(xc, None)?;
        let (sh, sc) = (shift.narrow(1, t0, len)?, scale.narrow(1, t0, len)?);
        let y = xn.broadcast_mul(&(sc + 1.0)?)?.broadcast_add(&sh)?;
        Ok(y.to_dtype(x.dtype())?)
    })
}

/// `x + gate * y` per frame in f32, cast to `x`'s dtype. `gate` is f32 `[B, T, 1, C]`.
pub fn gated_residual(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    let t = gate.dims()[1];
    let y4 = y.reshape((b, t, n / t, c))?;
    by_frames(x, t, |xc, t0, len| {
        let yf = y4.narrow(1, t0, len)?.to_dtype(DType::F32)?;
        let g = gate.narrow(1, t0, len)?;
        let sum = (xc.to_dtype(DType::F32)? + yf.broadcast_mul(&g)?)?;
        Ok(sum.to_dtype(x.dtype())?)
    })
}

/// Softmax attention `softmax(q k^T / sqrt(d) + bias) v` with flash-style tiles (online
/// softmax, f32 accumulation): memory per call is bounded by the tile, not rows × keys.
///
/// `q` `[B, H, Sq, D]`, `k`/`v` `[B, H, Sk, D]`, optional f32 additive key `bias`
/// broadcastable to `[B, 1, 1, Sk]`. Returns `q`'s dtype.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let d = q.dim(3)?;
    crate::attention::flash_attention(q, k, v, bias, 1.0 / (d as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::lora::LoraLayer;

    /// A `[out, in]` linear with bias and a two-block adapter (a fused projection's shape).
    fn linear_with_adapter(dtype: DType, fused: bool) -> (DitLinear, LoraAdapter) {
        let dev = Device::Cpu;
        let (out, inp, rank) = (12, 16, 3);
        let t = |shape: (usize, usize), s: f64| {
            (Tensor::randn(0f32, 1.0, shape, &dev).unwrap() * s)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        let lin = DitLinear {
            path: "blocks.0.attn.qkv".into(),
            weight: t((out, inp), 0.3),
            bias: Some(t((1, out), 0.1).squeeze(0).unwrap()),
            adapters: Vec::new(),
            merged: false,
            fused,
        };
        let layer = LoraLayer {
            down: t((2 * rank, inp), 0.2),
            ups: vec![t((out / 2, rank), 0.2), t((out / 2, rank), 0.2)],
            alpha_scale: 0.5,
        };
        (lin, LoraAdapter::new(layer, 0.8))
    }

    #[test]
    fn fused_lora_matches_unmerged_whole_and_by_rows() {
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 0.05)] {
            let x = Tensor::randn(0f32, 1.0, (2, 9, 16), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let (mut unmerged, a) = linear_with_adapter(dtype, false);
            let mut fused = unmerged.clone();
            let plain = unmerged.forward(&x).unwrap();
            unmerged.push_adapter(a.clone());
            fused.push_fused_adapter(a);
            assert!(fused.fuses() && !unmerged.fuses());
            let want = unmerged.forward(&x).unwrap();
            let got = fused.forward(&x).unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                crate::test_util::max_abs_diff(
                    &a.to_dtype(DType::F32).unwrap(),
                    &b.to_dtype(DType::F32).unwrap(),
                )
            };
            assert!(
                diff(&plain, &want) > 0.05,
                "{dtype:?}: the adapter changes nothing"
            );
            assert!(diff(&want, &got) < tol, "{dtype:?}: {}", diff(&want, &got));
            // Rows crossing the two up blocks (4..10 of 12).
            let want = unmerged.forward_rows(&x, 4, 6).unwrap();
            let got = fused.forward_rows(&x, 4, 6).unwrap();
            assert!(
                diff(&want, &got) < tol,
                "{dtype:?} rows: {}",
                diff(&want, &got)
            );
            assert!(
                diff(
                    &fused.forward_f32(&x).unwrap(),
                    &unmerged.forward_f32(&x).unwrap()
                ) < 1e-5
            );
            // Clearing leaves the plain layer, in both forms.
            let source = VarBuilder::zeros(dtype, &Device::Cpu);
            fused.clear_adapters(&source).unwrap();
            assert_eq!(diff(&fused.forward(&x).unwrap(), &plain), 0.0);
        }
    }

    #[test]
    fn frame_ranges_give_the_same_result_as_one_pass() {
        let dev = Device::Cpu;
        let (b, t, s, c) = (2, 5, 3, 4);
        let x = Tensor::randn(0f32, 1.0, (b, t * s, c), &dev).unwrap();
        let shift = Tensor::randn(0f32, 1.0, (b, t, 1, c), &dev).unwrap();
        let scale = Tensor::randn(0f32, 1.0, (b, t, 1, c), &dev).unwrap();
        let op = |xc: &Tensor, t0: usize, len: usize| -> Result<Tensor> {
            let xn = layer_norm_f32(xc, None)?;
            let (sh, sc) = (shift.narrow(1, t0, len)?, scale.narrow(1, t0, len)?);
            Ok(xn.broadcast_mul(&(sc + 1.0)?)?.broadcast_add(&sh)?)
        };
        let whole = by_frames_within(&x, t, usize::MAX, op).unwrap();
        // Budgets of one frame and of two frames (5 frames: a short last range).
        for budget in [b * s * c, 2 * b * s * c] {
            let parts = by_frames_within(&x, t, budget, op).unwrap();
            let diff = crate::test_util::max_abs_diff(&parts, &whole);
            assert_eq!(diff, 0.0);
        }
        assert_eq!(
            modulate_f32(&x, &shift, &scale).unwrap().dims(),
            &[b, t * s, c]
        );
    }

    #[test]
    fn fused_rms_norm_matches_the_op_by_op_form() {
        let dev = Device::Cpu;
        // Rows of very different scales, strided input (a transposed view), f32 and bf16.
        let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 128), &dev)
            .unwrap()
            .broadcast_mul(
                &Tensor::new(&[1e-3f32, 1.0, 50.0], &dev)
                    .unwrap()
                    .reshape((1, 3, 1, 1))
                    .unwrap(),
            )
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let w = Tensor::randn(1f32, 0.1, 128, &dev).unwrap();
        let fused = rms_norm_f32(&x, &w).unwrap();
        let reference = rms_norm_reference(&x, &w).unwrap();
        assert_eq!(fused.dims(), &[2, 7, 3, 128]);
        let diff = crate::test_util::max_abs_diff(&fused, &reference);
        assert!(diff < 1e-5, "f32 {diff}");
        let (xb, wb) = (
            x.to_dtype(DType::BF16).unwrap(),
            w.to_dtype(DType::BF16).unwrap(),
        );
        let fused = rms_norm_f32(&xb, &wb).unwrap();
        let reference = rms_norm_reference(&xb, &wb).unwrap();
        assert_eq!(fused.dtype(), DType::BF16);
        // Both normalise in f32 and round once to bf16, then scale in bf16: equal up to a
        // rare last-bit difference from the f32 summation order.
        let diff = crate::test_util::max_abs_diff(&fused, &reference);
        assert!(diff <= 2.0f32.powi(-6), "bf16 {diff}");
    }
}
