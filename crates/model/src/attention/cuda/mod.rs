//! Flash attention on CUDA in bf16: our own kernel (`flash_fwd.cu`), compiled at run time by
//! NVRTC for the GPU at hand, for dense attention (self and cross, with an optional key bias)
//! and for BSA's attention over selected key blocks. Same algorithm as [`super::cpu`] and
//! [`super::tiled`] (online softmax, f32 accumulation); the tiled tensor ops stay the
//! reference and the path for every other dtype or head size.
//!
//! Inputs may be strided views (`[B, S, H, D]` transposed to `[B, H, S, D]` needs no copy):
//! every dimension but the last may have any stride, the last is contiguous, and rows start
//! 16-byte aligned. [`applies`] says whether a call can use the kernel.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Storage, Tensor};
use half::bf16;

use crate::error::{ModelError, Result};

/// Kernel source; `HEAD_DIM` is defined at compile time.
const SOURCE: &str = include_str!("flash_fwd.cu");
const FUNCTION: &str = "longcat_flash_fwd_bf16";
/// Query rows and key rows per kernel tile (`BLOCK_M`, `BLOCK_N` in the source).
const TILE: usize = 64;
const THREADS: u32 = 128;
/// Head sizes the kernel is compiled for.
pub const HEAD_DIMS: [usize; 2] = [64, 128];

/// Whether q, k, v can go to the kernel: CUDA, bf16, a supported head size, a contiguous last
/// dimension and 16-byte aligned rows.
pub fn applies(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| {
        let layout = t.layout();
        let stride = layout.stride();
        t.device().is_cuda()
            && t.dtype() == DType::BF16
            && t.dims().last().is_some_and(|d| HEAD_DIMS.contains(d))
            && stride.last() == Some(&1)
            && layout.start_offset() % 8 == 0
            && stride.iter().rev().skip(1).all(|s| s % 8 == 0)
    })
}

/// Dense attention: `q` `[B, H, Sq, D]`, `k`/`v` `[B, H, Sk, D]` (strided views allowed),
/// optional f32 `key_bias` `[B, Sk]` (contiguous). Returns `[B, H, Sq, D]` bf16 as a view of
/// contiguous `[B, Sq, H, D]` memory: the kernel writes each head's rows into the token-major
/// layout, so merging the heads back (`transpose(1, 2)` then `reshape`) copies nothing.
pub fn dense(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let op = FlashOp {
        scale,
        key_bias: key_bias.cloned(),
        blocks: None,
    };
    Ok(q.apply_op3_no_bwd(k, v, &op)?.transpose(1, 2)?)
}

/// Block-sparse attention over chunk-ordered tokens, as [`super::block_sparse_attention`]:
/// `q` `[BH, nq*cq, D]`, `k`/`v` `[BH, nk*ck, D]`, `ids` `[BH, nq, W]` and `lens` `[BH, nq]`.
#[allow(clippy::too_many_arguments)]
pub fn block_sparse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    ids: &Tensor,
    lens: &Tensor,
    cq: usize,
    ck: usize,
    scale: f64,
) -> Result<Tensor> {
    let op = FlashOp {
        scale,
        key_bias: None,
        blocks: Some(Blocks {
            ids: ids.to_dtype(DType::U32)?.contiguous()?,
            lens: lens.to_dtype(DType::U32)?.contiguous()?,
            cq,
            ck,
        }),
    };
    let out = q
        .unsqueeze(1)?
        .apply_op3_no_bwd(&k.unsqueeze(1)?, &v.unsqueeze(1)?, &op)?;
    Ok(out.squeeze(1)?)
}

struct Blocks {
    ids: Tensor,
    lens: Tensor,
    cq: usize,
    ck: usize,
}

struct FlashOp {
    scale: f64,
    key_bias: Option<Tensor>,
    blocks: Option<Blocks>,
}

/// `[B, H, S, D]` strides of a layout, as the kernel's i64 arguments.
fn strides4(layout: &Layout) -> candle_core::Result<[i64; 3]> {
    match layout.stride() {
        [sb, sh, ss, 1] => Ok([*sb as i64, *sh as i64, *ss as i64]),
        s => candle_core::bail!("flash attention: unsupported strides {s:?}"),
    }
}

