//! The harness measures what it claims: S5 counts lost writes (cloakroom keeps all of them,
//! on axum and on actix-web), the round-trip proxy sees Redis reads as one command and
//! writes as two, and cloakroom on actix-web serves the routes as specified.

use std::time::Duration;

use cloakroom_benches::inprocess::{
    measure_together, run_target, seed, turn, ActixDriver, Budget, Driver, Job, Output, Reply,
};
use cloakroom_benches::results::{Contended, Throughput};
use cloakroom_benches::scenario::routes;
use cloakroom_benches::{actix_apps, http, Env, Library, Scenario, StoreKind, Target};

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

/// Whether `what` answers at `addr`; a loud skip when not (a failure where the services
/// are required).
fn reachable(what: &str, addr: String) -> bool {
    let up = std::net::TcpStream::connect(&addr).is_ok();
    if !up {
        assert!(
            std::env::var_os("CLOAKROOM_REQUIRE_SERVICES").is_none(),
            "{what} is required but unreachable at {addr}"
        );
        eprintln!("SKIPPED: no {what} at {addr}");
    }
    up
}

fn redis_reachable(env: &Env) -> bool {
    reachable("Redis", env.redis_addr())
}

/// `target` measured on the tiny budget: a row per scenario.
fn measure(target: Target, env: &Env) -> Vec<Throughput> {
    let Output::Throughput(rows) = run_target(target, env, Job::Measure(TINY)).unwrap() else {
        panic!("measuring gives throughput");
    };
    rows
}

/// Every scenario ran, in order, served requests and failed none; S5 acknowledged all of
/// its 32 writers' 10 writes. Returns what S5 counted.
fn assert_every_scenario_ran(rows: &[Throughput], what: &str) -> Contended {
    assert_eq!(
        rows.iter().map(|row| row.scenario).collect::<Vec<_>>(),
        Scenario::ALL,
        "{what}"
    );
    for row in rows {
        assert!(row.per_second > 0.0, "{what}: {row:?}");
        assert_eq!(row.failed, 0, "{what}: {row:?}");
    }
    let contended = rows[4].contended.expect("S5 reports its writes");
    assert_eq!(contended.acknowledged, 32 * 10, "{what}");
    contended
}

/// `library` on Redis makes as many Redis commands per request as cloakroom's design
/// says, whichever framework serves it.
fn assert_redis_commands_per_request(library: Library) {
    let _redis = redis_lock();
    let (_scratch, env) = env();
    if !redis_reachable(&env) {
        return;
    }
    let target = Target::new(library, StoreKind::Redis);
    let Output::RoundTrips(rows) = run_target(target, &env, Job::CountRoundTrips).unwrap() else {
        panic!("counting gives round trips");
    };
    let count = |scenario| {
        rows.iter()
            .find(|row| row.scenario == scenario)
            .map(|row| row.per_request)
            .unwrap()
    };
    assert_eq!(count(Scenario::Untouched), 0.0, "{library:?}");
    assert_eq!(
        count(Scenario::Read),
        1.0,
        "{library:?}: a read is one HMGET"
    );
    assert_eq!(
        count(Scenario::Write),
        2.0,
        "{library:?}: a write is HMGET + EVALSHA"
    );
    assert_eq!(
        count(Scenario::Login),
        2.0,
        "{library:?}: a rotation of a live session is HMGET + the rename script"
    );
}

#[test]
fn every_scenario_runs_and_cloakroom_loses_no_contended_write() {
    let (_scratch, env) = env();
    let rows = measure(Target::new(Library::Cloakroom, StoreKind::Memory), &env);
    let contended = assert_every_scenario_ran(&rows, "cloakroom/memory");
    assert_eq!(contended.lost(), 0, "{contended:?}");
}

