//! Open any cloakroom store from a URL.
//!
//! One table, [`SCHEMES`], says which URL schemes exist, how each is written, how it
//! opens, whether it has a schema to create and whether it needs a background purge.
//! The `cloakroom` admin command and the demo app both open stores through it, and their
//! help texts and "unknown scheme" messages are generated from it ([`help`],
//! [`known_urls`]), so they cannot drift from what actually opens.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let backend = cloakroom_stores::Backend::open("memory://").await.unwrap();
//! assert!(!backend.needs_purge_task());
//! let store = backend.shared();
//! # let _ = store;
//! # });
//! ```
//!
//! Every URL this crate prints, in its errors too, goes through [`redact`]: passwords and
//! secret query parameters become `***`.

mod backend;
mod error;
mod help;
mod redact;
mod schemes;
mod target;

pub use backend::{Backend, Configure, Migrate};
pub use error::OpenError;
pub use help::{help, known_urls};
pub use redact::redact;
pub use schemes::{open_client_side, Open, Query, Scheme, FLASK_SECRET_KEY, SCHEMES};
pub use target::Target;

/// A boxed future, as the table's open functions return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
