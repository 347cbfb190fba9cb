//! The [`SessionManager`]: the store (or the client-side sealing) and the configuration
//! shared by every request, and what it knows of each request's client.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::Session;
use crate::codec::{self, IdCandidates};
use crate::config::{ConfigError, SessionConfig};
use crate::group_commit::CommitTurn;
use crate::id::IdFormat;
use crate::id::StoreKey;
use crate::record::ClientMeta;
use crate::redact::debug_showing;
use crate::sealed::{CookieCodec, CookieSessions};
use crate::store::SessionStore;
use crate::telemetry::InstrumentedStore;

/// The store and configuration shared by every request: the layer holds one, and so does any
/// framework integration (it is what `cloakroom-actix` builds on).
pub struct SessionManager {
    pub(super) backend: Backend,
    pub(super) config: SessionConfig,
    /// Commits to one session from this process take turns (striped by store key), and
    /// the writer whose turn comes commits the queued writers' changes with its own
    /// (the `group_commit` module); writers in other processes are still merged by the
    /// compare-and-set itself.
    commit_locks: Box<[CommitTurn]>,
    /// Client-side sessions: the length of a `Set-Cookie` header with an empty value and
    /// its attributes at their longest (a ten-digit `Max-Age`). It depends only on the
    /// configuration, and every write checks its cookie's size against it.
    pub(super) cookie_attributes_len: usize,
    /// How server-side IDs are written in the cookie and keyed; `None`: cloakroom's own.
    pub(super) id_format: Option<Arc<dyn IdFormat>>,
}

/// Stripes in the commit lock table: enough that unrelated sessions rarely share one.
const COMMIT_LOCK_STRIPES: usize = 1024;

/// Where sessions live.
pub(super) enum Backend {
    /// Server-side: the cookie holds an ID, the store holds the record.
    Store(Arc<dyn SessionStore>),
    /// Client-side: the cookie holds the sealed record.
    Cookie(Arc<dyn CookieCodec>),
}

/// The browser's session cookie, as the request brought it.
// One per request, inline in the handle's `Arc`: boxing the candidates would cost every
// request with a cookie the allocation that holding them inline saves.
#[allow(clippy::large_enum_variant)]
pub(super) enum Incoming {
    None,
    /// Server-side: our cookie, with no well-formed ID in it.
    Malformed,
    /// Server-side: the well-formed IDs, tried in order until the store knows one.
    Ids(IdCandidates),
    /// Client-side: every value of our cookie, tried in order when first needed.
    Sealed(Vec<String>),
    /// Client-side: the header lines the session keeps, where the values of our cookie
    /// (if any) are read when first needed, not copied.
    SealedInLines,
}

// The backend (a store, or the cookie codec and its keys) stays out of logs.
debug_showing!(SessionManager { config });

impl SessionManager {
    /// A manager over `store`, after checking `config`.
    pub fn new(store: impl SessionStore, config: SessionConfig) -> Result<Self, ConfigError> {
        Self::from_arc(Arc::new(store), config)
    }

    /// The same, for a store that is already shared.
    ///
    /// The manager records store metrics and spans (see [`telemetry`](crate::telemetry)):
    /// it keeps the store wrapped in an [`InstrumentedStore`], which [`store`](Self::store)
    /// returns.
    pub fn from_arc(
        store: Arc<dyn SessionStore>,
        config: SessionConfig,
    ) -> Result<Self, ConfigError> {
        Self::with_backend(Backend::Store(InstrumentedStore::wrap(store)), config)
    }

    /// A manager for client-side sessions: the whole record lives in the cookie, sealed
    /// with `sessions`' key ring. See [`sealed`](crate::sealed) for what that cannot do.
    pub fn cookie(sessions: CookieSessions, config: SessionConfig) -> Result<Self, ConfigError> {
        Self::cookie_codec(Arc::new(sessions), config)
    }

    /// A manager for client-side sessions in a cookie format of another application (see
    /// [`CookieCodec`]), with the same engine, API and checks as [`cookie`](Self::cookie).
    pub fn cookie_codec(
        codec: Arc<dyn CookieCodec>,
        config: SessionConfig,
    ) -> Result<Self, ConfigError> {
        Self::with_backend(Backend::Cookie(codec), config)
    }

