//! In-process mode: requests through tower's `oneshot` (axum apps) or actix-web's test
//! service, on one thread, timed in samples after a warm-up; the median sample counts.
//! One store's apps are measured together, their samples taking turns.

use std::time::{Duration, Instant};

use actix_web::test;

use crate::env::Env;
use crate::proxy::CountingProxy;
use crate::results::{Contended, RoundTrips, Throughput};
use crate::scenario::routes::{READ, SEED};
use crate::scenario::{Library, Scenario, StoreKind, Target};
use crate::wire::Protocol;

mod driver;

pub use driver::{cookie_pair, ActixDriver, AnyDriver, AxumDriver, Driver, Reply};

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Requests run before timing, at least this long.
    pub warm_up: Duration,
    /// Timed samples per scenario; the median is reported.
    pub samples: usize,
    /// Length of one sample.
    pub sample: Duration,
    /// S5: requests per writer (32 writers).
    pub writes_per_writer: usize,
}

impl Budget {
    /// The quick mode's budget.
    pub const QUICK: Budget = Budget {
        warm_up: Duration::from_millis(100),
        samples: 7,
        sample: Duration::from_millis(20),
        writes_per_writer: 25,
    };
    /// The full mode's budget.
    pub const FULL: Budget = Budget {
        warm_up: Duration::from_millis(400),
        samples: 21,
        sample: Duration::from_millis(50),
        writes_per_writer: 100,
    };
}

/// S5's writer count.
pub const WRITERS: usize = 32;

/// A fresh session's cookie.
pub async fn seed<D: Driver>(driver: &D) -> Result<String, String> {
    let reply = driver.call(true, SEED, None).await;
    match reply.cookie {
        Some(cookie) if reply.ok() => Ok(cookie),
        _ => Err(format!("seeding failed: status {}", reply.status)),
    }
}

/// The cookie `scenario` starts from: a fresh session's, or none for S1.
async fn starting_cookie<D: Driver>(
    driver: &D,
    scenario: Scenario,
) -> Result<Option<String>, String> {
    if scenario.needs_session() {
        seed(driver).await.map(Some)
    } else {
        Ok(None)
    }
}

/// One request of `scenario`, following the new cookie after a rotation (as a browser
/// would), so S4 rotates a live session every time.
async fn step<D: Driver>(driver: &D, scenario: Scenario, cookie: &mut Option<String>) -> Reply {
    let reply = driver
        .call(scenario.is_post(), scenario.path(), cookie.as_deref())
        .await;
    if scenario == Scenario::Login {
        if let Some(new) = &reply.cookie {
            *cookie = Some(new.clone());
        }
    }
    reply
}

/// `requests` requests of `scenario`; how many failed.
async fn steps<D: Driver>(
    driver: &D,
    scenario: Scenario,
    cookie: &mut Option<String>,
    requests: u32,
) -> u64 {
    let mut failed = 0;
    for _ in 0..requests {
        if !step(driver, scenario, cookie).await.ok() {
            failed += 1;
        }
    }
    failed
}

/// Runs every scenario of `target` on `driver`.
pub async fn measure_all<D: Driver>(
    driver: &D,
    target: Target,
    budget: Budget,
) -> Result<Vec<Throughput>, String> {
    measure_side_by_side(&[(target, &AnyDriver::new(driver))], budget, 0).await
}

