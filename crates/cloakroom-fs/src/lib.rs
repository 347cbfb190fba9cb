//! A filesystem session store for [cloakroom](https://docs.rs/cloakroom), for simple
//! single-server deployments.
//!
//! ```text
//! ROOT/sessions/HEX            one file per session, named by its store key (64 hex digits)
//! ROOT/users/SHA256(USER)/HEX  the per-user index: an empty marker file per session
//! ROOT/locks/00.lock … ff.lock striped locks, shared by every process using ROOT
//! ROOT/tmp/                    where writes are prepared
//! ```
//!
//! Guarantees:
//! - File names come from hex store keys and hashed user ids only: no path traversal.
//!   Files are created with mode 0600, directories with 0700 (an existing root keeps its
//!   mode).
//! - Every write goes to a temporary file, is fsynced, then renamed over the old file: a
//!   reader (or a process killed mid-write) sees the old record or the new one, never a
//!   torn one.
//! - Read-modify-write operations hold an exclusive `flock` on the session's lock stripe,
//!   so compare-and-set and rename are safe across processes.
//! - A session's index marker is written before its record and removed only under the
//!   same lock once the record is gone, so every live session is in its user's index.
//! - Waiting for a lock is bounded by the operation timeout (2 s by default, see
//!   [`FileStore::with_timeout`]): past it the operation fails with
//!   [`StoreError::Timeout`], never hangs on a lock another process keeps.
//! - A record that does not decode is absent to `load` (the session layer logs it);
//!   `list_for_user` and the admin listings skip it, `delete_for_user` and
//!   `purge_expired` remove it.
//! - `delete_for_user` looks again after deleting, until nothing but the kept session is
//!   left, so an ID rotation that completes mid-revoke cannot slip a session past it.
//! - `purge_expired` walks the directory in batches; listing by handle or page scans the
//!   directory (admin paths only).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};

mod dir;
mod operations;

use dir::{private_dir, Dir};

/// How long an operation may wait for a lock, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A session store in a directory.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = cloakroom_fs::FileStore::open(dir.path()).unwrap();
/// let layer = cloakroom::SessionLayer::new(store);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct FileStore {
    root: Arc<PathBuf>,
    timeout: Duration,
}

impl FileStore {
    /// Uses (creating if needed, mode 0700) the directory `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        for sub in ["sessions", "users", "locks", "tmp"] {
            private_dir(&root.join(sub))?;
        }
        Ok(Self {
            root: Arc::new(root),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes how long an operation may wait for a lock held by another process or
    /// task ([`DEFAULT_TIMEOUT`] unless set); past it the operation fails with
    /// [`StoreError::Timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `work` on the blocking pool, where file I/O and lock waits belong.
    async fn blocking<T: Send + 'static, E: From<StoreError> + Send + 'static>(
        &self,
        work: impl FnOnce(&Dir) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let dir = Dir {
            root: Arc::clone(&self.root),
            timeout: self.timeout,
        };
        tokio::task::spawn_blocking(move || work(&dir))
            .await
            .map_err(|error| StoreError::backend(error.to_string()))?
    }
}

#[async_trait]
impl SessionStore for FileStore {
    fn kind(&self) -> &'static str {
        "file"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let key = *key;
        self.blocking(move |dir| dir.read_live(&key)).await
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        let (key, record) = (*key, record.clone());
        self.blocking(move |dir| dir.insert(&key, &record)).await
    }

    async fn update(&self, key: &StoreKey, record: &Record) -> Result<(), UpdateError> {
        let (key, record) = (*key, record.clone());
        self.blocking(move |dir| dir.update(&key, record)).await
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        let (key, touch) = (*key, *touch);
        self.blocking(move |dir| dir.touch(&key, &touch)).await
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        let (old, new) = (*old, *new);
        self.blocking(move |dir| dir.rename(&old, &new)).await
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let key = *key;
        self.blocking(move |dir| dir.delete(&key)).await
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let user = user.to_owned();
        self.blocking(move |dir| dir.list_user(&user)).await
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let (user, except) = (user.to_owned(), except.copied());
        self.blocking(move |dir| dir.revoke(&user, except)).await
    }

    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.purge_expired_with_progress(batch, &mut |_| {}).await
    }

    /// Purges expired (and corrupt) records, one blocking task per batch of keys, so a
    /// long purge never holds a blocking thread for the whole directory.
    async fn purge_expired_with_progress(
        &self,
        batch: usize,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        let keys = self
            .blocking(|dir| {
                dir.remove_stale_tmp()?;
                dir.keys()
            })
            .await?;
        let mut total = 0;
        for chunk in keys.chunks(batch.max(1)) {
            let chunk = chunk.to_vec();
            let purged = self.blocking(move |dir| dir.purge(&chunk)).await?;
            total += purged;
            progress(purged);
        }
        Ok(total)
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        let handle = *handle;
        self.blocking(move |dir| dir.find(&handle)).await
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let query = query.clone();
        self.blocking(move |dir| dir.list(&query)).await
    }
}