    /// Server-side sessions whose ID cookie is written as `format` says (see
    /// [`IdFormat`]), to share a store with an application that writes it so. Client-side
    /// sessions ignore it.
    pub fn with_id_format(mut self, format: Arc<dyn IdFormat>) -> Self {
        self.id_format = Some(format);
        self
    }

    pub(crate) fn id_format(&self) -> Option<&dyn IdFormat> {
        self.id_format.as_deref()
    }

    fn with_backend(backend: Backend, config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        #[cfg(feature = "dbsc")]
        if config.device_binding.is_some() && matches!(backend, Backend::Cookie(_)) {
            return Err(ConfigError::DeviceBindingNeedsStore);
        }
        let commit_locks = (0..COMMIT_LOCK_STRIPES)
            .map(|_| CommitTurn::default())
            .collect();
        let cookie_attributes_len =
            codec::value_cookie(&config.cookie, "", Some(Duration::from_secs(9_999_999_999))).len();
        Ok(Self {
            backend,
            config,
            commit_locks,
            cookie_attributes_len,
            id_format: None,
        })
    }

    pub(super) fn commit_lock(&self, key: &StoreKey) -> &CommitTurn {
        let bytes = key.as_bytes();
        let stripe =
            usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % self.commit_locks.len();
        &self.commit_locks[stripe]
    }

    /// The store; `None` for client-side sessions.
    pub fn store(&self) -> Option<&Arc<dyn SessionStore>> {
        match &self.backend {
            Backend::Store(store) => Some(store),
            Backend::Cookie(_) => None,
        }
    }

    /// The client-side cookie format; `None` for a store. For the test kit, which seals
    /// seeded sessions as the engine does.
    #[cfg(feature = "testing")]
    pub(crate) fn cookie_sessions(&self) -> Option<&dyn CookieCodec> {
        match &self.backend {
            Backend::Store(_) => None,
            Backend::Cookie(sessions) => Some(&**sessions),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The session for one request, given its `Cookie` header values. Does no I/O: the
    /// store is first asked when the handler first touches the session.
    pub fn session<'a>(
        self: &Arc<Self>,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        client: RequestClient,
    ) -> Session {
        #[cfg(feature = "dbsc")]
        if self.config.device_binding.is_some() {
            // The bound cookie is read on load, so the lines are kept (as the layer does).
            let lines: Vec<HeaderValue> = cookie_headers
                .into_iter()
                .filter_map(|line| HeaderValue::from_bytes(line).ok())
                .collect();
            let cookies = CookieHeaders::from_values(lines.iter());
            return Session::new(Arc::clone(self), cookies, None, client);
        }
        if matches!(self.backend, Backend::Cookie(_)) {
            return self.session_keeping_lines(cookie_headers, client);
        }
        let incoming = self.incoming(cookie_headers);
        Session::new(
            Arc::clone(self),
            CookieHeaders::default(),
            Some(incoming),
            client,
        )
    }

    /// A client-side session that keeps a copy of its request's `Cookie` line, as the
    /// tower layer keeps the line itself, and reads its cookie from it when first
    /// touched: one exactly sized copy instead of a `String` per value and a `Vec` of them,
    /// and no parsing for a request that never touches its session. Several lines (rare)
    /// are parsed at once, as before.
    fn session_keeping_lines<'a>(
        self: &Arc<Self>,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        client: RequestClient,
    ) -> Session {
        let mut lines = cookie_headers.into_iter();
        let Some(first) = lines.next() else {
            return Session::new(Arc::clone(self), CookieHeaders::None, None, client);
        };
        match lines.next() {
            None => Session::new(
                Arc::clone(self),
                CookieHeaders::Copied(first.into()),
                None,
                client,
            ),
            Some(second) => {
                let incoming = self.incoming([first, second].into_iter().chain(lines));
                Session::new(
                    Arc::clone(self),
                    CookieHeaders::None,
                    Some(incoming),
                    client,
                )
            }
        }
    }

