//! Image input over the network: only ever against a test server on 127.0.0.1. The 10.x and
//! 169.254.x cases are refused by address checks before any connection is attempted.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use longcat_media::fixtures::png_header_claiming;
use longcat_media::input::{
    AddressPolicy, BlockReason, BoxFuture, ImageInputConfig, ImageInputError, ImageLoader,
    LocalFiles, StaticResolver,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

const MAX_BYTES: u64 = 256 * 1024;

/// What the test server saw.
#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    body_bytes_sent: AtomicU64,
}

struct Server {
    port: u16,
    stats: Arc<Stats>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Starts a tiny HTTP/1.1 server on 127.0.0.1 serving the fixed routes below.
async fn start_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stats = Arc::new(Stats::default());
    let s = Arc::clone(&stats);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            s.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(sock, port, Arc::clone(&s)));
        }
    });
    Server { port, stats }
}

async fn handle(mut sock: TcpStream, port: u16, stats: Arc<Stats>) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let respond = |status: &str, headers: &str, body: &[u8]| {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    let redirect = |to: &str| respond("302 Found", &format!("Location: {to}\r\n"), b"");
    let out = match path.as_str() {
        "/ok.png" => respond(
            "200 OK",
            "Content-Type: image/png\r\n",
            &png_bytes(&quadrants(16, 8)),
        ),
        "/page.html" => respond(
            "200 OK",
            "Content-Type: text/html\r\n",
            b"<!doctype html><html><body><h1>Hello</h1></body></html>",
        ),
        "/truncated.jpg" => {
            let jpeg = jpeg_bytes(&quadrants(64, 64));
            respond(
                "200 OK",
                "Content-Type: image/jpeg\r\n",
                &jpeg[..jpeg.len() / 2],
            )
        }
        "/bomb.png" => respond(
            "200 OK",
            "Content-Type: image/png\r\n",
            &png_header_claiming(20_000, 20_000),
        ),
        "/missing.png" => respond("404 Not Found", "", b"nope"),
        "/redirect-ok" => redirect("/ok.png"),
        "/redirect-private" => redirect("http://10.0.0.1/image.png"),
        "/redirect-metadata" => redirect("http://169.254.169.254/latest/meta-data/"),
        "/redirect-named-private" => redirect(&format!("http://internal.test:{port}/ok.png")),
        "/redirect-ftp" => redirect("ftp://127.0.0.1/x.png"),
        "/loop" => redirect("/loop"),
        "/huge-declared" | "/huge-streamed" => {
            // Claims (or streams without a length) a 1 GiB body, sent lazily in 64 KiB chunks.
            let declared = path == "/huge-declared";
            let head = if declared {
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n"
            };
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![0x42u8; 64 * 1024];
            for _ in 0..(1u64 << 30) / chunk.len() as u64 {
                if sock.write_all(&chunk).await.is_err() {
                    return;
                }
                stats
                    .body_bytes_sent
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            return;
        }
        "/slow" => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if sock.write_all(b"x").await.is_err() {
                    return;
                }
            }
            return;
        }
        "/slow-headers" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        _ => respond("404 Not Found", "", b""),
    };
    let _ = sock.write_all(&out).await;
    let _ = sock.shutdown().await;
}

fn config(allow_loopback: bool) -> ImageInputConfig {
    ImageInputConfig {
        connect_timeout_s: 2,
        total_timeout_s: 2,
        max_bytes: MAX_BYTES,
        max_redirects: 3,
        policy: if allow_loopback {
            AddressPolicy::allowing(["127.0.0.1/32".parse().unwrap()])
        } else {
            AddressPolicy::default()
        },
        ..ImageInputConfig::default()
    }
}

/// A loader that resolves the test names: internal.test → 10.0.0.1, meta.test → 169.254.169.254,
/// mixed.test → 127.0.0.1 and 10.0.0.1, loop.test → 127.0.0.1.
fn loader(allow_loopback: bool) -> ImageLoader {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let resolver = StaticResolver::new()
        .with("internal.test", &[ip("10.0.0.1")])
        .with("meta.test", &[ip("169.254.169.254")])
        .with("mixed.test", &[ip("127.0.0.1"), ip("10.0.0.1")])
        .with("loop.test", &[ip("127.0.0.1")]);
    ImageLoader::with_resolver(config(allow_loopback), Arc::new(resolver)).unwrap()
}

