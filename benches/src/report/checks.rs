//! The targets, evaluated on a run's results.

use crate::results::Results;
use crate::scenario::{Library, Scenario, StoreKind, Target};

use super::{find, ACTIX_TARGET, COLUMNS, FLOOR_TARGET, UNTOUCHED_TARGET};

/// A check against one of the targets.
#[derive(Debug)]
pub struct Check {
    /// What is checked.
    pub target: String,
    /// Where it was missed (empty: met).
    pub misses: Vec<String>,
    /// How many cells were checked.
    pub checked: usize,
}

/// Evaluates the targets on `results`.
pub fn checks(results: &Results) -> Vec<Check> {
    let mut peer = Check {
        target: "at least 1.0x the fastest peer (every store and scenario with a peer)".into(),
        misses: vec![],
        checked: 0,
    };
    let mut untouched = Check {
        target: "S1 untouched within 3% of bare axum".into(),
        misses: vec![],
        checked: 0,
    };
    let mut floor = Check {
        target: format!("cloakroom/floor at least {FLOOR_TARGET} (every store, S1-S4)"),
        misses: vec![],
        checked: 0,
    };
    let mut actix = Check {
        target: format!(
            "cloakroom on actix-web at least {ACTIX_TARGET:.1}x actix-session (Redis and cookie, every scenario)"
        ),
        misses: vec![],
        checked: 0,
    };
    let mut lost = Check {
        target: "S5 contended: zero lost writes for cloakroom (on axum and on actix-web)".into(),
        misses: vec![],
        checked: 0,
    };
    for (mode, rows) in [("in-process", &results.in_process), ("HTTP", &results.http)] {
        let bare = find(
            rows,
            Library::BareAxum,
            StoreKind::None,
            Scenario::Untouched,
        );
        for store in StoreKind::ALL {
            for scenario in Scenario::ALL {
                let Some(ours) = find(rows, Library::Cloakroom, store, scenario) else {
                    continue;
                };
                let where_ = format!("{mode} {} {}", store.name(), scenario.label());
                let fastest = COLUMNS
                    .iter()
                    .filter(|library| library.is_peer())
                    .filter_map(|&library| find(rows, library, store, scenario))
                    .map(|row| row.per_second)
                    .fold(None, |best: Option<f64>, value| {
                        Some(best.map_or(value, |best| best.max(value)))
                    });
                if let Some(fastest) = fastest {
                    peer.checked += 1;
                    if ours.per_second < fastest {
                        peer.misses
                            .push(format!("{where_}: {:.2}x", ours.per_second / fastest));
                    }
                }
                if scenario == Scenario::Untouched {
                    if let Some(bare) = bare {
                        untouched.checked += 1;
                        let ratio = ours.per_second / bare.per_second;
                        if ratio < UNTOUCHED_TARGET {
                            untouched.misses.push(format!("{where_}: {ratio:.3}x"));
                        }
                    }
                }
                if scenario != Scenario::Contended {
                    if let Some(base) = find(rows, Library::Floor, store, scenario) {
                        floor.checked += 1;
                        let ratio = ours.per_second / base.per_second;
                        if ratio < FLOOR_TARGET {
                            floor.misses.push(format!("{where_}: {ratio:.2}"));
                        }
                    }
                }
            }
        }
        for store in StoreKind::ALL {
            for scenario in Scenario::ALL {
                let where_ = format!("{mode} {} {}", store.name(), scenario.label());
                // cloakroom on actix-web against actix-session, like for like: the same
                // actix-web runtime, workers and test service, so the ratio is the session
                // libraries' alone.
                if let (Some(ours), Some(peer)) = (
                    find(rows, Library::CloakroomActix, store, scenario),
                    find(rows, Library::ActixSession, store, scenario),
                ) {
                    actix.checked += 1;
                    let ratio = ours.per_second / peer.per_second;
                    if ratio < ACTIX_TARGET {
                        actix.misses.push(format!("{where_}: {ratio:.2}x"));
                    }
                }
                for library in [Library::Cloakroom, Library::CloakroomActix] {
                    // Client-side state cannot merge concurrent writes: each response's
                    // cookie replaces the last, so S5 on cookies measures throughput only.
                    let Some(contended) = find(rows, library, store, scenario)
                        .and_then(|row| row.contended)
                        .filter(|_| store != StoreKind::Cookie)
                    else {
                        continue;
                    };
                    lost.checked += 1;
                    if contended.lost() > 0 {
                        let on = if library == Library::CloakroomActix {
                            " (actix-web)"
                        } else {
                            ""
                        };
                        lost.misses
                            .push(format!("{where_}{on}: {} lost", contended.lost()));
                    }
                }
            }
        }
    }
    let mut trips = Check {
        target:
            "Redis: S2 read exactly 1 round trip, S3 write exactly 2 (cloakroom on axum and on actix-web)"
                .into(),
        misses: vec![],
        checked: 0,
    };
    for library in [Library::Cloakroom, Library::CloakroomActix] {
        for (scenario, expected) in [(Scenario::Read, 1.0), (Scenario::Write, 2.0)] {
            if let Some(row) = results.round_trips.iter().find(|row| {
                row.target == Target::new(library, StoreKind::Redis) && row.scenario == scenario
            }) {
                trips.checked += 1;
                if (row.per_request - expected).abs() > 1e-9 {
                    trips.misses.push(format!(
                        "{} {}: {:.2}",
                        library.name(),
                        scenario.label(),
                        row.per_request
                    ));
                }
            }
        }
    }
    vec![peer, actix, untouched, trips, floor, lost]
}
