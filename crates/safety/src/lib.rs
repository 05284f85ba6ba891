//! Content safety checker: the NudeNet 320n detector (the ONNX file shipped in the `nudenet`
//! wheel, AGPL-3.0, fetched by `scripts/install-deps.sh`, never committed) run in pure Rust
//! with tract, with the package's own pre- and post-processing, and a [`Policy`] of labels and
//! a score threshold deciding what flags. See `docs/safety.md`.

mod detector;
mod labels;
mod policy;
mod preprocess;
#[cfg(feature = "test-util")]
pub mod test_assets;

pub use detector::{
    decode, Detection, NudeDetector, SafetyError, ANCHORS, CANDIDATE_SCORE, NMS_IOU, NMS_SCORE,
    OUTPUT_ROWS,
};
pub use labels::{Label, UnknownLabel, SEXUAL};
pub use policy::{Policy, PolicyError, Verdict, DEFAULT_THRESHOLD};
pub use preprocess::{letterbox, BadImage, Letterboxed, INPUT_SIZE};

use longcat_core::RgbImage;

/// Where `scripts/install-deps.sh` puts the model, relative to the working directory.
pub const DEFAULT_MODEL_PATH: &str = "data/models/nudenet-320n.onnx";

/// A detector and the policy applied to its detections.
#[derive(Debug)]
pub struct SafetyChecker {
    detector: NudeDetector,
    policy: Policy,
}

impl SafetyChecker {
    /// A checker applying `policy` to `detector`'s detections.
    pub fn new(detector: NudeDetector, policy: Policy) -> Self {
        Self { detector, policy }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The detector.
    pub fn detector(&self) -> &NudeDetector {
        &self.detector
    }

    /// Checks one image.
    pub fn check(&self, image: &RgbImage) -> Result<Verdict, SafetyError> {
        Ok(self.policy.evaluate(&self.detector.detect(image)?))
    }
}

/// Every how many frames an output frame is checked at `fps`: `max(1, floor(fps))`, so at
/// least one frame per second of video.
pub fn sample_step(fps: f64) -> usize {
    if fps.is_finite() && fps >= 1.0 {
        fps.floor() as usize
    } else {
        1
    }
}

/// The output frames to check in a video of `frame_count` frames at `fps`: every
/// [`sample_step`]-th frame from the first, and the last one. Sorted, without repeats.
pub fn sample_frame_indices(frame_count: usize, fps: f64) -> Vec<usize> {
    if frame_count == 0 {
        return Vec::new();
    }
    let mut out: Vec<usize> = (0..frame_count).step_by(sample_step(fps)).collect();
    if out.last() != Some(&(frame_count - 1)) {
        out.push(frame_count - 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sampling_covers_every_second_and_the_last_frame() {
        assert_eq!(sample_frame_indices(34, 30.0), vec![0, 30, 33]);
        assert_eq!(sample_frame_indices(30, 30.0), vec![0, 29]);
        assert_eq!(sample_frame_indices(31, 30.0), vec![0, 30]);
        assert_eq!(sample_frame_indices(1, 30.0), vec![0]);
        assert_eq!(sample_frame_indices(0, 30.0), Vec::<usize>::new());
        assert_eq!(sample_frame_indices(5, 0.5), vec![0, 1, 2, 3, 4]);
        // 1922 frames at 30 fps: 65 frames, no gap over one second.
        let s = sample_frame_indices(1922, 30.0);
        assert!(s.windows(2).all(|w| w[1] - w[0] <= 30));
        assert_eq!(*s.last().unwrap(), 1921);
        assert_eq!(s.len(), 66);
        // A fractional rate rounds the step down (more frames, never fewer).
        assert!(sample_frame_indices(100, 12.5)
            .windows(2)
            .all(|w| w[1] - w[0] <= 12));
    }
}