/// Runs `load` and checks it fails quickly (no panic) with the error `check` expects.
async fn expect_error(loader: &ImageLoader, url: &str, max: Duration) -> ImageInputError {
    let start = Instant::now();
    let err = loader.load(url).await.expect_err(url);
    assert!(
        start.elapsed() <= max,
        "{url} took {:?}: {err}",
        start.elapsed()
    );
    // Every error renders as a fal validation entry on image_url.
    let detail = serde_json::to_value(err.to_detail()).unwrap();
    assert_eq!(detail["loc"], serde_json::json!(["body", "image_url"]));
    assert!(!detail["msg"].as_str().unwrap().is_empty());
    assert!(!detail["type"].as_str().unwrap().is_empty());
    err
}

const QUICK: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn loads_from_loopback_when_allowed_and_follows_redirects() {
    let server = start_server().await;
    let loader = loader(true);
    for path in ["/ok.png", "/redirect-ok"] {
        let img = loader.load(&server.url(path)).await.unwrap();
        assert_eq!((img.width, img.height), (16, 8));
        assert!(close_to(mean_rgb(&img.data, 16, 1, 1, 2), RED, 0.0));
    }
    // A named host that resolves to an allowed address works too.
    let url = format!("http://loop.test:{}/ok.png", server.port);
    assert_eq!(loader.load(&url).await.unwrap().width, 16);
}

