//! Device-bound sessions (DBSC) through the tower layer, in process: a real MemoryStore,
//! real ES256 keys, and requests shaped like the ones Chrome 156 sends
//! (`docs/dbsc-chromium-probe.md`). Each failure the issue lists has its test.
#![cfg(feature = "dbsc")]

mod refresh;
mod registration;
mod setup;
mod site;
