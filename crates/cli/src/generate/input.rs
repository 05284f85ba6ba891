//! The request body of `longcat generate`: `--input-json` (exactly the endpoint's JSON body)
//! with the per-field flags laid over it, validated by `longcat-api` like the server does,
//! with the fields that differ per app checked here (see [`parse_for_app`]).

use std::path::Path;

use anyhow::{bail, Context};
use clap::Args;
use longcat_api::AppInput;
use longcat_core::App;
use serde_json::{Map, Value};

/// One flag per field of the endpoint's input, named like the JSON field in kebab-case.
/// Unset flags leave the field to `--input-json` or the endpoint's default.
#[derive(Args, Debug, Default)]
pub struct RequestFlags {
    /// `image_url` (image-to-video apps only): a local file path, a `file://` URL, an
    /// http(s) URL or a data URI.
    #[arg(long = "image-url", visible_alias = "image", value_name = "PATH|URL")]
    pub image_url: Option<String>,
    /// `aspect_ratio` (text-to-video apps only): 16:9, 9:16 or 1:1 [default: 16:9].
    #[arg(long, value_name = "RATIO")]
    pub aspect_ratio: Option<String>,
    /// `prompt`.
    #[arg(long)]
    pub prompt: Option<String>,
    /// `negative_prompt` (stage-1 CFG only).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// `num_frames` (17–961): stage-1 frames at 15 fps; the video has about twice as many
    /// at 30 fps.
    #[arg(long)]
    pub num_frames: Option<u32>,
    /// `num_inference_steps`: stage-1 denoising steps (8–50, default 40; distilled apps
    /// 2–16, default 12).
    #[arg(long)]
    pub num_inference_steps: Option<u32>,
    /// `num_refine_inference_steps` (8–50): refinement schedule length (720p apps only).
    #[arg(long)]
    pub num_refine_inference_steps: Option<u32>,
    /// `guidance_scale` (1–10).
    #[arg(long)]
    pub guidance_scale: Option<f64>,
    /// `fps` (1–60): frame rate written into the file [default: the app's, 30 for 720p,
    /// 15 for 480p].
    #[arg(long)]
    pub fps: Option<u32>,
    /// `seed` (random when absent; printed at the end).
    #[arg(long)]
    pub seed: Option<u64>,
    /// `enable_prompt_expansion` (rewrites the prompt through `--prompt-expansion-url`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub enable_prompt_expansion: Option<bool>,
    /// `enable_safety_checker` (default true: the input image and sampled output frames are
    /// checked with `--safety-model`; `false` skips the check).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub enable_safety_checker: Option<bool>,
    /// `video_output_type`: "X264 (.mp4)", "VP9 (.webm)", "PRORES4444 (.mov)", "GIF (.gif)".
    #[arg(long)]
    pub video_output_type: Option<String>,
    /// `video_quality`: low, medium, high, maximum.
    #[arg(long)]
    pub video_quality: Option<String>,
    /// `video_write_mode`: fast, balanced, small.
    #[arg(long)]
    pub video_write_mode: Option<String>,
    /// `sync_mode` (accepted; the CLI always writes a file).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub sync_mode: Option<bool>,
    /// `acceleration`: none, regular.
    #[arg(long)]
    pub acceleration: Option<String>,
}

impl RequestFlags {
    /// The set flags as JSON fields.
    fn fields(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        let mut put = |k: &'static str, v: Option<Value>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        let s = |v: &Option<String>| v.clone().map(Value::from);
        put("image_url", s(&self.image_url));
        put("aspect_ratio", s(&self.aspect_ratio));
        put("prompt", s(&self.prompt));
        put("negative_prompt", s(&self.negative_prompt));
        put("num_frames", self.num_frames.map(Value::from));
        put(
            "num_inference_steps",
            self.num_inference_steps.map(Value::from),
        );
        put(
            "num_refine_inference_steps",
            self.num_refine_inference_steps.map(Value::from),
        );
        put("guidance_scale", self.guidance_scale.map(Value::from));
        put("fps", self.fps.map(Value::from));
        put("seed", self.seed.map(Value::from));
        put(
            "enable_prompt_expansion",
            self.enable_prompt_expansion.map(Value::from),
        );
        put(
            "enable_safety_checker",
            self.enable_safety_checker.map(Value::from),
        );
        put("video_output_type", s(&self.video_output_type));
        put("video_quality", s(&self.video_quality));
        put("video_write_mode", s(&self.video_write_mode));
        put("sync_mode", self.sync_mode.map(Value::from));
        put("acceleration", s(&self.acceleration));
        out
    }
}

