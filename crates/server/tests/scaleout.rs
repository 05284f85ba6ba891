//! Two servers on loopback sharing one job store and one storage, as behind a load balancer:
//! every step of an upload may land on either server (fal repository protocol: initiate → PUT,
//! initiate-multipart → parts → complete; Python `fal_v3`: bearer token → upload, multipart).
//! Runs on a shared SQLite file and a local directory; on Postgres too when
//! `LONGCAT_TEST_POSTGRES_URL` is set (`scripts/with-postgres.sh`), and on an S3 bucket when
//! `LONGCAT_TEST_S3_STORAGE` and the `AWS_*` settings are (`scripts/with-s3.sh`).

use std::time::Duration;

use longcat_server::{ApiKey, ServerConfig, ServerHandle};
use serde_json::{json, Value};

const KEY: &str = "scaleout-key";

struct Pair {
    a: ServerHandle,
    b: ServerHandle,
    client: reqwest::Client,
    /// The storage both servers use, opened by the test.
    storage: longcat_storage::Storage,
    _dir: tempfile::TempDir,
}

async fn start(database_url: &str, storage: &str) -> ServerHandle {
    let config = ServerConfig {
        port: 0,
        database_url: database_url.to_owned(),
        storage: storage.to_owned(),
        spawn_workers: None,
        api_keys: vec![ApiKey::from_plain(KEY)],
        lifecycle_interval: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    longcat_server::run(config).await.expect("server starts")
}

/// Two servers on `database_url` (default: a fresh SQLite file) and `storage` (default: a
/// fresh local directory).
async fn pair(database_url: Option<String>, storage: Option<String>) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("jobs.db").display()));
    let target = storage.unwrap_or_else(|| dir.path().join("files").display().to_string());
    let a = start(&url, &target).await;
    let b = start(&url, &target).await;
    Pair {
        a,
        b,
        client: reqwest::Client::new(),
        storage: longcat_storage::Storage::from_config(&target, "http://unused").unwrap(),
        _dir: dir,
    }
}

/// A fresh folder of the S3 test bucket, or `None` (with a note) when none is configured.
fn s3_storage(test: &str) -> Option<String> {
    match std::env::var("LONGCAT_TEST_S3_STORAGE") {
        Ok(base) => Some(format!(
            "{}/scaleout-{}",
            base.trim_end_matches('/'),
            rand_suffix()
        )),
        Err(_) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "scaleout::{test}: SKIPPED (LONGCAT_TEST_S3_STORAGE not set; scripts/with-s3.sh \
                 provides one)"
            );
            None
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Whether a file exists in the shared storage.
async fn stored(p: &Pair, key: &str) -> bool {
    match p.storage.head(key).await {
        Ok(_) => true,
        Err(longcat_storage::StorageError::NotFound(_)) => false,
        Err(e) => panic!("head {key}: {e}"),
    }
}

/// `url` (issued by one server) on the other server `to`.
fn on(url: &str, to: &ServerHandle) -> String {
    let rest = url.split_once("://").unwrap().1;
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    format!("{}/{path}", to.base_url())
}

impl Pair {
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value, Vec<u8>) {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json, bytes)
    }

    fn key(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("authorization", format!("Key {KEY}"))
    }
}

