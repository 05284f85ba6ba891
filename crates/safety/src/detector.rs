//! The NudeNet 320n detector (a YOLOv8n ONNX graph) run with tract, and the package's own
//! output decoding: score filter, box mapping, class-agnostic NMS.

use std::path::{Path, PathBuf};

use longcat_core::RgbImage;
use tract_onnx::prelude::*;

use crate::labels::Label;
use crate::preprocess::{letterbox, BadImage, Letterboxed, INPUT_SIZE};

/// Rows of the model output per anchor: 4 box values, then one score per label.
pub const OUTPUT_ROWS: usize = 4 + Label::ALL.len();
/// Anchors of the 320×320 input (strides 8, 16, 32: 40² + 20² + 10²).
pub const ANCHORS: usize = 2100;
/// Candidates below this best-class score are dropped before NMS (the package's 0.2).
pub const CANDIDATE_SCORE: f32 = 0.2;
/// NMS keeps boxes scoring strictly above this (the package's `NMSBoxes` score threshold).
pub const NMS_SCORE: f32 = 0.25;
/// NMS drops a box whose IoU with a kept box is above this.
pub const NMS_IOU: f32 = 0.45;

/// Errors of the detector.
#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    /// The model file does not exist.
    #[error("safety model {path} not found (run scripts/install-deps.sh to fetch it, point --safety-model at it, or turn the checker off with --safety-checker off)")]
    ModelMissing {
        /// The configured path.
        path: PathBuf,
    },
    /// The model file could not be loaded or prepared.
    #[error("loading safety model {path}: {message}")]
    ModelLoad {
        /// The configured path.
        path: PathBuf,
        /// tract's message.
        message: String,
    },
    /// The image cannot be checked.
    #[error(transparent)]
    BadImage(#[from] BadImage),
    /// Running the model failed.
    #[error("safety model inference: {0}")]
    Inference(String),
}

/// One detection, as the package reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The detected label.
    pub label: Label,
    /// Its score (the best class score of the anchor).
    pub score: f32,
    /// `[x, y, w, h]` in pixels of the original image (top-left corner, clipped to it).
    pub bbox: [f32; 4],
}

impl Detection {
    /// The box as the package returns it (`int()` of each value).
    pub fn pixel_box(&self) -> [i32; 4] {
        self.bbox.map(|v| v as i32)
    }
}

/// The loaded detector; cheap to share (`&self` everywhere, `Send + Sync`).
pub struct NudeDetector {
    plan: TypedRunnableModel<TypedModel>,
    path: PathBuf,
}

impl std::fmt::Debug for NudeDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NudeDetector")
            .field("path", &self.path)
            .finish()
    }
}

