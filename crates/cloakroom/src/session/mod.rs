//! The [`Session`] handle, the [`SessionManager`] that makes one per request, and the commit
//! engine that saves a request's changes when its response is ready.

mod client_side;
mod commit;
mod handle;
mod index;
mod info;
mod load;
mod manager;
mod state;

pub use handle::Session;
pub use info::{SessionMetadata, SessionSummary};
#[cfg(feature = "tower")]
pub(crate) use manager::CookieHeaders;
pub use manager::SessionManager;
// Plumbing for framework integrations, documented in `crate::integration`.
#[doc(hidden)]
pub use info::Finish;
#[doc(hidden)]
pub use manager::RequestClient;
