//! [`CountingStore`]: instrumentation over the real store under test, a [`HookedStore`]
//! that counts operations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::hooked::{HookedStore, Operation, StoreHook};
use crate::store::{SessionStore, StoreError};

/// Counts of each store operation.
#[derive(Debug, Default)]
pub struct OperationCounts {
    /// `load` calls.
    pub loads: AtomicU64,
    /// `load` calls the store has answered.
    pub loads_answered: AtomicU64,
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

    /// The `load` calls the store has answered so far.
    pub fn loads_answered(&self) -> u64 {
        self.loads_answered.load(Ordering::SeqCst)
    }

    /// Waits until the store has answered `loads` loads in all: until a request has read
    /// its session, say, where a fixed head start can fall short on a loaded machine.
    ///
    /// # Panics
    /// If that takes more than a minute.
    pub async fn wait_for_loads_answered(&self, loads: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.loads_answered() < loads {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the store answered {} loads in a minute, not {loads}",
                self.loads_answered()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The [`StoreHook`] of a [`CountingStore`]: counts every call, and optionally delays
/// each `update`.
#[derive(Clone, Debug, Default)]
pub struct Counter {
    counts: Arc<OperationCounts>,
    update_delay: Duration,
}

#[async_trait]
impl StoreHook for Counter {
    async fn before(&self, operation: Operation) -> Result<(), StoreError> {
        let counts = &self.counts;
        match operation {
            Operation::Load => counts.loads.fetch_add(1, Ordering::SeqCst),
            Operation::Touch => counts.touches.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        if operation.is_write() {
            counts.writes.fetch_add(1, Ordering::SeqCst);
        }
        if operation == Operation::Update && !self.update_delay.is_zero() {
            tokio::time::sleep(self.update_delay).await;
        }
        Ok(())
    }

    async fn after(&self, operation: Operation) {
        if operation == Operation::Load {
            self.counts.loads_answered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Delegates to the wrapped store and counts every call.
pub type CountingStore = HookedStore<Counter>;

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self::with_hook(inner, Counter::default())
    }

    /// Makes every `update` wait `delay` first, as a store across a network would, so
    /// concurrent writers to one session queue up behind it.
    pub fn with_update_delay(mut self, delay: Duration) -> Self {
        self.hook_mut().update_delay = delay;
        self
    }

    /// The counters.
    pub fn counts(&self) -> Arc<OperationCounts> {
        Arc::clone(&self.hook().counts)
    }
}