impl NudeDetector {
    /// Loads and optimises the ONNX model at `path` for a 1×3×320×320 input.
    pub fn load(path: &Path) -> Result<Self, SafetyError> {
        if !path.is_file() {
            return Err(SafetyError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        let load_err = |e: TractError| SafetyError::ModelLoad {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        // The file's shape annotations (`value_info`, output dims) use symbolic expressions
        // such as `floor(height/2 - 1/2) + 1` that tract 0.21 cannot parse; they are only
        // hints, so they are dropped and tract infers every shape from the fixed input.
        let onnx = tract_onnx::onnx().with_ignore_output_shapes(true);
        let bytes = std::fs::read(path).map_err(|e| SafetyError::ModelLoad {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let plan = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .and_then(|mut proto| {
                if let Some(graph) = proto.graph.as_mut() {
                    graph.value_info.clear();
                }
                onnx.model_for_proto_model(&proto)
            })
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, INPUT_SIZE, INPUT_SIZE]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(load_err)?;
        let detector = Self {
            plan,
            path: path.to_path_buf(),
        };
        // Fail at load, not on the first request, if the graph's output is not what the
        // decoding expects.
        let probe = detector.run_raw(&vec![0.0; 3 * INPUT_SIZE * INPUT_SIZE])?;
        debug_assert_eq!(probe.len(), OUTPUT_ROWS * ANCHORS);
        Ok(detector)
    }

    /// The model file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Detections in `image`, exactly as `nudenet.NudeDetector().detect` returns them (in NMS
    /// order: highest score first).
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, SafetyError> {
        let input = letterbox(image)?;
        let raw = self.run_raw(&input.data)?;
        Ok(decode(&raw, &input))
    }

    /// The raw model output (`[22, 2100]` row-major) for a prepared input
    /// (`3 * 320 * 320` values, see [`letterbox`]).
    pub fn run_raw(&self, input: &[f32]) -> Result<Vec<f32>, SafetyError> {
        let inference = |e: TractError| SafetyError::Inference(format!("{e:#}"));
        let tensor =
            Tensor::from_shape(&[1, 3, INPUT_SIZE, INPUT_SIZE], input).map_err(inference)?;
        let out = self.plan.run(tvec!(tensor.into())).map_err(inference)?;
        let first = out
            .first()
            .ok_or_else(|| SafetyError::Inference("the model returned no output".into()))?;
        if first.shape() != [1, OUTPUT_ROWS, ANCHORS] {
            return Err(SafetyError::Inference(format!(
                "output shape {:?}, expected [1, {OUTPUT_ROWS}, {ANCHORS}]",
                first.shape()
            )));
        }
        let view = first.as_slice::<f32>().map_err(inference)?;
        Ok(view.to_vec())
    }
}

/// The package's `_postprocess`: for each anchor whose best class score is at least
/// [`CANDIDATE_SCORE`], the centre box mapped to original pixels and clipped; then
/// class-agnostic NMS (OpenCV `NMSBoxes`, score > [`NMS_SCORE`], IoU > [`NMS_IOU`] drops).
pub fn decode(raw: &[f32], input: &Letterboxed) -> Vec<Detection> {
    let at = |row: usize, i: usize| raw[row * ANCHORS + i];
    let (w0, h0) = (input.width as f32, input.height as f32);
    let side = input.side() as f32;
    let model = INPUT_SIZE as f32;
    let mut candidates = Vec::new();
    for i in 0..ANCHORS.min(raw.len() / OUTPUT_ROWS) {
        // np.argmax: the first maximum.
        let (mut best, mut best_score) = (0usize, f32::NEG_INFINITY);
        for (k, _) in Label::ALL.iter().enumerate() {
            let s = at(4 + k, i);
            if s > best_score {
                best = k;
                best_score = s;
            }
        }
        if best_score < CANDIDATE_SCORE {
            continue;
        }
        let (cx, cy, bw, bh) = (at(0, i), at(1, i), at(2, i), at(3, i));
        // (W + x_pad) and (H + y_pad) are both the padded side.
        let x = (cx - bw / 2.0) * side / model;
        let y = (cy - bh / 2.0) * side / model;
        let w = bw * side / model;
        let h = bh * side / model;
        let x = x.min(w0).max(0.0);
        let y = y.min(h0).max(0.0);
        let w = w.min(w0 - x);
        let h = h.min(h0 - y);
        candidates.push(Detection {
            label: Label::ALL[best],
            score: best_score,
            bbox: [x, y, w, h],
        });
    }
    nms(candidates)
}

/// OpenCV's `NMSBoxes` on `Rect2d` boxes: candidates scoring above [`NMS_SCORE`], stably
/// sorted by descending score, each kept unless its IoU with an already kept box is above
/// [`NMS_IOU`].
fn nms(candidates: Vec<Detection>) -> Vec<Detection> {
    let mut order: Vec<Detection> = candidates
        .into_iter()
        .filter(|d| d.score > NMS_SCORE)
        .collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in order {
        if kept.iter().all(|k| overlap(&d.bbox, &k.bbox) <= NMS_IOU) {
            kept.push(d);
        }
    }
    kept
}

/// OpenCV's `rectOverlap` for `Rect2d` (intersection over union, in f64, returned as f32).
fn overlap(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let a = a.map(f64::from);
    let b = b.map(f64::from);
    let (area_a, area_b) = (a[2] * a[3], b[2] * b[3]);
    if area_a + area_b <= f64::EPSILON {
        return 1.0;
    }
    let x1 = a[0].max(b[0]);
    let y1 = a[1].max(b[1]);
    let iw = (a[0] + a[2]).min(b[0] + b[2]) - x1;
    let ih = (a[1] + a[3]).min(b[1] + b[3]) - y1;
    let inter = if iw <= 0.0 || ih <= 0.0 { 0.0 } else { iw * ih };
    let distance = 1.0 - inter / (area_a + area_b - inter);
    1.0 - distance as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_with(anchors: &[(usize, [f32; 4], usize, f32)]) -> Vec<f32> {
        let mut raw = vec![0.0; OUTPUT_ROWS * ANCHORS];
        for &(i, b, label, score) in anchors {
            for (r, v) in b.iter().enumerate() {
                raw[r * ANCHORS + i] = *v;
            }
            raw[(4 + label) * ANCHORS + i] = score;
        }
        raw
    }

    fn input(w: u32, h: u32) -> Letterboxed {
        Letterboxed {
            data: Vec::new(),
            width: w,
            height: h,
        }
    }

    #[test]
    fn boxes_map_to_original_pixels_and_clip() {
        // 640x320 image: side 640, so model pixels are doubled.
        let raw = raw_with(&[(7, [100.0, 50.0, 40.0, 20.0], 1, 0.9)]);
        let d = decode(&raw, &input(640, 320));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].label, Label::FaceFemale);
        assert_eq!(d[0].bbox, [160.0, 80.0, 80.0, 40.0]);
        // A box hanging off the bottom is clipped to the image, not to the padding.
        let raw = raw_with(&[(3, [100.0, 150.0, 40.0, 40.0], 0, 0.9)]);
        let d = decode(&raw, &input(640, 320));
        assert_eq!(d[0].bbox, [160.0, 260.0, 80.0, 60.0]);
        assert_eq!(d[0].pixel_box(), [160, 260, 80, 60]);
    }

    #[test]
    fn scores_filter_and_nms_is_class_agnostic() {
        let raw = raw_with(&[
            (0, [100.0, 100.0, 50.0, 50.0], 3, 0.8),
            // Same place, other label, lower score: suppressed.
            (1, [102.0, 101.0, 50.0, 50.0], 5, 0.7),
            // Elsewhere: kept.
            (2, [250.0, 250.0, 30.0, 30.0], 5, 0.5),
            // Between 0.2 and 0.25: a candidate, but NMS drops it.
            (3, [20.0, 20.0, 10.0, 10.0], 2, 0.24),
        ]);
        let d = decode(&raw, &input(320, 320));
        let got: Vec<(Label, f32)> = d.iter().map(|d| (d.label, d.score)).collect();
        assert_eq!(
            got,
            vec![
                (Label::FemaleBreastExposed, 0.8),
                (Label::MaleBreastExposed, 0.5)
            ]
        );
    }
}
