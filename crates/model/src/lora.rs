//! LoRA adapters in the official LongCat-Video file format.
//!
//! Key layout (one group per target linear layer `M`, `.` in the module path replaced by
//! `___lorahyphen___`, prefixed with `lora___lorahyphen___`):
//! `<name>.lora_down.weight` `[n*rank, in]`, `<name>.lora_up.weight` `[out, rank]` (n = 1)
//! or `<name>.lora_up.blocks.<j>.weight` `[out/n, rank]` (fused layers), and a scalar
//! `<name>.alpha_scale`. The delta on the layer output is
//! `multiplier * alpha_scale * concat_j(up_j(chunk_j(down(x))))`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor, D};

use crate::error::{ModelError, Result};
use crate::ops::matmul_last;

const PREFIX: &str = "lora___lorahyphen___";
const HYPHEN: &str = "___lorahyphen___";

/// The LoRA files of the official checkpoint (`lora/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraKind {
    /// `cfg_step_lora.safetensors`: distilled 16-step sampling without CFG.
    CfgStep,
    /// `refinement_lora.safetensors`: the 720p refinement stage.
    Refinement,
}

impl LoraKind {
    /// The name the official demos load the LoRA under.
    pub fn name(self) -> &'static str {
        match self {
            LoraKind::CfgStep => "cfg_step_lora",
            LoraKind::Refinement => "refinement_lora",
        }
    }

    /// File name inside `lora/`.
    pub fn file_name(self) -> &'static str {
        match self {
            LoraKind::CfgStep => "cfg_step_lora.safetensors",
            LoraKind::Refinement => "refinement_lora.safetensors",
        }
    }
}

/// How enabled LoRAs are applied to the DiT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraMode {
    /// Deltas are computed on the layer outputs at every forward (the official behaviour).
    #[default]
    Unmerged,
    /// Deltas are added into the weights once (`W += m * alpha * up @ down`); disabling
    /// restores the original weights.
    Merged,
    /// One GEMM per layer call with the weight folded on the fly (`W + m * alpha * up @ down`
    /// computed in f32, rounded once to the weight dtype, dropped after the call): no
    /// per-token LoRA products and no extra pass over the output, at the price of an
    /// `[out, rank] x [rank, in]` product per call, which is cheaper than the unmerged
    /// products once a call has more than `in * out / (in + out)` tokens (2560 for a
    /// 5120-wide square layer; stage 1 runs about 37k, refinement about 170k). Enabling and
    /// disabling cost nothing (the weights are never changed).
    Fused,
}

/// The low-rank factors of one target layer.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    /// `[n*rank, in]`.
    pub down: Tensor,
    /// `n` up blocks, each `[out/n, rank]`.
    pub ups: Vec<Tensor>,
    /// `alpha / rank` as stored in the file.
    pub alpha_scale: f64,
}

/// One LoRA file: target module path (e.g. `blocks.0.attn.qkv`) to its factors.
#[derive(Debug, Clone, Default)]
pub struct LoraWeights {
    /// Layers by module path.
    pub layers: BTreeMap<String, LoraLayer>,
}