    /// The same, with the `Cookie` header values kept as they are and read only when the
    /// handler first touches the session: what the tower layer uses, so a request that
    /// never touches its session does not parse its cookies.
    #[cfg(feature = "tower")]
    pub(crate) fn lazy_session(
        self: &Arc<Self>,
        cookies: CookieHeaders,
        client: RequestClient,
    ) -> Session {
        Session::new(Arc::clone(self), cookies, None, client)
    }

    /// What the header lines a session keeps bring for this manager's cookie. A
    /// client-side session's values stay in `lines`, and are only looked for when
    /// [`open_cookie`](Session::open_cookie) reads them: one pass over the header.
    pub(super) fn incoming_in(&self, lines: &CookieHeaders) -> Incoming {
        match (&self.backend, lines) {
            (Backend::Cookie(_), CookieHeaders::None) => Incoming::None,
            (Backend::Cookie(_), _) => Incoming::SealedInLines,
            (Backend::Store(_), _) => self.incoming(lines.iter()),
        }
    }

    /// What the request's `Cookie` header values bring for this manager's cookie.
    pub(super) fn incoming<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Incoming {
        let name = self.config.cookie.full_name();
        let name = &*name;
        match &self.backend {
            Backend::Store(_) => {
                let ids = IdCandidates::parse_with(cookie_headers, name, self.id_format());
                if ids.is_empty() && ids.saw_malformed() {
                    Incoming::Malformed
                } else if ids.is_empty() {
                    Incoming::None
                } else {
                    Incoming::Ids(ids)
                }
            }
            Backend::Cookie(_) => {
                let values = codec::cookie_values(cookie_headers, name);
                if values.is_empty() {
                    Incoming::None
                } else {
                    Incoming::Sealed(values)
                }
            }
        }
    }
}

/// A request's `Cookie` header values, kept until its session is first touched. Cloning a
/// header value shares its bytes; most requests have one `Cookie` line or none.
#[derive(Debug, Default)]
// Without the tower layer or DBSC, nothing keeps `http` header lines: `One` and `Many`
// are never made.
#[cfg_attr(not(any(feature = "tower", feature = "dbsc")), allow(dead_code))]
pub(crate) enum CookieHeaders {
    /// No `Cookie` header.
    #[default]
    None,
    /// One line.
    One(HeaderValue),
    /// Several lines, in order.
    Many(Vec<HeaderValue>),
    /// A copy of the one line, from a framework whose header type is not `http`'s.
    Copied(Box<[u8]>),
}

impl CookieHeaders {
    /// The values of an `http` request's `Cookie` lines.
    #[cfg(any(feature = "tower", feature = "dbsc"))]
    pub(crate) fn from_values<'a>(mut values: impl Iterator<Item = &'a HeaderValue>) -> Self {
        let Some(first) = values.next() else {
            return Self::None;
        };
        match values.next() {
            None => Self::One(first.clone()),
            Some(second) => {
                let mut all = vec![first.clone(), second.clone()];
                all.extend(values.cloned());
                Self::Many(all)
            }
        }
    }

    /// The lines' bytes, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let (one, many): (Option<&[u8]>, &[HeaderValue]) = match self {
            Self::None => (None, &[]),
            Self::One(value) => (Some(value.as_bytes()), &[]),
            Self::Many(values) => (None, values),
            Self::Copied(line) => (Some(line), &[]),
        };
        one.into_iter()
            .chain(many.iter().map(HeaderValue::as_bytes))
    }
}

/// What the layer knows of the client, kept cheap until a session is created or logs in.
#[derive(Clone, Debug, Default)]
pub struct RequestClient {
    /// The client IP, per [`ClientIpSource`](crate::ClientIpSource).
    pub ip: Option<IpAddr>,
    /// The raw `User-Agent` header.
    pub user_agent: Option<HeaderValue>,
}

impl RequestClient {
    pub(super) fn to_meta(&self) -> ClientMeta {
        ClientMeta::new(
            self.ip.map(|ip| ip.to_string()),
            self.user_agent.as_ref().and_then(|ua| ua.to_str().ok()),
        )
    }
}
