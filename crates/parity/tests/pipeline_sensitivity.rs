//! The pipeline checkers catch a wrong pipeline: with the guidance scale in the sidecar of
//! `pipeline_i2v` changed, the raw DiT output of the first step still matches (it does not
//! depend on the scale) but the guided model outputs and everything after them fail.

use std::path::{Path, PathBuf};

/// The goldens, only ever from `LONGCAT_GOLDENS` (tests reach nothing else outside the
/// repository).
fn goldens_dir() -> PathBuf {
    std::env::var_os("LONGCAT_GOLDENS")
        .map(PathBuf::from)
        .expect("LONGCAT_GOLDENS must name the golden directory (scripts/test.sh sets it; default there: ../shared/goldens)")
}

/// Links the golden `keep` and the weights files (`*_weights`, `lora_*`) of `src` into `dst`.
fn link_dir(src: &Path, dst: &Path, keep: &str) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name.split('.').next().unwrap_or_default();
        if stem != keep && !stem.ends_with("_weights") && !stem.starts_with("lora_") {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), dst.join(&name)).unwrap();
    }
}

#[test]
fn changed_guidance_scale_is_caught() {
    let src = goldens_dir();
    assert!(src.is_dir(), "golden directory {} not found", src.display());
    let dst = std::env::temp_dir().join(format!("longcat-sensitivity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    link_dir(&src, &dst, "pipeline_i2v");
    // Replace the sidecar link by an edited copy.
    let sidecar = dst.join("pipeline_i2v.json");
    std::fs::remove_file(&sidecar).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("pipeline_i2v.json")).unwrap())
            .unwrap();
    let g = json["meta"]["args"]["guidance_scale"].as_f64().unwrap();
    json["meta"]["args"]["guidance_scale"] = serde_json::json!(g + 1.0);
    std::fs::write(&sidecar, json.to_string()).unwrap();

    let report = longcat_parity::check_dir(&dst, |_| {}).unwrap();
    let _ = std::fs::remove_dir_all(&dst);
    let verdict = |name: &str| {
        report
            .results
            .iter()
            .find(|r| r.tensor == name)
            .map(|r| r.passed)
    };
    assert_eq!(verdict("step0.dit_output"), Some(true));
    assert_eq!(verdict("step0.model_output"), Some(false));
    assert_eq!(verdict("output.video_np"), Some(false));
    assert!(report.skipped.is_empty());
}
