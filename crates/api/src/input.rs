//! The endpoint's input, `I2vInput`, with fal's defaults and ranges.

use longcat_core::Acceleration;
use longcat_media::{VideoOptions, VideoOutputType, VideoQuality, VideoWriteMode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::validation::{ValidationError, ValidationErrors};

/// Default `prompt` (as fal documents it).
pub const DEFAULT_PROMPT: &str = "First-person view from the cockpit of a Formula 1 car. The driver's gloved hands firmly grip the intricate, carbon-fiber steering wheel adorned with numerous colorful buttons and a vibrant digital display showing race data. Beyond the windshield, a sun-drenched racetrack stretches ahead, lined with cheering spectators in the grandstands. Several rival cars are visible in the distance, creating a dynamic sense of competition. The sky above is a clear, brilliant blue, reflecting the exhilarating atmosphere of a high-speed race. high resolution 4k";

/// Default `negative_prompt` (as fal documents it).
pub const DEFAULT_NEGATIVE_PROMPT: &str = "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three legs, many people in the background, walking backwards";

/// Inclusive ranges and defaults of the numeric fields (defined in `longcat-core`).
pub use longcat_core::limits;

/// Input of `fal-ai/longcat-video/image-to-video/720p` (every field of the fal schema).
///
/// Serde (de)serialization is strict and fills defaults; use [`crate::parse_input`] for
/// request bodies, which applies fal's lax type coercions and reports all problems in the
/// 422 shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct I2vInput {
    /// URL (http, https or data URI) of the condition image. Required.
    pub image_url: String,
    /// Text prompt.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// Negative prompt.
    #[serde(default = "default_negative_prompt")]
    pub negative_prompt: String,
    /// Frames to generate at 15 fps (17..=961).
    #[serde(default = "default_num_frames")]
    pub num_frames: u32,
    /// Stage-1 denoising steps (8..=50).
    #[serde(default = "default_num_inference_steps")]
    pub num_inference_steps: u32,
    /// Refinement steps (8..=50).
    #[serde(default = "default_num_refine_inference_steps")]
    pub num_refine_inference_steps: u32,
    /// Classifier-free guidance scale (1..=10).
    #[serde(default = "default_guidance_scale")]
    pub guidance_scale: f64,
    /// Output frame rate (1..=60).
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Random seed; `None` picks one (returned in the output).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Whether to expand the prompt with an LLM.
    #[serde(default)]
    pub enable_prompt_expansion: bool,
    /// Whether to run the safety checker.
    #[serde(default = "default_true")]
    pub enable_safety_checker: bool,
    /// Container/codec of the output.
    #[serde(default)]
    pub video_output_type: VideoOutputType,
    /// Output quality.
    #[serde(default)]
    pub video_quality: VideoQuality,
    /// Encoder speed/size trade-off.
    #[serde(default)]
    pub video_write_mode: VideoWriteMode,
    /// Return the video inline as a data URI instead of a stored file.
    #[serde(default)]
    pub sync_mode: bool,
    /// Acceleration level.
    #[serde(default)]
    pub acceleration: Acceleration,
}

fn default_prompt() -> String {
    DEFAULT_PROMPT.to_owned()
}
fn default_negative_prompt() -> String {
    DEFAULT_NEGATIVE_PROMPT.to_owned()
}
fn default_num_frames() -> u32 {
    limits::DEFAULT_NUM_FRAMES
}
fn default_num_inference_steps() -> u32 {
    limits::DEFAULT_NUM_INFERENCE_STEPS
}
fn default_num_refine_inference_steps() -> u32 {
    limits::DEFAULT_NUM_REFINE_INFERENCE_STEPS
}
fn default_guidance_scale() -> f64 {
    limits::DEFAULT_GUIDANCE_SCALE
}
fn default_fps() -> u32 {
    limits::DEFAULT_FPS
}
fn default_true() -> bool {
    true
}

