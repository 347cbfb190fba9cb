//! The [`Session`] handle, the [`SessionManager`] that makes one per request, and the commit
//! engine that saves a request's changes when its response is ready.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{Mutex, MutexGuard};

use crate::change::{Change, ChangeSet, UpdateFn};
use crate::codec;
use crate::config::{ConfigError, Limits, OnStoreError, SessionConfig};
use crate::error::SessionError;
use crate::group_commit::{self, CommitTurn, RideOutcome, Turn};
use crate::id::{SessionHandle, SessionId, StoreKey};
use crate::record::{now, ClientMeta, Record};
use crate::sealed::CookieSessions;
use crate::store::{InsertError, RenameError, SessionStore, StoreError, TouchError, UpdateError};

/// The store and configuration shared by every request: the layer holds one, and so does any
/// framework integration (it is what `cloakroom-actix` builds on).
pub struct SessionManager {
    backend: Backend,
    config: SessionConfig,
    /// Commits to one session from this process take turns (striped by store key), and
    /// the writer whose turn comes commits the queued writers' changes with its own
    /// (the `group_commit` module); writers in other processes are still merged by the
    /// compare-and-set itself.
    commit_locks: Box<[CommitTurn]>,
    /// Client-side sessions: the length of a `Set-Cookie` header with an empty value and
    /// its attributes at their longest (a ten-digit `Max-Age`). It depends only on the
    /// configuration, and every write checks its cookie's size against it.
    cookie_attributes_len: usize,
}

/// Stripes in the commit lock table: enough that unrelated sessions rarely share one.
const COMMIT_LOCK_STRIPES: usize = 1024;

/// Where sessions live.
enum Backend {
    /// Server-side: the cookie holds an ID, the store holds the record.
    Store(Arc<dyn SessionStore>),
    /// Client-side: the cookie holds the sealed record.
    Cookie(CookieSessions),
}

/// The browser's session cookie, as the request brought it.
enum Incoming {
    None,
    Id(SessionId),
    /// Client-side: every value of our cookie, tried in order when first needed.
    Sealed(Vec<String>),
}

impl Incoming {
    fn is_present(&self) -> bool {
        !matches!(self, Self::None)
    }
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SessionManager {
    /// A manager over `store`, after checking `config`.
    pub fn new(store: impl SessionStore, config: SessionConfig) -> Result<Self, ConfigError> {
        Self::from_arc(Arc::new(store), config)
    }

    /// The same, for a store that is already shared.
    pub fn from_arc(
        store: Arc<dyn SessionStore>,
        config: SessionConfig,
    ) -> Result<Self, ConfigError> {
        Self::with_backend(Backend::Store(store), config)
    }

    /// A manager for client-side sessions: the whole record lives in the cookie, sealed
    /// with `sessions`' key ring. See [`sealed`](crate::sealed) for what that cannot do.
    pub fn cookie(sessions: CookieSessions, config: SessionConfig) -> Result<Self, ConfigError> {
        Self::with_backend(Backend::Cookie(sessions), config)
    }

    fn with_backend(backend: Backend, config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
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
        })
    }

    fn commit_lock(&self, key: &StoreKey) -> &CommitTurn {
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
        let name = self.config.cookie.full_name();
        let name = &*name;
        let incoming = match &self.backend {
            Backend::Store(_) => {
                codec::find_session_id(cookie_headers, name).map_or(Incoming::None, Incoming::Id)
            }
            Backend::Cookie(_) => {
                let values = codec::cookie_values(cookie_headers, name);
                if values.is_empty() {
                    Incoming::None
                } else {
                    Incoming::Sealed(values)
                }
            }
        };
        Session {
            inner: Arc::new(Inner {
                manager: Arc::clone(self),
                incoming,
                client,
                state: Mutex::new(State::default()),
            }),
        }
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
    fn to_meta(&self) -> ClientMeta {
        ClientMeta::new(
            self.ip.map(|ip| ip.to_string()),
            self.user_agent.as_ref().and_then(|ua| ua.to_str().ok()),
        )
    }
}

/// What the layer must do to the response once the session is committed.
#[derive(Debug, Default)]
#[must_use]
pub struct Finish {
    /// A `Set-Cookie` to send (new, rotated, refreshed or removal).
    pub set_cookie: Option<HeaderValue>,
    /// Whether the session was read, so the response varies by `Cookie`.
    pub vary_cookie: bool,
    /// A failure to load or save, for the failure policy.
    pub error: Option<SessionError>,
}

/// A user's session as shown in a device list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionSummary {
    /// The public handle.
    pub handle: SessionHandle,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last active.
    #[serde(with = "time::serde::rfc3339")]
    pub last_active_at: OffsetDateTime,
    /// When it dies unless used.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The IP recorded at creation or login.
    pub ip: Option<String>,
    /// The user agent recorded at creation or login.
    pub user_agent: Option<String>,
    /// Whether this is the session of the request that asked.
    pub current: bool,
}

