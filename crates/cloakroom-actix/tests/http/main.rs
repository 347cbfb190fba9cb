//! The actix-web integration end to end, through `actix_web::test`, on real stores
//! (memory and SQLite): cookies, data and identity, laziness, strictness, concurrency,
//! the failure policy, size limits, and client-side cookie sessions. One test binary,
//! one module per concern.

#[macro_use]
mod support;

mod client_side;
mod concurrency;
mod failure_policy;
mod sessions;
