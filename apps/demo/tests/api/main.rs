//! The demo's JSON API as a client sees it, in-process on the memory store, on axum
//! (`tests/api_actix` runs the same tests on actix-web).

mod client;

mod account;
mod data;
mod input;

/// The framework these tests run the demo on.
const FRAMEWORK: client::Framework = client::Framework::Axum;