/// Facts about the current session, once it exists in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMetadata {
    /// The public handle.
    pub handle: SessionHandle,
    /// The logged-in user.
    pub user: Option<String>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was last active.
    pub last_active_at: OffsetDateTime,
    /// The idle deadline.
    pub idle_deadline: Option<OffsetDateTime>,
    /// The absolute deadline.
    pub absolute_deadline: Option<OffsetDateTime>,
    /// Whether the cookie is persistent.
    pub persistent: bool,
    /// The IP and user agent recorded at creation or login.
    pub client: ClientMeta,
}

/// The session of one request. Cheap to clone; all clones are the same session.
///
/// Nothing is loaded until the first call; writes are kept and saved after the handler, in
/// one store operation, merged with concurrent writers if another request got there first.
///
/// ```
/// use axum::{routing::post, Router};
/// use cloakroom::{MemoryStore, Session, SessionError, SessionLayer};
///
/// async fn visit(session: Session) -> Result<String, SessionError> {
///     let visits: u64 = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
///     Ok(format!("visit number {visits}"))
/// }
///
/// let app: Router = Router::new()
///     .route("/", post(visit))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

struct Inner {
    manager: Arc<SessionManager>,
    incoming: Incoming,
    client: RequestClient,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    loaded: bool,
    /// Loading failed under the fail-closed policy: the response becomes a 503.
    load_failed: bool,
    /// Loading failed under the fail-open policy: act anonymous, write nothing.
    degraded: bool,
    /// The session's current ID, if a record exists for it in the store.
    id: Option<SessionId>,
    /// The version of that record as last seen.
    base_version: u64,
    /// The record as this request sees it: the stored one with `changes` applied.
    working: Option<Record>,
    changes: ChangeSet,
    rotate: bool,
    /// The session was destroyed in this request (the record is already deleted).
    destroyed: bool,
    /// The cookie must be (re)sent: a new or rotated ID, or a moved persistent expiry.
    send_cookie: bool,
    /// Serialized size of the working data, computed on the first write.
    data_size: Option<usize>,
    /// Client-side sessions: the session's key (for its handle), if it exists in a cookie.
    cookie_key: Option<StoreKey>,
    /// Client-side sessions: the cookie was sealed under a fallback key; re-issue it.
    reissue: bool,
    /// A login is waiting to be committed; then the per-user cap is enforced.
    logging_in: bool,
    finished: bool,
}

impl State {
    /// Whether the request read the session (or tried to): only then is there anything to
    /// commit, and does the response vary by cookie.
    fn touched(&self) -> bool {
        self.loaded || self.load_failed
    }

    /// The key naming the existing session, server- or client-side.
    fn key(&self) -> Option<StoreKey> {
        self.id
            .as_ref()
            .map(SessionId::store_key)
            .or(self.cookie_key)
    }

    fn working(&mut self) -> &mut Record {
        self.working
            .as_mut()
            .expect("a loaded session always has a working record")
    }
}

impl Session {
    /// The server-side store, or why this operation cannot work client-side.
    fn store(&self, operation: &'static str) -> Result<&dyn SessionStore, SessionError> {
        match &self.inner.manager.backend {
            Backend::Store(store) => Ok(&**store),
            Backend::Cookie(_) => Err(SessionError::Unsupported(operation)),
        }
    }

    pub(crate) fn config(&self) -> &SessionConfig {
        &self.inner.manager.config
    }

    /// Finishes a session its request never touched, without waiting: `true` if it was
    /// untouched (there is nothing to commit and no header to send), `false` if
    /// [`finish`](Self::finish) must run.
    #[cfg(feature = "tower")]
    pub(crate) fn finish_untouched(&self) -> bool {
        match self.inner.state.try_lock() {
            Ok(mut state) if !state.touched() && !state.finished => {
                state.finished = true;
                true
            }
            _ => false,
        }
    }

    async fn loaded(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        let mut state = self.inner.state.lock().await;
        if state.load_failed {
            // The response is already a 503: asking a down store again would only wait
            // out another timeout per call.
            return Err(Self::load_failure());
        }
        if !state.loaded {
            self.load(&mut state).await?;
        }
        Ok(state)
    }

    fn load_failure() -> SessionError {
        SessionError::Store(StoreError::Unavailable(
            "the session could not be loaded".into(),
        ))
    }

    async fn writable(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        let state = self.loaded().await?;
        if state.finished {
            return Err(SessionError::Finished);
        }
        Ok(state)
    }

