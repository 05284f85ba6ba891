//! The safety checker in `longcat generate`, as in the server (docs/safety.md): with
//! `enable_safety_checker` (on by default, as on fal) the input image is checked before the
//! model loads and sampled output frames while they are encoded. A flagged image or video is
//! not written: fal's 422 body is printed on stdout and the command fails.

use std::sync::Arc;

use longcat_core::RgbImage;
use longcat_safety::{NudeDetector, SafetyChecker};
use longcat_worker::safety::{input_violation, OutputVerdict, SafetyLayer};
use serde_json::{json, Value};

/// A flagged input image or output video.
#[derive(Debug, thiserror::Error)]
#[error("content policy violation: the {what} is flagged ({}); nothing was written", categories.join(", "))]
pub struct ContentPolicyViolation {
    /// `input image` or `generated video`.
    pub what: &'static str,
    /// fal's categories (e.g. `sexual`).
    pub categories: Vec<String>,
}

/// The checker for a request with `enable_safety_checker = requested`: `None` when no check
/// runs (not asked for, or `--safety-checker off`, with a warning); an error, never a silent
/// pass, when it is asked for and its model cannot be loaded.
pub fn checker(layer: &SafetyLayer, requested: bool) -> anyhow::Result<Option<Arc<SafetyChecker>>> {
    if !requested {
        return Ok(None);
    }
    let settings = SafetyLayer::resolve(layer, &SafetyLayer::default())?;
    if !settings.enabled {
        eprintln!(
            "warning: safety checker off (--safety-checker off): enable_safety_checker is ignored"
        );
        return Ok(None);
    }
    let detector = NudeDetector::load(&settings.model).map_err(|e| {
        anyhow::anyhow!(
            "the safety checker (enable_safety_checker, on by default as on fal) cannot run: \
             {e}. Fetch its model with scripts/fetch-safety-model.sh, point --safety-model at \
             it, or turn the check off (--enable-safety-checker false, or --safety-checker off)"
        )
    })?;
    Ok(Some(Arc::new(SafetyChecker::new(
        detector,
        settings.policy,
    ))))
}

/// Checks the input image; flagged, prints fal's 422 body and fails.
pub fn check_input(
    checker: &SafetyChecker,
    image: &RgbImage,
    image_url: &str,
) -> anyhow::Result<()> {
    let verdict = checker
        .check(image)
        .map_err(|e| anyhow::anyhow!("safety check of the input image: {e}"))?;
    if verdict.flagged() {
        print_detail(input_violation(image_url, &verdict.categories));
        return Err(ContentPolicyViolation {
            what: "input image",
            categories: verdict.categories,
        }
        .into());
    }
    Ok(())
}

/// The output check's verdict; flagged, prints fal's 422 body and fails.
pub fn check_output(verdict: &OutputVerdict) -> anyhow::Result<()> {
    match verdict.violation() {
        None => Ok(()),
        Some((detail, categories)) => {
            print_detail(detail);
            Err(ContentPolicyViolation {
                what: "generated video",
                categories,
            }
            .into())
        }
    }
}

/// fal's 422 body, `{"detail": [...]}`, on stdout (where a successful run prints its result).
fn print_detail(detail: Value) {
    let body = json!({ "detail": detail });
    println!(
        "{}",
        serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use longcat_safety::{Detection, Label, Verdict};

    #[test]
    fn output_verdicts_pass_or_fail_with_the_categories() {
        let mut verdict = OutputVerdict {
            checked: vec![0, 30, 33],
            flagged: Vec::new(),
        };
        assert!(check_output(&verdict).is_ok());
        verdict.flagged.push((
            30,
            Verdict {
                categories: vec!["sexual".into()],
                hits: vec![Detection {
                    label: Label::ButtocksExposed,
                    score: 0.9,
                    bbox: [0.0, 0.0, 4.0, 4.0],
                }],
            },
        ));
        let err = check_output(&verdict).unwrap_err();
        let violation = err.downcast_ref::<ContentPolicyViolation>().unwrap();
        assert_eq!(violation.what, "generated video");
        assert_eq!(violation.categories, ["sexual"]);
    }
}
