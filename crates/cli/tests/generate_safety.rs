//! The safety checker in `longcat generate` (tiny model, real NudeNet model, a policy that
//! flags the benign `FACE_FEMALE` so that scikit-image's astronaut portrait is "flagged"
//! content): a flagged input fails before the model loads with fal's 422 body on stdout and
//! no file written; `--enable-safety-checker false` and `--safety-checker off` run; a missing
//! model is a clear error, never a silent pass; and a clean run checks sampled output frames.
//!
//! Needs the model and the test venv's scikit-image; without them each test prints SKIPPED,
//! unless `LONGCAT_REQUIRE_SAFETY_TESTS=1` (set by `scripts/test.sh`).

use std::path::Path;
use std::process::{Command, Output};

use longcat_safety::test_assets::{assets, TestAssets};
use serde_json::{json, Value};

/// `longcat generate` of a short video of `image` with `args` added, in `dir`.
fn generate(dir: &Path, model: &Path, image: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longcat"))
        .arg("generate")
        .arg("--image")
        .arg(image)
        .args(["--num-frames", "17", "--num-inference-steps", "8"])
        .args(["--num-refine-inference-steps", "8", "--seed", "5"])
        .args(["-o", "out.mp4"])
        .arg("--safety-model")
        .arg(model)
        .args(["--safety-labels", "FACE_FEMALE"])
        .args(args)
        .env_remove("LONGCAT_WEIGHTS")
        .env_remove("LONGCAT_SAFETY_CHECKER")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .output()
        .expect("run longcat generate")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn flagged_input_fails_with_the_violation_and_writes_nothing() {
    let Some(TestAssets { model, images, .. }) = assets("generate safety test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let portrait = images.join("astronaut.png");
    let out = generate(dir.path(), &model, &portrait, &[]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("content policy violation: the input image is flagged"),
        "{}",
        stderr(&out)
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("422 body on stdout");
    let item = &body["detail"][0];
    assert_eq!(item["type"], "content_policy_violation", "{body}");
    assert_eq!(item["loc"], json!(["body", "image_url"]));
    assert_eq!(item["categories"], json!(["face_female"]));
    assert!(!dir.path().join("out.mp4").exists());
    // No model work was done for it.
    assert!(!stderr(&out).contains("model:"), "{}", stderr(&out));

    // The request's switch skips the check, and so does the server's `--safety-checker off`.
    for switch in [
        &["--enable-safety-checker", "false"][..],
        &["--safety-checker", "off"][..],
    ] {
        let out = generate(dir.path(), &model, &portrait, switch);
        assert!(out.status.success(), "{switch:?}: {}", stderr(&out));
        assert!(dir.path().join("out.mp4").is_file());
        std::fs::remove_file(dir.path().join("out.mp4")).unwrap();
    }
}

#[test]
fn missing_model_is_an_error_unless_the_check_is_off() {
    let Some(TestAssets { images, .. }) = assets("generate safety test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model.onnx");
    let coffee = images.join("coffee.png");
    let out = generate(dir.path(), &missing, &coffee, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("safety checker"), "{err}");
    assert!(err.contains("fetch-safety-model.sh"), "{err}");
    assert!(!dir.path().join("out.mp4").exists());

    let out = generate(dir.path(), &missing, &coffee, &["--safety-checker", "off"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("safety checker off"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_clean_run_checks_sampled_output_frames() {
    let Some(TestAssets { model, images, .. }) = assets("generate safety test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), &model, &images.join("coffee.png"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 17 stage-1 frames → 34 output frames at 30 fps: frames 0 and 30 (one per second) and
    // the last, 33.
    let frames = longcat_safety::sample_frame_indices(34, 30.0).len();
    assert_eq!(frames, 3);
    assert!(
        stderr(&out).contains(&format!(
            "safety checker: {frames} output frames checked, none flagged"
        )),
        "{}",
        stderr(&out)
    );
    assert!(dir.path().join("out.mp4").is_file());
}
