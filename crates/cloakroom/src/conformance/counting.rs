//! A store wrapper that counts operations: instrumentation over the real store under test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::id::{SessionHandle, StoreKey};
use crate::record::{Record, Touch};
use crate::store::{
    InsertError, ListQuery, RenameError, SessionEntry, SessionStore, StoreError, TouchError,
    UpdateError,
};

/// Counts of each store operation.
#[derive(Debug, Default)]
pub struct OperationCounts {
    /// `load` calls.
    pub loads: AtomicU64,
    /// `insert`, `update`, `touch`, `rename`, `delete` and the per-user deletes.
    pub writes: AtomicU64,
    /// `touch` calls.
    pub touches: AtomicU64,
}

impl OperationCounts {
    /// `(loads, writes, touches)` now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.loads.load(Ordering::SeqCst),
            self.writes.load(Ordering::SeqCst),
            self.touches.load(Ordering::SeqCst),
        )
    }
}

/// Delegates to the wrapped store and counts every call.
#[derive(Clone)]
pub struct CountingStore {
    inner: Arc<dyn SessionStore>,
    counts: Arc<OperationCounts>,
    update_delay: Duration,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            counts: Arc::default(),
            update_delay: Duration::ZERO,
        }
    }

    /// Makes every `update` wait `delay` first, as a store across a network would, so
    /// concurrent writers to one session queue up behind it.
    pub fn with_update_delay(mut self, delay: Duration) -> Self {
        self.update_delay = delay;
        self
    }

    /// The counters.
    pub fn counts(&self) -> Arc<OperationCounts> {
        Arc::clone(&self.counts)
    }

    fn write(&self) {
        self.counts.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl SessionStore for CountingStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.counts.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }
    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        self.write();
        self.inner.insert(key, record).await
    }
    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected: u64,
    ) -> Result<(), UpdateError> {
        self.write();
        if !self.update_delay.is_zero() {
            tokio::time::sleep(self.update_delay).await;
        }
        self.inner.update(key, record, expected).await
    }
    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        self.write();
        self.counts.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(key, touch).await
    }
    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        self.write();
        self.inner.rename(old, new).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete(key).await
    }
    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        self.inner.list_for_user(user).await
    }
    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        self.write();
        self.inner.delete_for_user(user, except).await
    }
    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.inner.purge_expired(batch).await
    }
    async fn purge_expired_with_progress(
        &self,
        batch: usize,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        self.inner
            .purge_expired_with_progress(batch, progress)
            .await
    }
    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        self.inner.find_by_handle(handle).await
    }
    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        self.inner.list_sessions(query).await
    }
}
