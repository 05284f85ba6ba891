//! The safety checker through the real `longcat serve` on 127.0.0.1 (tiny model, real NudeNet
//! model, policy flagging the benign `FACE_FEMALE` so that scikit-image's astronaut portrait is
//! flagged content): sync run and queue answer fal's 422 `content_policy_violation`,
//! `enable_safety_checker: false` and benign input complete, and a server whose model is
//! missing refuses requests that ask for the check. (The output check is driven end to end in
//! `crates/worker/tests/safety.rs`: the tiny model's output cannot be made to show a face.)
//!
//! Needs the model and the test venv's scikit-image; without them each test prints SKIPPED,
//! unless `LONGCAT_REQUIRE_SAFETY_TESTS=1` (set by `scripts/test.sh`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use longcat_safety::test_assets::{assets, TestAssets};
use serde_json::{json, Value};

const EP: &str = "fal-ai/longcat-video/image-to-video/720p";

struct Server {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(model: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_longcat"))
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--public-url",
            &base,
            "--workers",
            "1",
            "--allow-private-image-urls",
        ])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("db").display()))
        .arg("--storage")
        .arg(dir.path().join("files"))
        .arg("--safety-model")
        .arg(model)
        .args(["--safety-labels", "FACE_FEMALE"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start longcat serve");
    let server = Server { child, base, dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    while curl(&server, "GET", "/health", None).0 != 200 {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// `(status, body)` of a request sent with curl (the body goes through a file: data URIs are
/// large).
fn curl(server: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let out_file = server.dir.path().join("response.json");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code}", "-X", method])
        .arg(format!("{}{path}", server.base));
    if let Some(body) = body {
        let in_file = server.dir.path().join("request.json");
        std::fs::write(&in_file, body.to_string()).unwrap();
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", in_file.display()));
    }
    let out = cmd.output().expect("run curl");
    let status: u16 = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    let body = std::fs::read(&out_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&out_file);
    (status, body)
}

fn data_uri(path: &Path) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .arg(path)
        .output()
        .expect("run base64");
    assert!(out.status.success());
    format!(
        "data:image/png;base64,{}",
        String::from_utf8(out.stdout).unwrap()
    )
}

fn small(image_url: &str) -> Value {
    json!({"image_url": image_url, "prompt": "a person", "num_frames": 17,
           "num_inference_steps": 8, "num_refine_inference_steps": 8, "seed": 3})
}

fn assert_violation(body: &Value, image_url: &str) {
    let item = &body["detail"][0];
    assert_eq!(item["type"], "content_policy_violation", "{body}");
    assert_eq!(item["loc"], json!(["body", "image_url"]));
    assert_eq!(item["categories"], json!(["face_female"]));
    let echoed = item["input"].as_str().unwrap();
    assert!(image_url.starts_with(&echoed[..64]), "{}", &echoed[..80]);
}

#[test]
fn flagged_input_is_a_422_on_sync_run_and_queue_and_the_switch_off_runs() {
    let Some(TestAssets {
        model,
        images: data,
        ..
    }) = assets("safety API test")
    else {
        return;
    };
    let server = start(&model);
    let portrait = data_uri(&data.join("astronaut.png"));

    // Sync run: 422 with the violation.
    let (status, body) = curl(&server, "POST", &format!("/{EP}"), Some(&small(&portrait)));
    assert_eq!(status, 422, "{body}");
    assert_violation(&body, &portrait);

    // Queue: the status says content_policy_violation, the result is the same 422.
    let (status, sub) = curl(
        &server,
        "POST",
        &format!("/queue/{EP}"),
        Some(&small(&portrait)),
    );
    assert_eq!(status, 200, "{sub}");
    let id = sub["request_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status_body = loop {
        let (_, st) = curl(
            &server,
            "GET",
            &format!("/queue/fal-ai/longcat-video/requests/{id}/status"),
            None,
        );
        if st["status"] == "COMPLETED" {
            break st;
        }
        assert!(Instant::now() < deadline, "stuck: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status_body["error_type"], "content_policy_violation",
        "{status_body}"
    );
    let (status, body) = curl(
        &server,
        "GET",
        &format!("/queue/fal-ai/longcat-video/requests/{id}"),
        None,
    );
    assert_eq!(status, 422, "{body}");
    assert_violation(&body, &portrait);

    // The switch off skips the check; a benign image passes it (input and output checked).
    let mut off = small(&portrait);
    off["enable_safety_checker"] = json!(false);
    let (status, body) = curl(&server, "POST", &format!("/{EP}"), Some(&off));
    assert_eq!(status, 200, "{body}");
    assert!(body["video"]["url"].is_string(), "{body}");
    let coffee = data_uri(&data.join("coffee.png"));
    let (status, body) = curl(&server, "POST", &format!("/{EP}"), Some(&small(&coffee)));
    assert_eq!(status, 200, "{body}");

    // Flagged requests are not billed: only the two completed runs count.
    let (status, usage) = curl(&server, "GET", "/usage", None);
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["requests"], 2, "{usage}");
}

#[test]
fn missing_model_refuses_requests_that_ask_for_the_check() {
    let Some(TestAssets { images: data, .. }) = assets("safety API test") else {
        return;
    };
    let server = start(Path::new("/nonexistent/nudenet-320n.onnx"));
    let coffee = data_uri(&data.join("coffee.png"));
    let (status, body) = curl(&server, "POST", &format!("/{EP}"), Some(&small(&coffee)));
    assert_eq!(status, 500, "{body}");
    let text = body.to_string();
    assert!(text.contains("safety checker"), "{text}");
    assert!(text.contains("/nonexistent/nudenet-320n.onnx"), "{text}");
    let mut off = small(&coffee);
    off["enable_safety_checker"] = json!(false);
    let (status, body) = curl(&server, "POST", &format!("/{EP}"), Some(&off));
    assert_eq!(status, 200, "{body}");
}
