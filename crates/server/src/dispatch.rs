//! Parsing fal-style paths into operations.
//!
//! Sync runs and queue submits share the path (`/{endpoint_id}`); the queue is told apart by
//! a `/queue` path prefix, a `queue.` host name, or (through the proxy) the
//! `queue.fal.run` target host. Follow-up calls are `/{owner}/{alias}[/{path…}]/requests/{id}…`,
//! parsed by the last `requests/{id}` group.

/// What a fal path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FalOp {
    /// Sync run of `endpoint` (`POST /{endpoint}`).
    Run {
        /// Endpoint id, sub-path included.
        endpoint: String,
    },
    /// Streaming run (`POST /{endpoint}/stream`).
    Stream {
        /// Endpoint id, sub-path included.
        endpoint: String,
    },
    /// Queue submit (`POST /queue/{endpoint}`).
    Submit {
        /// Endpoint id, sub-path included.
        endpoint: String,
    },
    /// `GET …/requests/{id}/status`.
    Status {
        /// Owner/alias (and sub-path if given) before `requests`.
        app: String,
        /// Request id.
        id: String,
    },
    /// `GET …/requests/{id}/status/stream`.
    StatusStream {
        /// Owner/alias before `requests`.
        app: String,
        /// Request id.
        id: String,
    },
    /// `GET …/requests/{id}`.
    Result {
        /// Owner/alias before `requests`.
        app: String,
        /// Request id.
        id: String,
    },
    /// `PUT …/requests/{id}/cancel`.
    Cancel {
        /// Owner/alias before `requests`.
        app: String,
        /// Request id.
        id: String,
    },
}

/// Why a path is not a fal operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchError {
    /// Nothing matches the path.
    NotFound,
    /// The path matches but not with this method.
    MethodNotAllowed,
}

/// Parses `path` (no query) for `method`; `queue` says whether the request came in on the
/// queue side (prefix, host or proxy target).
pub fn parse(method: &str, path: &str, queue: bool) -> Result<FalOp, DispatchError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() < 2 {
        return Err(DispatchError::NotFound);
    }
    if let Some(pos) = segments.iter().rposition(|s| *s == "requests") {
        // `requests` must be preceded by at least owner/alias and followed by an id.
        if pos >= 2 && pos + 1 < segments.len() {
            let app = segments[..pos].join("/");
            let id = segments[pos + 1].to_owned();
            if !valid_id(&id) {
                return Err(DispatchError::NotFound);
            }
            let rest = &segments[pos + 2..];
            let op = match rest {
                [] => (FalOp::Result { app, id }, "GET"),
                ["status"] => (FalOp::Status { app, id }, "GET"),
                ["status", "stream"] => (FalOp::StatusStream { app, id }, "GET"),
                ["cancel"] => (FalOp::Cancel { app, id }, "PUT"),
                _ => return Err(DispatchError::NotFound),
            };
            return if op.1 == method {
                Ok(op.0)
            } else {
                Err(DispatchError::MethodNotAllowed)
            };
        }
    }
    let endpoint = segments.join("/");
    if method != "POST" {
        return Err(DispatchError::MethodNotAllowed);
    }
    if queue {
        return Ok(FalOp::Submit { endpoint });
    }
    match endpoint.strip_suffix("/stream") {
        Some(base) if base.contains('/') => Ok(FalOp::Stream {
            endpoint: base.to_owned(),
        }),
        _ => Ok(FalOp::Run { endpoint }),
    }
}

/// Request ids are URL-safe: `[A-Za-z0-9_-]`, 1..=128 characters.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `app` (the part before `requests`) names `endpoint`: either its owner/alias or the
/// full id with sub-path.
pub fn app_matches(app: &str, endpoint: &str) -> bool {
    let (owner_alias, _) = longcat_api::split_endpoint(endpoint);
    app == owner_alias || app == endpoint
}

/// Strips a leading `/queue` segment: `Some(rest)` when present.
pub fn strip_queue_prefix(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/queue")?;
    if rest.is_empty() || rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// Whether a `Host` header names the queue host (`queue.` prefix).
pub fn is_queue_host(host: Option<&str>) -> bool {
    host.map(|h| h.trim().to_ascii_lowercase().starts_with("queue."))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "fal-ai/longcat-video/image-to-video/720p";

    #[test]
    fn run_submit_stream() {
        assert_eq!(
            parse("POST", &format!("/{EP}"), false),
            Ok(FalOp::Run {
                endpoint: EP.into()
            })
        );
        assert_eq!(
            parse("POST", &format!("/{EP}/"), true),
            Ok(FalOp::Submit {
                endpoint: EP.into()
            })
        );
        assert_eq!(
            parse("POST", &format!("/{EP}/stream"), false),
            Ok(FalOp::Stream {
                endpoint: EP.into()
            })
        );
        assert_eq!(
            parse("GET", &format!("/{EP}"), false),
            Err(DispatchError::MethodNotAllowed)
        );
        assert_eq!(parse("POST", "/solo", false), Err(DispatchError::NotFound));
    }

    #[test]
    fn follow_ups_in_both_forms() {
        for app in ["fal-ai/longcat-video", EP] {
            let base = format!("/{app}/requests/abc-1");
            assert_eq!(
                parse("GET", &format!("{base}/status"), true),
                Ok(FalOp::Status {
                    app: app.into(),
                    id: "abc-1".into()
                })
            );
            assert_eq!(
                parse("GET", &format!("{base}/status/stream"), false),
                Ok(FalOp::StatusStream {
                    app: app.into(),
                    id: "abc-1".into()
                })
            );
            assert_eq!(
                parse("GET", &base, true),
                Ok(FalOp::Result {
                    app: app.into(),
                    id: "abc-1".into()
                })
            );
            assert_eq!(
                parse("PUT", &format!("{base}/cancel"), true),
                Ok(FalOp::Cancel {
                    app: app.into(),
                    id: "abc-1".into()
                })
            );
            assert_eq!(
                parse("GET", &format!("{base}/cancel"), true),
                Err(DispatchError::MethodNotAllowed)
            );
            assert!(app_matches(app, EP));
        }
        assert!(!app_matches("fal-ai/other", EP));
        assert_eq!(
            parse("GET", "/fal-ai/longcat-video/requests/abc/bogus", true),
            Err(DispatchError::NotFound)
        );
        assert_eq!(
            parse("GET", "/fal-ai/longcat-video/requests/a%2Fb", true),
            Err(DispatchError::NotFound)
        );
    }

    #[test]
    fn queue_markers() {
        assert_eq!(strip_queue_prefix("/queue/fal-ai/x"), Some("/fal-ai/x"));
        assert_eq!(strip_queue_prefix("/queuex/a"), None);
        assert_eq!(strip_queue_prefix("/fal-ai/x"), None);
        assert!(is_queue_host(Some("queue.example.com:8080")));
        assert!(!is_queue_host(Some("example.com")));
        assert!(!is_queue_host(None));
    }
}
