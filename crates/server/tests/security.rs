//! Security tests against the real server on 127.0.0.1: per-key ownership, upload-token
//! scope, host handling for returned URLs, stored-file headers, abandoned status streams, and
//! request bodies (authorized from headers, bounded, timed out).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{input, Go, Opts, TestServer, ADMIN_KEY, EP, KEY, KEY2};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUESTS: &str = "/queue/fal-ai/longcat-video/requests";

fn with_key(b: reqwest::RequestBuilder, key: &str) -> reqwest::RequestBuilder {
    b.header("authorization", format!("Key {key}"))
}

async fn status_and_body(resp: reqwest::Response) -> (u16, String) {
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_logs_streams_cancel_and_usage_belong_to_their_key() {
    let s = TestServer::start(Opts::default()).await;
    let sub = s.submit(&input()).await;
    let id = sub["request_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "COMPLETED").await;
    let unknown = format!("{REQUESTS}/00000000-0000-0000-0000-000000000000");

    // Another key: every follow-up route answers exactly as for an unknown id.
    for suffix in ["/status", "/status?logs=1", "/status/stream", ""] {
        let theirs = with_key(
            s.client.get(s.url(&format!("{REQUESTS}/{id}{suffix}"))),
            KEY2,
        )
        .go()
        .await;
        let none = with_key(s.client.get(s.url(&format!("{unknown}{suffix}"))), KEY2)
            .go()
            .await;
        let (theirs, none) = (status_and_body(theirs).await, status_and_body(none).await);
        assert_eq!(theirs.0, 404, "{suffix}: {}", theirs.1);
        assert_eq!(theirs, none, "{suffix}: same answer as an unknown id");
    }
    // The owner and the admin key see it.
    let own = s.get(&format!("{REQUESTS}/{id}")).go().await;
    assert_eq!(own.status(), 200);
    let admin = with_key(s.client.get(s.url(&format!("{REQUESTS}/{id}"))), ADMIN_KEY)
        .go()
        .await;
    assert_eq!(admin.status(), 200);

    // Cancel: another key gets the 404 and the job keeps running; the owner can cancel.
    let slow = s
        .submit(&json!({"image_url": common::png_data_uri(), "prompt": "slow"}))
        .await;
    let slow_id = slow["request_id"].as_str().unwrap();
    let cancel = format!("{REQUESTS}/{slow_id}/cancel");
    let resp = with_key(s.client.put(s.url(&cancel)), KEY2).go().await;
    assert_eq!(resp.status(), 404);
    let status: Value = s
        .get(&format!("{REQUESTS}/{slow_id}/status"))
        .go()
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(
        status["status"], "COMPLETED",
        "not cancelled by another key"
    );
    let resp = s.put(&cancel).go().await;
    assert_eq!(resp.status(), 202);

    // Usage: each key its own; only the admin key may ask for others'.
    let usage = |key: &'static str, query: &'static str| {
        with_key(s.client.get(s.url(&format!("/usage{query}"))), key).go()
    };
    let mine: Value = usage(KEY, "").await.json().await.unwrap();
    assert_eq!(mine["requests"], 1);
    let theirs: Value = usage(KEY2, "").await.json().await.unwrap();
    assert_eq!(theirs["requests"], 0);
    let key1_id = mine["key_id"].as_str().unwrap().to_owned();
    assert_eq!(usage(KEY2, "?key_id=*").await.status(), 403);
    let all: Value = usage(ADMIN_KEY, "?key_id=*").await.json().await.unwrap();
    assert_eq!(all["requests"], 1);
    let one = with_key(
        s.client.get(s.url(&format!("/usage?key_id={key1_id}"))),
        ADMIN_KEY,
    )
    .go()
    .await;
    assert_eq!(one.json::<Value>().await.unwrap()["requests"], 1);
    s.handle.shutdown().await;

    // Without keys (loopback only) everything stays visible, as before.
    let open = TestServer::start(Opts {
        keys: false,
        ..Opts::default()
    })
    .await;
    let sub = open.submit(&input()).await;
    let id = sub["request_id"].as_str().unwrap();
    open.wait_status(id, "COMPLETED").await;
    let resp = open
        .client
        .get(open.url(&format!("{REQUESTS}/{id}")))
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    let resp = open.client.get(open.url("/usage?key_id=*")).go().await;
    assert_eq!(resp.json::<Value>().await.unwrap()["requests"], 1);
    open.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_tokens_open_only_the_upload_routes() {
    let s = TestServer::start(Opts::default()).await;
    let tok: Value = s
        .post("/storage/auth/token?storage_type=fal-cdn-v3")
        .json(&json!({}))
        .go()
        .await
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", tok["token"].as_str().unwrap());
    // It uploads.
    let resp = s
        .client
        .post(s.url("/files/upload"))
        .header("authorization", &bearer)
        .header("content-type", "image/png")
        .body("png bytes")
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    // It is no API key: submit, status, result, cancel, usage, a new token are 401.
    let sub = s.submit(&input()).await;
    let id = sub["request_id"].as_str().unwrap();
    let calls = [
        s.client.post(s.url(&format!("/queue/{EP}"))).json(&input()),
        s.client.post(s.url(&format!("/{EP}"))).json(&input()),
        s.client.get(s.url(&format!("{REQUESTS}/{id}/status"))),
        s.client.get(s.url(&format!("{REQUESTS}/{id}"))),
        s.client.put(s.url(&format!("{REQUESTS}/{id}/cancel"))),
        s.client.get(s.url("/usage")),
        s.client.post(s.url("/storage/auth/token")).json(&json!({})),
    ];
    for call in calls {
        let resp = call.header("authorization", &bearer).go().await;
        let url = resp.url().clone();
        assert_eq!(resp.status(), 401, "{url}");
    }
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returned_urls_use_only_allowed_hosts() {
    let s = TestServer::start(Opts {
        workers: 0,
        ..Opts::default()
    })
    .await;
    let submit = |host: Option<&str>, forwarded: Option<&str>| {
        let mut b = s.post(&format!("/queue/{EP}")).json(&input());
        if let Some(h) = host {
            b = b.header("host", h);
        }
        if let Some(f) = forwarded {
            b = b
                .header("x-forwarded-host", f)
                .header("x-forwarded-proto", "https");
        }
        b.go()
    };
    // Another Host: a clear 421, no URL built on it.
    let resp = submit(Some("evil.example.com"), None).await;
    assert_eq!(resp.status(), 421);
    assert!(resp.text().await.unwrap().contains("--allowed-hosts"));
    let resp = s
        .post("/storage/upload/initiate")
        .header("host", "evil.example.com")
        .json(&json!({"content_type": "image/png"}))
        .go()
        .await;
    assert_eq!(resp.status(), 421);
    // Forwarded headers are ignored unless trusted.
    let body: Value = submit(None, Some("evil.example.com"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["status_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/queue/", s.base)),
        "{body}"
    );
    // Loopback names are fine.
    let port = s.handle.addr().port();
    let body: Value = submit(Some(&format!("localhost:{port}")), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(body["status_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("http://localhost:{port}/queue/")));
    s.handle.shutdown().await;

    // Behind a trusted proxy with a configured host.
    let s = TestServer::start(Opts {
        workers: 0,
        configure: Some(|c| {
            c.trust_forwarded_headers = true;
            c.allowed_hosts = vec!["Video.Example.com".into()];
        }),
        ..Opts::default()
    })
    .await;
    let submit = |forwarded: &str| {
        s.post(&format!("/queue/{EP}"))
            .json(&input())
            .header("x-forwarded-host", forwarded)
            .header("x-forwarded-proto", "https")
            .go()
    };
    let body: Value = submit("video.example.com").await.json().await.unwrap();
    assert!(
        body["status_url"]
            .as_str()
            .unwrap()
            .starts_with("https://video.example.com/queue/fal-ai/longcat-video/requests/"),
        "{body}"
    );
    assert_eq!(submit("evil.example.com").await.status(), 421);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_files_never_render_on_the_api_origin() {
    let s = TestServer::start(Opts::default()).await;
    let s = &s;
    let upload = |content_type: &'static str, file_name: &'static str| async move {
        let init: Value = s
            .post("/storage/upload/initiate")
            .json(&json!({"content_type": content_type, "file_name": file_name}))
            .go()
            .await
            .json()
            .await
            .unwrap();
        let put = s
            .client
            .put(init["upload_url"].as_str().unwrap())
            .header("content-type", content_type)
            .body("<script>alert(1)</script>")
            .go()
            .await;
        assert!(put.status().is_success());
        s.client.get(init["file_url"].as_str().unwrap()).go().await
    };
    for (content_type, file_name, inline) in [
        ("text/html", "f.html", false),
        ("image/svg+xml", "f.svg", false),
        ("application/octet-stream", "f", false),
        ("image/png", "f.png", true),
        ("video/mp4", "f.mp4", true),
    ] {
        let resp = upload(content_type, file_name).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{content_type}");
        assert_eq!(
            h["content-security-policy"], "default-src 'none'; sandbox",
            "{content_type}"
        );
        assert_eq!(
            h.get("content-disposition").map(|v| v.to_str().unwrap()),
            (!inline).then_some("attachment"),
            "{content_type}"
        );
    }
}

/// A process-wide gauge from `/metrics` (NaN when absent).
async fn gauge(s: &TestServer, name: &str) -> f64 {
    let text = s.get("/metrics").go().await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// The server-wide count of status-stream tasks.
async fn active_streams(s: &TestServer) -> f64 {
    gauge(s, "longcat_status_streams_active").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_status_streams_stop_polling() {
    // No workers: the job stays queued, so only the client leaving can end its streams.
    let s = TestServer::start(Opts {
        workers: 0,
        ..Opts::default()
    })
    .await;
    let sub = s.submit(&input()).await;
    let id = sub["request_id"].as_str().unwrap();
    const STREAMS: usize = 8;
    let mut open = Vec::new();
    for _ in 0..STREAMS {
        let mut resp = s
            .get(&format!("{REQUESTS}/{id}/status/stream?logs=1"))
            .go()
            .await;
        assert_eq!(resp.status(), 200);
        let first = resp.chunk().await.unwrap().expect("first event");
        assert!(String::from_utf8_lossy(&first).contains("IN_QUEUE"));
        open.push(resp);
    }
    assert_eq!(active_streams(&s).await, STREAMS as f64);
    drop(open);
    let start = Instant::now();
    loop {
        let n = active_streams(&s).await;
        if n == 0.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{n} status streams still polling after their clients left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.handle.shutdown().await;
}

/// Sends raw bytes on a fresh connection.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// The response's status code (0 when the connection closed without one), waiting at most
/// `limit` (a bound, not a timing assertion: the test fails if nothing comes).
async fn status_line(stream: &mut TcpStream, limit: Duration) -> u16 {
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(2).any(|w| w == b"\r\n") {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("the server answered or closed the connection");
    let text = String::from_utf8_lossy(&got);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn post_head(auth: Option<&str>, length: u64) -> Vec<u8> {
    let auth = auth
        .map(|k| format!("Authorization: Key {k}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /queue/{EP} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         {auth}Content-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_authorized_bounded_and_timed_out() {
    const BOUND: Duration = Duration::from_secs(20);
    let s = TestServer::start(Opts {
        workers: 0,
        configure: Some(|c| {
            c.header_read_timeout = Duration::from_secs(1);
            c.body_read_timeout = Duration::from_secs(2);
        }),
        ..Opts::default()
    })
    .await;
    let addr = s.handle.addr();
    // No key: refused from the headers, the 50 MB body is never waited for.
    let mut c = raw(addr, &post_head(None, 50_000_000)).await;
    assert_eq!(status_line(&mut c, BOUND).await, 401);
    let mut c = raw(addr, &post_head(Some("wrong"), 50_000_000)).await;
    assert_eq!(status_line(&mut c, BOUND).await, 401);
    // A declared length over the limit: 413 before reading.
    let mut c = raw(addr, &post_head(Some(KEY), 200 * 1024 * 1024)).await;
    assert_eq!(status_line(&mut c, BOUND).await, 413);
    // Headers that never finish: the connection is closed.
    let mut c = raw(addr, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n").await;
    assert_eq!(status_line(&mut c, BOUND).await, 0);
    // A body that never finishes: 408.
    let mut c = raw(addr, &post_head(Some(KEY), 100)).await;
    c.write_all(b"{\"image_url\":").await.unwrap();
    assert_eq!(status_line(&mut c, BOUND).await, 408);

    s.handle.shutdown().await;

    // One large-body slot: B waits for it while A holds it, and is read once A finished.
    let s = TestServer::start(Opts {
        workers: 0,
        configure: Some(|c| c.max_large_bodies = 1),
        ..Opts::default()
    })
    .await;
    let addr = s.handle.addr();
    let wait_gauge = |name: &'static str, want: f64| {
        let s = &s;
        async move {
            let start = Instant::now();
            loop {
                let v = gauge(s, name).await;
                if v == want {
                    return;
                }
                assert!(start.elapsed() < BOUND, "{name} stayed {v}, never {want}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let large: usize = 2 * 1024 * 1024;
    let mut a = raw(addr, &post_head(Some(KEY), large as u64)).await;
    a.write_all(&[b' '; 1000]).await.unwrap();
    wait_gauge("longcat_large_bodies_reading", 1.0).await;
    let b = tokio::spawn(async move {
        let mut b = raw(addr, &post_head(Some(KEY), large as u64)).await;
        b.write_all(&vec![b' '; large]).await.unwrap();
        status_line(&mut b, BOUND).await
    });
    wait_gauge("longcat_large_bodies_waiting", 1.0).await;
    assert_eq!(gauge(&s, "longcat_large_bodies_reading").await, 1.0);
    // A finishes its body (whitespace: a 422), which frees the slot for B.
    a.write_all(&vec![b' '; large - 1000]).await.unwrap();
    assert_eq!(status_line(&mut a, BOUND).await, 422);
    assert_eq!(b.await.unwrap(), 422);
    wait_gauge("longcat_large_bodies_waiting", 0.0).await;
    s.handle.shutdown().await;
}
