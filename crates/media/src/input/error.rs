//! Typed failures of image input, each mapping to one fal validation error on `image_url`.

use std::net::IpAddr;

use serde::Serialize;

use super::address::BlockReason;

/// The request field every image input error is reported on.
pub const IMAGE_URL_FIELD: &str = "image_url";

/// Why an `image_url` could not be turned into an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageInputError {
    /// Not a parseable URL.
    #[error("image_url is not a valid URL: {0}")]
    InvalidUrl(String),
    /// A scheme other than http, https or data.
    #[error("image_url scheme '{0}' is not supported (use https, http or a data URI)")]
    UnsupportedScheme(String),
    /// A malformed `data:` URI.
    #[error("image_url data URI is invalid: {0}")]
    InvalidDataUri(String),
    /// The host (or a redirect target) resolves to an address we refuse to contact.
    #[error("image_url host '{host}' resolves to {ip}, a {reason} address, which is not allowed")]
    BlockedAddress {
        /// Host name or literal from the URL.
        host: String,
        /// The refused address.
        ip: IpAddr,
        /// Its class.
        reason: BlockReason,
    },
    /// DNS lookup failed.
    #[error("could not resolve the image_url host '{host}': {reason}")]
    Resolve {
        /// Host name.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// Connection or transfer failure.
    #[error("could not download image_url: {0}")]
    Download(String),
    /// The server took too long.
    #[error("downloading image_url timed out after {seconds} s")]
    Timeout {
        /// The limit that was hit.
        seconds: u64,
    },
    /// Too many redirects.
    #[error("image_url redirected more than {max} times")]
    TooManyRedirects {
        /// Allowed redirects.
        max: usize,
    },
    /// Redirect without a usable `Location`.
    #[error("image_url redirect is invalid: {0}")]
    BadRedirect(String),
    /// A non-success HTTP status.
    #[error("downloading image_url failed with HTTP status {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// The body exceeds the byte cap.
    #[error("image_url file is larger than the {max_bytes} byte limit")]
    FileTooLarge {
        /// The cap in bytes.
        max_bytes: u64,
    },
    /// One of our own stored files could not be read.
    #[error("image_url file could not be read: {0}")]
    LocalFile(String),
    /// The body is empty.
    #[error("image_url file is empty")]
    Empty,
    /// Not a JPEG, PNG, WebP or GIF.
    #[error("image_url is not a supported image (JPEG, PNG, WebP or GIF){}", describe_content_type(.content_type))]
    UnsupportedFormat {
        /// Content type the server declared, if any.
        content_type: Option<String>,
    },
    /// Too many pixels (decompression-bomb guard).
    #[error("image is {width}x{height} pixels; at most {max_pixels} pixels are allowed")]
    ImageTooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The pixel cap.
        max_pixels: u64,
    },
    /// A side is longer than the side limit.
    #[error("image is {width}x{height} pixels; no side may be longer than {max_side} pixels")]
    SideTooLong {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The side limit.
        max_side: u32,
    },
    /// Too narrow or too wide.
    #[error(
        "image is {width}x{height} pixels; its aspect ratio must be between 1:{max_ratio} and {max_ratio}:1"
    )]
    AspectRatio {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The largest long-side / short-side ratio.
        max_ratio: u32,
    },
    /// The file is damaged or cannot be decoded.
    #[error("image could not be decoded: {0}")]
    Corrupt(String),
}

fn describe_content_type(content_type: &Option<String>) -> String {
    match content_type {
        Some(ct) => format!("; the server sent '{ct}'"),
        None => String::new(),
    }
}

/// One entry of fal's 422 `detail` array.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationDetail {
    /// `["body", "image_url"]`.
    pub loc: Vec<String>,
    /// Human message.
    pub msg: String,
    /// Machine code, e.g. `file_download_error`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// Structured context, when there is some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<serde_json::Value>,
}

impl ImageInputError {
    /// The request field at fault: always `image_url`.
    pub fn field(&self) -> &'static str {
        IMAGE_URL_FIELD
    }

    /// fal's machine-readable error type.
    pub fn error_type(&self) -> &'static str {
        use ImageInputError::*;
        match self {
            InvalidUrl(_) | UnsupportedScheme(_) | InvalidDataUri(_) => "value_error",
            BlockedAddress { .. }
            | Resolve { .. }
            | Download(_)
            | Timeout { .. }
            | TooManyRedirects { .. }
            | BadRedirect(_)
            | HttpStatus { .. }
            | LocalFile(_) => "file_download_error",
            FileTooLarge { .. } => "file_too_large",
            ImageTooLarge { .. } | SideTooLong { .. } => "image_too_large",
            AspectRatio { .. } => "value_error",
            Empty | UnsupportedFormat { .. } | Corrupt(_) => "image_load_error",
        }
    }

    /// Human-readable message for the user.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// Structured context (limits) for the error, when it has any.
    pub fn ctx(&self) -> Option<serde_json::Value> {
        match self {
            ImageInputError::FileTooLarge { max_bytes } => {
                Some(serde_json::json!({ "max_size": max_bytes }))
            }
            ImageInputError::ImageTooLarge { max_pixels, .. } => {
                Some(serde_json::json!({ "max_pixels": max_pixels }))
            }
            ImageInputError::SideTooLong { max_side, .. } => {
                Some(serde_json::json!({ "max_height": max_side, "max_width": max_side }))
            }
            ImageInputError::AspectRatio { max_ratio, .. } => {
                Some(serde_json::json!({ "max_aspect_ratio": max_ratio }))
            }
            ImageInputError::HttpStatus { status } => {
                Some(serde_json::json!({ "status_code": status }))
            }
            _ => None,
        }
    }

    /// The error as one fal/Pydantic validation detail entry.
    pub fn to_detail(&self) -> ValidationDetail {
        ValidationDetail {
            loc: vec!["body".into(), self.field().into()],
            msg: self.message(),
            error_type: self.error_type().into(),
            ctx: self.ctx(),
        }
    }
}