/// A store's libraries measured together, their samples taking turns: on memory the axum
/// apps (cloakroom, tower-sessions, the floor, and bare axum for S1) run on actix-web's
/// runtime, on cookies axum and actix-web apps take turns. A row for every library and
/// scenario it runs, none failed, and cloakroom still loses no contended write on memory.
#[test]
fn one_stores_libraries_are_measured_side_by_side() {
    let (_scratch, env) = env();
    let groups = [
        vec![
            Target::new(Library::Cloakroom, StoreKind::Memory),
            Target::new(Library::TowerSessions, StoreKind::Memory),
            Target::new(Library::Floor, StoreKind::Memory),
            Target::new(Library::BareAxum, StoreKind::None),
        ],
        vec![
            Target::new(Library::Cloakroom, StoreKind::Cookie),
            Target::new(Library::CloakroomActix, StoreKind::Cookie),
            Target::new(Library::ActixSession, StoreKind::Cookie),
        ],
    ];
    for targets in groups {
        for round in 0..2 {
            let rows = measure_together(&targets, &env, TINY, round).unwrap();
            for &target in &targets {
                let own: Vec<Throughput> = rows
                    .iter()
                    .filter(|row| row.target == target)
                    .cloned()
                    .collect();
                if target.library == Library::BareAxum {
                    assert_eq!(own.len(), 1, "bare axum runs S1 only: {own:?}");
                    assert!(own[0].per_second > 0.0 && own[0].failed == 0, "{own:?}");
                    continue;
                }
                let contended = assert_every_scenario_ran(&own, &target.slug());
                // Cookie sessions' S5 measures throughput only: each response's cookie
                // replaces the last, so there is no shared counter to lose writes from.
                let cloakroom =
                    matches!(target.library, Library::Cloakroom | Library::CloakroomActix);
                if cloakroom && target.store != StoreKind::Cookie {
                    assert_eq!(contended.lost(), 0, "{}: {contended:?}", target.slug());
                }
            }
        }
    }
}

/// Turns visit every lane once, and no lane always goes first or follows the same one.
#[test]
fn turns_vary_the_order() {
    let orders: Vec<Vec<usize>> = (0..6)
        .map(|number| (0..3).map(|k| turn(k, 3, number)).collect())
        .collect();
    for order in &orders {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2], "{orders:?}");
    }
    let firsts: std::collections::HashSet<usize> = orders.iter().map(|order| order[0]).collect();
    assert_eq!(firsts.len(), 3, "{orders:?}");
    let after_zero: std::collections::HashSet<usize> = orders
        .iter()
        .filter_map(|order| {
            let at = order.iter().position(|&lane| lane == 0)?;
            order.get(at + 1).copied()
        })
        .collect();
    assert_eq!(after_zero.len(), 2, "{orders:?}");
}

#[test]
fn the_floor_is_measured_on_every_store_without_failures() {
    let (_scratch, env) = env();
    let mut stores = vec![StoreKind::Memory, StoreKind::Sqlite, StoreKind::Cookie];
    // SQLite and PostgreSQL share the floor's SQL code: run both where PostgreSQL is up.
    if reachable("PostgreSQL", env.postgres_addr()) {
        stores.push(StoreKind::Postgres);
    }
    for store in stores {
        let rows = measure(Target::new(Library::Floor, store), &env);
        assert!(rows.iter().all(|row| row.failed == 0), "{rows:?}");
    }
}

#[test]
fn redis_round_trips_are_counted_per_command() {
    assert_redis_commands_per_request(Library::Cloakroom);
}

/// A request over real HTTP to a server of `http::serve`, for the same checks as in process.
struct OverHttp(std::net::SocketAddr);

impl Driver for OverHttp {
    async fn call(&self, post: bool, path: &str, cookie: Option<&str>) -> Reply {
        let (status, cookie, body) = http::request(self.0, post, path, cookie).unwrap();
        Reply {
            status,
            cookie,
            body: body.into(),
        }
    }
}

/// The routes answer as the cloakroom axum app's do: S1 never sets a cookie, `/seed` makes
/// a session with `counter = 0`, `/write` increments it, `/rotate` gives a new ID that
/// keeps the data. The client follows every new cookie, as a browser does (on the cookie
/// store each write re-seals the session).
async fn routes_answer_as_specified<D: Driver>(driver: &D, what: &str) {
    let text = |reply: &Reply| String::from_utf8_lossy(&reply.body).trim().to_owned();
    let untouched = driver.call(false, routes::UNTOUCHED, None).await;
    assert_eq!(
        (untouched.status, text(&untouched)),
        (200, "ok".into()),
        "{what}"
    );
    assert_eq!(untouched.cookie, None, "{what}: S1 sets no cookie");

    let seeded = driver.call(true, routes::SEED, None).await;
    assert_eq!(seeded.status, 200, "{what}");
    let mut cookie = seeded.cookie.expect("seeding sets the session cookie");
    assert!(cookie.starts_with("id="), "{what}: {cookie}");
    let read = follow(driver, &mut cookie, false, routes::READ).await;
    assert_eq!((read.status, text(&read)), (200, "0".into()), "{what}");
    for expected in ["1", "2", "3"] {
        let write = follow(driver, &mut cookie, true, routes::WRITE).await;
        assert_eq!(
            (write.status, text(&write)),
            (200, expected.into()),
            "{what}"
        );
    }
    let before = cookie.clone();
    let rotated = follow(driver, &mut cookie, true, routes::ROTATE).await;
    assert_eq!(rotated.status, 200, "{what}");
    assert!(
        rotated.cookie.is_some(),
        "{what}: a rotation sets the new cookie"
    );
    assert_ne!(cookie, before, "{what}: the ID changed");
    let read = follow(driver, &mut cookie, false, routes::READ).await;
    assert_eq!(text(&read), "3", "{what}: the data moved with the new ID");
}

