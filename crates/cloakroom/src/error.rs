//! [`SessionError`]: what a handler gets from a [`Session`](crate::Session) call.

use crate::store::StoreError;

/// How deep a session value may nest arrays and objects: `[[1]]` is 2 deep. A deeper
/// write fails with [`SessionError::ValueTooDeep`].
///
/// Stores decode a whole record at once, with the value nested inside it, and decoders
/// bound their recursion (serde_json stops at 128 levels): an accepted value must always
/// load back, so the limit sits well below theirs.
pub const MAX_VALUE_DEPTH: usize = 64;

/// An error from the session API.
///
/// With the `axum` feature it is an `IntoResponse`: store failures and exhausted retries
/// are `503 Service Unavailable` with `Retry-After` (the configured one under a
/// [`SessionLayer`](crate::SessionLayer) whose policy is
/// [`OnStoreError::ServiceUnavailable`](crate::OnStoreError::ServiceUnavailable), otherwise
/// the default 5 seconds), size and depth limits are `413 Payload Too Large`, the rest
/// `500`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed; see the failure policy ([`OnStoreError`](crate::OnStoreError)).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value could not be read as the requested type.
    #[error("session value {key:?} does not have the requested type: {source}")]
    Deserialize {
        /// The session key.
        key: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be serialized to JSON.
    #[error("the value could not be serialized to JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    /// One value is larger than [`Limits::max_value_bytes`](crate::Limits::max_value_bytes).
    #[error("session value {key:?} is {size} bytes, over the {limit}-byte limit: store less, or raise Limits::max_value_bytes")]
    ValueTooLarge {
        /// The session key.
        key: String,
        /// Its serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A value nests arrays and objects deeper than [`MAX_VALUE_DEPTH`]: stores could
    /// not load it back. Answered with 413, like the size limits.
    #[error(
        "session value {key:?} nests deeper than {limit} levels of arrays and objects: flatten it"
    )]
    ValueTooDeep {
        /// The session key.
        key: String,
        /// The limit, [`MAX_VALUE_DEPTH`].
        limit: usize,
    },
    /// The whole session would exceed [`Limits::max_session_bytes`](crate::Limits::max_session_bytes).
    #[error("the session would be {size} bytes, over the {limit}-byte limit: remove values, or raise Limits::max_session_bytes")]
    SessionTooLarge {
        /// The session's serialized size with this write.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Concurrent writers kept winning the compare-and-set; the bound
    /// ([`SessionConfig::max_commit_attempts`](crate::SessionConfig::max_commit_attempts)) was hit.
    #[error("the session changed concurrently {attempts} times in a row; try again")]
    TooManyConflicts {
        /// Attempts made.
        attempts: u32,
    },
    /// The cookie holding a client-side session would exceed 4096 bytes.
    #[error("the session cookie would be {size} bytes, over the {limit}-byte browser limit: store less in the session, or use a server-side store")]
    CookieTooLarge {
        /// The whole `Set-Cookie` value's size with this write.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The operation needs server-side state, which client-side sessions do not have.
    #[error("{0} needs a server-side store; client-side sessions cannot do it (use epochs to revoke them)")]
    Unsupported(&'static str),
    /// The epoch hook failed.
    #[error("the epoch source failed: {0}")]
    Epoch(#[source] crate::store::BoxError),
    /// [`login`](crate::Session::login) was given a user id no store could keep: empty,
    /// longer than [`MAX_USER_ID_BYTES`](crate::record::MAX_USER_ID_BYTES), or holding a
    /// NUL character. Nothing changed.
    #[error("the user id cannot be stored ({reason}): log in with a key of at most {} bytes, such as the user's database id", crate::record::MAX_USER_ID_BYTES)]
    InvalidUserId {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The [`EpochSource`](crate::EpochSource) gave an epoch no store could keep at
    /// login: longer than [`MAX_EPOCH_BYTES`](crate::record::MAX_EPOCH_BYTES), or
    /// holding a NUL character. Nothing changed.
    #[error("the user's epoch cannot be stored ({reason}): return a short version string from the epoch source, such as a counter or a timestamp")]
    InvalidEpoch {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The function given to [`update`](crate::Session::update) panicked. It may run
    /// again at commit, on a concurrent writer's value, and inside another request's
    /// commit (group commit): the panic is caught there and fails this request alone.
    #[error("the update function for session value {key:?} panicked: make it total (no unwrap or expect on its input)")]
    UpdatePanicked {
        /// The session key.
        key: String,
    },
    /// A write after the session was committed for this response.
    #[error(
        "the session was already committed for this response; write before the handler returns"
    )]
    Finished,
}

impl SessionError {
    /// Whether this is a size or shape limit, which the layer answers with 413: the
    /// write was refused, and a commit that hit it drops the request's writes.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            Self::ValueTooLarge { .. }
                | Self::ValueTooDeep { .. }
                | Self::SessionTooLarge { .. }
                | Self::CookieTooLarge { .. }
        )
    }

    /// Whether this is a store outage or contention, which the layer answers with 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Store(_) | Self::TooManyConflicts { .. } | Self::Epoch(_)
        )
    }
}

/// Marks a `503` response that a [`SessionError`] produced itself, so the layer puts the
/// configured `Retry-After` on it in place of the default.
#[cfg(feature = "tower")]
#[derive(Clone, Copy, Debug)]
pub(crate) struct StoreUnavailableResponse;
