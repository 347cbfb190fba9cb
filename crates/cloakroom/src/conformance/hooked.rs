//! [`HookedStore`]: a real store with a test's hook around each operation, to inject an
//! outage, count, slow down, or hold an operation until the test lets it go. One
//! delegation serves every such test, so a test writes only what it changes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::id::{SessionHandle, StoreKey};
use crate::record::{Record, Touch};
use crate::store::{
    InsertError, ListQuery, RenameError, SessionEntry, SessionStore, StoreError, TouchError,
    UpdateError,
};

/// A store operation, as a [`StoreHook`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// [`SessionStore::load`].
    Load,
    /// [`SessionStore::insert`].
    Insert,
    /// [`SessionStore::update`].
    Update,
    /// [`SessionStore::touch`].
    Touch,
    /// [`SessionStore::rename`].
    Rename,
    /// [`SessionStore::delete`].
    Delete,
    /// [`SessionStore::list_for_user`].
    ListForUser,
    /// [`SessionStore::delete_for_user`].
    DeleteForUser,
    /// [`SessionStore::purge_expired`] and its variant with progress.
    PurgeExpired,
    /// [`SessionStore::find_by_handle`].
    FindByHandle,
    /// [`SessionStore::list_sessions`].
    ListSessions,
}

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

#[async_trait]
impl<H: StoreHook> SessionStore for HookedStore<H> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.around(Operation::Load, self.inner.load(key)).await
    }
    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        self.around(Operation::Insert, self.inner.insert(key, record))
            .await
    }
    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected: u64,
    ) -> Result<(), UpdateError> {
        let call = self.inner.update(key, record, expected);
        self.around(Operation::Update, call).await
    }
    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        self.around(Operation::Touch, self.inner.touch(key, touch))
            .await
    }
    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        self.around(Operation::Rename, self.inner.rename(old, new))
            .await
    }
    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        self.around(Operation::Delete, self.inner.delete(key)).await
    }
    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        self.around(Operation::ListForUser, self.inner.list_for_user(user))
            .await
    }
    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let call = self.inner.delete_for_user(user, except);
        self.around(Operation::DeleteForUser, call).await
    }
    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.around(Operation::PurgeExpired, self.inner.purge_expired(batch))
            .await
    }
    async fn purge_expired_with_progress(
        &self,
        batch: usize,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        let call = self.inner.purge_expired_with_progress(batch, progress);
        self.around(Operation::PurgeExpired, call).await
    }
    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        let call = self.inner.find_by_handle(handle);
        self.around(Operation::FindByHandle, call).await
    }
    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let call = self.inner.list_sessions(query);
        self.around(Operation::ListSessions, call).await
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
