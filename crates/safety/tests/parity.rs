//! Parity with the Python `nudenet` package on real photographs (scikit-image's `data`
//! module): our preprocessing against the package's input blob, tract's raw output against
//! onnxruntime's on the same blob, and the final detections (labels, scores, boxes).
//!
//! Needs the model (`scripts/fetch-safety-model.sh`, or `LONGCAT_SAFETY_MODEL`) and the test
//! venv with `nudenet` and `scikit-image` (`scripts/install-test-venv.sh`, or
//! `LONGCAT_TEST_PYTHON`). Without them the test prints SKIPPED and passes, unless
//! `LONGCAT_REQUIRE_SAFETY_TESTS=1` (set by `scripts/test.sh`) makes that a failure.

use std::path::Path;
use std::process::Command;

use longcat_safety::test_assets::{self, load_png, TestAssets};
use longcat_safety::{letterbox, Label, NudeDetector, ANCHORS, INPUT_SIZE, OUTPUT_ROWS};

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn detections_match_the_nudenet_package() {
    let Some(TestAssets { model, python, .. }) = test_assets::assets("safety parity test") else {
        return;
    };
    let out = std::env::temp_dir().join(format!("longcat-safety-parity-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nudenet_reference.py");
    let status = Command::new(&python)
        .arg(&script)
        .arg(&model)
        .arg(&out)
        .status()
        .expect("run the reference script");
    assert!(status.success(), "{} failed: {status}", script.display());

    let detector = NudeDetector::load(&model).expect("load the model");
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cases.json")).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 10);
    let mut with_detections = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let image = load_png(&out.join(format!("{name}.png")));

        // 1. Preprocessing: the same blob (OpenCV's fixed-point resize reproduced exactly).
        let blob = read_f32(&out.join(format!("{name}.blob.f32")));
        let ours = letterbox(&image).unwrap();
        assert_eq!(blob.len(), 3 * INPUT_SIZE * INPUT_SIZE, "{name}");
        let blob_diff = max_abs_diff(&ours.data, &blob);
        assert!(
            blob_diff <= 1e-6,
            "{name}: input blob differs by {blob_diff}"
        );

        // 2. The runtime: tract's output vs onnxruntime's for the package's own blob.
        let raw_ref = read_f32(&out.join(format!("{name}.raw.f32")));
        assert_eq!(raw_ref.len(), OUTPUT_ROWS * ANCHORS, "{name}");
        let raw = detector.run_raw(&blob).unwrap();
        let (box_diff, score_diff) = (
            max_abs_diff(&raw[..4 * ANCHORS], &raw_ref[..4 * ANCHORS]),
            max_abs_diff(&raw[4 * ANCHORS..], &raw_ref[4 * ANCHORS..]),
        );
        eprintln!("{name}: blob diff {blob_diff:e}, raw box diff {box_diff:e} (model px), raw score diff {score_diff:e}");
        assert!(box_diff < 0.01, "{name}: raw boxes differ by {box_diff}");
        assert!(
            score_diff < 1e-3,
            "{name}: raw scores differ by {score_diff}"
        );

        // 3. Detections, in the package's order.
        let want = case["detections"].as_array().unwrap();
        let got = detector.detect(&image).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: {got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            let label: Label = w["class"].as_str().unwrap().parse().unwrap();
            assert_eq!(g.label, label, "{name}");
            let score = w["score"].as_f64().unwrap() as f32;
            assert!(
                (g.score - score).abs() < 1e-4,
                "{name}: score {} vs {score}",
                g.score
            );
            let wbox: Vec<i64> = w["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            for (a, b) in g.pixel_box().iter().zip(&wbox) {
                assert!(
                    (i64::from(*a) - b).abs() <= 1,
                    "{name}: box {:?} vs {wbox:?}",
                    g.pixel_box()
                );
            }
        }
        with_detections += usize::from(!want.is_empty());
    }
    // The set must exercise the decoding, not just agree on "nothing found".
    assert!(
        with_detections >= 5,
        "only {with_detections} cases with detections"
    );
    std::fs::remove_dir_all(&out).ok();
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
