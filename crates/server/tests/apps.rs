//! The eight LongCat-Video apps over HTTP: each app's sync run, queue submit, status, result
//! and cancel under fal's URLs, per-app validation (422), pricing, `/health` and the per-app
//! OpenAPI documents.

mod common;

use common::{png_data_uri, Go, Opts, TestServer, EP};
use longcat_api::{App, Price, PriceTable};
use serde_json::{json, Value};

/// A small valid body of `app`.
fn body(app: App) -> Value {
    if app.takes_image() {
        json!({"image_url": png_data_uri(), "num_frames": 17, "prompt": "a test", "seed": 7})
    } else {
        json!({"prompt": "a test", "num_frames": 17, "seed": 7, "aspect_ratio": "9:16"})
    }
}

async fn fetch_text(s: &TestServer, url: &str) -> String {
    s.client.get(url).go().await.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_app_submits_runs_and_answers_under_fal_urls() {
    let s = TestServer::start(Opts::default()).await;
    let prices = PriceTable::default();
    for app in App::ALL {
        let id_path = app.id();
        // Queue submit, as both fal clients send it.
        let resp = s
            .post(&format!("/queue/{id_path}"))
            .json(&body(app))
            .go()
            .await;
        assert_eq!(resp.status(), 200, "{app}: {:?}", resp.text().await);
        let sub: Value = resp.json().await.unwrap();
        let id = sub["request_id"].as_str().unwrap().to_owned();
        // The clients call status/result/cancel on owner/alias only (fal-ai/longcat-video).
        let stripped = s.url(&format!("/queue/fal-ai/longcat-video/requests/{id}"));
        assert_eq!(sub["status_url"], format!("{stripped}/status"), "{app}");
        let want = prices.cost_usd(app, 17);
        let got = sub["estimated_cost_usd"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{app}: {got} != {want}");
        s.wait_completed(sub["status_url"].as_str().unwrap()).await;
        // The full app path works too.
        let resp = s
            .get(&format!("/queue/{id_path}/requests/{id}/status"))
            .go()
            .await;
        assert_eq!(resp.status(), 200, "{app}");
        // Another app's full path does not name this request.
        let other = App::ALL.into_iter().find(|a| *a != app).unwrap();
        let resp = s
            .get(&format!("/queue/{}/requests/{id}/status", other.id()))
            .go()
            .await;
        assert_eq!(resp.status(), 404, "{app} under {other}");

        let out: Value = s
            .get(&format!("/queue/fal-ai/longcat-video/requests/{id}"))
            .go()
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(out["seed"], 7);
        assert_eq!(out["prompt"], "a test");
        // The fake worker writes what it read back from the stored job: the job's endpoint
        // is the app, and the stored input is that app's (its default fps).
        let video = fetch_text(&s, out["video"]["url"].as_str().unwrap()).await;
        let fps = if app.refines() { 30 } else { 15 };
        assert!(
            video.ends_with(&format!("(17 frames at {fps} fps, {})", app.id())),
            "{app}: {video}"
        );

        // Cancel after completion: the app path routes to the same request.
        let resp = s
            .put(&format!("/queue/{id_path}/requests/{id}/cancel"))
            .go()
            .await;
        assert_eq!(resp.status(), 400, "{app}");

        // Sync run on the app path.
        let resp = s.post(&format!("/{id_path}")).json(&body(app)).go().await;
        assert_eq!(resp.status(), 200, "{app}");
        let out: Value = resp.json().await.unwrap();
        let video = fetch_text(&s, out["video"]["url"].as_str().unwrap()).await;
        assert!(video.ends_with(&format!("{})", app.id())), "{app}: {video}");
    }
    let usage: Value = s.get("/usage").go().await.json().await.unwrap();
    assert_eq!(usage["requests"], 16);
    let want: f64 = App::ALL.iter().map(|a| 2.0 * prices.cost_usd(*a, 17)).sum();
    assert!(
        (usage["cost_usd"].as_f64().unwrap() - want).abs() < 1e-9,
        "{usage}"
    );
    assert_eq!(usage["prices"], prices.to_json());
    // Per app: two requests each (queue and sync), at that app's price.
    for app in App::ALL {
        let u = &usage["apps"][app.id()];
        assert_eq!(u["requests"], 2, "{app}: {usage}");
        let want = 2.0 * prices.cost_usd(app, 17);
        assert!(
            (u["cost_usd"].as_f64().unwrap() - want).abs() < 1e-12,
            "{app}"
        );
    }
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_validates_its_own_fields() {
    let s = TestServer::start(Opts {
        workers: 0,
        ..Opts::default()
    })
    .await;
    let post = |path: String, body: Value| {
        let req = s.post(&format!("/queue/{path}")).json(&body);
        async move {
            let resp = req.go().await;
            let code = resp.status().as_u16();
            (code, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Text-to-video: no image needed, prompt required.
    let t2v = "fal-ai/longcat-video/text-to-video/720p";
    let (code, _) = post(t2v.into(), json!({"prompt": "a cat"})).await;
    assert_eq!(code, 200);
    let (code, body) = post(t2v.into(), json!({"image_url": png_data_uri()})).await;
    assert_eq!(code, 422);
    assert_eq!(
        body,
        json!({"detail": [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]})
    );
    let (code, body) = post(t2v.into(), json!({"prompt": "a", "aspect_ratio": "4:3"})).await;
    assert_eq!(code, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "aspect_ratio"]));
    assert_eq!(body["detail"][0]["type"], "enum");
    // Image-to-video 480p: the image is required.
    let (code, body) = post(
        "fal-ai/longcat-video/image-to-video/480p".into(),
        json!({"prompt": "a cat"}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "image_url"]));
    assert_eq!(body["detail"][0]["type"], "missing");
    // Distilled: 2..=16 steps; guidance_scale is not a field (ignored, like unknown ones).
    let d = "fal-ai/longcat-video/distilled/text-to-video/480p";
    let (code, body) = post(d.into(), json!({"prompt": "a", "num_inference_steps": 20})).await;
    assert_eq!(code, 422);
    assert_eq!(
        body["detail"][0],
        json!({"loc": ["body", "num_inference_steps"], "msg": "Input should be less than or equal to 16",
               "type": "less_than_equal", "input": 20, "ctx": {"le": 16}})
    );
    let (code, _) = post(d.into(), json!({"prompt": "a", "guidance_scale": 99})).await;
    assert_eq!(code, 200);
    // The same body on the base app is out of range.
    let (code, _) = post(
        "fal-ai/longcat-video/text-to-video/480p".into(),
        json!({"prompt": "a", "guidance_scale": 99}),
    )
    .await;
    assert_eq!(code, 422);
    // An app this server does not run.
    let (code, body) = post("fal-ai/longcat-video/text-to-video/1080p".into(), json!({})).await;
    assert_eq!(code, 404);
    assert!(body["detail"].as_str().unwrap().contains(EP), "{body}");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_apps_and_each_app_has_its_document() {
    let s = TestServer::start(Opts {
        workers: 0,
        ..Opts::default()
    })
    .await;
    let health: Value = s.get("/health").go().await.json().await.unwrap();
    assert_eq!(health["apps"], json!(App::ALL.map(App::id)));

    let all: Value = s.get("/openapi.json").go().await.json().await.unwrap();
    assert_eq!(all["openapi"], "3.1.0");
    for app in App::ALL {
        assert!(
            all["paths"][format!("/{}", app.id())]["post"].is_object(),
            "{app}"
        );
        for path in ["/openapi.json", "/api/openapi/queue/openapi.json"] {
            let resp = s
                .client
                .get(s.url(path))
                .query(&[("endpoint_id", app.id())])
                .go()
                .await;
            assert_eq!(resp.status(), 200, "{path} {app}");
            let doc: Value = resp.json().await.unwrap();
            assert_eq!(doc["info"]["x-fal-metadata"]["endpointId"], app.id());
            assert_eq!(doc["servers"][0]["url"], s.url("/queue"));
            let paths = doc["paths"].as_object().unwrap();
            assert_eq!(paths.len(), 4, "{app}: only this app's paths");
        }
    }
    let resp = s
        .client
        .get(s.url("/openapi.json?endpoint_id=fal-ai/flux/dev"))
        .go()
        .await;
    assert_eq!(resp.status(), 404);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_prices_reach_the_estimate() {
    let s = TestServer::start(Opts {
        workers: 0,
        configure: Some(|c| {
            c.prices
                .set(
                    "fal-ai/longcat-video/distilled/image-to-video/720p",
                    Price {
                        usd_per_second: 1.0,
                        billing_fps: 30.0,
                    },
                )
                .unwrap();
        }),
        ..Opts::default()
    })
    .await;
    let app = App::from_id("fal-ai/longcat-video/distilled/image-to-video/720p").unwrap();
    let sub = s
        .post(&format!("/queue/{}", app.id()))
        .json(&json!({"image_url": png_data_uri(), "num_frames": 30}))
        .go()
        .await;
    let sub: Value = sub.json().await.unwrap();
    // 30 frames at 15 fps are 60 frames at 30 fps: 2 s at $1.
    assert_eq!(sub["billable_seconds"], 2.0);
    assert_eq!(sub["estimated_cost_usd"], 2.0);
    let usage: Value = s.get("/usage").go().await.json().await.unwrap();
    assert_eq!(
        usage["prices"][app.id()],
        json!({"usd_per_second": 1.0, "billing_fps": 30.0})
    );
    s.handle.shutdown().await;
}