/// One request with `cookie`, which then becomes the response's new cookie if it set one.
async fn follow<D: Driver>(driver: &D, cookie: &mut String, post: bool, path: &str) -> Reply {
    let reply = driver.call(post, path, Some(cookie)).await;
    if let Some(new) = &reply.cookie {
        cookie.clone_from(new);
    }
    reply
}

/// Redis (and every other test of the benchmark's Redis database, which `run_target` and
/// `http::serve` flush) one test at a time.
fn redis_lock() -> std::sync::MutexGuard<'static, ()> {
    static REDIS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    REDIS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn old_id_is_dead_after_rotation<D: Driver>(driver: &D, what: &str) {
    let cookie = seed(driver).await.unwrap();
    driver.call(true, routes::WRITE, Some(&cookie)).await;
    let rotated = driver.call(true, routes::ROTATE, Some(&cookie)).await;
    assert!(rotated.cookie.is_some(), "{what}");
    let old = driver.call(false, routes::READ, Some(&cookie)).await;
    assert_eq!(
        String::from_utf8_lossy(&old.body).trim(),
        "0",
        "{what}: the old ID reads as a new visitor"
    );
}

/// The stores cloakroom-actix is benchmarked on: cookie always, Redis when reachable.
fn stores(env: &Env) -> Vec<StoreKind> {
    let mut stores = vec![StoreKind::Cookie];
    if redis_reachable(env) {
        stores.push(StoreKind::Redis);
    }
    stores
}

#[test]
fn cloakroom_on_actix_answers_every_route_as_specified() {
    let _redis = redis_lock();
    let (_scratch, env) = env();
    for store in stores(&env) {
        let what = format!("cloakroom-actix/{} in process", store.name());
        actix_web::rt::System::new().block_on(async {
            if store == StoreKind::Redis {
                env.flush_redis().await.unwrap();
            }
            let middleware = actix_apps::cloakroom_middleware(store, &env).await.unwrap();
            let app = actix_web::App::new()
                .wrap(middleware)
                .configure(actix_apps::cloakroom_routes);
            let service = actix_web::test::init_service(app).await;
            let driver = ActixDriver(service);
            routes_answer_as_specified(&driver, &what).await;
            if store == StoreKind::Redis {
                old_id_is_dead_after_rotation(&driver, &what).await;
            }
        });

        let target = Target::new(Library::CloakroomActix, store);
        let server = http::serve(target, &env, 2).unwrap();
        let what = format!("cloakroom-actix/{} over HTTP", store.name());
        let driver = OverHttp(server.addr);
        futures::executor::block_on(routes_answer_as_specified(&driver, &what));
        server.stop();
    }
}

#[test]
fn cloakroom_on_actix_runs_every_scenario_and_loses_no_contended_write() {
    let _redis = redis_lock();
    let (_scratch, env) = env();
    for store in stores(&env) {
        let rows = measure(Target::new(Library::CloakroomActix, store), &env);
        let contended = assert_every_scenario_ran(&rows, &format!("{store:?}"));
        if store != StoreKind::Cookie {
            assert_eq!(contended.lost(), 0, "{store:?}: {contended:?}");
        }
    }
}

#[test]
fn cloakroom_on_actix_loses_no_contended_write_over_http() {
    let _redis = redis_lock();
    let (_scratch, env) = env();
    if !redis_reachable(&env) {
        return;
    }
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CLOAKROOM_REQUIRE_SERVICES").is_none(),
            "wrk is required but not installed (apt-get install wrk)"
        );
        eprintln!("SKIPPED: no wrk");
        return;
    }
    let load = http::Load {
        seconds: 1,
        rounds: 1,
        workers: 2,
        connections: 2,
    };
    let target = Target::new(Library::CloakroomActix, StoreKind::Redis);
    let rows = http::run_together(&[target], &env, load, 0).unwrap();
    let contended = rows
        .iter()
        .find_map(|row| row.contended)
        .expect("S5 reports its writes");
    assert!(contended.acknowledged > 0, "{contended:?}");
    assert_eq!(contended.lost(), 0, "{contended:?}");
    assert!(rows.iter().all(|row| row.failed == 0), "{rows:?}");
}

#[test]
fn cloakroom_on_actix_redis_round_trips_match_axum() {
    assert_redis_commands_per_request(Library::CloakroomActix);
}
