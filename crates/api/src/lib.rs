//! fal wire types for the eight LongCat-Video apps (`fal-ai/longcat-video/...`, see
//! [`App`]); `fal-ai/longcat-video/image-to-video/720p` is the default.
//!
//! * [`AppInput`] (each app's fields, fal's defaults and ranges) with [`parse_input_for`],
//!   which applies Pydantic's lax coercions and reports every problem as fal's 422 body
//!   ([`ValidationErrors`]);
//! * [`I2vOutput`] (`video: File`, `seed`, `prompt`);
//! * [`RequestError`], fal's `{"detail", "error_type"}` infrastructure error;
//! * queue wire types ([`queue`]): status bodies, log entries, submit response, webhook payload;
//! * pricing per app ([`PriceTable`]) and the OpenAPI documents ([`openapi_document_for_app`],
//!   [`openapi_document_for`] for all apps).

pub mod cost;
pub mod error;
pub mod failure;
pub mod input;
pub mod openapi;
pub mod output;
pub mod parse;
pub mod queue;
pub mod request;
pub mod validation;

pub use cost::{billable_seconds, cost_usd, Price, PriceTable};
pub use error::{error_types, RequestError};
pub use failure::{failure_report, FailureReport};
pub use input::{AppInput, I2vInput};
pub use longcat_core::App;
pub use longcat_media::File;
pub use openapi::{openapi_document, openapi_document_for, openapi_document_for_app};
pub use output::I2vOutput;
pub use parse::{parse_input, parse_input_for, parse_value, parse_value_for};
pub use request::random_seed;
pub use validation::{ValidationError, ValidationErrors};

/// The fal endpoint id this server has always implemented (the default app).
pub const ENDPOINT_ID: &str = App::DEFAULT.id();

/// Splits an endpoint id into `(owner/alias, sub-path)` as the fal clients do
/// (`workflows`/`comfy` namespaces keep three segments), e.g.
/// `fal-ai/longcat-video/image-to-video/720p` → `("fal-ai/longcat-video", "image-to-video/720p")`.
pub fn split_endpoint(endpoint_id: &str) -> (&str, &str) {
    let trimmed = endpoint_id.trim_matches('/');
    let head_segments = match trimmed.split('/').next() {
        Some("workflows") | Some("comfy") => 3,
        _ => 2,
    };
    let mut end = 0;
    for (count, (i, _)) in trimmed.match_indices('/').enumerate() {
        if count + 1 == head_segments {
            end = i;
            break;
        }
    }
    if end == 0 {
        (trimmed, "")
    } else {
        (&trimmed[..end], &trimmed[end + 1..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_endpoint_ids() {
        assert_eq!(
            split_endpoint(ENDPOINT_ID),
            ("fal-ai/longcat-video", "image-to-video/720p")
        );
        assert_eq!(split_endpoint("fal-ai/flux"), ("fal-ai/flux", ""));
        assert_eq!(
            split_endpoint("workflows/me/flow/x"),
            ("workflows/me/flow", "x")
        );
        assert_eq!(split_endpoint("solo"), ("solo", ""));
    }
}
