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

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use cloakroom::record::now;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionId,
    SessionStore, StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use sha2::{Digest, Sha256};

/// Temporary files older than this are leftovers of killed writers; purge removes them.
const STALE_TMP: Duration = Duration::from_secs(3600);
/// How long an operation may wait for a lock, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Passes of revoke-all/revoke-others before it gives up rather than under-revoke.
const REVOKE_PASSES: usize = 16;

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

fn io(error: std::io::Error) -> StoreError {
    StoreError::unavailable(error)
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

/// Creates `path` and any missing parents with mode 0700 (an existing one keeps its mode).
fn private_dir(path: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io)
}

/// The directory, as the blocking operations see it.
struct Dir {
    root: Arc<PathBuf>,
    timeout: Duration,
}

/// What a user's index holds.
#[derive(Default)]
struct UserSessions {
    live: Vec<SessionEntry>,
    /// Indexed sessions whose record does not decode.
    corrupt: Vec<StoreKey>,
    /// Every marker the listing read, before it read their records.
    listed: HashSet<StoreKey>,
}

/// An exclusive lock on a stripe, released when dropped.
struct Locked(#[allow(dead_code)] File);

impl Dir {
    fn session(&self, key: &StoreKey) -> PathBuf {
        self.root.join("sessions").join(key.to_hex())
    }

    fn user_dir(&self, user: &str) -> PathBuf {
        let hashed: [u8; 32] = Sha256::digest(user.as_bytes()).into();
        self.root
            .join("users")
            .join(StoreKey::from_bytes(hashed).to_hex())
    }

    fn marker(&self, user: &str, key: &StoreKey) -> PathBuf {
        self.user_dir(user).join(key.to_hex())
    }

    fn stripe(key: &StoreKey) -> u8 {
        key.as_bytes()[0]
    }

    fn lock_stripe(&self, stripe: u8) -> Result<Locked, StoreError> {
        let path = self.root.join("locks").join(format!("{stripe:02x}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // Polled rather than blocking, so a lock another process keeps ends in a typed
        // timeout instead of a hang.
        let started = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Locked(file)),
                Err(TryLockError::WouldBlock) => {
                    let waited = started.elapsed();
                    if waited >= self.timeout {
                        return Err(StoreError::Timeout(self.timeout));
                    }
                    std::thread::sleep(pause.min(self.timeout - waited));
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(TryLockError::Error(error)) => return Err(io(error)),
            }
        }
    }

    fn lock(&self, key: &StoreKey) -> Result<Locked, StoreError> {
        self.lock_stripe(Self::stripe(key))
    }

    /// Locks two keys' stripes in a fixed order (one lock if they share a stripe).
    fn lock_two(&self, a: &StoreKey, b: &StoreKey) -> Result<(Locked, Option<Locked>), StoreError> {
        let (x, y) = (Self::stripe(a), Self::stripe(b));
        if x == y {
            return Ok((self.lock_stripe(x)?, None));
        }
        let first = self.lock_stripe(x.min(y))?;
        let second = self.lock_stripe(x.max(y))?;
        Ok((first, Some(second)))
    }

    /// The stored record, live or not; `None` if there is no file.
    fn read(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        match fs::read(self.session(key)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
                StoreError::Corrupt(format!("session file is not a record: {error}"))
            }),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io(error)),
        }
    }

    fn read_live(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(self.read(key)?.filter(|record| record.is_live_at(now())))
    }

    /// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync the directory.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self
            .root
            .join("tmp")
            .join(SessionId::generate().store_key().to_hex());
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, path).map_err(io)?;
        if let Some(parent) = path.parent() {
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    fn write(&self, key: &StoreKey, record: &Record) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(StoreError::backend)?;
        self.write_atomic(&self.session(key), &bytes)
    }

    fn add_marker(&self, user: &str, key: &StoreKey) -> Result<(), StoreError> {
        private_dir(&self.user_dir(user))?;
        match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.marker(user, key))
        {
            Ok(_) => Ok(()),
            Err(error) => Err(io(error)),
        }
    }

    fn remove(path: &Path) -> Result<bool, StoreError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
            Err(error) => Err(io(error)),
        }
    }

    fn remove_session(&self, key: &StoreKey, record: Option<&Record>) -> Result<bool, StoreError> {
        let removed = Self::remove(&self.session(key))?;
        if let Some(user) = record.and_then(|r| r.user_id.as_deref()) {
            Self::remove(&self.marker(user, key))?;
        }
        Ok(removed)
    }

    /// The store keys of every session file (and nothing else).
    fn keys(&self) -> Result<Vec<StoreKey>, StoreError> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(self.root.join("sessions")).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            if let Some(key) = name.to_str().and_then(StoreKey::from_hex) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// The user's index markers, dead ones removed under the session's lock.
    fn user_sessions(&self, user: &str) -> Result<UserSessions, StoreError> {
        let entries = match fs::read_dir(self.user_dir(user)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(UserSessions::default()),
            Err(error) => return Err(io(error)),
        };
        let mut found = UserSessions::default();
        for entry in entries {
            let name = entry.map_err(io)?.file_name();
            let Some(key) = name.to_str().and_then(StoreKey::from_hex) else {
                continue;
            };
            found.listed.insert(key);
            match self.read_live(&key) {
                Ok(Some(record)) if record.user_id.as_deref() == Some(user) => {
                    found.live.push(SessionEntry { key, record })
                }
                Err(StoreError::Corrupt(_)) => found.corrupt.push(key),
                Err(error) => return Err(error),
                Ok(_) => {
                    let _lock = self.lock(&key)?;
                    let still = self.read_live(&key).unwrap_or(None);
                    if still.is_none_or(|r| r.user_id.as_deref() != Some(user)) {
                        Self::remove(&self.marker(user, &key))?;
                    }
                }
            }
        }
        Ok(found)
    }

    /// Whether the user's index holds only markers in `listed` (removals are fine): no
    /// session was indexed since, so no rename that adds its new marker before moving the
    /// record slipped between a listing's directory read and its record reads.
    fn gained_nothing(&self, user: &str, listed: &HashSet<StoreKey>) -> Result<bool, StoreError> {
        let entries = match fs::read_dir(self.user_dir(user)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(true),
            Err(error) => return Err(io(error)),
        };
        for entry in entries {
            let name = entry.map_err(io)?.file_name();
            if let Some(key) = name.to_str().and_then(StoreKey::from_hex) {
                if !listed.contains(&key) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The record if live, with a corrupt one read as absent (list and admin paths).
    fn read_live_or_skip(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        match self.read_live(key) {
            Err(StoreError::Corrupt(_)) => Ok(None),
            other => other,
        }
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
        self.blocking(move |dir| {
            let _lock = dir.lock(&key)?;
            if dir.read_live(&key)?.is_some() {
                return Err(InsertError::Duplicate);
            }
            if let Some(user) = &record.user_id {
                dir.add_marker(user, &key)?;
            }
            dir.write(&key, &record)?;
            Ok(())
        })
        .await
    }

    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), UpdateError> {
        let (key, mut record) = (*key, record.clone());
        self.blocking(move |dir| {
            let _lock = dir.lock(&key)?;
            let stored = dir.read_live(&key)?.ok_or(UpdateError::Missing)?;
            if stored.version != expected_version {
                return Err(UpdateError::Conflict);
            }
            record.version = expected_version + 1;
            record.absolute_deadline = stored.absolute_deadline;
            if let Some(user) = &record.user_id {
                dir.add_marker(user, &key)?;
            }
            dir.write(&key, &record)?;
            Ok(())
        })
        .await
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        let (key, touch) = (*key, *touch);
        self.blocking(move |dir| {
            let _lock = dir.lock(&key)?;
            let mut record = dir.read_live(&key)?.ok_or(TouchError::Missing)?;
            record.apply_touch(&touch);
            dir.write(&key, &record)?;
            Ok(())
        })
        .await
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        let (old, new) = (*old, *new);
        self.blocking(move |dir| {
            let _locks = dir.lock_two(&old, &new)?;
            let record = dir.read_live(&old)?.ok_or(RenameError::Missing)?;
            if dir.read_live(&new)?.is_some() {
                return Err(RenameError::Duplicate);
            }
            if let Some(user) = &record.user_id {
                dir.add_marker(user, &new)?;
            }
            fs::rename(dir.session(&old), dir.session(&new)).map_err(io)?;
            if let Some(user) = &record.user_id {
                Dir::remove(&dir.marker(user, &old))?;
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let key = *key;
        self.blocking(move |dir| {
            let _lock = dir.lock(&key)?;
            let record = dir.read(&key).unwrap_or(None);
            dir.remove_session(&key, record.as_ref())
        })
        .await
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let user = user.to_owned();
        self.blocking(move |dir| Ok(dir.user_sessions(&user)?.live))
            .await
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let (user, except) = (user.to_owned(), except.copied());
        self.blocking(move |dir| {
            let mut deleted = 0;
            // A rename that completes mid-pass has already added the new marker, so the
            // next pass sees the new key; done when a pass finds nothing left but `except`
            // and no marker was added while it ran.
            for _ in 0..REVOKE_PASSES {
                let found = dir.user_sessions(&user)?;
                let live: Vec<StoreKey> = found
                    .live
                    .iter()
                    .map(|e| e.key)
                    .filter(|k| Some(*k) != except)
                    .collect();
                if live.is_empty() && found.corrupt.is_empty() {
                    // The listing reads the directory, then the records: a rename that
                    // added its marker after the first and moved its record before the
                    // second is in neither, but it added a marker: look again if so.
                    if dir.gained_nothing(&user, &found.listed)? {
                        return Ok(deleted);
                    }
                    continue;
                }
                for key in live {
                    let _lock = dir.lock(&key)?;
                    match dir.read_live(&key) {
                        Ok(Some(record)) if record.user_id.as_deref() == Some(user.as_str()) => {
                            deleted += u64::from(dir.remove_session(&key, Some(&record))?);
                        }
                        Err(StoreError::Corrupt(_)) => {
                            dir.remove_session(&key, None)?;
                            Dir::remove(&dir.marker(&user, &key))?;
                        }
                        _ => {}
                    }
                }
                // Unreadable, so dead already: removed, not counted as revoked.
                for key in found.corrupt {
                    let _lock = dir.lock(&key)?;
                    if matches!(dir.read(&key), Err(StoreError::Corrupt(_))) {
                        dir.remove_session(&key, None)?;
                    }
                    Dir::remove(&dir.marker(&user, &key))?;
                }
            }
            Err(StoreError::backend(
                "the user's sessions kept being created or renamed during the revocation; try again",
            ))
        })
        .await
    }

    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.purge_expired_with_progress(batch, &mut |_| {}).await
    }

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
            let purged = self
                .blocking(move |dir| {
                    let mut purged = 0;
                    for key in chunk {
                        let _lock = dir.lock(&key)?;
                        match dir.read(&key) {
                            Ok(Some(record)) if !record.is_live_at(now()) => {
                                purged += u64::from(dir.remove_session(&key, Some(&record))?);
                            }
                            // Dead to every reader; its index marker goes when next listed.
                            Err(StoreError::Corrupt(_)) => {
                                purged += u64::from(dir.remove_session(&key, None)?);
                            }
                            _ => {}
                        }
                    }
                    Ok::<_, StoreError>(purged)
                })
                .await?;
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
        self.blocking(move |dir| {
            for key in dir.keys()?.into_iter().filter(|k| handle.matches(k)) {
                if let Some(record) = dir.read_live_or_skip(&key)? {
                    return Ok(Some(SessionEntry { key, record }));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let query = query.clone();
        self.blocking(move |dir| {
            let mut keys = match &query.user {
                Some(user) => dir
                    .user_sessions(user)?
                    .live
                    .into_iter()
                    .map(|e| e.key)
                    .collect(),
                None => dir.keys()?,
            };
            keys.sort();
            keys.retain(|k| query.after.is_none_or(|after| *k > after));
            let mut entries = Vec::new();
            for key in keys {
                if entries.len() >= query.limit {
                    break;
                }
                if let Some(record) = dir.read_live_or_skip(&key)? {
                    entries.push(SessionEntry { key, record });
                }
            }
            Ok(entries)
        })
        .await
    }
}

impl Dir {
    /// Removes temporary files left by writers killed mid-write.
    fn remove_stale_tmp(&self) -> Result<(), StoreError> {
        for entry in fs::read_dir(self.root.join("tmp")).map_err(io)? {
            let entry = entry.map_err(io)?;
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok());
            if age.is_some_and(|age| age > STALE_TMP) {
                Dir::remove(&entry.path())?;
            }
        }
        Ok(())
    }
}
