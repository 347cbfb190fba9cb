//! The store's directory as the blocking operations see it: where each file lives, the
//! striped locks, atomic writes, and the per-user index markers.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cloakroom::record::now;
use cloakroom::{Record, SessionEntry, SessionId, StoreError, StoreKey};
use sha2::{Digest, Sha256};

/// Temporary files older than this are leftovers of killed writers; purge removes them.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// An I/O failure: the store is unavailable.
pub(crate) fn io(error: std::io::Error) -> StoreError {
    StoreError::unavailable(error)
}

/// Creates `path` and any missing parents with mode 0700 (an existing one keeps its mode).
pub(crate) fn private_dir(path: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io)
}

/// The directory, as the blocking operations see it.
pub(crate) struct Dir {
    pub(crate) root: Arc<PathBuf>,
    pub(crate) timeout: Duration,
}

/// What a user's index holds.
#[derive(Default)]
pub(crate) struct UserSessions {
    pub(crate) live: Vec<SessionEntry>,
    /// Indexed sessions whose record does not decode.
    pub(crate) corrupt: Vec<StoreKey>,
    /// Every marker the listing read, before it read their records.
    pub(crate) listed: HashSet<StoreKey>,
}

/// An exclusive lock on a stripe, released when dropped.
pub(crate) struct Locked(#[allow(dead_code)] File);

impl Dir {
    pub(crate) fn session(&self, key: &StoreKey) -> PathBuf {
        self.root.join("sessions").join(key.to_hex())
    }

    pub(crate) fn user_dir(&self, user: &str) -> PathBuf {
        let hashed: [u8; 32] = Sha256::digest(user.as_bytes()).into();
        self.root
            .join("users")
            .join(StoreKey::from_bytes(hashed).to_hex())
    }

    pub(crate) fn marker(&self, user: &str, key: &StoreKey) -> PathBuf {
        self.user_dir(user).join(key.to_hex())
    }

    pub(crate) fn stripe(key: &StoreKey) -> u8 {
        key.as_bytes()[0]
    }

    pub(crate) fn lock_stripe(&self, stripe: u8) -> Result<Locked, StoreError> {
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

    pub(crate) fn lock(&self, key: &StoreKey) -> Result<Locked, StoreError> {
        self.lock_stripe(Self::stripe(key))
    }

    /// Locks two keys' stripes in a fixed order (one lock if they share a stripe).
    pub(crate) fn lock_two(
        &self,
        a: &StoreKey,
        b: &StoreKey,
    ) -> Result<(Locked, Option<Locked>), StoreError> {
        let (x, y) = (Self::stripe(a), Self::stripe(b));
        if x == y {
            return Ok((self.lock_stripe(x)?, None));
        }
        let first = self.lock_stripe(x.min(y))?;
        let second = self.lock_stripe(x.max(y))?;
        Ok((first, Some(second)))
    }

    /// The stored record, live or not; `None` if there is no file.
    pub(crate) fn read(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        match fs::read(self.session(key)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
                StoreError::Corrupt(format!("session file is not a record: {error}"))
            }),
            // No file is no session, but no directory is an outage (the volume unmounted
            // or the directory moved away), not every session gone: 503, not logged out.
            Err(error) if error.kind() == ErrorKind::NotFound => {
                match fs::metadata(self.root.join("sessions")) {
                    Ok(meta) if meta.is_dir() => Ok(None),
                    _ => Err(StoreError::unavailable(format!(
                        "the session directory {} is gone",
                        self.root.join("sessions").display()
                    ))),
                }
            }
            Err(error) => Err(io(error)),
        }
    }

    pub(crate) fn read_live(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(self.read(key)?.filter(|record| record.is_live_at(now())))
    }

    /// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync the directory.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
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

    pub(crate) fn write(&self, key: &StoreKey, record: &Record) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(StoreError::backend)?;
        self.write_atomic(&self.session(key), &bytes)
    }

    pub(crate) fn add_marker(&self, user: &str, key: &StoreKey) -> Result<(), StoreError> {
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

    pub(crate) fn remove(path: &Path) -> Result<bool, StoreError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
            Err(error) => Err(io(error)),
        }
    }

    pub(crate) fn remove_session(
        &self,
        key: &StoreKey,
        record: Option<&Record>,
    ) -> Result<bool, StoreError> {
        let removed = Self::remove(&self.session(key))?;
        if let Some(user) = record.and_then(|r| r.user_id.as_deref()) {
            Self::remove(&self.marker(user, key))?;
        }
        Ok(removed)
    }

    /// The store keys of every session file (and nothing else).
    pub(crate) fn keys(&self) -> Result<Vec<StoreKey>, StoreError> {
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
    pub(crate) fn user_sessions(&self, user: &str) -> Result<UserSessions, StoreError> {
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
                    // Dead or someone else's, or a rename's new key whose record is on its
                    // way: under the lock, which the rename holds until it has moved it.
                    let _lock = self.lock(&key)?;
                    match self.read_live(&key) {
                        Ok(Some(record)) if record.user_id.as_deref() == Some(user) => {
                            found.live.push(SessionEntry { key, record });
                        }
                        Err(StoreError::Corrupt(_)) => found.corrupt.push(key),
                        // A failed read says nothing of the session: its marker stays.
                        Err(error) => return Err(error),
                        Ok(_) => {
                            Self::remove(&self.marker(user, &key))?;
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// Whether the user's index holds only markers in `listed` (removals are fine): no
    /// session was indexed since, so no rename that adds its new marker before moving the
    /// record slipped between a listing's directory read and its record reads.
    pub(crate) fn gained_nothing(
        &self,
        user: &str,
        listed: &HashSet<StoreKey>,
    ) -> Result<bool, StoreError> {
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
    pub(crate) fn read_live_or_skip(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        match self.read_live(key) {
            Err(StoreError::Corrupt(_)) => Ok(None),
            other => other,
        }
    }

    /// Removes temporary files left by writers killed mid-write.
    pub(crate) fn remove_stale_tmp(&self) -> Result<(), StoreError> {
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
