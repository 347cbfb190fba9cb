//! `bench`: runs the side-by-side benchmarks and writes `BENCHMARKS.md`. See
//! `scripts/bench.sh`, which builds and calls it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::{Parser, Subcommand};
use cloakroom_benches::inprocess::{self, Budget, Job, Output};
use cloakroom_benches::results::{combine_rounds, Machine, MemoryUse, Results};
use cloakroom_benches::{http, report, Env, Library, StoreKind, Target};

#[derive(Parser)]
#[command(about = "Benchmarks cloakroom against tower-sessions, actix-session and the bare store")]
struct Cli {
    #[command(subcommand)]
    command: Step,
}

#[derive(Subcommand)]
enum Step {
    /// Measures everything and saves the results as JSON.
    Run {
        /// Short samples and runs: the whole run in under 5 minutes on 2 cores.
        #[arg(long)]
        quick: bool,
        /// Where to save the results.
        #[arg(long, default_value = "target/bench/results.json")]
        out: PathBuf,
        /// Only targets whose `library/store` contains this, ignoring case (`redis`,
        /// `cloakroom-actix`).
        #[arg(long)]
        only: Option<String>,
        /// Sessions for the memory measurement.
        #[arg(long, default_value_t = 1_000_000)]
        sessions: u64,
        /// Skip the over-HTTP mode.
        #[arg(long)]
        no_http: bool,
    },
    /// Repeats one scenario on one target in process (axum or actix-web), for a profiler.
    Profile {
        /// `library/store`, as `run` prints it (e.g. `cloakroom/memory`,
        /// `cloakroom-actix/Redis`).
        target: String,
        /// 1-5 (S1 untouched ... S5 contended).
        scenario: usize,
        /// How many requests.
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
    },
    /// Serves one target on loopback for a while (to load or profile it by hand).
    Serve {
        /// `library/store`, as `run` prints it.
        target: String,
        /// For how many seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Writes the Markdown report and its chart from saved results.
    Report {
        /// The results of `bench run`.
        #[arg(long, default_value = "target/bench/results.json")]
        results: PathBuf,
        /// The Markdown file to write.
        #[arg(long, default_value = "BENCHMARKS.md")]
        markdown: PathBuf,
        /// The chart to write (SVG), referenced from the Markdown by this path.
        #[arg(long, default_value = "docs/benchmarks.svg")]
        chart: PathBuf,
        /// The command that regenerates the report, quoted in it.
        #[arg(long, default_value = "scripts/bench.sh")]
        command: String,
    },
}

fn main() {
    let result = match Cli::parse().command {
        Step::Run {
            quick,
            out,
            only,
            sessions,
            no_http,
        } => run(quick, &out, only.as_deref(), sessions, no_http),
        Step::Profile {
            target,
            scenario,
            requests,
        } => profile(&target, scenario, requests),
        Step::Serve { target, seconds } => serve(&target, seconds),
        Step::Report {
            results,
            markdown,
            chart,
            command,
        } => write_report(&results, &markdown, &chart, &command),
    };
    if let Err(error) = result {
        eprintln!("bench: {error}");
        std::process::exit(1);
    }
}

fn run(
    quick: bool,
    out: &std::path::Path,
    only: Option<&str>,
    sessions: u64,
    no_http: bool,
) -> Result<(), String> {
    let started = Instant::now();
    let scratch = tempfile::tempdir().map_err(|error| error.to_string())?;
    let env = Env::from_env(scratch.path().to_owned());
    let targets: Vec<Target> = Target::all()
        .into_iter()
        .filter(|target| {
            only.is_none_or(|only| target.slug().to_lowercase().contains(&only.to_lowercase()))
        })
        .collect();
    let mut results = Results {
        machine: machine(&env),
        quick,
        ..Results::default()
    };
    let budget = if quick { Budget::QUICK } else { Budget::FULL };
    // Rounds in rotated order, combined by median: the machine's speed drifts, and
    // each library should meet that drift alike. Within a round one store's libraries
    // are measured together, their samples taking turns.
    let rounds = if quick { 2 } else { 5 };
    let mut rows = Vec::new();
    for round in 0..rounds {
        for together in by_store(&targets, round) {
            rows.extend(inprocess::measure_together(&together, &env, budget, round)?);
        }
    }
    results.in_process = combine_rounds(rows);
    for &target in targets
        .iter()
        .filter(|target| matches!(target.store, StoreKind::Redis | StoreKind::Postgres))
    {
        match inprocess::run_target(target, &env, Job::CountRoundTrips)? {
            Output::RoundTrips(rows) => results.round_trips.extend(rows),
            Output::Throughput(_) => unreachable!("counting"),
        }
    }
    if targets.contains(&Target::new(Library::Cloakroom, StoreKind::Redis)) {
        let requests = if quick { 5_000 } else { 20_000 };
        results.redis_script = Some(cloakroom_benches::script_cost::measure(&env, requests)?);
    }
    if !no_http {
        let load = if quick {
            http::Load::QUICK
        } else {
            http::Load::FULL
        };
        let mut rows = Vec::new();
        for round in 0..load.rounds {
            for together in by_store(&targets, round) {
                rows.extend(http::run_together(&together, &env, load, round)?);
            }
        }
        results.http = combine_rounds(rows);
    }
    for library in ["cloakroom", "tower-sessions", "floor"] {
        if only.is_none_or(|only| library.contains(only) || only.contains("memory")) {
            results.memory.push(measure_memory(library, sessions)?);
        }
    }
    results.seconds = started.elapsed().as_secs_f64();
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|error| error.to_string())?;
    }
    let json = serde_json::to_string_pretty(&results).map_err(|error| error.to_string())?;
    std::fs::write(out, json).map_err(|error| format!("writing {}: {error}", out.display()))?;
    eprintln!("bench: {} in {:.0} s", out.display(), results.seconds);
    Ok(())
}

