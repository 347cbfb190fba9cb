//! The conformance suite against `MemoryStore`.

use cloakroom::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite() {
    cloakroom::conformance::run(|| async { MemoryStore::new() }).await;
}

/// The same-session concurrency cases, twenty rounds in a row: no flakiness allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_concurrency_twenty_rounds() {
    let cases: Vec<_> = cloakroom::conformance::cases()
        .into_iter()
        .filter(|case| case.name.contains("concurrent") || case.name.contains("racing"))
        .collect();
    assert_eq!(cases.len(), 6, "{cases:?}");
    cloakroom::conformance::run_cases(&cases, 20, || async { MemoryStore::new() }).await;
}
