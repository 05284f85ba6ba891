//! `GET`/`HEAD /files/{key}`: stored files, public (no key), with single `Range` support.
//! Uploads and outputs are served with `X-Content-Type-Options: nosniff`, a
//! `Content-Security-Policy` that runs nothing, and as attachments unless their type is one of
//! [`INLINE_TYPES`], so an uploaded HTML or SVG file never renders on the API origin.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::error::ApiError;
use crate::request::FalRequest;
use crate::state::AppState;

/// Media types served inline: the videos we produce and the images we decode.
pub const INLINE_TYPES: &[&str] = &[
    "video/mp4",
    "video/webm",
    "image/gif",
    "image/png",
    "image/jpeg",
    "image/webp",
];

/// `Content-Security-Policy` of every stored file: no scripts, styles, frames or requests,
/// sandboxed.
pub const FILE_CSP: &str = "default-src 'none'; sandbox";

/// Whether a stored content type is served inline (else as an attachment).
pub fn served_inline(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    INLINE_TYPES.contains(&essence.as_str())
}

/// A parsed `Range: bytes=…` header (one range only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive `b`) or `bytes=a-` (`None`).
    From(u64, Option<u64>),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// Parses a `Range` header; `None` for absent, multi-range or malformed (served whole, as
/// RFC 9110 allows).
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return b.parse().ok().map(ByteRange::Suffix);
    }
    let start = a.parse().ok()?;
    let end = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    if let Some(e) = end {
        if e < start {
            return None;
        }
    }
    Some(ByteRange::From(start, end))
}

/// A range that lies outside the file (answered with 416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Resolves a range against the file size: `Ok(None)` = whole file.
pub fn resolve_range(
    range: Option<ByteRange>,
    size: u64,
) -> Result<Option<Range<u64>>, Unsatisfiable> {
    match range {
        None => Ok(None),
        Some(ByteRange::From(start, end)) => {
            if start >= size {
                return Err(Unsatisfiable);
            }
            let end = end.map(|e| e.min(size - 1)).unwrap_or(size - 1);
            Ok(Some(start..end + 1))
        }
        Some(ByteRange::Suffix(n)) => {
            if n == 0 || size == 0 {
                return Err(Unsatisfiable);
            }
            Ok(Some(size.saturating_sub(n)..size))
        }
    }
}

/// Serves one stored file.
pub async fn serve(state: &Arc<AppState>, req: &FalRequest) -> Result<Response, ApiError> {
    let key = req
        .path
        .trim_start_matches('/')
        .trim_start_matches("files/");
    let meta = state.storage.head(key).await?;
    let range = req.header("range").and_then(parse_range);
    let resolved = match resolve_range(range, meta.size) {
        Ok(r) => r,
        Err(Unsatisfiable) => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let head_only = req.method == Method::HEAD;
    let (status, span) = match &resolved {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.clone()),
        None => (StatusCode::OK, 0..meta.size),
    };
    let body = if head_only || meta.size == 0 {
        Body::empty()
    } else {
        let content = state.storage.get_range(key, resolved.clone()).await?;
        Body::from_stream(content.body.map(|r| r.map_err(std::io::Error::other)))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&meta.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(span.end - span.start),
    );
    if resolved.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{}",
            span.start,
            span.end.saturating_sub(1),
            meta.size
        )) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if let Some(tag) = &meta.e_tag {
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", tag.trim_matches('"'))) {
            h.insert(header::ETAG, v);
        }
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    if !served_inline(&meta.content_type) {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_types() {
        assert!(served_inline("video/mp4"));
        assert!(served_inline("Image/PNG; charset=binary"));
        assert!(!served_inline("text/html"));
        assert!(!served_inline("image/svg+xml"));
        assert!(!served_inline("application/octet-stream"));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Some(ByteRange::From(0, Some(9))));
        assert_eq!(parse_range("bytes=5-"), Some(ByteRange::From(5, None)));
        assert_eq!(parse_range("bytes=-3"), Some(ByteRange::Suffix(3)));
        assert_eq!(parse_range("bytes=0-1,4-5"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=9-2"), None);
        assert_eq!(
            resolve_range(parse_range("bytes=0-9"), 100),
            Ok(Some(0..10))
        );
        assert_eq!(
            resolve_range(parse_range("bytes=90-200"), 100),
            Ok(Some(90..100))
        );
        assert_eq!(
            resolve_range(parse_range("bytes=-10"), 100),
            Ok(Some(90..100))
        );
        assert_eq!(
            resolve_range(parse_range("bytes=-500"), 100),
            Ok(Some(0..100))
        );
        assert_eq!(
            resolve_range(parse_range("bytes=100-"), 100),
            Err(Unsatisfiable)
        );
        assert_eq!(resolve_range(None, 100), Ok(None));
    }
}