    async fn load(&self, state: &mut State) -> Result<(), SessionError> {
        let time = now();
        state.working = Some(self.config().expiry.new_record(time));
        match (&self.inner.manager.backend, &self.inner.incoming) {
            (Backend::Store(store), Incoming::Id(id)) => {
                let key = id.store_key();
                match store.load(&key).await {
                    Ok(Some(record)) if record.is_live_at(time) => {
                        state.id = Some(id.clone());
                        state.base_version = record.version;
                        state.working = Some(record);
                    }
                    Ok(_) => {}
                    Err(StoreError::Corrupt(reason)) => {
                        tracing::warn!(handle = %key.handle(), %reason, "corrupt session record treated as absent");
                    }
                    Err(error) => return self.unavailable(state, error.into()),
                }
            }
            (Backend::Cookie(sessions), Incoming::Sealed(values)) => {
                let name = self.config().cookie.full_name();
                // Duplicates: the first value that verifies wins; the rest are ignored.
                let opened = values.iter().find_map(|value| sessions.open(&name, value));
                if let Some(opened) = opened.filter(|o| o.record.is_live_at(time)) {
                    state.cookie_key = Some(opened.key);
                    state.reissue = opened.under_fallback;
                    state.base_version = opened.record.version;
                    state.working = Some(opened.record);
                }
            }
            _ => {}
        }
        self.check_epoch(state).await?;
        state.loaded = true;
        Ok(())
    }

    /// Applies the failure policy to a load that could not complete.
    fn unavailable(&self, state: &mut State, error: SessionError) -> Result<(), SessionError> {
        match self.config().on_store_error {
            OnStoreError::ServiceUnavailable { .. } => {
                state.load_failed = true;
                Err(error)
            }
            OnStoreError::Anonymous => {
                tracing::warn!(%error, "sessions unavailable; serving this request anonymously");
                state.id = None;
                state.cookie_key = None;
                state.working = Some(self.config().expiry.new_record(now()));
                state.degraded = true;
                state.loaded = true;
                Ok(())
            }
        }
    }

    /// Revocation by epoch: a logged-in session whose epoch is no longer the user's
    /// current one is logged out here, before the handler sees it.
    async fn check_epoch(&self, state: &mut State) -> Result<(), SessionError> {
        let Some(epochs) = &self.config().epochs else {
            return Ok(());
        };
        let record = state
            .working
            .as_ref()
            .expect("a loaded session has a working record");
        let Some(user) = record.user_id.clone().filter(|_| state.key().is_some()) else {
            return Ok(());
        };
        let current = match epochs.0.current_epoch(&user).await {
            Ok(current) => current,
            Err(error) => return self.unavailable(state, SessionError::Epoch(error)),
        };
        if crate::epoch::matches(record.auth_epoch.as_deref(), current.as_deref()) {
            return Ok(());
        }
        tracing::debug!("session logged out: its epoch was revoked");
        if let (Some(id), Backend::Store(store)) = (state.id.take(), &self.inner.manager.backend) {
            if let Err(error) = store.delete(&id.store_key()).await {
                return self.unavailable(state, error.into());
            }
        }
        self.reset_to_anonymous(state);
        state.destroyed = true;
        Ok(())
    }

