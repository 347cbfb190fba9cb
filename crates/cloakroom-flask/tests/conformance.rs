//! The conformance suite, unmodified, against FlaskRedisStore on the real Redis, the HTTP
//! cases through axum and actix-web, each case under its own key prefix.

use std::sync::atomic::{AtomicUsize, Ordering};

use cloakroom_flask::FlaskRedisStore;

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

/// Deletes every key under `prefix`.
async fn clean(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
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
