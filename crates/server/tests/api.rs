//! HTTP API tests: a real server on 127.0.0.1 driven with reqwest, route by route.

mod common;

use std::time::{Duration, Instant};

use common::{input, Go, Opts, TestServer, EP, KEY, PROXY};
use serde_json::{json, Value};

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-fal-request-id")
        .expect("x-fal-request-id on every response")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_routes() {
    let s = TestServer::start(Opts::default()).await;

    let resp = s.client.get(s.url("/health")).go().await;
    assert_eq!(resp.status(), 200);
    request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["queue_depth"], 0);

    let resp = s.client.get(s.url("/openapi.json")).go().await;
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], s.url("/queue"));
    assert!(doc["paths"][format!("/{EP}")].is_object());

    let resp = s.client.get(s.url("/.well-known/jwks.json")).go().await;
    assert_eq!(resp.status(), 200);
    let jwks: Value = resp.json().await.unwrap();
    assert!(jwks["keys"].is_array());

    // A request first, so the counters exist.
    let resp = s.client.get(s.url("/metrics")).go().await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("longcat_queue_depth"), "{text}");

    // CORS preflight.
    let resp = s
        .client
        .request(reqwest::Method::OPTIONS, s.url(&format!("/{EP}")))
        .header("origin", "http://example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-fal-queue-priority",
        )
        .go()
        .await;
    assert!(resp.status().is_success());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");

    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_errors() {
    let s = TestServer::start(Opts::default()).await;
    let url = s.url(&format!("/queue/{EP}"));
    for auth in [None, Some("Key wrong"), Some("Basic abc"), Some("Key")] {
        let mut req = s.client.post(&url).json(&input());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.go().await;
        assert_eq!(resp.status(), 401, "{auth:?}");
        request_id(&resp);
        let body: Value = resp.json().await.unwrap();
        assert!(body["detail"].is_string());
    }
    // Usage needs a key too; files do not.
    let resp = s.client.get(s.url("/usage")).go().await;
    assert_eq!(resp.status(), 401);
    let resp = s.get("/usage").go().await;
    assert_eq!(resp.status(), 200);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_and_request_errors() {
    let s = TestServer::start(Opts::default()).await;
    // 422 on submit and on sync run, naming the fields.
    for path in [format!("/queue/{EP}"), format!("/{EP}")] {
        let resp = s
            .post(&path)
            .json(&json!({"num_frames": 5, "video_quality": "best"}))
            .go()
            .await;
        assert_eq!(resp.status(), 422);
        request_id(&resp);
        let body: Value = resp.json().await.unwrap();
        let detail = body["detail"].as_array().unwrap();
        let fields: Vec<&str> = detail
            .iter()
            .map(|e| e["loc"][1].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["image_url", "num_frames", "video_quality"]);
        assert_eq!(detail[0]["type"], "missing");
        assert_eq!(detail[1]["type"], "greater_than_equal");
        assert_eq!(detail[0]["loc"][0], "body");
    }
    // Malformed JSON.
    let resp = s
        .post(&format!("/queue/{EP}"))
        .header("content-type", "application/json")
        .body("{oops")
        .go()
        .await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "json_invalid");

    // Bad headers and webhook → 400 with fal's request error shape.
    for (name, value) in [
        ("x-fal-queue-priority", "urgent"),
        ("x-fal-request-timeout", "-3"),
        ("x-fal-request-timeout", "soon"),
    ] {
        let resp = s
            .post(&format!("/queue/{EP}"))
            .header(name, value)
            .json(&input())
            .go()
            .await;
        assert_eq!(resp.status(), 400, "{name}: {value}");
        assert_eq!(resp.headers()["x-fal-error-type"], "bad_request");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error_type"], "bad_request");
    }
    let resp = s
        .post(&format!("/queue/{EP}?fal_webhook=ftp%3A%2F%2Fx"))
        .json(&input())
        .go()
        .await;
    assert_eq!(resp.status(), 400);

    // Unknown endpoint, unknown request, wrong method.
    let resp = s
        .post("/queue/fal-ai/other-model")
        .json(&input())
        .go()
        .await;
    assert_eq!(resp.status(), 404);
    let resp = s
        .get("/queue/fal-ai/longcat-video/requests/does-not-exist/status")
        .go()
        .await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"], "Request not found");
    let resp = s
        .put("/queue/fal-ai/longcat-video/requests/does-not-exist/cancel")
        .go()
        .await;
    assert_eq!(resp.status(), 404);
    let resp = s.get(&format!("/{EP}")).go().await;
    assert_eq!(resp.status(), 405);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_lifecycle_result_files_and_usage() {
    let s = TestServer::start(Opts::default()).await;
    let resp = s
        .post(&format!("/queue/{EP}"))
        .header("x-fal-queue-priority", "low")
        .header("x-fal-request-timeout", "30.0")
        .header("x-fal-runner-hint", "anything")
        .json(&input())
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    let sub: Value = resp.json().await.unwrap();
    let id = sub["request_id"].as_str().unwrap().to_owned();
    assert_eq!(rid, id);
    assert_eq!(sub["gateway_request_id"], id);
    assert_eq!(sub["status"], "IN_QUEUE");
    assert!(sub["queue_position"].is_u64());
    let stripped = s.url(&format!("/queue/fal-ai/longcat-video/requests/{id}"));
    assert_eq!(sub["response_url"], stripped);
    assert_eq!(sub["status_url"], format!("{stripped}/status"));
    assert_eq!(sub["cancel_url"], format!("{stripped}/cancel"));
    assert!((sub["estimated_cost_usd"].as_f64().unwrap() - 0.025 * 17.0 / 15.0).abs() < 1e-9);

    let done = s.wait_completed(sub["status_url"].as_str().unwrap()).await;
    assert!(done.get("error").is_none(), "{done}");
    assert!(done["logs"].is_array());
    assert!(done["metrics"]["inference_time"].is_number());
    let logs = done["logs"].as_array().unwrap();
    assert!(!logs.is_empty());
    assert_eq!(logs[0]["source"], "USER");

    // Status without logs: key present, null; 200 once completed.
    let resp = s
        .get(&format!(
            "/queue/fal-ai/longcat-video/requests/{id}/status?logs=0"
        ))
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("logs").unwrap().is_null());

    // Full-id form and Host-routed queue form.
    let resp = s
        .get(&format!("/queue/{EP}/requests/{id}/status"))
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    let resp = s
        .get(&format!("/fal-ai/longcat-video/requests/{id}/status"))
        .header("host", "queue.localhost")
        .go()
        .await;
    assert_eq!(resp.status(), 200);

    // Result, twice.
    for _ in 0..2 {
        let resp = s
            .get(&format!("/queue/fal-ai/longcat-video/requests/{id}"))
            .go()
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(request_id(&resp), id);
        let out: Value = resp.json().await.unwrap();
        assert_eq!(out["seed"], 7);
        assert_eq!(out["prompt"], "a test");
        assert_eq!(out["video"]["content_type"], "video/mp4");
        let url = out["video"]["url"].as_str().unwrap().to_owned();
        assert!(url.starts_with(&s.url("/files/")), "{url}");
        let size = out["video"]["file_size"].as_u64().unwrap();

        // The file: public, typed, rangeable.
        let file = s.client.get(&url).go().await;
        assert_eq!(file.status(), 200);
        assert_eq!(file.headers()["content-type"], "video/mp4");
        assert_eq!(file.headers()["accept-ranges"], "bytes");
        let bytes = file.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, size);
        let part = s.client.get(&url).header("range", "bytes=4-11").go().await;
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes 4-11/{size}")
        );
        assert_eq!(part.bytes().await.unwrap(), bytes.slice(4..12));
        let bad = s
            .client
            .get(&url)
            .header("range", format!("bytes={size}-"))
            .go()
            .await;
        assert_eq!(bad.status(), 416);
    }
    let resp = s.client.get(s.url("/files/outputs/nope/x.mp4")).go().await;
    assert_eq!(resp.status(), 404);

    // Cancel after completion.
    let resp = s
        .put(&format!("/queue/fal-ai/longcat-video/requests/{id}/cancel"))
        .go()
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ALREADY_COMPLETED");

    // Usage of this key.
    let usage: Value = s.get("/usage").go().await.json().await.unwrap();
    assert_eq!(usage["requests"], 1);
    assert!((usage["billable_seconds"].as_f64().unwrap() - 17.0 / 15.0).abs() < 1e-9);
    assert!((usage["cost_usd"].as_f64().unwrap() - 0.025 * 17.0 / 15.0).abs() < 1e-9);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_run_and_stream() {
    let s = TestServer::start(Opts::default()).await;
    let resp = s.post(&format!("/{EP}")).json(&input()).go().await;
    assert_eq!(resp.status(), 200);
    request_id(&resp);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["seed"], 7);
    assert!(out["video"]["url"].as_str().unwrap().contains("/files/"));

    // sync_mode: the video comes back inline.
    let mut inline = input();
    inline["sync_mode"] = json!(true);
    let out: Value = s
        .post(&format!("/{EP}"))
        .json(&inline)
        .go()
        .await
        .json()
        .await
        .unwrap();
    assert!(
        out["video"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:video/mp4;base64,"),
        "{out}"
    );

    // Missing seed: one is chosen and returned.
    let mut no_seed = input();
    no_seed.as_object_mut().unwrap().remove("seed");
    let out: Value = s
        .post(&format!("/{EP}"))
        .json(&no_seed)
        .go()
        .await
        .json()
        .await
        .unwrap();
    assert!(out["seed"].is_u64());

    // Streaming run: SSE with the output as the last event.
    let resp = s.post(&format!("/{EP}/stream")).json(&input()).go().await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let last = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap();
    let out: Value = serde_json::from_str(last).unwrap();
    assert_eq!(out["seed"], 7);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_status_stream() {
    let s = TestServer::start(Opts::default()).await;
    let mut slow = input();
    slow["prompt"] = json!("slow");
    slow["num_frames"] = json!(961);
    let sub = s.submit(&slow).await;
    let id = sub["request_id"].as_str().unwrap().to_owned();

    // Status stream: JS client's Accept header; events until COMPLETED, then the body ends.
    let stream_url = s.url(&format!(
        "/queue/fal-ai/longcat-video/requests/{id}/status/stream?logs=1"
    ));
    let client = s.client.clone();
    let reader = tokio::spawn(async move {
        let resp = client
            .get(stream_url)
            .header("authorization", format!("Key {KEY}"))
            .header("accept", "application/json, text/event-stream")
            .go()
            .await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        resp.text().await.unwrap()
    });

    // Wait until it runs, then cancel.
    s.wait_status(&id, "IN_PROGRESS").await;
    // Give the stream (it polls every 200 ms) time to report IN_PROGRESS and some logs.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let resp = s
        .put(&sub["cancel_url"].as_str().unwrap().replace(&s.base, ""))
        .go()
        .await;
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "CANCELLATION_REQUESTED");

    let done = s.wait_completed(sub["status_url"].as_str().unwrap()).await;
    assert_eq!(done["error_type"], "client_cancelled");
    assert_eq!(done["error"], "Request cancelled");
    let resp = s
        .get(&format!("/queue/fal-ai/longcat-video/requests/{id}"))
        .go()
        .await;
    assert_eq!(resp.status(), 499);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error_type"], "client_cancelled");

    let text = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(events.len() >= 2, "{text}");
    assert_eq!(events.last().unwrap()["status"], "COMPLETED");
    assert!(events.iter().any(|e| e["status"] == "IN_PROGRESS"));
    // Logs are incremental: no log message appears in two events.
    let mut seen = std::collections::HashSet::new();
    for e in &events {
        for l in e["logs"].as_array().into_iter().flatten() {
            let key = format!("{}{}", l["timestamp"], l["message"]);
            assert!(seen.insert(key), "log repeated across events: {text}");
        }
    }
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_positions_backpressure_and_cancel() {
    // No workers: jobs stay queued.
    let s = TestServer::start(Opts {
        workers: 0,
        max_queue_depth: 2,
        ..Opts::default()
    })
    .await;
    let a = s.submit(&input()).await;
    let b = s.submit(&input()).await;
    assert_eq!(a["queue_position"], 0);
    assert_eq!(b["queue_position"], 1);
    let resp = s.post(&format!("/queue/{EP}")).json(&input()).go().await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));

    let resp = s
        .get(&format!(
            "/queue/fal-ai/longcat-video/requests/{}/status",
            b["request_id"].as_str().unwrap()
        ))
        .go()
        .await;
    assert_eq!(resp.status(), 202);
    let st: Value = resp.json().await.unwrap();
    assert_eq!(st["status"], "IN_QUEUE");
    assert_eq!(st["queue_position"], 1);

    // Result before completion.
    let resp = s
        .get(&format!(
            "/queue/fal-ai/longcat-video/requests/{}",
            a["request_id"].as_str().unwrap()
        ))
        .go()
        .await;
    assert_eq!(resp.status(), 400);

    // Cancel a queued job: it completes at once as cancelled; the other moves up.
    let resp = s
        .put(&format!(
            "/queue/fal-ai/longcat-video/requests/{}/cancel",
            a["request_id"].as_str().unwrap()
        ))
        .go()
        .await;
    assert_eq!(resp.status(), 202);
    let st: Value = s
        .get(&format!(
            "/queue/fal-ai/longcat-video/requests/{}/status",
            b["request_id"].as_str().unwrap()
        ))
        .go()
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(st["queue_position"], 0);
    let st: Value = s
        .get(&format!(
            "/queue/fal-ai/longcat-video/requests/{}/status",
            a["request_id"].as_str().unwrap()
        ))
        .go()
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(st["status"], "COMPLETED");
    assert_eq!(st["error_type"], "client_cancelled");

    // A start timeout that passes while queued: 504 with the user-timeout marker.
    let resp = s
        .post(&format!("/queue/{EP}"))
        .header("x-fal-request-timeout", "0.2")
        .json(&input())
        .go()
        .await;
    let sub: Value = resp.json().await.unwrap();
    let id = sub["request_id"].as_str().unwrap();
    // The start timeout fires while it waits.
    let st = s.wait_status(id, "COMPLETED").await;
    assert_eq!(st["error_type"], "request_timeout");
    let resp = s
        .get(&format!("/queue/fal-ai/longcat-video/requests/{id}"))
        .go()
        .await;
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-fal-request-timeout-type"], "user");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_proxy() {
    let s = TestServer::start(Opts::default()).await;
    let payload = b"hello upload".to_vec();

    // JS / Python-fallback flow: initiate, PUT (no auth needed), download.
    let init: Value = s
        .post("/storage/upload/initiate?storage_type=fal-cdn-v3")
        .json(&json!({"content_type": "text/plain", "file_name": "h.txt"}))
        .go()
        .await
        .json()
        .await
        .unwrap();
    let upload_url = init["upload_url"].as_str().unwrap();
    let file_url = init["file_url"].as_str().unwrap();
    let resp = s
        .client
        .put(upload_url)
        .header("content-type", "text/plain")
        .body(payload.clone())
        .go()
        .await;
    assert!(resp.status().is_success());
    let got = s.client.get(file_url).go().await;
    assert_eq!(got.headers()["content-type"], "text/plain");
    assert_eq!(got.bytes().await.unwrap().to_vec(), payload);
    // The upload URL is single-use.
    let resp = s.client.put(upload_url).body("x").go().await;
    assert_eq!(resp.status(), 403);
    // Initiate needs a key.
    let resp = s
        .client
        .post(s.url("/storage/upload/initiate"))
        .json(&json!({}))
        .go()
        .await;
    assert_eq!(resp.status(), 401);

    // Python v3 flow: token, then /files/upload with the bearer token.
    let tok: Value = s
        .post("/storage/auth/token?storage_type=fal-cdn-v3")
        .json(&json!({}))
        .go()
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["expires_at"].as_str().unwrap().ends_with("+00:00"));
    let up: Value = s
        .client
        .post(s.url("/files/upload"))
        .header(
            "authorization",
            format!("Bearer {}", tok["token"].as_str().unwrap()),
        )
        .header("content-type", "image/png")
        .header("x-fal-file-name", "a.png")
        .body(payload.clone())
        .go()
        .await
        .json()
        .await
        .unwrap();
    let access = up["access_url"].as_str().unwrap();
    assert_eq!(
        s.client
            .get(access)
            .go()
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        payload
    );

    // JS multipart: two parts, then complete.
    let init: Value = s
        .post("/storage/upload/initiate-multipart?storage_type=fal-cdn-v3")
        .json(&json!({"content_type": "application/octet-stream", "file_name": "big.bin"}))
        .go()
        .await
        .json()
        .await
        .unwrap();
    let upload_url = init["upload_url"].as_str().unwrap();
    let mut parts = vec![];
    for (n, chunk) in [(1, b"first-".to_vec()), (2, b"second".to_vec())] {
        let r: Value = s
            .client
            .put(format!("{upload_url}/{n}"))
            .body(chunk)
            .go()
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r["partNumber"], n);
        parts.push(json!({"partNumber": n, "etag": r["etag"]}));
    }
    let resp = s
        .client
        .post(format!("{upload_url}/complete"))
        .json(&json!({"parts": parts}))
        .go()
        .await;
    assert!(resp.status().is_success());
    let got = s
        .client
        .get(init["file_url"].as_str().unwrap())
        .go()
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], b"first-second");

    // Uploaded file as a model input, through the JS proxy convention.
    let init: Value = s
        .post("/storage/upload/initiate")
        .json(&json!({"content_type": "image/png", "file_name": "in.png"}))
        .go()
        .await
        .json()
        .await
        .unwrap();
    let png = {
        use base64::Engine as _;
        let uri = common::png_data_uri();
        base64::engine::general_purpose::STANDARD
            .decode(uri.split_once(',').unwrap().1)
            .unwrap()
    };
    s.client
        .put(init["upload_url"].as_str().unwrap())
        .header("content-type", "image/png")
        .body(png)
        .go()
        .await;
    let resp = s
        .post(PROXY)
        .header("x-fal-target-url", format!("https://queue.fal.run/{EP}"))
        .json(&json!({"image_url": init["file_url"], "num_frames": 17, "seed": 3}))
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    let sub: Value = resp.json().await.unwrap();
    let id = sub["request_id"].as_str().unwrap();
    let start = std::time::Instant::now();
    loop {
        let resp = s
            .get(PROXY)
            .header(
                "x-fal-target-url",
                format!("https://queue.fal.run/fal-ai/longcat-video/requests/{id}/status?logs=1"),
            )
            .go()
            .await;
        let st: Value = resp.json().await.unwrap();
        if st["status"] == "COMPLETED" {
            assert!(st.get("error").is_none(), "{st}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = s
        .get(PROXY)
        .header(
            "x-fal-target-url",
            format!("https://queue.fal.run/fal-ai/longcat-video/requests/{id}"),
        )
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(request_id(&resp), id);
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["seed"], 3);
    // Proxy errors.
    let resp = s.post(PROXY).go().await;
    assert_eq!(resp.status(), 400);
    let resp = s
        .post(PROXY)
        .header("x-fal-target-url", "https://example.com/x")
        .go()
        .await;
    assert_eq!(resp.status(), 400);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_image_is_a_422_on_image_url() {
    let s = TestServer::start(Opts::default()).await;
    let bad = json!({"image_url": "data:image/png;base64,AAAA", "num_frames": 17});
    let resp = s.post(&format!("/{EP}")).json(&bad).go().await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "image_url"]));
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_server_is_loopback_only() {
    let s = TestServer::start(Opts {
        keys: false,
        ..Opts::default()
    })
    .await;
    let resp = s
        .client
        .post(s.url(&format!("/queue/{EP}")))
        .json(&input())
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    s.handle.shutdown().await;

    let config = longcat_server::ServerConfig {
        bind: "0.0.0.0".parse().unwrap(),
        port: 0,
        ..longcat_server::ServerConfig::default()
    };
    assert!(matches!(
        longcat_server::run(config).await,
        Err(longcat_server::StartError::Config(_))
    ));
}

