//! SQL session stores for [cloakroom](https://docs.rs/cloakroom) on sqlx: SQLite (feature
//! `sqlite`, the embedded default), PostgreSQL (feature `postgres`) and MySQL/MariaDB
//! (feature `mysql`).
//!
//! Every store keeps one row per session keyed by the 32-byte SHA-256 store key (never the
//! session ID), with indexes on the expiry and the user, and runs the conformance suite
//! unchanged. Queries are built at run time: no database is needed to compile.
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

mod common;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use common::{SetupError, DEFAULT_OPERATION_TIMEOUT, DEFAULT_TABLE, IDLE_CHECK_AFTER};
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The README's examples, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
