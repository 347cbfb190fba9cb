//! `reliability`: the campaign's harnesses as commands. Each prints its report as JSON and
//! exits non-zero when a target is missed; `--out FILE` also records it for
//! `scripts/reliability.sh`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cloakroom_reliability::crash::{self, DiskStore};
use cloakroom_reliability::outage::{self, Mode, Plan};
use cloakroom_reliability::servers::{Kind, Server};
use cloakroom_reliability::{scale, soak, write_result};

#[derive(Parser)]
#[command(about = "cloakroom's reliability harnesses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Crash safety: SIGKILL a writer process KILLS times and check the store each time.
    Crash {
        /// The store.
        store: DiskStore,
        /// How many writers to kill.
        #[arg(long, default_value_t = 30)]
        kills: u64,
        /// Each writer writes for a random 0..=MS milliseconds before it is killed.
        #[arg(long, default_value_t = 100)]
        max_write_ms: u64,
        /// Scan every record every N kills (and after the last).
        #[arg(long, default_value_t = 10)]
        scan_every: u64,
        /// Where to record the result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// (internal) The writer process the crash harness kills.
    CrashWriter {
        /// The store.
        store: DiskStore,
        /// Its directory.
        dir: PathBuf,
        /// This run's number.
        run: u64,
    },
    /// An outage under load on a private server of KIND.
    Outage {
        /// The server.
        kind: Kind,
        /// Kill (default; freeze for memcached, which keeps nothing across a restart).
        #[arg(long)]
        mode: Option<Mode>,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Seconds of load before the outage.
        #[arg(long, default_value_t = 3.0)]
        warmup: f64,
        /// Seconds the server stays away.
        #[arg(long, default_value_t = 4.0)]
        down: f64,
        /// Seconds of load after it is back.
        #[arg(long, default_value_t = 5.0)]
        after: f64,
        /// The store's operation timeout, seconds.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
        /// Where to record the result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Soak: full load for SECONDS on SQLite (temporary file) or a private Redis.
    Soak {
        /// `sqlite` or `redis`.
        store: String,
        /// Duration in seconds.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Measurement windows.
        #[arg(long, default_value_t = 10)]
        windows: u32,
        /// Where to record the result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Scale: one user with N sessions on the store URL names (any `cloakroom` store URL).
    Scale {
        /// The store URL (as for the `cloakroom` command).
        url: String,
        /// Sessions of the one user.
        #[arg(long, default_value_t = 100_000)]
        sessions: u64,
        /// Where to record the result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn finish(passed: bool, report: &impl serde::Serialize, out: Option<PathBuf>) -> ExitCode {
    println!(
        "{}",
        serde_json::to_string_pretty(report).unwrap_or_default()
    );
    if let Some(out) = out {
        if let Err(e) = write_result(&out, passed, report) {
            eprintln!("cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("FAILED: a target was missed (see the report above)");
        ExitCode::FAILURE
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CrashWriter { store, dir, run } => {
            match crash::write_forever(store, &dir, run).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("writer: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crash {
            store,
            kills,
            max_write_ms,
            scan_every,
            out,
        } => {
            let exe = std::env::current_exe().expect("the path of this program");
            let report = crash::campaign(&exe, store, None, kills, max_write_ms, scan_every).await;
            finish(report.passed(), &report, out)
        }
        Command::Outage {
            kind,
            mode,
            clients,
            warmup,
            down,
            after,
            timeout,
            out,
        } => {
            let mode = mode.unwrap_or(if kind == Kind::Memcached {
                Mode::Freeze
            } else {
                Mode::Kill
            });
            let plan = Plan {
                clients,
                warmup: Duration::from_secs_f64(warmup),
                down: Duration::from_secs_f64(down),
                after: Duration::from_secs_f64(after),
                operation_timeout: Duration::from_secs_f64(timeout),
            };
            match outage::run(kind, mode, &plan).await {
                Ok(report) => finish(report.passed(), &report, out),
                Err(e) => {
                    eprintln!("SKIPPED: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Soak {
            store,
            seconds,
            clients,
            windows,
            out,
        } => {
            let duration = Duration::from_secs(seconds);
            let dir = tempfile::tempdir().expect("a temporary directory");
            let mut _server = None;
            let opened = match store.as_str() {
                "sqlite" => crash::open(DiskStore::Sqlite, dir.path()).await,
                "redis" => match Server::start(Kind::Redis, dir.path()).await {
                    Ok(server) => {
                        let url = server.url();
                        _server = Some(server);
                        outage::open_store(Kind::Redis, &url, Duration::from_secs(2)).await
                    }
                    Err(e) => Err(e.to_string()),
                },
                other => Err(format!("soak runs on sqlite or redis, not {other}")),
            };
            match opened {
                Ok(opened) => {
                    let report = soak::run(&store, opened, duration, clients, windows).await;
                    finish(report.passed(), &report, out)
                }
                Err(e) => {
                    eprintln!("cannot open {store}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Scale { url, sessions, out } => {
            let shown = cloakroom_stores::redact(&url);
            match cloakroom_stores::Backend::open(&url).await {
                Ok(backend) => {
                    let report = scale::run(&shown, backend.shared(), sessions).await;
                    finish(report.errors.is_empty(), &report, out)
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
