//! [`CachedStore`]: an in-process cache in front of any durable cloakroom store, like
//! Django's `cached_db`.
//!
//! Reads come from the cache while an entry is fresh; every write goes through to the
//! durable store, which stays the authority. Several app instances may share one durable
//! store, each with its own cache:
//!
//! - a stale entry never wins a compare-and-set: the version check happens in the durable
//!   store, and a conflict evicts the entry, so the retry reads the durable record;
//! - a revocation made through another instance is seen here within the cache TTL (1 s by
//!   default), the documented bound; through this instance it is seen at once;
//! - nothing is written to the cache that the durable store refused, so a deleted session
//!   is never resurrected;
//! - a read that was in flight while the session was deleted, renamed or written through
//!   this instance never puts what it read into the cache: every write bumps the key's
//!   generation, and an entry stamped with an older generation is never served;
//! - nor does a write that finished while a logout of the same session ran: a write
//!   caches its record only if no other write to its key's stripe came in between;
//! - a user's revocation makes every cached entry unservable, so it also reaches the
//!   sessions it took that were logged in or renamed while it ran.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use cloakroom::{MemoryStore, SessionLayer};
//! use cloakroom_cached::CachedStore;
//! let store = CachedStore::new(MemoryStore::new()).with_ttl(Duration::from_millis(500));
//! let layer = SessionLayer::new(store);
//! # });
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cloakroom::record::now;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use moka::future::Cache;

/// The default time an entry may be served from the cache: the bound on how long a
/// revocation made through another instance can go unseen.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);
/// The longest time an entry may be served from the cache (a year); a longer TTL is taken
/// as this.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The default number of sessions cached.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// Generation counters, one per stripe of keys (several keys may share one: a shared
/// stripe only costs a cache miss).
const STRIPES: usize = 4096;

/// A cached record: what it is, when it was read, and the generation of its key's stripe
/// at the time it was read.
#[derive(Clone)]
struct Entry {
    record: Arc<Record>,
    since: Instant,
    generation: u64,
}

/// A durable store with an in-process cache in front.
pub struct CachedStore<D> {
    durable: D,
    /// Entries carry their insertion instant: moka evicts on its own schedule, but an
    /// entry is never served once older than `ttl`, which keeps the staleness bound exact.
    cache: Cache<StoreKey, Entry>,
    ttl: Duration,
    /// Bumped after every write through this instance, so a read that started before it
    /// cannot cache what it read.
    generations: Box<[AtomicU64]>,
}

impl<D> std::fmt::Debug for CachedStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl<D: SessionStore> CachedStore<D> {
    /// A cache with the default TTL and capacity in front of `durable`.
    pub fn new(durable: D) -> Self {
        Self::with_cache(durable, DEFAULT_TTL, DEFAULT_CAPACITY)
    }

    /// Changes the TTL, with the default capacity; see [`with_cache`](Self::with_cache).
    pub fn with_ttl(self, ttl: Duration) -> Self {
        Self::with_cache(self.durable, ttl, DEFAULT_CAPACITY)
    }