/// The request body: the `--input-json` object (if any) with the set flags laid over it.
pub fn request_body(input_json: Option<&Path>, flags: &RequestFlags) -> anyhow::Result<Value> {
    let mut body = match input_json {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let value: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            match value {
                Value::Object(map) => map,
                _ => bail!(
                    "{} must hold a JSON object (the request body)",
                    path.display()
                ),
            }
        }
        None => Map::new(),
    };
    for (key, value) in flags.fields() {
        body.insert(key.to_string(), value);
    }
    Ok(Value::Object(body))
}

/// Parses and validates the body of the 720p image-to-video app as the server does (see
/// [`parse_for_app`]).
#[cfg(test)]
pub fn parse(body: &Value) -> anyhow::Result<AppInput> {
    parse_for_app(App::DEFAULT, body)
}

/// The 422 items of `errors` as lines `  field: message`.
fn describe(errors: &longcat_api::ValidationErrors) -> Vec<String> {
    errors
        .detail()
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let loc = d["loc"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter(|p| p.as_str() != Some("body"))
                        .map(|p| p.to_string().trim_matches('"').to_string())
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .unwrap_or_default();
            let field = if loc.is_empty() { "body".into() } else { loc };
            format!("  {field}: {}", d["msg"].as_str().unwrap_or("invalid"))
        })
        .collect()
}

/// What the CLI accepts but does not act on.
pub fn ignored_notes(input: &AppInput) -> Vec<&'static str> {
    let mut notes = Vec::new();
    if input.sync_mode {
        notes.push("sync_mode has no effect on the command line: the video is written to a file");
    }
    notes
}

/// Fields of the 720p image-to-video body that `app` does not have, with why.
fn foreign_fields(app: App) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if !app.takes_image() {
        out.push(("image_url", "text-to-video starts from the prompt alone"));
    }
    if app.distilled {
        let why = "distilled apps always run the cfg_step LoRA without guidance";
        out.extend([
            ("negative_prompt", why),
            ("guidance_scale", why),
            ("acceleration", why),
        ]);
    }
    if !app.refines() {
        out.push((
            "num_refine_inference_steps",
            "480p apps have no refinement stage",
        ));
    }
    if app.takes_image() {
        out.push(("aspect_ratio", "image-to-video takes the image's shape"));
    }
    out
}

/// Parses and validates `body` for `app` exactly as the server does (`longcat-api`: the
/// app's fields, ranges, defaults and required fields), after turning a local image path
/// into a data URI (the endpoint only takes URLs). Stricter than the server in one way: a
/// field the app does not have (which the server ignores, as Pydantic ignores unknown
/// fields) is refused here, since on the command line it is a mistake. Errors list every
/// bad field.
pub fn parse_for_app(app: App, body: &Value) -> anyhow::Result<AppInput> {
    let Value::Object(map) = body else {
        bail!("invalid request:\n  body: must be a JSON object");
    };
    let mut errors = Vec::new();
    for (field, why) in foreign_fields(app) {
        if map.contains_key(field) {
            errors.push(format!("  {field}: not a field of {app} ({why})"));
        }
    }
    let mut body = body.clone();
    if let Some(Value::String(url)) = body.get("image_url") {
        if let Some(uri) = crate::generate::image::local_to_data_uri(url)? {
            body["image_url"] = Value::String(uri);
        }
    }
    match longcat_api::parse_value_for(app, &body) {
        Ok(input) if errors.is_empty() => Ok(input),
        Ok(_) => bail!("invalid request:\n{}", errors.join("\n")),
        Err(e) => {
            errors.extend(describe(&e));
            bail!("invalid request:\n{}", errors.join("\n"))
        }
    }
}

