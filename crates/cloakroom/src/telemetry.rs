//! Metrics and traces: what operators watch.
//!
//! # Metrics
//!
//! cloakroom records through the [`metrics`] facade and installs no exporter: install a
//! recorder of your choice (Prometheus, StatsD, …) in your application, and the counters
//! below appear in it. Without one, every call is a no-op. The names are the constants in
//! [`names`]; labels are few and fixed (a store kind, an operation, an error kind, a
//! reason), never a session ID, handle or user.
//!
//! | metric | type | labels | counts |
//! |---|---|---|---|
//! | `cloakroom_sessions_created_total` | counter | | sessions created (a first record inserted, or a first sealed cookie issued) |
//! | `cloakroom_sessions_loaded_total` | counter | | requests whose cookie named a live session, loaded when first used |
//! | `cloakroom_sessions_rotated_total` | counter | | ID rotations (`cycle_id`, `login`) saved in a store |
//! | `cloakroom_sessions_logged_out_total` | counter | | existing sessions ended by `logout`/`destroy`, or by another user's `login` over them |
//! | `cloakroom_sessions_revoked_total` | counter | `by` = `user`, `cap` | sessions revoked through the per-user index: by their user (`revoke_user_session`, `revoke_other_sessions`) or by the per-user cap at login |
//! | `cloakroom_sessions_expired_on_load_total` | counter | | cookies naming a session that was found past its deadline |
//! | `cloakroom_sessions_revoked_by_epoch_total` | counter | | sessions destroyed on load because their user's epoch moved |
//! | `cloakroom_commit_conflicts_total` | counter | | compare-and-set conflicts retried by the commit engine |
//! | `cloakroom_commit_conflicts_exhausted_total` | counter | | commits that gave up after the configured number of attempts |
//! | `cloakroom_group_commit_batches_total` | counter | | compare-and-sets that carried other writers' changes (group commit) |
//! | `cloakroom_group_commit_writers` | histogram | | writers in each such batch, the committing one included |
//! | `cloakroom_store_errors_total` | counter | `store`, `operation`, `kind` | store failures (`unavailable`, `timeout`, `corrupt`, `backend`); a conflict, a missing or duplicate record is an answer, not an error |
//! | `cloakroom_bad_cookies_total` | counter | `reason` = `malformed`, `unknown`, `tampered`, `expired` | requests whose session cookie gave no session |
//! | `cloakroom_store_operation_duration_seconds` | histogram | `store`, `operation` | time of each store operation, failed ones included |
//!
//! Cookies are examined when a handler first uses its session: a request that never does
//! is not counted. The store contract makes an expired server-side record absent, so its
//! cookie counts as `unknown`; `expired` counts client-side cookies past their deadlines and
//! records a store returned that were past their deadline by this server's clock. Those
//! also count in `cloakroom_sessions_expired_on_load_total`. `tampered` applies to
//! client-side cookies only (a server-side ID carries no signature: an altered ID is an
//! `unknown` one).
//!
//! Store metrics come from [`InstrumentedStore`], which [`SessionManager`](crate::SessionManager)
//! puts around the store it is given; the `store` label is [`SessionStore::kind`].
//!
//! # Traces
//!
//! Each request's session work runs in a `tracing` span named `cloakroom.session` (level
//! `INFO`) with two fields, recorded when the session is committed: `handle`, the public
//! handle of the session (after a rotation, the new one; never the ID), and `outcome`,
//! one of `untouched`, `read`, `written`, `rotated`, `destroyed` or `failed` (the store
//! failed). Each store operation has a `cloakroom.store` span (level
//! `DEBUG`) with `store` and `operation`.
//!
//! ```
//! use cloakroom::telemetry::names;
//! assert_eq!(names::SESSIONS_CREATED, "cloakroom_sessions_created_total");
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::redact::debug_showing;
use crate::store::{SessionStore, StoreError};
use crate::store_wrapper::{forward_store, Operation, StoreFailure};

/// The metric names, as recorded through the `metrics` facade.
pub mod names {
    /// Counter: sessions created.
    pub const SESSIONS_CREATED: &str = "cloakroom_sessions_created_total";
    /// Counter: requests whose cookie named a live session.
    pub const SESSIONS_LOADED: &str = "cloakroom_sessions_loaded_total";
    /// Counter: ID rotations saved.
    pub const SESSIONS_ROTATED: &str = "cloakroom_sessions_rotated_total";
    /// Counter: sessions ended by logout (or another user's login).
    pub const SESSIONS_LOGGED_OUT: &str = "cloakroom_sessions_logged_out_total";
    /// Counter: sessions revoked through the per-user index; label `by`.
    pub const SESSIONS_REVOKED: &str = "cloakroom_sessions_revoked_total";
    /// Counter: sessions found past their deadline when loaded.
    pub const SESSIONS_EXPIRED_ON_LOAD: &str = "cloakroom_sessions_expired_on_load_total";
    /// Counter: sessions destroyed because their user's epoch moved.
    pub const SESSIONS_REVOKED_BY_EPOCH: &str = "cloakroom_sessions_revoked_by_epoch_total";
    /// Counter: compare-and-set conflicts retried.
    pub const COMMIT_CONFLICTS: &str = "cloakroom_commit_conflicts_total";
    /// Counter: commits that exhausted their attempts.
    pub const COMMIT_CONFLICTS_EXHAUSTED: &str = "cloakroom_commit_conflicts_exhausted_total";
    /// Counter: group-commit batches (a compare-and-set carrying other writers' changes).
    pub const GROUP_COMMIT_BATCHES: &str = "cloakroom_group_commit_batches_total";
    /// Histogram: writers in each group-commit batch.
    pub const GROUP_COMMIT_WRITERS: &str = "cloakroom_group_commit_writers";
    /// Counter: store failures; labels `store`, `operation`, `kind`.
    pub const STORE_ERRORS: &str = "cloakroom_store_errors_total";
    /// Counter: session cookies that gave no session; label `reason`.
    pub const BAD_COOKIES: &str = "cloakroom_bad_cookies_total";
    /// Histogram: store operation time in seconds; labels `store`, `operation`.
    pub const STORE_OPERATION_DURATION: &str = "cloakroom_store_operation_duration_seconds";
}

