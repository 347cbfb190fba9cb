//! The conformance suite, unmodified, against FlaskRedisStore on the real Redis, the HTTP
//! cases through axum and actix-web, each case under its own key prefix.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use cloakroom_flask::FlaskRedisStore;
use support::{clean, redis_url, unique_prefix};

async fn store(url: &str, prefix: &str) -> FlaskRedisStore {
    FlaskRedisStore::connect(url)
        .await
        .expect("connect to Redis")
        .with_prefix(prefix)
        .with_index_prefix(format!("{prefix}~user:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flask_redis_store_passes_the_conformance_suite() {
    if support::connect().await.is_none() {
        return;
    }
    let url = redis_url();
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
    if support::connect().await.is_none() {
        return;
    }
    let url = redis_url();
    let prefix = unique_prefix();
    let cases = cloakroom::conformance::concurrency_cases();
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
    if support::connect().await.is_none() {
        return;
    }
    let url = redis_url();
    let prefix = unique_prefix();
    let store = std::sync::Arc::new(store(&url, &prefix).await);
    cloakroom::conformance::revoke_others_racing_renames(store, 200).await;
    clean(&url, &prefix).await;
}
