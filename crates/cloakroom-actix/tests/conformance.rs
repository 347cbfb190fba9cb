//! The conformance suite's HTTP cases through actix-web: the memory store and client-side
//! cookie sessions here (the core crate runs them through axum); every other store's own
//! tests run them through both frameworks.

use std::sync::Arc;

use cloakroom::conformance::Framework;
use cloakroom::{generate_key, CookieSessions, KeyRing, MemoryStore};
use cloakroom_actix::testing::Actix;

fn actix() -> Vec<Arc<dyn Framework>> {
    vec![Arc::new(Actix)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite_through_actix() {
    let http: Vec<_> = cloakroom::conformance::cases_matching("http::");
    cloakroom::conformance::run_cases_on(&http, 1, &actix(), || async { MemoryStore::new() }).await;
}

/// The same-session concurrency cases, twenty rounds in a row: no flakiness allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_concurrency_twenty_rounds_through_actix() {
    let cases = cloakroom::conformance::concurrency_cases();
    assert_eq!(cases.len(), 6, "{cases:?}");
    cloakroom::conformance::run_cases_on(&cases, 20, &actix(), || async { MemoryStore::new() })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_cookie_sessions_pass_the_cases_that_apply_through_actix() {
    let sessions = CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap());
    cloakroom::conformance::run_client_side_on(&actix(), sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_cookie_sessions_pass_the_cases_that_apply_through_actix() {
    let sessions = CookieSessions::signed(KeyRing::parse(&generate_key()).unwrap());
    cloakroom::conformance::run_client_side_on(&actix(), sessions).await;
}
