//! The targets and tables on made-up results.

use super::*;
use crate::results::{Contended, MemoryUse, Results, ScriptCost};

fn row(library: Library, store: StoreKind, scenario: Scenario, per_second: f64) -> Throughput {
    Throughput {
        target: Target::new(library, store),
        scenario,
        per_second,
        median_us: 1.0,
        failed: 0,
        contended: (scenario == Scenario::Contended).then_some(Contended {
            acknowledged: 100,
            survived: if library == Library::ActixSession {
                3
            } else {
                100
            },
        }),
        spread: 1.0,
    }
}

/// Every library on Redis and cookie; cloakroom on actix-web is faster than
/// actix-session everywhere but Redis S3, and loses `lost_on_actix` S5 writes on Redis.
fn results(lost_on_actix: u64) -> Results {
    let mut rows = Vec::new();
    for store in [StoreKind::Redis, StoreKind::Cookie] {
        for scenario in Scenario::ALL {
            rows.push(row(Library::Cloakroom, store, scenario, 100.0));
            rows.push(row(Library::ActixSession, store, scenario, 90.0));
            let slow = store == StoreKind::Redis && scenario == Scenario::Write;
            let mut ours = row(
                Library::CloakroomActix,
                store,
                scenario,
                if slow { 45.0 } else { 95.0 },
            );
            if let Some(contended) = ours.contended.as_mut() {
                contended.survived -= lost_on_actix;
            }
            rows.push(ours);
        }
    }
    Results {
        in_process: rows.clone(),
        http: rows,
        ..Results::default()
    }
}

fn check<'a>(checks: &'a [Check], starts: &str) -> &'a Check {
    checks
        .iter()
        .find(|check| check.target.starts_with(starts))
        .unwrap()
}

#[test]
fn cloakroom_on_actix_is_checked_against_actix_session_only() {
    let checks = checks(&results(0));
    let actix = check(&checks, "cloakroom on actix-web");
    assert_eq!(
        actix.checked,
        2 * 2 * 5,
        "two modes, two stores, five scenarios"
    );
    assert_eq!(
        actix.misses,
        [
            "in-process Redis S3 write: 0.50x",
            "HTTP Redis S3 write: 0.50x"
        ]
    );
    // The fastest-peer target is cloakroom on axum's alone: cloakroom on actix-web is
    // neither a peer nor checked there.
    let peer = check(&checks, "1. at least 1.0x the fastest peer");
    assert_eq!(peer.checked, 20);
    assert!(peer.misses.is_empty(), "{:?}", peer.misses);
}

#[test]
fn lost_writes_count_on_actix_too() {
    let clean = checks(&results(0));
    let lost = check(&clean, "S5 contended");
    assert_eq!(
        lost.checked, 4,
        "Redis on axum and on actix-web, in both modes"
    );
    assert!(lost.misses.is_empty());
    let lossy = checks(&results(2));
    assert_eq!(
        check(&lossy, "S5 contended").misses,
        [
            "in-process Redis S5 contended (actix-web): 2 lost",
            "HTTP Redis S5 contended (actix-web): 2 lost"
        ]
    );
}

#[test]
fn a_run_of_the_actix_targets_alone_still_has_their_rows() {
    let mut results = results(0);
    results
        .in_process
        .retain(|row| row.target.library != Library::Cloakroom);
    let text = markdown(&results, "chart.svg", "bench");
    assert!(text.contains("| Redis | S3 write | - | 45.0 | - | 90.0 | - | - | - | 0.50 |"));
}

#[test]
fn the_tables_have_the_actix_column_and_ratio() {
    let text = markdown(&results(0), "chart.svg", "bench");
    assert!(text.contains(
        "| store | scenario | cloakroom | cloakroom (actix-web) | tower-sessions | actix-session | floor \
         | peer/cloakroom | cloakroom/floor | cloakroom (actix-web)/actix-session |"
    ));
    assert!(
        text.contains("| Redis | S3 write | 100 | 45.0 | - | 90.0 | - | actix 0.90 | - | 0.50 |")
    );
    assert!(text.contains("| Redis | cloakroom (actix-web) | 95.0 | 100 | 100 | 0 |"));
    assert!(text.contains(
        "| cloakroom on actix-web at least 1.0x actix-session (Redis and cookie, every scenario) | **missed** in 2 of 20"
    ));
}

#[test]
fn the_performance_targets_are_checked_as_numbered() {
    let mut results = results(0);
    // Redis S2 is slower than tower-sessions only: "both peers" names which one won.
    results.in_process.push(row(
        Library::TowerSessions,
        StoreKind::Redis,
        Scenario::Read,
        125.0,
    ));
    results.in_process.push(row(
        Library::BareAxum,
        StoreKind::None,
        Scenario::Untouched,
        125.0,
    ));
    results.redis_script = Some(ScriptCost {
        requests: 10,
        calls: 10,
        usec_per_call: 8.6,
    });
    results.memory.push(MemoryUse {
        library: Library::Cloakroom,
        sessions: 1_000_000,
        heap_bytes: 162.0,
        rss_bytes: 200.0,
    });
    let checks = checks(&results);
    let cookie = check(&checks, "2. cookie sessions");
    assert_eq!((cookie.checked, cookie.misses.len()), (8, 0));
    let both = check(&checks, "3. Redis: S2 read and S3 write");
    assert_eq!(both.checked, 4);
    assert_eq!(
        both.misses,
        ["in-process Redis S2 read: 0.80x vs tower-sessions"]
    );
    assert_eq!(
        check(&checks, "3. Redis: Redis CPU").misses,
        ["cloakroom Redis S3 write: 8.6 µs"]
    );
    let untouched = check(&checks, "5. S1 untouched, in process");
    assert_eq!(
        untouched.misses,
        [
            "in-process Redis S1 untouched: 0.800x",
            "in-process cookie S1 untouched: 0.800x"
        ]
    );
    assert!(untouched.target.contains("0.87x"));
    assert_eq!(check(&checks, "5. S1 untouched, over HTTP").checked, 0);
    let memory = check(&checks, "6. memory");
    assert_eq!((memory.checked, memory.misses.len()), (1, 0));
    assert_eq!(check(&checks, "7. S4 login").checked, 4);
}
