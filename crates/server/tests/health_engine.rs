//! `/health` reports in-process workers whose model engine is lost (a panic it could not
//! recover from) as 503, so a load balancer or supervisor takes the server out.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use longcat_server::{ServerConfig, WorkerContext, Workers};
use serde_json::Value;

/// Workers whose engine is lost, or not.
struct Engine(Option<String>);

impl Workers for Engine {
    fn notify(&self) {}
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    fn engine_error(&self) -> Option<String> {
        self.0.clone()
    }
}

async fn health(lost: Option<&'static str>) -> (u16, Value) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        port: 0,
        database_url: format!("sqlite://{}", dir.path().join("jobs.db").display()),
        storage: dir.path().join("files").display().to_string(),
        spawn_workers: Some(Arc::new(move |_: WorkerContext| {
            Box::new(Engine(lost.map(String::from))) as Box<dyn Workers>
        })),
        ..ServerConfig::default()
    };
    let handle = longcat_server::run(config).await.unwrap();
    let resp = reqwest::get(format!("{}/health", handle.base_url()))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap();
    handle.shutdown().await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_engine_makes_health_503() {
    let (status, body) = health(None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let (status, body) = health(Some("rebuilding it after a panic failed: out of memory")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["engine"], "lost");
    assert!(
        body["detail"].as_str().unwrap().contains("out of memory"),
        "{body}"
    );
}
