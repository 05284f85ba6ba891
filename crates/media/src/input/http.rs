//! One HTTP(S) request hop: SSRF checks on literal hosts, a streamed body with a byte cap,
//! and redirects handed back to the caller (which checks every hop again).

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

use super::address::AddressPolicy;
use super::error::ImageInputError;
use super::resolve::{BlockedAddress, GuardedResolver, HostResolver, ResolveFailed};

/// What one request produced.
pub(crate) enum Hop {
    /// A redirect to this (absolute) URL.
    Redirect(Url),
    /// The final body and its declared content type.
    Body(Vec<u8>, Option<String>),
}

/// Builds the reqwest client: our guarded resolver, no proxy, no automatic redirects.
pub(crate) fn build_client(
    resolver: Arc<dyn HostResolver>,
    policy: Arc<AddressPolicy>,
    connect_timeout: Duration,
    user_agent: &str,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            inner: resolver,
            policy,
        }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .connect_timeout(connect_timeout)
        .user_agent(user_agent)
        .build()
}

/// Refuses URLs whose host is an IP literal in a blocked range (named hosts are checked
/// by the resolver, after resolution).
pub(crate) fn check_literal_host(url: &Url, policy: &AddressPolicy) -> Result<(), ImageInputError> {
    let ip: IpAddr = match url.host() {
        Some(Host::Ipv4(v4)) => v4.into(),
        Some(Host::Ipv6(v6)) => v6.into(),
        Some(Host::Domain(_)) => return Ok(()),
        None => return Err(ImageInputError::InvalidUrl("the URL has no host".into())),
    };
    policy
        .check(ip)
        .map_err(|reason| ImageInputError::BlockedAddress {
            host: url.host_str().unwrap_or_default().to_string(),
            ip,
            reason,
        })
}

/// Performs one GET of `url`, reading at most `max_bytes` of body.
pub(crate) async fn get_once(
    client: &reqwest::Client,
    url: &Url,
    max_bytes: u64,
    connect_timeout: Duration,
) -> Result<Hop, ImageInputError> {
    let mut resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| map_reqwest_error(e, connect_timeout))?;
    let status = resp.status();
    if status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .ok_or_else(|| ImageInputError::BadRedirect("no Location header".into()))?
            .to_str()
            .map_err(|_| ImageInputError::BadRedirect("Location is not text".into()))?;
        let next = url
            .join(location)
            .map_err(|e| ImageInputError::BadRedirect(format!("{location}: {e}")))?;
        return Ok(Hop::Redirect(next));
    }
    if !status.is_success() {
        return Err(ImageInputError::HttpStatus {
            status: status.as_u16(),
        });
    }
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(ImageInputError::FileTooLarge { max_bytes });
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let initial = resp.content_length().unwrap_or(64 * 1024).min(max_bytes);
    let mut body = Vec::with_capacity(usize::try_from(initial).unwrap_or(0));
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| map_reqwest_error(e, connect_timeout))?
    {
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(ImageInputError::FileTooLarge { max_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Hop::Body(body, content_type))
}

/// Turns a reqwest failure into our error, recovering the resolver's typed refusal.
fn map_reqwest_error(e: reqwest::Error, connect_timeout: Duration) -> ImageInputError {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<BlockedAddress>() {
            return ImageInputError::BlockedAddress {
                host: b.host.clone(),
                ip: b.ip,
                reason: b.reason,
            };
        }
        if let Some(r) = s.downcast_ref::<ResolveFailed>() {
            return ImageInputError::Resolve {
                host: r.host.clone(),
                reason: r.reason.clone(),
            };
        }
        source = s.source();
    }
    if e.is_timeout() {
        return ImageInputError::Timeout {
            seconds: connect_timeout.as_secs().max(1),
        };
    }
    ImageInputError::Download(error_chain(&e))
}

fn error_chain(e: &dyn StdError) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        source = s.source();
    }
    // Never echo the full URL back (it may carry tokens); reqwest puts it in parentheses.
    match msg.find(" for url (") {
        Some(i) => {
            let end = msg[i..].find(')').map(|j| i + j + 1).unwrap_or(msg.len());
            format!("{}{}", &msg[..i], &msg[end..])
        }
        None => msg,
    }
}
