//! Flask's own client-side session: the signed cookie of `SecureCookieSessionInterface`.
//!
//! The cookie is itsdangerous' `URLSafeTimedSerializer` with Flask's settings: the salt
//! `cookie-session`, `hmac` key derivation and SHA-1, so a value is
//! `PAYLOAD.TIMESTAMP.SIGNATURE`, where the payload is base64url of the session dict in
//! Flask's [tagged JSON](crate::tagged), or `.` and base64url of it zlib-compressed. The
//! cookie is signed, not encrypted: the browser can read it, as with Flask.
//!
//! The timestamp is the last write; a cookie older than the permanent session lifetime
//! (`PERMANENT_SESSION_LIFETIME`, 31 days by default), or dated in the future, is refused,
//! as Flask refuses it. Keys work as in Flask 3.1: new cookies are signed with the current
//! `SECRET_KEY` only, and cookies signed with one of `SECRET_KEY_FALLBACKS` are accepted
//! (and re-issued under the current key), which avoids the stale-key signing of
//! CVE-2025-47278.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cloakroom::record::saturating_add;
use cloakroom::{CookieCodec, OpenedCookie, Record, SessionConfig, StoreKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::dict;
use crate::itsdangerous::{decode_timestamp, encode_timestamp, Signer};
use crate::tagged;

/// Flask's salt for session cookies.
pub const SALT: &str = "cookie-session";
/// Flask's default `PERMANENT_SESSION_LIFETIME`: 31 days.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(31 * 24 * 3600);
/// Flask's default `SESSION_COOKIE_NAME`.
pub const DEFAULT_COOKIE_NAME: &str = "session";
/// No cookie value longer than this is even decoded.
const MAX_VALUE_CHARS: usize = 4096;
/// A compressed payload may not inflate past this (no decompression bombs).
const MAX_PAYLOAD: usize = 64 * 1024;

/// Why Flask's keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The environment variable is not set, or empty.
    #[error("set {0} to the Flask app's SECRET_KEY")]
    Missing(String),
}

/// Flask's cookie session format, as a [`CookieCodec`]: give it to
/// [`SessionManager::cookie_codec`](cloakroom::SessionManager::cookie_codec) with
/// [`session_config`](Self::session_config).
///
/// ```
/// use std::sync::Arc;
/// use cloakroom::{SessionConfig, SessionLayer, SessionManager};
/// use cloakroom_flask::FlaskCookie;
///
/// let flask = FlaskCookie::new("the Flask app's SECRET_KEY").with_fallbacks(["its previous key"]);
/// let config = flask.session_config(SessionConfig::default());
/// let manager = SessionManager::cookie_codec(Arc::new(flask), config).unwrap();
/// let layer = SessionLayer::from_manager(Arc::new(manager));
/// # let _: axum::Router = axum::Router::new().layer(layer);
/// ```
#[derive(Clone)]
pub struct FlaskCookie {
    /// Kept to derive the signer again when fallbacks are added; never printed.
    current: Vec<u8>,
    signer: Signer,
    lifetime: Duration,
    user_key: String,
    compress: bool,
}

impl std::fmt::Debug for FlaskCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlaskCookie")
            .field("signer", &self.signer)
            .field("lifetime", &self.lifetime)
            .field("user_key", &self.user_key)
            .field("compress", &self.compress)
            .finish_non_exhaustive()
    }
}

impl FlaskCookie {
    /// Flask's format under `secret_key` (Flask's `SECRET_KEY`).
    pub fn new(secret_key: impl AsRef<[u8]>) -> Self {
        let current = secret_key.as_ref().to_vec();
        Self {
            signer: Signer::new(SALT, &current, []),
            current,
            lifetime: DEFAULT_LIFETIME,
            user_key: dict::DEFAULT_USER_KEY.to_owned(),
            compress: false,
        }
    }

    /// The key in `variable` (Flask's `SECRET_KEY`), and the fallbacks in
    /// `{variable}_FALLBACKS` (comma-separated; Flask's `SECRET_KEY_FALLBACKS`), if set.
    pub fn from_env(variable: &str) -> Result<Self, KeyError> {
        let current = std::env::var(variable)
            .ok()
            .filter(|key| !key.is_empty())
            .ok_or_else(|| KeyError::Missing(variable.to_owned()))?;
        let fallbacks = std::env::var(format!("{variable}_FALLBACKS")).unwrap_or_default();
        Ok(Self::new(current).with_fallbacks(fallbacks.split(',').filter(|key| !key.is_empty())))
    }