impl I2vInput {
    /// An input with the given image and every other field at its default.
    pub fn new(image_url: impl Into<String>) -> Self {
        Self {
            image_url: image_url.into(),
            prompt: default_prompt(),
            negative_prompt: default_negative_prompt(),
            num_frames: limits::DEFAULT_NUM_FRAMES,
            num_inference_steps: limits::DEFAULT_NUM_INFERENCE_STEPS,
            num_refine_inference_steps: limits::DEFAULT_NUM_REFINE_INFERENCE_STEPS,
            guidance_scale: limits::DEFAULT_GUIDANCE_SCALE,
            fps: limits::DEFAULT_FPS,
            seed: None,
            enable_prompt_expansion: false,
            enable_safety_checker: true,
            video_output_type: VideoOutputType::default(),
            video_quality: VideoQuality::default(),
            video_write_mode: VideoWriteMode::default(),
            sync_mode: false,
            acceleration: Acceleration::default(),
        }
    }

    /// Checks ranges and the `image_url` scheme; all problems are reported together.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        check_image_url(&self.image_url, &mut errors);
        check_text("prompt", &self.prompt, &mut errors);
        check_text("negative_prompt", &self.negative_prompt, &mut errors);
        check_u32(
            "num_frames",
            self.num_frames,
            limits::NUM_FRAMES,
            &mut errors,
        );
        check_u32(
            "num_inference_steps",
            self.num_inference_steps,
            limits::NUM_INFERENCE_STEPS,
            &mut errors,
        );
        check_u32(
            "num_refine_inference_steps",
            self.num_refine_inference_steps,
            limits::NUM_REFINE_INFERENCE_STEPS,
            &mut errors,
        );
        let (lo, hi) = limits::GUIDANCE_SCALE;
        if !self.guidance_scale.is_finite() || self.guidance_scale < lo {
            errors.push(ValidationError::too_small(
                "guidance_scale",
                json!(lo),
                json!(self.guidance_scale),
            ));
        } else if self.guidance_scale > hi {
            errors.push(ValidationError::too_large(
                "guidance_scale",
                json!(hi),
                json!(self.guidance_scale),
            ));
        }
        check_u32("fps", self.fps, limits::FPS, &mut errors);
        errors.into_result()
    }

    /// The encoder options this input asks for.
    pub fn video_options(&self) -> VideoOptions {
        VideoOptions {
            output_type: self.video_output_type,
            quality: self.video_quality,
            write_mode: self.video_write_mode,
            fps: self.fps,
        }
    }

    /// Seconds billed for this input (see [`crate::billable_seconds`]).
    pub fn billable_seconds(&self) -> f64 {
        crate::cost::billable_seconds(self.num_frames)
    }

    /// Estimated cost in USD (see [`crate::cost_usd`]).
    pub fn estimated_cost_usd(&self) -> f64 {
        crate::cost::cost_usd(self.billable_seconds())
    }
}

fn check_u32(field: &str, value: u32, (lo, hi): (u32, u32), errors: &mut ValidationErrors) {
    if value < lo {
        errors.push(ValidationError::too_small(field, json!(lo), json!(value)));
    } else if value > hi {
        errors.push(ValidationError::too_large(field, json!(hi), json!(value)));
    }
}

/// Caps a text field at [`limits::MAX_PROMPT_CHARS`] (Pydantic's `string_too_long`).
fn check_text(field: &str, value: &str, errors: &mut ValidationErrors) {
    let max = limits::MAX_PROMPT_CHARS;
    // Bytes bound characters from above: only long strings are counted.
    if value.len() > max && value.chars().count() > max {
        errors.push(
            ValidationError::field(
                field,
                "string_too_long",
                format!("String should have at most {max} characters"),
            )
            .with_input(json!(value))
            .with_ctx(json!({ "max_length": max })),
        );
    }
}

/// Accepts `http://`, `https://` and `data:` URLs (the fetcher does the rest).
fn check_image_url(url: &str, errors: &mut ValidationErrors) {
    let lower = url.trim_start().to_ascii_lowercase();
    let ok = ["http://", "https://", "data:"]
        .iter()
        .any(|p| lower.starts_with(p));
    if url.trim().is_empty() {
        errors.push(
            ValidationError::field(
                "image_url",
                "string_too_short",
                "String should have at least 1 character",
            )
            .with_input(json!(url))
            .with_ctx(json!({"min_length": 1})),
        );
    } else if !ok {
        errors.push(
            ValidationError::field(
                "image_url",
                "value_error",
                "Value error, image_url must be an http(s) URL or a data URI",
            )
            .with_input(json!(url)),
        );
    }
}
