//! Softmax attention in bounded memory: flash-style tiles with an online softmax (running row
//! max and sum, f32 accumulation), for dense attention (self and cross) and for the per-block
//! attention of BSA.
//!
//! Two implementations of the same algorithm:
//! - [`cpu`]: a native kernel for f32 tensors on the CPU (one task per head and query tile,
//!   `gemm` for both products, vectorised base-2 exponentials). Memory per task: one
//!   `tile × KEY_TILE` score block.
//! - [`tiled`]: candle tensor ops over query/key tiles, for every other device and dtype
//!   (products in the input dtype, softmax and accumulation in f32). It is the reference the
//!   CPU kernel is tested against and the path CUDA runs until it has kernels of its own.
//!
//! Neither materialises a `rows × keys` score matrix nor a whole-tensor f32 copy of q, k or v.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod reference;
mod softmax;
pub mod tiled;

use candle_core::{DType, Device, Layout, Storage, Tensor};

use crate::error::{ModelError, Result};

pub use softmax::exp2;

/// Which implementation a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The native kernel where it applies (CPU f32; CUDA bf16 with head size 64 or 128 in a
    /// `cuda` build), else the tiled tensor ops.
    Auto,
    /// Always the tiled tensor ops (the reference).
    Tiled,
}

/// `softmax(q kᵀ · scale + key_bias) v`.
///
/// `q` `[B, H, Sq, D]`, `k`/`v` `[B, H, Sk, D]` (any strides with a contiguous last dim),
/// optional f32 `key_bias` broadcastable to `[B, 1, 1, Sk]` (e.g. a padding mask as large
/// negative numbers). Returns `[B, H, Sq, D]` in `q`'s dtype.
pub fn flash_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    flash_attention_with(q, k, v, key_bias, scale, Kernel::Auto)
}