impl LoraWeights {
    /// Reads an official LoRA safetensors file onto `device` in `dtype`. The file is
    /// memory-mapped and converted tensor by tensor, so it is never read whole into RAM.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        // SAFETY: the file is mapped read-only and must not be modified while it is being
        // loaded (as for every checkpoint file; docs/checkpoint.md).
        let st = unsafe { MmapedSafetensors::new(path) }.map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        let names: BTreeSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        let get = |name: &str| -> Result<Option<Tensor>> {
            if names.contains(name) {
                Ok(Some(st.load(name, device)?))
            } else {
                Ok(None)
            }
        };
        Self::build(&names, get, &path.display().to_string(), dtype)
    }

    /// Builds the layers from a loaded state dict (`file` names it in errors).
    pub fn from_tensors(
        tensors: &std::collections::HashMap<String, Tensor>,
        file: &str,
        dtype: DType,
    ) -> Result<Self> {
        let names: BTreeSet<String> = tensors.keys().cloned().collect();
        Self::build(&names, |name| Ok(tensors.get(name).cloned()), file, dtype)
    }

    /// Builds the layers from the stored tensor `names`, reading each tensor once with `get`
    /// (in its stored dtype) and converting the factors to `dtype`.
    fn build(
        names: &BTreeSet<String>,
        get: impl Fn(&str) -> Result<Option<Tensor>>,
        file: &str,
        dtype: DType,
    ) -> Result<Self> {
        let missing = |tensor: String| ModelError::MissingTensor {
            tensor,
            file: file.to_string(),
        };
        let mut layers = BTreeMap::new();
        for key in names {
            let Some(name) = key.strip_suffix(".lora_down.weight") else {
                continue;
            };
            let module = name
                .strip_prefix(PREFIX)
                .ok_or_else(|| {
                    ModelError::InvalidArgument(format!(
                        "LoRA key `{key}` lacks the `{PREFIX}` prefix"
                    ))
                })?
                .replace(HYPHEN, ".");
            let down = get(key)?
                .ok_or_else(|| missing(key.clone()))?
                .to_dtype(dtype)?;
            let single = format!("{name}.lora_up.weight");
            let ups = if let Some(up) = get(&single)? {
                vec![up.to_dtype(dtype)?]
            } else {
                let mut ups = Vec::new();
                while let Some(up) = get(&format!("{name}.lora_up.blocks.{}.weight", ups.len()))? {
                    ups.push(up.to_dtype(dtype)?);
                }
                if ups.is_empty() {
                    return Err(missing(single));
                }
                ups
            };
            let alpha_key = format!("{name}.alpha_scale");
            let alpha_scale = get(&alpha_key)?
                .ok_or_else(|| missing(alpha_key.clone()))?
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?
                .first()
                .copied()
                .ok_or_else(|| missing(alpha_key))?;
            let rank = down.dims()[0] / ups.len();
            if down.dims()[0] != rank * ups.len() || ups.iter().any(|u| u.dims()[1] != rank) {
                return Err(ModelError::InvalidArgument(format!(
                    "LoRA `{module}`: down {:?} does not match {} up blocks",
                    down.dims(),
                    ups.len()
                )));
            }
            layers.insert(
                module,
                LoraLayer {
                    down,
                    ups,
                    alpha_scale,
                },
            );
        }
        Ok(Self { layers })
    }

    /// Bytes of every factor held.
    pub fn held_bytes(&self) -> usize {
        self.layers.values().map(LoraLayer::held_bytes).sum()
    }
}

impl LoraLayer {
    /// Bytes of the factors.
    pub fn held_bytes(&self) -> usize {
        std::iter::once(&self.down)
            .chain(&self.ups)
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }
}

/// A LoRA layer bound to a multiplier, ready to be applied to one linear layer.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    layer: LoraLayer,
    scale: f64,
}

impl LoraAdapter {
    /// Binds `layer` with `multiplier` (scale = multiplier * alpha_scale).
    pub fn new(layer: LoraLayer, multiplier: f64) -> Self {
        let scale = multiplier * layer.alpha_scale;
        Self { layer, scale }
    }

    /// Bytes of the factors this adapter holds.
    pub fn held_bytes(&self) -> usize {
        self.layer.held_bytes()
    }

    /// Checks that the factors fit a `[out, in]` linear layer.
    pub fn check_fits(&self, path: &str, in_dim: usize, out_dim: usize) -> Result<()> {
        let l = &self.layer;
        let n = l.ups.len();
        if l.down.dims()[1] != in_dim || l.ups.iter().any(|u| u.dims()[0] * n != out_dim) {
            return Err(ModelError::InvalidArgument(format!(
                "LoRA for `{path}` (down {:?}, {n} up blocks of {:?}) does not fit a [{out_dim}, {in_dim}] layer",
                l.down.dims(),
                l.ups.first().map(|u| u.dims().to_vec()),
            )));
        }
        Ok(())
    }

    /// The output delta for input `x` `[..., in]` (computed in `x`'s dtype).
    pub fn delta(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let down = matmul_last(x, &self.layer.down.to_dtype(dtype)?)?;
        let n = self.layer.ups.len();
        let rank = self.layer.down.dims()[0] / n;
        let mut parts = Vec::with_capacity(n);
        for (j, up) in self.layer.ups.iter().enumerate() {
            let chunk = down.narrow(D::Minus1, j * rank, rank)?;
            parts.push(matmul_last(&chunk, &up.to_dtype(dtype)?)?);
        }
        let up = if parts.len() == 1 {
            parts.remove(0)
        } else {
            Tensor::cat(&parts, D::Minus1)?
        };
        Ok((up * self.scale)?)
    }

    /// The output delta restricted to output features `start..start + len` (what
    /// [`Self::delta`] gives for those columns, without computing the others).
    pub fn delta_rows(&self, x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let dtype = x.dtype();
        let n = self.layer.ups.len();
        let rank = self.layer.down.dims()[0] / n;
        let per = self.layer.ups.first().map(|u| u.dims()[0]).unwrap_or(0);
        let end = start + len;
        let mut parts = Vec::new();
        for (j, up) in self.layer.ups.iter().enumerate() {
            let (lo, hi) = (start.max(j * per), end.min((j + 1) * per));
            if lo >= hi {
                continue;
            }
            let down = self.layer.down.narrow(0, j * rank, rank)?.to_dtype(dtype)?;
            let up = up.narrow(0, lo - j * per, hi - lo)?.to_dtype(dtype)?;
            parts.push(matmul_last(&matmul_last(x, &down)?, &up)?);
        }
        let out = if parts.len() == 1 {
            parts.remove(0)
        } else {
            Tensor::cat(&parts, D::Minus1)?
        };
        Ok((out * self.scale)?)
    }

