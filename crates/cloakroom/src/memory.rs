//! [`MemoryStore`]: an in-process store for tests, development and single-process apps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use crate::id::{SessionHandle, StoreKey};
use crate::record::{now, stored_unix_ms, to_unix_ms, ClientMeta, Data, Record, Touch};
use crate::store::{
    InsertError, ListQuery, RenameError, SessionEntry, SessionStore, StoreError, TouchError,
    UpdateError,
};

/// How many records each write looks at for expiry on its way, so memory is reclaimed
/// without a background task and without an expiry index (call
/// [`SessionStore::purge_expired`] to evict all at once).
///
/// Every write (each insert among them) sweeps this many records, so the sweep goes round
/// the store at least this many times faster than sessions are created: records past their
/// deadline and not yet evicted are at most about `1 / EVICT_PER_WRITE` of those held.
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
    /// Where the expiry sweep resumes: after this key (from the start when `None`). The
    /// sweep replaces an index by deadline, which cost every session some 90 bytes.
    sweep_after: Option<StoreKey>,
}

/// "No deadline", as a stored deadline: later than any time a [`Record`] can hold (years
/// past 9999 do not fit in `time`), so the earliest deadline is a plain `min`.
const NEVER: i64 = i64::MAX;

/// A [`Record`] as the store keeps it, packed for a store that may hold millions: the
/// times as Unix milliseconds (the precision every store keeps), and everything of
/// variable size in one allocation of exactly its length (see [`Packed`]). A
/// `serde_json::Map` is a B-tree whose first node has room for eleven entries, so a
/// session with two values would otherwise carry some 600 bytes of empty slots, and every
/// key and string value an allocation of its own.
struct Stored {
    created_ms: i64,
    last_active_ms: i64,
    /// [`NEVER`] when there is no idle deadline.
    idle_ms: i64,
    /// [`NEVER`] when there is no absolute deadline.
    absolute_ms: i64,
    version: u64,
    packed: Packed,
}

impl Stored {
    fn new(record: &Record) -> Result<Self, StoreError> {
        Ok(Self {
            created_ms: to_unix_ms(record.created_at),
            last_active_ms: to_unix_ms(record.last_active_at),
            idle_ms: record.idle_deadline.map_or(NEVER, to_unix_ms),
            absolute_ms: record.absolute_deadline.map_or(NEVER, to_unix_ms),
            version: record.version,
            packed: Packed::new(record)?,
        })
    }

    /// The record back, or why it cannot be read (a timestamp out of range: never written
    /// by this store, but a corrupt record is treated as absent rather than panic).
    fn to_record(&self) -> Result<Record, StoreError> {
        let deadline = |ms: i64| (ms != NEVER).then(|| stored_unix_ms(ms)).transpose();
        let (fields, data) = self.packed.unpack()?;
        Ok(Record {
            data,
            created_at: stored_unix_ms(self.created_ms)?,
            last_active_at: stored_unix_ms(self.last_active_ms)?,
            idle_deadline: deadline(self.idle_ms)?,
            absolute_deadline: deadline(self.absolute_ms)?,
            persistent: fields.persistent,
            user_id: fields.user.map(str::to_owned),
            client: ClientMeta {
                ip: fields.ip.map(str::to_owned),
                user_agent: fields.user_agent.map(str::to_owned),
            },
            auth_epoch: fields.epoch.map(str::to_owned),
            device_binding: fields
                .binding
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
            version: self.version,
        })
    }

    /// When it dies, in Unix milliseconds ([`NEVER`] when never).
    fn expires_ms(&self) -> i64 {
        self.idle_ms.min(self.absolute_ms)
    }

    fn is_live_at(&self, now_ms: i64) -> bool {
        now_ms < self.expires_ms()
    }

    fn user(&self) -> Option<&str> {
        self.packed.fields().ok()?.user
    }
}

/// The variable-size part of a stored record, in one boxed slice:
///
/// - a flags byte: [`PERSISTENT`], then one bit per optional text that follows;
/// - each text present (user, epoch, IP, user agent, in that order): its length as four
///   bytes (little-endian), then its UTF-8;
/// - the rest: the data as a JSON object, or nothing for no values.
///
/// Only this store writes it and only this process reads it, so reading fails only on a
/// bug; it still fails as [`StoreError::Corrupt`] rather than panic.
struct Packed(Box<[u8]>);

const PERSISTENT: u8 = 1;
const TEXT_BITS: [u8; 5] = [2, 4, 8, 16, 32];

/// The fixed fields a [`Packed`] holds, borrowed from it.
struct Fields<'a> {
    persistent: bool,
    user: Option<&'a str>,
    epoch: Option<&'a str>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    /// The device binding's JSON (DBSC), rarely present.
    binding: Option<&'a str>,
}