/// Runs every scenario on every one of `apps` (one store's libraries), side by side: a
/// sequential scenario's timed samples take turns between the apps, sample by sample, so
/// the machine's drift over seconds and minutes falls on every library alike and their
/// ratio is measured at the same moments. `round` varies who goes first (see [`turn`]).
async fn measure_side_by_side(
    apps: &[(Target, &AnyDriver<'_>)],
    budget: Budget,
    round: usize,
) -> Result<Vec<Throughput>, String> {
    let mut results = Vec::new();
    for &scenario in &Scenario::ALL {
        let lanes: Vec<(Target, &AnyDriver)> = apps
            .iter()
            .filter(|(target, _)| target.scenarios().contains(&scenario))
            .copied()
            .collect();
        let measured = if scenario == Scenario::Contended {
            let mut measured = Vec::new();
            for k in 0..lanes.len() {
                let (target, driver) = lanes[turn(k, lanes.len(), round)];
                measured.push(driver.0.contended_boxed(target, budget).await?);
            }
            measured
        } else {
            interleaved(&lanes, scenario, budget, round).await?
        };
        for result in &measured {
            eprintln!(
                "  in-process {:<32} {:<13} {:>10.0}/s",
                result.target.slug(),
                scenario.label(),
                result.per_second
            );
        }
        results.extend(measured);
    }
    Ok(results)
}

/// Which of `count` lanes goes `k`-th in turn `turn_number`: rotated by the turn and
/// reversed on odd turns, so no lane always follows the same neighbour.
pub fn turn(k: usize, count: usize, turn_number: usize) -> usize {
    let k = if turn_number % 2 == 1 {
        count - 1 - k
    } else {
        k
    };
    (k + turn_number) % count
}

/// One app's share of an [`interleaved`] measurement.
struct Lane<'a> {
    target: Target,
    driver: &'a AnyDriver<'a>,
    cookie: Option<String>,
    batch: u32,
    samples: Vec<f64>,
    failed: u64,
}

/// Times `scenario` on every lane: each warmed up (in turn order) and its sample sized
/// from what its warm-up saw, then the samples taken in turns.
async fn interleaved<'a>(
    apps: &[(Target, &'a AnyDriver<'a>)],
    scenario: Scenario,
    budget: Budget,
    round: usize,
) -> Result<Vec<Throughput>, String> {
    let mut lanes = Vec::with_capacity(apps.len());
    for &(target, driver) in apps {
        lanes.push(Lane {
            target,
            driver,
            cookie: starting_cookie(driver, scenario).await?,
            batch: 0,
            samples: Vec::with_capacity(budget.samples),
            failed: 0,
        });
    }
    let count = lanes.len();
    for k in 0..count {
        let lane = &mut lanes[turn(k, count, round)];
        let started = Instant::now();
        let mut warm = 0_u32;
        while started.elapsed() < budget.warm_up || warm < 10 {
            lane.failed += lane
                .driver
                .0
                .steps_boxed(scenario, &mut lane.cookie, 10)
                .await;
            warm += 10;
        }
        let per_request = started.elapsed() / warm;
        lane.batch = (budget.sample.as_nanos() / per_request.as_nanos().max(1)).max(5) as u32;
    }
    for sample in 0..budget.samples {
        for k in 0..count {
            let lane = &mut lanes[turn(k, count, sample + round)];
            let started = Instant::now();
            let failed = lane
                .driver
                .0
                .steps_boxed(scenario, &mut lane.cookie, lane.batch);
            lane.failed += failed.await;
            let per_request = started.elapsed().as_nanos() as f64 / f64::from(lane.batch);
            lane.samples.push(per_request);
        }
    }
    Ok(lanes
        .into_iter()
        .map(|mut lane| {
            lane.samples.sort_by(f64::total_cmp);
            let median_ns = lane.samples[lane.samples.len() / 2];
            Throughput {
                target: lane.target,
                scenario,
                per_second: 1e9 / median_ns,
                median_us: median_ns / 1e3,
                failed: lane.failed,
                contended: None,
                spread: 1.0,
            }
        })
        .collect())
}

async fn contended<D: Driver>(
    driver: &D,
    target: Target,
    budget: Budget,
) -> Result<Throughput, String> {
    let cookie = seed(driver).await?;
    let writer = async || {
        let mut acknowledged = 0_u64;
        for _ in 0..budget.writes_per_writer {
            let reply = driver
                .call(true, Scenario::Contended.path(), Some(&cookie))
                .await;
            acknowledged += u64::from(reply.ok());
        }
        acknowledged
    };
    let started = Instant::now();
    let acknowledged: u64 = futures::future::join_all((0..WRITERS).map(|_| writer()))
        .await
        .into_iter()
        .sum();
    let elapsed = started.elapsed();
    let requests = (WRITERS * budget.writes_per_writer) as u64;
    let survived = read_counter(driver, &cookie).await?;
    Ok(Throughput {
        target,
        scenario: Scenario::Contended,
        per_second: requests as f64 / elapsed.as_secs_f64(),
        median_us: elapsed.as_secs_f64() * 1e6 / requests as f64 * WRITERS as f64,
        failed: requests - acknowledged,
        contended: Some(Contended {
            acknowledged,
            survived,
        }),
        spread: 1.0,
    })
}

async fn read_counter<D: Driver>(driver: &D, cookie: &str) -> Result<u64, String> {
    let reply = driver.call(false, READ, Some(cookie)).await;
    std::str::from_utf8(&reply.body)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| format!("reading the counter failed: status {}", reply.status))
}

