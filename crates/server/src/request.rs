//! [`FalRequest`]: a request reduced to what the handlers need, and the URL decoding that
//! builds one (shared by the router and the proxy).

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};

/// A request reduced to what the handlers need (the proxy builds these from its target URL).
#[derive(Debug, Clone)]
pub struct FalRequest {
    /// HTTP method.
    pub method: Method,
    /// Percent-decoded path.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Whole body.
    pub body: Bytes,
    /// Routed to the queue side by the proxy's target host.
    pub queue_host: bool,
}

impl FalRequest {
    /// First value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Parses a query string into decoded pairs.
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-decodes a URL path (invalid UTF-8 becomes U+FFFD).
pub fn percent_decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}
