//! Webhook delivery against a loopback axum receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use longcat_media::input::AddressPolicy;
use longcat_worker::webhook::*;

/// Headers and body of each call received.
type Calls = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Received {
    calls: Calls,
    /// Status codes to answer, in order; 200 once exhausted.
    script: Arc<Mutex<Vec<u16>>>,
}

async fn receive(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.calls.lock().unwrap().push((headers, body.to_vec()));
    let mut script = r.script.lock().unwrap();
    let code = if script.is_empty() {
        200
    } else {
        script.remove(0)
    };
    StatusCode::from_u16(code).unwrap()
}

async fn receiver(script: Vec<u16>) -> (String, Received) {
    let state = Received {
        script: Arc::new(Mutex::new(script)),
        ..Default::default()
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{}/hook", addr.port()), state)
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, DeliveryAttempt)>>);

impl AttemptRecorder for Recorder {
    fn record<'a>(&'a self, request_id: &'a str, attempt: &'a DeliveryAttempt) -> RecordFuture<'a> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .push((request_id.to_string(), attempt.clone()));
        })
    }
}

fn loopback_config() -> WebhookConfig {
    WebhookConfig {
        hmac_secret: Some("s3cret".into()),
        signing_key: Some(WebhookKey::from_seed([7; 32])),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        timeout: Duration::from_secs(5),
        max_attempts: 4,
        policy: AddressPolicy::allowing(["127.0.0.1/32".parse().unwrap()]),
        ..Default::default()
    }
}

fn never_stop() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    rx
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn delivers_signed_fal_payload() {
    let (url, received) = receiver(vec![]).await;
    let sender = WebhookSender::new(loopback_config()).unwrap();
    let output =
        serde_json::json!({"video": {"url": "http://x/files/a.mp4"}, "seed": 5, "prompt": "p"});
    let body = webhook_body("req-1", &WebhookOutcome::Ok(output.clone()));
    let rec = Recorder::default();
    let report = sender
        .deliver(&url, "req-1", Some("key-9"), &body, &rec, never_stop())
        .await;
    assert_eq!(
        report,
        DeliveryReport {
            delivered: true,
            attempts: 1
        }
    );

    let calls = received.calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    let (headers, got) = &calls[0];
    let json: serde_json::Value = serde_json::from_slice(got).unwrap();
    assert_eq!(json["request_id"], "req-1");
    assert_eq!(json["gateway_request_id"], "req-1");
    assert_eq!(json["status"], "OK");
    assert_eq!(json["payload"], output);
    assert!(json.get("error").is_none());
    assert_eq!(headers["content-type"], "application/json");

    let h = |n: &str| headers[n].to_str().unwrap().to_string();
    assert!(verify_hmac_header(
        b"s3cret",
        &h("x-longcat-signature"),
        got,
        now(),
        Duration::from_secs(300)
    ));
    assert!(!verify_hmac_header(
        b"other",
        &h("x-longcat-signature"),
        got,
        now(),
        Duration::from_secs(300)
    ));
    assert!(!verify_hmac_header(
        b"s3cret",
        &h("x-longcat-signature"),
        b"tampered",
        now(),
        Duration::from_secs(300)
    ));
    assert!(!verify_hmac_header(
        b"s3cret",
        &h("x-longcat-signature"),
        got,
        now() + 1000,
        Duration::from_secs(300)
    ));

    assert_eq!(h("x-fal-webhook-request-id"), "req-1");
    assert_eq!(h("x-fal-webhook-user-id"), "key-9");
    let ts: u64 = h("x-fal-webhook-timestamp").parse().unwrap();
    assert!(now().abs_diff(ts) < 60);
    let key = WebhookKey::from_seed([7; 32]);
    // The receiver's recipe: public key from the JWKS, message from the headers and body.
    let jwks = key.jwks();
    use base64::Engine as _;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let public: [u8; 32] = x.try_into().unwrap();
    let sig = h("x-fal-webhook-signature");
    assert!(verify_fal_signature(
        &public, "req-1", "key-9", ts, got, &sig
    ));
    assert!(!verify_fal_signature(
        &public, "req-2", "key-9", ts, got, &sig
    ));
    assert!(!verify_fal_signature(
        &public, "req-1", "key-9", ts, b"{}", &sig
    ));

    let rec = rec.0.lock().unwrap();
    assert_eq!(
        rec.as_slice(),
        &[(
            "req-1".to_string(),
            DeliveryAttempt {
                attempt: 1,
                status_code: Some(200),
                error: None
            }
        )]
    );
}

