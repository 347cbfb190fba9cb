//! For authors of framework integrations (the tower layer, actix-web): the two calls that
//! wrap a request, and what they exchange. Handlers never need this module.
//!
//! An integration does three things per request:
//! 1. [`SessionManager::session`] with the request's `Cookie` header values and a
//!    [`RequestClient`] (IP and user agent): a lazy [`Session`], no store I/O yet.
//! 2. Hands that `Session` to the handler.
//! 3. After the handler, [`Session::finish`] with the response status: the commit. The
//!    [`Finish`] it returns, passed through [`Finish::response_changes`] (the failure
//!    policy, shared by every integration), says what to do to the response: replace it
//!    (`503` with `Retry-After`, `413`), which `Set-Cookie` to add, whether to add
//!    `Vary: Cookie` and to keep the response out of shared caches.
//!
//! Step 3 is written once, as [`CommitFuture`]: an integration returns it from its service,
//! and implements [`Integration`] to say how its responses are read and changed. It skips
//! the commit of a request that never touched its session, and commits a client-side
//! session without waiting when its lock is free, so neither costs an allocation.
//!
//! ```
//! use std::sync::Arc;
//! use cloakroom::integration::RequestClient;
//! use cloakroom::{MemoryStore, SessionConfig, SessionManager};
//! use http::StatusCode;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let manager = Arc::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap());
//!
//! // 1. A request without a cookie.
//! let session = manager.session(std::iter::empty(), RequestClient::default());
//! // 2. The handler writes.
//! session.insert("theme", "dark").await.unwrap();
//! // 3. The commit: the new session's cookie goes out.
//! let finish = session.finish(StatusCode::OK).await;
//! assert!(finish.error.is_none());
//! let cookie = finish.set_cookie.expect("a new session sets its cookie");
//! assert!(cookie.to_str().unwrap().starts_with("id="));
//! # }
//! ```
//!
//! [`SessionManager::session`]: crate::SessionManager::session
//! [`Session`]: crate::Session
//! [`Session::finish`]: crate::Session::finish

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{HeaderValue, StatusCode};

use crate::codec::RedactedSetCookie;
use crate::config::{OnStoreError, SessionConfig};
#[doc(inline)]
pub use crate::session::{Finish, RequestClient};

mod commit;

pub use commit::{CommitFuture, Integration};

/// Writes the constructors every integration's entry point has, the same for every
/// framework: `new`, `try_new`, `from_manager` and `manager`, on a struct whose one field
/// is `manager: Arc<SessionManager>`. The tower layer and the actix-web middleware use it,
/// so both are built, and documented, alike.
///
/// Not a stable API: for cloakroom's own integrations.
#[doc(hidden)]
#[macro_export]
macro_rules! integration_constructors {
    ($integration:ident) => {
        impl $integration {
            /// Sessions in `store` with the default, secure configuration.
            pub fn new(store: impl $crate::SessionStore) -> Self {
                Self::try_new(store, $crate::SessionConfig::default())
                    .expect("the default configuration is valid")
            }

            /// Sessions in `store` with `config`, or why the configuration cannot work.
            pub fn try_new(
                store: impl $crate::SessionStore,
                config: $crate::SessionConfig,
            ) -> Result<Self, $crate::ConfigError> {
                let manager = $crate::SessionManager::new(store, config)?;
                Ok(Self::from_manager(::std::sync::Arc::new(manager)))
            }

            /// Sessions from an existing manager: one shared with another integration or
            /// with admin code, or a client-side one from `SessionManager::cookie`.
            pub fn from_manager(manager: ::std::sync::Arc<$crate::SessionManager>) -> Self {
                Self { manager }
            }

            /// The manager, for access to the store and configuration.
            pub fn manager(&self) -> &::std::sync::Arc<$crate::SessionManager> {
                &self.manager
            }
        }
    };
}