fn find_target(slug: &str) -> Result<Target, String> {
    Target::all()
        .into_iter()
        .find(|target| target.slug() == slug)
        .ok_or_else(|| format!("no target {slug}"))
}

fn serve(slug: &str, seconds: u64) -> Result<(), String> {
    let target = find_target(slug)?;
    let scratch = tempfile::tempdir().map_err(|error| error.to_string())?;
    let load = http::Load::QUICK;
    let server = http::serve(
        target,
        &Env::from_env(scratch.path().to_owned()),
        load.workers,
    )?;
    let (_, cookie, _) = http::request(
        server.addr,
        true,
        cloakroom_benches::scenario::routes::SEED,
        None,
    )?;
    println!(
        "http://{} cookie: {}",
        server.addr,
        cookie.unwrap_or_default()
    );
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    server.stop();
    Ok(())
}

fn profile(slug: &str, scenario: usize, requests: u64) -> Result<(), String> {
    let target = find_target(slug)?;
    let scenario = *cloakroom_benches::Scenario::ALL
        .get(scenario.wrapping_sub(1))
        .ok_or("scenarios are 1-5")?;
    let scratch = tempfile::tempdir().map_err(|error| error.to_string())?;
    inprocess::repeat(
        target,
        &Env::from_env(scratch.path().to_owned()),
        scenario,
        requests,
    )
}

/// `targets` grouped by store, to be measured side by side, the stores in round `round`'s
/// [`turn`](inprocess::turn) order. Bare axum (no store) joins every group, recorded under
/// that group's store: the S1 targets read each store's cloakroom against the bare axum
/// measured beside it.
fn by_store(targets: &[Target], round: usize) -> Vec<Vec<Target>> {
    let (bare, stored): (Vec<Target>, Vec<Target>) = targets
        .iter()
        .partition(|target| target.store == StoreKind::None);
    let mut stores = Vec::new();
    for target in &stored {
        if !stores.contains(&target.store) {
            stores.push(target.store);
        }
    }
    if stores.is_empty() {
        return vec![bare];
    }
    (0..stores.len())
        .map(|k| stores[inprocess::turn(k, stores.len(), round)])
        .map(|store| {
            let on_store = stored.iter().filter(|target| target.store == store);
            let beside = bare.iter().map(|target| Target::new(target.library, store));
            on_store.copied().chain(beside).collect()
        })
        .collect()
}

