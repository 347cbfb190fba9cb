//! Crash safety: a writer process is SIGKILLed at a random moment while it writes, again
//! and again; after every kill the store must open, hold every write the writer
//! acknowledged, and hold no record that fails to load.
//!
//! The writer ([`write_forever`]) inserts one new session per step and bumps a counter
//! session with a compare-and-set update, printing an acknowledgement line after each
//! write returns `Ok` (the point where a web app would answer 200). The harness
//! ([`campaign`]) runs it as a child process, kills it, and checks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::{ListQuery, Record, SessionStore, StoreError, StoreKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The stores that keep data on the local disk, where a killed writer can tear a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskStore {
    /// `SqliteStore` (WAL journal).
    Sqlite,
    /// `FileStore`.
    File,
}

/// The user every written session belongs to (so the per-user index is exercised too).
pub const USER: &str = "crash";

/// Opens the store kept in `dir`.
pub async fn open(store: DiskStore, dir: &Path) -> Result<Arc<dyn SessionStore>, String> {
    match store {
        DiskStore::Sqlite => cloakroom_sqlx::SqliteStore::open(dir.join("sessions.db"))
            .await
            .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
            .map_err(|e| e.to_string()),
        DiskStore::File => cloakroom_fs::FileStore::open(dir)
            .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
            .map_err(|e| e.to_string()),
    }
}

fn key(name: &str) -> StoreKey {
    StoreKey::from_bytes(Sha256::digest(name.as_bytes()).into())
}

/// The key of the `step`th session written by writer run `run`.
pub fn step_key(run: u64, step: u64) -> StoreKey {
    key(&format!("crash session {run} {step}"))
}

/// The key of the counter session every run bumps.
pub fn counter_key() -> StoreKey {
    key("crash counter")
}

fn record(data: serde_json::Value) -> Record {
    let now = cloakroom::record::now();
    let mut record = Record::new(now, None, Some(now + time::Duration::days(1)));
    record.user_id = Some(USER.to_owned());
    if let serde_json::Value::Object(map) = data {
        record.data = map;
    }
    record
}

/// The writer: writes until killed, one acknowledgement line per committed write:
/// `insert RUN STEP` and `counter N`.
pub async fn write_forever(store: DiskStore, dir: &Path, run: u64) -> Result<(), String> {
    let store = open(store, dir).await?;
    let mut out = std::io::stdout().lock();
    let ack = |out: &mut std::io::StdoutLock, line: String| {
        // The acknowledgement must leave the process before the next write starts.
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())
    };
    let counter = counter_key();
    match store
        .insert(&counter, &record(serde_json::json!({ "n": 0 })))
        .await
    {
        Ok(()) | Err(cloakroom::InsertError::Duplicate) => {}
        Err(e) => return Err(e.to_string()),
    }
    ack(&mut out, "ready".into())?;
    for step in 0.. {
        let data = serde_json::json!({ "run": run, "step": step, "pad": "x".repeat(200) });
        store
            .insert(&step_key(run, step), &record(data))
            .await
            .map_err(|e| e.to_string())?;
        ack(&mut out, format!("insert {run} {step}"))?;
        let mut current = store
            .load(&counter)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the counter session vanished")?;
        let n = current.data.get("n").and_then(|n| n.as_u64()).unwrap_or(0) + 1;
        current.data.insert("n".into(), n.into());
        store
            .update(&counter, &current)
            .await
            .map_err(|e| e.to_string())?;
        ack(&mut out, format!("counter {n}"))?;
    }
    Ok(())
}