/// The device-binding endpoints (feature `dbsc`), for integrations other than the tower
/// layer: ask [`dbsc_endpoint`] whether a request is for one, answer it with
/// [`serve_dbsc`] instead of the app, and append [`Finish::headers`] to every response.
#[cfg(feature = "dbsc")]
pub use crate::dbsc::engine::{
    endpoint as dbsc_endpoint, serve as serve_dbsc, Endpoint as DbscEndpoint, Reply as DbscReply,
};

/// What an integration does to the handler's response once the session is committed:
/// the failure policy's verdict and the session's headers, with no framework type in it,
/// so every integration answers a failure the same way and only maps this to its own
/// response type.
///
/// Apply it in this order: replace the response when [`replace_with`](Self::replace_with)
/// says so, set `Retry-After` (replacing any), append `Set-Cookie` (and, with it, set the
/// `Cache-Control` that [`private_cache_control`] returns and remove
/// [`CDN_CACHE_HEADERS`]) and `Vary: cookie`.
/// `Debug` hides the cookie's value (a bearer secret).
#[derive(Default)]
#[must_use]
pub struct ResponseChanges {
    /// Replace the handler's response with an empty one of this status: `503` when the
    /// store failed under [`OnStoreError::ServiceUnavailable`], `413` when this request's
    /// writes, merged with concurrent writers, broke a limit and were not saved, `500`
    /// when they could not be merged at all (an `update` reading a value a concurrent
    /// writer stored as another type) and were not saved.
    pub replace_with: Option<StatusCode>,
    /// The `Retry-After` to set, in seconds: on the policy's own `503`, and on a `503` the
    /// handler returned from a store failure (which carries the default delay).
    pub retry_after: Option<u64>,
    /// A `Set-Cookie` to append. A response carrying it must stay out of shared caches
    /// ([`private_cache_control`]): a proxy or CDN that stored it would hand that cookie
    /// (a login) to every later visitor.
    pub set_cookie: Option<HeaderValue>,
    /// Whether to append `Vary: cookie`.
    pub vary_cookie: bool,
    /// Further headers to append (feature `dbsc`): the device-binding offer of a login.
    #[cfg(feature = "dbsc")]
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for ResponseChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set_cookie = self.set_cookie.as_ref().map(RedactedSetCookie);
        f.debug_struct("ResponseChanges")
            .field("replace_with", &self.replace_with)
            .field("retry_after", &self.retry_after)
            .field("set_cookie", &set_cookie)
            .field("vary_cookie", &self.vary_cookie)
            .finish()
    }
}

impl Finish {
    /// The failure policy: what `config` makes of this outcome, logged once here.
    ///
    /// `store_unavailable_response` is whether the handler's own response is a `503` it
    /// built from a store failure (a [`SessionError`](crate::SessionError) answered with
    /// `?`): that response gets the configured `Retry-After` in place of the default.
    ///
    /// ```
    /// use cloakroom::integration::Finish;
    /// use cloakroom::{SessionConfig, SessionError};
    /// use http::StatusCode;
    ///
    /// let failed = Finish {
    ///     error: Some(SessionError::TooManyConflicts { attempts: 64 }),
    ///     ..Finish::default()
    /// };
    /// let changes = failed.response_changes(&SessionConfig::default(), false);
    /// assert_eq!(changes.replace_with, Some(StatusCode::SERVICE_UNAVAILABLE));
    /// assert_eq!(changes.retry_after, Some(5));
    /// ```
    pub fn response_changes(
        self,
        config: &SessionConfig,
        store_unavailable_response: bool,
    ) -> ResponseChanges {
        let retry_after = match &config.on_store_error {
            OnStoreError::ServiceUnavailable { retry_after } => Some(retry_after.as_secs().max(1)),
            OnStoreError::Anonymous => None,
        };
        let mut changes = ResponseChanges {
            replace_with: None,
            retry_after: retry_after.filter(|_| store_unavailable_response),
            set_cookie: self.set_cookie,
            vary_cookie: self.vary_cookie,
            #[cfg(feature = "dbsc")]
            headers: self.headers,
        };
        if let Some(error) = self.error {
            if error.is_unavailable() && retry_after.is_some() {
                tracing::error!(%error, "session store failed; answering 503");
                // A handler that answered the failure itself keeps its body (an API's JSON
                // error, say); any other response is replaced.
                if !store_unavailable_response {
                    changes.replace_with = Some(StatusCode::SERVICE_UNAVAILABLE);
                }
                changes.retry_after = retry_after;
            } else if error.is_too_large() {
                // Merged with concurrent writers, this request's writes broke a limit at
                // commit: they were not saved, which the client must not read as success.
                tracing::warn!(%error, "session writes refused at commit; answering 413");
                changes.replace_with = Some(StatusCode::PAYLOAD_TOO_LARGE);
                changes.retry_after = None;
            } else if error.is_unavailable() {
                // Fail open: logged, and the handler's response goes out.
                tracing::error!(%error, "session could not be saved");
            } else {
                // Not saved for a reason no retry mends: this request's change could not
                // be merged onto what a concurrent writer saved (an `update` reading the
                // value another request stored as another type), and with it went the
                // request's other writes. The handler's success would be a lie.
                tracing::error!(%error, "session writes could not be saved; answering 500");
                changes.replace_with = Some(StatusCode::INTERNAL_SERVER_ERROR);
                changes.retry_after = None;
            }
        }
        changes
    }
}