/// Runs the `bench-memory` binary beside this one: a fresh process per library, so one
/// library's freed memory never flatters the next.
fn measure_memory(library: &str, sessions: u64) -> Result<MemoryUse, String> {
    let exe = std::env::current_exe()
        .map_err(|error| error.to_string())?
        .with_file_name("bench-memory");
    let output = Command::new(&exe)
        .args([library, &sessions.to_string()])
        .output()
        .map_err(|error| format!("running {}: {error}", exe.display()))?;
    if !output.status.success() {
        return Err(format!(
            "bench-memory {library}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let row: MemoryUse =
        serde_json::from_slice(&output.stdout).map_err(|error| error.to_string())?;
    eprintln!(
        "  memory     {library:<32} {:.0} heap bytes/session, {:.0} RSS bytes/session",
        row.heap_bytes, row.rss_bytes
    );
    Ok(row)
}

fn write_report(
    results: &std::path::Path,
    markdown: &std::path::Path,
    chart: &std::path::Path,
    command: &str,
) -> Result<(), String> {
    let text = std::fs::read_to_string(results)
        .map_err(|error| format!("reading {}: {error}", results.display()))?;
    let results: Results = serde_json::from_str(&text).map_err(|error| error.to_string())?;
    if let Some(parent) = chart.parent() {
        std::fs::create_dir_all(parent).map_err(|error| error.to_string())?;
    }
    report::chart(&results, chart)?;
    let relative = pathdiff(chart, markdown);
    std::fs::write(markdown, report::markdown(&results, &relative, command))
        .map_err(|error| format!("writing {}: {error}", markdown.display()))?;
    for check in report::checks(&results) {
        let verdict = if check.checked == 0 {
            "UNMEASURED"
        } else if check.misses.is_empty() {
            "met"
        } else {
            "MISSED"
        };
        eprintln!(
            "{verdict:>10}: {} {}",
            check.target,
            check.misses.join("; ")
        );
    }
    Ok(())
}

/// `chart` as the Markdown file links it (both are relative to the repository root).
fn pathdiff(chart: &std::path::Path, markdown: &std::path::Path) -> String {
    match markdown
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        Some(parent) => chart
            .strip_prefix(parent)
            .unwrap_or(chart)
            .display()
            .to_string(),
        None => chart.display().to_string(),
    }
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    text.lines().next().map(|line| line.trim().to_owned())
}

fn machine(env: &Env) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let mut servers = Vec::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        if let Ok(pool) = sqlx::PgPool::connect(&env.postgres_url).await {
            if let Ok(version) = sqlx::query_scalar::<_, String>("SHOW server_version")
                .fetch_one(&pool)
                .await
            {
                servers.push(format!("PostgreSQL {version}"));
            }
        }
        if let Ok(mut connection) = env.redis_connection().await {
            if let Ok(info) = redis::cmd("INFO")
                .arg("server")
                .query_async::<String>(&mut connection)
                .await
            {
                if let Some(version) = info
                    .lines()
                    .find_map(|line| line.strip_prefix("redis_version:"))
                {
                    servers.push(format!("Redis {}", version.trim()));
                }
            }
        }
    });
    servers.push(format!("SQLite {}", sqlite_version()));
    if let Some(wrk) = command_line("wrk", &["--version"]) {
        servers.push(wrk.split(" Copyright").next().unwrap_or(&wrk).to_owned());
    }
    Machine {
        cpu: cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown CPU".into()),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        rustc: command_line("rustc", &["--version"]).unwrap_or_else(|| "rustc unknown".into()),
        servers,
    }
}

fn sqlite_version() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime
        .block_on(async {
            let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.ok()?;
            sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
                .fetch_one(&pool)
                .await
                .ok()
        })
        .unwrap_or_else(|| "unknown".into())
}