#[tokio::test]
async fn retries_with_backoff_until_accepted() {
    let (url, received) = receiver(vec![500, 503]).await;
    let sender = WebhookSender::new(loopback_config()).unwrap();
    let body = webhook_body(
        "r",
        &WebhookOutcome::Error {
            error: "Invalid status code: 422".into(),
            payload: Some(
                serde_json::json!({"detail": [{"loc": ["body", "image_url"], "msg": "m", "type": "t"}]}),
            ),
        },
    );
    let rec = Recorder::default();
    let report = sender
        .deliver(&url, "r", None, &body, &rec, never_stop())
        .await;
    assert_eq!(
        report,
        DeliveryReport {
            delivered: true,
            attempts: 3
        }
    );
    let codes: Vec<Option<u16>> = rec
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, a)| a.status_code)
        .collect();
    assert_eq!(codes, vec![Some(500), Some(503), Some(200)]);
    let calls = received.calls.lock().unwrap();
    assert_eq!(calls.len(), 3);
    let json: serde_json::Value = serde_json::from_slice(&calls[0].1).unwrap();
    assert_eq!(json["status"], "ERROR");
    assert_eq!(json["error"], "Invalid status code: 422");
    assert_eq!(json["payload"]["detail"][0]["loc"][1], "image_url");
    // Same body on every attempt (receivers deduplicate on request_id).
    assert_eq!(calls[0].1, calls[2].1);
    // Default user id when the job has no key.
    assert_eq!(calls[0].0["x-fal-webhook-user-id"], "longcat");
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let (url, received) = receiver(vec![500; 10]).await;
    let sender = WebhookSender::new(loopback_config()).unwrap();
    let rec = Recorder::default();
    let report = sender
        .deliver(&url, "r", None, b"{}", &rec, never_stop())
        .await;
    assert_eq!(
        report,
        DeliveryReport {
            delivered: false,
            attempts: 4
        }
    );
    assert_eq!(received.calls.lock().unwrap().len(), 4);
    let rec = rec.0.lock().unwrap();
    assert_eq!(rec.len(), 4);
    assert!(rec
        .iter()
        .all(|(_, a)| a.error.as_deref() == Some("receiver answered HTTP 500")));
    assert_eq!(
        rec.iter().map(|(_, a)| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
}

#[tokio::test]
async fn refuses_private_targets_by_default() {
    let (url, received) = receiver(vec![]).await;
    let config = WebhookConfig {
        policy: AddressPolicy::default(),
        ..loopback_config()
    };
    let sender = WebhookSender::new(config).unwrap();
    let rec = Recorder::default();
    // Literal IP: refused before any connection, recorded once.
    let report = sender
        .deliver(&url, "r", None, b"{}", &rec, never_stop())
        .await;
    assert_eq!(
        report,
        DeliveryReport {
            delivered: false,
            attempts: 1
        }
    );
    // Host name resolving to loopback: refused by the resolver on every attempt.
    let by_name = url.replace("127.0.0.1", "localhost");
    let report = sender
        .deliver(&by_name, "r", None, b"{}", &rec, never_stop())
        .await;
    assert!(!report.delivered);
    assert!(received.calls.lock().unwrap().is_empty());
    let rec = rec.0.lock().unwrap();
    assert!(
        rec[0].1.error.as_ref().unwrap().contains("loopback"),
        "{:?}",
        rec[0]
    );
    assert!(
        rec[1].1.error.as_ref().unwrap().contains("loopback"),
        "{:?}",
        rec[1]
    );
    assert!(rec[1].1.status_code.is_none());
}

#[tokio::test]
async fn stop_signal_ends_the_backoff_wait() {
    let (url, _received) = receiver(vec![500; 10]).await;
    let config = WebhookConfig {
        initial_backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        ..loopback_config()
    };
    let sender = WebhookSender::new(config).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let rec = Arc::new(Recorder::default());
    let task = {
        let rec = rec.clone();
        tokio::spawn(async move {
            sender
                .deliver(&url, "r", None, b"{}", rec.as_ref(), rx)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("delivery should stop promptly")
        .unwrap();
    assert_eq!(
        report,
        DeliveryReport {
            delivered: false,
            attempts: 1
        }
    );
}

#[test]
fn webhook_urls_are_checked() {
    let strict = AddressPolicy::default();
    assert!(validate_webhook_url("https://hooks.example.com/x", &strict).is_ok());
    for bad in [
        "ftp://example.com/x",
        "not a url",
        "http://user:pw@example.com/",
        "http://127.0.0.1/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "http://10.1.2.3/",
    ] {
        assert!(validate_webhook_url(bad, &strict).is_err(), "{bad}");
    }
    let loopback = AddressPolicy::allowing(["127.0.0.1/32".parse().unwrap()]);
    assert!(validate_webhook_url("http://127.0.0.1:9/x", &loopback).is_ok());
}

#[test]
fn concurrent_first_starts_share_one_key() {
    // Several workers starting at once on a fresh data dir must all get the same key.
    let dir = std::env::temp_dir().join(format!("longcat-wh-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("webhook.key");
    let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| WebhookKey::load_or_create(&path).unwrap().public_key()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(keys.iter().all(|k| *k == keys[0]));
    assert_eq!(
        WebhookKey::load_or_create(&path).unwrap().public_key(),
        keys[0]
    );
    let leftovers = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(leftovers, 1, "temporary key files left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_persist_and_publish() {
    let dir = std::env::temp_dir().join(format!("longcat-wh-{}", std::process::id()));
    let path = dir.join("nested/webhook.key");
    let _ = std::fs::remove_dir_all(&dir);
    let a = WebhookKey::load_or_create(&path).unwrap();
    let b = WebhookKey::load_or_create(&path).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    assert_eq!(a.key_id().len(), 16);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let jwks = a.jwks();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert!(WebhookKey::from_hex("abcd").is_err());
    std::fs::write(dir.join("bad.key"), "zz").unwrap();
    assert!(WebhookKey::load_or_create(&dir.join("bad.key")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn error_payload_shape() {
    let body = webhook_body(
        "id",
        &WebhookOutcome::Error {
            error: "Invalid status code: 500".into(),
            payload: None,
        },
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], "ERROR");
    assert!(json["payload"].is_null());
    assert!(json.get("payload_error").is_none());
}

#[test]
fn body_matches_the_api_crate_payload() {
    let output = serde_json::json!({"seed": 1});
    let ours: serde_json::Value =
        serde_json::from_slice(&webhook_body("r", &WebhookOutcome::Ok(output.clone()))).unwrap();
    let api = serde_json::to_value(longcat_api::queue::WebhookPayload::ok("r", output)).unwrap();
    assert_eq!(ours, api);
    let body = serde_json::json!({"detail": []});
    let ours: serde_json::Value = serde_json::from_slice(&webhook_body(
        "r",
        &WebhookOutcome::Error {
            error: "Invalid status code: 422".into(),
            payload: Some(body.clone()),
        },
    ))
    .unwrap();
    let api =
        serde_json::to_value(longcat_api::queue::WebhookPayload::error("r", 422, body)).unwrap();
    assert_eq!(ours, api);
}

#[tokio::test]
async fn failed_attempts_do_not_record_the_query_string() {
    // A port nobody listens on: the attempt fails with a connection error, whose text
    // (reqwest's) names the URL.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url =
        format!("http://127.0.0.1:{port}/hook/path?token=SECRET1&sig=SECRET2&SECRET3#SECRET4");
    let sender = WebhookSender::new(WebhookConfig {
        max_attempts: 1,
        ..loopback_config()
    })
    .unwrap();
    let rec = Recorder::default();
    let report = sender
        .deliver(&url, "r", None, b"{}", &rec, never_stop())
        .await;
    assert!(!report.delivered);
    let rec = rec.0.lock().unwrap();
    let error = rec[0].1.error.clone().unwrap();
    assert!(!error.contains("SECRET"), "{error}");
    assert!(
        error.contains(&format!(
            "http://127.0.0.1:{port}/hook/path?token=REDACTED&sig=REDACTED&REDACTED"
        )),
        "{error}"
    );
}

#[test]
fn redacted_urls_keep_scheme_host_and_path() {
    let r = |s: &str| redact_url(&url::Url::parse(s).unwrap()).to_string();
    assert_eq!(
        r("https://h.example:8443/a/b?k=v&x=&y"),
        "https://h.example:8443/a/b?k=REDACTED&x=REDACTED&REDACTED"
    );
    assert_eq!(r("https://h.example/a"), "https://h.example/a");
    assert_eq!(r("https://h.example/a#frag"), "https://h.example/a");
}
