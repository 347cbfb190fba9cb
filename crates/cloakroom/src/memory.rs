//! [`MemoryStore`]: an in-process store for tests, development and single-process apps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

use crate::id::{SessionHandle, StoreKey};
use crate::record::{earliest, is_live, now, ClientMeta, Record, Touch};
use crate::store::{
    InsertError, ListQuery, RenameError, SessionEntry, SessionStore, StoreError, TouchError,
    UpdateError,
};

/// How many expired records each write evicts on its way, so memory is reclaimed without a
/// background task (call [`SessionStore::purge_expired`] to evict all at once).
const EVICT_PER_WRITE: usize = 8;

/// A concurrent in-memory store with a per-user index and real eviction of expired records.
///
/// Clones share the same sessions. Data is lost when the process exits.
///
/// ```
/// # tokio_test_block_on(async {
/// use cloakroom::{record, MemoryStore, SessionId, SessionStore};
/// let store = MemoryStore::new();
/// let key = SessionId::generate().store_key();
/// store.insert(&key, &record::Record::new(record::now(), None, None)).await.unwrap();
/// assert!(store.load(&key).await.unwrap().is_some());
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<Inner>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    sessions: BTreeMap<StoreKey, Stored>,
    by_user: HashMap<String, BTreeSet<StoreKey>>,
    by_expiry: BTreeSet<(OffsetDateTime, StoreKey)>,
}

/// A [`Record`] as the store keeps it: the same fields, packed for a store that may hold
/// millions. A `serde_json::Map` is a B-tree whose first node has room for eleven entries,
/// so a session with two values would carry some 600 bytes of empty slots; a boxed slice
/// holds what is there and no more. Client metadata, read only for device lists, sits
/// behind one pointer.
struct Stored {
    /// The values, in key order.
    data: Box<[(Box<str>, Value)]>,
    created_at: OffsetDateTime,
    last_active_at: OffsetDateTime,
    idle_deadline: Option<OffsetDateTime>,
    absolute_deadline: Option<OffsetDateTime>,
    version: u64,
    persistent: bool,
    user_id: Option<Box<str>>,
    auth_epoch: Option<Box<str>>,
    client: Option<Box<ClientMeta>>,
}

impl Stored {
    fn new(record: &Record) -> Self {
        Self {
            data: record
                .data
                .iter()
                .map(|(key, value)| (Box::from(key.as_str()), value.clone()))
                .collect(),
            created_at: record.created_at,
            last_active_at: record.last_active_at,
            idle_deadline: record.idle_deadline,
            absolute_deadline: record.absolute_deadline,
            version: record.version,
            persistent: record.persistent,
            user_id: record.user_id.as_deref().map(Box::from),
            auth_epoch: record.auth_epoch.as_deref().map(Box::from),
            client: (record.client != ClientMeta::default())
                .then(|| Box::new(record.client.clone())),
        }
    }

    fn to_record(&self) -> Record {
        Record {
            data: self
                .data
                .iter()
                .map(|(key, value)| (String::from(&**key), value.clone()))
                .collect(),
            created_at: self.created_at,
            last_active_at: self.last_active_at,
            idle_deadline: self.idle_deadline,
            absolute_deadline: self.absolute_deadline,
            persistent: self.persistent,
            user_id: self.user_id.as_deref().map(String::from),
            client: self.client.as_deref().cloned().unwrap_or_default(),
            auth_epoch: self.auth_epoch.as_deref().map(String::from),
            version: self.version,
        }
    }

    fn expires_at(&self) -> Option<OffsetDateTime> {
        earliest(self.idle_deadline, self.absolute_deadline)
    }

    fn is_live_at(&self, now: OffsetDateTime) -> bool {
        is_live(self.expires_at(), now)
    }
}

impl Inner {
    fn live(&self, key: &StoreKey, now: OffsetDateTime) -> Option<&Stored> {
        self.sessions.get(key).filter(|r| r.is_live_at(now))
    }

    fn put(&mut self, key: StoreKey, record: Stored) {
        self.remove(&key);
        if let Some(user) = &record.user_id {
            self.by_user
                .entry(user.to_string())
                .or_default()
                .insert(key);
        }
        if let Some(deadline) = record.expires_at() {
            self.by_expiry.insert((deadline, key));
        }
        self.sessions.insert(key, record);
    }

