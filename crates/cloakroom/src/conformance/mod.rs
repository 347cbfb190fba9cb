//! The conformance suite every [`SessionStore`] must pass, unmodified.
//!
//! One entry point, [`run`], takes a factory that makes a fresh, empty store for each case
//! (a new temporary database, a new key prefix...). Cases cover every contract operation
//! and typed error, the HTTP behaviour through the axum layer, same-session concurrency
//! and the per-user index. A failing case panics with the list of failures.
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

use crate::store::SessionStore;

mod counting;
mod http;
mod store_cases;

pub use counting::{CountingStore, OperationCounts};

/// A boxed future, as the cases use.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// Its name, such as `store::update_compare_and_set`.
    pub name: &'static str,
    /// Runs it against a fresh store; panics on failure.
    pub run: fn(Arc<dyn SessionStore>) -> BoxFuture<()>,
}

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

/// The cases whose name contains `pattern`.
pub fn cases_matching(pattern: &str) -> Vec<Case> {
    cases()
        .into_iter()
        .filter(|case| case.name.contains(pattern))
        .collect()
}

/// Runs every case (or those named by `CLOAKROOM_CONFORMANCE_ONLY`) against fresh stores
/// from `factory`, and panics listing the failures.
pub async fn run<S, F, Fut>(factory: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let only = std::env::var("CLOAKROOM_CONFORMANCE_ONLY").unwrap_or_default();
    run_cases(&cases_matching(&only), 1, factory).await;
}

/// Runs `cases`, each `rounds` times, against fresh stores from `factory`; panics listing
/// the failures. Use it to repeat the concurrency cases to catch flakiness.
pub async fn run_cases<S, F, Fut>(cases: &[Case], rounds: usize, factory: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut failures = Vec::new();
    for round in 1..=rounds {
        for case in cases {
            let store: Arc<dyn SessionStore> = Arc::new(factory().await);
            let started = Instant::now();
            let outcome =
                tokio::time::timeout(Duration::from_secs(120), tokio::spawn((case.run)(store)))
                    .await;
            let verdict = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(join)) => Some(panic_message(join)),
                Err(_) => Some("did not finish within 120 s".to_owned()),
            };
            let took = started.elapsed();
            match verdict {
                None => eprintln!(
                    "conformance {} (round {round}) ... ok ({took:.0?})",
                    case.name
                ),
                Some(why) => {
                    eprintln!(
                        "conformance {} (round {round}) ... FAILED: {why}",
                        case.name
                    );
                    failures.push(format!("{} (round {round}): {why}", case.name));
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
