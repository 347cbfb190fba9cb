//! A session's device binding: what the record keeps, and the state changes the protocol
//! makes to it (offer on login, registration, refresh), with no store or framework in
//! them. The engine loads the record, calls these, and writes the record back with its
//! usual compare-and-set, which is what makes every challenge single-use across
//! concurrent requests.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::bound_cookie;
use super::challenge::{Challenge, Challenges};
use super::headers::{self, CookieAttributes, InvalidHeaderValue, SessionConfiguration};
use super::proof::{self, BoundKey, ProofError, Registration};
use super::{
    check_bound_cookie_lifetime, Algorithm, LifetimeTooShort, DEFAULT_BOUND_COOKIE_LIFETIME,
    REGISTRATION_CHALLENGE_LIFETIME,
};
use crate::config::CookieConfig;
use crate::keys::KeyRing;
use crate::record::saturating_add;

/// How device binding is set up: where the endpoints are, the bound cookie, the
/// algorithms offered, and the key ring the bound cookie is MAC'd with.
///
/// ```
/// use std::time::Duration;
/// use cloakroom::dbsc::binding::DeviceBindingConfig;
/// use cloakroom::{generate_key, KeyRing};
/// let keys = KeyRing::parse(&generate_key()).unwrap();
/// let config = DeviceBindingConfig::new(keys).with_bound_cookie_lifetime(Duration::from_secs(180));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct DeviceBindingConfig {
    keys: KeyRing,
    registration_path: String,
    refresh_path: String,
    cookie_name: String,
    lifetime: Duration,
    registration_grace: Duration,
    algorithms: Vec<Algorithm>,
}

