//! The conformance suite, unmodified, against FlaskRedisStore on the real Redis, the HTTP
//! cases through axum and actix-web, each case under its own key prefix.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use cloakroom_flask::FlaskRedisStore;
use support::clean;

fn redis_url() -> String {
    std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test uses.
fn unique_prefix() -> String {
    format!(
        "ct-flask:{}:",
        &cloakroom::SessionId::generate().store_key().to_hex()[..12]
    )
}

async fn store(url: &str, prefix: &str) -> FlaskRedisStore {
    FlaskRedisStore::connect(url)
        .await
        .expect("connect to Redis")
        .with_prefix(prefix)
        .with_index_prefix(format!("{prefix}~user:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flask_redis_store_passes_the_conformance_suite() {
    let url = redis_url();
    if let Err(error) = FlaskRedisStore::connect(&url).await {
        return cloakroom::testing::skip(&format!(
            "Redis at {url} is unreachable ({error}); start it with scripts/services.sh"
        ));
    }
    let prefix = unique_prefix();
    let counter = AtomicUsize::new(0);
    cloakroom::conformance::run_on(&cloakroom_actix::testing::frameworks(), || {
        let case_prefix = format!("{prefix}{}:", counter.fetch_add(1, Ordering::SeqCst));
        let url = url.clone();
        async move { store(&url, &case_prefix).await }
    })
    .await;
    clean(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flask_redis_store_concurrency_twenty_rounds() {
    let url = redis_url();
    if let Err(error) = FlaskRedisStore::connect(&url).await {
        return cloakroom::testing::skip(&format!("Redis at {url} is unreachable ({error})"));
    }
    let prefix = unique_prefix();
    let cases: Vec<_> = cloakroom::conformance::cases()
        .into_iter()
        .filter(|case| case.name.contains("concurrent") || case.name.contains("racing"))
        .collect();
    cloakroom::conformance::run_cases_on(
        &cases,
        20,
        &cloakroom_actix::testing::frameworks(),
        || {
            let (url, prefix) = (url.clone(), prefix.clone());
            async move { store(&url, &prefix).await }
        },
    )
    .await;
    clean(&url, &prefix).await;
}

/// Revoking a user's other sessions while they rotate their IDs: a rename moves its index
/// entry with the session, so no renamed session survives the revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_others_racing_renames_leaves_no_survivor() {
    let url = redis_url();
    if let Err(error) = FlaskRedisStore::connect(&url).await {
        return cloakroom::testing::skip(&format!("Redis at {url} is unreachable ({error})"));
    }
    let prefix = unique_prefix();
    let store = std::sync::Arc::new(store(&url, &prefix).await);
    cloakroom::conformance::revoke_others_racing_renames(store, 200).await;
    clean(&url, &prefix).await;
}