/// What to do with a target in process.
#[derive(Clone, Copy, Debug)]
pub enum Job {
    /// Time every scenario.
    Measure(Budget),
    /// Count store commands (Redis) or round trips (PostgreSQL) per request, through a
    /// [`CountingProxy`].
    CountRoundTrips,
}

/// What a [`Job`] produced.
#[derive(Debug)]
pub enum Output {
    /// From [`Job::Measure`].
    Throughput(Vec<Throughput>),
    /// From [`Job::CountRoundTrips`].
    RoundTrips(Vec<RoundTrips>),
}

/// Requests per scenario when counting round trips.
const COUNTED_REQUESTS: u64 = 64;

async fn perform<D: Driver>(
    driver: &D,
    target: Target,
    job: Job,
    proxy: Option<&CountingProxy>,
) -> Result<Output, String> {
    match (job, proxy) {
        (Job::Measure(budget), _) => measure_all(driver, target, budget)
            .await
            .map(Output::Throughput),
        (Job::CountRoundTrips, Some(proxy)) => {
            let mut counts = Vec::new();
            for &scenario in target.scenarios() {
                let mut cookie = starting_cookie(driver, scenario).await?;
                let requests = if scenario == Scenario::Contended {
                    let cookie = cookie.clone();
                    let writer = async || {
                        for _ in 0..COUNTED_REQUESTS / 16 {
                            driver.call(true, scenario.path(), cookie.as_deref()).await;
                        }
                    };
                    let before = (proxy.messages(), proxy.round_trips());
                    futures::future::join_all((0..WRITERS).map(|_| writer())).await;
                    let requests = WRITERS as u64 * (COUNTED_REQUESTS / 16);
                    (
                        proxy.messages() - before.0,
                        proxy.round_trips() - before.1,
                        requests,
                    )
                } else {
                    // One unmeasured request first: connection setup and script loading
                    // are not per-request costs.
                    step(driver, scenario, &mut cookie).await;
                    let before = (proxy.messages(), proxy.round_trips());
                    for _ in 0..COUNTED_REQUESTS {
                        step(driver, scenario, &mut cookie).await;
                    }
                    (
                        proxy.messages() - before.0,
                        proxy.round_trips() - before.1,
                        COUNTED_REQUESTS,
                    )
                };
                let per_request = requests.0 as f64 / requests.2 as f64;
                let round_trips = requests.1 as f64 / requests.2 as f64;
                eprintln!(
                    "  round trips {:<32} {:<13} {per_request:.2} commands, {round_trips:.2} round trips",
                    target.slug(),
                    scenario.label()
                );
                counts.push(RoundTrips {
                    target,
                    scenario,
                    per_request,
                    round_trips,
                });
            }
            Ok(Output::RoundTrips(counts))
        }
        (Job::CountRoundTrips, None) => Err("counting needs a proxy".into()),
    }
}

/// Builds `target`'s actix-web app in actix-web's test service, binds it as an
/// [`ActixDriver`] named `driver`, and evaluates `body` (an async context: the apps'
/// types differ, so this is a macro rather than a function taking a closure).
macro_rules! with_actix_driver {
    ($target:expr, $env:expr, |$driver:ident| $body:expr) => {{
        use crate::actix_apps;
        use actix_web::App;
        let target: Target = $target;
        let env: &Env = $env;
        let key = actix_web::cookie::Key::generate();
        match (target.library, target.store) {
            (Library::CloakroomActix, store) => {
                let middleware = actix_apps::cloakroom_middleware(store, env)
                    .await
                    .map_err(|error| format!("{}: {error}", target.slug()))?;
                let app = App::new()
                    .wrap(middleware)
                    .configure(actix_apps::cloakroom_routes);
                let $driver = ActixDriver(test::init_service(app).await);
                $body
            }
            (Library::ActixSession, StoreKind::Redis) => {
                let store = actix_apps::redis_store(env)
                    .await
                    .map_err(|error| error.to_string())?;
                let app = App::new()
                    .wrap(actix_apps::middleware(store, &key))
                    .configure(actix_apps::actix_session_routes);
                let $driver = ActixDriver(test::init_service(app).await);
                $body
            }
            (Library::ActixSession, StoreKind::Cookie) => {
                let app = App::new()
                    .wrap(actix_apps::middleware(actix_apps::cookie_store(), &key))
                    .configure(actix_apps::actix_session_routes);
                let $driver = ActixDriver(test::init_service(app).await);
                $body
            }
            _ => Err(format!("{} is not an actix-web target", target.slug())),
        }
    }};
}

