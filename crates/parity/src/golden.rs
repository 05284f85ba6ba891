//! One golden file: its tensors, its JSON sidecar, and the bookkeeping of what was checked.
//!
//! A checker reads inputs with [`GoldenFile::input`] and compares its results with
//! [`GoldenFile::check_float`] / [`GoldenFile::check_int`]. Every tensor that was neither
//! read as an input nor checked is reported as a failure by the harness, so a golden file
//! with cases this code does not know about fails loudly instead of passing silently.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::error::GoldenError;

/// Maximum allowed error for one compared tensor: it passes when the max-abs error or the
/// relative error (max-abs / max |reference|) is within this bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance(pub f64);

impl Tolerance {
    /// Single component forwards (README: 1e-4).
    pub const COMPONENT: Tolerance = Tolerance(1e-4);
    /// Pipeline goldens: several chained forwards (README: 1e-3 relative).
    pub const PIPELINE: Tolerance = Tolerance(1e-3);
}

/// Where and in which float dtype the checks run: the CPU in f32 (the parity contract), or
/// another device / dtype. Off the contract (any dtype but f32) results are reported as
/// drift: their errors are printed, never judged against the f32 tolerances.
#[derive(Debug, Clone)]
pub struct Target {
    /// Device the networks are built on and the inputs are moved to.
    pub device: Device,
    /// Float dtype of the networks and of the floating inputs.
    pub dtype: DType,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }
}

impl Target {
    /// Whether results are judged (f32) or only reported as drift (any other dtype).
    pub fn judged(&self) -> bool {
        self.dtype == DType::F32
    }

    /// `cpu`, `cuda:0`, ... with the dtype, e.g. `cuda:0 bf16`.
    pub fn describe(&self) -> String {
        let device = longcat_pipeline::generator::device_name(&self.device);
        format!("{device} {:?}", self.dtype).to_lowercase()
    }
}

/// How one output tensor fared.
#[derive(Debug, Clone)]
pub struct TensorResult {
    /// Golden file stem, e.g. `dit_t2v`.
    pub file: String,
    /// Tensor name inside the file.
    pub tensor: String,
    /// Max absolute error (NaN when not computed).
    pub max_abs: f64,
    /// max_abs / max |reference| (NaN when not computed).
    pub rel: f64,
    /// Whether it passed (drift results always count as passed: see [`Self::drift`]).
    pub passed: bool,
    /// Reported off the parity contract (a dtype other than f32): the errors are the drift
    /// of that dtype, not judged.
    pub drift: bool,
    /// Why it failed, when it did and the numbers do not say it.
    pub note: Option<String>,
}

/// A golden `*.safetensors` file plus its `*.json` sidecar.
pub struct GoldenFile {
    /// File stem, e.g. `dit_t2v`.
    pub stem: String,
    /// Directory the file lives in (weights files are resolved relative to it).
    pub dir: PathBuf,
    /// The whole JSON sidecar.
    pub sidecar: Value,
    tensors: BTreeMap<String, Tensor>,
    target: Target,
    consumed: RefCell<BTreeSet<String>>,
    results: RefCell<Vec<TensorResult>>,
}

impl GoldenFile {
    /// Loads `<dir>/<stem>.safetensors` and `<dir>/<stem>.json` for checks on the CPU in f32.
    pub fn load(dir: &Path, stem: &str) -> Result<Self, GoldenError> {
        Self::load_for(dir, stem, Target::default())
    }

    /// Loads a golden for checks on `target` (references stay on the CPU).
    pub fn load_for(dir: &Path, stem: &str, target: Target) -> Result<Self, GoldenError> {
        let st_path = dir.join(format!("{stem}.safetensors"));
        let json_path = dir.join(format!("{stem}.json"));
        let tensors = candle_core::safetensors::load(&st_path, &Device::Cpu).map_err(|e| {
            GoldenError::Load {
                path: st_path.clone(),
                message: e.to_string(),
            }
        })?;
        let text = std::fs::read_to_string(&json_path).map_err(|e| GoldenError::Load {
            path: json_path.clone(),
            message: e.to_string(),
        })?;
        let sidecar: Value = serde_json::from_str(&text).map_err(|e| GoldenError::Load {
            path: json_path.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            stem: stem.to_string(),
            dir: dir.to_path_buf(),
            sidecar,
            tensors: tensors.into_iter().collect(),
            target,
            consumed: RefCell::new(BTreeSet::new()),
            results: RefCell::new(Vec::new()),
        })
    }

