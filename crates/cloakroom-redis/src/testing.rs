//! Test helpers for code that keeps sessions in the shared test Redis (feature `testing`):
//! its URL, a loud skip when it is down, key prefixes no other test uses, clean-up of a
//! prefix afterwards, and the conformance suite run on stores there.

use std::future::Future;
use std::sync::Arc;

use cloakroom::conformance::Framework;
use cloakroom::testing::{NumberedStores, SuitePart};
use cloakroom::SessionStore;

/// The test Redis: `CLOAKROOM_TEST_REDIS_URL`, else the machine's own on 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// [`redis_url`] if a `PING` there is answered; else `None` after
/// [`cloakroom::testing::skip`]: a loud skip, a failure under
/// `CLOAKROOM_REQUIRE_SERVICES=1`.
pub async fn reachable_redis() -> Option<String> {
    let url = redis_url();
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), ping).await;
    let error = match outcome {
        Ok(Ok(_)) => return Some(url),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no answer within 5 s".to_owned(),
    };
    cloakroom::testing::skip(&format!(
        "Redis at {url} is unreachable ({error}); start it with scripts/services.sh"
    ));
    None
}

/// A key prefix no other test uses: `label`, a colon, 12 random hex digits in brackets and
/// a colon. The brackets are glob syntax in `SCAN MATCH` and `KEYS` patterns, so every
/// suite run on these prefixes checks that the store matches its prefix as written.
pub fn unique_prefix(label: &str) -> String {
    format!(
        "{label}:[{}]:",
        &cloakroom::SessionId::generate().store_key().to_hex()[..12]
    )
}

/// Deletes every key under `prefix` on the node at `url`.
///
/// # Panics
/// When the node cannot be reached or refuses the commands: a test's clean-up that
/// fails should fail the test.
pub async fn clean(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", crate::store::literal_pattern(prefix)))
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .expect("DEL");
    }
}

/// Runs `part` of the conformance suite, the HTTP cases through each of `frameworks`, on
/// stores on the shared test Redis: `open(url, prefix)` opens one whose keys all start with
/// `prefix`, a new prefix for every store, and every key is deleted afterwards. A loud skip,
/// as [`reachable_redis`], when Redis is unreachable.
///
/// # Panics
/// As [`NumberedStores::run`], and when the clean-up fails.
pub async fn run_conformance<S, F, Fut>(part: SuitePart, frameworks: &[Arc<dyn Framework>], open: F)
where
    S: SessionStore,
    F: Fn(String, String) -> Fut,
    Fut: Future<Output = S>,
{
    let Some(url) = reachable_redis().await else {
        return;
    };
    let prefix = unique_prefix("conformance");
    let stores = NumberedStores::new(|n| open(url.clone(), format!("{prefix}{n}:")));
    stores.run(part, frameworks).await;
    clean(&url, &prefix).await;
}
