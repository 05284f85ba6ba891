//! The playground: one static page (HTML + script + style, embedded in the binary) served at
//! `GET /` and `GET /playground/{app id}`. It builds its form at load time from the server's
//! own `/openapi.json`, uploads images through the storage upload routes, submits through the
//! queue, follows the SSE status stream and shows the result. Public (no key), like
//! `/openapi.json`: the page asks for the key itself and sends it as `Authorization: Key …`.
//!
//! The page is served with a strict `Content-Security-Policy` ([`PAGE_CSP`]): scripts and
//! styles only from this origin (no inline code), requests only to this origin (and the
//! `--public-url` origin when set), media from anywhere over http(s) (outputs may live in a
//! bucket), no frames, no form posts, no embedding.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The page.
pub const PAGE_HTML: &str = include_str!("../static/playground.html");
/// Its script (a plain ES2020 file, no build step).
pub const PAGE_JS: &str = include_str!("../static/playground.js");
/// Its style sheet.
pub const PAGE_CSS: &str = include_str!("../static/playground.css");

/// Where the page's assets are served (the page links them by these paths).
pub const ASSET_PREFIX: &str = "/playground/assets/";

/// `Content-Security-Policy` of the page, without the `connect-src` part that depends on
/// `--public-url` (see [`page_csp`]).
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob: http: https:; media-src 'self' data: blob: http: https:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What a GET path of the playground names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// The page (for `/` or `/playground/{app}`).
    Page,
    /// `playground.js`.
    Script,
    /// `playground.css`.
    Style,
}

/// The playground asset named by `segments` (the path split on `/`, empties dropped), if any.
/// `/playground/{app}` only for the apps this server runs ([`longcat_api::App::ALL`]); other
/// paths are not the playground's.
pub fn asset_for(segments: &[&str]) -> Option<Asset> {
    match segments {
        [] | ["playground"] => Some(Asset::Page),
        ["playground", "assets", "playground.js"] => Some(Asset::Script),
        ["playground", "assets", "playground.css"] => Some(Asset::Style),
        ["playground", app @ ..] => {
            let app = app.join("/");
            longcat_api::App::from_id(&app).map(|_| Asset::Page)
        }
        _ => None,
    }
}

/// The page's full CSP: [`PAGE_CSP`] plus `connect-src 'self'` and the origin of
/// `public_url` (upload URLs and status URLs are built on it).
pub fn page_csp(public_url: Option<&str>) -> String {
    let mut connect = "connect-src 'self'".to_owned();
    if let Some(origin) = public_url
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin())
        .filter(|o| o.is_tuple())
    {
        connect.push(' ');
        connect.push_str(&origin.ascii_serialization());
    }
    format!("{PAGE_CSP}; {connect}")
}

/// Serves `asset` with its type and the security headers.
pub fn serve(state: &Arc<AppState>, asset: Asset) -> Response {
    let (body, content_type) = match asset {
        Asset::Page => (PAGE_HTML, "text/html; charset=utf-8"),
        Asset::Script => (PAGE_JS, "text/javascript; charset=utf-8"),
        Asset::Style => (PAGE_CSS, "text/css; charset=utf-8"),
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Embedded in the binary: a new binary may change it, so revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if asset == Asset::Page {
        match HeaderValue::from_str(&page_csp(state.public_url.as_deref())) {
            Ok(v) => {
                headers.insert(header::CONTENT_SECURITY_POLICY, v);
            }
            Err(_) => {
                // Only a public URL with odd bytes gets here; fall back to same-origin only.
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'",
                    ),
                );
            }
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(asset_for(&[]), Some(Asset::Page));
        assert_eq!(asset_for(&["playground"]), Some(Asset::Page));
        let app: Vec<&str> = longcat_api::ENDPOINT_ID.split('/').collect();
        let mut page = vec!["playground"];
        page.extend(&app);
        assert_eq!(asset_for(&page), Some(Asset::Page));
        for app in longcat_api::App::ALL {
            let mut page = vec!["playground"];
            page.extend(app.id().split('/'));
            assert_eq!(asset_for(&page), Some(Asset::Page), "{app}");
        }
        assert_eq!(asset_for(&["playground", "fal-ai", "other"]), None);
        assert_eq!(
            asset_for(&["playground", "assets", "playground.js"]),
            Some(Asset::Script)
        );
        assert_eq!(asset_for(&["playground", "assets", "x.js"]), None);
        assert_eq!(asset_for(&["health"]), None);
    }

    #[test]
    fn csp_names_the_public_origin() {
        assert!(page_csp(None).ends_with("connect-src 'self'"));
        assert!(page_csp(Some("https://video.example.com/base/"))
            .ends_with("connect-src 'self' https://video.example.com"));
        assert!(!PAGE_CSP.contains("unsafe"));
    }

    #[test]
    fn page_links_its_assets() {
        for asset in ["playground.js", "playground.css"] {
            assert!(
                PAGE_HTML.contains(&format!("{ASSET_PREFIX}{asset}")),
                "{asset}"
            );
        }
    }
}
