//! Outages under load: a private server is killed (or frozen) while clients keep
//! incrementing their sessions' counters through the app, then brought back.
//!
//! Measured: the 503s and whether each carried `Retry-After` (all must), the slowest
//! request against the store's operation timeout, the time from the server being back to
//! the first success, and acknowledged increments lost (a 200 answered value `n`, but the
//! session later reads less than `n`; target 0).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cloakroom::SessionStore;
use serde::Serialize;

use crate::load::{app, Answer, Client};
use crate::servers::{Kind, Server, ServerError};

/// How the server goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// SIGKILL to the server's process group, then a restart (a crash).
    Kill,
    /// SIGSTOP, then SIGCONT (a hung server: connections open, nothing answers).
    Freeze,
}

/// The timeline and load of one outage.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Concurrent clients.
    pub clients: usize,
    /// Load before the outage.
    pub warmup: Duration,
    /// How long the server stays away.
    pub down: Duration,
    /// Load after the server is back.
    pub after: Duration,
    /// The store's operation timeout.
    pub operation_timeout: Duration,
}

/// What an outage showed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutageReport {
    /// The server.
    pub store: Option<Kind>,
    /// Kill or freeze.
    pub mode: Option<Mode>,
    /// Requests answered.
    pub requests: u64,
    /// 200s.
    pub ok: u64,
    /// 503s.
    pub unavailable: u64,
    /// 503s without `Retry-After` (target 0).
    pub unavailable_without_retry_after: u64,
    /// Other statuses (target 0).
    pub other_statuses: u64,
    /// The slowest request, ms.
    pub slowest_ms: f64,
    /// The store's operation timeout, ms.
    pub operation_timeout_ms: f64,
    /// How long the server was away (kill/freeze to back), ms.
    pub down_ms: f64,
    /// From the server answering again to the first 200 of a request sent after, ms.
    pub recovery_ms: Option<f64>,
    /// From the server answering again to the end of the last 503, ms (0: none after).
    pub last_503_after_back_ms: f64,
    /// Increments acknowledged with a 200.
    pub acked_increments: u64,
    /// Acknowledged increments missing at the end (target 0).
    pub lost_increments: u64,
    /// Problems seen.
    pub problems: Vec<String>,
}

impl OutageReport {
    /// Whether the outage met its targets.
    pub fn passed(&self) -> bool {
        self.unavailable_without_retry_after == 0
            && self.other_statuses == 0
            && self.lost_increments == 0
            && self.recovery_ms.is_some()
            && self.slowest_ms <= self.operation_timeout_ms * 2.0 + 1000.0
    }
}

