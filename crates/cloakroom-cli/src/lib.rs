//! The library behind the `cloakroom` admin command: opening any store from a URL
//! ([`store_url`]), and the commands ([`commands`]) as functions that write to any output.
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
pub mod store_url;
pub mod table;