/// The `Cache-Control` for a response that sets the session cookie, given the lines the
/// handler set: `None` when they already keep it out of shared caches (a bare `private`,
/// or `no-store`), else those directives without `public` and `s-maxage`, and `private`.
///
/// A shared cache (a proxy, a CDN) that stores a response with `Set-Cookie` hands the
/// cookie to every visitor it serves the response to, and a session cookie is a login:
/// this is the classic leak of a page cached as `public` that started a session. A
/// handler's `max-age` or `no-cache` still applies to the browser's own cache. A
/// `private` that names fields keeps only those fields from shared caches, so it does not
/// count. Integrations also remove the headers that speak to CDNs over `Cache-Control`
/// ([`CDN_CACHE_HEADERS`]).
///
/// ```
/// use cloakroom::integration::private_cache_control;
/// assert_eq!(private_cache_control(std::iter::empty()).unwrap(), "private");
/// let public: [&[u8]; 1] = [b"public, max-age=60"];
/// assert_eq!(private_cache_control(public.into_iter()).unwrap(), "max-age=60, private");
/// let kept: [&[u8]; 1] = [b"no-store"];
/// assert!(private_cache_control(kept.into_iter()).is_none());
/// ```
pub fn private_cache_control<'h>(lines: impl Iterator<Item = &'h [u8]>) -> Option<HeaderValue> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for directive in lines.flat_map(directives) {
        let (name, argument) = match directive.iter().position(|&byte| byte == b'=') {
            Some(at) => (directive[..at].trim_ascii(), Some(&directive[at + 1..])),
            None => (directive, None),
        };
        let is = |wanted: &[u8]| name.eq_ignore_ascii_case(wanted);
        if is(b"no-store") || (is(b"private") && argument.is_none()) {
            return None;
        }
        if !directive.is_empty() && !is(b"public") && !is(b"s-maxage") {
            kept.push(directive);
        }
    }
    kept.push(b"private");
    // The directives come from header values, so this converts; were it not to, the
    // response must still not go out cacheable.
    Some(
        HeaderValue::from_bytes(&kept.join(&b", "[..]))
            .unwrap_or_else(|_| HeaderValue::from_static("private")),
    )
}

/// Headers that tell CDNs how to cache, in preference to `Cache-Control` (`CDN-Cache-Control`,
/// RFC 9213, and `Surrogate-Control`): integrations remove them from a response that sets
/// the session cookie, with [`private_cache_control`].
pub const CDN_CACHE_HEADERS: [&str; 2] = ["cdn-cache-control", "surrogate-control"];