/// The PTX for one head size and GPU architecture, compiled once per process.
fn ptx(head_dim: usize, arch: &'static str) -> candle_core::Result<String> {
    static CACHE: OnceLock<Mutex<HashMap<(usize, &'static str), String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .map_err(|_| candle_core::Error::Msg("flash attention: PTX cache poisoned".into()))?;
    if let Some(p) = cache.get(&(head_dim, arch)) {
        return Ok(p.clone());
    }
    let opts = CompileOptions {
        arch: Some(arch),
        options: vec![format!("-DHEAD_DIM={head_dim}"), "-std=c++17".into()],
        name: Some("flash_fwd.cu".into()),
        ..Default::default()
    };
    let compiled = compile_ptx_with_opts(SOURCE, opts)
        .map_err(|e| candle_core::Error::Msg(format!("flash attention: NVRTC: {e:?}")))?
        .to_src();
    cache.insert((head_dim, arch), compiled.clone());
    Ok(compiled)
}

/// NVRTC's name for the device's architecture (the kernel needs sm_80 or newer).
fn arch(dev: &CudaDevice) -> candle_core::Result<&'static str> {
    let (major, minor) = dev.cuda_stream().context().compute_capability().w()?;
    Ok(match (major, minor) {
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 7) => "sm_87",
        (8, 9) => "sm_89",
        (9, _) => "sm_90",
        (10, _) => "sm_100",
        (12, _) => "sm_120",
        (m, n) if m >= 8 => candle_core::bail!(
            "flash attention: compute capability {m}.{n} has no entry here; add it"
        ),
        (m, n) => candle_core::bail!("flash attention needs sm_80 or newer, found {m}.{n}"),
    })
}

/// Compiles the kernel source for `arch` without a GPU (NVRTC only): for build checks.
pub fn compile_for(arch: &'static str, head_dim: usize) -> Result<String> {
    ptx(head_dim, arch).map_err(ModelError::from)
}

