//! The [`Session`] handle: the typed API a handler calls.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tracing::instrument::{Instrument, Instrumented};

use super::info::SessionMetadata;
use super::manager::{Backend, CookieHeaders, Incoming, RequestClient, SessionManager};
use super::state::{Origin, Slot, View};
use crate::change::{self, Change, Field, Undo, UpdateFn};
use crate::config::SessionConfig;
use crate::error::SessionError;
use crate::id::SessionHandle;
use crate::record::{now, unstorable, MAX_EPOCH_BYTES, MAX_USER_ID_BYTES};
use crate::store::SessionStore;
use crate::telemetry::{self, names};

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
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

pub(super) struct Inner {
    pub(super) manager: Arc<SessionManager>,
    /// The request's `Cookie` header values as they came, read into `incoming` when the
    /// session is first touched: a request that never touches it parses nothing.
    pub(super) cookies: CookieHeaders,
    incoming: OnceLock<Incoming>,
    pub(super) client: RequestClient,
    pub(super) slot: Mutex<Slot>,
    /// Whether the session was touched, or finished untouched ([`FRESH`], [`TOUCHED`],
    /// [`FINISHED_UNTOUCHED`]): the layer's check after the handler is one atomic
    /// operation instead of a lock.
    state: AtomicU8,
    /// The request's `cloakroom.session` span (see [`telemetry`]).
    span: tracing::Span,
}

/// [`Inner::state`]: nothing happened yet.
const FRESH: u8 = 0;
/// [`Inner::state`]: the handler touched the session: it has to be finished under the lock.
const TOUCHED: u8 = 1;
/// [`Inner::state`]: finished without having been touched: writes are refused from then on.
const FINISHED_UNTOUCHED: u8 = 2;

impl Session {
    /// A session whose cookie is `incoming`, or, when `None`, is read from `cookies` on
    /// first use.
    pub(super) fn new(
        manager: Arc<SessionManager>,
        cookies: CookieHeaders,
        incoming: Option<Incoming>,
        client: RequestClient,
    ) -> Self {
        let span = session_span();
        // The large parts (the lock's slot, the parsed cookie) start as constants and are
        // filled in place: built on the stack and moved, they cost every request three
        // copies of the whole handle, about 180 instructions.
        let session = Self {
            inner: Arc::new(Inner {
                manager,
                cookies,
                incoming: OnceLock::new(),
                client,
                slot: Mutex::const_new(Slot::new()),
                state: AtomicU8::new(FRESH),
                span,
            }),
        };
        if let Some(incoming) = incoming {
            let _ = session.inner.incoming.set(incoming);
        }
        session
    }

    /// The request's session cookie, read when first asked for.
    pub(super) fn incoming(&self) -> &Incoming {
        self.inner
            .incoming
            .get_or_init(|| self.inner.manager.incoming_in(&self.inner.cookies))
    }

    /// The request's `cloakroom.session` span.
    pub(super) fn span(&self) -> &tracing::Span {
        &self.inner.span
    }

    /// Marks the session touched, before its lock is taken; `true` if it was already
    /// finished untouched (then writes are refused).
    pub(super) fn mark_touched(&self) -> bool {
        match self
            .inner
            .state
            .compare_exchange(FRESH, TOUCHED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => false,
            Err(state) => state == FINISHED_UNTOUCHED,
        }
    }

    /// The server-side store, or why this operation cannot work client-side.
    pub(super) fn store(&self, operation: &'static str) -> Result<&dyn SessionStore, SessionError> {
        match &self.inner.manager.backend {
            Backend::Store(store) => Ok(&**store),
            Backend::Cookie(_) => Err(SessionError::Unsupported(operation)),
        }
    }