    /// The f32 weight delta `scale * blockdiag(up_j) @ down`, `[out, in]`.
    pub fn weight_delta(&self) -> Result<Tensor> {
        let n = self.layer.ups.len();
        let down = self.layer.down.to_dtype(DType::F32)?;
        let rank = down.dims()[0] / n;
        let mut rows = Vec::with_capacity(n);
        for (j, up) in self.layer.ups.iter().enumerate() {
            let d = down.narrow(0, j * rank, rank)?;
            rows.push(up.to_dtype(DType::F32)?.matmul(&d)?);
        }
        Ok((Tensor::cat(&rows, 0)? * self.scale)?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn mmapped_load_matches_the_state_dict() {
        let dev = Device::Cpu;
        let ramp = |r: usize, c: usize| {
            let v: Vec<f32> = (0..r * c).map(|k| ((k * 7) % 11) as f32 - 5.0).collect();
            Tensor::from_vec(v, (r, c), &dev).unwrap()
        };
        let qkv =
            "lora___lorahyphen___blocks___lorahyphen___0___lorahyphen___attn___lorahyphen___qkv";
        let w1 = "lora___lorahyphen___blocks___lorahyphen___0___lorahyphen___ffn___lorahyphen___w1";
        let mut sd: HashMap<String, Tensor> = HashMap::new();
        sd.insert(format!("{qkv}.lora_down.weight"), ramp(6, 8));
        for j in 0..3 {
            sd.insert(format!("{qkv}.lora_up.blocks.{j}.weight"), ramp(8, 2));
        }
        sd.insert(
            format!("{qkv}.alpha_scale"),
            Tensor::new(0.25f32, &dev).unwrap(),
        );
        sd.insert(format!("{w1}.lora_down.weight"), ramp(2, 8));
        sd.insert(format!("{w1}.lora_up.weight"), ramp(32, 2));
        sd.insert(
            format!("{w1}.alpha_scale"),
            Tensor::new(0.5f32, &dev).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lora.safetensors");
        candle_core::safetensors::save(&sd, &path).unwrap();

        let direct = LoraWeights::from_tensors(&sd, "sd", DType::BF16).unwrap();
        let mapped = LoraWeights::load(&path, &dev, DType::BF16).unwrap();
        assert_eq!(
            mapped.layers.keys().collect::<Vec<_>>(),
            ["blocks.0.attn.qkv", "blocks.0.ffn.w1"]
        );
        for (k, a) in &direct.layers {
            let b = &mapped.layers[k];
            assert_eq!(a.alpha_scale, b.alpha_scale);
            assert_eq!(b.down.dtype(), DType::BF16);
            let flat = |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
            let same = |x: &Tensor, y: &Tensor| {
                flat(x).to_vec1::<f32>().unwrap() == flat(y).to_vec1::<f32>().unwrap()
            };
            assert!(same(&a.down, &b.down), "{k}");
            assert_eq!(a.ups.len(), b.ups.len());
            assert!(a.ups.iter().zip(&b.ups).all(|(x, y)| same(x, y)), "{k}");
        }
        assert_eq!(mapped.held_bytes(), (6 * 8 + 3 * 16 + 16 + 64) * 2);

        sd.remove(&format!("{w1}.alpha_scale"));
        candle_core::safetensors::save(&sd, &path).unwrap();
        let err = LoraWeights::load(&path, &dev, DType::F32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("alpha_scale"), "{err}");
    }

    #[test]
    fn delta_rows_equals_the_matching_columns_of_delta() {
        let dev = Device::Cpu;
        let (rank, n, per, inp) = (3, 3, 8, 10);
        let layer = LoraLayer {
            down: Tensor::randn(0f32, 1.0, (n * rank, inp), &dev).unwrap(),
            ups: (0..n)
                .map(|_| Tensor::randn(0f32, 1.0, (per, rank), &dev).unwrap())
                .collect(),
            alpha_scale: 0.5,
        };
        let a = LoraAdapter::new(layer, 1.5);
        let x = Tensor::randn(0f32, 1.0, (2, 5, inp), &dev).unwrap();
        let full = a.delta(&x).unwrap();
        // Whole up blocks (the q/k/v parts), a range inside one block, one across two.
        for (start, len) in [(0, 8), (8, 8), (16, 8), (3, 4), (6, 12), (0, 24)] {
            let part = a.delta_rows(&x, start, len).unwrap();
            let want = full.narrow(D::Minus1, start, len).unwrap();
            let diff = crate::test_util::max_abs_diff(&part, &want);
            assert!(diff < 1e-5, "rows {start}+{len}: {diff}");
        }
    }
}
