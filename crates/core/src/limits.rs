//! The input limits of the endpoint, in one place: the web side validates against them and
//! the model side re-checks the ones it relies on. Ranges are inclusive.

/// `num_frames` range (15 fps stage-1 frames).
pub const NUM_FRAMES: (u32, u32) = (17, 961);
/// `num_inference_steps` range.
pub const NUM_INFERENCE_STEPS: (u32, u32) = (8, 50);
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

/// `num_inference_steps` range of the distilled apps (fal's distilled schedule).
pub const DISTILLED_NUM_INFERENCE_STEPS: (u32, u32) = (2, 16);
/// Default `num_inference_steps` of the distilled apps.
pub const DEFAULT_DISTILLED_NUM_INFERENCE_STEPS: u32 = 12;
/// Default `num_refine_inference_steps` of the distilled 720p apps.
pub const DEFAULT_DISTILLED_NUM_REFINE_INFERENCE_STEPS: u32 = 12;
/// Default `fps` of the 480p apps (stage 1 only: 15 fps frames).
pub const DEFAULT_FPS_480P: u32 = 15;

/// The ranges and defaults of one app's numeric fields (fal's per-app schemas; fields the
/// app does not take keep the values above and are not read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppLimits {
    /// `num_inference_steps` range.
    pub num_inference_steps: (u32, u32),
    /// Default `num_inference_steps`.
    pub default_num_inference_steps: u32,
    /// `num_refine_inference_steps` range.
    pub num_refine_inference_steps: (u32, u32),
    /// Default `num_refine_inference_steps`.
    pub default_num_refine_inference_steps: u32,
    /// Default `fps`.
    pub default_fps: u32,
}

/// The limits of `app`: 480p apps default to 15 fps, distilled apps take 2..=16 steps
/// (default 12) and refine with 12 steps by default; the rest is the same for every app.
pub const fn for_app(app: crate::App) -> AppLimits {
    AppLimits {
        num_inference_steps: if app.distilled {
            DISTILLED_NUM_INFERENCE_STEPS
        } else {
            NUM_INFERENCE_STEPS
        },
        default_num_inference_steps: if app.distilled {
            DEFAULT_DISTILLED_NUM_INFERENCE_STEPS
        } else {
            DEFAULT_NUM_INFERENCE_STEPS
        },
        num_refine_inference_steps: NUM_REFINE_INFERENCE_STEPS,
        default_num_refine_inference_steps: if app.distilled {
            DEFAULT_DISTILLED_NUM_REFINE_INFERENCE_STEPS
        } else {
            DEFAULT_NUM_REFINE_INFERENCE_STEPS
        },
        default_fps: if app.refines() {
            DEFAULT_FPS
        } else {
            DEFAULT_FPS_480P
        },
    }
}

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
    fn per_app_limits_follow_fal() {
        let default = for_app(crate::App::DEFAULT);
        assert_eq!(default.num_inference_steps, NUM_INFERENCE_STEPS);
        assert_eq!(default.default_num_inference_steps, 40);
        assert_eq!(default.default_num_refine_inference_steps, 40);
        assert_eq!(default.default_fps, 30);
        for app in crate::App::ALL {
            let l = for_app(app);
            assert_eq!(l.default_fps, if app.refines() { 30 } else { 15 }, "{app}");
            let (steps, default) = if app.distilled {
                ((2, 16), 12)
            } else {
                ((8, 50), 40)
            };
            assert_eq!(l.num_inference_steps, steps, "{app}");
            assert_eq!(l.default_num_inference_steps, default, "{app}");
            assert_eq!(l.default_num_refine_inference_steps, default, "{app}");
            assert_eq!(l.num_refine_inference_steps, NUM_REFINE_INFERENCE_STEPS);
        }
    }

    #[test]
    fn snaps_to_4k_plus_1() {
        for (n, want) in [(93, 93), (94, 93), (96, 97), (162, 161), (17, 17)] {
            assert_eq!(snap_frames(n), want, "{n}");
        }
    }
}