impl Packed {
    fn new(record: &Record) -> Result<Self, StoreError> {
        let binding = record
            .device_binding
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        let texts = [
            record.user_id.as_deref(),
            record.auth_epoch.as_deref(),
            record.client.ip.as_deref(),
            record.client.user_agent.as_deref(),
            binding.as_deref(),
        ];
        let mut flags = if record.persistent { PERSISTENT } else { 0 };
        let mut len = 1;
        for (text, bit) in texts.iter().zip(TEXT_BITS) {
            if let Some(text) = text {
                flags |= bit;
                len += 4 + text.len();
            }
        }
        let data_len = if record.data.is_empty() {
            0
        } else {
            crate::record::json_len(&record.data).map_err(corrupt)?
        };
        // Exactly the length needed: no spare capacity is kept per session.
        let mut bytes = Vec::with_capacity(len + data_len);
        bytes.push(flags);
        for text in texts.into_iter().flatten() {
            let text_len = u32::try_from(text.len())
                .map_err(|_| StoreError::backend("a session text over 4 GiB"))?;
            bytes.extend_from_slice(&text_len.to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
        }
        if data_len > 0 {
            serde_json::to_writer(&mut bytes, &record.data).map_err(corrupt)?;
        }
        Ok(Self(bytes.into_boxed_slice()))
    }

    /// The fixed fields, and where the data starts.
    fn read_fields(&self) -> Result<(Fields<'_>, usize), StoreError> {
        let bytes = &*self.0;
        let flags = *bytes.first().ok_or_else(|| corrupt("empty"))?;
        let mut at = 1;
        let mut texts = [None; 5];
        for (text, bit) in texts.iter_mut().zip(TEXT_BITS) {
            if flags & bit == 0 {
                continue;
            }
            let len = bytes
                .get(at..at + 4)
                .and_then(|len| <[u8; 4]>::try_from(len).ok())
                .ok_or_else(|| corrupt("truncated"))?;
            let len = u32::from_le_bytes(len) as usize;
            let raw = bytes
                .get(at + 4..at + 4 + len)
                .ok_or_else(|| corrupt("truncated"))?;
            *text = Some(std::str::from_utf8(raw).map_err(corrupt)?);
            at += 4 + len;
        }
        let [user, epoch, ip, user_agent, binding] = texts;
        let fields = Fields {
            persistent: flags & PERSISTENT != 0,
            user,
            epoch,
            ip,
            user_agent,
            binding,
        };
        Ok((fields, at))
    }

    fn fields(&self) -> Result<Fields<'_>, StoreError> {
        Ok(self.read_fields()?.0)
    }

    fn unpack(&self) -> Result<(Fields<'_>, Data), StoreError> {
        let (fields, at) = self.read_fields()?;
        let json = self.0.get(at..).unwrap_or_default();
        let data = if json.is_empty() {
            Data::new()
        } else {
            serde_json::from_slice(json).map_err(corrupt)?
        };
        Ok((fields, data))
    }
}

fn corrupt(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("a packed memory record: {reason}"))
}

impl Inner {
    fn live(&self, key: &StoreKey, now_ms: i64) -> Option<&Stored> {
        self.sessions.get(key).filter(|r| r.is_live_at(now_ms))
    }

    fn put(&mut self, key: StoreKey, record: Stored) {
        self.remove(&key);
        if let Some(user) = record.user() {
            match self.by_user.get_mut(user) {
                Some(keys) => {
                    keys.insert(key);
                }
                None => {
                    self.by_user.insert(user.to_owned(), BTreeSet::from([key]));
                }
            }
        }
        self.sessions.insert(key, record);
    }

