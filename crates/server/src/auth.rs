//! `Authorization: Key <key>` checking, and short-lived upload tokens for the Python client
//! (kept in the job store, so a token issued by one server works on every other).

use std::time::Duration;

use axum::http::HeaderMap;
use longcat_store::JobStore;

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

/// Key checking; upload tokens are looked up in the job store ([`Auth::check_upload`]).
#[derive(Debug)]
pub struct Auth {
    keys: Vec<ApiKey>,
}

/// The 401 for a credential that is neither a key nor (on the upload routes) a live token.
const INVALID_KEY: &str = "Invalid API key (upload tokens open the upload routes only)";

impl Auth {
    /// Authentication with `keys` (empty = off).
    pub fn new(keys: Vec<ApiKey>) -> Self {
        Self { keys }
    }

    /// Whether keys are required.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks the `Authorization` header for an API key: `Key <key>` or `Bearer <key>`.
    /// Upload tokens are refused here: they open the upload routes only
    /// ([`Auth::check_upload`]).
    pub fn check(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        match self.credential(headers)? {
            None => Ok(Caller::anonymous()),
            Some((_, credential)) => self.key_id(credential),
        }
    }

    /// Like [`Auth::check`], also accepting `Bearer <upload token>` with a live token from
    /// `store` (upload routes only).
    pub async fn check_upload(
        &self,
        store: &JobStore,
        headers: &HeaderMap,
    ) -> Result<Caller, ApiError> {
        let (bearer, credential) = match self.credential(headers)? {
            None => return Ok(Caller::anonymous()),
            Some(c) => c,
        };
        match self.key_id(credential) {
            Ok(caller) => Ok(caller),
            Err(e) if !bearer => Err(e),
            Err(e) => match store.upload_token(credential).await? {
                Some(token) => Ok(Caller {
                    key_id: token.key_id,
                    admin: false,
                }),
                None => Err(e),
            },
        }
    }

    /// The credential of the `Authorization` header and whether it came as `Bearer`; `None`
    /// when authentication is off.
    fn credential<'h>(&self, headers: &'h HeaderMap) -> Result<Option<(bool, &'h str)>, ApiError> {
        if !self.enabled() {
            return Ok(None);
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
            "key" => Ok(Some((false, credential))),
            "bearer" => Ok(Some((true, credential))),
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
            None => Err(ApiError::unauthorized(INVALID_KEY)),
        }
    }

    /// Issues an upload token for `caller`, valid for [`TOKEN_LIFETIME`], recorded in `store`.
    pub async fn issue_token(
        &self,
        store: &JobStore,
        caller: &Caller,
    ) -> Result<(String, Duration), ApiError> {
        let token = random_token();
        store
            .create_upload_token(&token, caller.key_id.as_deref(), TOKEN_LIFETIME)
            .await?;
        Ok((token, TOKEN_LIFETIME))
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

    #[tokio::test]
    async fn keys_and_tokens() {
        let store = JobStore::connect("sqlite::memory:").await.unwrap();
        let auth = Auth::new(vec![ApiKey::from_plain("k1")]);
        let caller = auth.check(&headers("Key k1")).unwrap();
        assert!(caller.key_id.is_some());
        assert!(auth.check(&headers("key k1")).is_ok());
        assert!(auth.check(&headers("Bearer k1")).is_ok());
        assert!(auth.check(&headers("Key nope")).is_err());
        assert!(auth.check(&HeaderMap::new()).is_err());
        assert!(auth.check(&headers("Basic abc")).is_err());
        let (token, _) = auth.issue_token(&store, &caller).await.unwrap();
        let bearer = headers(&format!("Bearer {token}"));
        assert_eq!(auth.check_upload(&store, &bearer).await.unwrap(), caller);
        assert!(auth.check(&bearer).is_err(), "upload token outside uploads");
        assert!(auth.check(&headers(&format!("Key {token}"))).is_err());
        assert!(auth
            .check_upload(&store, &headers(&format!("Key {token}")))
            .await
            .is_err());
        assert!(auth
            .check_upload(&store, &headers("Bearer not-a-token"))
            .await
            .is_err());
        // A second server's Auth over the same store accepts the token.
        let other = Auth::new(vec![ApiKey::from_plain("k1")]);
        assert_eq!(other.check_upload(&store, &bearer).await.unwrap(), caller);
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
