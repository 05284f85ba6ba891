//! `Authorization: Key <key>` checking, and short-lived upload tokens for the Python client.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::config::{sha256, ApiKey};
use crate::error::ApiError;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Key id: usage accounting and job ownership; `None` when authentication is off.
    pub key_id: Option<String>,
    /// An admin key: sees every key's jobs and usage.
    pub admin: bool,
}

impl Caller {
    /// The caller when authentication is off (sees everything, as the only tenant).
    fn anonymous() -> Self {
        Self {
            key_id: None,
            admin: false,
        }
    }

    /// Whether this caller may see a job submitted with `owner`: its own jobs, every job
    /// for an admin key, and everything when authentication is off.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match &self.key_id {
            None => true,
            Some(key) => self.admin || owner == Some(key.as_str()),
        }
    }
}

/// Lifetime of tokens from `POST /storage/auth/token`.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Key checking plus the in-memory CDN tokens.
#[derive(Debug)]
pub struct Auth {
    keys: Vec<ApiKey>,
    tokens: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl Auth {
    /// Authentication with `keys` (empty = off).
    pub fn new(keys: Vec<ApiKey>) -> Self {
        Self {
            keys,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Whether keys are required.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks the `Authorization` header for an API key: `Key <key>` or `Bearer <key>`.
    /// Upload tokens are refused here: they open the upload routes only
    /// ([`Auth::check_upload`]).
    pub fn check(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.check_with(headers, false)
    }

    /// Like [`Auth::check`], also accepting `Bearer <upload token>` (upload routes only).
    pub fn check_upload(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.check_with(headers, true)
    }

    fn check_with(&self, headers: &HeaderMap, tokens: bool) -> Result<Caller, ApiError> {
        if !self.enabled() {
            return Ok(Caller::anonymous());
        }
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("Missing Authorization header (expected 'Key <your key>')")
            })?;
        let (scheme, credential) = value
            .split_once(' ')
            .map(|(s, c)| (s.to_ascii_lowercase(), c.trim()))
            .ok_or_else(|| {
                ApiError::unauthorized("Malformed Authorization header (expected 'Key <your key>')")
            })?;
        match scheme.as_str() {
            "key" => self.key_id(credential),
            "bearer" => match self.token_key(credential) {
                Some(key_id) if tokens => Ok(Caller {
                    key_id,
                    admin: false,
                }),
                Some(_) => Err(ApiError::unauthorized(
                    "Upload tokens only open the upload routes; use 'Key <your key>'",
                )),
                None => self.key_id(credential),
            },
            _ => Err(ApiError::unauthorized(
                "Unsupported Authorization scheme (expected 'Key <your key>')",
            )),
        }
    }

    fn key_id(&self, credential: &str) -> Result<Caller, ApiError> {
        let hash = sha256(credential);
        // Compare every key without early exit on the first differing byte.
        let found = self
            .keys
            .iter()
            .find(|k| constant_time_eq(&k.sha256, &hash));
        match found {
            Some(k) => Ok(Caller {
                key_id: Some(k.id.clone()),
                admin: k.admin,
            }),
            None => Err(ApiError::unauthorized("Invalid API key")),
        }
    }

    /// Issues an upload token for `caller`, valid for [`TOKEN_LIFETIME`].
    pub fn issue_token(&self, caller: &Caller) -> (String, Duration) {
        let token = random_token();
        let now = Instant::now();
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.retain(|_, (_, exp)| *exp > now);
            tokens.insert(token.clone(), (caller.key_id.clone(), now + TOKEN_LIFETIME));
        }
        (token, TOKEN_LIFETIME)
    }

    /// The key id behind a live token.
    fn token_key(&self, token: &str) -> Option<Option<String>> {
        let tokens = self.tokens.lock().ok()?;
        let (key, exp) = tokens.get(token)?;
        (*exp > Instant::now()).then(|| key.clone())
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn keys_and_tokens() {
        let auth = Auth::new(vec![ApiKey::from_plain("k1")]);
        let caller = auth.check(&headers("Key k1")).unwrap();
        assert!(caller.key_id.is_some());
        assert!(auth.check(&headers("key k1")).is_ok());
        assert!(auth.check(&headers("Bearer k1")).is_ok());
        assert!(auth.check(&headers("Key nope")).is_err());
        assert!(auth.check(&HeaderMap::new()).is_err());
        assert!(auth.check(&headers("Basic abc")).is_err());
        let (token, _) = auth.issue_token(&caller);
        let bearer = headers(&format!("Bearer {token}"));
        assert_eq!(auth.check_upload(&bearer).unwrap(), caller);
        assert!(auth.check(&bearer).is_err(), "upload token outside uploads");
        assert!(auth.check(&headers(&format!("Key {token}"))).is_err());
        assert!(auth
            .check_upload(&headers(&format!("Key {token}")))
            .is_err());
    }

    #[test]
    fn ownership() {
        let mut admin = ApiKey::from_plain("root");
        admin.admin = true;
        let auth = Auth::new(vec![ApiKey::from_plain("k1"), admin]);
        let k1 = auth.check(&headers("Key k1")).unwrap();
        let root = auth.check(&headers("Key root")).unwrap();
        assert!(k1.may_see(k1.key_id.as_deref()));
        assert!(!k1.may_see(Some("someone-else")));
        assert!(!k1.may_see(None));
        assert!(root.admin && root.may_see(Some("someone-else")) && root.may_see(None));
        assert!(Caller::anonymous().may_see(Some("anyone")));
    }

    #[test]
    fn disabled_auth_accepts_anything() {
        let auth = Auth::new(vec![]);
        assert_eq!(auth.check(&HeaderMap::new()).unwrap().key_id, None);
    }
}
