//! Side-by-side benchmarks of cloakroom against tower-sessions, actix-session and the bare
//! store ("the floor"), in process and over HTTP on loopback; cloakroom on actix-web
//! (`cloakroom-actix`) runs beside actix-session on the same actix-web runtime.
//!
//! Every library serves the same five routes with the same behaviour ([`Scenario`]), on
//! the same store servers, in the same run. `scripts/bench.sh` drives the `bench` binary
//! and regenerates `BENCHMARKS.md`; see there for what is measured and how.

pub mod actix_apps;
pub mod axum_apps;
pub mod env;
pub mod floor;
pub mod http;
pub mod inprocess;
pub mod proxy;
pub mod report;
pub mod results;
pub mod scenario;
pub mod script_cost;
pub mod wire;

pub use env::Env;
pub use scenario::{Library, Scenario, StoreKind, Target};
