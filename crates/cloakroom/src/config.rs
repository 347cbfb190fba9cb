//! Configuration: the cookie, expiry, size limits and the failure policy.

use std::time::Duration;

pub use cookie::SameSite;

use crate::expiry::ExpiryPolicy;

/// How the session cookie is written. Defaults are the secure ones: `HttpOnly`, `Secure`,
/// `SameSite=Lax`, `Path=/`, no `Domain`, the generic name `id`.
///
/// ```
/// use cloakroom::CookieConfig;
/// let cookie = CookieConfig::default().with_host_prefix(true);
/// assert_eq!(cookie.full_name(), "__Host-id");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieConfig {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    host_prefix: bool,
    /// The name as sent (prefix included), kept up to date by the setters: every request
    /// reads it, so it is not rebuilt each time.
    full_name: String,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "id".to_owned(),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            host_prefix: false,
            full_name: "id".to_owned(),
        }
    }
}

impl CookieConfig {
    /// Sets the cookie name (before any `__Host-` prefix).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.update_full_name();
        self
    }
    /// Sets the `Path` attribute.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
    /// Sets the `Domain` attribute (not allowed with the `__Host-` prefix).
    pub fn with_domain(mut self, domain: Option<String>) -> Self {
        self.domain = domain;
        self
    }
    /// Sets `Secure`. Turn it off only for plain-HTTP development servers.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }
    /// Sets `HttpOnly`.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }
    /// Sets `SameSite`.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }
    /// Prefixes the name with `__Host-`, which browsers accept only with `Secure`, `Path=/`
    /// and no `Domain`: the cookie is then bound to this exact host. Recommended unless
    /// the cookie must be shared across subdomains: it is the only defense against a
    /// sibling subdomain planting its own (live) session cookie in front of ours
    /// ("cookie tossing"); without it, only a planted *unknown* ID is passed over.
    pub fn with_host_prefix(mut self, host_prefix: bool) -> Self {
        self.host_prefix = host_prefix;
        self.update_full_name();
        self
    }

    fn update_full_name(&mut self) {
        self.full_name = self.full_name_of(&self.name);
    }

    /// `name` as a cookie under this configuration is sent: with the `__Host-` prefix when
    /// it is on (for another cookie that shares these attributes, such as the bound one).
    pub(crate) fn full_name_of(&self, name: &str) -> String {
        if self.host_prefix {
            format!("__Host-{name}")
        } else {
            name.to_owned()
        }
    }

    /// The name as sent, prefix included.
    pub fn full_name(&self) -> std::borrow::Cow<'_, str> {
        self.full_name.as_str().into()
    }
    /// The `Path` attribute.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The `Domain` attribute.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }
    /// Whether `Secure` is set.
    pub fn secure(&self) -> bool {
        self.secure
    }
    /// Whether `HttpOnly` is set.
    pub fn http_only(&self) -> bool {
        self.http_only
    }
    /// The `SameSite` attribute.
    pub fn same_site(&self) -> SameSite {
        self.same_site
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if self.name.is_empty() || !self.name.chars().all(token) {
            return Err(ConfigError::CookieName(self.name.clone()));
        }
        let attr_ok =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && c != ';');
        if !attr_ok(&self.path) || !self.path.starts_with('/') {
            return Err(ConfigError::CookiePath(self.path.clone()));
        }
        if let Some(domain) = &self.domain {
            if !attr_ok(domain) {
                return Err(ConfigError::CookieDomain(domain.clone()));
            }
        }
        // The prefix counts however it got into the name (the flag, or written in it), in
        // any case: browsers refuse every cookie that breaks its rules.
        let prefixed = |prefix: &str| {
            self.full_name
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        };
        if prefixed("__Host-") && (!self.secure || self.path != "/" || self.domain.is_some()) {
            return Err(ConfigError::HostPrefix);
        }
        if prefixed("__Secure-") && !self.secure {
            return Err(ConfigError::SecurePrefix);
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneInsecure);
        }
        Ok(())
    }
}

