//! The conformance suite, unmodified, against FlaskRedisStore on the real Redis, the HTTP
//! cases through axum and actix-web, each store under its own key prefix.

mod support;

use cloakroom::testing::SuitePart;
use cloakroom_actix::testing::frameworks;
use cloakroom_flask::FlaskRedisStore;
use support::{clean, unique_prefix};

async fn store(url: String, prefix: String) -> FlaskRedisStore {
    let index_prefix = format!("{prefix}~user:");
    FlaskRedisStore::connect(&url)
        .await
        .expect("connect to Redis")
        .with_prefix(prefix)
        .with_index_prefix(index_prefix)
}

/// `part` of the suite on the shared Redis.
async fn on_shared_redis(part: SuitePart) {
    cloakroom_redis::testing::run_conformance(part, &frameworks(), store).await;
}

cloakroom::store_conformance_tests!(flask_redis_store, on_shared_redis);

/// Revoking a user's other sessions while they rotate their IDs: a rename moves its index
/// entry with the session, so no renamed session survives the revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_others_racing_renames_leaves_no_survivor() {
    let Some(url) = cloakroom_redis::testing::reachable_redis().await else {
        return;
    };
    let prefix = unique_prefix();
    let store = std::sync::Arc::new(store(url.clone(), prefix.clone()).await);
    cloakroom::conformance::revoke_others_racing_renames(store, 200).await;
    clean(&url, &prefix).await;
}
