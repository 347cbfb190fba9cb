//! What the Flask store's test binaries share: the test Redis (through cloakroom-redis's
//! testing helpers, the same for both Redis stores) and a store on it, or a loud skip.
// Each test binary uses a part of this module.
#![allow(dead_code, unused_imports)]

use cloakroom_flask::FlaskRedisStore;

pub use cloakroom_redis::testing::{clean, redis_url};

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    cloakroom_redis::testing::unique_prefix("ct-flask")
}

/// A store on the test Redis with Flask-Session's defaults, or `None` after a loud skip
/// (a failure under `CLOAKROOM_REQUIRE_SERVICES=1`) when Redis is unreachable.
pub async fn connect() -> Option<FlaskRedisStore> {
    let url = cloakroom_redis::testing::reachable_redis().await?;
    Some(
        FlaskRedisStore::connect(&url)
            .await
            .expect("connect to Redis"),
    )
}