    /// The sidecar's `name` (the kind of golden), falling back to the file stem.
    pub fn kind(&self) -> &str {
        self.sidecar
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&self.stem)
    }

    /// The sidecar's `meta` object (`Null` when absent).
    pub fn meta(&self) -> &Value {
        self.sidecar.get("meta").unwrap_or(&Value::Null)
    }

    /// A value inside `meta` by JSON pointer (e.g. `/dit_config`), or an error naming it.
    pub fn meta_at(&self, pointer: &str) -> Result<&Value, GoldenError> {
        self.meta()
            .pointer(pointer)
            .ok_or_else(|| GoldenError::MissingMeta {
                file: self.stem.clone(),
                key: pointer.to_string(),
            })
    }

    /// Whether the file holds a tensor of that name.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Distinct case prefixes: for names `op.<case>.<rest>` with `prefix = "op."` this returns
    /// every `<case>` once, sorted.
    pub fn cases(&self, prefix: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        for name in self.tensors.keys() {
            if let Some(rest) = name.strip_prefix(prefix) {
                if let Some((case, _)) = rest.split_once('.') {
                    out.insert(case.to_string());
                }
            }
        }
        out.into_iter().collect()
    }

    /// The device checks run on.
    pub fn device(&self) -> &Device {
        &self.target.device
    }

    /// The float dtype networks are built in.
    pub fn dtype(&self) -> DType {
        self.target.dtype
    }

    /// Reads an input tensor (marks it as used) on the target device, as stored: integer
    /// tensors as i64, floating ones as f32 (the networks' callers, like the pipeline's
    /// adapters, hand f32 to networks of any dtype).
    pub fn input(&self, name: &str) -> Result<Tensor, GoldenError> {
        let t = self.input_cpu(name)?;
        t.to_device(&self.target.device)
            .map_err(|e| GoldenError::Load {
                path: self.dir.join(format!("{}.safetensors", self.stem)),
                message: format!("{name} to {}: {e}", self.target.describe()),
            })
    }

    /// Reads an input tensor as stored, on the CPU (marks it as used): for inputs that are
    /// host data (images, schedules), whatever the target.
    pub fn input_cpu(&self, name: &str) -> Result<Tensor, GoldenError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| GoldenError::MissingTensor {
                file: self.stem.clone(),
                tensor: name.to_string(),
            })?;
        self.consumed.borrow_mut().insert(name.to_string());
        Ok(t.clone())
    }

    /// Marks a tensor as used without reading it (e.g. an input re-derived by our code and
    /// compared elsewhere).
    pub fn mark_used(&self, name: &str) {
        self.consumed.borrow_mut().insert(name.to_string());
    }

    /// Compares a floating result with the reference tensor `name` at `tol`.
    pub fn check_float(&self, name: &str, actual: &Tensor, tol: Tolerance) {
        let result = self.compare_float(name, actual, tol);
        self.push(name, result);
    }

    /// Compares an integer result (any integer or 0/1 dtype) exactly with `name`.
    pub fn check_int(&self, name: &str, actual: &Tensor) {
        let result = self.compare_int(name, actual);
        self.push(name, result);
    }

    /// Records a failure for `name` without a comparison (e.g. the computation errored).
    pub fn fail(&self, name: &str, note: impl Into<String>) {
        self.push(name, Err(note.into()));
    }

    /// Records an error for every tensor not yet consumed or checked (used when a checker
    /// aborts with an error part-way).
    pub fn fail_remaining(&self, note: &str) {
        for name in self.unaccounted() {
            self.fail(&name, note);
        }
    }

    /// Tensor names neither read as inputs nor checked.
    pub fn unaccounted(&self) -> Vec<String> {
        let consumed = self.consumed.borrow();
        let checked: BTreeSet<String> = self
            .results
            .borrow()
            .iter()
            .map(|r| r.tensor.clone())
            .collect();
        self.tensors
            .keys()
            .filter(|n| !consumed.contains(*n) && !checked.contains(*n))
            .cloned()
            .collect()
    }

    /// Finishes the file: every unaccounted tensor becomes a failure; returns all results.
    pub fn finish(self) -> Vec<TensorResult> {
        for name in self.unaccounted() {
            self.fail(&name, "output tensor not checked by this harness");
        }
        self.results.into_inner()
    }

    fn push(&self, name: &str, result: Result<(f64, f64, bool), String>) {
        let (max_abs, rel, passed, note) = match result {
            Ok((a, r, p)) => (a, r, p, None),
            Err(note) => (f64::NAN, f64::NAN, false, Some(note)),
        };
        // Off the contract only errors (and NaN) fail; the numbers are reported as drift.
        let drift = !self.target.judged();
        let passed = if drift && note.is_none() {
            !max_abs.is_nan()
        } else {
            passed
        };
        self.results.borrow_mut().push(TensorResult {
            file: self.stem.clone(),
            tensor: name.to_string(),
            max_abs,
            rel,
            passed,
            drift,
            note,
        });
    }

    fn reference(&self, name: &str) -> Result<&Tensor, String> {
        self.tensors
            .get(name)
            .ok_or_else(|| format!("reference tensor `{name}` is not in the file"))
    }

    fn compare_float(
        &self,
        name: &str,
        actual: &Tensor,
        tol: Tolerance,
    ) -> Result<(f64, f64, bool), String> {
        let reference = self.reference(name)?;
        if reference.dims() != actual.dims() {
            return Err(format!(
                "shape mismatch: reference {:?}, ours {:?}",
                reference.dims(),
                actual.dims()
            ));
        }
        let (max_abs, rel) = float_errors(reference, actual).map_err(|e| e.to_string())?;
        let passed = max_abs.is_finite() && (max_abs <= tol.0 || rel <= tol.0);
        Ok((max_abs, rel, passed))
    }

    fn compare_int(&self, name: &str, actual: &Tensor) -> Result<(f64, f64, bool), String> {
        let reference = self.reference(name)?;
        if reference.dims() != actual.dims() {
            return Err(format!(
                "shape mismatch: reference {:?}, ours {:?}",
                reference.dims(),
                actual.dims()
            ));
        }
        let to_i64 = |t: &Tensor| -> candle_core::Result<Vec<i64>> {
            t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()
        };
        let r = to_i64(reference).map_err(|e| e.to_string())?;
        let a = to_i64(actual).map_err(|e| e.to_string())?;
        let mismatches = r.iter().zip(&a).filter(|(x, y)| x != y).count();
        let max_abs = r
            .iter()
            .zip(&a)
            .map(|(x, y)| (x - y).unsigned_abs() as f64)
            .fold(0.0, f64::max);
        if mismatches == 0 {
            Ok((0.0, 0.0, true))
        } else if !self.target.judged() {
            // Drift: max difference and the fraction of values that differ.
            Ok((max_abs, mismatches as f64 / r.len().max(1) as f64, false))
        } else {
            Err(format!(
                "{mismatches} of {} integer values differ (max diff {max_abs})",
                r.len()
            ))
        }
    }
}

