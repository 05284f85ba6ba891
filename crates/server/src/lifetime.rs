//! fal's object lifecycle headers: how long a request's outputs and an upload live.
//!
//! `X-Fal-Object-Lifecycle-Preference` on run/submit sets how long the request's output files
//! live; `X-Fal-Object-Lifecycle` on uploads sets how long the uploaded file lives. Both carry
//! JSON like `{"expiration_duration_seconds": 86400, "initial_acl": {...}}`; only the
//! expiration is used (files here are served to whoever has the URL), other keys are ignored.
//! The lifecycle task (`lifecycle.rs`) deletes the files once their lifetime is over.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ApiError;
use crate::request::FalRequest;

/// Header on run/submit: lifetime of the output files.
pub const OUTPUT_HEADER: &str = "x-fal-object-lifecycle-preference";
/// Header on uploads: lifetime of the uploaded file.
pub const UPLOAD_HEADER: &str = "x-fal-object-lifecycle";

#[derive(Deserialize)]
struct Lifecycle {
    #[serde(default)]
    expiration_duration_seconds: Option<serde_json::Value>,
}

/// The expiration in the first of `headers` present on `req`: `None` when absent or when it
/// sets no expiration; a 400 naming the header when it is not valid.
pub fn requested_lifetime(
    req: &FalRequest,
    headers: &[&str],
) -> Result<Option<Duration>, ApiError> {
    let Some((name, value)) = headers
        .iter()
        .find_map(|h| req.header(h).map(|v| (*h, v.trim())))
    else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    let invalid = |why: &str| ApiError::bad_request(format!("invalid {name} header: {why}"));
    let parsed: Lifecycle =
        serde_json::from_str(value).map_err(|e| invalid(&format!("not a JSON object ({e})")))?;
    let seconds = match parsed.expiration_duration_seconds {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(v) => v.as_f64(),
    };
    match seconds {
        Some(s) if s.is_finite() && s >= 1.0 => Ok(Some(Duration::from_secs(s as u64))),
        _ => Err(invalid(
            "expiration_duration_seconds must be a number of seconds, at least 1",
        )),
    }
}