    fn remove(&mut self, key: &StoreKey) -> Option<Stored> {
        let record = self.sessions.remove(key)?;
        if let Some(user) = &record.user_id {
            if let Some(keys) = self.by_user.get_mut(&**user) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_user.remove(&**user);
                }
            }
        }
        if let Some(deadline) = record.expires_at() {
            self.by_expiry.remove(&(deadline, *key));
        }
        Some(record)
    }

    fn evict(&mut self, now: OffsetDateTime, max: usize) -> u64 {
        let mut evicted = 0;
        while evicted < max {
            match self.by_expiry.first() {
                Some(&(deadline, key)) if deadline <= now => {
                    self.remove(&key);
                    evicted += 1;
                }
                _ => break,
            }
        }
        evicted as u64
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records are held, expired but not yet evicted ones included.
    pub fn len(&self) -> usize {
        self.read().sessions.len()
    }

    /// Whether no records are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // No code path panics while holding the lock; recover the data if one ever did.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        guard.evict(now(), EVICT_PER_WRITE);
        guard
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(self.read().live(key, now()).map(Stored::to_record))
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        let mut inner = self.write();
        if inner.live(key, now()).is_some() {
            return Err(InsertError::Duplicate);
        }
        inner.put(*key, Stored::new(record));
        Ok(())
    }

    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), UpdateError> {
        let mut inner = self.write();
        let stored = inner.live(key, now()).ok_or(UpdateError::Missing)?;
        if stored.version != expected_version {
            return Err(UpdateError::Conflict);
        }
        let absolute_deadline = stored.absolute_deadline;
        let mut record = Stored::new(record);
        record.version = expected_version + 1;
        record.absolute_deadline = absolute_deadline;
        inner.put(*key, record);
        Ok(())
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        let mut inner = self.write();
        if inner.live(key, now()).is_none() {
            return Err(TouchError::Missing);
        }
        let mut record = inner.remove(key).ok_or(TouchError::Missing)?;
        record.last_active_at = touch.last_active_at;
        record.idle_deadline = touch.idle_deadline;
        inner.put(*key, record);
        Ok(())
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        let mut inner = self.write();
        let t = now();
        if inner.live(old, t).is_none() {
            return Err(RenameError::Missing);
        }
        if inner.live(new, t).is_some() {
            return Err(RenameError::Duplicate);
        }
        let record = inner.remove(old).ok_or(RenameError::Missing)?;
        inner.put(*new, record);
        Ok(())
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        Ok(self.write().remove(key).is_some())
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let inner = self.read();
        let t = now();
        Ok(inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|key| {
                inner.live(key, t).map(|record| SessionEntry {
                    key: *key,
                    record: record.to_record(),
                })
            })
            .collect())
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let t = now();
        let doomed: Vec<StoreKey> = inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter(|key| Some(*key) != except && inner.live(key, t).is_some())
            .copied()
            .collect();
        for key in &doomed {
            inner.remove(key);
        }
        Ok(doomed.len() as u64)
    }

    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            // Release the lock between batches so requests are never held up for long.
            let evicted = self
                .inner
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .evict(now(), batch);
            total += evicted;
            if evicted < batch as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        let inner = self.read();
        let t = now();
        let (low, high) = handle.key_range();
        Ok(inner
            .sessions
            .range(low..=high)
            .find(|(_, record)| record.is_live_at(t))
            .map(|(key, record)| SessionEntry {
                key: *key,
                record: record.to_record(),
            }))
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let inner = self.read();
        let t = now();
        let entries = |keys: &mut dyn Iterator<Item = (&StoreKey, &Stored)>| {
            keys.filter(|(key, record)| {
                record.is_live_at(t) && query.after.is_none_or(|after| **key > after)
            })
            .take(query.limit)
            .map(|(key, record)| SessionEntry {
                key: *key,
                record: record.to_record(),
            })
            .collect()
        };
        Ok(match &query.user {
            Some(user) => entries(
                &mut inner
                    .by_user
                    .get(user)
                    .into_iter()
                    .flatten()
                    .filter_map(|key| inner.sessions.get_key_value(key)),
            ),
            None => entries(&mut inner.sessions.iter()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[tokio::test]
    async fn expired_records_are_evicted_by_later_writes() {
        let store = MemoryStore::new();
        let t = now();
        for _ in 0..4 {
            let key = crate::SessionId::generate().store_key();
            let record = Record::new(t, Some(t + Duration::milliseconds(20)), None);
            store.insert(&key, &record).await.unwrap();
        }
        assert_eq!(store.len(), 4);
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        let key = crate::SessionId::generate().store_key();
        store
            .insert(&key, &Record::new(now(), None, None))
            .await
            .unwrap();
        assert_eq!(store.len(), 1, "the write evicted the four expired records");
    }
}
