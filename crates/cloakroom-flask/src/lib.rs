//! Share sessions with a running Flask app, so endpoints can move to Rust one at a time
//! while users stay logged in across both.
//!
//! Two modes, each with cloakroom's [`Session`](cloakroom::Session) API and layer:
//!
//! - [`FlaskCookie`]: Flask's default client-side session, the signed cookie of
//!   `SecureCookieSessionInterface` (a [`CookieCodec`](cloakroom::CookieCodec)).
//! - [`FlaskRedisStore`] with [`FlaskSessionIds`]: Flask-Session's server-side sessions in
//!   Redis, in its key layout and MessagePack, with its cookie signed or not.
//!
//! In both, the Flask session dict maps to a cloakroom record ([`dict`]): `_user_id` (as
//! Flask-Login keeps it) is the user, `_permanent` the remember-me flag, other keys the
//! data in Flask's [`tagged`] JSON, and cloakroom's own fields sit under `_cloakroom`,
//! which Flask carries along untouched. A bad, tampered, foreign-key or expired cookie is
//! an anonymous request, as in Flask.

pub mod cookie;
pub mod dict;
mod itsdangerous;
pub mod redis_store;
pub mod tagged;

pub use cookie::{FlaskCookie, KeyError};
pub use redis_store::{FlaskRedisStore, FlaskSessionIds};