async fn uploads_cross_servers(p: Pair) {
    // initiate on A, PUT on B; the file is served by both; the URL is single use everywhere.
    let (st, init, _) = p
        .send(
            p.key(
                p.client
                    .post(format!("{}/storage/upload/initiate", p.a.base_url())),
            )
            .json(&json!({"content_type": "text/plain", "file_name": "a.txt"})),
        )
        .await;
    assert_eq!(st, 200, "{init}");
    let upload_url = init["upload_url"].as_str().unwrap();
    assert!(upload_url.starts_with(p.a.base_url()), "{upload_url}");
    let (st, body, _) = p
        .send(p.client.put(on(upload_url, &p.b)).body("hello from B"))
        .await;
    assert_eq!(st, 200, "{body}");
    for server in [&p.a, &p.b] {
        let (st, _, bytes) = p
            .send(p.client.get(on(init["file_url"].as_str().unwrap(), server)))
            .await;
        assert_eq!((st, bytes.as_slice()), (200, &b"hello from B"[..]));
    }
    let (st, _, _) = p.send(p.client.put(upload_url).body("again")).await;
    assert_eq!(st, 403, "an upload URL finished on B still works on A");

    // Multipart: initiate on A; parts alternate; complete on B.
    let (st, init, _) = p
        .send(
            p.key(p.client.post(format!(
                "{}/storage/upload/initiate-multipart",
                p.a.base_url()
            )))
            .json(&json!({"content_type": "video/mp4", "file_name": "v.mp4"})),
        )
        .await;
    assert_eq!(st, 200, "{init}");
    let upload_url = init["upload_url"].as_str().unwrap().to_owned();
    let chunks: Vec<Vec<u8>> = (0..3u8)
        .map(|k| (0..(100_000 + k as usize)).map(|i| (i as u8) ^ k).collect())
        .collect();
    let mut listed = vec![];
    for (n, server) in [(2u32, &p.b), (1, &p.a), (3, &p.b)] {
        let (st, body, _) = p
            .send(
                p.client
                    .put(format!("{}/{n}", on(&upload_url, server)))
                    .body(chunks[n as usize - 1].clone()),
            )
            .await;
        assert_eq!(st, 200, "part {n}: {body}");
        listed.push(json!({"partNumber": n, "etag": body["etag"]}));
    }
    // Parts wait in the shared storage, beside the upload.
    let file_url = init["file_url"].as_str().unwrap();
    let upload_key = file_url.split("/files/").nth(1).unwrap();
    let parts = longcat_storage::upload_parts_folder(upload_key).unwrap();
    assert!(stored(&p, &format!("{parts}/1")).await && stored(&p, &format!("{parts}/3")).await);
    let (st, done, _) = p
        .send(
            p.client
                .post(format!("{}/complete", on(&upload_url, &p.b)))
                .json(&json!({ "parts": listed })),
        )
        .await;
    assert_eq!(st, 200, "{done}");
    let (st, _, bytes) = p.send(p.client.get(on(file_url, &p.a))).await;
    assert_eq!(st, 200);
    assert!(bytes == chunks.concat(), "joined in part order");
    for n in 1..=3 {
        assert!(
            !stored(&p, &format!("{parts}/{n}")).await,
            "part {n} left behind"
        );
    }
    let (st, _, _) = p
        .send(
            p.client
                .post(format!("{}/complete", on(&upload_url, &p.a)))
                .json(&json!({ "parts": [{"partNumber": 1}] })),
        )
        .await;
    assert_eq!(st, 403, "a completed upload completes again");

    // Python fal_v3: a bearer token from A uploads on B, whole and in parts.
    let (st, token, _) = p
        .send(p.key(p.client.post(format!(
            "{}/storage/auth/token?storage_type=fal-cdn-v3",
            p.a.base_url()
        ))))
        .await;
    assert_eq!(st, 200, "{token}");
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let (st, up, _) = p
        .send(
            p.client
                .post(format!("{}/files/upload", p.b.base_url()))
                .header("authorization", &bearer)
                .header("content-type", "image/png")
                .header("x-fal-file-name", "cat.png")
                .body("png bytes"),
        )
        .await;
    assert_eq!(st, 200, "{up}");
    let (st, _, bytes) = p
        .send(p.client.get(on(up["access_url"].as_str().unwrap(), &p.a)))
        .await;
    assert_eq!((st, bytes.as_slice()), (200, &b"png bytes"[..]));
    let (st, mp, _) = p
        .send(
            p.client
                .post(format!("{}/files/upload/multipart", p.b.base_url()))
                .header("authorization", &bearer)
                .header("content-type", "application/octet-stream")
                .header("x-fal-file-name", "big.bin"),
        )
        .await;
    assert_eq!(st, 200, "{mp}");
    let access = mp["access_url"].as_str().unwrap();
    let id = mp["uploadId"].as_str().unwrap();
    for (n, server) in [(1u32, &p.a), (2, &p.b)] {
        let (st, body, _) = p
            .send(
                p.client
                    .put(format!("{}/multipart/{id}/{n}", on(access, server)))
                    .header("authorization", &bearer)
                    .body(vec![n as u8; 1000]),
            )
            .await;
        assert_eq!(st, 200, "{body}");
    }
    let (st, done, _) = p
        .send(
            p.client
                .post(format!("{}/multipart/{id}/complete", on(access, &p.a)))
                .header("authorization", &bearer)
                .json(&json!({"parts": [{"partNumber": 1}, {"partNumber": 2}]})),
        )
        .await;
    assert_eq!(st, 200, "{done}");
    let (st, _, bytes) = p.send(p.client.get(on(access, &p.b))).await;
    assert_eq!(st, 200);
    assert!(bytes == [vec![1u8; 1000], vec![2u8; 1000]].concat());

    // The token opens the upload routes only, on either server.
    let (st, _, _) = p
        .send(
            p.client
                .get(format!("{}/usage", p.b.base_url()))
                .header("authorization", &bearer),
        )
        .await;
    assert_eq!(st, 401);
    let (st, _, _) = p
        .send(
            p.client
                .post(format!("{}/files/upload", p.b.base_url()))
                .header("authorization", "Bearer not-a-token")
                .body("x"),
        )
        .await;
    assert_eq!(st, 401);

    // An upload with a one-second lifetime, made on A, is deleted by the lifecycle passes.
    let (st, init, _) = p
        .send(
            p.key(
                p.client
                    .post(format!("{}/storage/upload/initiate", p.a.base_url())),
            )
            .header(
                "x-fal-object-lifecycle",
                r#"{"expiration_duration_seconds": 1}"#,
            )
            .json(&json!({"content_type": "text/plain", "file_name": "brief.txt"})),
        )
        .await;
    assert_eq!(st, 200, "{init}");
    let (st, _, _) = p
        .send(
            p.client
                .put(on(init["upload_url"].as_str().unwrap(), &p.b))
                .body("brief"),
        )
        .await;
    assert_eq!(st, 200);
    let brief = on(init["file_url"].as_str().unwrap(), &p.b);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, _) = p.send(p.client.get(&brief)).await;
        if st == 404 {
            break;
        }
        assert_eq!(st, 200);
        assert!(std::time::Instant::now() < deadline, "upload never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.a.shutdown().await;
    p.b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_cross_servers_on_sqlite() {
    uploads_cross_servers(pair(None, None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_cross_servers_on_s3() {
    if let Some(storage) = s3_storage("uploads_cross_servers_on_s3") {
        uploads_cross_servers(pair(None, Some(storage)).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_cross_servers_on_postgres() {
    let Ok(url) = std::env::var("LONGCAT_TEST_POSTGRES_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "scaleout::uploads_cross_servers_on_postgres: SKIPPED (LONGCAT_TEST_POSTGRES_URL \
             not set; scripts/with-postgres.sh provides one)"
        );
        return;
    };
    // The throwaway server's database: the uploads use fresh random tokens and keys.
    uploads_cross_servers(pair(Some(url), None).await).await;
}

/// The parts of a multipart upload nobody completes are deleted by the lifecycle pass of
/// either server once their folder's expiry (scheduled at initiate, after `PARTS_TTL`) is due;
/// a fresh upload's parts stay; the abandoned upload can no longer be completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_multipart_parts_expire() {
    let p = pair(None, None).await;
    let db = format!("sqlite://{}", p._dir.path().join("jobs.db").display());
    let store = longcat_store::JobStore::connect(&db).await.unwrap();
    let mut uploads = vec![];
    for _ in 0..2 {
        let (st, init, _) = p
            .send(
                p.key(p.client.post(format!(
                    "{}/storage/upload/initiate-multipart",
                    p.a.base_url()
                )))
                .json(&json!({"file_name": "x.bin"})),
            )
            .await;
        assert_eq!(st, 200, "{init}");
        let upload_url = init["upload_url"].as_str().unwrap().to_owned();
        let key = init["file_url"]
            .as_str()
            .unwrap()
            .split("/files/")
            .nth(1)
            .unwrap()
            .to_owned();
        let (st, _, _) = p
            .send(
                p.client
                    .put(format!("{}/1", on(&upload_url, &p.b)))
                    .body("part"),
            )
            .await;
        assert_eq!(st, 200);
        let folder = longcat_storage::upload_parts_folder(&key).unwrap();
        assert!(stored(&p, &format!("{folder}/1")).await);
        uploads.push((upload_url, folder));
    }
    // Scheduled for deletion after PARTS_TTL, not before.
    let ttl = chrono::Duration::from_std(longcat_server::uploads::PARTS_TTL).unwrap();
    let soon = chrono::Utc::now() + ttl - chrono::Duration::seconds(60);
    assert!(store
        .due_file_expirations(soon, 10)
        .await
        .unwrap()
        .is_empty());
    let after = chrono::Utc::now() + ttl + chrono::Duration::seconds(60);
    assert_eq!(
        store.due_file_expirations(after, 10).await.unwrap().len(),
        2
    );
    // Time passes for the first upload only: its parts go, the other's stay.
    let (abandoned, folder) = &uploads[0];
    store
        .expire_files_after(folder, Duration::ZERO)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stored(&p, &format!("{folder}/1")).await {
        assert!(
            std::time::Instant::now() < deadline,
            "parts still at {folder}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored(&p, &format!("{}/1", uploads[1].1)).await);
    // The parts' storage is not served as files.
    let (st, _, _) = p
        .send(
            p.client
                .get(format!("{}/files/{}/1", p.a.base_url(), uploads[1].1)),
        )
        .await;
    assert_eq!(st, 404);
    let (st, _, _) = p
        .send(
            p.client
                .post(format!("{}/complete", on(abandoned, &p.b)))
                .json(&json!({"parts": [{"partNumber": 1}]})),
        )
        .await;
    assert_eq!(st, 400, "completing without the parts");
    p.a.shutdown().await;
    p.b.shutdown().await;
}