/// Why a [`DeviceBindingConfig`] cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceBindingConfigError {
    /// The bound cookie would live too short for Chrome's refresh timing.
    #[error(transparent)]
    LifetimeTooShort(#[from] LifetimeTooShort),
    /// No algorithm to offer.
    #[error("offer at least one algorithm")]
    NoAlgorithm,
    /// An endpoint path that is not an absolute path a header can carry.
    #[error("the {0} path must start with '/' and be printable ASCII")]
    BadPath(&'static str),
    /// The bound cookie's name is empty or not a cookie name.
    #[error("the bound cookie name must be a non-empty token")]
    BadCookieName,
    /// An endpoint outside the session cookie's `Path`: browsers would not send the session
    /// cookie to it, so no session could ever be bound.
    #[error("the {0} path is outside the session cookie's Path: move it under that path, or widen the cookie's")]
    OutsideCookiePath(&'static str),
    /// A registration grace longer than [`MAX_REGISTRATION_GRACE`].
    #[error("the registration grace may be at most {}s", MAX_REGISTRATION_GRACE.as_secs())]
    GraceTooLong,
}

/// How long after a key is registered a request without the bound cookie still counts as
/// the bound session, by default. The registration's response carries the first bound
/// cookie, and the page's own requests (Chrome registers in the background, right after
/// the login response) can reach the server after the key is stored but before the
/// browser holds that cookie; without a grace they would read as logged out.
pub const DEFAULT_REGISTRATION_GRACE: Duration = Duration::from_secs(10);

/// The longest registration grace allowed: far below any bound cookie's lifetime, so a
/// session cookie copied during the grace stops working sooner than a copied bound cookie
/// would anyway.
pub const MAX_REGISTRATION_GRACE: Duration = Duration::from_secs(60);

impl DeviceBindingConfig {
    /// Defaults: registration at `/.cloakroom/dbsc/register`, refresh at
    /// `/.cloakroom/dbsc/refresh`, bound cookie `cloakroom_bound` living
    /// [`DEFAULT_BOUND_COOKIE_LIFETIME`], ES256 and RS256 offered; bound cookies MAC'd
    /// with `keys`.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            registration_path: "/.cloakroom/dbsc/register".to_owned(),
            refresh_path: "/.cloakroom/dbsc/refresh".to_owned(),
            cookie_name: "cloakroom_bound".to_owned(),
            lifetime: DEFAULT_BOUND_COOKIE_LIFETIME,
            registration_grace: DEFAULT_REGISTRATION_GRACE,
            algorithms: Algorithm::ALL.to_vec(),
        }
    }

    /// Sets the registration endpoint's path.
    pub fn with_registration_path(mut self, path: impl Into<String>) -> Self {
        self.registration_path = path.into();
        self
    }

    /// Sets the refresh endpoint's path.
    pub fn with_refresh_path(mut self, path: impl Into<String>) -> Self {
        self.refresh_path = path.into();
        self
    }

    /// Sets the bound cookie's name.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Sets the bound cookie's lifetime (at least
    /// [`MIN_BOUND_COOKIE_LIFETIME`](super::MIN_BOUND_COOKIE_LIFETIME), checked by
    /// [`validate`](Self::validate)).
    pub fn with_bound_cookie_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets how long after registration a request without the bound cookie still counts
    /// as the bound session ([`DEFAULT_REGISTRATION_GRACE`]; at most
    /// [`MAX_REGISTRATION_GRACE`], checked by [`validate`](Self::validate)). Zero makes the
    /// bound cookie required from the moment the key is stored, at the price of a page
    /// that asks the server right after login sometimes reading as logged out.
    pub fn with_registration_grace(mut self, grace: Duration) -> Self {
        self.registration_grace = grace;
        self
    }

    /// The registration grace.
    pub fn registration_grace(&self) -> Duration {
        self.registration_grace
    }

    /// Sets the algorithms offered, in order of preference.
    pub fn with_algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self.algorithms.dedup();
        self
    }

    /// The registration endpoint's path.
    pub fn registration_path(&self) -> &str {
        &self.registration_path
    }

    /// The refresh endpoint's path.
    pub fn refresh_path(&self) -> &str {
        &self.refresh_path
    }

    /// The bound cookie's name, before any prefix the session cookie's configuration adds
    /// ([`bound_cookie_name`](Self::bound_cookie_name) is the name as sent).
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The bound cookie's lifetime.
    pub fn bound_cookie_lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The algorithms offered.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The key ring bound cookies are MAC'd with.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), DeviceBindingConfigError> {
        check_bound_cookie_lifetime(self.lifetime)?;
        if self.registration_grace > MAX_REGISTRATION_GRACE {
            return Err(DeviceBindingConfigError::GraceTooLong);
        }
        if self.algorithms.is_empty() {
            return Err(DeviceBindingConfigError::NoAlgorithm);
        }
        for (path, what) in [
            (&self.registration_path, "registration"),
            (&self.refresh_path, "refresh"),
        ] {
            let printable = path.bytes().all(|byte| byte.is_ascii_graphic());
            if !path.starts_with('/') || !printable || path.contains(['"', '\\', ';', '?', '#']) {
                return Err(DeviceBindingConfigError::BadPath(what));
            }
        }
        let token = |byte: u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
        if self.cookie_name.is_empty() || !self.cookie_name.bytes().all(token) {
            return Err(DeviceBindingConfigError::BadCookieName);
        }
        Ok(())
    }

    /// Checks the endpoints against the session cookie: each must be a path the browser
    /// sends the cookie to (RFC 6265's path match).
    pub(crate) fn validate_with(
        &self,
        session_cookie: &CookieConfig,
    ) -> Result<(), DeviceBindingConfigError> {
        let scope = session_cookie.path();
        let in_scope = |path: &str| {
            path.strip_prefix(scope).is_some_and(|rest| {
                rest.is_empty() || scope.ends_with('/') || rest.starts_with('/')
            })
        };
        for (path, what) in [
            (&self.registration_path, "registration"),
            (&self.refresh_path, "refresh"),
        ] {
            if !in_scope(path) {
                return Err(DeviceBindingConfigError::OutsideCookiePath(what));
            }
        }
        Ok(())
    }

    /// The bound cookie's configuration: the session cookie's, renamed and always
    /// `HttpOnly`, so it travels wherever the session cookie does.
    pub fn bound_cookie_config(&self, session_cookie: &CookieConfig) -> CookieConfig {
        session_cookie
            .clone()
            .with_name(self.cookie_name.clone())
            .with_http_only(true)
    }

    /// The bound cookie's name as it is set and sent: [`cookie_name`](Self::cookie_name)
    /// with the session cookie's `__Host-` prefix, when it has one (the bound cookie takes
    /// the session cookie's attributes, prefix included).
    pub fn bound_cookie_name(&self, session_cookie: &CookieConfig) -> String {
        session_cookie.full_name_of(&self.cookie_name)
    }
}

/// Where a session's binding stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum State {
    /// Offered on the login response; waiting for the browser's registration.
    Pending {
        challenge: Challenge,
        authorization: String,
        algorithms: Vec<Algorithm>,
    },
    /// A key is registered: bound cookies are issued only against proofs by it.
    Bound { key: BoundKey },
}

