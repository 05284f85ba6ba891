//! Walks a golden directory, runs the checker of each file and collects the results.

use std::path::Path;

use serde_json::Value;

use crate::checks::{checker_for, Checker};
use crate::error::GoldenError;
use crate::golden::{GoldenFile, Target, TensorResult};

/// A file that was not checked, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// File stem.
    pub file: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Everything a `goldens check` run found.
#[derive(Debug, Default)]
pub struct Report {
    /// One entry per output tensor (checked, failed or left unchecked).
    pub results: Vec<TensorResult>,
    /// Whole files reported as skipped.
    pub skipped: Vec<Skipped>,
    /// Support files (weights) seen in the directory, not goldens themselves.
    pub support_files: Vec<String>,
}

impl Report {
    /// Number of passing tensors.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    /// Number of tensors reported as drift (checks off the f32 contract).
    pub fn drift(&self) -> usize {
        self.results.iter().filter(|r| r.drift && r.passed).count()
    }

    /// Number of failing tensors.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }

    /// The closing line: `N passed, N failed, N skipped` (`N drift reported, N failed, ...`
    /// off the f32 contract).
    pub fn summary_line(&self) -> String {
        if self.drift() > 0 {
            return format!(
                "{} drift reported, {} failed, {} skipped",
                self.drift(),
                self.failed(),
                self.skipped.len()
            );
        }
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped.len()
        )
    }
}

/// Whether a sidecar describes a golden (produced by running the reference) rather than a
/// weights file.
fn is_golden_sidecar(sidecar: &Value) -> bool {
    sidecar.get("produced_by").is_some() && sidecar.get("tensors").is_some()
}

/// Checks every golden file in `dir` on the CPU in f32, calling `on_result` as each tensor
/// is decided.
pub fn check_dir(dir: &Path, on_result: impl FnMut(&TensorResult)) -> Result<Report, GoldenError> {
    check_dir_on(dir, Target::default(), on_result)
}

/// [`check_dir`] on another device or dtype (see [`Target`]).
pub fn check_dir_on(
    dir: &Path,
    target: Target,
    mut on_result: impl FnMut(&TensorResult),
) -> Result<Report, GoldenError> {
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| GoldenError::Dir {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".safetensors").map(str::to_string)
        })
        .collect();
    stems.sort();

    let mut report = Report::default();
    for stem in stems {
        let json_path = dir.join(format!("{stem}.json"));
        let sidecar: Option<Value> = std::fs::read_to_string(&json_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        match sidecar {
            Some(ref s) if is_golden_sidecar(s) => {}
            _ => {
                report.support_files.push(stem);
                continue;
            }
        }
        let golden = match GoldenFile::load_for(dir, &stem, target.clone()) {
            Ok(g) => g,
            Err(e) => {
                let r = TensorResult {
                    file: stem.clone(),
                    tensor: "*".into(),
                    max_abs: f64::NAN,
                    rel: f64::NAN,
                    passed: false,
                    drift: false,
                    note: Some(e.to_string()),
                };
                on_result(&r);
                report.results.push(r);
                continue;
            }
        };
        let results = match checker_for(golden.kind()) {
            Checker::Check(check) => {
                if let Err(e) = check(&golden) {
                    golden.fail_remaining(&format!("checker error: {e:#}"));
                }
                golden.finish()
            }
            Checker::Skip(reason) => {
                report.skipped.push(Skipped {
                    file: stem.clone(),
                    reason: reason.to_string(),
                });
                continue;
            }
            Checker::Unknown => {
                let kind = golden.kind().to_string();
                golden.fail_remaining(&format!("no checker for golden kind `{kind}`"));
                golden.finish()
            }
        };
        for r in &results {
            on_result(r);
        }
        report.results.extend(results);
    }
    Ok(report)
}

/// Formats one result as the CLI prints it.
pub fn format_result(r: &TensorResult) -> String {
    let verdict = match (r.passed, r.drift) {
        (false, _) => "FAIL",
        (true, true) => "DRIFT",
        (true, false) => "PASS",
    };
    let mut line = format!(
        "{verdict} {}/{} max_abs={:.3e} rel={:.3e}",
        r.file, r.tensor, r.max_abs, r.rel
    );
    if let Some(note) = &r.note {
        line.push_str(&format!(" ({note})"));
    }
    line
}
