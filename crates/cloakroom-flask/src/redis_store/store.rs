//! The store itself: its connection, settings and the names of its Redis keys.

use std::time::Duration;

use cloakroom::{Record, SessionId, StoreError, StoreKey};
use redis::aio::ConnectionManager;
use time::OffsetDateTime;

use crate::dict;

/// Flask-Session's default `SESSION_KEY_PREFIX`.
pub const DEFAULT_PREFIX: &str = "session:";
/// Keys a `SCAN` step asks for.
pub(super) const SCAN_BATCH: usize = 500;

/// Flask-Session's Redis layout as a cloakroom [`SessionStore`](cloakroom::SessionStore).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use cloakroom::{SessionConfig, SessionLayer, SessionManager};
/// use cloakroom_flask::{FlaskRedisStore, FlaskSessionIds};
///
/// let store = FlaskRedisStore::connect("redis://127.0.0.1:6379").await?;
/// let config = store.session_config(SessionConfig::default());
/// let manager = SessionManager::new(store, config)?
///     .with_id_format(Arc::new(FlaskSessionIds::signed("the Flask app's SECRET_KEY")));
/// let layer = SessionLayer::from_manager(Arc::new(manager));
/// # let _: axum::Router = axum::Router::new().layer(layer);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FlaskRedisStore {
    pub(super) connection: ConnectionManager,
    pub(super) prefix: String,
    pub(super) index_prefix: Option<String>,
    pub(super) user_key: String,
    pub(super) lifetime: Duration,
    pub(super) timeout: Duration,
}

impl std::fmt::Debug for FlaskRedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlaskRedisStore")
            .field("prefix", &self.prefix)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl FlaskRedisStore {
    /// Connects to the Redis Flask-Session uses (`SESSION_REDIS`), with its defaults.
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            index_prefix: None,
            user_key: dict::DEFAULT_USER_KEY.to_owned(),
            lifetime: crate::cookie::DEFAULT_LIFETIME,
            timeout: Duration::from_secs(5),
        })
    }

    /// Flask-Session's `SESSION_KEY_PREFIX` (default `session:`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Where the per-user index sets live (default `cloakroom:` and the session prefix, then
    /// `user:`, a prefix Flask-Session never reads): one Redis set of session IDs per user.
    pub fn with_index_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.index_prefix = Some(prefix.into());
        self
    }

    /// The session key holding the user id (default `_user_id`, as Flask-Login keeps it).
    pub fn with_user_key(mut self, key: impl Into<String>) -> Self {
        self.user_key = key.into();
        self
    }

    /// Flask's `PERMANENT_SESSION_LIFETIME` (default 31 days), Flask-Session's TTL.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// `base` with the cookie name `session` and an idle timeout equal to the lifetime,
    /// as Flask-Session sets its TTL.
    pub fn session_config(&self, base: cloakroom::SessionConfig) -> cloakroom::SessionConfig {
        let cookie = base
            .cookie
            .clone()
            .with_name(crate::cookie::DEFAULT_COOKIE_NAME);
        let expiry = base.expiry.clone().with_idle_timeout(Some(self.lifetime));
        base.with_cookie(cookie).with_expiry(expiry)
    }

    /// The Redis key of a session: the prefix and the raw ID, as Flask-Session names it.
    pub(super) fn redis_key(&self, key: &StoreKey) -> String {
        format!("{}{}", self.prefix, Self::member(key))
    }

    /// The store key of a Redis key, if it names a session ID of the usual shape.
    pub(super) fn store_key(&self, redis_key: &str) -> Option<StoreKey> {
        let id = redis_key.strip_prefix(&self.prefix)?;
        Some(SessionId::parse(id)?.with_reversible_key().store_key())
    }

    /// Runs one Redis exchange under the store's timeout, its errors typed.
    pub(super) async fn run<T>(
        &self,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::unavailable(error)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// The index member of a session: its ID, the tail of its Redis key.
    pub(super) fn member(key: &StoreKey) -> String {
        SessionId::from_reversible_key(key).to_cookie_value()
    }

    /// Milliseconds until `record` expires, at least 1; `None`: it does not expire.
    pub(super) fn ttl_ms(record: &Record, time: OffsetDateTime) -> Option<u64> {
        record.expires_at().map(|deadline| {
            u64::try_from((deadline - time).whole_milliseconds())
                .unwrap_or(0)
                .max(1)
        })
    }

    /// Runs a script invocation on a connection of its own, under the timeout.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        self.run(invocation.invoke_async(&mut connection)).await
    }
}