/// What a crash campaign found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CrashReport {
    /// The store.
    pub store: Option<DiskStore>,
    /// Writer processes killed.
    pub kills: u64,
    /// Writes acknowledged before the kills.
    pub acked_writes: u64,
    /// Acknowledged writes missing after a restart (target 0).
    pub lost_writes: u64,
    /// Records that failed to load, or an integrity check failing (target 0).
    pub corrupt_records: u64,
    /// Restarts where the store did not open (target 0).
    pub open_failures: u64,
    /// Sessions in the store at the end, each loaded and checked.
    pub final_records: u64,
    /// Wall time of the campaign, seconds.
    pub seconds: f64,
    /// Problems, first ones only.
    pub problems: Vec<String>,
}

impl CrashReport {
    fn problem(&mut self, text: String) {
        if self.problems.len() < 20 {
            self.problems.push(text);
        }
    }

    /// Whether the campaign met its targets.
    pub fn passed(&self) -> bool {
        self.lost_writes == 0 && self.corrupt_records == 0 && self.open_failures == 0
    }
}

/// A small random-number generator (xorshift), seeded from the clock: kill moments only
/// need to differ, not to be unpredictable.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One writer run: starts it, lets it write for a random time after it is ready, kills it
/// with SIGKILL; returns the acknowledged steps and the highest acknowledged counter.
fn kill_one_writer(
    exe: &Path,
    store: DiskStore,
    dir: &Path,
    run: u64,
    after: Duration,
) -> Result<(Vec<u64>, Option<u64>), String> {
    let mut child = Command::new(exe)
        .arg("crash-writer")
        .arg(format!("{store:?}").to_lowercase())
        .arg(dir)
        .arg(run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start the writer: {e}"))?;
    let stdout = child.stdout.take().ok_or("no writer stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    // Wait for "ready" (the store is open), then let it write for `after`.
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => lines.push(line),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the writer never became ready".into());
        }
    }
    std::thread::sleep(after);
    child.kill().map_err(|e| format!("kill: {e}"))?; // SIGKILL on Unix
    let _ = child.wait();
    let _ = reader.join();
    lines.extend(rx.try_iter());
    let mut steps = Vec::new();
    let mut counter = None;
    for line in lines {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["insert", r, step] if r.parse() == Ok(run) => {
                steps.push(step.parse().map_err(|_| format!("bad ack {line:?}"))?)
            }
            ["counter", n] => counter = Some(n.parse().map_err(|_| format!("bad ack {line:?}"))?),
            ["ready"] => {}
            _ => return Err(format!("unexpected writer output {line:?}")),
        }
    }
    Ok((steps, counter))
}

/// Every session in the store, loaded one by one: how many, and how many failed to load.
async fn scan(store: &Arc<dyn SessionStore>) -> Result<(u64, Vec<String>), StoreError> {
    let mut query = ListQuery {
        limit: 1000,
        ..ListQuery::default()
    };
    let mut seen = 0;
    let mut bad = Vec::new();
    loop {
        let page = store.list_sessions(&query).await?;
        if !query.advance(&page) {
            return Ok((seen, bad));
        }
        for entry in &page {
            seen += 1;
            match store.load(&entry.key).await {
                Ok(Some(record)) if record == entry.record || entry.key == counter_key() => {}
                other => bad.push(format!("{}: {other:?}", entry.key.handle())),
            }
        }
    }
}

/// Checks SQLite's own consistency check and every session file's decoding.
async fn check_at_rest(store: DiskStore, dir: &Path) -> Vec<String> {
    match store {
        DiskStore::Sqlite => {
            let url = format!("sqlite://{}", dir.join("sessions.db").display());
            let check = async {
                let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
                sqlx::query_scalar::<_, String>("PRAGMA integrity_check")
                    .fetch_one(&mut c)
                    .await
            };
            match check.await {
                Ok(answer) if answer == "ok" => Vec::new(),
                Ok(answer) => vec![format!("integrity_check: {answer}")],
                Err(e) => vec![format!("integrity_check failed: {e}")],
            }
        }
        DiskStore::File => {
            let mut bad = Vec::new();
            if let Ok(entries) = std::fs::read_dir(dir.join("sessions")) {
                for entry in entries.flatten() {
                    let ok = std::fs::read(entry.path())
                        .ok()
                        .is_some_and(|b| serde_json::from_slice::<Record>(&b).is_ok());
                    if !ok {
                        bad.push(format!("torn session file {:?}", entry.file_name()));
                    }
                }
            }
            bad
        }
    }
}

