//! SQL session stores for [cloakroom](https://docs.rs/cloakroom) on sqlx: SQLite (feature
//! `sqlite`, the embedded default), PostgreSQL (feature `postgres`) and MySQL/MariaDB
//! (feature `mysql`).
//!
//! One store, [`SqlStore`], is written once and speaks each database through a small
//! [`Dialect`]: placeholders, the clock, deadline clamping, upsert, purge and schema.
//! [`SqliteStore`], [`PostgresStore`] and [`MySqlStore`] name it for each database.
//!
//! Every store keeps one row per session keyed by the 32-byte SHA-256 store key (never the
//! session ID), with indexes on a purge mark and the user, and runs the conformance suite
//! unchanged. Queries are built at run time, once per store: no database is needed to
//! compile. A corrupt row is logged and treated as absent; listings skip it, revoke and
//! purge remove it.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use axum::{routing::get, Router};
//! use cloakroom::SessionLayer;
//! use cloakroom_sqlx::SqliteStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("sessions.db")).await.unwrap();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(SessionLayer::new(store));
//! # });
//! ```

mod dialect;
mod driver;
mod errors;
mod row;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server;
mod statements;
mod store;
mod table;

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use dialect::Dialect;
pub use driver::IDLE_CHECK_AFTER;
pub use errors::{SetupError, DEFAULT_OPERATION_TIMEOUT};
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use server::Server;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{SqlStore, REVOKE_BATCH};
pub use table::DEFAULT_TABLE;

/// The README's examples, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