/// Why a session cookie gave no session: the `reason` of
/// [`names::BAD_COOKIES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadCookie {
    /// Not a session ID, or not a sealed session of this format.
    Malformed,
    /// A well-formed ID no store record has (including an expired server-side record).
    Unknown,
    /// A sealed session that does not verify under any key of the ring.
    Tampered,
    /// A session past its deadline.
    Expired,
}

impl BadCookie {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Tampered => "tampered",
            Self::Expired => "expired",
        }
    }
}

pub(crate) fn count(name: &'static str) {
    metrics::counter!(name).increment(1);
}

pub(crate) fn bad_cookie(reason: BadCookie) {
    metrics::counter!(names::BAD_COOKIES, "reason" => reason.as_str()).increment(1);
    if reason == BadCookie::Expired {
        count(names::SESSIONS_EXPIRED_ON_LOAD);
    }
}

pub(crate) fn revoked(by: &'static str, sessions: u64) {
    if sessions > 0 {
        metrics::counter!(names::SESSIONS_REVOKED, "by" => by).increment(sessions);
    }
}

pub(crate) fn group_commit(writers: usize) {
    count(names::GROUP_COMMIT_BATCHES);
    metrics::histogram!(names::GROUP_COMMIT_WRITERS).record(writers as f64);
}

/// The label value of a store error's kind.
pub fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Timeout(_) => "timeout",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Backend(_) => "backend",
    }
}

/// A store with metrics and a span around every operation: the time of each (the
/// [`names::STORE_OPERATION_DURATION`] histogram), its failures
/// ([`names::STORE_ERRORS`]), and a `cloakroom.store` span. Answers are passed through
/// unchanged.
///
/// [`SessionManager`](crate::SessionManager) wraps the store it is given in one, so
/// applications need not; wrap a store yourself to measure admin code that uses it
/// directly.
///
/// ```
/// use cloakroom::{telemetry::InstrumentedStore, MemoryStore, SessionStore};
/// let store = InstrumentedStore::new(std::sync::Arc::new(MemoryStore::new()));
/// assert_eq!(store.kind(), "memory");
/// ```
pub struct InstrumentedStore {
    inner: Arc<dyn SessionStore>,
    kind: &'static str,
    /// The latency histogram's key for each operation, built once: recording through a
    /// prebuilt key allocates nothing, where the `histogram!` macro with runtime labels
    /// builds a label list on every call, recorder or not.
    durations: [metrics::Key; Operation::ALL.len()],
}

/// Where cloakroom's metrics say they come from.
const METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

debug_showing!(InstrumentedStore { kind });

impl InstrumentedStore {
    /// Instruments `inner`, unless it already is (then it is returned as it is).
    pub fn wrap(inner: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
        if inner.instrumented() {
            inner
        } else {
            Arc::new(Self::new(inner))
        }
    }

    /// Instruments `inner`.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        let kind = inner.kind();
        let durations = Operation::ALL.map(|operation| {
            metrics::Key::from_parts(
                names::STORE_OPERATION_DURATION,
                vec![
                    metrics::Label::new("store", kind),
                    metrics::Label::new("operation", operation.label()),
                ],
            )
        });
        Self {
            inner,
            kind,
            durations,
        }
    }

    /// Runs one store operation, timed, counted on failure and inside its span.
    async fn observe<T, E>(
        &self,
        operation: Operation,
        run: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: StoreFailure,
    {
        let span = tracing::debug_span!(
            "cloakroom.store",
            store = self.kind,
            operation = operation.label()
        );
        let started = Instant::now();
        let result = run.instrument(span).await;
        let kind = self.kind;
        let key = &self.durations[operation as usize];
        metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
            .record(started.elapsed().as_secs_f64());
        let operation = operation.label();
        if let Some(error) = result.as_ref().err().and_then(E::store_failure) {
            metrics::counter!(
                names::STORE_ERRORS,
                "store" => kind,
                "operation" => operation,
                "kind" => error_kind(error)
            )
            .increment(1);
        }
        result
    }
}

forward_store! {
    impl [] for InstrumentedStore, through observe;
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn instrumented(&self) -> bool {
        true
    }
}
