//! actix-web sessions on cloakroom: the same engine, store contract and semantics as the
//! tower layer, as an actix-web middleware and extractor.
//!
//! [`SessionMiddleware`] parses the cookie and hands every request a lazy session;
//! [`Session`] extracts it in handlers; [`SessionError`] turns session failures into the
//! same responses as the axum integration (503, 413, 500). Concurrent requests on one
//! session never lose each other's writes, a logged-out session never comes back, and
//! `login` rotates the ID.
//!
//! ```
//! use actix_web::{test, web, App};
//! use cloakroom::MemoryStore;
//! use cloakroom_actix::{Session, SessionError, SessionMiddleware};
//!
//! async fn add_to_cart(session: Session, item: String) -> Result<String, SessionError> {
//!     // An atomic read-modify-write: concurrent appends are all kept.
//!     let cart = session
//!         .update("cart", move |cart: Option<Vec<String>>| {
//!             let mut cart = cart.unwrap_or_default();
//!             cart.push(item.clone());
//!             cart
//!         })
//!         .await?;
//!     Ok(cart.join(","))
//! }
//!
//! async fn login(session: Session) -> Result<&'static str, SessionError> {
//!     session.login("alice").await?; // rotates the ID: no session fixation
//!     Ok("welcome")
//! }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let sessions = SessionMiddleware::new(MemoryStore::new());
//! let app = test::init_service(
//!     App::new()
//!         .wrap(sessions)
//!         .route("/cart", web::post().to(add_to_cart))
//!         .route("/login", web::post().to(login)),
//! )
//! .await;
//!
//! let response = test::call_service(
//!     &app,
//!     test::TestRequest::post().uri("/cart").set_payload("socks").to_request(),
//! )
//! .await;
//! assert!(response.status().is_success());
//! assert!(response.headers().contains_key("set-cookie"));
//! # });
//! ```
//!
//! The pieces, one per module:
//! - [`middleware`]: [`SessionMiddleware`], the actix-web `Transform`.
//! - [`extract`]: the [`Session`] extractor.
//! - [`error`]: [`SessionError`], an actix-web `ResponseError`.
//! - `testing` (feature `testing`): actix-web apps for cloakroom's `TestClient` and
//!   conformance suite.
//!
//! The stores, configuration, client-side cookie sessions and key rings are cloakroom's
//! own: build a [`cloakroom::SessionManager`] once and share it between this middleware,
//! a tower layer and admin code with [`SessionMiddleware::from_manager`].

mod client;
pub mod error;
pub mod extract;
pub mod middleware;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::SessionError;
pub use extract::{MissingSessionMiddleware, Session};
pub use middleware::SessionMiddleware;
