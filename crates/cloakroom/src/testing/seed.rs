//! Seeding a session before a test's first request, and inspecting one after a response.

use std::sync::Arc;

use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::integration::RequestClient;
use crate::record::Record;
use crate::redact::debug_showing;
use crate::session::SessionManager;
use crate::store::{InsertError, StoreError};
use crate::{SessionError, SessionId};

/// A session to create directly, as if earlier requests had built it: data, a logged-in
/// user, a remember-me cookie, deadlines. [`create`](Self::create) stores it (or seals it
/// into a client-side cookie) and gives the cookie a test sends.
///
/// The session is made by the same engine as a request's, so the user index, the per-user
/// cap and the login epoch are what a real login records. Deadlines set here replace the
/// ones the expiry policy gave (PostgreSQL and MySQL still clamp deadlines far in the
/// future to their own clock, as for any session).
///
/// ```
/// use std::sync::Arc;
/// use cloakroom::testing::SessionSeed;
/// use cloakroom::{MemoryStore, SessionConfig, SessionManager};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let manager = Arc::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap());
/// let seeded = SessionSeed::new()
///     .user("alice")
///     .with("cart", ["book"])
///     .create(&manager)
///     .await
///     .unwrap();
/// assert!(seeded.cookie_header().starts_with("id="));
/// let state = cloakroom::testing::inspect(&manager, seeded.cookie_value()).await.unwrap().unwrap();
/// assert_eq!(state.user_id.as_deref(), Some("alice"));
/// assert_eq!(cloakroom::testing::value::<Vec<String>>(&state, "cart"), Some(vec!["book".to_owned()]));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SessionSeed {
    data: Vec<(String, Value)>,
    user: Option<String>,
    persistent: bool,
    idle_deadline: Option<Option<OffsetDateTime>>,
    absolute_deadline: Option<Option<OffsetDateTime>>,
}

impl SessionSeed {
    /// An empty session, anonymous, with the configured deadlines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds `value` under `key`.
    ///
    /// # Panics
    /// If `value` does not serialise as JSON.
    pub fn with(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).expect("a seeded value serialises as JSON");
        self.data.push((key.into(), value));
        self
    }

    /// Logged in as `user`, as [`Session::login`](crate::Session::login) records it.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// With a persistent (remember-me) cookie.
    pub fn persistent(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Dies at `at` unless used (`None`: no idle deadline); it may be in the past, for an
    /// expired session.
    pub fn idle_deadline(mut self, at: Option<OffsetDateTime>) -> Self {
        self.idle_deadline = Some(at);
        self
    }

    /// Dies at `at` whatever its use (`None`: no absolute deadline).
    pub fn absolute_deadline(mut self, at: Option<OffsetDateTime>) -> Self {
        self.absolute_deadline = Some(at);
        self
    }

    /// Creates the session through `manager` (its store, or its client-side cookie
    /// sealing) and returns the cookie to send.
    ///
    /// # Errors
    /// The store's error, or a value over the configured limits.
    ///
    /// # Panics
    /// If the seed has neither data nor a user: cloakroom never stores such a session (a
    /// visitor who writes nothing gets no record), so there is nothing to seed.
    pub async fn create(
        self,
        manager: &Arc<SessionManager>,
    ) -> Result<SeededSession, SessionError> {
        assert!(
            self.user.is_some() || !self.data.is_empty(),
            "a session with neither data nor a user is never stored: seed a value or a user"
        );
        let session = manager.session(std::iter::empty(), RequestClient::default());
        if let Some(user) = self.user {
            session.login(user).await?;
        }
        for (key, value) in self.data {
            session.insert(&key, value).await?;
        }
        if self.persistent {
            session.set_persistent(true).await?;
        }
        let finish = session.finish(StatusCode::OK).await;
        if let Some(error) = finish.error {
            return Err(error);
        }
        let name = manager.config().cookie.full_name().into_owned();
        let set_cookie = finish
            .set_cookie
            .expect("a written session sets its cookie");
        let value = set_cookie
            .to_str()
            .ok()
            .and_then(|header| header.split(';').next())
            .and_then(|pair| pair.split_once('='))
            .map(|(_, value)| value.to_owned())
            .expect("the engine's Set-Cookie is name=value");
        let mut seeded = SeededSession { name, value };
        if self.idle_deadline.is_some() || self.absolute_deadline.is_some() {
            seeded.value =
                redeadline(manager, &seeded, self.idle_deadline, self.absolute_deadline).await?;
        }
        Ok(seeded)
    }
}

