//! The harness measures what it claims: S5 counts lost writes (cloakroom keeps all of them),
//! and the round-trip proxy sees Redis reads as one command and writes as two.

use std::time::Duration;

use cloakroom_benches::inprocess::{run_target, Budget, Job, Output};
use cloakroom_benches::{Env, Library, Scenario, StoreKind, Target};

const TINY: Budget = Budget {
    warm_up: Duration::from_millis(5),
    samples: 3,
    sample: Duration::from_millis(2),
    writes_per_writer: 10,
};

fn env() -> (tempfile::TempDir, Env) {
    let scratch = tempfile::tempdir().unwrap();
    let env = Env::from_env(scratch.path().to_owned());
    (scratch, env)
}

fn redis_reachable(env: &Env) -> bool {
    let up = std::net::TcpStream::connect(env.redis_addr()).is_ok();
    if !up {
        assert!(
            std::env::var_os("CLOAKROOM_REQUIRE_SERVICES").is_none(),
            "Redis is required but unreachable at {}",
            env.redis_addr()
        );
        eprintln!("SKIPPED: no Redis at {}", env.redis_addr());
    }
    up
}

#[test]
fn every_scenario_runs_and_cloakroom_loses_no_contended_write() {
    let (_scratch, env) = env();
    let target = Target::new(Library::Cloakroom, StoreKind::Memory);
    let Output::Throughput(rows) = run_target(target, &env, Job::Measure(TINY)).unwrap() else {
        panic!("measuring gives throughput");
    };
    assert_eq!(
        rows.iter().map(|row| row.scenario).collect::<Vec<_>>(),
        Scenario::ALL
    );
    for row in &rows {
        assert!(row.per_second > 0.0, "{row:?}");
        assert_eq!(row.failed, 0, "{row:?}");
    }
    let contended = rows[4].contended.expect("S5 reports its writes");
    assert_eq!(contended.acknowledged, 32 * 10);
    assert_eq!(contended.lost(), 0, "{contended:?}");
}

#[test]
fn the_floor_is_measured_on_every_store_without_failures() {
    let (_scratch, env) = env();
    for store in [StoreKind::Memory, StoreKind::Sqlite, StoreKind::Cookie] {
        let target = Target::new(Library::Floor, store);
        let Output::Throughput(rows) = run_target(target, &env, Job::Measure(TINY)).unwrap() else {
            panic!("measuring gives throughput");
        };
        assert!(rows.iter().all(|row| row.failed == 0), "{rows:?}");
    }
}

#[test]
fn redis_round_trips_are_counted_per_command() {
    let (_scratch, env) = env();
    if !redis_reachable(&env) {
        return;
    }
    let target = Target::new(Library::Cloakroom, StoreKind::Redis);
    let Output::RoundTrips(rows) = run_target(target, &env, Job::CountRoundTrips).unwrap() else {
        panic!("counting gives round trips");
    };
    let count = |scenario| {
        rows.iter()
            .find(|row| row.scenario == scenario)
            .map(|row| row.per_request)
            .unwrap()
    };
    assert_eq!(count(Scenario::Untouched), 0.0);
    assert_eq!(count(Scenario::Read), 1.0, "a read is one HMGET");
    assert_eq!(count(Scenario::Write), 2.0, "a write is HMGET + EVALSHA");
    assert_eq!(
        count(Scenario::Login),
        2.0,
        "a rotation of a live session is HMGET + the rename script"
    );
}
