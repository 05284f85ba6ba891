//! Submit-time check of `fal_webhook` (the worker re-checks every resolved address when it
//! sends): an absolute http(s) URL whose host, if an IP literal, is public unless private
//! targets are allowed.

use std::net::IpAddr;

use crate::error::ApiError;

/// Validates a webhook URL; returns it normalised.
pub fn check(raw: &str, allow_private: bool) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("fal_webhook is not acceptable: {why}"));
    let url = url::Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https URLs are allowed"));
    }
    let host = url.host().ok_or_else(|| bad("the URL has no host"))?;
    let ip: Option<IpAddr> = match host {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::from([127, 0, 0, 1]))
        }
        url::Host::Domain(_) => None,
    };
    if let Some(ip) = ip {
        if !allow_private {
            if let Some(reason) = longcat_media::input::classify(ip) {
                return Err(bad(&format!("{ip} is a {reason} address")));
            }
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the URL are not allowed"));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check("https://hooks.example.com/cb?x=1", false).is_ok());
        assert!(check("ftp://example.com/", false).is_err());
        assert!(check("not a url", false).is_err());
        assert!(check("http://127.0.0.1:9/cb", false).is_err());
        assert!(check("http://localhost/cb", false).is_err());
        assert!(check("http://10.1.2.3/cb", false).is_err());
        assert!(check("http://[::1]/cb", false).is_err());
        assert!(check("http://169.254.169.254/latest", false).is_err());
        assert!(check("http://127.0.0.1:9/cb", true).is_ok());
        assert!(check("https://user:pw@example.com/", false).is_err());
    }
}