    fn remove(&mut self, key: &StoreKey) -> Option<Stored> {
        let record = self.sessions.remove(key)?;
        if let Some(user) = record.user() {
            if let Some(keys) = self.by_user.get_mut(user) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
        Some(record)
    }

    /// Looks at up to `max` records after the sweep's position, wrapping round to the
    /// first, and evicts those past their deadline; returns how many it evicted. The
    /// position moves on, so successive sweeps go round the whole store.
    fn sweep(&mut self, now_ms: i64, max: usize) -> u64 {
        // Once round at most: a store smaller than a sweep is not looked at twice.
        let max = max.min(self.sessions.len());
        let mut doomed = [StoreKey::from_bytes([0; 32]); EVICT_PER_WRITE];
        let mut evicted = 0;
        let mut seen = 0;
        while seen < max {
            let from = match self.sweep_after {
                Some(after) => Bound::Excluded(after),
                None => Bound::Unbounded,
            };
            let mut found = 0;
            let mut last = None;
            for (key, record) in self.sessions.range((from, Bound::Unbounded)) {
                if seen == max || found == doomed.len() {
                    break;
                }
                seen += 1;
                last = Some(*key);
                if !record.is_live_at(now_ms) {
                    doomed[found] = *key;
                    found += 1;
                }
            }
            for key in &doomed[..found] {
                self.remove(key);
            }
            evicted += found as u64;
            match last {
                Some(key) => self.sweep_after = Some(key),
                // Past the last record: start again from the first, unless there is none,
                // or the store is smaller than one sweep (then this one saw it all).
                None => {
                    let wrapped = self.sweep_after.take().is_some();
                    if !wrapped || self.sessions.is_empty() {
                        break;
                    }
                }
            }
        }
        evicted
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

    fn write(&self, now_ms: i64) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        guard.sweep(now_ms, EVICT_PER_WRITE);
        guard
    }
}

/// The current time in Unix milliseconds, as records are stored.
fn now_ms() -> i64 {
    to_unix_ms(now())
}

/// The entry for a listing, or `None` (logged) for a record that cannot be read.
fn entry(key: &StoreKey, record: &Stored) -> Option<SessionEntry> {
    match record.to_record() {
        Ok(record) => Some(SessionEntry { key: *key, record }),
        Err(error) => {
            tracing::warn!(handle = %key.handle(), %error, "corrupt session record skipped");
            None
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.read()
            .live(key, now_ms())
            .map(Stored::to_record)
            .transpose()
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        let stored = Stored::new(record)?;
        let t = now_ms();
        let mut inner = self.write(t);
        if inner.live(key, t).is_some() {
            return Err(InsertError::Duplicate);
        }
        inner.put(*key, stored);
        Ok(())
    }

    async fn update(&self, key: &StoreKey, record: &Record) -> Result<(), UpdateError> {
        // Packed before the lock is taken, so writers hold it for as short as possible.
        let mut next = Stored::new(record)?;
        let t = now_ms();
        let mut inner = self.write(t);
        let stored = inner.live(key, t).ok_or(UpdateError::Missing)?;
        if stored.version != record.version {
            return Err(UpdateError::Conflict);
        }
        next.version = record.version.wrapping_add(1);
        next.absolute_ms = stored.absolute_ms;
        inner.put(*key, next);
        Ok(())
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        let t = now_ms();
        let mut inner = self.write(t);
        // In place: the user index does not change, and there is no index by deadline.
        let record = inner
            .sessions
            .get_mut(key)
            .filter(|record| record.is_live_at(t))
            .ok_or(TouchError::Missing)?;
        record.last_active_ms = to_unix_ms(touch.last_active_at);
        record.idle_ms = touch.idle_deadline.map_or(NEVER, to_unix_ms);
        Ok(())
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        let t = now_ms();
        let mut inner = self.write(t);
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
        Ok(self.write(now_ms()).remove(key).is_some())
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let inner = self.read();
        let t = now_ms();
        Ok(inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|key| entry(key, inner.live(key, t)?))
            .collect())
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let t = now_ms();
        let mut inner = self.write(t);
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
        let mut after: Option<StoreKey> = None;
        loop {
            // Once round the whole store in key order, `batch` records at a time, releasing
            // the lock between batches so requests are never held up for long.
            let (seen, evicted) = {
                let t = now_ms();
                let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
                let from = after.map_or(Bound::Unbounded, Bound::Excluded);
                let mut doomed = Vec::new();
                let mut seen = 0;
                for (key, record) in inner.sessions.range((from, Bound::Unbounded)).take(batch) {
                    seen += 1;
                    after = Some(*key);
                    if !record.is_live_at(t) {
                        doomed.push(*key);
                    }
                }
                for key in &doomed {
                    inner.remove(key);
                }
                (seen, doomed.len() as u64)
            };
            total += evicted;
            if seen < batch {
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
        let t = now_ms();
        let (low, high) = handle.key_range();
        Ok(inner
            .sessions
            .range(low..=high)
            .filter(|(_, record)| record.is_live_at(t))
            .find_map(|(key, record)| entry(key, record)))
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let inner = self.read();
        let t = now_ms();
        let entries = |keys: &mut dyn Iterator<Item = (&StoreKey, &Stored)>| {
            keys.filter(|(key, record)| {
                record.is_live_at(t) && query.after.is_none_or(|after| **key > after)
            })
            .filter_map(|(key, record)| entry(key, record))
            .take(query.limit)
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

    /// A record at the last version a `u64` holds (a corrupt or edited one) takes an
    /// update: the version wraps round to 0, as in a release build, where a debug build
    /// panicked on the overflow.
    #[tokio::test]
    async fn the_last_version_wraps_round_on_update() {
        let store = MemoryStore::new();
        let key = crate::SessionId::generate().store_key();
        let t = crate::record::now();
        let mut record = Record::new(t, Some(t + time::Duration::hours(1)), None);
        record.version = u64::MAX;
        store.insert(&key, &record).await.unwrap();
        store.update(&key, &record).await.unwrap();
        assert_eq!(store.load(&key).await.unwrap().unwrap().version, 0);
    }
}