/// `--app`: an app id (`fal-ai/longcat-video/distilled/text-to-video/480p`) or its path
/// after `fal-ai/longcat-video/` (`distilled/text-to-video/480p`).
pub fn parse_app(s: &str) -> Result<App, String> {
    let s = s.trim().trim_matches('/');
    App::ALL
        .into_iter()
        .find(|a| a.id() == s || a.path() == s)
        .ok_or_else(|| {
            let ids: Vec<&str> = App::ALL.iter().map(|a| a.id()).collect();
            format!("unknown app `{s}`; one of: {}", ids.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_json_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body.json");
        std::fs::write(
            &path,
            r#"{"image_url": "https://example.com/a.png", "num_frames": 33, "prompt": "a", "extra": 1}"#,
        )
        .unwrap();
        let flags = RequestFlags {
            num_frames: Some(17),
            video_quality: Some("low".into()),
            enable_safety_checker: Some(false),
            ..Default::default()
        };
        let body = request_body(Some(&path), &flags).unwrap();
        let input = parse(&body).unwrap();
        assert_eq!(input.num_frames, 17);
        assert_eq!(input.prompt, "a");
        assert!(!input.enable_safety_checker);
        assert_eq!(input.video_quality, longcat_media::VideoQuality::Low);
        assert_eq!(input.num_inference_steps, 40, "endpoint default");
    }

    #[test]
    fn errors_name_every_bad_field() {
        let flags = RequestFlags {
            image_url: Some("https://example.com/a.png".into()),
            num_frames: Some(5),
            video_quality: Some("ultra".into()),
            ..Default::default()
        };
        let err = parse(&request_body(None, &flags).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_frames"), "{err}");
        assert!(err.contains("video_quality"), "{err}");
        let missing = parse(&request_body(None, &RequestFlags::default()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("image_url"), "{missing}");
    }

    fn body(fields: serde_json::Value) -> Value {
        fields
    }

    #[test]
    fn every_app_id_and_path_parses() {
        for app in App::ALL {
            assert_eq!(parse_app(app.id()), Ok(app));
            assert_eq!(parse_app(app.path()), Ok(app));
        }
        let err = parse_app("fal-ai/longcat-video/image-to-video").unwrap_err();
        assert!(err.contains("distilled/text-to-video/480p"), "{err}");
    }

    #[test]
    fn per_app_fields_and_defaults() {
        let t2v = parse_app("distilled/text-to-video/480p").unwrap();
        let a = parse_for_app(
            t2v,
            &body(serde_json::json!({"aspect_ratio": "9:16", "prompt": "a kite"})),
        )
        .unwrap();
        assert_eq!(a.aspect_ratio, longcat_core::AspectRatio::Portrait);
        assert_eq!(a.num_inference_steps, 12, "distilled default");
        assert_eq!(a.fps, 15, "480p default fps");
        let r = a.to_request(None);
        assert_eq!((r.app, r.image.is_none()), (t2v, true));
        assert_eq!(r.guidance_scale, 1.0);

        let i2v720 = App::DEFAULT;
        let url = "https://example.com/a.png";
        let a = parse_for_app(i2v720, &body(serde_json::json!({"image_url": url}))).unwrap();
        assert_eq!((a.fps, a.num_inference_steps), (30, 40));

        let err = parse_for_app(
            t2v,
            &body(serde_json::json!({
                "image_url": url, "guidance_scale": 2.0, "num_inference_steps": 20,
                "num_refine_inference_steps": 10, "aspect_ratio": "4:3", "num_frames": 5
            })),
        )
        .unwrap_err()
        .to_string();
        for field in [
            "image_url",
            "guidance_scale",
            "num_inference_steps",
            "num_refine_inference_steps",
            "aspect_ratio",
            "num_frames",
        ] {
            assert!(err.contains(&format!("  {field}:")), "{field}: {err}");
        }
        let err = parse_for_app(
            i2v720,
            &body(serde_json::json!({"image_url": url, "aspect_ratio": "1:1"})),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("aspect_ratio"), "{err}");
        let err = parse_for_app(
            App::from_id("fal-ai/longcat-video/image-to-video/480p").unwrap(),
            &body(serde_json::json!({})),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("image_url"), "{err}");
    }
}
