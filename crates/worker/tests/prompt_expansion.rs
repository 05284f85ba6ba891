//! The prompt-expansion client against a small OpenAI-compatible server on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use longcat_worker::prompt_expansion::{
    answer_text, expand_or_keep, expand_or_keep_for, Expanded, ExpansionConfig, ExpansionError,
    OnFailure, PromptExpander, PREVIEW_MAX_SIDE, SYSTEM_PROMPT, TEXT_SYSTEM_PROMPT,
};
use serde_json::{json, Value};

/// What the fake endpoint answers, attempt by attempt (the last one repeats).
#[derive(Clone)]
struct Script {
    answers: Arc<Vec<(u16, Value, Duration)>>,
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

async fn completions(
    State(s): State<Script>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = {
        let mut seen = s.seen.lock().unwrap();
        seen.push((headers, body));
        seen.len() - 1
    };
    let (status, answer, delay) = s.answers[n.min(s.answers.len() - 1)].clone();
    tokio::time::sleep(delay).await;
    (StatusCode::from_u16(status).unwrap(), Json(answer))
}

async fn serve(answers: Vec<(u16, Value, Duration)>) -> (SocketAddr, Script) {
    let script = Script {
        answers: Arc::new(answers),
        seen: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, script)
}

fn chat(content: Value) -> Value {
    json!({"id": "x", "object": "chat.completion",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
}

fn expander(addr: SocketAddr, timeout: Duration) -> PromptExpander {
    PromptExpander::new(ExpansionConfig {
        endpoint: ExpansionConfig::endpoint_for(&format!("http://{addr}/v1")).unwrap(),
        model: "qwen-vl".into(),
        api_key: Some("sk-test".into()),
        timeout,
        attempts: 3,
        on_failure: OnFailure::Original,
    })
    .unwrap()
}

const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
const FAST: Duration = Duration::ZERO;

#[tokio::test]
async fn the_request_carries_model_messages_and_image_and_the_answer_is_the_prompt() {
    let (addr, script) = serve(vec![(
        200,
        chat(json!("  \"A cat walks slowly.\" \n")),
        FAST,
    )])
    .await;
    let out = expander(addr, Duration::from_secs(5))
        .expand("a cat", JPEG)
        .await
        .unwrap();
    assert_eq!(out, "A cat walks slowly.");
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers["authorization"], "Bearer sk-test");
    assert_eq!(body["model"], "qwen-vl");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], SYSTEM_PROMPT);
    let user = &body["messages"][1];
    assert_eq!(user["role"], "user");
    assert_eq!(user["content"][0], json!({"type": "text", "text": "a cat"}));
    assert_eq!(user["content"][1]["type"], "image_url");
    let url = user["content"][1]["image_url"]["url"].as_str().unwrap();
    let data = url.strip_prefix("data:image/jpeg;base64,").unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        JPEG
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let (addr, script) = serve(vec![
        (503, json!({"error": "busy"}), FAST),
        (429, json!({"error": "slow down"}), FAST),
        (
            200,
            chat(json!([{"type": "text", "text": "Waves"}, {"type": "text", "text": " roll."}])),
            FAST,
        ),
    ])
    .await;
    let out = expander(addr, Duration::from_secs(5))
        .expand("sea", JPEG)
        .await
        .unwrap();
    assert_eq!(out, "Waves roll.");
    assert_eq!(script.seen.lock().unwrap().len(), 3);

