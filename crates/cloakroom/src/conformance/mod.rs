//! The conformance suite every [`SessionStore`] must pass, unmodified.
//!
//! One entry point, [`run`], takes a factory that makes a fresh, empty store for each case
//! (a new temporary database, a new key prefix...). Cases cover every contract operation
//! and typed error, the HTTP behaviour through the axum layer, same-session concurrency
//! and the per-user index. A failing case panics with the list of failures.
//!
//! The HTTP cases run through every [`Framework`] they are given: [`run`] uses the core's
//! [`Axum`]; [`run_on`] takes a list, such as `cloakroom_actix::testing::frameworks()`
//! (axum and actix-web), so a store is proven through every integration.
//!
//! ```no_run
//! # async fn demo() {
//! use cloakroom::MemoryStore;
//! cloakroom::conformance::run(|| async { MemoryStore::new() }).await;
//! # }
//! ```
//!
//! Run it from a multi-threaded Tokio test (`#[tokio::test(flavor = "multi_thread")]`), so
//! the concurrency cases really run in parallel. `CLOAKROOM_CONFORMANCE_ONLY=substring`
//! runs only the matching cases.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sealed::CookieSessions;
use crate::store::SessionStore;

mod app;
mod corrupt;
mod counting;
mod fixtures;
mod hooked;
mod http;
mod populate;
mod store_cases;
mod stress;

pub use app::{respond, Axum, Framework, Reply};
pub use corrupt::{a_corrupt_record_is_skipped, listings_skip_a_corrupt_record, too_deep_record};
pub use counting::{Counter, CountingStore, OperationCounts};
pub use fixtures::live_record;
pub use hooked::{HookedStore, Operation, Outage, StoreHook};
pub use populate::{insert_concurrently, insert_live, listed_keys, one_user_with_many_sessions};
pub use stress::{revoke_others_racing_renames, revoke_others_racing_renames_concurrently};

/// A boxed future, as the cases use.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The frameworks [`run`] drives the HTTP cases through: the core's [`Axum`].
pub fn default_frameworks() -> Vec<Arc<dyn Framework>> {
    vec![Arc::new(Axum)]
}

/// What a case runs against: a store, or client-side (cookie) sessions.
#[derive(Clone)]
pub enum Target {
    /// A server-side store.
    Store(Arc<dyn SessionStore>),
    /// Client-side sessions sealed with this configuration.
    Cookie(CookieSessions),
}

impl Target {
    /// The store; only cases that need one call it, and they never run client-side.
    pub(crate) fn store(&self) -> Arc<dyn SessionStore> {
        match self {
            Self::Store(store) => Arc::clone(store),
            Self::Cookie(_) => unreachable!("store cases never run against client-side sessions"),
        }
    }
}

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// Its name, such as `store::update_compare_and_set`.
    pub name: &'static str,
    /// Runs it against a fresh target; panics on failure.
    pub run: Run,
}

/// How a [`Case`] runs.
#[derive(Clone, Copy)]
pub enum Run {
    /// Against the store directly, once.
    Store(fn(Target) -> BoxFuture<()>),
    /// Through HTTP, once per framework.
    Http(fn(Target, Arc<dyn Framework>) -> BoxFuture<()>),
}

/// The HTTP cases that cannot apply to client-side sessions, and why.
pub const NOT_CLIENT_SIDE: &[(&str, &str)] = &[
    ("http::cycle_id_keeps_data_and_kills_old_id", "without server state an old cookie stays valid until its deadlines; use epochs to revoke"),
    ("http::login_rotates_and_kills_old_id", "the same: a pre-login cookie cannot be killed without server state"),
    ("http::untouched_requests_do_no_store_io", "there is no store to count"),
    ("http::read_only_traffic_is_throttled", "there is no store to count"),
    ("http::concurrent_writers_keep_every_key", "concurrent responses each carry a whole session; the browser keeps the last, so writes cannot be merged"),
    ("http::concurrent_increments_are_exact", "the same: no shared state to compare-and-set"),
    ("http::logout_racing_a_slow_writer_does_not_resurrect", "a slower response re-issues its cookie; only an epoch bump revokes it"),
    ("http::user_index_list_and_revoke", "there is no per-user index without server state; epochs log a user out everywhere"),
    ("http::login_beyond_the_per_user_cap_revokes_the_least_recently_active", "the cap needs the per-user index, which client-side sessions do not have"),
];

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every case, store contract first.
pub fn cases() -> Vec<Case> {
    let mut cases = store_cases::cases();
    cases.extend(http::cases());
    cases
}

