//! `data:` URIs (RFC 2397): `data:[<media type>][;base64],<payload>`.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use super::error::ImageInputError;

/// Standard alphabet, padding optional (some clients strip it).
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// URL-safe alphabet, padding optional.
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded data URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUri {
    /// The declared media type (may be empty).
    pub media_type: String,
    /// The payload bytes.
    pub data: Vec<u8>,
}

/// Whether `s` starts with the `data:` scheme (case-insensitive).
pub fn is_data_uri(s: &str) -> bool {
    s.len() >= 5 && s.as_bytes()[..5].eq_ignore_ascii_case(b"data:")
}

/// Parses and decodes a data URI, refusing payloads that would exceed `max_bytes`.
pub fn parse_data_uri(uri: &str, max_bytes: u64) -> Result<DataUri, ImageInputError> {
    let bad = |m: &str| ImageInputError::InvalidDataUri(m.to_string());
    if !is_data_uri(uri) {
        return Err(bad("it does not start with 'data:'"));
    }
    let rest = &uri[5..];
    let (meta, payload) = rest
        .split_once(',')
        .ok_or_else(|| bad("missing ',' between the header and the data"))?;
    let mut params = meta.split(';').map(str::trim);
    let media_type = params.next().unwrap_or("").to_ascii_lowercase();
    let is_base64 = params.any(|p| p.eq_ignore_ascii_case("base64"));

    let data = if is_base64 {
        // Allow whitespace/newlines and percent-encoded base64 characters.
        let payload = if payload.contains('%') {
            percent_decode(payload).map_err(|m| bad(&m))?
        } else {
            payload.as_bytes().to_vec()
        };
        let cleaned: Vec<u8> = payload
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if cleaned.is_empty() {
            return Err(bad("the data is empty"));
        }
        let decoded_len = cleaned.len() as u64 / 4 * 3;
        if decoded_len > max_bytes {
            return Err(ImageInputError::FileTooLarge { max_bytes });
        }
        STANDARD_LENIENT
            .decode(&cleaned)
            .or_else(|_| URL_SAFE_LENIENT.decode(&cleaned))
            .map_err(|e| bad(&format!("invalid base64 ({e})")))?
    } else {
        percent_decode(payload).map_err(|m| bad(&m))?
    };
    if data.is_empty() {
        return Err(bad("the data is empty"));
    }
    if data.len() as u64 > max_bytes {
        return Err(ImageInputError::FileTooLarge { max_bytes });
    }
    Ok(DataUri { media_type, data })
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at position {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_with_and_without_padding() {
        let d = parse_data_uri("data:image/png;base64,aGVsbG8=", 100).unwrap();
        assert_eq!(d.media_type, "image/png");
        assert_eq!(d.data, b"hello");
        let d = parse_data_uri("DATA:image/png;base64,aGVsbG8", 100).unwrap();
        assert_eq!(d.data, b"hello");
        let d = parse_data_uri("data:;base64,aGVs\nbG8=", 100).unwrap();
        assert_eq!(d.data, b"hello");
    }

    #[test]
    fn decodes_percent_encoded_payload() {
        let d = parse_data_uri("data:text/plain,a%20b", 100).unwrap();
        assert_eq!(d.data, b"a b");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "data:image/png;base64",
            "data:image/png;base64,",
            "data:image/png;base64,!!!!",
            "data:text/plain,%zz",
            "http://x",
        ] {
            let e = parse_data_uri(bad, 100).unwrap_err();
            assert!(
                matches!(e, ImageInputError::InvalidDataUri(_)),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn enforces_size_cap_before_decoding() {
        let big = format!("data:image/png;base64,{}", "A".repeat(4000));
        assert_eq!(
            parse_data_uri(&big, 1000).unwrap_err(),
            ImageInputError::FileTooLarge { max_bytes: 1000 }
        );
    }
}
