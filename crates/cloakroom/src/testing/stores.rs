//! What the tests of store crates share (feature `conformance`): a small app that drives a
//! store through the session layer, and the conformance suite run on stores that share one
//! server, each store in a namespace of its own.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};

use crate::conformance::{concurrency_cases, run_cases_on, run_on, Framework};
use crate::{ListQuery, Session, SessionError, SessionLayer, SessionStore, StoreKey};

/// How many times store tests repeat the concurrency cases: a race that loses one run in
/// a few shows up within this many.
pub const CONCURRENCY_ROUNDS: usize = 20;

/// The session key the [`counter_app`] counts in.
pub const COUNTER_KEY: &str = "n";

/// The smallest app that reads, writes and read-modify-writes a session, on `store`:
///
/// | route | what it does | answers |
/// |---|---|---|
/// | `GET /n` | reads the count (loads the session, writes nothing) | the count as JSON, `null` when there is none |
/// | `POST /set` | sets the count to 1 (a plain write) | `ok` |
/// | `POST /incr` | adds one to the count (`Session::update`) | the new count as JSON |
/// | `POST /login` | logs in as `alice` (rotates the ID) | `ok` |
///
/// ```
/// use cloakroom::testing::{counter_app, TestClient};
/// use cloakroom::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut browser = TestClient::new(counter_app(MemoryStore::new()));
/// assert_eq!(browser.get("/n").await.json::<Option<u64>>(), None);
/// assert_eq!(browser.post("/incr").await.json::<u64>(), 1);
/// assert_eq!(browser.post("/incr").await.json::<u64>(), 2);
/// # }
/// ```
pub fn counter_app(store: impl SessionStore) -> Router {
    Router::new()
        .route("/n", get(read_count))
        .route("/set", post(set_count))
        .route("/incr", post(increment))
        .route("/login", post(log_in))
        .layer(SessionLayer::new(store))
}

async fn read_count(session: Session) -> Result<Json<Option<u64>>, SessionError> {
    session.get(COUNTER_KEY).await.map(Json)
}

async fn set_count(session: Session) -> Result<&'static str, SessionError> {
    session.insert(COUNTER_KEY, 1).await?;
    Ok("ok")
}

async fn increment(session: Session) -> Result<Json<u64>, SessionError> {
    let count = session
        .update(COUNTER_KEY, |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(Json(count))
}

async fn log_in(session: Session) -> Result<&'static str, SessionError> {
    session.login("alice").await?;
    Ok("ok")
}

/// The keys of `user`'s live sessions in `store`, sorted: what a test compares with the
/// keys it wrote.
///
/// # Panics
/// When the store cannot list them.
pub async fn user_keys(store: &impl SessionStore, user: &str) -> Vec<StoreKey> {
    let listed = store
        .list_for_user(user)
        .await
        .unwrap_or_else(|error| panic!("listing {user}'s sessions: {error}"));
    let mut keys: Vec<StoreKey> = listed.into_iter().map(|entry| entry.key).collect();
    keys.sort();
    keys
}

/// The keys of the first `limit` live sessions of any user, in the admin listing's (key)
/// order.
///
/// # Panics
/// When the store cannot list them.
pub async fn all_keys(store: &impl SessionStore, limit: usize) -> Vec<StoreKey> {
    let query = ListQuery {
        user: None,
        after: None,
        limit,
    };
    let listed = store
        .list_sessions(&query)
        .await
        .unwrap_or_else(|error| panic!("listing every session: {error}"));
    listed.into_iter().map(|entry| entry.key).collect()
}

/// Stores for the conformance suite on a server other tests share: `open` is handed a new
/// number for every store the suite asks for, which the test turns into a key prefix, a
/// table or a file, so that no case sees another's sessions.
///
/// ```no_run
/// # async fn demo() {
/// use cloakroom::conformance::default_frameworks;
/// use cloakroom::testing::{NumberedStores, SuitePart};
/// use cloakroom::MemoryStore;
///
/// // A real test would open, say, a Redis store with the key prefix `test{n}:`.
/// let stores = NumberedStores::new(|_n| async { MemoryStore::new() });
/// stores.run(SuitePart::All, &default_frameworks()).await;
/// # }
/// ```
pub struct NumberedStores<F> {
    open: F,
    next: AtomicUsize,
}

impl<F> std::fmt::Debug for NumberedStores<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberedStores")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<F, Fut, S> NumberedStores<F>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = S>,
    S: SessionStore,
{
    /// Stores from `open`, numbered from 0.
    pub fn new(open: F) -> Self {
        Self {
            open,
            next: AtomicUsize::new(0),
        }
    }

    /// Runs `part` of the conformance suite on these stores, the HTTP cases through each
    /// of `frameworks`.
    ///
    /// # Panics
    /// As [`run_cases_on`]: listing the cases that failed.
    pub async fn run(&self, part: SuitePart, frameworks: &[Arc<dyn Framework>]) {
        let factory = || (self.open)(self.next.fetch_add(1, Ordering::Relaxed));
        match part {
            SuitePart::All => run_on(frameworks, factory).await,
            SuitePart::ConcurrencyRounds => {
                let cases = concurrency_cases();
                run_cases_on(&cases, CONCURRENCY_ROUNDS, frameworks, factory).await;
            }
        }
    }
}

/// A part of the conformance suite a store test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuitePart {
    /// Every case once (or those `CLOAKROOM_CONFORMANCE_ONLY` names, as [`run_on`]).
    All,
    /// The concurrency cases, [`CONCURRENCY_ROUNDS`] times: races show up as flakiness.
    ConcurrencyRounds,
}

/// Declares a store's two conformance tests, `$module::passes_the_conformance_suite` and
/// `$module::concurrency_rounds`, on a multi-threaded runtime: each calls the async
/// function `$run` of the enclosing module with the [`SuitePart`] it runs. The test
/// crate needs `tokio` with its macros.
///
/// ```ignore
/// async fn on_shared_server(part: SuitePart) {
///     let stores = NumberedStores::new(|n| MyStore::connect(format!("test{n}:")));
///     stores.run(part, &cloakroom::conformance::default_frameworks()).await;
/// }
///
/// cloakroom::store_conformance_tests!(my_store, on_shared_server);
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($module:ident, $run:ident) => {
        mod $module {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn passes_the_conformance_suite() {
                super::$run($crate::testing::SuitePart::All).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrency_rounds() {
                super::$run($crate::testing::SuitePart::ConcurrencyRounds).await;
            }
        }
    };
}