    /// The configuration of the manager this session came from.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.manager.config
    }

    /// `work` inside the request's session span, so store spans nest under it.
    pub(super) fn traced<F: std::future::Future>(&self, work: F) -> Instrumented<F> {
        work.instrument(self.span().clone())
    }

    /// Finishes a session its request never touched, without waiting: `true` if it was
    /// untouched (there is nothing to commit and no header to send), `false` if
    /// [`finish`](Self::finish) must run: the fast path of
    /// [`CommitFuture`](crate::integration::CommitFuture) for a request that never used its
    /// session, one atomic operation with no lock and no allocation.
    pub(crate) fn finish_untouched(&self) -> bool {
        let untouched = self
            .inner
            .state
            .compare_exchange(
                FRESH,
                FINISHED_UNTOUCHED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if untouched {
            self.span().record("outcome", "untouched");
        }
        untouched
    }

    /// Checks the limits for setting `key` to `value` (or removing it) and returns the data's
    /// size after the write, for [`record_change`](Self::record_change) to keep once the
    /// write is made.
    fn check_size(
        &self,
        view: &mut View,
        key: &str,
        value: Option<&Value>,
    ) -> Result<usize, SessionError> {
        let data = &view.record.data;
        let total = *view
            .pending
            .data_size
            .get_or_insert_with(|| change::data_size(data));
        change::check_write(&self.config().limits, key, data.get(key), value, total)
    }

    /// Makes `change` on the view's record, with the data's size after it if it changes the
    /// data; client-side, only if the cookie still fits, and otherwise nothing changes.
    fn record_change(
        &self,
        view: &mut View,
        change: Change,
        data_size: Option<usize>,
    ) -> Result<(), SessionError> {
        let undo = change.apply_undoable(&mut view.record)?;
        self.check_cookie_or_revert(view, || undo)?;
        if data_size.is_some() {
            view.pending.data_size = data_size;
        }
        view.pending.changes.push(change);
        Ok(())
    }

    /// Client-side: takes back the write `undo` records if the cookie no longer fits. The
    /// write was made in place: trying it on a clone of the whole record cost more than the
    /// check itself. `undo` is called only when the write must be taken back, so a caller
    /// that can build its undo lazily (as `update` does) copies nothing in the common case.
    fn check_cookie_or_revert(
        &self,
        view: &mut View,
        undo: impl FnOnce() -> Undo,
    ) -> Result<(), SessionError> {
        if let Backend::Cookie(sessions) = &self.inner.manager.backend {
            if matches!(view.origin, Origin::New) {
                // The commit gives a new session this request's client, and the cookie
                // carries it: a write measured without it could overflow the cookie.
                self.fill_client(&mut view.record);
            }
            if let Err(error) = self.check_cookie_size(&**sessions, view, &view.record) {
                undo().revert(&mut view.record);
                return Err(error);
            }
        }
        Ok(())
    }

    /// The value under `key`, read as `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let view = self.loaded().await?;
        view.record
            .data
            .get(key)
            .map(|value| deserialize(key, value))
            .transpose()
    }

    /// Sets `key` to `value`. Fails at once, with nothing changed, if the value or the
    /// session would grow past the [`Limits`](crate::Limits)
    /// ([`SessionError::ValueTooLarge`], [`SessionError::SessionTooLarge`]), or the value
    /// nests deeper than [`MAX_VALUE_DEPTH`](crate::MAX_VALUE_DEPTH)
    /// ([`SessionError::ValueTooDeep`]). A write that does not grow them is allowed even
    /// over the limits. Merged at commit with concurrent writers, the writes can still
    /// fail the limits: they are then not saved and the layer replaces the handler's
    /// response with 413.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(SessionError::Serialize)?;
        let mut view = self.writable().await?;
        let size = self.check_size(&mut view, key, Some(&value))?;
        self.record_change(&mut view, Change::Insert(key.to_owned(), value), Some(size))
    }

    /// Removes `key`, returning its value read as `T`.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut view = self.writable().await?;
        let old = match view.record.data.get(key) {
            None => return Ok(None),
            Some(value) => deserialize(key, value)?,
        };
        let size = self.check_size(&mut view, key, None)?;
        self.record_change(&mut view, Change::Remove(key.to_owned()), Some(size))?;
        Ok(Some(old))
    }

    /// Atomically replaces the value under `key` with `f(current)` and returns it.
    ///
    /// If another request changed the session first, `f` runs again on the fresh value when
    /// the session is saved, so no increment or append is lost. `f` must therefore be a pure
    /// function of its input, and should accept any value: if it panics, the panic is
    /// caught and the request fails with [`SessionError::UpdatePanicked`] (a `500`), its
    /// writes unsaved. The value returned here is computed from this request's view;
    /// call [`save`](Self::save) first and read again for the value as committed.
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned + 'static,
        F: Fn(Option<T>) -> T + Send + Sync + 'static,
    {
        let owned_key = key.to_owned();
        let func: UpdateFn = Arc::new(move |current: Option<&Value>| {
            let current = current
                .map(|value| deserialize(&owned_key, value))
                .transpose()?;
            // At commit `f` may run inside another request's task (group commit), which
            // its panic must not take down.
            let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(current)))
                .map_err(|_| SessionError::UpdatePanicked {
                    key: owned_key.clone(),
                })?;
            serde_json::to_value(next).map_err(SessionError::Serialize)
        });
        let mut view = self.writable().await?;
        let value = func(view.record.data.get(key))?;
        let size = self.check_size(&mut view, key, Some(&value))?;
        let result = deserialize(key, &value)?;
        let old = change::replace_value(&mut view.record.data, key, value);
        self.check_cookie_or_revert(&mut view, || Undo::Value(key.to_owned(), old))?;
        view.pending.data_size = Some(size);
        view.pending
            .changes
            .push(Change::Update(key.to_owned(), func));
        Ok(result)
    }

    /// Removes every value (the user and the ID stay; see [`logout`](Self::logout)).
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut view = self.writable().await?;
        self.record_change(&mut view, Change::Clear, Some(0))
    }

    /// Whether `key` has a value.
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        Ok(self.loaded().await?.record.data.contains_key(key))
    }

    /// The keys that have values.
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        Ok(self.loaded().await?.record.data.keys().cloned().collect())
    }

    /// Gives the session a new ID when it is saved, keeping its data; the old ID is dead
    /// from then on. Use it whenever privilege changes.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        self.writable().await?.pending.rotate = true;
        Ok(())
    }

    /// Logs `user` in: records the user (which feeds the per-user index), records the
    /// client's IP and user agent, and rotates the ID (fixation defense).
    ///
    /// An anonymous session's data is kept (a cart survives login), and so is the data of
    /// a session the same user logs in to again. If the session belongs to another user,
    /// that session ends as [`logout`](Self::logout) would end it (its record is deleted,
    /// its ID dead) and this user starts a fresh session: the next user of a shared
    /// browser never sees the previous user's values, nor inherits their remember-me
    /// cookie, creation time or deadlines.
    ///
    /// If it fails, nothing changed: the session is exactly as before the call. It fails
    /// with [`SessionError::InvalidUserId`] for a user id no store could keep (empty,
    /// over [`MAX_USER_ID_BYTES`](crate::record::MAX_USER_ID_BYTES), or holding a NUL),
    /// and for a client-side session with [`SessionError::CookieTooLarge`] when the user
    /// and client details would not fit in the cookie.
    pub async fn login(&self, user: impl Into<String>) -> Result<(), SessionError> {
        let user = user.into();
        // Empty, it would be no user to Redis, which would leave it out of the index.
        let invalid = if user.is_empty() {
            Some("it is empty")
        } else {
            unstorable(&user, MAX_USER_ID_BYTES)
        };
        if let Some(reason) = invalid {
            return Err(SessionError::InvalidUserId { reason });
        }
        let epoch = match &self.config().epochs {
            Some(epochs) => epochs
                .0
                .current_epoch(&user)
                .await
                .map_err(SessionError::Epoch)?,
            None => None,
        };
        if let Some(reason) = epoch
            .as_deref()
            .and_then(|e| unstorable(e, MAX_EPOCH_BYTES))
        {
            return Err(SessionError::InvalidEpoch { reason });
        }
        let mut view = self.writable().await?;
        let switching = view
            .record
            .user_id
            .as_deref()
            .is_some_and(|previous| previous != user);
        #[allow(unused_mut)] // Only the `dbsc` feature adds to it.
        let mut changes = vec![
            Change::Set(Field::User(Some(user))),
            Change::Set(Field::Epoch(epoch)),
            Change::Set(Field::Client(self.inner.client.to_meta())),
        ];
        // A login drops any binding made before it (authentication changed: a key bound
        // then must not carry over) and offers a new one with the rotated ID.
        #[cfg(feature = "dbsc")]
        let offer = crate::dbsc::engine::offer_on_login(self.config(), &mut changes);
        // Another user's session (Bob logging in on the browser Alice left logged in)
        // ends as a logout would, and this user starts a fresh one: none of the previous
        // user's data, remember-me choice, creation time or deadlines pass to this one.
        // An anonymous visitor's session, and the same user's, carry on (a cart survives).
        //
        // All or nothing: a login that fails (its cookie would not fit) must leave the
        // session as it was, or the layer would commit a half-done login with the user in.
        if switching {
            // This request's own remember-me choice, made before the login, stays: only the
            // previous user's goes.
            let remember = view.pending.remember;
            changes.extend(remember.map(|persistent| Change::Set(Field::Persistent(persistent))));
            let mut candidate = self.config().expiry.new_record(now());
            for change in &changes {
                change.apply(&mut candidate)?;
            }
            if let Backend::Cookie(sessions) = &self.inner.manager.backend {
                self.check_cookie_size(&**sessions, &view, &candidate)?;
            }
            self.end_session(&mut view, "login").await?;
            view.record = candidate;
        } else {
            // Made in place and taken back on failure, rather than on a clone of the record.
            let mut undo = Vec::with_capacity(changes.len());
            let mut applied = changes.iter().try_for_each(|change| {
                undo.push(change.apply_undoable(&mut view.record)?);
                Ok(())
            });
            if applied.is_ok() {
                if let Backend::Cookie(sessions) = &self.inner.manager.backend {
                    applied = self.check_cookie_size(&**sessions, &view, &view.record);
                }
            }
            if let Err(error) = applied {
                for step in undo.into_iter().rev() {
                    step.revert(&mut view.record);
                }
                return Err(error);
            }
        }
        for change in changes {
            view.pending.changes.push(change);
        }
        view.pending.rotate = true;
        view.pending.logging_in = true;
        #[cfg(feature = "dbsc")]
        if let Some(offer) = offer {
            view.headers = vec![offer];
        }
        Ok(())
    }

    /// Destroys the session now: the record is deleted from the store and the response
    /// removes the cookie. Writes after this start a fresh anonymous session.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails, and nothing changes: the session
    /// stays, and so does the cookie. Under the fail-open policy
    /// ([`OnStoreError::Anonymous`](crate::OnStoreError::Anonymous)) too, where a request
    /// whose session could not be loaded otherwise runs as an anonymous one: a logout that
    /// removed the cookie but left the record would leave every copy of the cookie live.
    pub async fn logout(&self) -> Result<(), SessionError> {
        let mut view = self.writable().await?;
        self.end_session(&mut view, "logout").await
    }

    /// The same as [`logout`](Self::logout).
    pub async fn destroy(&self) -> Result<(), SessionError> {
        self.logout().await
    }

    /// Ends the session this request came with, as a logout does: its record deleted
    /// from the store (`operation` names the caller when there is none), counted as logged
    /// out, and the view anonymous and marked destroyed so the cookie is removed.
    async fn end_session(
        &self,
        view: &mut View,
        operation: &'static str,
    ) -> Result<(), SessionError> {
        if view.degraded {
            // The session this request came with could not be loaded, so it cannot be
            // deleted either.
            return Err(Self::load_failure());
        }
        if let Some(id) = view.id() {
            let store = self.store(operation)?;
            self.traced(store.delete(&id.store_key())).await?;
        }
        if view.key().is_some() {
            telemetry::count(names::SESSIONS_LOGGED_OUT);
        }
        self.reset_to_anonymous(view);
        view.destroyed = true;
        Ok(())
    }

    pub(super) fn reset_to_anonymous(&self, view: &mut View) {
        view.reset(self.config().expiry.new_record(now()));
    }

    /// Chooses a persistent ("remember me") cookie, which survives a browser restart until
    /// the session's deadline, or a browser-session cookie.
    pub async fn set_persistent(&self, persistent: bool) -> Result<(), SessionError> {
        let mut view = self.writable().await?;
        view.pending.remember = Some(persistent);
        if view.record.persistent != persistent {
            self.record_change(&mut view, Change::Set(Field::Persistent(persistent)), None)?;
            view.send_cookie = true;
        }
        Ok(())
    }

    /// The logged-in user.
    pub async fn user(&self) -> Result<Option<String>, SessionError> {
        Ok(self.loaded().await?.record.user_id.clone())
    }

    /// The public handle of the stored session; `None` until it is first saved.
    pub async fn handle(&self) -> Result<Option<SessionHandle>, SessionError> {
        Ok(self.loaded().await?.key().map(|key| key.handle()))
    }

    /// Times, deadlines and user of the stored session; `None` until it is first saved.
    pub async fn metadata(&self) -> Result<Option<SessionMetadata>, SessionError> {
        let view = self.loaded().await?;
        let record = &view.record;
        Ok(view.key().map(|key| SessionMetadata {
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

    /// Where this session's device binding (DBSC) stands; `None` when it has none.
    ///
    /// A session loaded as [`Bound`](crate::record::DeviceBindingState::Bound) came with a
    /// valid bound cookie (one without it is loaded as a new anonymous session), so this
    /// request comes from the device that holds the key.
    pub async fn device_binding(
        &self,
    ) -> Result<Option<crate::record::DeviceBindingState>, SessionError> {
        Ok(self.loaded().await?.record.device_binding_state())
    }

    /// When the session dies unless used again (the earlier deadline).
    pub async fn expires_at(&self) -> Result<Option<OffsetDateTime>, SessionError> {
        Ok(self.loaded().await?.record.expires_at())
    }

    /// Saves the changes so far now instead of after the handler, merging with concurrent
    /// writers; afterwards reads show the committed values.
    pub async fn save(&self) -> Result<(), SessionError> {
        let mut view = self.writable().await?;
        self.traced(self.commit(&mut view)).await
    }
}

/// The session value under `key`, read as `T`.
fn deserialize<T: DeserializeOwned>(key: &str, value: &Value) -> Result<T, SessionError> {
    T::deserialize(value).map_err(|source| SessionError::Deserialize {
        key: key.to_owned(),
        source,
    })
}

/// A request's `cloakroom.session` span, opened when the request's session is made. Opened
/// lazily instead (at the first touch), it lost its recorded outcome in about one run of
/// twelve of the demo's log-capture test, where each test thread has its own subscriber;
/// without a subscriber that wants it, a span costs next to nothing.
fn session_span() -> tracing::Span {
    tracing::info_span!(
        "cloakroom.session",
        handle = tracing::field::Empty,
        outcome = tracing::field::Empty
    )
}