/// Runs `kills` writer processes on a store in `dir` (a fresh directory if `None`), each
/// killed after a random 0–`max_write_ms` ms of writing, and checks the store after every
/// kill. A full scan of every record runs every `scan_every` kills and at the end.
pub async fn campaign(
    exe: &Path,
    store: DiskStore,
    dir: Option<PathBuf>,
    kills: u64,
    max_write_ms: u64,
    scan_every: u64,
) -> CrashReport {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let dir = dir.unwrap_or_else(|| temp.path().to_owned());
    let started = Instant::now();
    let mut report = CrashReport {
        store: Some(store),
        ..CrashReport::default()
    };
    let mut rng = Rng::new();
    let mut acked: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut counter_acked = 0u64;
    for run in 0..kills {
        let after = Duration::from_millis(rng.below(max_write_ms + 1));
        let (steps, counter) = match kill_one_writer(exe, store, &dir, run, after) {
            Ok(result) => result,
            Err(e) => {
                report.open_failures += 1;
                report.problem(format!("run {run}: {e}"));
                continue;
            }
        };
        report.kills += 1;
        report.acked_writes += steps.len() as u64 + u64::from(counter.is_some());
        if let Some(n) = counter {
            counter_acked = counter_acked.max(n);
        }
        // The restart: open the store afresh, as the next process would.
        let reopened = match open(store, &dir).await {
            Ok(s) => s,
            Err(e) => {
                report.open_failures += 1;
                report.problem(format!("run {run}: the store does not open: {e}"));
                continue;
            }
        };
        for &step in &steps {
            match reopened.load(&step_key(run, step)).await {
                Ok(Some(r)) if r.data.get("step").and_then(|s| s.as_u64()) == Some(step) => {}
                Ok(other) => {
                    report.lost_writes += 1;
                    report.problem(format!(
                        "run {run} step {step}: acknowledged, now {other:?}"
                    ));
                }
                Err(e) => {
                    report.corrupt_records += 1;
                    report.problem(format!("run {run} step {step}: {e}"));
                }
            }
        }
        acked.insert(run, steps);
        match reopened.load(&counter_key()).await {
            Ok(Some(r)) => {
                let n = r.data.get("n").and_then(|n| n.as_u64()).unwrap_or(0);
                if n < counter_acked {
                    report.lost_writes += counter_acked - n;
                    report.problem(format!("counter {n} < acknowledged {counter_acked}"));
                }
                counter_acked = counter_acked.max(n);
            }
            other => {
                report.lost_writes += 1;
                report.problem(format!("counter session: {other:?}"));
            }
        }
        let last = run + 1 == kills;
        if last || (scan_every > 0 && (run + 1) % scan_every == 0) {
            for problem in check_at_rest(store, &dir).await {
                report.corrupt_records += 1;
                report.problem(format!("run {run}: {problem}"));
            }
            match scan(&reopened).await {
                Ok((seen, bad)) => {
                    report.final_records = seen;
                    for problem in bad {
                        report.corrupt_records += 1;
                        report.problem(format!("run {run}: {problem}"));
                    }
                }
                Err(e) => {
                    report.corrupt_records += 1;
                    report.problem(format!("run {run}: listing failed: {e}"));
                }
            }
            if last {
                // Every write acknowledged by any run is still there at the end.
                for (&r, steps) in &acked {
                    for &step in steps {
                        if !matches!(reopened.load(&step_key(r, step)).await, Ok(Some(_))) {
                            report.lost_writes += 1;
                            report.problem(format!("run {r} step {step} gone at the end"));
                        }
                    }
                }
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}
