//! The safety checker in the worker (`enable_safety_checker`, docs/safety.md): the input
//! image is checked after it is fetched and decoded, before any engine work; output frames
//! (every `floor(fps)`-th and the last) are checked on a thread of their own while the video
//! is generated, and the job fails before the video is stored when one is flagged.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use longcat_api::failure::content_policy_detail;
use longcat_core::{RgbImage, VideoFrame};
use longcat_safety::{
    sample_step, Label, NudeDetector, Policy, SafetyChecker, Verdict, DEFAULT_THRESHOLD,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::failure::Failure;
use crate::settings::SettingsError;

/// Longest `image_url` echoed in a violation's `input` (data URIs are cut, with a note).
const MAX_ECHOED_URL: usize = 2048;

/// The safety checker's settings, one layer (flattened into [`crate::WorkerLayer`]; TOML
/// keys named like the flags, with `_`).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SafetyLayer {
    /// The content check of `enable_safety_checker` (fal's default: on): `on` or `off`. On
    /// without its model, requests asking for the check are refused [default: on].
    #[arg(long, env = "LONGCAT_SAFETY_CHECKER", value_name = "on|off")]
    pub safety_checker: Option<String>,
    /// The NudeNet 320n ONNX file (AGPL-3.0; `scripts/fetch-safety-model.sh` places it)
    /// [default: data/models/nudenet-320n.onnx].
    #[arg(long, env = "LONGCAT_SAFETY_MODEL", value_name = "FILE")]
    pub safety_model: Option<PathBuf>,
    /// Comma-separated detector labels that flag content (docs/safety.md) [default:
    /// FEMALE_GENITALIA_EXPOSED,MALE_GENITALIA_EXPOSED,FEMALE_BREAST_EXPOSED,BUTTOCKS_EXPOSED,ANUS_EXPOSED].
    #[arg(long, env = "LONGCAT_SAFETY_LABELS", value_name = "LABEL,...")]
    pub safety_labels: Option<String>,
    /// Score at which a detection of one of those labels flags, in (0, 1] [default: 0.5].
    #[arg(long, env = "LONGCAT_SAFETY_THRESHOLD", value_name = "SCORE")]
    pub safety_threshold: Option<f32>,
}

impl SafetyLayer {
    /// `flags` over `file` over the defaults.
    pub fn resolve(
        flags: &SafetyLayer,
        file: &SafetyLayer,
    ) -> Result<SafetySettings, SettingsError> {
        let enabled = match flags
            .safety_checker
            .clone()
            .or_else(|| file.safety_checker.clone())
        {
            None => true,
            Some(s) => match s.trim().to_ascii_lowercase().as_str() {
                "on" | "true" | "1" | "yes" => true,
                "off" | "false" | "0" | "no" => false,
                _ => {
                    return Err(SettingsError {
                        setting: "--safety-checker",
                        message: format!("expected on or off, got '{s}'"),
                    })
                }
            },
        };
        let model = flags
            .safety_model
            .clone()
            .or_else(|| file.safety_model.clone())
            .unwrap_or_else(|| PathBuf::from(longcat_safety::DEFAULT_MODEL_PATH));
        let labels = match flags
            .safety_labels
            .clone()
            .or_else(|| file.safety_labels.clone())
        {
            None => Label::SEXUAL.to_vec(),
            Some(list) => Policy::parse_labels(&list).map_err(|e| SettingsError {
                setting: "--safety-labels",
                message: e.to_string(),
            })?,
        };
        let threshold = flags
            .safety_threshold
            .or(file.safety_threshold)
            .unwrap_or(DEFAULT_THRESHOLD);
        let policy = Policy::new(labels, threshold).map_err(|e| SettingsError {
            setting: "--safety-threshold",
            message: e.to_string(),
        })?;
        Ok(SafetySettings {
            enabled,
            model,
            policy,
        })
    }
}

/// The safety checker's settings, as resolved from flags, environment and config file.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetySettings {
    /// `--safety-checker on|off`.
    pub enabled: bool,
    /// `--safety-model FILE`.
    pub model: PathBuf,
    /// `--safety-labels` and `--safety-threshold`.
    pub policy: Policy,
}

/// The checker as a worker holds it.
#[derive(Debug, Clone, Default)]
pub enum SafetyState {
    /// `--safety-checker off`: requests asking for the check run without it (logged).
    #[default]
    Off,
    /// Loaded and ready.
    Ready(Arc<SafetyChecker>),
    /// On but not loadable (e.g. the model file is missing): requests asking for the check
    /// are refused with this reason.
    Unavailable(String),
}

