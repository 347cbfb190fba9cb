//! What a store that wraps another shares with every other such wrapper: the operations
//! by name, the store failure inside each operation's error, and [`forward_store!`],
//! which forwards each operation to the inner store through the wrapper's own step.
//!
//! The metrics wrapper ([`InstrumentedStore`](crate::telemetry::InstrumentedStore)) and
//! the tests' `HookedStore` differ only in that step, and `Arc<S>` forwards with none: the
//! delegation is written once here.

use crate::store::{InsertError, RenameError, StoreError, TouchError, UpdateError};

/// A store operation, as a wrapper around a store sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// [`SessionStore::load`](crate::SessionStore::load).
    Load,
    /// [`SessionStore::insert`](crate::SessionStore::insert).
    Insert,
    /// [`SessionStore::update`](crate::SessionStore::update).
    Update,
    /// [`SessionStore::touch`](crate::SessionStore::touch).
    Touch,
    /// [`SessionStore::rename`](crate::SessionStore::rename).
    Rename,
    /// [`SessionStore::delete`](crate::SessionStore::delete).
    Delete,
    /// [`SessionStore::list_for_user`](crate::SessionStore::list_for_user).
    ListForUser,
    /// [`SessionStore::delete_for_user`](crate::SessionStore::delete_for_user).
    DeleteForUser,
    /// [`SessionStore::purge_expired`](crate::SessionStore::purge_expired) and its
    /// variant with progress.
    PurgeExpired,
    /// [`SessionStore::find_by_handle`](crate::SessionStore::find_by_handle).
    FindByHandle,
    /// [`SessionStore::list_sessions`](crate::SessionStore::list_sessions).
    ListSessions,
}

impl Operation {
    /// Every operation, in declaration order: `ALL[op as usize] == op`.
    pub(crate) const ALL: [Self; 11] = [
        Self::Load,
        Self::Insert,
        Self::Update,
        Self::Touch,
        Self::Rename,
        Self::Delete,
        Self::ListForUser,
        Self::DeleteForUser,
        Self::PurgeExpired,
        Self::FindByHandle,
        Self::ListSessions,
    ];

    /// The name metrics and traces label it with: the store method's name.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Touch => "touch",
            Self::Rename => "rename",
            Self::Delete => "delete",
            Self::ListForUser => "list_for_user",
            Self::DeleteForUser => "delete_for_user",
            Self::PurgeExpired => "purge_expired",
            Self::FindByHandle => "find_by_handle",
            Self::ListSessions => "list_sessions",
        }
    }
}

/// An operation's error that may be a failure of the store itself rather than an answer
/// (a conflict, a missing or duplicate record): metrics count only the failures.
pub(crate) trait StoreFailure {
    /// The store's failure, if that is what this error is.
    fn store_failure(&self) -> Option<&StoreError>;
}

impl StoreFailure for StoreError {
    fn store_failure(&self) -> Option<&StoreError> {
        Some(self)
    }
}

/// `StoreFailure` for an operation error: its `Store` variant is the failure, the listed
/// others are answers. Listing them keeps the match exhaustive, so a new variant must be
/// placed here.
macro_rules! store_failure_in {
    ($($error:ident: $($answer:ident)|+;)+) => {$(
        impl StoreFailure for $error {
            fn store_failure(&self) -> Option<&StoreError> {
                match self {
                    Self::Store(error) => Some(error),
                    $(Self::$answer)|+ => None,
                }
            }
        }
    )+};
}

store_failure_in! {
    InsertError: Duplicate;
    UpdateError: Conflict | Missing;
    TouchError: Missing;
    RenameError: Missing | Duplicate;
}

/// Writes `impl SessionStore for $store` that forwards every operation to another store.
///
/// - `through step`: to `self.inner` (an `Arc<dyn SessionStore>`) through
///   `self.step(operation, call).await`, where `call` is the inner store's future: the
///   step runs whatever goes around it (metrics, a test's hook).
/// - `deref`: straight to `**self` (the store behind an `Arc`).
///
/// `impl [generics] for Type`: the brackets hold the impl's generic parameters, if any.
/// Items after the mode (`kind`, for example) are added to the impl as they are.
///
/// A method added to the store contract goes in the table below, one line, and every
/// wrapper forwards it; a provided method left out would silently take its default.
macro_rules! forward_store {
    (impl [$($generics:tt)*] for $store:ty, $($mode:ident)+; $($item:item)*) => {
        $crate::store_wrapper::forward_store! {
            @each [$($generics)*] $store, [$($mode)+], [$($item)*],
            // One line per operation: the method, its arguments, what it answers, and the
            // `Operation` it is reported as.
            load(key: &StoreKey) -> Option<Record>, StoreError as Load;
            insert(key: &StoreKey, record: &Record) -> (), InsertError as Insert;
            update(key: &StoreKey, record: &Record) -> (), UpdateError as Update;
            touch(key: &StoreKey, touch: &Touch) -> (), TouchError as Touch;
            rename(old: &StoreKey, new: &StoreKey) -> (), RenameError as Rename;
            delete(key: &StoreKey) -> bool, StoreError as Delete;
            list_for_user(user: &str) -> Vec<SessionEntry>, StoreError as ListForUser;
            delete_for_user(user: &str, except: Option<&StoreKey>) -> u64, StoreError as DeleteForUser;
            purge_expired(batch: usize) -> u64, StoreError as PurgeExpired;
            purge_expired_with_progress(batch: usize, progress: &mut (dyn FnMut(u64) + Send)) -> u64, StoreError as PurgeExpired;
            find_by_handle(handle: &SessionHandle) -> Option<SessionEntry>, StoreError as FindByHandle;
            list_sessions(query: &ListQuery) -> Vec<SessionEntry>, StoreError as ListSessions;
        }
    };
    (
        @each [$($generics:tt)*] $store:ty, $mode:tt, [$($item:item)*],
        $($method:ident($($arg:ident: $type:ty),*) -> $answer:ty, $error:ident as $operation:ident;)*
    ) => {
        // In a block of its own, so the table's short type names resolve here and do not
        // leak into the caller's module.
        const _: () = {
            // `deref` forwarding reports no `Operation`.
            #[allow(unused_imports)]
            use $crate::store_wrapper::prelude::*;

            #[async_trait::async_trait]
            impl<$($generics)*> $crate::store::SessionStore for $store {
                $(
                    async fn $method(&self, $($arg: $type),*) -> Result<$answer, $error> {
                        $crate::store_wrapper::forward_store!(
                            @call $mode self.$method($($arg),*) as $operation
                        )
                    }
                )*
                $($item)*
            }
        };
    };
    (@call [through $step:ident] $this:ident.$method:ident($($arg:ident),*) as $operation:ident) => {{
        // Through the store itself, not its `Arc`: method lookup would pick `Arc<S>`'s own
        // impl first, one more boxed future and poll layer on every operation.
        let call = (*$this.inner).$method($($arg),*);
        $this.$step(Operation::$operation, call).await
    }};
    (@call [deref] $this:ident.$method:ident($($arg:ident),*) as $operation:ident) => {
        (**$this).$method($($arg),*).await
    };
}

pub(crate) use forward_store;

/// The names the operation table of [`forward_store!`] writes its types with.
pub(crate) mod prelude {
    pub(crate) use super::Operation;
    pub(crate) use crate::id::{SessionHandle, StoreKey};
    pub(crate) use crate::record::{Record, Touch};
    pub(crate) use crate::store::{
        InsertError, ListQuery, RenameError, SessionEntry, StoreError, TouchError, UpdateError,
    };
}
