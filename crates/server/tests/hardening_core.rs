//! Input limits and upload hygiene against the real server on 127.0.0.1: over-long prompts
//! are 422s, abandoned multipart parts expire, multipart assembly streams. (Extreme images
//! need the real image loader: `crates/worker/tests/pool.rs`.)

mod common;

use common::*;
use serde_json::{json, Value};

/// Over-long prompts are refused at submit with fal's `string_too_long`, and the 422 echoes
/// only the start of the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_prompt_is_a_422_with_a_short_echo() {
    let s = TestServer::start(Opts::default()).await;
    let long = "word ".repeat(1 << 20);
    for field in ["prompt", "negative_prompt"] {
        let mut body = input();
        body[field] = json!(long);
        let resp = s.post(&format!("/queue/{EP}")).json(&body).go().await;
        assert_eq!(resp.status(), 422);
        let text = resp.text().await.unwrap();
        assert!(text.len() < 4096, "422 body is {} bytes", text.len());
        let body: Value = serde_json::from_str(&text).unwrap();
        let d = &body["detail"][0];
        assert_eq!(d["loc"], json!(["body", field]));
        assert_eq!(d["type"], "string_too_long");
        assert_eq!(d["ctx"]["max_length"], 8192);
    }
    s.handle.shutdown().await;
}

/// Initiates a JS-style multipart upload; returns its upload URL and file URL.
async fn initiate_multipart(s: &TestServer) -> (String, String) {
    let init: Value = s
        .post("/storage/upload/initiate-multipart?storage_type=fal-cdn-v3")
        .json(&json!({"content_type": "application/octet-stream", "file_name": "big.bin"}))
        .go()
        .await
        .json()
        .await
        .unwrap();
    (
        init["upload_url"].as_str().unwrap().to_owned(),
        init["file_url"].as_str().unwrap().to_owned(),
    )
}

async fn put_part(s: &TestServer, upload_url: &str, n: u32, bytes: Vec<u8>) -> Value {
    let resp = s
        .client
        .put(format!("{upload_url}/{n}"))
        .body(bytes)
        .go()
        .await;
    assert!(resp.status().is_success(), "part {n}: {}", resp.status());
    let r: Value = resp.json().await.unwrap();
    json!({"partNumber": n, "etag": r["etag"]})
}

/// `complete` assembles several parts (one larger than the storage buffer) into the right
/// bytes, in part-number order (that the parts are removed: tests/scaleout.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_complete_streams_the_parts_in_order() {
    let s = TestServer::start(Opts::default()).await;
    let (upload_url, file_url) = initiate_multipart(&s).await;
    let sizes = [9 << 20, 3 << 20, 12345];
    let chunks: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| ((i * 7 + k * 13) % 251) as u8).collect())
        .collect();
    let mut parts = vec![];
    // Uploaded out of order; assembled by number.
    for n in [3u32, 1, 2] {
        parts.push(put_part(&s, &upload_url, n, chunks[n as usize - 1].clone()).await);
    }
    let resp = s
        .client
        .post(format!("{upload_url}/complete"))
        .json(&json!({"parts": parts}))
        .go()
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let out: Value = resp.json().await.unwrap();
    let total: usize = sizes.iter().sum();
    assert_eq!(out["file_size"], total as u64);
    let got = s.client.get(&file_url).go().await.bytes().await.unwrap();
    assert_eq!(got.len(), total);
    assert!(got[..] == chunks.concat()[..], "assembled bytes differ");
    s.handle.shutdown().await;
}