/// Rewrites the seeded session with other deadlines; returns its (new) cookie value.
async fn redeadline(
    manager: &SessionManager,
    seeded: &SeededSession,
    idle: Option<Option<OffsetDateTime>>,
    absolute: Option<Option<OffsetDateTime>>,
) -> Result<String, SessionError> {
    let set = |record: &mut Record| {
        if let Some(idle) = idle {
            record.idle_deadline = idle;
        }
        if let Some(absolute) = absolute {
            record.absolute_deadline = absolute;
        }
    };
    if let Some(store) = manager.store() {
        let key = SessionId::decode_with(&seeded.value, manager.id_format())
            .expect("the engine hands out well-formed IDs")
            .store_key();
        let mut record = store
            .load(&key)
            .await?
            .expect("the session was created a moment ago");
        set(&mut record);
        // Updates never move the absolute deadline, so the record is written afresh.
        store.delete(&key).await?;
        match store.insert(&key, &record).await {
            Ok(()) => Ok(seeded.value.clone()),
            Err(InsertError::Store(error)) => Err(error.into()),
            Err(InsertError::Duplicate) => Err(StoreError::backend(
                "the seeded session was recreated while its deadlines were set",
            )
            .into()),
        }
    } else {
        let sessions = manager
            .cookie_sessions()
            .expect("a manager without a store has client-side sessions");
        let opened = sessions
            .open(&seeded.name, &seeded.value)
            .expect("the engine's own cookie opens");
        let mut record = opened.record;
        set(&mut record);
        sessions
            .seal(&seeded.name, &opened.key, &record)
            .map_err(SessionError::Serialize)
    }
}

/// A session [`SessionSeed::create`] made: the cookie that carries it.
///
/// `Debug` hides the value, a bearer secret, as everywhere in cloakroom.
#[derive(Clone)]
pub struct SeededSession {
    name: String,
    value: String,
}

debug_showing!(SeededSession { name });

impl SeededSession {
    /// The cookie's name (prefix included).
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// The cookie's value: the session ID, or the sealed client-side session. Give it to
    /// [`TestClient::with_cookie`](super::TestClient::with_cookie).
    pub fn cookie_value(&self) -> &str {
        &self.value
    }

    /// A whole `Cookie` request header value, `name=value`.
    pub fn cookie_header(&self) -> String {
        format!("{}={}", self.name, self.value)
    }
}

/// The state of the session a cookie value carries, as the store (or the sealed cookie)
/// holds it now: `None` when there is no live session for it (unknown, malformed,
/// tampered, expired or deleted).
///
/// Pass the value a response set ([`TestResponse::session_cookie`](super::TestResponse::session_cookie))
/// or a client holds ([`TestClient::cookie`](super::TestClient::cookie)). It reads the
/// record only: no epoch check, no idle refresh, nothing written.
///
/// # Errors
/// The store's error.
pub async fn inspect(
    manager: &SessionManager,
    cookie_value: &str,
) -> Result<Option<Record>, SessionError> {
    let now = crate::record::now();
    let record = if let Some(store) = manager.store() {
        match SessionId::decode_with(cookie_value, manager.id_format()) {
            Some(id) => store.load(&id.store_key()).await?,
            None => None,
        }
    } else {
        let name = manager.config().cookie.full_name();
        manager
            .cookie_sessions()
            .and_then(|sessions| sessions.open(&name, cookie_value))
            .map(|opened| opened.record)
    };
    Ok(record.filter(|record| record.is_live_at(now)))
}

/// The value under `key` in an inspected session, as a `T`; `None` when absent or not a
/// `T`.
pub fn value<T: DeserializeOwned>(record: &Record, key: &str) -> Option<T> {
    record
        .data
        .get(key)
        .and_then(|value| serde_json::from_value(value.clone()).ok())
}
