//! The store contract every backend implements, with typed errors per operation.
//!
//! Stores see only [`StoreKey`]s, never a live session ID. Every method takes the time it
//! needs from [`record::now`](crate::record::now) (or the backend's own clock, where a store
//! documents that), and treats a record past its deadline as absent: it is never loaded,
//! updated, touched, renamed or listed, even if the backend has not evicted it yet.

use std::time::Duration;

use async_trait::async_trait;

use crate::id::{SessionHandle, StoreKey};
use crate::record::{Record, Touch};

mod paging;

/// A boxed error from a backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the store itself: the same error for every operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or refused the operation (down, pool exhausted,
    /// connection lost). Usually worth retrying later.
    #[error("the session store is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The operation did not finish in time.
    #[error("the session store did not answer within {0:?}")]
    Timeout(Duration),
    /// A stored record could not be decoded. The session layer treats it as absent
    /// (an anonymous request) and logs it; it does not delete it.
    #[error("a stored session record is corrupt: {0}")]
    Corrupt(String),
    /// Any other backend failure.
    #[error("the session store failed: {0}")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Wraps a backend error as [`StoreError::Unavailable`].
    pub fn unavailable(error: impl Into<BoxError>) -> Self {
        Self::Unavailable(error.into())
    }
    /// Wraps a backend error as [`StoreError::Backend`].
    pub fn backend(error: impl Into<BoxError>) -> Self {
        Self::Backend(error.into())
    }
}

/// Why [`SessionStore::insert`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// A live record already has this key. Nothing was written.
    #[error("a session with this key already exists")]
    Duplicate,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`SessionStore::update`] failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The stored version is not the expected one: someone else wrote first.
    #[error("the session was changed concurrently")]
    Conflict,
    /// No live record has this key (deleted, rotated away or expired). Nothing was written.
    #[error("the session no longer exists")]
    Missing,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`SessionStore::touch`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TouchError {
    /// No live record has this key. Nothing was written.
    #[error("the session no longer exists")]
    Missing,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`SessionStore::rename`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RenameError {
    /// No live record has the old key.
    #[error("the session no longer exists")]
    Missing,
    /// A live record already has the new key. Neither record was changed.
    #[error("a session with the new key already exists")]
    Duplicate,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored session with its key, as listings return it.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionEntry {
    /// The store key.
    pub key: StoreKey,
    /// The record.
    pub record: Record,
}

impl SessionEntry {
    /// The public handle.
    pub fn handle(&self) -> SessionHandle {
        self.key.handle()
    }
}

/// Which sessions [`SessionStore::list_sessions`] returns: live ones, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this user's sessions.
    pub user: Option<String>,
    /// Only keys after this one (for paging: pass the last key of the previous page).
    pub after: Option<StoreKey>,
    /// At most this many.
    pub limit: usize,
}

/// A session store. Implement it for a backend and prove it with the conformance suite
/// (`cloakroom::conformance`, feature `conformance`).
///
/// Contract, for every implementation:
///
/// | operation | meaning |
/// |---|---|
/// | `load` | the record, or `None` if absent **or past its deadline** |
/// | `insert` | create; `Duplicate` if a live record has the key, never overwrites |
/// | `update` | compare-and-set on `record.version` (the version it was read at); the stored version becomes `record.version + 1`; the absolute deadline stays as inserted; `Conflict` / `Missing`; never recreates |
/// | `touch` | write [`Touch`] only; version unchanged; `Missing` if gone |
/// | `rename` | atomic move to a new key keeping everything; `Missing` / `Duplicate` |
/// | `delete` | remove the record and its index entry; `true` if a record was removed |
/// | `list_for_user` | live sessions of a user |
/// | `delete_for_user` | delete a user's live sessions except one; the count |
/// | `purge_expired` | delete expired records, `batch` at a time; the count |
/// | `find_by_handle` | the live session with this handle |
/// | `list_sessions` | live sessions in key order, filtered and paged |
///
/// # Why one trait, not a narrow one plus extension traits
///
/// The first eight operations serve requests; `purge_expired`, `find_by_handle` and
/// `list_sessions` serve operators (the `cloakroom` command, the purge task). They stay
/// in one required trait on purpose:
/// - the per-user index is a product guarantee, not an option: "log out my other
///   devices" (`list_for_user`, `delete_for_user`) runs from handlers, so every store
///   must answer it;
/// - an operator opens any store from a URL and must be able to list, show, revoke and
///   purge it; an optional trait would turn "this store cannot be administered" into a
///   run-time surprise, where a required method makes it a compile error for the author;
/// - `purge_expired` costs nothing where the backend expires records itself (a one-line
///   `Ok(0)`, as Redis and Memcached do), which is the case tower-sessions' optional
///   `ExpiredDeletion` exists for;
/// - `find_by_handle` and `list_sessions` may scan: they are never on the request path.
///
/// The conformance suite checks all of them, so a new store proves the whole contract.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The live record under `key`.
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError>;

    /// Creates the record; never overwrites a live one. An expired record under the same
    /// key may be replaced.
    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError>;

    /// Replaces the record if its stored version is `record.version`, the version it was
    /// read at (optimistic locking: the record carries its own expectation, so a caller
    /// cannot pass one version and a record of another); the stored version becomes
    /// `record.version + 1`. The absolute deadline is fixed at insert: no update moves it,
    /// so no write can extend a session's life past its absolute timeout.
    ///
    /// # Errors
    ///
    /// [`UpdateError::Conflict`] if the stored version is not `record.version` (another
    /// writer came first: reload and re-apply); [`UpdateError::Missing`] if no live record
    /// has the key, in which case nothing is written (a deleted session stays deleted);
    /// [`UpdateError::Store`] if the backend failed.
    async fn update(&self, key: &StoreKey, record: &Record) -> Result<(), UpdateError>;

    /// Moves the activity time and idle deadline; the version is unchanged.
    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError>;

    /// Moves the live record from `old` to `new` atomically, keeping data, version and
    /// deadlines. Afterwards `old` loads as `None`.
    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError>;

    /// Deletes the record and its per-user index entry. `Ok(false)` if there was none.
    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError>;

    /// The live sessions of `user`.
    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError>;

    /// Deletes every live session of `user` except `except`; returns how many.
    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError>;

    /// Deletes expired records in batches of at most `batch`; returns how many. A no-op
    /// returning 0 where the backend expires records natively.
    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError>;

    /// Like [`purge_expired`](Self::purge_expired), calling `progress` with the size of
    /// each batch as it is deleted (for progress bars). The default reports the total once.
    async fn purge_expired_with_progress(
        &self,
        batch: usize,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        let purged = self.purge_expired(batch).await?;
        progress(purged);
        Ok(purged)
    }

    /// The live session with this handle, if any.
    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError>;

    /// Live sessions in key order, filtered by [`ListQuery`].
    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError>;

    /// What kind of store this is (`"memory"`, `"postgres"`, `"redis"`, …): the `store`
    /// label of the store metrics (see [`telemetry`](crate::telemetry)). A short, fixed
    /// name: never anything taken from a URL or a configuration. The default is
    /// `"custom"`.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Whether this store already records the store metrics, so it is not wrapped twice.
    #[doc(hidden)]
    fn instrumented(&self) -> bool {
        false
    }
}

crate::store_wrapper::forward_store! {
    impl [S: SessionStore + ?Sized] for std::sync::Arc<S>, deref;
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn instrumented(&self) -> bool {
        (**self).instrumented()
    }
}