    /// Checks the limits for setting `key` to `value` (or removing it) and records the new
    /// size.
    fn check_size(
        &self,
        state: &mut State,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(), SessionError> {
        let data = &state.working.as_ref().expect("loaded").data;
        let total = match state.data_size {
            Some(total) => total,
            None => crate::change::data_size(data),
        };
        state.data_size = Some(total);
        let size =
            crate::change::check_write(&self.config().limits, key, data.get(key), value, total)?;
        state.data_size = Some(size);
        Ok(())
    }

    fn record_change(&self, state: &mut State, change: Change) -> Result<(), SessionError> {
        if let Backend::Cookie(sessions) = &self.inner.manager.backend {
            let mut candidate = state.working().clone();
            change.apply(&mut candidate)?;
            self.check_cookie_size(sessions, state, &candidate)?;
            state.working = Some(candidate);
        } else {
            change.apply(state.working())?;
        }
        state.changes.push(change);
        Ok(())
    }

    /// The largest `Set-Cookie` value browsers keep.
    const MAX_SET_COOKIE: usize = 4096;

    /// Client-side sessions: fails a write, before it happens, if its cookie would not fit.
    fn check_cookie_size(
        &self,
        sessions: &CookieSessions,
        state: &State,
        record: &Record,
    ) -> Result<(), SessionError> {
        let key = state.cookie_key.unwrap_or(StoreKey::from_bytes([0; 32]));
        let attributes = self.inner.manager.cookie_attributes_len;
        let value = sessions
            .sealed_len(
                &key,
                record,
                Self::MAX_SET_COOKIE.saturating_sub(attributes),
            )
            .map_err(SessionError::Serialize)?;
        let size = attributes + value;
        if size > Self::MAX_SET_COOKIE {
            return Err(SessionError::CookieTooLarge {
                size,
                limit: Self::MAX_SET_COOKIE,
            });
        }
        Ok(())
    }

    /// The value under `key`, read as `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.loaded().await?;
        let data = &state.working.as_ref().expect("loaded").data;
        data.get(key)
            .map(|value| {
                T::deserialize(value).map_err(|source| SessionError::Deserialize {
                    key: key.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Sets `key` to `value`. Fails at once, with nothing changed, if the value or the
    /// session would exceed the [`Limits`](crate::Limits).
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(SessionError::Serialize)?;
        let mut state = self.writable().await?;
        self.check_size(&mut state, key, Some(&value))?;
        self.record_change(&mut state, Change::Insert(key.to_owned(), value))
    }

    /// Removes `key`, returning its value read as `T`.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut state = self.writable().await?;
        let old = match state.working().data.get(key) {
            None => return Ok(None),
            Some(value) => T::deserialize(value).map_err(|source| SessionError::Deserialize {
                key: key.to_owned(),
                source,
            })?,
        };
        self.check_size(&mut state, key, None)?;
        self.record_change(&mut state, Change::Remove(key.to_owned()))?;
        Ok(Some(old))
    }

    /// Atomically replaces the value under `key` with `f(current)` and returns it.
    ///
    /// If another request changed the session first, `f` runs again on the fresh value when
    /// the session is saved, so no increment or append is lost. `f` must therefore be a pure
    /// function of its input. The value returned here is computed from this request's view;
    /// call [`save`](Self::save) first and read again for the value as committed.
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned + 'static,
        F: Fn(Option<T>) -> T + Send + Sync + 'static,
    {
        let owned_key = key.to_owned();
        let func: UpdateFn = Arc::new(move |current: Option<&Value>| {
            let current = current.map(T::deserialize).transpose().map_err(|source| {
                SessionError::Deserialize {
                    key: owned_key.clone(),
                    source,
                }
            })?;
            serde_json::to_value(f(current)).map_err(SessionError::Serialize)
        });
        let mut state = self.writable().await?;
        let value = func(state.working().data.get(key))?;
        self.check_size(&mut state, key, Some(&value))?;
        let result = T::deserialize(&value).map_err(|source| SessionError::Deserialize {
            key: key.to_owned(),
            source,
        })?;
        if let Backend::Cookie(sessions) = &self.inner.manager.backend {
            let mut candidate = state.working().clone();
            candidate.data.insert(key.to_owned(), value.clone());
            self.check_cookie_size(sessions, &state, &candidate)?;
        }
        state.working().data.insert(key.to_owned(), value);
        state.changes.push(Change::Update(key.to_owned(), func));
        Ok(result)
    }

    /// Removes every value (the user and the ID stay; see [`logout`](Self::logout)).
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut state = self.writable().await?;
        state.data_size = Some(0);
        self.record_change(&mut state, Change::Clear)
    }

    /// Whether `key` has a value.
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .working
            .as_ref()
            .expect("loaded")
            .data
            .contains_key(key))
    }