/// A session's device binding, as the record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceBinding {
    id: String,
    #[serde(flatten)]
    state: State,
    #[serde(default)]
    challenges: Challenges,
    #[serde(with = "crate::record::unix_ms::option", default)]
    bound_at: Option<OffsetDateTime>,
    #[serde(with = "crate::record::unix_ms::option", default)]
    last_refresh_at: Option<OffsetDateTime>,
    #[serde(default)]
    refreshes: u64,
    #[serde(default)]
    failed_refreshes: u64,
}

/// Why a registration or refresh was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The proof did not verify.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A registration for a binding that already has a key: a second key is never
    /// accepted (a thief holding the session ID cannot bind a device of their own).
    #[error("the session is already bound")]
    AlreadyBound,
    /// A refresh for a binding whose registration never completed.
    #[error("the session is not bound")]
    NotBound,
}

/// A request's verdict on a session's binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingStatus {
    /// No key is bound (no binding, or registration pending): the session works as
    /// without DBSC.
    Unbound,
    /// A key is bound and the request carries a valid bound cookie, or the key was
    /// registered less than the configured registration grace ago.
    Bound,
    /// A key is bound but the bound cookie is missing, forged or expired: treat the
    /// request as not logged in (and leave the record alone).
    BoundCredentialMissing,
}

fn random_text(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the OS random number generator failed");
    URL_SAFE_NO_PAD.encode(buffer)
}

impl DeviceBinding {
    /// A new, pending binding and the `Secure-Session-Registration` header that offers it
    /// (for the login response). The identifier is 128 random bits, unrelated to the
    /// session ID; the authorization value ties the registration to this offer.
    pub fn offer(
        config: &DeviceBindingConfig,
        now: OffsetDateTime,
    ) -> Result<(Self, HeaderValue), InvalidHeaderValue> {
        let challenge = Challenge::generate(now, REGISTRATION_CHALLENGE_LIFETIME);
        let authorization = random_text(16);
        let header = headers::registration(
            &config.algorithms,
            &config.registration_path,
            challenge.value(),
            Some(&authorization),
        )?;
        let binding = Self {
            id: random_text(16),
            state: State::Pending {
                challenge,
                authorization,
                algorithms: config.algorithms.clone(),
            },
            challenges: Challenges::new(),
            bound_at: None,
            last_refresh_at: None,
            refreshes: 0,
            failed_refreshes: 0,
        };
        Ok((binding, header))
    }

    /// The identifier given to the browser (`session_identifier`). Not a secret: it may
    /// be logged.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bound key, once registered.
    pub fn key(&self) -> Option<&BoundKey> {
        match &self.state {
            State::Bound { key } => Some(key),
            State::Pending { .. } => None,
        }
    }

    /// Whether a key is registered.
    pub fn is_bound(&self) -> bool {
        self.key().is_some()
    }

    /// When the key was registered.
    pub fn bound_at(&self) -> Option<OffsetDateTime> {
        self.bound_at
    }

    /// Verified refreshes so far, and refused ones.
    pub fn refresh_counts(&self) -> (u64, u64) {
        (self.refreshes, self.failed_refreshes)
    }

    /// Registers the key of a registration proof (the `Secure-Session-Response` bytes).
    /// On success the binding is bound, the registration challenge is gone with the
    /// pending state, and [`issue_challenge`](Self::issue_challenge) should pre-send the
    /// first refresh challenge.
    pub fn register(&mut self, proof: &[u8], now: OffsetDateTime) -> Result<(), BindingError> {
        let State::Pending {
            challenge,
            authorization,
            algorithms,
        } = &self.state
        else {
            return Err(BindingError::AlreadyBound);
        };
        let offer = Registration {
            algorithms,
            challenge,
            authorization: Some(authorization),
        };
        let key = proof::verify_registration(proof, &offer, now)?;
        self.state = State::Bound { key };
        self.bound_at = Some(now);
        Ok(())
    }

    /// Verifies a refresh proof and consumes its challenge. A refused proof is counted.
    pub fn refresh(&mut self, proof: &[u8], now: OffsetDateTime) -> Result<(), BindingError> {
        let State::Bound { key } = &self.state else {
            return Err(BindingError::NotBound);
        };
        match proof::verify_refresh(proof, key, &mut self.challenges, now) {
            Ok(()) => {
                self.refreshes = self.refreshes.saturating_add(1);
                self.last_refresh_at = Some(now);
                Ok(())
            }
            Err(error) => {
                self.failed_refreshes = self.failed_refreshes.saturating_add(1);
                Err(error.into())
            }
        }
    }