/// Max-abs error and relative error (max-abs / max |reference|) between two float tensors.
pub fn float_errors(reference: &Tensor, actual: &Tensor) -> candle_core::Result<(f64, f64)> {
    let r = reference
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let a = actual
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let mut max_abs = 0f64;
    let mut max_ref = 0f64;
    for (x, y) in r.iter().zip(&a) {
        let d = (x - y).abs();
        // A NaN in ours must fail, so propagate it instead of letting max() drop it.
        if d.is_nan() {
            return Ok((f64::NAN, f64::NAN));
        }
        max_abs = max_abs.max(d);
        max_ref = max_ref.max(x.abs());
    }
    let rel = if max_ref > 0.0 {
        max_abs / max_ref
    } else if max_abs == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    Ok((max_abs, rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_errors_reports_abs_and_relative() {
        let r = Tensor::new(&[1f32, -4.0, 2.0], &Device::Cpu).unwrap();
        let a = Tensor::new(&[1f32, -3.0, 2.0], &Device::Cpu).unwrap();
        let (abs, rel) = float_errors(&r, &a).unwrap();
        assert_eq!(abs, 1.0);
        assert_eq!(rel, 0.25);
    }

    /// A golden with `x` = [1, 2, 4] (f32) and `ids` = [3, 1] (i64) in a fresh directory.
    fn tiny_golden(tag: &str, target: Target) -> (GoldenFile, PathBuf) {
        let dir = std::env::temp_dir().join(format!("longcat-golden-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let x = Tensor::new(&[1f32, 2.0, 4.0], &Device::Cpu).unwrap();
        let ids = Tensor::new(&[3i64, 1], &Device::Cpu).unwrap();
        candle_core::safetensors::save(
            &[("x".to_string(), x), ("ids".to_string(), ids)]
                .into_iter()
                .collect(),
            dir.join("g.safetensors"),
        )
        .unwrap();
        std::fs::write(
            dir.join("g.json"),
            r#"{"name": "g", "produced_by": "test", "tensors": {}}"#,
        )
        .unwrap();
        (GoldenFile::load_for(&dir, "g", target).unwrap(), dir)
    }

    #[test]
    fn off_f32_errors_are_reported_as_drift_not_judged() {
        let (g, dir) = tiny_golden("drift", target_bf16());
        let far = Tensor::new(&[1f32, 2.5, 4.0], &Device::Cpu).unwrap();
        g.check_float("x", &far, Tolerance::COMPONENT);
        g.check_int("ids", &Tensor::new(&[3i64, 2], &Device::Cpu).unwrap());
        let results = g.finish();
        std::fs::remove_dir_all(dir).unwrap();
        assert!(results.iter().all(|r| r.drift && r.passed), "{results:?}");
        assert_eq!(results[0].max_abs, 0.5);
        assert_eq!(results[1].rel, 0.5, "fraction of differing ids");

        let (g, dir) = tiny_golden("drift-nan", target_bf16());
        g.check_float(
            "x",
            &Tensor::new(&[f32::NAN, 2.0, 4.0], &Device::Cpu).unwrap(),
            Tolerance::COMPONENT,
        );
        g.mark_used("ids");
        let results = g.finish();
        std::fs::remove_dir_all(dir).unwrap();
        assert!(!results[0].passed, "NaN fails in drift mode too");
    }

    fn target_bf16() -> Target {
        Target {
            device: Device::Cpu,
            dtype: DType::BF16,
        }
    }

    #[test]
    fn f32_results_are_judged() {
        let (g, dir) = tiny_golden("judged", Target::default());
        let far = Tensor::new(&[1f32, 2.5, 4.0], &Device::Cpu).unwrap();
        g.check_float("x", &far, Tolerance::COMPONENT);
        g.check_int("ids", &Tensor::new(&[3i64, 2], &Device::Cpu).unwrap());
        let results = g.finish();
        std::fs::remove_dir_all(dir).unwrap();
        assert!(results.iter().all(|r| !r.drift && !r.passed), "{results:?}");
    }

    #[test]
    fn nan_never_passes() {
        let r = Tensor::new(&[1f32], &Device::Cpu).unwrap();
        let a = Tensor::new(&[f32::NAN], &Device::Cpu).unwrap();
        let (abs, _) = float_errors(&r, &a).unwrap();
        assert!(abs.is_nan());
    }
}
