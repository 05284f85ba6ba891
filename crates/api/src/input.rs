//! The apps' input, [`AppInput`], with fal's per-app fields, defaults and ranges.

use longcat_core::{Acceleration, App, AspectRatio};
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

/// Input of one LongCat-Video app (every field of fal's schema for that app).
///
/// One struct holds the union of the eight apps' fields; [`AppInput::app`] says which app
/// it is for, and [`fields`] which fields that app has: only those are read by
/// [`crate::parse_value_for`], written by `Serialize` and checked by
/// [`AppInput::validate`]. A field the app does not have keeps its default here and is not
/// used: `image_url` is empty for text-to-video, `aspect_ratio` is ignored by
/// image-to-video, `num_refine_inference_steps` by 480p, and `negative_prompt`,
/// `guidance_scale` and `acceleration` by the distilled apps.
///
/// Serde deserialization is strict, fills the image-to-video/720p defaults and is for
/// that app only; use [`crate::parse_input_for`] for request bodies, which applies fal's
/// lax type coercions and reports all problems in the 422 shape.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AppInput {
    /// The app this input is for (not a wire field: it comes from the request path).
    #[serde(skip)]
    pub app: App,
    /// URL (http, https or data URI) of the condition image. Required by the
    /// image-to-video apps; empty for text-to-video.
    pub image_url: String,
    /// Text prompt (required, without a default, by the text-to-video apps).
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// Negative prompt (not in the distilled apps).
    #[serde(default = "default_negative_prompt")]
    pub negative_prompt: String,
    /// Frame shape of the text-to-video apps.
    #[serde(default)]
    pub aspect_ratio: AspectRatio,
    /// Frames to generate at 15 fps (17..=961).
    #[serde(default = "default_num_frames")]
    pub num_frames: u32,
    /// Stage-1 denoising steps (8..=50; distilled 2..=16).
    #[serde(default = "default_num_inference_steps")]
    pub num_inference_steps: u32,
    /// Refinement steps (8..=50; 720p apps only).
    #[serde(default = "default_num_refine_inference_steps")]
    pub num_refine_inference_steps: u32,
    /// Classifier-free guidance scale (1..=10; not in the distilled apps).
    #[serde(default = "default_guidance_scale")]
    pub guidance_scale: f64,
    /// Output frame rate (1..=60; default 30 for 720p, 15 for 480p).
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
    /// Acceleration level (not in the distilled apps).
    #[serde(default)]
    pub acceleration: Acceleration,
}

/// The input of `fal-ai/longcat-video/image-to-video/720p` (the name this crate has always
/// used; the same type as [`AppInput`]).
pub type I2vInput = AppInput;

/// Every input field of any app, in display order (the schema's `x-fal-order-properties`
/// and the order of errors in a 422).
pub const FIELD_ORDER: [&str; 17] = [
    "image_url",
    "prompt",
    "negative_prompt",
    "aspect_ratio",
    "num_frames",
    "num_inference_steps",
    "num_refine_inference_steps",
    "guidance_scale",
    "fps",
    "seed",
    "enable_prompt_expansion",
    "enable_safety_checker",
    "video_output_type",
    "video_quality",
    "video_write_mode",
    "sync_mode",
    "acceleration",
];

/// Whether `app`'s schema has input field `field` (fal's per-app schemas: text-to-video has
/// `aspect_ratio` and no `image_url`; 480p has no `num_refine_inference_steps`; distilled
/// has no `negative_prompt`, `guidance_scale` or `acceleration`).
pub fn has_field(app: App, field: &str) -> bool {
    match field {
        "image_url" => app.takes_image(),
        "aspect_ratio" => !app.takes_image(),
        "num_refine_inference_steps" => app.refines(),
        "negative_prompt" | "guidance_scale" | "acceleration" => !app.distilled,
        other => FIELD_ORDER.contains(&other),
    }
}

/// The input fields of `app`, in display order.
pub fn fields(app: App) -> Vec<&'static str> {
    FIELD_ORDER
        .into_iter()
        .filter(|f| has_field(app, f))
        .collect()
}

/// The required fields of `app`: `image_url` (image-to-video) or `prompt` (text-to-video).
pub fn required_fields(app: App) -> &'static [&'static str] {
    if app.takes_image() {
        &["image_url"]
    } else {
        &["prompt"]
    }
}

