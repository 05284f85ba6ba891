//! Prompt expansion (`enable_prompt_expansion`): the user's prompt and a JPEG preview of the
//! input image (the prompt alone for text-to-video) go to a chat model behind an OpenAI-compatible `/v1/chat/completions` endpoint
//! (vLLM, llama.cpp server, Ollama, OpenAI), whose answer replaces the prompt. What is sent
//! and why is described in docs/worker.md ("Prompt expansion").

use std::time::Duration;

use longcat_core::RgbImage;
use longcat_media::input::jpeg_preview;
use serde_json::{json, Value};

/// The instructions sent as the system message (written for this project).
pub const SYSTEM_PROMPT: &str = "You rewrite prompts for an image-to-video model. You are given \
the first frame of the video as an image and the user's prompt. Answer with one paragraph of at \
most about 120 words that describes the video to generate: the subjects and the setting as the \
image shows them, what moves and how (motion of the subjects, of the camera, its speed), the \
light and the visual style. Write in the language of the user's prompt. Keep everything the user \
asked for, and add no subject, text or event that neither the prompt nor the image suggests. \
Answer with the rewritten prompt only: no quotes, headings, lists or comments.";

/// The system message for the text-to-video apps, which have no image (written for this
/// project).
pub const TEXT_SYSTEM_PROMPT: &str = "You rewrite prompts for a text-to-video model. You are \
given the user's prompt. Answer with one paragraph of at most about 120 words that describes the \
video to generate: the subjects and the setting, what moves and how (motion of the subjects, of \
the camera, its speed), the light and the visual style. Write in the language of the user's \
prompt. Keep everything the user asked for, and add no subject, text or event the prompt does not \
suggest. Answer with the rewritten prompt only: no quotes, headings, lists or comments.";

/// Longest side, in pixels, of the image preview sent along.
pub const PREVIEW_MAX_SIDE: u32 = 1024;
/// Largest answer body read from the endpoint.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Tokens the model may answer with.
const MAX_ANSWER_TOKENS: u32 = 512;
/// First wait between attempts; doubled after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// What a job does when expansion was asked for and failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Log why and go on with the user's prompt.
    #[default]
    Original,
    /// Fail the job.
    Fail,
}

impl std::str::FromStr for OnFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "original" => Ok(Self::Original),
            "fail" => Ok(Self::Fail),
            other => Err(format!("expected original or fail, got {other:?}")),
        }
    }
}

/// Where and how to expand prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpansionConfig {
    /// `…/chat/completions` URL.
    pub endpoint: String,
    /// The `model` field of the request.
    pub model: String,
    /// Bearer key (`LONGCAT_PROMPT_EXPANSION_KEY`), if the endpoint needs one.
    pub api_key: Option<String>,
    /// Limit on each attempt.
    pub timeout: Duration,
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// What a failure does to the job.
    pub on_failure: OnFailure,
}

impl ExpansionConfig {
    /// The chat-completions URL for `base`: a base such as `http://host:8000/v1` gets
    /// `/chat/completions` appended; a URL that already ends with it is kept.
    pub fn endpoint_for(base: &str) -> Result<String, String> {
        let url = url::Url::parse(base).map_err(|e| format!("{base:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{base:?}: expected an http or https URL"));
        }
        let trimmed = base.trim_end_matches('/');
        Ok(if trimmed.ends_with("/chat/completions") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/chat/completions")
        })
    }
}

/// Why expansion failed.
#[derive(Debug, thiserror::Error)]
pub enum ExpansionError {
    /// The endpoint could not be reached or did not answer in time (after every attempt).
    #[error("request failed: {0}")]
    Transport(String),
    /// The endpoint answered with an error status.
    #[error("endpoint answered HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The answer is not a chat completion with a usable prompt.
    #[error("unusable answer: {0}")]
    Answer(String),
}

impl ExpansionError {
    fn retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Answer(_) => false,
        }
    }
}

/// A client for one configured endpoint.
#[derive(Debug, Clone)]
pub struct PromptExpander {
    config: ExpansionConfig,
    client: reqwest::Client,
}