impl SafetyState {
    /// Loads the model when the checker is on; a failure is logged as an error and kept, so
    /// that requests asking for the check are refused rather than passed.
    pub fn load(settings: &SafetySettings) -> Self {
        if !settings.enabled {
            tracing::warn!(
                "safety checker off (--safety-checker off): enable_safety_checker is ignored"
            );
            return Self::Off;
        }
        match NudeDetector::load(&settings.model) {
            Ok(detector) => {
                tracing::info!(
                    model = %settings.model.display(),
                    labels = ?settings.policy.labels().map(|l| l.as_str()).collect::<Vec<_>>(),
                    threshold = settings.policy.threshold(),
                    "safety checker ready"
                );
                Self::Ready(Arc::new(SafetyChecker::new(
                    detector,
                    settings.policy.clone(),
                )))
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "safety checker is on but unavailable: requests with enable_safety_checker \
                     (fal's default) will be refused"
                );
                Self::Unavailable(e.to_string())
            }
        }
    }

    /// The checker to use for a request with `enable_safety_checker = requested`: `None`
    /// when no check runs, an error when one is asked for and cannot run.
    pub(crate) fn for_request(
        &self,
        requested: bool,
    ) -> Result<Option<Arc<SafetyChecker>>, Failure> {
        match (requested, self) {
            (false, _) | (true, Self::Off) => Ok(None),
            (true, Self::Ready(c)) => Ok(Some(c.clone())),
            (true, Self::Unavailable(why)) => Err(Failure::Internal(format!(
                "the request asks for the safety checker (enable_safety_checker), which is \
                 unavailable on this worker: {why}"
            ))),
        }
    }
}

/// Checks the input image off the async runtime; a flagged image fails the job with a
/// violation at `["body", "image_url"]`.
pub(crate) async fn check_input(
    checker: Arc<SafetyChecker>,
    image: RgbImage,
    image_url: &str,
) -> Result<Verdict, Failure> {
    let verdict = tokio::task::spawn_blocking(move || checker.check(&image))
        .await
        .map_err(|e| Failure::Internal(format!("safety check of the input image: {e}")))?
        .map_err(|e| Failure::Internal(format!("safety check of the input image: {e}")))?;
    if verdict.flagged() {
        return Err(Failure::ContentPolicy {
            detail: input_violation(image_url, &verdict.categories),
            categories: verdict.categories.clone(),
        });
    }
    Ok(verdict)
}

/// fal's 422 `detail` for a flagged input image: one `content_policy_violation` at
/// `["body", "image_url"]` echoing the URL (long data URIs cut).
pub fn input_violation(image_url: &str, categories: &[String]) -> Value {
    content_policy_detail(
        &["body", "image_url"],
        Value::String(echoed_url(image_url)),
        categories,
    )
}

/// The outcome of an output check: the frames checked and those flagged.
#[derive(Debug, Clone, Default)]
pub struct OutputVerdict {
    /// Indices of the checked frames.
    pub checked: Vec<u32>,
    /// Flagged frames and what flagged them.
    pub flagged: Vec<(u32, Verdict)>,
}

impl OutputVerdict {
    /// `Ok` when nothing flagged, else the job's failure (violation at `["body", "output"]`,
    /// `input` `{"frames": [flagged indices]}`).
    pub(crate) fn into_result(self) -> Result<Self, Failure> {
        match self.violation() {
            None => Ok(self),
            Some((detail, categories)) => Err(Failure::ContentPolicy { detail, categories }),
        }
    }

    /// `None` when nothing flagged, else fal's 422 `detail` (a `content_policy_violation` at
    /// `["body", "output"]`, `input` `{"frames": [flagged indices]}`) and the categories.
    pub fn violation(&self) -> Option<(Value, Vec<String>)> {
        if self.flagged.is_empty() {
            return None;
        }
        let mut categories: Vec<String> = self
            .flagged
            .iter()
            .flat_map(|(_, v)| v.categories.iter().cloned())
            .collect();
        categories.sort();
        categories.dedup();
        let frames: Vec<u32> = self.flagged.iter().map(|(i, _)| *i).collect();
        let detail = content_policy_detail(
            &["body", "output"],
            json!({ "frames": frames }),
            &categories,
        );
        Some((detail, categories))
    }
}

/// Checks sampled output frames on its own thread while they are generated: every
/// `floor(fps)`-th frame as it arrives, and the last frame at [`OutputCheck::finish`].
pub struct OutputCheck {
    tx: Option<mpsc::Sender<VideoFrame>>,
    thread: Option<JoinHandle<Result<OutputVerdict, String>>>,
    step: u32,
    /// The latest frame when it was not sent (it may be the last one).
    pending_last: Option<VideoFrame>,
}

impl std::fmt::Debug for OutputCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputCheck")
            .field("step", &self.step)
            .field("running", &self.tx.is_some())
            .finish()
    }
}

