//! The store operations, each a blocking function on [`Dir`] that holds the lock of the
//! sessions it reads and writes (the async trait methods run them on the blocking pool).

use std::fs;

use cloakroom::record::now;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, StoreError, StoreKey,
    Touch, TouchError, UpdateError,
};

use crate::dir::{io, Dir};

/// Passes of revoke-all/revoke-others before it gives up rather than under-revoke.
const REVOKE_PASSES: usize = 16;

impl Dir {
    /// `SessionStore::insert`: never over a live record.
    pub(crate) fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        let _lock = self.lock(key)?;
        if self.read_live(key)?.is_some() {
            return Err(InsertError::Duplicate);
        }
        if let Some(user) = &record.user_id {
            self.add_marker(user, key)?;
        }
        self.write(key, record)?;
        Ok(())
    }

    /// `SessionStore::update`: compare-and-set on the record's version, keeping the
    /// absolute deadline as inserted.
    pub(crate) fn update(&self, key: &StoreKey, mut record: Record) -> Result<(), UpdateError> {
        let _lock = self.lock(key)?;
        let stored = self.read_live(key)?.ok_or(UpdateError::Missing)?;
        if stored.version != record.version {
            return Err(UpdateError::Conflict);
        }
        record.version = record.version.wrapping_add(1);
        record.absolute_deadline = stored.absolute_deadline;
        if let Some(user) = &record.user_id {
            self.add_marker(user, key)?;
        }
        self.write(key, &record)?;
        Ok(())
    }

    /// `SessionStore::touch`: the activity time and idle deadline only.
    pub(crate) fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        let _lock = self.lock(key)?;
        let mut record = self.read_live(key)?.ok_or(TouchError::Missing)?;
        record.apply_touch(touch);
        self.write(key, &record)?;
        Ok(())
    }

    /// `SessionStore::rename`: the new marker first, then the file, then the old marker,
    /// so the session is in its user's index all along.
    pub(crate) fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        let _locks = self.lock_two(old, new)?;
        let record = self.read_live(old)?.ok_or(RenameError::Missing)?;
        if self.read_live(new)?.is_some() {
            return Err(RenameError::Duplicate);
        }
        if let Some(user) = &record.user_id {
            self.add_marker(user, new)?;
        }
        fs::rename(self.session(old), self.session(new)).map_err(io)?;
        if let Some(user) = &record.user_id {
            Dir::remove(&self.marker(user, old))?;
        }
        Ok(())
    }

    /// `SessionStore::delete`, corrupt records included.
    pub(crate) fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let _lock = self.lock(key)?;
        // A corrupt record is deleted all the same; a failed read (the directory gone) is
        // an outage, not "nothing to delete": a logout must not report a deletion that
        // did not happen.
        let record = match self.read(key) {
            Ok(record) => record,
            Err(StoreError::Corrupt(_)) => None,
            Err(error) => return Err(error),
        };
        self.remove_session(key, record.as_ref())
    }

    /// `SessionStore::list_for_user`: the user's live sessions (the listing drops dead
    /// markers as it goes).
    pub(crate) fn list_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        Ok(self.user_sessions(user)?.live)
    }

    /// `SessionStore::delete_for_user`.
    pub(crate) fn revoke(&self, user: &str, except: Option<StoreKey>) -> Result<u64, StoreError> {
        let mut deleted = 0;
        // A rename that completes mid-pass has already added the new marker, so the
        // next pass sees the new key; done when a pass finds nothing left but `except`
        // and no marker was added while it ran.
        for _ in 0..REVOKE_PASSES {
            let found = self.user_sessions(user)?;
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
                if self.gained_nothing(user, &found.listed)? {
                    return Ok(deleted);
                }
                continue;
            }
            for key in live {
                let _lock = self.lock(&key)?;
                match self.read_live(&key) {
                    Ok(Some(record)) if record.user_id.as_deref() == Some(user) => {
                        deleted += u64::from(self.remove_session(&key, Some(&record))?);
                    }
                    Err(StoreError::Corrupt(_)) => {
                        self.remove_session(&key, None)?;
                        Dir::remove(&self.marker(user, &key))?;
                    }
                    _ => {}
                }
            }
            // Unreadable, so dead already: removed, not counted as revoked.
            for key in found.corrupt {
                let _lock = self.lock(&key)?;
                if matches!(self.read(&key), Err(StoreError::Corrupt(_))) {
                    self.remove_session(&key, None)?;
                }
                Dir::remove(&self.marker(user, &key))?;
            }
        }
        Err(StoreError::backend(
            "the user's sessions kept being created or renamed during the revocation; try again",
        ))
    }

    /// One batch of `SessionStore::purge_expired`: removes the expired and the corrupt
    /// records among `keys`; returns how many.
    pub(crate) fn purge(&self, keys: &[StoreKey]) -> Result<u64, StoreError> {
        let mut purged = 0;
        for key in keys {
            let _lock = self.lock(key)?;
            match self.read(key) {
                Ok(Some(record)) if !record.is_live_at(now()) => {
                    purged += u64::from(self.remove_session(key, Some(&record))?);
                }
                // Dead to every reader; its index marker goes when next listed.
                Err(StoreError::Corrupt(_)) => {
                    purged += u64::from(self.remove_session(key, None)?);
                }
                _ => {}
            }
        }
        Ok(purged)
    }

    /// `SessionStore::find_by_handle`, by scanning the sessions directory.
    pub(crate) fn find(&self, handle: &SessionHandle) -> Result<Option<SessionEntry>, StoreError> {
        for key in self.keys()?.into_iter().filter(|k| handle.matches(k)) {
            if let Some(record) = self.read_live_or_skip(&key)? {
                return Ok(Some(SessionEntry { key, record }));
            }
        }
        Ok(None)
    }

    /// `SessionStore::list_sessions`, by scanning the sessions directory (or the user's
    /// index).
    pub(crate) fn list(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let keys = match &query.user {
            Some(user) => self
                .user_sessions(user)?
                .live
                .into_iter()
                .map(|e| e.key)
                .collect(),
            None => self.keys()?,
        };
        let mut entries = Vec::new();
        for key in query.candidates(keys) {
            if entries.len() >= query.limit {
                break;
            }
            if let Some(record) = self.read_live_or_skip(&key)? {
                entries.push(SessionEntry { key, record });
            }
        }
        Ok(entries)
    }
}