/// Opens the store of `kind` on `server` with `timeout` as its operation timeout.
pub async fn open_store(
    kind: Kind,
    url: &str,
    timeout: Duration,
) -> Result<Arc<dyn SessionStore>, String> {
    Ok(match kind {
        Kind::Redis => {
            let config = cloakroom_redis::RedisConfig {
                operation_timeout: timeout,
                ..cloakroom_redis::RedisConfig::default()
            };
            Arc::new(
                cloakroom_redis::RedisStore::connect_with(url, config)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }
        Kind::Postgres => Arc::new(
            cloakroom_sqlx::PostgresStore::connect(url)
                .await
                .map_err(|e| e.to_string())?
                .with_operation_timeout(timeout),
        ),
        Kind::Mysql => Arc::new(
            cloakroom_sqlx::MySqlStore::connect(url)
                .await
                .map_err(|e| e.to_string())?
                .with_operation_timeout(timeout),
        ),
        // Its operation timeout is fixed (2 s).
        Kind::Memcached => Arc::new(
            cloakroom_memcached::MemcachedStore::connect(url)
                .await
                .map_err(|e| e.to_string())?,
        ),
    })
}

/// The operation timeout a store of `kind` actually uses when asked for `wanted`.
pub fn effective_timeout(kind: Kind, wanted: Duration) -> Duration {
    match kind {
        Kind::Memcached => Duration::from_secs(2),
        _ => wanted,
    }
}

/// Runs one outage of `kind` in `mode` under `plan`'s load.
pub async fn run(kind: Kind, mode: Mode, plan: &Plan) -> Result<OutageReport, ServerError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut server = Server::start(kind, dir.path()).await?;
    let store = open_store(kind, &server.url(), plan.operation_timeout)
        .await
        .map_err(|e| crate::servers::ServerError::Start {
            what: "open the store".into(),
            detail: e,
        })?;
    let app = app(store);
    let log: Arc<Mutex<Vec<(Answer, bool)>>> = Arc::default();
    let running = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for _ in 0..plan.clients {
        let (app, log, running) = (app.clone(), Arc::clone(&log), Arc::clone(&running));
        clients.push(tokio::spawn(async move {
            let mut client = Client::default();
            let mut acked = 0u64;
            while running.load(Ordering::Relaxed) {
                let answer = client.call(&app, Method::POST, "/incr").await;
                if answer.status == StatusCode::OK {
                    acked = acked.max(answer.body.parse().unwrap_or(0));
                }
                log.lock().unwrap().push((answer, true));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (client, acked)
        }));
    }
    tokio::time::sleep(plan.warmup).await;
    let down_at = Instant::now();
    match mode {
        Mode::Kill => server.kill(),
        Mode::Freeze => server.freeze(),
    }
    tokio::time::sleep(plan.down).await;
    server.bring_back().await?;
    let back_at = Instant::now();
    tokio::time::sleep(plan.after).await;
    running.store(false, Ordering::Relaxed);
    let mut report = OutageReport {
        store: Some(kind),
        mode: Some(mode),
        operation_timeout_ms: effective_timeout(kind, plan.operation_timeout).as_secs_f64()
            * 1000.0,
        down_ms: (back_at - down_at).as_secs_f64() * 1000.0,
        ..OutageReport::default()
    };
    for handle in clients {
        let (mut client, acked) = handle.await.expect("a client task");
        report.acked_increments += acked;
        if acked == 0 {
            continue;
        }
        let answer = client.call(&app, Method::GET, "/read").await;
        let now: u64 = answer.body.parse().unwrap_or(0);
        if answer.status != StatusCode::OK {
            report
                .problems
                .push(format!("final read answered {}", answer.status));
        }
        if now < acked {
            report.lost_increments += acked - now;
            report.problems.push(format!(
                "a session reads {now} after {acked} was acknowledged"
            ));
        }
    }
    let log = log.lock().unwrap();
    for (answer, _) in log.iter() {
        report.requests += 1;
        report.slowest_ms = report.slowest_ms.max(answer.latency.as_secs_f64() * 1000.0);
        let ended = answer.started + answer.latency;
        match answer.status {
            StatusCode::OK => {
                report.ok += 1;
                if answer.started >= back_at {
                    let since = (ended - back_at).as_secs_f64() * 1000.0;
                    report.recovery_ms = Some(report.recovery_ms.map_or(since, |r| r.min(since)));
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                report.unavailable += 1;
                if !answer.retry_after {
                    report.unavailable_without_retry_after += 1;
                    if report.problems.len() < 10 {
                        let at = answer.started.saturating_duration_since(down_at);
                        report.problems.push(format!(
                            "503 without Retry-After, sent {:.0} ms after the outage began, \
                             took {:.0} ms: {:?}",
                            at.as_secs_f64() * 1000.0,
                            answer.latency.as_secs_f64() * 1000.0,
                            answer.body
                        ));
                    }
                }
                if ended > back_at {
                    report.last_503_after_back_ms = report
                        .last_503_after_back_ms
                        .max((ended - back_at).as_secs_f64() * 1000.0);
                }
            }
            other => {
                report.other_statuses += 1;
                if report.problems.len() < 10 {
                    report.problems.push(format!("{other}: {}", answer.body));
                }
            }
        }
    }
    Ok(report)
}