/// [`flash_attention`] with an explicit [`Kernel`].
pub fn flash_attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    scale: f64,
    kernel: Kernel,
) -> Result<Tensor> {
    let (b, h, sq, d) = q.dims4()?;
    let (kb, kh, sk, kd) = k.dims4()?;
    if (kb, kh, kd) != (b, h, d) || v.dims() != k.dims() {
        return Err(ModelError::InvalidArgument(format!(
            "attention: q {:?}, k {:?}, v {:?} do not match",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    let key_bias = match key_bias {
        Some(bias) => Some(
            bias.to_dtype(DType::F32)?
                .broadcast_as((b, 1, 1, sk))?
                .reshape((b, sk))?
                .contiguous()?,
        ),
        None => None,
    };
    if kernel == Kernel::Auto && uses_cpu_kernel(&[q, k, v]) {
        let qv = Strided::of(q)?;
        let kv = Strided::of(k)?;
        let vv = Strided::of(v)?;
        let bias = key_bias.as_ref().map(Strided::of).transpose()?;
        let bias_slice = bias.as_ref().map(Strided::contiguous::<f32>).transpose()?;
        let out = cpu::dense(
            qv.rows(h)?,
            kv.rows(h)?,
            vv.rows(h)?,
            b * h,
            sq,
            sk,
            d,
            scale as f32,
            bias_slice,
        );
        return Ok(Tensor::from_vec(out, (b, h, sq, d), &Device::Cpu)?);
    }
    #[cfg(feature = "cuda")]
    if kernel == Kernel::Auto && cuda::applies(&[q, k, v]) {
        return cuda::dense(q, k, v, key_bias.as_ref(), scale);
    }
    tiled::dense(q, k, v, key_bias.as_ref(), scale)
}

/// Block sparse attention over chunk-ordered tokens.
///
/// `q` `[BH, nq*cq, D]`, `k`/`v` `[BH, nk*ck, D]` with each block's tokens consecutive;
/// query block `i` of row `bh` attends to key blocks `ids[bh, i, ..lens[bh, i]]` (u32,
/// `[BH, nq, W]` and `[BH, nq]`) in that order. Returns `[BH, nq*cq, D]` in `q`'s dtype;
/// query blocks with no key block get zeros.
#[allow(clippy::too_many_arguments)]
pub fn block_sparse_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    ids: &Tensor,
    lens: &Tensor,
    cq: usize,
    ck: usize,
    scale: f64,
    kernel: Kernel,
) -> Result<Tensor> {
    let (bh, sq, d) = q.dims3()?;
    let (_, nq, width) = ids.dims3()?;
    if sq != nq * cq || lens.dims() != [bh, nq] {
        return Err(ModelError::InvalidArgument(format!(
            "BSA: q {:?}, ids {:?}, lens {:?} with query blocks of {cq} do not match",
            q.dims(),
            ids.dims(),
            lens.dims()
        )));
    }
    if kernel == Kernel::Auto && uses_cpu_kernel(&[q, k, v]) {
        let ids = ids.to_dtype(DType::U32)?.contiguous()?;
        let lens = lens.to_dtype(DType::U32)?.contiguous()?;
        let (ids_s, lens_s) = (Strided::of(&ids)?, Strided::of(&lens)?);
        let (ids_v, lens_v) = (ids_s.contiguous::<u32>()?, lens_s.contiguous::<u32>()?);
        let (q4, k4, v4) = (q.unsqueeze(0)?, k.unsqueeze(0)?, v.unsqueeze(0)?);
        let qv = Strided::of(&q4)?;
        let kv = Strided::of(&k4)?;
        let vv = Strided::of(&v4)?;
        let out = cpu::block_sparse(
            qv.rows(bh)?,
            kv.rows(bh)?,
            vv.rows(bh)?,
            ids_v,
            lens_v,
            bh,
            nq,
            width,
            cq,
            ck,
            d,
            scale as f32,
        );
        return Ok(Tensor::from_vec(out, (bh, sq, d), &Device::Cpu)?);
    }
    #[cfg(feature = "cuda")]
    if kernel == Kernel::Auto && cuda::applies(&[q, k, v]) {
        return cuda::block_sparse(q, k, v, ids, lens, cq, ck, scale);
    }
    tiled::block_sparse(q, k, v, ids, lens, cq, ck, scale)
}

/// Whether [`flash_attention`] / [`block_sparse_attention`] send these tensors to the CUDA
/// kernel (always false without the `cuda` feature).
pub fn cuda_kernel_applies(ts: &[&Tensor]) -> bool {
    #[cfg(feature = "cuda")]
    return cuda::applies(ts);
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ts;
        false
    }
}

/// Whether the native CPU kernel handles these tensors (CPU, f32, contiguous last dim).
fn uses_cpu_kernel(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| {
        t.device().is_cpu() && t.dtype() == DType::F32 && t.layout().stride().last() == Some(&1)
    })
}

/// A CPU f32 tensor's storage with its layout, borrowed for a kernel call.
struct Strided<'a> {
    storage: candle_core::StorageRef<'a>,
    layout: &'a Layout,
}

impl<'a> Strided<'a> {
    fn of(t: &'a Tensor) -> Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        Ok(Self { storage, layout })
    }

    /// The elements of a contiguous tensor, borrowed (no copy).
    fn contiguous<T: candle_core::WithDType>(&self) -> Result<&[T]> {
        let (data, start) = self.slice::<T>()?;
        Ok(&data[start..start + self.layout.shape().elem_count()])
    }

    /// The whole storage as `T` and the start offset.
    fn slice<T: candle_core::WithDType>(&self) -> Result<(&[T], usize)> {
        match &*self.storage {
            Storage::Cpu(cpu) => Ok((cpu.as_slice::<T>()?, self.layout.start_offset())),
            _ => Err(ModelError::InvalidArgument(
                "attention: the CPU kernel needs a CPU tensor".into(),
            )),
        }
    }

    /// A `[B, H, S, D]` view with `heads` heads.
    fn rows(&self, heads: usize) -> Result<cpu::RowsView<'_>> {
        let (data, start) = self.slice()?;
        let stride = self.layout.stride();
        Ok(cpu::RowsView {
            data,
            start,
            heads: heads.max(1),
            bh_stride: [stride[0], stride[1]],
            row_stride: stride[2],
        })
    }
}

#[cfg(test)]
mod tests;