    let (addr, script) = serve(vec![(400, json!({"error": "bad model"}), FAST)]).await;
    let err = expander(addr, Duration::from_secs(5))
        .expand("sea", JPEG)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExpansionError::Status { status: 400, body } if body.contains("bad model")),
        "{err}"
    );
    assert_eq!(script.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_slow_endpoint_times_out_after_every_attempt() {
    let (addr, script) = serve(vec![(200, chat(json!("late")), Duration::from_secs(5))]).await;
    let err = expander(addr, Duration::from_millis(200))
        .expand("x", JPEG)
        .await
        .unwrap_err();
    assert!(matches!(err, ExpansionError::Transport(_)), "{err}");
    assert_eq!(script.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = expander(addr, Duration::from_secs(1))
        .expand("x", JPEG)
        .await
        .unwrap_err();
    assert!(matches!(err, ExpansionError::Transport(_)), "{err}");
}

#[test]
fn unusable_answers_are_errors() {
    for bad in [
        json!({}),
        chat(json!("   ")),
        chat(json!(7)),
        chat(json!("\"\"")),
        chat(json!("a".repeat(longcat_core::limits::MAX_PROMPT_CHARS + 1))),
    ] {
        assert!(
            matches!(answer_text(&bad), Err(ExpansionError::Answer(_))),
            "{bad}"
        );
    }
    assert_eq!(answer_text(&chat(json!("ok"))).unwrap(), "ok");
}

#[test]
fn endpoint_urls() {
    assert_eq!(
        ExpansionConfig::endpoint_for("http://h:1/v1/").unwrap(),
        "http://h:1/v1/chat/completions"
    );
    assert_eq!(
        ExpansionConfig::endpoint_for("https://api.example/v1/chat/completions").unwrap(),
        "https://api.example/v1/chat/completions"
    );
    assert!(ExpansionConfig::endpoint_for("ftp://h/v1").is_err());
    assert!(ExpansionConfig::endpoint_for("not a url").is_err());
}

fn config(addr: SocketAddr, on_failure: OnFailure) -> ExpansionConfig {
    ExpansionConfig {
        endpoint: ExpansionConfig::endpoint_for(&format!("http://{addr}/v1")).unwrap(),
        model: "m".into(),
        api_key: None,
        timeout: Duration::from_secs(5),
        attempts: 1,
        on_failure,
    }
}

fn image(width: u32, height: u32) -> longcat_core::RgbImage {
    longcat_core::RgbImage {
        width,
        height,
        data: vec![90; (width * height * 3) as usize],
    }
}

#[tokio::test]
async fn the_step_sends_a_scaled_jpeg_and_returns_the_rewrite() {
    let (addr, script) = serve(vec![(200, chat(json!("Rewritten.")), FAST)]).await;
    let out = expand_or_keep(Some(&config(addr, OnFailure::Fail)), "p", &image(2048, 512))
        .await
        .unwrap();
    assert_eq!(out, Expanded::Rewritten("Rewritten.".into()));
    let seen = script.seen.lock().unwrap();
    let url = seen[0].1["messages"][1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(url.strip_prefix("data:image/jpeg;base64,").unwrap())
        .unwrap();
    let decoded = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (PREVIEW_MAX_SIDE, 256));
}

#[tokio::test]
async fn the_step_keeps_the_prompt_or_fails_by_policy() {
    let none = expand_or_keep(None, "mine", &image(8, 8)).await.unwrap();
    assert!(
        matches!(&none, Expanded::Kept { prompt, warning } if prompt == "mine" && warning.contains("--prompt-expansion-url")),
        "{none:?}"
    );
    let (addr, _) = serve(vec![(500, json!({"error": "down"}), FAST)]).await;
    let kept = expand_or_keep(
        Some(&config(addr, OnFailure::Original)),
        "mine",
        &image(8, 8),
    )
    .await
    .unwrap();
    assert_eq!(kept.prompt(), "mine");
    assert!(
        matches!(&kept, Expanded::Kept { warning, .. } if warning.contains("HTTP 500")),
        "{kept:?}"
    );
    let err = expand_or_keep(Some(&config(addr, OnFailure::Fail)), "mine", &image(8, 8))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExpansionError::Status { status: 500, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn text_to_video_sends_the_prompt_alone() {
    let (addr, script) = serve(vec![(200, chat(json!("A dog runs.")), FAST)]).await;
    let out = expand_or_keep_for(Some(&config(addr, OnFailure::Fail)), "a dog", None)
        .await
        .unwrap();
    assert_eq!(out, Expanded::Rewritten("A dog runs.".into()));
    let seen = script.seen.lock().unwrap();
    let body = &seen[0].1;
    assert_eq!(body["messages"][0]["content"], TEXT_SYSTEM_PROMPT);
    assert_eq!(
        body["messages"][1]["content"],
        json!([{"type": "text", "text": "a dog"}]),
        "no image part"
    );
}