    /// Accepts cookies signed with these older keys (Flask's `SECRET_KEY_FALLBACKS`);
    /// new cookies are signed with the current key only. Replaces earlier fallbacks.
    pub fn with_fallbacks<K: AsRef<[u8]>>(
        mut self,
        fallbacks: impl IntoIterator<Item = K>,
    ) -> Self {
        let fallbacks: Vec<K> = fallbacks.into_iter().collect();
        self.signer = Signer::new(SALT, &self.current, fallbacks.iter().map(AsRef::as_ref));
        self
    }

    /// Flask's `PERMANENT_SESSION_LIFETIME` (default 31 days): cookies older are refused.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The session key holding the user id (default `_user_id`, as Flask-Login keeps it).
    pub fn with_user_key(mut self, key: impl Into<String>) -> Self {
        self.user_key = key.into();
        self
    }

    /// Whether to compress payloads when that makes them shorter, as Flask does. Default
    /// **off**, as for cloakroom's own cookies: a compressed cookie's length tells how
    /// well its contents compress (CRIME/BREACH, see [`cloakroom::sealed`]). Flask reads
    /// either; compressed cookies always open.
    pub fn with_compression(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// The lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// `base` with what Flask's cookie needs: the cookie name `session` (Flask's
    /// `SESSION_COOKIE_NAME`) and an idle timeout equal to the lifetime (every write
    /// re-dates the cookie, as Flask does). Flask has no absolute timeout; cloakroom keeps
    /// `base`'s for the sessions it creates.
    pub fn session_config(&self, base: SessionConfig) -> SessionConfig {
        let cookie = base.cookie.clone().with_name(DEFAULT_COOKIE_NAME);
        let expiry = base.expiry.clone().with_idle_timeout(Some(self.lifetime));
        base.with_cookie(cookie).with_expiry(expiry)
    }

    /// Signs a Flask session dict (values in tagged JSON) as Flask would at `at`.
    pub fn encode_at(
        &self,
        session: &Map<String, Value>,
        at: OffsetDateTime,
    ) -> Result<String, serde_json::Error> {
        let json = tagged::to_flask_json(&tagged::escape_top(session.clone()))?;
        let payload = self.payload(json.as_bytes());
        let stamped = format!("{payload}.{}", encode_timestamp(at.unix_timestamp()));
        Ok(self.signer.sign(&stamped))
    }

    /// The payload, compressed when that pays; never past what [`decode_at`](Self::decode_at)
    /// inflates, so that a payload too large for the cookie stays too large to fit.
    fn payload(&self, json: &[u8]) -> String {
        if self.compress && json.len() <= MAX_PAYLOAD {
            let compressed = miniz_oxide::deflate::compress_to_vec_zlib(json, 6);
            // itsdangerous' rule: compressed only when it saves more than one byte.
            if compressed.len() < json.len().saturating_sub(1) {
                return format!(".{}", URL_SAFE_NO_PAD.encode(compressed));
            }
        }
        URL_SAFE_NO_PAD.encode(json)
    }

    /// The session dict in a cookie value, its timestamp and whether a fallback key signed
    /// it; `None` for anything Flask would refuse at `now` (bad signature, expired, dated
    /// in the future, not a dict). Never panics.
    pub fn decode_at(
        &self,
        value: &str,
        now: OffsetDateTime,
    ) -> Option<(Map<String, Value>, OffsetDateTime, bool)> {
        if value.len() > MAX_VALUE_CHARS {
            return None;
        }
        let (stamped, under_fallback) = self.signer.unsign(value)?;
        let (payload, stamp) = stamped.rsplit_once('.')?;
        let stamp = decode_timestamp(stamp)?;
        let age = now.unix_timestamp().checked_sub(stamp)?;
        if age < 0 || age > i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX) {
            return None;
        }
        let json = match payload.strip_prefix('.') {
            Some(compressed) => {
                let compressed = URL_SAFE_NO_PAD.decode(compressed).ok()?;
                miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, MAX_PAYLOAD)
                    .ok()?
            }
            None => URL_SAFE_NO_PAD.decode(payload).ok()?,
        };
        let session = tagged::unescape_top(serde_json::from_slice(&json).ok()?)?;
        Some((
            session,
            OffsetDateTime::from_unix_timestamp(stamp).ok()?,
            under_fallback,
        ))
    }
}