/// The directives of one `Cache-Control` line: split at commas outside quoted strings,
/// trimmed.
fn directives(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = line;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut quoted, mut escaped) = (false, false);
        let end = rest
            .iter()
            .position(|&byte| match (quoted, escaped, byte) {
                (true, true, _) => {
                    escaped = false;
                    false
                }
                (true, false, b'\\') => {
                    escaped = true;
                    false
                }
                (_, _, b'"') => {
                    quoted = !quoted;
                    false
                }
                (false, _, b',') => true,
                _ => false,
            })
            .unwrap_or(rest.len());
        let directive = rest[..end].trim_ascii();
        rest = rest.get(end + 1..).unwrap_or_default();
        Some(directive)
    })
}

/// The client IP in an `X-Forwarded-For`-style list: the entry `hops` from the right, the
/// one the outermost trusted proxy added.
///
/// Every proxy appends the address it received the request from, so only entries from the
/// right are the proxies' own; anything to their left came from the client. The header's
/// lines are one list, in order, and empty elements are ignored. Bytes that are not text,
/// elsewhere in the list, do not matter. No IP when that entry is missing (fewer entries
/// than trusted proxies) or is not an IP (with an optional port, IPv6 optionally in
/// brackets): never another entry, which the client could choose.
///
/// This is the rule [`ClientIpSource::TrustedHeader`](crate::ClientIpSource::TrustedHeader)
/// documents, shared by every integration so none can drift from it.
///
/// ```
/// use cloakroom::integration::forwarded_ip;
/// // The client wrote 6.6.6.6; the one trusted proxy appended the address it saw.
/// let lines: [&[u8]; 1] = [b"6.6.6.6, 203.0.113.7"];
/// assert_eq!(forwarded_ip(lines.into_iter(), 1), "203.0.113.7".parse().ok());
/// ```
pub fn forwarded_ip<'h>(
    lines: impl DoubleEndedIterator<Item = &'h [u8]>,
    hops: usize,
) -> Option<IpAddr> {
    let entry = lines
        .rev()
        .flat_map(|line| line.rsplit(|&byte| byte == b','))
        .map(|entry| entry.trim_ascii())
        .filter(|entry| !entry.is_empty())
        .nth(hops.checked_sub(1)?)?;
    let entry = std::str::from_utf8(entry).ok()?;
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
}

#[cfg(test)]
mod tests {
    use super::private_cache_control;

    fn private(lines: &[&str]) -> Option<String> {
        private_cache_control(lines.iter().map(|line| line.as_bytes()))
            .map(|value| value.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_response_setting_the_cookie_is_made_private() {
        assert_eq!(private(&[]).as_deref(), Some("private"));
        assert_eq!(
            private(&["PUBLIC, Max-Age=60", "S-MaxAge=600, no-cache"]).as_deref(),
            Some("Max-Age=60, no-cache, private")
        );
        // Lines and list elements are one list; empty elements go.
        assert_eq!(
            private(&[" , public ,, must-revalidate"]).as_deref(),
            Some("must-revalidate, private")
        );
    }

    #[test]
    fn a_handlers_own_privacy_is_kept() {
        assert_eq!(private(&["no-store"]), None);
        assert_eq!(private(&["max-age=0", "Private"]), None);
        assert_eq!(private(&["NO-STORE, public"]), None);
    }

    /// A `private` naming fields keeps only those from shared caches: the rest of the
    /// response, `Set-Cookie` with it, could still be stored.
    #[test]
    fn a_private_that_names_fields_is_not_enough() {
        assert_eq!(
            private(&[r#"public, private="X-User", max-age=600"#]).as_deref(),
            Some(r#"private="X-User", max-age=600, private"#)
        );
    }

    /// Commas and directive names inside a quoted string are its text.
    #[test]
    fn quoted_strings_are_read_whole() {
        assert_eq!(
            private(&[r#"public, no-cache="Set-Cookie, private", x="a\",private""#]).as_deref(),
            Some(r#"no-cache="Set-Cookie, private", x="a\",private", private"#)
        );
    }
}