    /// A new refresh challenge living `lifetime`, kept outstanding, and the
    /// `Secure-Session-Challenge` header that sends it (always with `;id=`).
    ///
    /// Pre-sent challenges (on the registration and refresh responses) should live as
    /// long as a bound cookie, since Chrome signs them at the next refresh; one sent with
    /// a `403` can be short ([`RETRY_CHALLENGE_LIFETIME`](super::RETRY_CHALLENGE_LIFETIME)).
    pub fn issue_challenge(
        &mut self,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<HeaderValue, InvalidHeaderValue> {
        let challenge = Challenge::generate(now, lifetime);
        let header = headers::challenge(challenge.value(), &self.id)?;
        self.challenges.push(challenge);
        Ok(header)
    }

    /// The challenge for a refresh that came without a proof, and whether the binding
    /// changed (and must be saved): the retry challenge still outstanding if there is one,
    /// else a new one living `lifetime`. Anyone holding the session cookie can ask, so
    /// asking again changes nothing, and a retry challenge never pushes out a pre-sent
    /// one (which the browser holds for its next refresh).
    pub fn retry_challenge(
        &mut self,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<(HeaderValue, bool), InvalidHeaderValue> {
        if let Some(outstanding) = self.challenges.live_retry(now) {
            return Ok((headers::challenge(outstanding.value(), &self.id)?, false));
        }
        let challenge = Challenge::generate_retry(now, lifetime);
        let header = headers::challenge(challenge.value(), &self.id)?;
        self.challenges.push(challenge);
        Ok((header, true))
    }

    /// A bound cookie's `Set-Cookie`, for the registration and refresh responses: valid
    /// for the configured lifetime from `now`, with that `Max-Age`.
    pub fn bound_cookie(
        &self,
        config: &DeviceBindingConfig,
        session_cookie: &CookieConfig,
        now: OffsetDateTime,
    ) -> HeaderValue {
        let expires_at =
            now.saturating_add(config.lifetime.try_into().unwrap_or(time::Duration::MAX));
        let value = bound_cookie::issue(&config.keys, &self.id, expires_at);
        crate::codec::value_cookie(
            &config.bound_cookie_config(session_cookie),
            &value,
            Some(config.lifetime),
        )
    }

    /// The registration response's JSON body.
    pub fn session_configuration(
        &self,
        config: &DeviceBindingConfig,
        session_cookie: &CookieConfig,
    ) -> SessionConfiguration {
        let cookie = config.bound_cookie_config(session_cookie);
        SessionConfiguration::new(
            self.id.clone(),
            config.refresh_path.clone(),
            cookie.full_name(),
            &CookieAttributes::like(&cookie),
        )
    }

    /// The verdict for a request carrying `bound_cookies` (every value of the bound
    /// cookie's name in its `Cookie` headers, in order).
    pub fn status<'a>(
        &self,
        config: &DeviceBindingConfig,
        bound_cookies: impl IntoIterator<Item = &'a [u8]>,
        now: OffsetDateTime,
    ) -> BindingStatus {
        if !self.is_bound() {
            return BindingStatus::Unbound;
        }
        // A few values at most (a planted duplicate must not hide ours), as for the
        // session cookie.
        let valid = bound_cookies
            .into_iter()
            .take(crate::codec::MAX_CANDIDATES)
            .any(|value| bound_cookie::verify(&config.keys, value, &self.id, now).is_ok());
        // Just registered: the bound cookie may still be on its way to the browser.
        let in_grace = self
            .bound_at
            .is_some_and(|bound_at| now < saturating_add(bound_at, config.registration_grace));
        if valid || in_grace {
            BindingStatus::Bound
        } else {
            BindingStatus::BoundCredentialMissing
        }
    }
}

/// The verdict for a session that may have no binding at all.
pub fn status<'a>(
    binding: Option<&DeviceBinding>,
    config: &DeviceBindingConfig,
    bound_cookies: impl IntoIterator<Item = &'a [u8]>,
    now: OffsetDateTime,
) -> BindingStatus {
    binding.map_or(BindingStatus::Unbound, |binding| {
        binding.status(config, bound_cookies, now)
    })
}

#[cfg(test)]
mod tests;
