//! A Redis and Redis Cluster session store for [cloakroom](https://docs.rs/cloakroom), on
//! redis-rs.
//!
//! Round trips per request: reading an existing session costs one (`HMGET`); a request
//! that writes costs two (the read, then one compare-and-set script).
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloakroom_redis::SetupError> {
//! use cloakroom::SessionLayer;
//! use cloakroom_redis::{RedisConfig, RedisStore};
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0").await?;
//! let layer = SessionLayer::new(store);
//! let cluster = RedisStore::connect_cluster(&["redis://127.0.0.1:7000"], RedisConfig::default()).await?;
//! # Ok(()) }
//! ```

mod connection;
mod scripts;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use store::{NotReplicated, RedisConfig, RedisStore, SetupError};
