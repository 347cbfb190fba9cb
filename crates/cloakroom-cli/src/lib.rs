//! The library behind the `cloakroom` admin command: the commands ([`commands`]) as
//! functions that write to any output. Stores open from a URL through
//! [`cloakroom_stores`], re-exported here as [`store_url`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use cloakroom_cli::{commands, store_url::Backend};
//! let backend = Backend::open("memory://").await.unwrap();
//! let mut out = Vec::new();
//! commands::stats(&backend.shared(), 10, commands::Format::default(), &mut out).await.unwrap();
//! assert!(String::from_utf8(out).unwrap().contains("live sessions"));
//! # });
//! ```

pub mod commands;
pub mod table;

pub use cloakroom_stores as store_url;