/// Size limits, checked when a value is written so a handler gets a typed error at once
/// ([`SessionError::ValueTooLarge`](crate::SessionError::ValueTooLarge) or
/// [`SessionError::SessionTooLarge`](crate::SessionError::SessionTooLarge); a value nested
/// deeper than [`MAX_VALUE_DEPTH`](crate::MAX_VALUE_DEPTH) fails the same way with
/// [`SessionError::ValueTooDeep`](crate::SessionError::ValueTooDeep)).
///
/// A write that does not grow the value or the session is always allowed, even over the
/// limits, so a session stored under larger limits can still shrink. The limits are
/// checked again at commit on the record merged with concurrent writers' changes: if this
/// request's writes no longer fit there, they are not saved, and the layer answers 413 in
/// place of the handler's response.
///
/// Defaults: 64 KiB per value, 256 KiB per session (serialized JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest serialized value.
    pub max_value_bytes: usize,
    /// The largest serialized session data.
    pub max_session_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: 64 * 1024,
            max_session_bytes: 256 * 1024,
        }
    }
}

/// What the layer does when the store fails (down, timed out, pool exhausted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnStoreError {
    /// Fail closed (the default): the response becomes `503 Service Unavailable` with
    /// `Retry-After`, and nothing is written.
    ServiceUnavailable {
        /// The `Retry-After` value.
        retry_after: Duration,
    },
    /// Fail open: a session that cannot be loaded acts as an empty anonymous session for
    /// this request, nothing is written for it and no cookie is changed (so the user keeps
    /// the session once the store is back), and commit failures are logged while the
    /// handler's response goes out unchanged. A [`logout`](crate::Session::logout) of such
    /// a session still fails with the store error: it cannot delete what it could not
    /// load, and must not tell the user it did. So do listing and revoking the user's
    /// sessions ([`list_user_sessions`](crate::Session::list_user_sessions),
    /// [`revoke_user_session`](crate::Session::revoke_user_session),
    /// [`revoke_other_sessions`](crate::Session::revoke_other_sessions)), whose user is
    /// not known.
    Anonymous,
}

