//! The conformance suite, unmodified, against the real Redis and a real Redis Cluster.

mod support;

use cloakroom_redis::{RedisConfig, RedisStore};

async fn single(url: &str, prefix: &str) -> RedisStore {
    let config = RedisConfig {
        prefix: prefix.to_owned(),
        ..RedisConfig::default()
    };
    RedisStore::connect_with(url, config)
        .await
        .expect("connect to Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_passes_the_conformance_suite() {
    let Some(url) = support::reachable_redis().await else {
        return;
    };
    let prefix = support::unique_prefix();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    cloakroom::conformance::run_on(&cloakroom_actix::testing::frameworks(), || {
        let case_prefix = format!(
            "{prefix}{}:",
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let url = url.clone();
        async move { single(&url, &case_prefix).await }
    })
    .await;
    support::clean(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_concurrency_twenty_rounds() {
    let Some(url) = support::reachable_redis().await else {
        return;
    };
    let prefix = support::unique_prefix();
    let cases = cloakroom::conformance::concurrency_cases();
    cloakroom::conformance::run_cases_on(
        &cases,
        20,
        &cloakroom_actix::testing::frameworks(),
        || {
            let (url, prefix) = (url.clone(), prefix.clone());
            async move { single(&url, &prefix).await }
        },
    )
    .await;
    support::clean(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_passes_the_conformance_suite() {
    if !support::redis_server_installed() {
        return support::skip("redis-server is not installed: run scripts/services.sh");
    }
    let cluster = support::Cluster::start().await;
    let urls = cluster.urls();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    cloakroom::conformance::run_on(&cloakroom_actix::testing::frameworks(), || {
        let prefix = format!(
            "c{}:",
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let urls = urls.clone();
        async move {
            let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
            let store = RedisStore::connect_cluster(
                &refs,
                RedisConfig {
                    prefix,
                    ..RedisConfig::default()
                },
            )
            .await
            .expect("connect to the cluster");
            assert!(store.is_cluster());
            store
        }
    })
    .await;
}
