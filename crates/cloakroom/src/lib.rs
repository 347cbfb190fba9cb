//! HTTP sessions for Rust web services that are correct under concurrency and safe by
//! default.
//!
//! The browser holds a random 256-bit ID in a cookie; a store holds the state under the
//! SHA-256 of that ID. Concurrent requests on one session never lose each other's writes,
//! a logged-out session never comes back, and a user's sessions can be listed and revoked.
//!
//! ```
//! use axum::{routing::{get, post}, Json, Router};
//! use cloakroom::{MemoryStore, Session, SessionError, SessionLayer};
//!
//! async fn add_to_cart(session: Session, Json(item): Json<String>) -> Result<Json<Vec<String>>, SessionError> {
//!     // An atomic read-modify-write: concurrent appends are all kept.
//!     let cart = session
//!         .update("cart", move |cart: Option<Vec<String>>| {
//!             let mut cart = cart.unwrap_or_default();
//!             cart.push(item.clone());
//!             cart
//!         })
//!         .await?;
//!     Ok(Json(cart))
//! }
//!
//! async fn login(session: Session) -> Result<&'static str, SessionError> {
//!     session.login("alice").await?; // rotates the ID: no session fixation
//!     Ok("welcome")
//! }
//!
//! let app: Router = Router::new()
//!     .route("/cart", post(add_to_cart))
//!     .route("/login", post(login))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! ```
//!
//! The pieces, one per module:
//! - [`id`]: [`SessionId`] (the cookie secret), [`StoreKey`] (what stores see),
//!   [`SessionHandle`] (the public name in lists and logs).
//! - [`record`]: the [`Record`] a store keeps.
//! - [`expiry`], [`config`]: timeouts, cookie flags, limits, the failure policy.
//! - [`store`]: the [`SessionStore`] contract with typed errors; [`memory`]: [`MemoryStore`].
//! - [`session`]: the [`Session`] handle and the commit engine.
//! - [`telemetry`]: the metrics (through the `metrics` facade) and `tracing` spans.
//! - [`layer`] (feature `tower`) and the axum extractor (feature `axum`, on by default);
//!   [`integration`]: what a framework integration exchanges with the engine.
//! - `conformance` (feature `conformance`): the suite every store must pass.
//! - `dbsc` (feature `dbsc`): device-bound sessions, the protocol pieces (proof
//!   verification, challenges, the bound cookie, headers).
//! - `device` (feature `devices`): "Chrome 131 on Linux" from a user agent.
//! - `testing` (feature `testing`): an in-process client for testing your handlers.

mod change;
// Public only for the fuzz targets and the integration crates' tests: not a stable API.
#[doc(hidden)]
pub mod codec;
pub mod config;
#[cfg(feature = "dbsc")]
pub mod dbsc;
#[cfg(feature = "devices")]
pub mod device;
pub mod epoch;
pub mod error;
pub mod expiry;
mod group_commit;
pub mod id;
pub mod integration;
pub mod keys;
pub mod memory;
pub mod purge;
pub mod record;
mod redact;
pub mod sealed;
pub mod session;
pub mod store;
mod store_wrapper;
pub mod telemetry;

#[cfg(feature = "axum")]
pub mod extract;
#[cfg(feature = "tower")]
pub mod layer;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    ClientIpSource, ConfigError, CookieConfig, Limits, OnStoreError, SameSite, SessionConfig,
    MAX_CAP_REVOCATIONS_PER_LOGIN,
};
pub use epoch::EpochSource;
pub use error::{SessionError, MAX_VALUE_DEPTH};
pub use expiry::ExpiryPolicy;
pub use id::{IdFormat, SessionHandle, SessionId, StoreKey};
pub use keys::{generate_key, KeyRing};
pub use memory::MemoryStore;
pub use purge::{spawn_purge_task, MIN_PURGE_INTERVAL};
pub use record::{ClientMeta, Record, Touch};
pub use sealed::{CookieCodec, CookieMode, CookieSessions, OpenedCookie};
pub use session::{Session, SessionManager, SessionMetadata, SessionSummary};
// Plumbing between the engine and framework integrations: documented in `integration`.
#[doc(hidden)]
pub use session::{Finish, RequestClient};
pub use store::{
    BoxError, InsertError, ListQuery, RenameError, SessionEntry, SessionStore, StoreError,
    TouchError, UpdateError,
};

#[cfg(feature = "tower")]
pub use layer::{SessionLayer, SessionService};
