//! The input limits of the endpoint, in one place: the web side validates against them and
//! the model side re-checks the ones it relies on. Ranges are inclusive.

/// `num_frames` range (15 fps stage-1 frames).
pub const NUM_FRAMES: (u32, u32) = (17, 961);
/// `num_inference_steps` range.
pub const NUM_INFERENCE_STEPS: (u32, u32) = (8, 50);
/// `num_inference_steps` range of the distilled apps (cfg_step LoRA, distilled schedule).
pub const DISTILLED_NUM_INFERENCE_STEPS: (u32, u32) = (2, 16);
/// `num_refine_inference_steps` range.
pub const NUM_REFINE_INFERENCE_STEPS: (u32, u32) = (8, 50);
/// `guidance_scale` range.
pub const GUIDANCE_SCALE: (f64, f64) = (1.0, 10.0);
/// `fps` range.
pub const FPS: (u32, u32) = (1, 60);
/// Defaults of the numeric fields.
pub const DEFAULT_NUM_FRAMES: u32 = 162;
/// Default `num_inference_steps`.
pub const DEFAULT_NUM_INFERENCE_STEPS: u32 = 40;
/// Default `num_inference_steps` of the distilled apps.
pub const DEFAULT_DISTILLED_NUM_INFERENCE_STEPS: u32 = 12;
/// Default `num_refine_inference_steps`.
pub const DEFAULT_NUM_REFINE_INFERENCE_STEPS: u32 = 40;
/// Default `guidance_scale`.
pub const DEFAULT_GUIDANCE_SCALE: f64 = 4.0;
/// Default `fps`.
pub const DEFAULT_FPS: u32 = 30;
/// Most characters (Unicode scalar values, as Pydantic's `max_length` counts) of `prompt`
/// and of `negative_prompt`. The umT5 encoder reads 512 tokens and cuts the rest; 8192
/// characters is 16 per token, more than any real prompt spends, so no text the model
/// could read is refused, while a multi-megabyte prompt is (it costs the worker memory
/// and time in cleaning and tokenizing before being cut to 512 tokens anyway).
pub const MAX_PROMPT_CHARS: usize = 8192;

/// Whether `num_frames` is inside [`NUM_FRAMES`].
pub fn num_frames_in_range(num_frames: u32) -> bool {
    (NUM_FRAMES.0..=NUM_FRAMES.1).contains(&num_frames)
}

/// The official frame-count rule: the model makes `4·⌊n/4⌋ + 1` frames for `n` requested
/// (94 → 93, 96 → 97).
pub fn snap_frames(n: usize) -> usize {
    n / 4 * 4 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_edges() {
        assert!(!num_frames_in_range(16));
        assert!(num_frames_in_range(17));
        assert!(num_frames_in_range(961));
        assert!(!num_frames_in_range(962));
    }

    #[test]
    fn snaps_to_4k_plus_1() {
        for (n, want) in [(93, 93), (94, 93), (96, 97), (162, 161), (17, 17)] {
            assert_eq!(snap_frames(n), want, "{n}");
        }
    }
}