/// Runs `job` on `target` in process, on a fresh single-threaded runtime (actix-web's own
/// for the actix-web apps), building its app there.
pub fn run_target(target: Target, env: &Env, job: Job) -> Result<Output, String> {
    if target.library.on_actix() {
        return actix_web::rt::System::new().block_on(async {
            let (env, proxy) = prepare(target, env, job).await?;
            with_actix_driver!(target, &env, |driver| {
                perform(&driver, target, job, proxy.as_ref()).await
            })
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let (env, proxy) = prepare(target, env, job).await?;
        let router = crate::axum_apps::build(target, &env)
            .await
            .map_err(|error| format!("{}: {error}", target.slug()))?;
        perform(&AxumDriver(router), target, job, proxy.as_ref()).await
    })
}

/// Measures every scenario on `targets` (one store's libraries) side by side, in one
/// single-threaded runtime (actix-web's, where axum apps run as well): their sequential
/// samples take turns, so the ratios between them are measured at the same moments.
/// `round` rotates who goes first.
pub fn measure_together(
    targets: &[Target],
    env: &Env,
    budget: Budget,
    round: usize,
) -> Result<Vec<Throughput>, String> {
    actix_web::rt::System::new().block_on(async {
        if targets
            .iter()
            .any(|target| target.store == StoreKind::Redis)
        {
            env.flush_redis().await?;
        }
        let mut apps = Vec::with_capacity(targets.len());
        for &target in targets {
            apps.push((target, build_driver(target, env).await?));
        }
        let apps: Vec<(Target, &AnyDriver)> = apps
            .iter()
            .map(|(target, driver)| (*target, driver))
            .collect();
        measure_side_by_side(&apps, budget, round).await
    })
}

/// `target`'s app as an [`AnyDriver`]; must run on actix-web's runtime.
async fn build_driver(target: Target, env: &Env) -> Result<AnyDriver<'static>, String> {
    if target.library.on_actix() {
        return with_actix_driver!(target, env, |driver| Ok(AnyDriver::new(driver)));
    }
    let router = crate::axum_apps::build(target, env)
        .await
        .map_err(|error| format!("{}: {error}", target.slug()))?;
    Ok(AnyDriver::new(AxumDriver(router)))
}

/// Flushes Redis, and for counting puts a proxy in front of the target's store.
async fn prepare(
    target: Target,
    env: &Env,
    job: Job,
) -> Result<(Env, Option<CountingProxy>), String> {
    if target.store == StoreKind::Redis {
        env.flush_redis().await?;
    }
    if !matches!(job, Job::CountRoundTrips) {
        return Ok((env.clone(), None));
    }
    let (upstream, protocol) = match target.store {
        StoreKind::Redis => (env.redis_addr(), Protocol::Redis),
        StoreKind::Postgres => (env.postgres_addr(), Protocol::Postgres),
        other => return Err(format!("no round trips to count on {}", other.name())),
    };
    let proxy = CountingProxy::start(upstream, protocol)
        .await
        .map_err(|error| error.to_string())?;
    let env = match protocol {
        Protocol::Redis => env.through(0, proxy.port),
        Protocol::Postgres => env.through(proxy.port, 0),
    };
    Ok((env, Some(proxy)))
}

/// Sends `requests` requests of `scenario` to `target` in process and nothing else: a
/// steady workload to run under `perf record` or `valgrind --tool=callgrind`. Targets on
/// actix-web run too, on its runtime, so both sides of a comparison can be profiled.
pub fn repeat(target: Target, env: &Env, scenario: Scenario, requests: u64) -> Result<(), String> {
    async fn drive<D: Driver>(driver: &D, scenario: Scenario, requests: u64) -> Result<(), String> {
        let mut cookie = starting_cookie(driver, scenario).await?;
        for _ in 0..requests {
            step(driver, scenario, &mut cookie).await;
        }
        Ok(())
    }
    if target.library.on_actix() {
        return actix_web::rt::System::new().block_on(async {
            let (env, _) = prepare(target, env, Job::Measure(Budget::QUICK)).await?;
            with_actix_driver!(target, &env, |driver| {
                drive(&driver, scenario, requests).await
            })
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let (env, _) = prepare(target, env, Job::Measure(Budget::QUICK)).await?;
        let router = crate::axum_apps::build(target, &env)
            .await
            .map_err(|error| format!("{}: {error}", target.slug()))?;
        drive(&AxumDriver(router), scenario, requests).await
    })
}
