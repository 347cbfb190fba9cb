//! The issues' targets, evaluated on a run's results: the performance issue's seven
//! (numbered as it numbers them), the actix-web issue's, and the guarantees every run
//! must keep.

use crate::results::{Results, Throughput};
use crate::scenario::{Library, Scenario, StoreKind, Target};

use super::{
    bare_axum_beside, find, ACTIX_TARGET, COLUMNS, FLOOR_TARGET, MEMORY_TARGET_BYTES,
    REDIS_SCRIPT_TARGET_US, UNTOUCHED_HTTP_TARGET, UNTOUCHED_IN_PROCESS_TARGET,
};

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

impl Check {
    fn new(target: impl Into<String>) -> Self {
        Check {
            target: target.into(),
            misses: vec![],
            checked: 0,
        }
    }

    /// Counts one cell, missed when `value` is under `bound`.
    fn at_least(&mut self, value: f64, bound: f64, where_: &str, shown: String) {
        self.checked += 1;
        if value < bound {
            self.misses.push(format!("{where_}: {shown}"));
        }
    }
}

/// Which peers a ratio is taken against.
enum Against {
    /// The fastest of the peer libraries measured for the cell.
    FastestPeer,
    /// One library.
    Library(Library),
    /// Each of these libraries in turn (a cell is missed if any of them is faster).
    Each(&'static [Library]),
}

/// The two measuring modes, named as the misses name them.
fn modes(results: &Results) -> [(&'static str, &[Throughput]); 2] {
    [("in-process", &results.in_process), ("HTTP", &results.http)]
}

/// `ours` against `against` in the given stores and scenarios, in both modes: a cell
/// counts where both sides were measured.
fn ratio_check(
    results: &Results,
    target: &str,
    ours: Library,
    against: Against,
    stores: &[StoreKind],
    scenarios: &[Scenario],
    bound: f64,
) -> Check {
    let mut check = Check::new(target);
    for (mode, rows) in modes(results) {
        for &store in stores {
            for &scenario in scenarios {
                let Some(mine) = find(rows, ours, store, scenario) else {
                    continue;
                };
                let where_ = format!("{mode} {} {}", store.name(), scenario.label());
                let peers: Vec<(Library, f64)> = match &against {
                    Against::FastestPeer => COLUMNS
                        .iter()
                        .filter(|library| library.is_peer())
                        .filter_map(|&library| find(rows, library, store, scenario))
                        .map(|row| (row.target.library, row.per_second))
                        .max_by(|a, b| a.1.total_cmp(&b.1))
                        .into_iter()
                        .collect(),
                    Against::Library(library) => find(rows, *library, store, scenario)
                        .map(|row| (*library, row.per_second))
                        .into_iter()
                        .collect(),
                    Against::Each(libraries) => libraries
                        .iter()
                        .filter_map(|&library| find(rows, library, store, scenario))
                        .map(|row| (row.target.library, row.per_second))
                        .collect(),
                };
                if peers.is_empty() {
                    continue;
                }
                check.checked += 1;
                let worst = peers
                    .iter()
                    .map(|&(library, rate)| (library, mine.per_second / rate))
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((library, ratio)) = worst.filter(|&(_, ratio)| ratio < bound) {
                    let against = if matches!(against, Against::Each(_)) {
                        format!(" vs {}", library.name())
                    } else {
                        String::new()
                    };
                    check.misses.push(format!("{where_}: {ratio:.2}x{against}"));
                }
            }
        }
    }
    check
}

/// Evaluates the targets on `results`, in the order the report lists them.
pub fn checks(results: &Results) -> Vec<Check> {
    let all_stores = &StoreKind::ALL;
    let every = &Scenario::ALL;
    let mut checks = vec![
        ratio_check(
            results,
            "1. at least 1.0x the fastest peer (every store and scenario with a peer)",
            Library::Cloakroom,
            Against::FastestPeer,
            all_stores,
            every,
            1.0,
        ),
        ratio_check(
            results,
            "2. cookie sessions: S2 read, S3 write, S4 login and S5 at least 1.0x actix-session",
            Library::Cloakroom,
            Against::Library(Library::ActixSession),
            &[StoreKind::Cookie],
            &[
                Scenario::Read,
                Scenario::Write,
                Scenario::Login,
                Scenario::Contended,
            ],
            1.0,
        ),
    ];
    let mut script = Check::new(format!(
        "3. Redis: Redis CPU per update-script `EVALSHA` at most {REDIS_SCRIPT_TARGET_US:.0} µs \
         (`INFO commandstats` over cloakroom's S3 writes)"
    ));
    if let Some(cost) = &results.redis_script {
        script.at_least(
            REDIS_SCRIPT_TARGET_US,
            cost.usec_per_call,
            "cloakroom Redis S3 write",
            format!("{:.1} µs", cost.usec_per_call),
        );
    }
    checks.push(script);
    checks.push(ratio_check(
        results,
        "3. Redis: S2 read and S3 write at least 1.0x both peers",
        Library::Cloakroom,
        Against::Each(&[Library::TowerSessions, Library::ActixSession]),
        &[StoreKind::Redis],
        &[Scenario::Read, Scenario::Write],
        1.0,
    ));
    checks.push(ratio_check(
        results,
        "4. SQL: SQLite and PostgreSQL S2 read and S3 write at least 1.0x tower-sessions",
        Library::Cloakroom,
        Against::Library(Library::TowerSessions),
        &[StoreKind::Sqlite, StoreKind::Postgres],
        &[Scenario::Read, Scenario::Write],
        1.0,
    ));
    checks.extend(untouched(results));
    let mut memory = Check::new(format!(
        "6. memory: cloakroom's `MemoryStore` at most {MEMORY_TARGET_BYTES:.0} heap bytes per session \
         at one million sessions"
    ));
    for row in results
        .memory
        .iter()
        .filter(|row| row.library == Library::Cloakroom)
    {
        memory.at_least(
            MEMORY_TARGET_BYTES,
            row.heap_bytes,
            &format!("{} sessions", row.sessions),
            format!("{:.0} bytes", row.heap_bytes),
        );
    }
    checks.push(memory);
    checks.push(ratio_check(
        results,
        "7. S4 login on every store at least 1.0x the fastest peer",
        Library::Cloakroom,
        Against::FastestPeer,
        all_stores,
        &[Scenario::Login],
        1.0,
    ));
    checks.push(ratio_check(
        results,
        &format!(
            "cloakroom on actix-web at least {ACTIX_TARGET:.1}x actix-session (Redis and cookie, every scenario)"
        ),
        Library::CloakroomActix,
        Against::Library(Library::ActixSession),
        all_stores,
        every,
        ACTIX_TARGET,
    ));
    checks.push(lost_writes(results));
    checks.push(round_trips(results));
    checks.push(floor(results));
    checks
}

/// Target 5: S1 against a bare axum app with no session layer, per mode.
fn untouched(results: &Results) -> [Check; 2] {
    let [(in_process, in_rows), (http, http_rows)] = modes(results);
    [
        (in_process, in_rows, UNTOUCHED_IN_PROCESS_TARGET),
        (http, http_rows, UNTOUCHED_HTTP_TARGET),
    ]
    .map(|(mode, rows, bound)| {
        let mut check = Check::new(format!(
            "5. S1 untouched, {}: at least {bound}x bare axum",
            if mode == "HTTP" {
                "over HTTP"
            } else {
                "in process"
            }
        ));
        for store in StoreKind::ALL {
            if let (Some(ours), Some(bare)) = (
                find(rows, Library::Cloakroom, store, Scenario::Untouched),
                bare_axum_beside(rows, store),
            ) {
                let ratio = ours.per_second / bare.per_second;
                check.at_least(
                    ratio,
                    bound,
                    &format!("{mode} {} S1 untouched", store.name()),
                    format!("{ratio:.3}x"),
                );
            }
        }
        check
    })
}

/// No acknowledged S5 write may be lost by cloakroom, on either framework. Client-side
/// state cannot merge concurrent writes (each response's cookie replaces the last), so
/// S5 on cookies measures throughput only.
fn lost_writes(results: &Results) -> Check {
    let mut lost =
        Check::new("S5 contended: zero lost writes for cloakroom (on axum and on actix-web)");
    for (mode, rows) in modes(results) {
        for store in StoreKind::ALL {
            for library in [Library::Cloakroom, Library::CloakroomActix] {
                let Some(contended) = find(rows, library, store, Scenario::Contended)
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
                    lost.misses.push(format!(
                        "{mode} {} {}{on}: {} lost",
                        store.name(),
                        Scenario::Contended.label(),
                        contended.lost()
                    ));
                }
            }
        }
    }
    lost
}

/// Redis reads and writes take the fewest round trips a compare-and-set allows.
fn round_trips(results: &Results) -> Check {
    let mut trips = Check::new(
        "Redis: S2 read exactly 1 round trip, S3 write exactly 2 (cloakroom on axum and on actix-web)",
    );
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
    trips
}

/// The earlier issue's bound against the floor (the same store operations, no library).
fn floor(results: &Results) -> Check {
    let mut check = Check::new(format!(
        "cloakroom/floor at least {FLOOR_TARGET} (every store, S1-S4)"
    ));
    for (mode, rows) in modes(results) {
        for store in StoreKind::ALL {
            for scenario in &Scenario::ALL[..4] {
                if let (Some(ours), Some(base)) = (
                    find(rows, Library::Cloakroom, store, *scenario),
                    find(rows, Library::Floor, store, *scenario),
                ) {
                    let ratio = ours.per_second / base.per_second;
                    check.at_least(
                        ratio,
                        FLOOR_TARGET,
                        &format!("{mode} {} {}", store.name(), scenario.label()),
                        format!("{ratio:.2}"),
                    );
                }
            }
        }
    }
    check
}