/// The HTTP cases that apply to client-side sessions.
pub fn client_side_cases() -> Vec<Case> {
    http::cases()
        .into_iter()
        .filter(|case| NOT_CLIENT_SIDE.iter().all(|(name, _)| *name != case.name))
        .collect()
}

/// Runs every case that applies to client-side sessions against `sessions`, through
/// axum; panics listing the failures. The cases that cannot apply are
/// [`NOT_CLIENT_SIDE`].
pub async fn run_client_side(sessions: CookieSessions) {
    run_client_side_on(&default_frameworks(), sessions).await;
}

/// [`run_client_side`] through each of `frameworks`.
pub async fn run_client_side_on(frameworks: &[Arc<dyn Framework>], sessions: CookieSessions) {
    let only = std::env::var("CLOAKROOM_CONFORMANCE_ONLY").unwrap_or_default();
    let cases: Vec<Case> = client_side_cases()
        .into_iter()
        .filter(|case| case.name.contains(&only))
        .collect();
    run_targets(&cases, 1, frameworks, || {
        let sessions = sessions.clone();
        async move { Target::Cookie(sessions) }
    })
    .await;
}

/// The cases that race writers on one session (named `concurrent` or `racing`): the ones
/// worth repeating with [`run_cases_on`] to catch flakiness.
pub fn concurrency_cases() -> Vec<Case> {
    cases()
        .into_iter()
        .filter(|case| case.name.contains("concurrent") || case.name.contains("racing"))
        .collect()
}

/// The cases whose name contains `pattern`.
pub fn cases_matching(pattern: &str) -> Vec<Case> {
    cases()
        .into_iter()
        .filter(|case| case.name.contains(pattern))
        .collect()
}

/// Runs every case (or those named by `CLOAKROOM_CONFORMANCE_ONLY`) against fresh stores
/// from `factory`, the HTTP cases through axum, and panics listing the failures.
pub async fn run<S, F, Fut>(factory: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_on(&default_frameworks(), factory).await;
}

/// [`run`], with the HTTP cases through each of `frameworks`.
pub async fn run_on<S, F, Fut>(frameworks: &[Arc<dyn Framework>], factory: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let only = std::env::var("CLOAKROOM_CONFORMANCE_ONLY").unwrap_or_default();
    run_cases_on(&cases_matching(&only), 1, frameworks, factory).await;
}

/// Runs `cases`, each `rounds` times, against fresh stores from `factory`, the HTTP ones
/// through axum; panics listing the failures. Use it to repeat the concurrency cases to
/// catch flakiness.
pub async fn run_cases<S, F, Fut>(cases: &[Case], rounds: usize, factory: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_cases_on(cases, rounds, &default_frameworks(), factory).await;
}

/// [`run_cases`], with the HTTP cases through each of `frameworks`.
pub async fn run_cases_on<S, F, Fut>(
    cases: &[Case],
    rounds: usize,
    frameworks: &[Arc<dyn Framework>],
    factory: F,
) where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_targets(cases, rounds, frameworks, || {
        let store = factory();
        async move { Target::Store(Arc::new(store.await)) }
    })
    .await;
}

async fn run_targets<F, Fut>(
    cases: &[Case],
    rounds: usize,
    frameworks: &[Arc<dyn Framework>],
    target: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Target>,
{
    let mut failures = Vec::new();
    for round in 1..=rounds {
        for case in cases {
            let runs: Vec<(String, BoxFuture<()>)> = match case.run {
                Run::Store(run) => vec![(case.name.to_owned(), run(target().await))],
                Run::Http(run) => {
                    let mut runs = Vec::with_capacity(frameworks.len());
                    for framework in frameworks {
                        let name = format!("{} [{}]", case.name, framework.name());
                        runs.push((name, run(target().await, Arc::clone(framework))));
                    }
                    runs
                }
            };
            for (name, run) in runs {
                let started = Instant::now();
                let outcome =
                    tokio::time::timeout(Duration::from_secs(120), tokio::spawn(run)).await;
                let verdict = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(join)) => Some(panic_message(join)),
                    Err(_) => Some("did not finish within 120 s".to_owned()),
                };
                let took = started.elapsed();
                match verdict {
                    None => eprintln!("conformance {name} (round {round}) ... ok ({took:.0?})"),
                    Some(why) => {
                        eprintln!("conformance {name} (round {round}) ... FAILED: {why}");
                        failures.push(format!("{name} (round {round}): {why}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} conformance case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned()),
        Err(error) => error.to_string(),
    }
}

/// A user name no other case uses, so cases can share a backend.
pub(crate) fn unique_user(label: &str) -> String {
    format!(
        "{label}-{}",
        crate::SessionId::generate().store_key().handle()
    )
}
