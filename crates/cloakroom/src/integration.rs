//! For authors of framework integrations (the tower layer, actix-web): the two calls that
//! wrap a request, and what they exchange. Handlers never need this module.
//!
//! An integration does three things per request:
//! 1. [`SessionManager::session`] with the request's `Cookie` header values and a
//!    [`RequestClient`] (IP and user agent): a lazy [`Session`], no store I/O yet.
//! 2. Hands that `Session` to the handler.
//! 3. After the handler, [`Session::finish`] with the response status: the commit. The
//!    [`Finish`] it returns says which `Set-Cookie` to add, whether to add
//!    `Vary: Cookie`, and which error, if any, the failure policy must turn into a
//!    response (`503` with `Retry-After`, `413`).
//!
//! ```
//! use std::sync::Arc;
//! use cloakroom::integration::RequestClient;
//! use cloakroom::{MemoryStore, SessionConfig, SessionManager};
//! use http::StatusCode;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let manager = Arc::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap());
//!
//! // 1. A request without a cookie.
//! let session = manager.session(std::iter::empty(), RequestClient::default());
//! // 2. The handler writes.
//! session.insert("theme", "dark").await.unwrap();
//! // 3. The commit: the new session's cookie goes out.
//! let finish = session.finish(StatusCode::OK).await;
//! assert!(finish.error.is_none());
//! let cookie = finish.set_cookie.expect("a new session sets its cookie");
//! assert!(cookie.to_str().unwrap().starts_with("id="));
//! # }
//! ```
//!
//! [`SessionManager::session`]: crate::SessionManager::session
//! [`Session`]: crate::Session
//! [`Session::finish`]: crate::Session::finish

#[doc(inline)]
pub use crate::session::{Finish, RequestClient};