impl Default for OnStoreError {
    fn default() -> Self {
        Self::ServiceUnavailable {
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Where the client IP recorded with a session comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The peer address of the connection (axum's `ConnectInfo<SocketAddr>`), the default.
    #[default]
    ConnectInfo,
    /// The address a trusted proxy added to this list header (for example
    /// `x-forwarded-for`), for apps behind proxies that append to it: the entry
    /// [`SessionConfig::trusted_proxy_hops`] from the right (default 1, the right-most).
    /// Entries left of it came from the client and are never used. No IP when that entry
    /// is missing or not an IP (an optional port and IPv6 brackets are accepted). Never
    /// use it without such a proxy: clients can forge the whole header.
    TrustedHeader(http::HeaderName),
    /// Record no IP.
    None,
}

/// Everything the session layer needs besides the store.
///
/// ```
/// use std::time::Duration;
/// use cloakroom::{CookieConfig, ExpiryPolicy, SessionConfig};
/// let config = SessionConfig::default()
///     .with_cookie(CookieConfig::default().with_name("sid"))
///     .with_expiry(ExpiryPolicy::default().with_idle_timeout(Some(Duration::from_secs(1800))));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The cookie.
    pub cookie: CookieConfig,
    /// Expiry.
    pub expiry: ExpiryPolicy,
    /// Size limits.
    pub limits: Limits,
    /// The failure policy.
    pub on_store_error: OnStoreError,
    /// Whether changes made while producing a 5xx response are saved (default: no).
    /// Logout and destroy are honoured either way.
    pub save_on_server_error: bool,
    /// How many compare-and-set attempts a commit makes under contention before giving up
    /// with [`SessionError::TooManyConflicts`](crate::SessionError::TooManyConflicts).
    /// Default 64.
    pub max_commit_attempts: u32,
    /// Where the client IP comes from.
    pub client_ip: ClientIpSource,
    /// How many proxies you trust in front of the app, for
    /// [`ClientIpSource::TrustedHeader`]: the client IP is the entry the outermost of them
    /// added, this many from the right of the header's list. Default 1 (the right-most
    /// entry, added by the one proxy in front of the app). At least 1.
    pub trusted_proxy_hops: usize,
    /// Revocation by epoch: the hook that says a user's current epoch (default none).
    pub epochs: Option<crate::epoch::Epochs>,
    /// The most live sessions one user may have (default: no cap). See
    /// [`with_max_sessions_per_user`](Self::with_max_sessions_per_user).
    pub max_sessions_per_user: Option<usize>,
    /// Device-bound sessions (DBSC, feature `dbsc`; default off). See
    /// [`with_device_binding`](Self::with_device_binding).
    #[cfg(feature = "dbsc")]
    pub device_binding: Option<crate::dbsc::binding::DeviceBindingConfig>,
}

/// The most sessions one login revokes to enforce
/// [`SessionConfig::with_max_sessions_per_user`]: each is a store round trip the login
/// waits on, so a user far over the cap is brought within it over several logins.
pub const MAX_CAP_REVOCATIONS_PER_LOGIN: usize = 32;

impl SessionConfig {
    /// Turns on device-bound sessions (DBSC, feature `dbsc`): logins offer the browser a
    /// binding, the layer serves the registration and refresh endpoints, and a session
    /// whose browser bound a key is seen as logged out on a request without a valid bound
    /// cookie. Browsers without DBSC work as before. Needs a session store (see
    /// `docs/dbsc.md`).
    ///
    /// ```
    /// use cloakroom::dbsc::binding::DeviceBindingConfig;
    /// use cloakroom::{generate_key, KeyRing, SessionConfig};
    /// let keys = KeyRing::parse(&generate_key()).unwrap();
    /// let config = SessionConfig::default().with_device_binding(DeviceBindingConfig::new(keys));
    /// assert!(config.validate().is_ok());
    /// ```
    #[cfg(feature = "dbsc")]
    pub fn with_device_binding(
        mut self,
        binding: crate::dbsc::binding::DeviceBindingConfig,
    ) -> Self {
        self.device_binding = Some(binding);
        self
    }

    /// Sets the cookie configuration.
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }
    /// Sets the expiry policy.
    pub fn with_expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }
    /// Sets the size limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// Sets the failure policy.
    pub fn with_on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }
    /// Sets whether changes are saved on 5xx responses.
    pub fn with_save_on_server_error(mut self, save: bool) -> Self {
        self.save_on_server_error = save;
        self
    }
    /// Sets the bound on compare-and-set attempts per commit.
    pub fn with_max_commit_attempts(mut self, attempts: u32) -> Self {
        self.max_commit_attempts = attempts;
        self
    }
    /// Sets where the client IP comes from.
    pub fn with_client_ip(mut self, source: ClientIpSource) -> Self {
        self.client_ip = source;
        self
    }

    /// Sets how many trusted proxies are in front of the app (see
    /// [`trusted_proxy_hops`](Self::trusted_proxy_hops)).
    pub fn with_trusted_proxy_hops(mut self, hops: usize) -> Self {
        self.trusted_proxy_hops = hops;
        self
    }

    /// Registers the hook for revocation by epoch.
    pub fn with_epochs(mut self, source: impl crate::epoch::EpochSource) -> Self {
        self.epochs = Some(crate::epoch::Epochs(std::sync::Arc::new(source)));
        self
    }

    /// Caps the live sessions of one user at `max` (server-side stores; client-side
    /// sessions have no per-user index and ignore it). When a login would exceed it, the
    /// user's least recently active other sessions are revoked (by `last_active_at`, then
    /// `created_at`): devices in use stay logged in, and the session logging in is never
    /// revoked. Only sessions less recently active than the one logging in are revoked
    /// (ties broken by creation time, then key), so two devices logging in at once never
    /// revoke each other. One login revokes at most [`MAX_CAP_REVOCATIONS_PER_LOGIN`]
    /// sessions, so enabling the cap for a user with many sessions does not make a login
    /// wait on many round trips; later logins revoke the rest. Enforcement is best effort
    /// after the login is saved: if the store fails it is logged, and the next login
    /// enforces the cap again.
    pub fn with_max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = Some(max);
        self
    }

    /// Checks the combination, with an error that says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cookie.validate()?;
        if self.max_commit_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        if self.trusted_proxy_hops == 0 {
            return Err(ConfigError::ZeroProxyHops);
        }
        if self.max_sessions_per_user == Some(0) {
            return Err(ConfigError::ZeroSessionsPerUser);
        }
        let interval = self.expiry.touch_interval();
        if let Some(idle) = self.expiry.idle_timeout() {
            if interval >= idle && !idle.is_zero() {
                return Err(ConfigError::TouchIntervalTooLong { interval, idle });
            }
        }
        #[cfg(feature = "dbsc")]
        if let Some(binding) = &self.device_binding {
            binding.validate()?;
            binding.validate_with(&self.cookie)?;
            // The bound cookie is a second cookie beside the session's: the two must not
            // share a name, or each would overwrite the other.
            if binding.bound_cookie_name(&self.cookie) == self.cookie.full_name() {
                return Err(ConfigError::DeviceBinding(
                    crate::dbsc::binding::DeviceBindingConfigError::BadCookieName,
                ));
            }
        }
        Ok(())
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie name is not an RFC 6265 token.
    #[error("cookie name {0:?} is not valid: use letters, digits and -_.")]
    CookieName(String),
    /// The path is empty, relative, or has a `;` or whitespace.
    #[error("cookie path {0:?} is not valid: it must start with / and contain no ; or spaces")]
    CookiePath(String),
    /// The domain has a `;` or whitespace.
    #[error("cookie domain {0:?} is not valid")]
    CookieDomain(String),
    /// `__Host-` needs `Secure`, `Path=/` and no `Domain`.
    #[error(
        "the __Host- prefix needs Secure, Path=/ and no Domain: change those or drop the prefix"
    )]
    HostPrefix,
    /// A `__Secure-` name needs `Secure`.
    #[error("the __Secure- prefix needs Secure: set it or rename the cookie")]
    SecurePrefix,
    /// `SameSite=None` needs `Secure`.
    #[error("SameSite=None needs Secure: browsers reject it otherwise")]
    SameSiteNoneInsecure,
    /// `max_commit_attempts` is zero.
    #[error("max_commit_attempts must be at least 1")]
    ZeroAttempts,
    /// `trusted_proxy_hops` is zero.
    #[error("trusted_proxy_hops must be at least 1: the number of proxies in front of the app that append to the client IP header")]
    ZeroProxyHops,
    /// `max_sessions_per_user` is zero.
    #[error("max_sessions_per_user must be at least 1 (a login needs its own session)")]
    ZeroSessionsPerUser,
    /// The touch interval is as long as the idle timeout or longer.
    #[error("the touch interval ({interval:?}) must be shorter than the idle timeout ({idle:?}): otherwise reading a session never refreshes it, and it dies however active its user is")]
    TouchIntervalTooLong {
        /// The touch interval.
        interval: std::time::Duration,
        /// The idle timeout.
        idle: std::time::Duration,
    },
    /// The device-binding configuration cannot work (feature `dbsc`).
    #[cfg(feature = "dbsc")]
    #[error(transparent)]
    DeviceBinding(#[from] crate::dbsc::binding::DeviceBindingConfigError),
    /// Device binding needs server-side sessions: a sealed cookie would carry the binding
    /// inside the very cookie it guards.
    #[cfg(feature = "dbsc")]
    #[error("device binding needs a session store; client-side (cookie) sessions cannot be bound")]
    DeviceBindingNeedsStore,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie: CookieConfig::default(),
            expiry: ExpiryPolicy::default(),
            limits: Limits::default(),
            on_store_error: OnStoreError::default(),
            save_on_server_error: false,
            max_commit_attempts: 64,
            client_ip: ClientIpSource::default(),
            trusted_proxy_hops: 1,
            epochs: None,
            max_sessions_per_user: None,
            #[cfg(feature = "dbsc")]
            device_binding: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_name_follows_every_setter_in_any_order() {
        let named_first = CookieConfig::default()
            .with_name("sid")
            .with_host_prefix(true);
        let prefixed_first = CookieConfig::default()
            .with_host_prefix(true)
            .with_name("sid");
        assert_eq!(named_first.full_name(), "__Host-sid");
        assert_eq!(prefixed_first.full_name(), "__Host-sid");
        assert_eq!(named_first.with_host_prefix(false).full_name(), "sid");
        assert_eq!(CookieConfig::default().full_name(), "id");
    }

    #[test]
    fn invalid_combinations_are_rejected_with_a_reason() {
        let bad = |cookie: CookieConfig| SessionConfig::default().with_cookie(cookie).validate();
        assert_eq!(
            bad(CookieConfig::default()
                .with_host_prefix(true)
                .with_domain(Some("a.b".into()))),
            Err(ConfigError::HostPrefix)
        );
        assert_eq!(
            bad(CookieConfig::default()
                .with_host_prefix(true)
                .with_secure(false)),
            Err(ConfigError::HostPrefix)
        );
        assert!(matches!(
            bad(CookieConfig::default().with_name("a b")),
            Err(ConfigError::CookieName(_))
        ));
        assert!(matches!(
            bad(CookieConfig::default().with_path("x")),
            Err(ConfigError::CookiePath(_))
        ));
        assert_eq!(
            bad(CookieConfig::default()
                .with_same_site(SameSite::None)
                .with_secure(false)),
            Err(ConfigError::SameSiteNoneInsecure)
        );
        assert!(bad(CookieConfig::default().with_host_prefix(true)).is_ok());
        // A prefix written into the name holds the cookie to its rules as the flag does:
        // browsers refuse the cookie otherwise, so every login would silently not stick.
        assert_eq!(
            bad(CookieConfig::default()
                .with_name("__Host-sid")
                .with_path("/app")),
            Err(ConfigError::HostPrefix)
        );
        assert_eq!(
            bad(CookieConfig::default()
                .with_name("__host-sid")
                .with_domain(Some("a.b".into()))),
            Err(ConfigError::HostPrefix)
        );
        assert_eq!(
            bad(CookieConfig::default()
                .with_name("__Secure-sid")
                .with_secure(false)),
            Err(ConfigError::SecurePrefix)
        );
        assert!(bad(CookieConfig::default().with_name("__Secure-sid")).is_ok());
        assert!(bad(CookieConfig::default().with_name("__Host-sid")).is_ok());
        assert_eq!(
            SessionConfig::default()
                .with_trusted_proxy_hops(0)
                .validate(),
            Err(ConfigError::ZeroProxyHops)
        );
        assert_eq!(
            SessionConfig::default()
                .with_max_sessions_per_user(0)
                .validate(),
            Err(ConfigError::ZeroSessionsPerUser)
        );
    }

    /// A touch interval as long as the idle timeout means reading a session never
    /// refreshes it: a user active only through reads is logged out at the idle timeout.
    /// It was accepted without a word.
    #[test]
    fn a_touch_interval_past_the_idle_timeout_is_refused() {
        use std::time::Duration;
        let expiry = |idle: u64, touch: u64| {
            SessionConfig::default().with_expiry(
                crate::ExpiryPolicy::default()
                    .with_idle_timeout(Some(Duration::from_secs(idle)))
                    .with_touch_interval(Duration::from_secs(touch)),
            )
        };
        assert_eq!(
            expiry(1800, 3600).validate(),
            Err(ConfigError::TouchIntervalTooLong {
                interval: Duration::from_secs(3600),
                idle: Duration::from_secs(1800),
            })
        );
        assert!(expiry(1800, 1800).validate().is_err());
        assert!(expiry(1800, 900).validate().is_ok());
        // Without an idle timeout there is nothing to refresh.
        let no_idle = crate::ExpiryPolicy::default()
            .with_idle_timeout(None)
            .with_touch_interval(Duration::from_secs(3600));
        assert!(SessionConfig::default()
            .with_expiry(no_idle)
            .validate()
            .is_ok());
    }
}
