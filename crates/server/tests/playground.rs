//! The playground page: served without a key, with its CSP, and in step with the OpenAPI
//! document it builds its form from. (The page running in a real browser is
//! tests/browser/playground_test.py.)

mod common;

use common::{Go, Opts, TestServer, EP, KEY};
use longcat_server::playground::{PAGE_CSS, PAGE_HTML, PAGE_JS};
use serde_json::Value;

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_assets_are_public_with_a_strict_csp() {
    // Keys on: the page must still load without one.
    let s = TestServer::start(Opts::default()).await;
    for path in ["/", "/playground", &format!("/playground/{EP}")] {
        let resp = s.client.get(s.url(path)).go().await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
        assert_eq!(header(&resp, "x-frame-options"), "DENY");
        let csp = header(&resp, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(resp.text().await.unwrap(), PAGE_HTML);
    }
    // No inline script or style: the CSP above would block it.
    assert!(!PAGE_HTML.contains("<script>") && !PAGE_HTML.contains("style="));

    for (path, ty, body) in [
        (
            "/playground/assets/playground.js",
            "text/javascript; charset=utf-8",
            PAGE_JS,
        ),
        (
            "/playground/assets/playground.css",
            "text/css; charset=utf-8",
            PAGE_CSS,
        ),
    ] {
        let resp = s.client.get(s.url(path)).go().await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "content-type"), ty);
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
        assert_eq!(resp.text().await.unwrap(), body);
    }
    // Only the apps this server runs; the page is GET only; the API still wants the key.
    let resp = s
        .client
        .get(s.url("/playground/fal-ai/other-app"))
        .go()
        .await;
    // (Any other GET of two segments or more is the fal router's: 405.)
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert!(!header(&resp, "content-type").starts_with("text/html"));
    let resp = s
        .client
        .get(s.url("/playground/assets/other.js"))
        .go()
        .await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let resp = s.client.get(s.url("/usage")).go().await;
    assert_eq!(resp.status(), 401);
    let resp = s
        .client
        .get(s.url("/usage"))
        .header("authorization", format!("Key {KEY}"))
        .go()
        .await;
    assert_eq!(resp.status(), 200);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csp_allows_the_public_url_origin() {
    let s = TestServer::start(Opts {
        configure: Some(|c| c.public_url = Some("https://video.example.com".into())),
        ..Opts::default()
    })
    .await;
    // The bound address: `s.url` would be the public URL, which is not ours to call.
    let page = format!("http://{}/", s.handle.addr());
    let resp = s.client.get(page).go().await;
    assert_eq!(resp.status(), 200);
    let csp = header(&resp, "content-security-policy");
    assert!(
        csp.contains("connect-src 'self' https://video.example.com"),
        "{csp}"
    );
    s.handle.shutdown().await;
}

/// The field names the page's script treats specially (its `HINTS` table).
fn hinted_fields() -> Vec<String> {
    let start = PAGE_JS
        .find("const HINTS = {")
        .expect("HINTS table in the script");
    let table = &PAGE_JS[start..];
    let table = &table[..table.find("};").expect("end of HINTS")];
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split_once(": {").map(|(k, _)| k.to_owned()))
        .collect()
}

/// The kind the page's `kindOf` renders a property as (mirrors the script: enums by `$ref`,
/// `anyOf [T, null]`, plain types); `None` where it would fall back to a JSON text box.
fn kind(doc: &Value, prop: &Value) -> Option<&'static str> {
    let resolve = |s: &Value| -> Value {
        let r = s["$ref"]
            .as_str()
            .or_else(|| s["allOf"][0]["$ref"].as_str());
        match r {
            Some(r) => doc
                .pointer(r.trim_start_matches('#'))
                .cloned()
                .expect("$ref resolves"),
            None => s.clone(),
        }
    };
    let mut s = resolve(prop);
    if let Some(any) = prop["anyOf"].as_array() {
        let real: Vec<_> = any.iter().filter(|m| m["type"] != "null").collect();
        if real.len() != 1 {
            return None;
        }
        s = resolve(real[0]);
    }
    if s["enum"].is_array() {
        return Some("enum");
    }
    match s["type"].as_str()? {
        "boolean" => Some("boolean"),
        "integer" => Some("integer"),
        "number" => Some("number"),
        "string" => Some("string"),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_matches_the_openapi_fields() {
    let s = TestServer::start(Opts::default()).await;
    let doc: Value = s
        .client
        .get(s.url("/openapi.json"))
        .go()
        .await
        .json()
        .await
        .unwrap();
    // The page finds the input schema as its script does: POST /{app}'s request body.
    let schema_ref = doc["paths"][format!("/{EP}")]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["$ref"]
        .as_str()
        .expect("POST /{app} body schema");
    let input = doc.pointer(schema_ref.trim_start_matches('#')).unwrap();
    let props = input["properties"].as_object().unwrap();
    assert!(props.len() >= 10, "{props:?}");

    let hints = hinted_fields();
    assert!(hints.contains(&"image_url".to_owned()), "{hints:?}");
    for name in &hints {
        assert!(
            props.contains_key(name),
            "the page's script names {name}, which the OpenAPI input does not have"
        );
    }
    for (name, prop) in props {
        assert!(
            kind(&doc, prop).is_some(),
            "the page would render {name} as a raw JSON box: {prop}"
        );
    }
    // The endpoint the page falls back to is the document's own.
    assert_eq!(doc["info"]["x-fal-metadata"]["endpointId"], EP);

    // `/playground/{app}` builds its form from `/openapi.json?endpoint_id={app}`: every
    // app's document has its POST body schema, and every field renders as a widget.
    for app in longcat_api::App::ALL {
        let doc: Value = s
            .client
            .get(s.url("/openapi.json"))
            .query(&[("endpoint_id", app.id())])
            .go()
            .await
            .json()
            .await
            .unwrap();
        let schema_ref = doc["paths"][format!("/{}", app.id())]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{app}: POST /{{app}} body schema"));
        let input = doc.pointer(schema_ref.trim_start_matches('#')).unwrap();
        for (name, prop) in input["properties"].as_object().unwrap() {
            assert!(
                kind(&doc, prop).is_some(),
                "{app}: {name} would be a raw JSON box"
            );
        }
        let page = s
            .client
            .get(s.url(&format!("/playground/{}", app.id())))
            .go()
            .await;
        assert_eq!(page.status(), 200, "{app}");
    }
    assert!(
        PAGE_JS.contains("\"?endpoint_id=\""),
        "the page asks for its app's document"
    );
    s.handle.shutdown().await;
}
