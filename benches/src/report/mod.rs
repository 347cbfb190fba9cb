//! `BENCHMARKS.md` and its chart, from a run's [`Results`](crate::results::Results): the targets checked
//! ([`checks`]), the tables ([`markdown`]) and the chart ([`chart`]).

mod chart;
mod checks;
mod markdown;
mod tables;
#[cfg(test)]
mod tests;

pub use chart::chart;
pub use checks::{checks, Check};
pub use markdown::markdown;

use crate::results::Throughput;
use crate::scenario::{Library, Scenario, StoreKind, Target};

/// The libraries in table order.
const COLUMNS: [Library; 5] = [
    Library::Cloakroom,
    Library::CloakroomActix,
    Library::TowerSessions,
    Library::ActixSession,
    Library::Floor,
];

/// The floor for cloakroom/floor, and the bound the issue sets.
const FLOOR_TARGET: f64 = 0.8;
/// S1 against bare axum in process (target 5).
const UNTOUCHED_IN_PROCESS_TARGET: f64 = 0.87;
/// S1 against bare axum over HTTP (target 5).
const UNTOUCHED_HTTP_TARGET: f64 = 0.97;
/// Redis CPU per update-script call, in µs (target 3).
const REDIS_SCRIPT_TARGET_US: f64 = 5.0;
/// `MemoryStore` heap bytes per session at one million sessions (target 6).
const MEMORY_TARGET_BYTES: f64 = 300.0;
/// cloakroom on actix-web against actix-session on the same runtime.
const ACTIX_TARGET: f64 = 1.0;

fn find(
    rows: &[Throughput],
    library: Library,
    store: StoreKind,
    scenario: Scenario,
) -> Option<&Throughput> {
    rows.iter()
        .find(|row| row.target == Target::new(library, store) && row.scenario == scenario)
}

/// Bare axum's S1 as measured beside `store`'s apps, or, in results from before bare axum
/// was measured beside each store, its one row.
fn bare_axum_beside(rows: &[Throughput], store: StoreKind) -> Option<&Throughput> {
    find(rows, Library::BareAxum, store, Scenario::Untouched).or_else(|| {
        find(
            rows,
            Library::BareAxum,
            StoreKind::None,
            Scenario::Untouched,
        )
    })
}

fn rate(value: f64) -> String {
    if value >= 100.0 {
        let whole = value.round() as u64;
        let text = whole.to_string();
        let mut grouped = String::new();
        for (i, digit) in text.chars().enumerate() {
            if i > 0 && (text.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    } else {
        format!("{value:.1}")
    }
}
