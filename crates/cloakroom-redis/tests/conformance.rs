//! The conformance suite, unmodified, against the real Redis and a real Redis Cluster,
//! each store under a key prefix of its own.

mod support;

use cloakroom::testing::{NumberedStores, SuitePart};
use cloakroom_actix::testing::frameworks;
use cloakroom_redis::{RedisConfig, RedisStore};

async fn single(url: String, prefix: String) -> RedisStore {
    let config = RedisConfig {
        prefix,
        ..RedisConfig::default()
    };
    RedisStore::connect_with(&url, config)
        .await
        .expect("connect to Redis")
}

/// `part` of the suite on the shared Redis.
async fn on_shared_redis(part: SuitePart) {
    cloakroom_redis::testing::run_conformance(part, &frameworks(), single).await;
}

cloakroom::store_conformance_tests!(redis_store, on_shared_redis);

async fn cluster(urls: &[String], prefix: String) -> RedisStore {
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let config = RedisConfig {
        prefix,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect_cluster(&refs, config)
        .await
        .expect("connect to the cluster");
    assert!(store.is_cluster());
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_passes_the_conformance_suite() {
    let Some(nodes) = support::Cluster::start_if_installed().await else {
        return;
    };
    let urls = nodes.urls();
    // Brackets, glob syntax in `SCAN MATCH`: the store must match its prefix as written.
    let stores = NumberedStores::new(|n| cluster(&urls, format!("c[{n}]:")));
    stores.run(SuitePart::All, &frameworks()).await;
}
