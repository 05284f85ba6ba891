//! `/api/fal/proxy`: the JS client's proxy convention. The original fal URL arrives in
//! `x-fal-target-url`; we route on its host and path and never fetch it.

use crate::error::ApiError;
use crate::request::{parse_query, percent_decode, FalRequest};

/// Target header name.
pub const TARGET_HEADER: &str = "x-fal-target-url";

/// Where a proxied request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `fal.run` (sync run / stream).
    Run(String),
    /// `queue.fal.run`.
    Queue(String),
    /// `rest.fal.ai` (storage, tokens).
    Rest(String),
}

/// Classifies a target URL by host: `queue.*` → queue, `rest.*` → REST, other `*fal.run` /
/// `*fal.ai` hosts → run. Returns the target and its query string.
pub fn classify(url: &str) -> Result<(Target, Option<String>), ApiError> {
    let parsed = url::Url::parse(url)
        .map_err(|_| ApiError::bad_request(format!("{TARGET_HEADER} is not a URL: '{url}'")))?;
    let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
    let path = parsed.path().to_owned();
    let target = if host.starts_with("queue.") {
        Target::Queue(path)
    } else if host.starts_with("rest.") {
        Target::Rest(path)
    } else if host == "fal.run" || host.ends_with(".fal.run") || host.ends_with("fal.ai") {
        Target::Run(path)
    } else {
        return Err(ApiError::bad_request(format!(
            "{TARGET_HEADER} host '{host}' is not a fal host"
        )));
    };
    Ok((target, parsed.query().map(str::to_owned)))
}

/// Rewrites a proxied request into the request it would have been had it been sent to the
/// target (the router then routes that one).
pub fn retarget(mut req: FalRequest) -> Result<FalRequest, ApiError> {
    let url = req
        .header(TARGET_HEADER)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request(format!("missing {TARGET_HEADER} header")))?;
    let (target, query) = classify(&url)?;
    let path = match target {
        Target::Queue(p) => {
            req.queue_host = true;
            p
        }
        Target::Run(p) | Target::Rest(p) => p,
    };
    let decoded = percent_decode(&path);
    if decoded.starts_with("/api/fal/proxy") {
        return Err(ApiError::bad_request("proxy loop"));
    }
    req.path = decoded;
    req.query = parse_query(query.as_deref());
    req.headers.remove(TARGET_HEADER);
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_fal_hosts() {
        let (t, q) = classify("https://queue.fal.run/fal-ai/x/requests/1/status?logs=1").unwrap();
        assert_eq!(t, Target::Queue("/fal-ai/x/requests/1/status".into()));
        assert_eq!(q.as_deref(), Some("logs=1"));
        let (t, _) = classify("https://fal.run/fal-ai/x/y").unwrap();
        assert_eq!(t, Target::Run("/fal-ai/x/y".into()));
        let (t, _) =
            classify("https://rest.fal.ai/storage/upload/initiate?storage_type=x").unwrap();
        assert_eq!(t, Target::Rest("/storage/upload/initiate".into()));
        assert!(classify("https://evil.example.com/x").is_err());
        assert!(classify("nope").is_err());
    }
}