impl OutputCheck {
    /// Starts the checking thread for a video at `fps`.
    pub fn start(checker: Arc<SafetyChecker>, fps: f64) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<VideoFrame>();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("safety-check".into())
            .spawn(move || {
                let _span = span.enter();
                let mut out = OutputVerdict::default();
                for frame in rx {
                    let index = frame.index;
                    let verdict = checker
                        .check(&frame.into_image())
                        .map_err(|e| format!("safety check of output frame {index}: {e}"))?;
                    out.checked.push(index);
                    if verdict.flagged() {
                        out.flagged.push((index, verdict));
                    }
                }
                Ok(out)
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            step: u32::try_from(sample_step(fps)).unwrap_or(u32::MAX),
            pending_last: None,
        })
    }

    /// Sees one output frame (in order).
    pub fn offer(&mut self, frame: &VideoFrame) {
        if frame.index.is_multiple_of(self.step) {
            self.pending_last = None;
            self.send(frame.clone());
        } else {
            self.pending_last = Some(frame.clone());
        }
    }

    fn send(&mut self, frame: VideoFrame) {
        if let Some(tx) = &self.tx {
            // A closed channel means the thread stopped on an error, which `finish` reports.
            if tx.send(frame).is_err() {
                self.tx = None;
            }
        }
    }

    /// Checks the last frame if it was not yet, waits for the thread, and returns what it
    /// found (an error when a check could not run: the content is never passed unchecked).
    pub fn finish(mut self) -> Result<OutputVerdict, String> {
        if let Some(last) = self.pending_last.take() {
            self.send(last);
        }
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("the safety check thread panicked".into()),
            None => Err("the safety check thread is missing".into()),
        }
    }
}

/// The `image_url` as echoed in a violation (long data URIs cut).
fn echoed_url(url: &str) -> String {
    if url.len() <= MAX_ECHOED_URL {
        return url.to_owned();
    }
    let mut end = MAX_ECHOED_URL;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &url[..end], url.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        layer: SafetyLayer,
    }

    fn flags(args: &[&str]) -> SafetyLayer {
        let mut argv = vec!["test"];
        argv.extend(args);
        Cli::try_parse_from(argv).unwrap().layer
    }

    #[test]
    fn settings_default_on_and_flags_beat_the_file() {
        let d = SafetyLayer::resolve(&SafetyLayer::default(), &SafetyLayer::default()).unwrap();
        assert!(d.enabled);
        assert_eq!(d.model, PathBuf::from("data/models/nudenet-320n.onnx"));
        assert_eq!(d.policy, Policy::default());
        let file: SafetyLayer = toml::from_str(
            "safety_checker = \"off\"\nsafety_labels = \"FACE_MALE\"\nsafety_threshold = 0.7",
        )
        .unwrap();
        let s = SafetyLayer::resolve(&SafetyLayer::default(), &file).unwrap();
        assert!(!s.enabled);
        assert_eq!(s.policy, Policy::new([Label::FaceMale], 0.7).unwrap());
        let s = SafetyLayer::resolve(
            &flags(&[
                "--safety-checker",
                "on",
                "--safety-labels",
                "FACE_FEMALE",
                "--safety-model",
                "/m.onnx",
            ]),
            &file,
        )
        .unwrap();
        assert!(s.enabled);
        assert_eq!(s.model, PathBuf::from("/m.onnx"));
        assert_eq!(s.policy, Policy::new([Label::FaceFemale], 0.7).unwrap());
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let e = SafetyLayer::resolve(
            &flags(&["--safety-checker", "maybe"]),
            &SafetyLayer::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "--safety-checker");
        let e = SafetyLayer::resolve(
            &flags(&["--safety-labels", "NOSE"]),
            &SafetyLayer::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "--safety-labels");
        assert!(e.message.contains("NOSE"));
        let e = SafetyLayer::resolve(
            &flags(&["--safety-threshold", "1.5"]),
            &SafetyLayer::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "--safety-threshold");
    }

    #[test]
    fn long_urls_are_cut_when_echoed() {
        assert_eq!(echoed_url("https://a/b.png"), "https://a/b.png");
        let long = format!("data:image/png;base64,{}", "A".repeat(5000));
        let e = echoed_url(&long);
        assert!(e.starts_with("data:image/png;base64,AAA"));
        assert!(e.ends_with(&format!("({} bytes)", long.len())));
        assert!(e.len() < MAX_ECHOED_URL + 32);
    }

    #[test]
    fn unavailable_checker_refuses_requests_that_ask_for_it() {
        let s = SafetyState::Unavailable("model missing".into());
        assert!(
            matches!(s.for_request(true), Err(Failure::Internal(m)) if m.contains("model missing"))
        );
        assert!(matches!(s.for_request(false), Ok(None)));
        assert!(matches!(SafetyState::Off.for_request(true), Ok(None)));
    }

    #[test]
    fn output_violation_lists_flagged_frames_and_categories() {
        let v = OutputVerdict {
            checked: vec![0, 30, 33],
            flagged: vec![
                (
                    30,
                    Verdict {
                        categories: vec!["sexual".into()],
                        hits: vec![],
                    },
                ),
                (
                    33,
                    Verdict {
                        categories: vec!["face_female".into(), "sexual".into()],
                        hits: vec![],
                    },
                ),
            ],
        };
        match v.into_result() {
            Err(Failure::ContentPolicy { detail, categories }) => {
                assert_eq!(categories, vec!["face_female", "sexual"]);
                assert_eq!(detail[0]["loc"], json!(["body", "output"]));
                assert_eq!(detail[0]["input"], json!({"frames": [30, 33]}));
                assert_eq!(detail[0]["type"], "content_policy_violation");
            }
            other => panic!("{other:?}"),
        }
        assert!(OutputVerdict::default().into_result().is_ok());
    }
}