impl CookieCodec for FlaskCookie {
    fn seal(
        &self,
        _name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error> {
        let session = dict::to_dict(Some(key), record, &self.user_key)?;
        self.encode_at(&session, record.last_active_at)
    }

    fn open(&self, _name: &str, value: &str) -> Option<OpenedCookie> {
        let (session, stamp, under_fallback) = self.decode_at(value, cloakroom::record::now())?;
        // Flask accepts an age equal to the lifetime, in whole seconds: live until the
        // second after.
        let deadline = saturating_add(stamp, self.lifetime.saturating_add(Duration::from_secs(1)));
        let (key, record) = dict::from_dict(session, &self.user_key, stamp, Some(deadline))?;
        // A session Flask made has no key of ours: name it after its signature, so its
        // handle stays put until cloakroom first writes it.
        let key =
            key.unwrap_or_else(|| StoreKey::from_bytes(Sha256::digest(value.as_bytes()).into()));
        Some(OpenedCookie {
            key,
            record,
            under_fallback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty secret key signs nothing anyone should trust: anyone can compute its
    /// signatures. Flask has no sessions without a key; a cookie signed with an empty one
    /// (as the current key, or an empty fallback) opened here, logged in as whoever it
    /// named.
    #[test]
    fn an_empty_secret_key_opens_nothing() {
        let mut session = Map::new();
        session.insert("_user_id".into(), "admin".into());
        let forged = FlaskCookie::new("")
            .encode_at(&session, cloakroom::record::now())
            .unwrap();
        assert!(FlaskCookie::new("").open("session", &forged).is_none());
        let with_empty_fallback = FlaskCookie::new("a secret key").with_fallbacks([""]);
        assert!(with_empty_fallback.open("session", &forged).is_none());
        let genuine = with_empty_fallback
            .encode_at(&session, cloakroom::record::now())
            .unwrap();
        assert!(with_empty_fallback.open("session", &genuine).is_some());
    }

    /// What a write may seal, the next request can open: a session that deflates into the
    /// cookie but inflates past what `decode_at` accepts is too large when it is written.
    /// It fitted, and was lost on the next request.
    #[test]
    fn compressed_payloads_are_only_as_large_as_decode_accepts() {
        let codec = FlaskCookie::new("a secret key").with_compression(true);
        for len in [32 * 1024, MAX_PAYLOAD - 100, MAX_PAYLOAD + 1, 200 * 1024] {
            let mut session = Map::new();
            session.insert("x".into(), "a".repeat(len).into());
            let value = codec.encode_at(&session, cloakroom::record::now()).unwrap();
            let opens = codec.decode_at(&value, cloakroom::record::now()).is_some();
            assert!(
                value.len() > 4096 || opens,
                "{len} bytes fit and do not open"
            );
            assert!(opens || len > MAX_PAYLOAD - 100, "{len} bytes must open");
        }
    }

    /// A lifetime that puts a cookie's deadline past the year 9999 means "never": opening a
    /// cookie under it added the lifetime to its time stamp and panicked.
    #[test]
    fn huge_lifetimes_open_cookies_instead_of_panicking() {
        let mut session = Map::new();
        session.insert("_user_id".into(), "alice".into());
        for lifetime in [Duration::MAX, Duration::from_secs(10_000 * 365 * 86_400)] {
            let codec = FlaskCookie::new("a secret key").with_lifetime(lifetime);
            let value = codec.encode_at(&session, cloakroom::record::now()).unwrap();
            let opened = codec.open("session", &value).expect("a live cookie");
            assert_eq!(opened.record.user_id.as_deref(), Some("alice"));
            assert_eq!(
                opened.record.idle_deadline,
                Some(time::PrimitiveDateTime::MAX.assume_utc())
            );
        }
    }
}