    /// A cache with `ttl` and room for `capacity` sessions. A `ttl` over
    /// [`MAX_TTL`] is taken as `MAX_TTL`.
    pub fn with_cache(durable: D, ttl: Duration, capacity: u64) -> Self {
        // The cache refuses a TTL over 1000 years with a panic.
        let ttl = ttl.min(MAX_TTL);
        let cache = Cache::builder()
            .time_to_live(ttl)
            .max_capacity(capacity)
            .build();
        Self {
            durable,
            cache,
            ttl,
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn stripe(&self, key: &StoreKey) -> &AtomicU64 {
        let bytes = key.as_bytes();
        let index = usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % STRIPES;
        &self.generations[index]
    }

    fn generation(&self, key: &StoreKey) -> u64 {
        self.stripe(key).load(Ordering::SeqCst)
    }

    /// Called once a write to `key` reached the durable store: entries read before it,
    /// and reads still in flight, become unservable. Returns the new generation.
    fn changed(&self, key: &StoreKey) -> u64 {
        self.stripe(key).fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The durable store behind the cache.
    pub fn durable(&self) -> &D {
        &self.durable
    }

    /// Caches `record` as read at `since` under `generation` (read before the durable
    /// read or taken after the durable write).
    async fn remember(&self, key: StoreKey, record: Record, since: Instant, generation: u64) {
        let entry = Entry {
            record: Arc::new(record),
            since,
            generation,
        };
        self.cache.insert(key, entry).await;
    }

    /// Caches what a write through this instance stored, read at `since`, if no other
    /// write to its stripe came between `before` (taken before the durable write) and
    /// `generation` (the write's own bump): a logout that ran meanwhile may have deleted
    /// it, so it is left to the next read.
    async fn remember_written(
        &self,
        key: StoreKey,
        record: Record,
        since: Instant,
        before: u64,
        generation: u64,
    ) {
        if generation == before.wrapping_add(1) {
            self.remember(key, record, since, generation).await;
        } else {
            self.cache.invalidate(&key).await;
        }
    }

    /// The cached record, if fresh and no write came after it was read.
    async fn fresh(&self, key: &StoreKey) -> Option<Arc<Record>> {
        let entry = self.cache.get(key).await?;
        if entry.since.elapsed() < self.ttl && entry.generation == self.generation(key) {
            Some(entry.record)
        } else {
            self.cache.invalidate(key).await;
            None
        }
    }
}

#[async_trait]
impl<D: SessionStore> SessionStore for CachedStore<D> {
    fn kind(&self) -> &'static str {
        "cached"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        if let Some(record) = self.fresh(key).await {
            if record.is_live_at(now()) {
                return Ok(Some(Record::clone(&record)));
            }
            self.cache.invalidate(key).await;
            return Ok(None);
        }
        // Stamped before the read: an entry is never older than its stamp says, and a
        // write that lands while the read is in flight makes its generation stale.
        let since = Instant::now();
        let generation = self.generation(key);
        let record = self.durable.load(key).await?;
        if let Some(record) = &record {
            self.remember(*key, record.clone(), since, generation).await;
        }
        Ok(record)
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        let since = Instant::now();
        let before = self.generation(key);
        self.durable.insert(key, record).await?;
        let generation = self.changed(key);
        self.remember_written(*key, record.clone(), since, before, generation)
            .await;
        Ok(())
    }

    async fn update(&self, key: &StoreKey, record: &Record) -> Result<(), UpdateError> {
        let since = Instant::now();
        let before = self.generation(key);
        let previous = self.fresh(key).await;
        match self.durable.update(key, record).await {
            Ok(()) => {
                let generation = self.changed(key);
                let mut stored = record.clone();
                stored.version = record.version.wrapping_add(1);
                // The durable store keeps the absolute deadline it was inserted with.
                match previous {
                    Some(previous) => stored.absolute_deadline = previous.absolute_deadline,
                    None => {
                        self.cache.invalidate(key).await;
                        return Ok(());
                    }
                }
                self.remember_written(*key, stored, since, before, generation)
                    .await;
                Ok(())
            }
            Err(error) => {
                // A conflict means our entry may be stale: the retry must read the durable
                // record (and a read in flight may be staler still).
                self.changed(key);
                self.cache.invalidate(key).await;
                Err(error)
            }
        }
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        let result = self.durable.touch(key, touch).await;
        // The durable store caps the new deadline; read it back rather than guess.
        self.changed(key);
        self.cache.invalidate(key).await;
        result
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        let result = self.durable.rename(old, new).await;
        self.changed(old);
        self.changed(new);
        self.cache.invalidate(old).await;
        self.cache.invalidate(new).await;
        result
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        self.cache.invalidate(key).await;
        let deleted = self.durable.delete(key).await;
        self.changed(key);
        self.cache.invalidate(key).await;
        deleted
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        self.durable.list_for_user(user).await
    }

    /// Every cached entry becomes unservable: the revocation may take sessions no listing
    /// made before it would name (one logged in or renamed meanwhile), and a revocation
    /// is rare, where a miss costs one durable read (as the TTL does anyway).
    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let deleted = self.durable.delete_for_user(user, except).await;
        for stripe in &self.generations {
            stripe.fetch_add(1, Ordering::SeqCst);
        }
        deleted
    }

    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.durable.purge_expired(batch).await
    }

    async fn purge_expired_with_progress(
        &self,
        batch: usize,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        self.durable
            .purge_expired_with_progress(batch, progress)
            .await
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        self.durable.find_by_handle(handle).await
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        self.durable.list_sessions(query).await
    }
}