impl Serialize for AppInput {
    /// The wire form: exactly the fields of the app's schema, in display order.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let names = fields(self.app);
        let mut map = serializer.serialize_map(Some(names.len()))?;
        for name in names {
            match name {
                "image_url" => map.serialize_entry(name, &self.image_url)?,
                "prompt" => map.serialize_entry(name, &self.prompt)?,
                "negative_prompt" => map.serialize_entry(name, &self.negative_prompt)?,
                "aspect_ratio" => map.serialize_entry(name, &self.aspect_ratio)?,
                "num_frames" => map.serialize_entry(name, &self.num_frames)?,
                "num_inference_steps" => map.serialize_entry(name, &self.num_inference_steps)?,
                "num_refine_inference_steps" => {
                    map.serialize_entry(name, &self.num_refine_inference_steps)?
                }
                "guidance_scale" => map.serialize_entry(name, &self.guidance_scale)?,
                "fps" => map.serialize_entry(name, &self.fps)?,
                "seed" => map.serialize_entry(name, &self.seed)?,
                "enable_prompt_expansion" => {
                    map.serialize_entry(name, &self.enable_prompt_expansion)?
                }
                "enable_safety_checker" => {
                    map.serialize_entry(name, &self.enable_safety_checker)?
                }
                "video_output_type" => map.serialize_entry(name, &self.video_output_type)?,
                "video_quality" => map.serialize_entry(name, &self.video_quality)?,
                "video_write_mode" => map.serialize_entry(name, &self.video_write_mode)?,
                "sync_mode" => map.serialize_entry(name, &self.sync_mode)?,
                "acceleration" => map.serialize_entry(name, &self.acceleration)?,
                _ => {}
            }
        }
        map.end()
    }
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

impl AppInput {
    /// An image-to-video/720p input with the given image and every other field at its
    /// default.
    pub fn new(image_url: impl Into<String>) -> Self {
        Self {
            image_url: image_url.into(),
            ..Self::defaults(App::DEFAULT)
        }
    }

    /// An input of `app` with every field at that app's default (`image_url` empty; the
    /// text-to-video apps have no default `prompt`: it is empty here).
    pub fn defaults(app: App) -> Self {
        let l = limits::for_app(app);
        Self {
            app,
            image_url: String::new(),
            prompt: if app.takes_image() {
                default_prompt()
            } else {
                String::new()
            },
            negative_prompt: default_negative_prompt(),
            aspect_ratio: AspectRatio::default(),
            num_frames: limits::DEFAULT_NUM_FRAMES,
            num_inference_steps: l.default_num_inference_steps,
            num_refine_inference_steps: l.default_num_refine_inference_steps,
            guidance_scale: limits::DEFAULT_GUIDANCE_SCALE,
            fps: l.default_fps,
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

    /// Checks the ranges of the app's fields and the `image_url` scheme; all problems are
    /// reported together.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let app = self.app;
        let l = limits::for_app(app);
        let mut errors = ValidationErrors::new();
        if app.takes_image() {
            check_image_url(&self.image_url, &mut errors);
        }
        check_text("prompt", &self.prompt, &mut errors);
        if has_field(app, "negative_prompt") {
            check_text("negative_prompt", &self.negative_prompt, &mut errors);
        }
        check_u32(
            "num_frames",
            self.num_frames,
            limits::NUM_FRAMES,
            &mut errors,
        );
        check_u32(
            "num_inference_steps",
            self.num_inference_steps,
            l.num_inference_steps,
            &mut errors,
        );
        if has_field(app, "num_refine_inference_steps") {
            check_u32(
                "num_refine_inference_steps",
                self.num_refine_inference_steps,
                l.num_refine_inference_steps,
                &mut errors,
            );
        }
        if has_field(app, "guidance_scale") {
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

    /// Seconds billed for this input at the default prices (see [`crate::cost`]).
    pub fn billable_seconds(&self) -> f64 {
        crate::cost::PriceTable::default().billable_seconds(self.app, self.num_frames)
    }

    /// Estimated cost in USD at the default prices (see [`crate::cost`]).
    pub fn estimated_cost_usd(&self) -> f64 {
        crate::cost::PriceTable::default().cost_usd(self.app, self.num_frames)
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