#[tokio::test]
async fn loopback_is_refused_by_default_without_connecting() {
    let server = start_server().await;
    let strict = loader(false);
    let err = expect_error(&strict, &server.url("/ok.png"), QUICK).await;
    assert!(
        matches!(
            err,
            ImageInputError::BlockedAddress {
                reason: BlockReason::Loopback,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.error_type(), "file_download_error");
    // `localhost` through the system resolver is refused after resolution.
    let system = ImageLoader::new(config(false)).unwrap();
    let err = expect_error(
        &system,
        &format!("http://localhost:{}/ok.png", server.port),
        QUICK,
    )
    .await;
    assert!(
        matches!(
            err,
            ImageInputError::BlockedAddress {
                reason: BlockReason::Loopback,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn private_and_metadata_literals_are_refused_before_connecting() {
    let loader = loader(true);
    for (url, reason) in [
        ("http://10.0.0.1/image.png", BlockReason::Private),
        ("http://10.255.1.2:8080/x.jpg", BlockReason::Private),
        ("http://192.168.0.10/x.jpg", BlockReason::Private),
        (
            "http://169.254.169.254/latest/meta-data/",
            BlockReason::Metadata,
        ),
        ("http://169.254.10.1/x.png", BlockReason::LinkLocal),
        ("https://[::ffff:a9fe:a9fe]/x.png", BlockReason::Metadata),
        ("http://[fe80::1]/x.png", BlockReason::LinkLocal),
        ("http://224.0.0.1/x.png", BlockReason::Multicast),
        ("http://0.0.0.0/x.png", BlockReason::Unspecified),
        // Alternative spellings of 127.0.0.2 (allowed list only covers 127.0.0.1).
        ("http://2130706434/x.png", BlockReason::Loopback),
        ("http://0x7f000002/x.png", BlockReason::Loopback),
    ] {
        let err = expect_error(&loader, url, QUICK).await;
        match err {
            ImageInputError::BlockedAddress { reason: r, .. } => assert_eq!(r, reason, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn names_resolving_to_private_addresses_are_refused_before_connecting() {
    let server = start_server().await;
    let loader = loader(true);
    let port = server.port;
    for (host, ip, reason) in [
        ("internal.test", "10.0.0.1", BlockReason::Private),
        ("meta.test", "169.254.169.254", BlockReason::Metadata),
        // One bad address poisons the name, even next to an allowed one.
        ("mixed.test", "10.0.0.1", BlockReason::Private),
    ] {
        let url = format!("http://{host}:{port}/ok.png");
        let err = expect_error(&loader, &url, QUICK).await;
        assert_eq!(
            err,
            ImageInputError::BlockedAddress {
                host: host.into(),
                ip: ip.parse().unwrap(),
                reason
            },
            "{url}"
        );
    }
    let err = expect_error(&loader, &format!("http://nowhere.test:{port}/x"), QUICK).await;
    assert!(matches!(err, ImageInputError::Resolve { .. }), "{err:?}");
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn redirects_are_checked_on_every_hop() {
    let server = start_server().await;
    let loader = loader(true);
    type Check = fn(&ImageInputError) -> bool;
    let cases: [(&str, Check); 5] = [
        ("/redirect-private", |e| {
            matches!(
                e,
                ImageInputError::BlockedAddress {
                    reason: BlockReason::Private,
                    ..
                }
            )
        }),
        ("/redirect-metadata", |e| {
            matches!(
                e,
                ImageInputError::BlockedAddress {
                    reason: BlockReason::Metadata,
                    ..
                }
            )
        }),
        ("/redirect-named-private", |e| {
            matches!(
                e,
                ImageInputError::BlockedAddress {
                    reason: BlockReason::Private,
                    ..
                }
            )
        }),
        (
            "/redirect-ftp",
            |e| matches!(e, ImageInputError::UnsupportedScheme(s) if s == "ftp"),
        ),
        ("/loop", |e| {
            matches!(e, ImageInputError::TooManyRedirects { max: 3 })
        }),
    ];
    for (path, expected) in cases {
        let err = expect_error(&loader, &server.url(path), QUICK).await;
        assert!(expected(&err), "{path}: {err:?}");
    }
}

#[tokio::test]
async fn huge_bodies_are_cut_off_at_the_cap() {
    let server = start_server().await;
    let loader = loader(true);
    for path in ["/huge-declared", "/huge-streamed"] {
        let err = expect_error(&loader, &server.url(path), QUICK).await;
        assert_eq!(
            err,
            ImageInputError::FileTooLarge {
                max_bytes: MAX_BYTES
            },
            "{path}"
        );
        assert_eq!(err.error_type(), "file_too_large");
    }
    // Give the server a moment to notice the closed connections, then check it never got
    // anywhere near 1 GiB out (socket buffers allow a few MiB at most).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = server.stats.body_bytes_sent.load(Ordering::SeqCst);
    assert!(sent < 64 * 1024 * 1024, "server sent {sent} bytes");
}

#[tokio::test]
async fn slow_servers_time_out() {
    let server = start_server().await;
    let loader = loader(true);
    let limit = Duration::from_millis(3500);
    for path in ["/slow", "/slow-headers"] {
        let err = expect_error(&loader, &server.url(path), limit).await;
        assert_eq!(err, ImageInputError::Timeout { seconds: 2 }, "{path}");
    }
}

#[tokio::test]
async fn bad_content_is_a_clear_error() {
    let server = start_server().await;
    let loader = loader(true);
    let err = expect_error(&loader, &server.url("/page.html"), QUICK).await;
    assert_eq!(
        err,
        ImageInputError::UnsupportedFormat {
            content_type: Some("text/html".into())
        }
    );
    assert_eq!(err.error_type(), "image_load_error");
    let err = expect_error(&loader, &server.url("/truncated.jpg"), QUICK).await;
    assert!(matches!(err, ImageInputError::Corrupt(_)), "{err:?}");
    let err = expect_error(&loader, &server.url("/bomb.png"), QUICK).await;
    assert!(
        matches!(
            err,
            ImageInputError::ImageTooLarge {
                width: 20_000,
                height: 20_000,
                ..
            }
        ),
        "{err:?}"
    );
    let err = expect_error(&loader, &server.url("/missing.png"), QUICK).await;
    assert_eq!(err, ImageInputError::HttpStatus { status: 404 });
    let detail = serde_json::to_value(err.to_detail()).unwrap();
    assert_eq!(detail["type"], "file_download_error");
    assert_eq!(detail["ctx"]["status_code"], 404);
}

#[tokio::test]
async fn data_uris_load_and_bad_ones_fail_clearly() {
    let loader = loader(false);
    let b64 = base64::engine::general_purpose::STANDARD;
    let good = format!(
        "data:image/png;base64,{}",
        b64.encode(png_bytes(&quadrants(16, 8)))
    );
    let img = loader.load(&good).await.unwrap();
    assert_eq!((img.width, img.height), (16, 8));

    let jpeg = jpeg_bytes(&quadrants(64, 64));
    let truncated = format!(
        "data:image/jpeg;base64,{}",
        b64.encode(&jpeg[..jpeg.len() / 2])
    );
    let err = expect_error(&loader, &truncated, QUICK).await;
    assert!(matches!(err, ImageInputError::Corrupt(_)), "{err:?}");

    for bad in [
        "data:image/png;base64,@@@not-base64@@@",
        "data:image/png;base64",
        "data:image/png;base64,",
    ] {
        let err = expect_error(&loader, bad, QUICK).await;
        assert!(
            matches!(err, ImageInputError::InvalidDataUri(_)),
            "{bad}: {err:?}"
        );
        assert_eq!(err.error_type(), "value_error");
    }
    let too_big = format!(
        "data:image/png;base64,{}",
        "A".repeat(MAX_BYTES as usize * 2)
    );
    let err = expect_error(&loader, &too_big, QUICK).await;
    assert_eq!(
        err,
        ImageInputError::FileTooLarge {
            max_bytes: MAX_BYTES
        }
    );
    let html = format!("data:text/html;base64,{}", b64.encode(b"<html></html>"));
    let err = expect_error(&loader, &html, QUICK).await;
    assert!(
        matches!(err, ImageInputError::UnsupportedFormat { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_urls_and_schemes_are_refused() {
    let loader = loader(false);
    for (url, check) in [
        ("", "value_error"),
        ("not a url", "value_error"),
        ("file:///etc/passwd", "value_error"),
        ("ftp://example.com/x.png", "value_error"),
        ("gopher://example.com/", "value_error"),
    ] {
        let err = expect_error(&loader, url, QUICK).await;
        assert_eq!(err.error_type(), check, "{url}: {err:?}");
    }
}

/// Our own stored files: `https://files.example/f/<name>` served from memory.
struct MemoryFiles;

impl LocalFiles for MemoryFiles {
    fn open(&self, url: &Url) -> Option<BoxFuture<Result<Vec<u8>, String>>> {
        if url.host_str() != Some("files.example") {
            return None;
        }
        let name = url.path().trim_start_matches("/f/").to_string();
        Some(Box::pin(async move {
            match name.as_str() {
                "frame.png" => Ok(png_bytes(&quadrants(16, 8))),
                "big.png" => Ok(vec![0u8; MAX_BYTES as usize + 1]),
                _ => Err(format!("file {name} not found or expired")),
            }
        }))
    }
}

#[tokio::test]
async fn our_own_files_are_read_directly() {
    // Strict policy and a resolver that knows nothing: only the local path can succeed.
    let loader = ImageLoader::with_resolver(config(false), Arc::new(StaticResolver::new()))
        .unwrap()
        .with_local_files(Arc::new(MemoryFiles));
    let img = loader
        .load("https://files.example/f/frame.png")
        .await
        .unwrap();
    assert_eq!((img.width, img.height), (16, 8));
    let err = expect_error(&loader, "https://files.example/f/gone.png", QUICK).await;
    assert!(
        matches!(err, ImageInputError::LocalFile(ref m) if m.contains("expired")),
        "{err:?}"
    );
    let err = expect_error(&loader, "https://files.example/f/big.png", QUICK).await;
    assert_eq!(
        err,
        ImageInputError::FileTooLarge {
            max_bytes: MAX_BYTES
        }
    );
    // Anything else still goes through the network path (and fails to resolve here).
    let err = expect_error(&loader, "https://elsewhere.example/x.png", QUICK).await;
    assert!(matches!(err, ImageInputError::Resolve { .. }), "{err:?}");
}
