//! The demo's JSON API tests of `tests/api`, on actix-web: the same contract as on axum.

#[path = "../api/client.rs"]
mod client;

#[path = "../api/account.rs"]
mod account;
#[path = "../api/data.rs"]
mod data;
#[path = "../api/input.rs"]
mod input;

/// The framework these tests run the demo on.
const FRAMEWORK: client::Framework = client::Framework::Actix;