impl CustomOp3 for FlashOp {
    fn name(&self) -> &'static str {
        "longcat-flash-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the CUDA flash attention kernel got CPU tensors")
    }

    fn cuda_fwd(
        &self,
        qs: &CudaStorage,
        ql: &Layout,
        ks: &CudaStorage,
        kl: &Layout,
        vs: &CudaStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = qs.device().clone();
        let (b, h, sq, d) = ql.shape().dims4()?;
        let (_, _, sk, _) = kl.shape().dims4()?;
        let [q_sb, q_sh, q_ss] = strides4(ql)?;
        let [k_sb, k_sh, k_ss] = strides4(kl)?;
        let [v_sb, v_sh, v_ss] = strides4(vl)?;
        let q = qs.as_cuda_slice::<bf16>()?.slice(ql.start_offset()..);
        let k = ks.as_cuda_slice::<bf16>()?.slice(kl.start_offset()..);
        let v = vs.as_cuda_slice::<bf16>()?.slice(vl.start_offset()..);
        let n = b * h * sq * d;
        // Safety: the kernel writes every element of rows it owns; rows of query blocks
        // are all owned by exactly one kernel block.
        let out = unsafe { dev.alloc::<bf16>(n)? };
        // Dense attention writes `[B, Sq, H, D]` memory (the layout the output projection
        // reads, so the DiT's head merge is a free view); block sparse attention writes
        // `[B, H, Sq, D]` (its rows are chunk-ordered and regrouped afterwards anyway).
        let heads_inner = self.blocks.is_none();
        let (o_sb, o_sh, o_ss) = if heads_inner {
            ((sq * h * d) as i64, d as i64, (h * d) as i64)
        } else {
            ((h * sq * d) as i64, (sq * d) as i64, d as i64)
        };

        let arch = arch(&dev)?;
        let module = format!("longcat_flash_d{d}");
        let func = dev.get_or_load_custom_func(FUNCTION, &module, &ptx(d, arch)?)?;

        let int = |x: usize, what: &str| {
            i32::try_from(x).map_err(|_| {
                candle_core::Error::Msg(format!("flash attention: {what} {x} exceeds i32"))
            })
        };
        let (heads, sq_i, sk_i) = (int(h, "heads")?, int(sq, "query rows")?, int(sk, "keys")?);
        let scale_log2 = (self.scale * std::f64::consts::LOG2_E) as f32;
        let null: u64 = 0;

        // Extra inputs, held for the duration of the launch.
        let bias_guard = self.key_bias.as_ref().map(|t| t.storage_and_layout());
        let blocks_guard = self
            .blocks
            .as_ref()
            .map(|bl| (bl.ids.storage_and_layout(), bl.lens.storage_and_layout()));

        let mut builder = func.builder();
        builder.arg(&q).arg(&k).arg(&v).arg(&out);
        for s in [
            &q_sb, &q_sh, &q_ss, &k_sb, &k_sh, &k_ss, &v_sb, &v_sh, &v_ss, &o_sb, &o_sh, &o_ss,
        ] {
            builder.arg(s);
        }
        builder.arg(&heads).arg(&sq_i).arg(&sk_i).arg(&scale_log2);

        let bias_view;
        let bias_sb: i64;
        match &bias_guard {
            Some((storage, layout)) => {
                let Storage::Cuda(cs) = &**storage else {
                    candle_core::bail!("flash attention: key bias is not on the GPU")
                };
                if layout.dims() != [b, sk] || !layout.is_contiguous() {
                    candle_core::bail!("flash attention: key bias must be contiguous [B, Sk]")
                }
                bias_view = cs.as_cuda_slice::<f32>()?.slice(layout.start_offset()..);
                bias_sb = sk as i64;
                builder.arg(&bias_view).arg(&bias_sb);
            }
            None => {
                bias_sb = 0;
                builder.arg(&null).arg(&bias_sb);
            }
        }

        let (ids_view, lens_view);
        let (nq, width, cq, ck);
        let grid_x;
        match (&self.blocks, &blocks_guard) {
            (Some(bl), Some(((ids_s, ids_l), (lens_s, lens_l)))) => {
                let (Storage::Cuda(ids_c), Storage::Cuda(lens_c)) = (&**ids_s, &**lens_s) else {
                    candle_core::bail!("flash attention: block ids are not on the GPU")
                };
                let (ibh, inq, iw) = ids_l.shape().dims3()?;
                if ibh != b * h || lens_l.dims() != [ibh, inq] || sq != inq * bl.cq {
                    candle_core::bail!(
                        "flash attention: block ids {:?} / lens {:?} do not match q {:?}",
                        ids_l.dims(),
                        lens_l.dims(),
                        ql.dims()
                    )
                }
                ids_view = ids_c.as_cuda_slice::<u32>()?.slice(ids_l.start_offset()..);
                lens_view = lens_c
                    .as_cuda_slice::<u32>()?
                    .slice(lens_l.start_offset()..);
                (nq, width, cq, ck) = (
                    int(inq, "query blocks")?,
                    int(iw, "block width")?,
                    int(bl.cq, "query block")?,
                    int(bl.ck, "key block")?,
                );
                grid_x = inq * bl.cq.div_ceil(TILE);
                builder.arg(&ids_view).arg(&lens_view);
            }
            _ => {
                (nq, width, cq, ck) = (0i32, 0i32, 0i32, 0i32);
                grid_x = sq.div_ceil(TILE);
                builder.arg(&null).arg(&null);
            }
        }
        builder.arg(&nq).arg(&width).arg(&cq).arg(&ck);

        let grid = (
            u32::try_from(grid_x).map_err(|_| {
                candle_core::Error::Msg(format!("flash attention: {grid_x} query tiles"))
            })?,
            u32::try_from(h).map_err(|_| candle_core::Error::Msg("too many heads".into()))?,
            u32::try_from(b).map_err(|_| candle_core::Error::Msg("batch too large".into()))?,
        );
        if grid.1 > 65_535 || grid.2 > 65_535 {
            candle_core::bail!("flash attention: grid {grid:?} over the CUDA limits")
        }
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // Safety: argument order and types match the kernel's signature in flash_fwd.cu;
        // every pointer covers the rows the strides and sizes address.
        unsafe { builder.launch(cfg) }.w()?;
        drop(builder);
        let dims = if heads_inner {
            [b, sq, h, d]
        } else {
            [b, h, sq, d]
        };
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from_dims(&dims),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NVRTC compiles the kernel for every head size (no GPU needed, only libnvrtc), and the
    /// PTX uses the tensor-core and async-copy instructions the design relies on.
    #[test]
    fn kernel_compiles_with_nvrtc() {
        for arch in ["sm_80", "sm_90"] {
            for d in HEAD_DIMS {
                let ptx = compile_for(arch, d).unwrap();
                assert!(ptx.contains(FUNCTION), "{arch} d{d}");
                for instr in [
                    "mma.sync.aligned.m16n8k16",
                    "ldmatrix",
                    "cp.async",
                    "ex2.approx",
                ] {
                    assert!(ptx.contains(instr), "{arch} d{d}: no {instr}");
                }
            }
        }
    }
}