impl PromptExpander {
    /// A client for `config`.
    pub fn new(config: ExpansionConfig) -> Result<Self, ExpansionError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ExpansionError::Transport(format!("HTTP client: {e}")))?;
        Ok(Self { config, client })
    }

    /// The configuration.
    pub fn config(&self) -> &ExpansionConfig {
        &self.config
    }

    /// The expanded prompt for `prompt` with the image preview `jpeg`, retrying transport
    /// errors, 429 and 5xx with a doubling backoff.
    pub async fn expand(&self, prompt: &str, jpeg: &[u8]) -> Result<String, ExpansionError> {
        self.expand_with(prompt, Some(jpeg)).await
    }

    /// The expanded prompt for `prompt` with the image preview `jpeg` if there is one (the
    /// text-to-video apps send the prompt alone), retrying as [`PromptExpander::expand`].
    pub async fn expand_with(
        &self,
        prompt: &str,
        jpeg: Option<&[u8]>,
    ) -> Result<String, ExpansionError> {
        let body = request_body_for(&self.config.model, prompt, jpeg);
        let body = serde_json::to_vec(&body).map_err(|e| ExpansionError::Answer(e.to_string()))?;
        let mut backoff = FIRST_BACKOFF;
        let attempts = self.config.attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.attempt(&body).await {
                Ok(text) => return Ok(text),
                Err(e) if e.retryable() && attempt < attempts => {
                    tracing::warn!(attempt, error = %e, "prompt expansion attempt failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(&self, body: &[u8]) -> Result<String, ExpansionError> {
        let mut request = self
            .client
            .post(&self.config.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ExpansionError::Transport(e.without_url().to_string()))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ExpansionError::Transport(e.without_url().to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ExpansionError::Answer(format!(
                    "answer over {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(ExpansionError::Status {
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ExpansionError::Answer(format!("not JSON: {e}")))?;
        answer_text(&value)
    }
}

/// The chat-completions request: our system prompt, then one user message with the prompt as
/// text and the image preview as an `image_url` data URI.
pub fn request_body(model: &str, prompt: &str, jpeg: &[u8]) -> Value {
    request_body_for(model, prompt, Some(jpeg))
}

/// The chat-completions request with an image preview ([`request_body`]) or without one:
/// then [`TEXT_SYSTEM_PROMPT`] and one user message holding the prompt as text only.
pub fn request_body_for(model: &str, prompt: &str, jpeg: Option<&[u8]>) -> Value {
    use base64::Engine as _;
    let (system, mut content) = match jpeg {
        Some(_) => (SYSTEM_PROMPT, vec![json!({"type": "text", "text": prompt})]),
        None => (
            TEXT_SYSTEM_PROMPT,
            vec![json!({"type": "text", "text": prompt})],
        ),
    };
    if let Some(jpeg) = jpeg {
        let data = base64::engine::general_purpose::STANDARD.encode(jpeg);
        content.push(json!({"type": "image_url",
            "image_url": {"url": format!("data:image/jpeg;base64,{data}")}}));
    }
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": content},
        ],
        "max_tokens": MAX_ANSWER_TOKENS,
        "temperature": 0.2,
        "stream": false,
    })
}

/// The rewritten prompt in a chat completion: `choices[0].message.content` (a string, or
/// text parts), trimmed of white space and wrapping quotes; empty or over the prompt limit
/// is an error.
pub fn answer_text(value: &Value) -> Result<String, ExpansionError> {
    let content = value
        .pointer("/choices/0/message/content")
        .ok_or_else(|| ExpansionError::Answer("no choices[0].message.content".into()))?;
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => return Err(ExpansionError::Answer("content is not text".into())),
    };
    let text = text.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .trim();
    if text.is_empty() {
        return Err(ExpansionError::Answer("empty prompt".into()));
    }
    let chars = text.chars().count();
    if chars > longcat_core::limits::MAX_PROMPT_CHARS {
        return Err(ExpansionError::Answer(format!(
            "{chars} characters, over the prompt limit of {}",
            longcat_core::limits::MAX_PROMPT_CHARS
        )));
    }
    Ok(text.to_owned())
}

/// The prompt a job goes on with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expanded {
    /// The endpoint's rewrite.
    Rewritten(String),
    /// The user's prompt, with why it was kept (not configured, or failed with
    /// [`OnFailure::Original`]): a line for the job log.
    Kept {
        /// The user's prompt.
        prompt: String,
        /// Why it was kept.
        warning: String,
    },
}

impl Expanded {
    /// The prompt to use.
    pub fn prompt(&self) -> &str {
        match self {
            Self::Rewritten(p) | Self::Kept { prompt: p, .. } => p,
        }
    }
}

/// Expansion as a request step, shared by the worker and `longcat generate`: `config`
/// `None` keeps the prompt (with a warning); a failure keeps it too unless the policy is
/// [`OnFailure::Fail`], which returns the error. The JPEG preview is made on a blocking
/// thread.
pub async fn expand_or_keep(
    config: Option<&ExpansionConfig>,
    prompt: &str,
    image: &RgbImage,
) -> Result<Expanded, ExpansionError> {
    expand_or_keep_for(config, prompt, Some(image)).await
}

/// [`expand_or_keep`] for any app: with the input image's preview, or (text-to-video, `None`)
/// the prompt alone. Builds a client for `config` (see [`expand_or_keep_with`] to reuse one).
pub async fn expand_or_keep_for(
    config: Option<&ExpansionConfig>,
    prompt: &str,
    image: Option<&RgbImage>,
) -> Result<Expanded, ExpansionError> {
    let expander = config.cloned().map(PromptExpander::new).transpose()?;
    expand_or_keep_with(expander.as_ref(), prompt, image).await
}

/// [`expand_or_keep_for`] with an existing client (`None`: not configured).
pub async fn expand_or_keep_with(
    expander: Option<&PromptExpander>,
    prompt: &str,
    image: Option<&RgbImage>,
) -> Result<Expanded, ExpansionError> {
    let keep = |warning: String| Expanded::Kept {
        prompt: prompt.to_owned(),
        warning,
    };
    let Some(expander) = expander else {
        return Ok(keep(
            "prompt expansion was asked for, but no endpoint is configured \
             (--prompt-expansion-url); the prompt is used as given"
                .into(),
        ));
    };
    let result = async {
        let jpeg = match image {
            Some(image) => {
                let image = image.clone();
                let jpeg =
                    tokio::task::spawn_blocking(move || jpeg_preview(&image, PREVIEW_MAX_SIDE))
                        .await
                        .map_err(|e| ExpansionError::Answer(format!("image preview task: {e}")))?
                        .map_err(|e| ExpansionError::Answer(format!("image preview: {e}")))?;
                Some(jpeg)
            }
            None => None,
        };
        expander.expand_with(prompt, jpeg.as_deref()).await
    }
    .await;
    match (result, expander.config().on_failure) {
        (Ok(text), _) => Ok(Expanded::Rewritten(text)),
        (Err(e), OnFailure::Original) => Ok(keep(format!(
            "prompt expansion failed ({e}); the prompt is used as given"
        ))),
        (Err(e), OnFailure::Fail) => Err(e),
    }
}