/// With a retention set, finished jobs lose their record and output file, and uploads go,
/// once older than it; billing usage stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_jobs_outputs_and_uploads() {
    let s = TestServer::start(Opts {
        retention: Some(Duration::from_secs(2)),
        ..Opts::default()
    })
    .await;
    let sub = s.submit(&input()).await;
    let id = sub["request_id"].as_str().unwrap().to_string();
    s.wait_completed(sub["status_url"].as_str().unwrap()).await;
    let result_url = sub["response_url"].as_str().unwrap();
    let resp = s.get(&result_url.replace(&s.base, "")).go().await;
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    let video_url = out["video"]["url"].as_str().unwrap().to_string();
    assert_eq!(s.client.get(&video_url).go().await.status(), 200);
    let upload_url = s.upload_text("old.txt", "soon gone", None).await;
    assert_eq!(s.client.get(&upload_url).go().await.status(), 200);

    // Retention 2 s, passes every second: all three are gone within a few seconds.
    let start = Instant::now();
    loop {
        let status = s.get(&result_url.replace(&s.base, "")).go().await.status();
        let video = s.client.get(&video_url).go().await.status();
        let upload = s.client.get(&upload_url).go().await.status();
        if status == 404 && video == 404 && upload == 404 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not purged: result {status}, video {video}, upload {upload}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let usage: Value = s.get("/usage").go().await.json().await.unwrap();
    assert_eq!(usage["requests"], 1, "{usage} ({id})");
    s.handle.shutdown().await;
}

