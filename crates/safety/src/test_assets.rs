//! What the safety tests need and where it is (feature `test-util`, for tests only): the
//! NudeNet model (`LONGCAT_SAFETY_MODEL`, else [`crate::DEFAULT_MODEL_PATH`] under the
//! workspace) and scikit-image's sample photographs (found through the test venv's python,
//! `LONGCAT_TEST_PYTHON`, else `tests/clients/.venv/bin/python`). Without them a test skips
//! with a loud banner, unless `LONGCAT_REQUIRE_SAFETY_TESTS=1` (set by `scripts/test.sh`)
//! makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use longcat_core::RgbImage;

/// The model file, the test venv's python and scikit-image's `data` directory.
#[derive(Debug, Clone)]
pub struct TestAssets {
    /// The NudeNet 320n ONNX file.
    pub model: PathBuf,
    /// The test venv's python (with `nudenet` and `scikit-image`).
    pub python: PathBuf,
    /// scikit-image's bundled sample images (`astronaut.png`, `camera.png`, ...).
    pub images: PathBuf,
}

/// Decodes an image file to RGB (panics with the path on error: tests only).
pub fn load_png(path: &Path) -> RgbImage {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    RgbImage {
        width: img.width(),
        height: img.height(),
        data: img.into_raw(),
    }
}

/// The workspace root (this crate sits in `crates/safety`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The model path the tests use (it may not exist).
pub fn model_path() -> PathBuf {
    std::env::var_os("LONGCAT_SAFETY_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(crate::DEFAULT_MODEL_PATH))
}

/// The assets, or `None` after printing why `test` skips; panics instead when
/// `LONGCAT_REQUIRE_SAFETY_TESTS=1`.
pub fn assets(test: &str) -> Option<TestAssets> {
    let why = match find() {
        Ok(found) => return Some(found),
        Err(why) => why,
    };
    if std::env::var("LONGCAT_REQUIRE_SAFETY_TESTS").as_deref() == Ok("1") {
        panic!("{test} cannot run: {why}");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    None
}

fn find() -> Result<TestAssets, String> {
    let model = model_path();
    if !model.is_file() {
        return Err(format!("no safety model at {}", model.display()));
    }
    let python = std::env::var_os("LONGCAT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("tests/clients/.venv/bin/python"));
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), 'data'))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(TestAssets {
            model,
            python,
            images: PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        }),
        _ => Err(format!("no scikit-image in {}", python.display())),
    }
}
