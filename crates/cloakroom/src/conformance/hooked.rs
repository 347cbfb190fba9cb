//! [`HookedStore`]: a real store with a test's hook around each operation, to inject an
//! outage, count, slow down, or hold an operation until the test lets it go. One
//! delegation serves every such test, so a test writes only what it changes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::store::{SessionStore, StoreError};
use crate::store_wrapper::forward_store;
/// A store operation, as a [`StoreHook`] sees it.
pub use crate::store_wrapper::Operation;

impl Operation {
    /// Whether it changes what the store holds (a purge aside, which only removes the
    /// dead).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::Insert
                | Self::Update
                | Self::Touch
                | Self::Rename
                | Self::Delete
                | Self::DeleteForUser
        )
    }
}

/// What a test does around the operations of a [`HookedStore`]. Both steps do nothing
/// unless overridden.
#[async_trait]
pub trait StoreHook: Send + Sync + 'static {
    /// Runs before `operation` reaches the store. An error is answered in its place, and
    /// the store is not called.
    async fn before(&self, operation: Operation) -> Result<(), StoreError> {
        let _ = operation;
        Ok(())
    }

    /// Runs after the store answered `operation`, before the answer is returned.
    async fn after(&self, operation: Operation) {
        let _ = operation;
    }
}

/// A hook shared with the test that steers it.
#[async_trait]
impl<H: StoreHook> StoreHook for Arc<H> {
    async fn before(&self, operation: Operation) -> Result<(), StoreError> {
        H::before(self, operation).await
    }

    async fn after(&self, operation: Operation) {
        H::after(self, operation).await
    }
}

/// Delegates every operation to a real store, with a [`StoreHook`] around it.
///
/// ```
/// use std::sync::Arc;
/// use cloakroom::conformance::{HookedStore, Outage};
/// use cloakroom::{MemoryStore, SessionStore, StoreError, StoreKey};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = HookedStore::with_hook(Arc::new(MemoryStore::new()), Outage::default());
/// let key = StoreKey::from_hex(&"ab".repeat(32)).unwrap();
/// assert!(store.load(&key).await.is_ok());
/// store.hook().start();
/// assert!(matches!(store.load(&key).await, Err(StoreError::Unavailable(_))));
/// # }
/// ```
#[derive(Clone)]
pub struct HookedStore<H> {
    inner: Arc<dyn SessionStore>,
    hook: H,
}

impl<H: StoreHook> HookedStore<H> {
    /// `inner`, with `hook` around each of its operations.
    pub fn with_hook(inner: Arc<dyn SessionStore>, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The hook, for the test to steer.
    pub fn hook(&self) -> &H {
        &self.hook
    }

    /// The hook, to reconfigure before the store is shared.
    pub fn hook_mut(&mut self) -> &mut H {
        &mut self.hook
    }

    async fn around<T, E: From<StoreError>>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.hook.before(operation).await?;
        let answer = call.await;
        self.hook.after(operation).await;
        answer
    }
}

forward_store! {
    impl [H: StoreHook] for HookedStore<H>, through around;
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

/// A [`StoreHook`] that makes the store fail as one whose server went away
/// ([`StoreError::Unavailable`]) while it is started: every operation, or only one.
#[derive(Debug, Default)]
pub struct Outage {
    down: AtomicBool,
    only: Option<Operation>,
    refused: AtomicU64,
}

impl Outage {
    /// An outage of `operation` alone, once started: the rest keeps working.
    pub fn only(operation: Operation) -> Self {
        Self {
            only: Some(operation),
            ..Self::default()
        }
    }

    /// Started from the first operation on.
    #[must_use]
    pub fn started(self) -> Self {
        self.start();
        self
    }

    /// The store goes down.
    pub fn start(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// The store is back.
    pub fn end(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// How many operations it refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl StoreHook for Outage {
    async fn before(&self, operation: Operation) -> Result<(), StoreError> {
        let hit = self.only.is_none_or(|only| only == operation);
        if hit && self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::unavailable("injected outage"));
        }
        Ok(())
    }
}