    /// The keys that have values.
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .working
            .as_ref()
            .expect("loaded")
            .data
            .keys()
            .cloned()
            .collect())
    }

    /// Gives the session a new ID when it is saved, keeping its data; the old ID is dead
    /// from then on. Use it whenever privilege changes.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut state = self.writable().await?;
        state.rotate = true;
        Ok(())
    }

    /// Logs `user` in: records the user (which feeds the per-user index), records the
    /// client's IP and user agent, and rotates the ID (fixation defense).
    ///
    /// An anonymous session's data is kept (a cart survives login), and so is the data of
    /// a session the same user logs in to again. If the session belongs to another user,
    /// its data is cleared first: the next user of a shared browser never sees the
    /// previous user's values.
    pub async fn login(&self, user: impl Into<String>) -> Result<(), SessionError> {
        let user = user.into();
        let epoch = match &self.config().epochs {
            Some(epochs) => epochs
                .0
                .current_epoch(&user)
                .await
                .map_err(SessionError::Epoch)?,
            None => None,
        };
        let mut state = self.writable().await?;
        state.rotate = true;
        state.logging_in = true;
        let previous = state.working().user_id.as_deref();
        if previous.is_some_and(|previous| previous != user) {
            // Another user's data must not pass to this one (Bob logging in on the
            // browser Alice left logged in); an anonymous visitor's cart does.
            state.data_size = Some(0);
            self.record_change(&mut state, Change::Clear)?;
        }
        self.record_change(&mut state, Change::SetUser(Some(user)))?;
        self.record_change(&mut state, Change::SetEpoch(epoch))?;
        self.record_change(&mut state, Change::SetClient(self.inner.client.to_meta()))
    }

    /// Destroys the session now: the record is deleted from the store and the response
    /// removes the cookie. Writes after this start a fresh anonymous session.
    pub async fn logout(&self) -> Result<(), SessionError> {
        let mut state = self.writable().await?;
        if let Some(id) = state.id.take() {
            self.store("logout")?.delete(&id.store_key()).await?;
        }
        self.reset_to_anonymous(&mut state);
        state.destroyed = true;
        Ok(())
    }

    /// The same as [`logout`](Self::logout).
    pub async fn destroy(&self) -> Result<(), SessionError> {
        self.logout().await
    }

    fn reset_to_anonymous(&self, state: &mut State) {
        state.id = None;
        state.base_version = 0;
        state.working = Some(self.config().expiry.new_record(now()));
        state.changes.clear();
        state.rotate = false;
        state.send_cookie = false;
        state.data_size = None;
        state.cookie_key = None;
        state.reissue = false;
        state.logging_in = false;
    }

    /// Chooses a persistent ("remember me") cookie, which survives a browser restart until
    /// the session's deadline, or a browser-session cookie.
    pub async fn set_persistent(&self, persistent: bool) -> Result<(), SessionError> {
        let mut state = self.writable().await?;
        if state.working().persistent != persistent {
            state.send_cookie = true;
            self.record_change(&mut state, Change::SetPersistent(persistent))?;
        }
        Ok(())
    }

    /// The logged-in user.
    pub async fn user(&self) -> Result<Option<String>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.working.as_ref().expect("loaded").user_id.clone())
    }

    /// The public handle of the stored session; `None` until it is first saved.
    pub async fn handle(&self) -> Result<Option<SessionHandle>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.key().map(|key| key.handle()))
    }

    /// Times, deadlines and user of the stored session; `None` until it is first saved.
    pub async fn metadata(&self) -> Result<Option<SessionMetadata>, SessionError> {
        let state = self.loaded().await?;
        let record = state.working.as_ref().expect("loaded");
        Ok(state.key().map(|key| SessionMetadata {
            handle: key.handle(),
            user: record.user_id.clone(),
            created_at: record.created_at,
            last_active_at: record.last_active_at,
            idle_deadline: record.idle_deadline,
            absolute_deadline: record.absolute_deadline,
            persistent: record.persistent,
            client: record.client.clone(),
        }))
    }

    /// When the session dies unless used again (the earlier deadline).
    pub async fn expires_at(&self) -> Result<Option<OffsetDateTime>, SessionError> {
        let state = self.loaded().await?;
        Ok(state.working.as_ref().expect("loaded").expires_at())
    }

    /// Saves the changes so far now instead of after the handler, merging with concurrent
    /// writers; afterwards reads show the committed values.
    pub async fn save(&self) -> Result<(), SessionError> {
        let mut state = self.writable().await?;
        if state.load_failed {
            return Ok(());
        }
        self.commit(&mut state).await
    }

    /// The live sessions of the logged-in user; empty when anonymous.
    pub async fn list_user_sessions(&self) -> Result<Vec<SessionSummary>, SessionError> {
        let store = self.store("listing a user's sessions")?;
        let (user, current) = self.user_and_key().await?;
        let Some(user) = user else {
            return Ok(Vec::new());
        };
        let mut entries = store.list_for_user(&user).await?;
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.record.last_active_at));
        Ok(entries
            .into_iter()
            .map(|entry| SessionSummary {
                handle: entry.key.handle(),
                created_at: entry.record.created_at,
                last_active_at: entry.record.last_active_at,
                expires_at: entry.record.expires_at(),
                ip: entry.record.client.ip,
                user_agent: entry.record.client.user_agent,
                current: Some(entry.key) == current,
            })
            .collect())
    }

    /// Revokes one of the logged-in user's sessions by handle. `Ok(false)` if the handle is
    /// not one of theirs. Revoking the current session is a [`logout`](Self::logout).
    pub async fn revoke_user_session(&self, handle: &SessionHandle) -> Result<bool, SessionError> {
        let store = self.store("revoking one session")?;
        let (user, current) = self.user_and_key().await?;
        let Some(user) = user else {
            return Ok(false);
        };
        if current.is_some_and(|key| handle.matches(&key)) {
            self.logout().await?;
            return Ok(true);
        }
        let entries = store.list_for_user(&user).await?;
        match entries.iter().find(|entry| handle.matches(&entry.key)) {
            Some(entry) => Ok(store.delete(&entry.key).await?),
            None => Ok(false),
        }
    }

    /// Revokes every session of the logged-in user but this one ("log out other devices");
    /// returns how many.
    pub async fn revoke_other_sessions(&self) -> Result<u64, SessionError> {
        let store = self.store("revoking other sessions")?;
        let (user, current) = self.user_and_key().await?;
        match user {
            Some(user) => Ok(store.delete_for_user(&user, current.as_ref()).await?),
            None => Ok(0),
        }
    }

    async fn user_and_key(&self) -> Result<(Option<String>, Option<StoreKey>), SessionError> {
        let state = self.loaded().await?;
        // The index knows only saved users: a login in this request is not in it yet.
        let user = match &state.id {
            Some(_) => state.working.as_ref().expect("loaded").user_id.clone(),
            None => None,
        };
        Ok((user, state.id.as_ref().map(SessionId::store_key)))
    }

    /// Commits the session for a response with `status` and says what the response needs.
    /// Layers call it once; later calls return an empty [`Finish`].
    pub async fn finish(&self, status: StatusCode) -> Finish {
        let mut state = self.inner.state.lock().await;
        if state.finished {
            return Finish::default();
        }
        state.finished = true;
        let mut finish = Finish {
            vary_cookie: state.touched(),
            ..Finish::default()
        };
        if state.load_failed {
            finish.error = Some(Self::load_failure());
            return finish;
        }
        if !state.loaded {
            return finish;
        }
        if !status.is_server_error() || self.config().save_on_server_error {
            if let Err(error) = self.commit(&mut state).await {
                finish.error = Some(error);
            }
        }
        let config = &self.config().cookie;
        let record = state.working.as_ref().expect("loaded");
        let max_age = record.persistent.then(|| {
            record
                .expires_at()
                .map_or(Duration::from_secs(400 * 24 * 3600), |deadline| {
                    Duration::try_from(deadline - now()).unwrap_or_default()
                })
        });
        match (&self.inner.manager.backend, state.send_cookie) {
            (Backend::Store(_), true) if state.id.is_some() => {
                let id = state.id.as_ref().expect("checked");
                finish.set_cookie = Some(codec::session_cookie(config, id, max_age));
            }
            (Backend::Cookie(sessions), true) if state.cookie_key.is_some() => {
                let key = state.cookie_key.expect("checked");
                match sessions.seal(&config.full_name(), &key, record) {
                    Ok(value) => {
                        finish.set_cookie = Some(codec::value_cookie(config, &value, max_age))
                    }
                    Err(error) => finish.error = Some(SessionError::Serialize(error)),
                }
            }
            _ if state.destroyed && self.inner.incoming.is_present() => {
                finish.set_cookie = Some(codec::removal_cookie(config));
            }
            _ => {}
        }
        finish
    }

    /// Saves the change set: insert, rename, compare-and-set with merge on conflict, or a
    /// throttled touch.
    async fn commit(&self, state: &mut State) -> Result<(), SessionError> {
        if !state.loaded || state.degraded {
            return Ok(());
        }
        let time = now();
        if let Backend::Cookie(_) = &self.inner.manager.backend {
            self.commit_cookie(state, time);
            return Ok(());
        }
        match state.id.clone() {
            None => self.commit_new(state, time).await?,
            Some(id) => self.commit_existing(state, id, time).await?,
        }
        if std::mem::take(&mut state.logging_in) {
            self.enforce_session_cap(state).await;
        }
        Ok(())
    }

    /// After a login is saved: revokes the user's least recently active other sessions
    /// beyond [`SessionConfig::max_sessions_per_user`]. Best effort: the login itself
    /// succeeded, so a store failure here is logged and the next login tries again.
    async fn enforce_session_cap(&self, state: &State) {
        let (Some(cap), Backend::Store(store)) = (
            self.config().max_sessions_per_user,
            &self.inner.manager.backend,
        ) else {
            return;
        };
        let (Some(id), Some(record)) = (&state.id, &state.working) else {
            return;
        };
        let Some(user) = &record.user_id else {
            return;
        };
        let mut others = match store.list_for_user(user).await {
            Ok(entries) if entries.len() > cap => entries,
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, "could not list the user's sessions to enforce the cap");
                return;
            }
        };
        let current = id.store_key();
        others.retain(|entry| entry.key != current);
        others.sort_by_key(|entry| (entry.record.last_active_at, entry.record.created_at));
        // The current session counts against the cap too.
        let excess = (others.len() + 1).saturating_sub(cap);
        for entry in others.iter().take(excess) {
            match store.delete(&entry.key).await {
                Ok(_) => {
                    tracing::debug!(handle = %entry.key.handle(), "session revoked: over the per-user cap")
                }
                Err(error) => {
                    tracing::warn!(%error, "could not revoke a session over the per-user cap");
                    return;
                }
            }
        }
    }

    /// Client-side sessions: no store to write, only decide whether the cookie must be
    /// (re)issued, and with which times.
    fn commit_cookie(&self, state: &mut State, time: OffsetDateTime) {
        let expiry = &self.config().expiry;
        let changed = !state.changes.is_empty() || state.rotate;
        if state.cookie_key.is_none() {
            let record = state.working();
            if !changed || (record.data.is_empty() && record.user_id.is_none()) {
                state.changes.clear();
                return;
            }
            let fresh = expiry.new_record(time);
            record.created_at = time;
            record.idle_deadline = fresh.idle_deadline;
            record.absolute_deadline = fresh.absolute_deadline;
            record.version = 0;
            if record.client == ClientMeta::default() {
                record.client = self.inner.client.to_meta();
            }
            state.cookie_key = Some(SessionId::generate().store_key());
        }
        if changed || state.reissue || state.send_cookie {
            let record = state.working();
            record.last_active_at = time;
            record.idle_deadline = expiry.idle_deadline(time);
            record.version += 1;
            state.send_cookie = true;
        } else if let Some(touch) = expiry.touch_due(state.working(), time) {
            state.working().apply_touch(&touch);
            state.send_cookie = true;
        }
        state.changes.clear();
        state.rotate = false;
        state.reissue = false;
    }

    async fn commit_new(
        &self,
        state: &mut State,
        time: OffsetDateTime,
    ) -> Result<(), SessionError> {
        let record = state.working();
        if record.data.is_empty() && record.user_id.is_none() {
            // Nothing worth a record: visitors who never write get none.
            state.changes.clear();
            return Ok(());
        }
        let expiry = &self.config().expiry;
        let mut record = record.clone();
        let fresh = expiry.new_record(time);
        record.created_at = time;
        record.last_active_at = time;
        record.idle_deadline = fresh.idle_deadline;
        record.absolute_deadline = fresh.absolute_deadline;
        record.version = 1;
        if record.client == ClientMeta::default() {
            record.client = self.inner.client.to_meta();
        }
        for _ in 0..3 {
            let id = SessionId::generate();
            match self.store("insert")?.insert(&id.store_key(), &record).await {
                Ok(()) => {
                    state.id = Some(id);
                    state.base_version = 1;
                    state.working = Some(record);
                    state.changes.clear();
                    state.rotate = false;
                    state.send_cookie = true;
                    return Ok(());
                }
                Err(InsertError::Duplicate) => continue,
                Err(InsertError::Store(error)) => return Err(error.into()),
            }
        }
        Err(
            StoreError::backend("three fresh 256-bit IDs collided; the store is misbehaving")
                .into(),
        )
    }

    async fn commit_existing(
        &self,
        state: &mut State,
        mut id: SessionId,
        time: OffsetDateTime,
    ) -> Result<(), SessionError> {
        let store = self.store("update")?;
        let stripe = self.inner.manager.commit_lock(&id.store_key());
        // A plain write that has to wait offers its changes to the writers ahead of it,
        // one of which may commit them with its own; a rotation or a touch commits alone,
        // and so does a writer that finds no one committing.
        let (mut turn, ticket) = match stripe.last.try_lock() {
            Ok(turn) => (turn, None),
            Err(_) => {
                let ticket = (!state.rotate && !state.changes.is_empty())
                    .then(|| stripe.offer(id.store_key(), state.changes.clone()));
                (stripe.wait_turn().await, ticket)
            }
        };
        let mut riders = Vec::new();
        if let Some(ticket) = ticket {
            match stripe.settle(&id.store_key(), ticket) {
                Turn::Settled(outcome) => return self.rode(state, outcome),
                Turn::Commit(taken) => riders = taken,
            }
        }
        if state.rotate {
            let mut renamed = false;
            for _ in 0..3 {
                let new_id = SessionId::generate();
                match store.rename(&id.store_key(), &new_id.store_key()).await {
                    Ok(()) => {
                        id = new_id;
                        state.id = Some(id.clone());
                        state.send_cookie = true;
                        renamed = true;
                        break;
                    }
                    Err(RenameError::Duplicate) => continue,
                    Err(RenameError::Missing) => return self.gone(state),
                    Err(RenameError::Store(error)) => return Err(error.into()),
                }
            }
            if !renamed {
                return Err(StoreError::backend(
                    "three fresh 256-bit IDs collided; the store is misbehaving",
                )
                .into());
            }
            state.rotate = false;
        }
        let key = id.store_key();
        let expiry = &self.config().expiry;
        if state.changes.is_empty() {
            if let Some(touch) = expiry.touch_due(state.working(), time) {
                match store.touch(&key, &touch).await {
                    Ok(()) => {
                        let record = state.working();
                        record.apply_touch(&touch);
                        state.send_cookie |= state.working().persistent;
                    }
                    Err(TouchError::Missing) => return self.gone(state),
                    // An idle refresh is best effort: the request itself succeeded.
                    Err(TouchError::Store(error)) => {
                        tracing::warn!(handle = %key.handle(), %error, "idle refresh failed");
                    }
                }
            }
            return Ok(());
        }
        // What to compare-and-set: this request's view, rebased on what a writer that held
        // the turn before us committed if that is newer, plus the riders' changes. If this
        // request's own changes no longer apply to a fresher record, the riders' are still
        // committed and this request gets the error.
        let limits = &self.config().limits;
        let mut base_version = state.base_version;
        let mut own_error = None;
        // The size of the candidate's data: this request's own when it is the candidate.
        let mut total = state.data_size;
        let mut candidate = match turn.as_ref() {
            Some((committed_key, committed))
                if *committed_key == key && committed.version > state.base_version =>
            {
                base_version = committed.version;
                total = None;
                rebased(
                    committed.clone(),
                    &state.changes,
                    limits,
                    &mut total,
                    &mut own_error,
                )
            }
            _ => state.working().clone(),
        };
        group_commit::board(&mut candidate, &mut riders, limits, &mut total);
        let max_attempts = self.config().max_commit_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if riders.is_empty() {
                if let Some(error) = own_error {
                    return Err(error);
                }
            }
            candidate.last_active_at = time;
            candidate.idle_deadline = expiry.idle_deadline(time);
            match store.update(&key, &candidate, base_version).await {
                Ok(()) => {
                    candidate.version = base_version + 1;
                    for rider in riders {
                        rider.answer(RideOutcome::Committed(candidate.clone()));
                    }
                    *turn = (stripe.queued.load(Ordering::SeqCst) > 0)
                        .then(|| (key, candidate.clone()));
                    if let Some(error) = own_error {
                        return Err(error);
                    }
                    return self.rode(state, RideOutcome::Committed(candidate));
                }
                Err(UpdateError::Conflict) => {
                    if attempt >= max_attempts {
                        let error = SessionError::TooManyConflicts { attempts: attempt };
                        group_commit::fail_all(&mut riders, &error);
                        return Err(error);
                    }
                    // The first conflict is the expected one: this request loaded before
                    // the writers queued ahead of it on the commit lock committed. They are
                    // done, and the rest of this process queues behind us, so retry at
                    // once; only a writer in another process can make it conflict again.
                    if attempt > 1 {
                        backoff(attempt - 1).await;
                    }
                    match store.load(&key).await {
                        Ok(None) => {
                            for rider in riders {
                                rider.answer(RideOutcome::Gone);
                            }
                            return self.gone(state);
                        }
                        Ok(Some(fresh)) => {
                            base_version = fresh.version;
                            total = None;
                            candidate =
                                rebased(fresh, &state.changes, limits, &mut total, &mut own_error);
                            group_commit::board(&mut candidate, &mut riders, limits, &mut total);
                        }
                        Err(error) => {
                            let error = SessionError::from(error);
                            group_commit::fail_all(&mut riders, &error);
                            return Err(error);
                        }
                    }
                }
                Err(UpdateError::Missing) => {
                    for rider in riders {
                        rider.answer(RideOutcome::Gone);
                    }
                    return self.gone(state);
                }
                Err(UpdateError::Store(error)) => {
                    let error = SessionError::from(error);
                    group_commit::fail_all(&mut riders, &error);
                    return Err(error);
                }
            }
        }
    }

    /// Takes in the outcome of a commit: this request's own, or the one its changes rode on.
    fn rode(&self, state: &mut State, outcome: RideOutcome) -> Result<(), SessionError> {
        match outcome {
            RideOutcome::Committed(record) => {
                state.base_version = record.version;
                state.send_cookie |= record.persistent;
                state.working = Some(record);
                state.changes.clear();
                state.data_size = None;
                Ok(())
            }
            RideOutcome::Gone => self.gone(state),
            RideOutcome::Failed(error) => Err(error),
        }
    }

    /// The record was deleted (logout, revoke, expiry) while this request ran. Its writes
    /// are dropped rather than resurrect it. No removal cookie is sent: the deletion may
    /// have been a concurrent rotation whose new cookie must not be overwritten, and the
    /// dead ID is anonymous on its next use anyway.
    fn gone(&self, state: &mut State) -> Result<(), SessionError> {
        tracing::debug!("session deleted concurrently; its pending writes were dropped");
        self.reset_to_anonymous(state);
        Ok(())
    }
}

/// `fresh` with this request's `changes` applied, within the size `limits`. If they no
/// longer apply (or already failed to), `fresh` as it is, with the reason in `error`: the
/// riders' changes are still committed on it.
fn rebased(
    mut fresh: Record,
    changes: &ChangeSet,
    limits: &Limits,
    total: &mut Option<usize>,
    error: &mut Option<SessionError>,
) -> Record {
    if error.is_none() {
        if let Err(reason) = changes.apply_within(&mut fresh, limits, total) {
            *error = Some(reason);
        }
    }
    fresh
}

/// Jittered exponential backoff between compare-and-set attempts, so contending writers
/// spread out instead of colliding again.
async fn backoff(attempt: u32) {
    let cap_micros = (250u64 << attempt.min(7)).min(20_000);
    let random = u64::from(getrandom::u32().unwrap_or(0x9e37_79b9));
    tokio::time::sleep(Duration::from_micros(random % cap_micros)).await;
}