/// fal's object lifecycle headers: outputs and uploads are deleted once their requested
/// lifetime runs out (the result record stays); a malformed header is a 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lifecycle_headers_expire_outputs_and_uploads() {
    let s = TestServer::start(Opts::default()).await;
    let one_second = r#"{"expiration_duration_seconds": 1, "initial_acl": {"default": "allow"}}"#;
    let resp = s
        .post(&format!("/queue/{EP}"))
        .header("x-fal-object-lifecycle-preference", one_second)
        .json(&input())
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    let sub: Value = resp.json().await.unwrap();
    s.wait_completed(sub["status_url"].as_str().unwrap()).await;
    let result_path = sub["response_url"].as_str().unwrap().replace(&s.base, "");
    let out: Value = s.get(&result_path).go().await.json().await.unwrap();
    let video_url = out["video"]["url"].as_str().unwrap().to_string();

    let lifecycle = ("x-fal-object-lifecycle", one_second);
    let upload_url = s
        .upload_text("brief.txt", "short-lived", Some(lifecycle))
        .await;

    let start = Instant::now();
    loop {
        let video = s.client.get(&video_url).go().await.status();
        let upload = s.client.get(&upload_url).go().await.status();
        if video == 404 && upload == 404 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not expired: video {video}, upload {upload}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The request itself stays retrievable.
    assert_eq!(s.get(&result_path).go().await.status(), 200);

    for bad in [
        "not json",
        r#"{"expiration_duration_seconds": 0}"#,
        r#"{"expiration_duration_seconds": "soon"}"#,
    ] {
        let resp = s
            .post(&format!("/queue/{EP}"))
            .header("x-fal-object-lifecycle-preference", bad)
            .json(&input())
            .go()
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("x-fal-object-lifecycle-preference"),
            "{body}"
        );
    }
    // No expiration in the header: kept.
    let resp = s
        .post(&format!("/queue/{EP}"))
        .header(
            "x-fal-object-lifecycle-preference",
            r#"{"initial_acl": {"default": "hide"}}"#,
        )
        .json(&input())
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    s.handle.shutdown().await;
}
