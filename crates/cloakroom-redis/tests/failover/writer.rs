//! Load during a kill: one writer per session, and what they saw, shard by shard.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloakroom::{Record, SessionStore, StoreKey};
use cloakroom_redis::RedisStore;

use super::cluster::ScriptedCluster;

/// How long the lost shard has, after a kill, for every session on it to write again
/// before the kill's outcome is taken as it is.
const RECOVERY_WINDOW: Duration = Duration::from_secs(20);

/// What one writer saw: acknowledged writes later missing, and when its session worked.
#[derive(Default)]
struct Tally {
    lost: u64,
    acknowledged: u64,
    failures_after_kill: u64,
    /// First success after a failure that followed the kill.
    recovered_at: Option<Instant>,
    successes_after_kill: u64,
    events: Vec<(Instant, bool)>,
    last_error: Option<String>,
    /// The longest any one store call took, answered or failed.
    slowest: Duration,
}

impl Tally {
    /// Runs one store call, keeping the longest.
    async fn timed<T>(&mut self, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.slowest = self.slowest.max(started.elapsed());
        result
    }
}

/// The value of the counter the writer keeps in `record`.
fn counter(record: &Record) -> u64 {
    record.data.get("n").and_then(|v| v.as_u64()).unwrap_or(0)
}

/// What the kill is compared with, shared by the writers.
struct Shared {
    stop: AtomicBool,
    killed_at: Mutex<Option<Instant>>,
    /// Writers whose session wrote again after failing since the kill.
    recovered: AtomicUsize,
}

/// Writes `n = 1, 2, 3...` into one session as fast as it can. After any failure it
/// reloads: a value below the last acknowledged one is a lost acknowledged write.
async fn writer(store: RedisStore, key: StoreKey, shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let mut current = store.load(&key).await.unwrap().unwrap();
    let mut acked: u64 = 0;
    let mut failed_after_kill = false;
    while !shared.stop.load(Ordering::SeqCst) {
        let next = acked + 1;
        let mut record = current.clone();
        record.data.insert("n".into(), next.into());
        let outcome = tally.timed(store.update(&key, &record)).await;
        // Judged when the answer comes: a write in flight at the kill belongs to after it.
        let killed = shared.killed_at.lock().unwrap().is_some();
        tally.events.push((Instant::now(), outcome.is_ok()));
        if let Err(error) = outcome {
            tally.last_error = Some(error.to_string());
            if tally.events.iter().filter(|e| !e.1).count() == 1 {
                eprintln!("first write error: {error}");
            }
            if killed {
                tally.failures_after_kill += 1;
                failed_after_kill = true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            // The write may or may not have landed; what the store holds now decides.
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return tally;
                }
                match tally.timed(store.load(&key)).await {
                    Ok(Some(found)) => {
                        tally.lost += acked.saturating_sub(counter(&found));
                        acked = counter(&found);
                        current = found;
                        break;
                    }
                    Ok(None) => {
                        tally.lost += acked;
                        return tally;
                    }
                    Err(error) => {
                        tally.last_error = Some(format!("load: {error}"));
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                }
            }
            continue;
        }
        acked = next;
        tally.acknowledged += 1;
        record.version += 1;
        current = record;
        if killed {
            tally.successes_after_kill += 1;
            if failed_after_kill && tally.recovered_at.is_none() {
                tally.recovered_at = Some(Instant::now());
                shared.recovered.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    // A last read after the dust settles: nothing acknowledged may be missing.
    if let Ok(Some(found)) = store.load(&key).await {
        tally.lost += acked.saturating_sub(counter(&found));
    }
    tally
}

/// What the writers saw after a kill.
#[derive(Debug, Default)]
pub struct Outcome {
    /// When the first and the last session on the lost shard wrote again.
    pub first_back: Option<Duration>,
    pub last_back: Option<Duration>,
    /// Sessions on the lost shard that wrote again, of all there.
    pub back: usize,
    pub on_victim: usize,
    pub lost: u64,
    pub acknowledged: u64,
    pub other_failures: u64,
    pub other_successes: u64,
    /// The longest any one store call took.
    pub slowest: Duration,
}

/// Kills the primary `victim` while writers hammer `sessions` (each with its primary's
/// port). With `await_recovery`, runs until every writer on the lost shard wrote again
/// (or the recovery window ends), then a second more, and prints a per-second timeline;
/// without, runs 5 s after the kill.
pub async fn kill_under_load(
    cluster: &ScriptedCluster,
    store: &RedisStore,
    sessions: &[(StoreKey, u16)],
    victim: u16,
    await_recovery: bool,
) -> Outcome {
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        killed_at: Mutex::new(None),
        recovered: AtomicUsize::new(0),
    });
    let on_victim = if await_recovery {
        sessions.iter().filter(|(_, p)| *p == victim).count()
    } else {
        0
    };
    let writers: Vec<_> = sessions
        .iter()
        .map(|(key, primary)| {
            let task = tokio::spawn(writer(store.clone(), *key, shared.clone()));
            (*primary, task)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Marked first: a write failing because of the kill must count as after it.
    let t0 = Instant::now();
    *shared.killed_at.lock().unwrap() = Some(t0);
    cluster.kill(victim);
    while shared.recovered.load(Ordering::SeqCst) < on_victim && t0.elapsed() < RECOVERY_WINDOW {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settle = if await_recovery { 1000 } else { 5000 };
    tokio::time::sleep(Duration::from_millis(settle)).await;
    shared.stop.store(true, Ordering::SeqCst);

    let mut outcome = Outcome::default();
    // (on the lost shard, second after the kill) -> (writes ok, writes failed)
    let mut timeline = BTreeMap::new();
    for (primary, task) in writers {
        let tally = task.await.unwrap();
        let lost_shard = primary == victim;
        for (at, ok) in &tally.events {
            let second = at.saturating_duration_since(t0).as_secs() + u64::from(*at >= t0);
            let row = timeline.entry((lost_shard, second)).or_insert((0u32, 0u32));
            if *ok {
                row.0 += 1;
            } else {
                row.1 += 1;
            }
        }
        outcome.lost += tally.lost;
        outcome.acknowledged += tally.acknowledged;
        outcome.slowest = outcome.slowest.max(tally.slowest);
        if !lost_shard {
            outcome.other_failures += tally.failures_after_kill;
            outcome.other_successes += tally.successes_after_kill;
            continue;
        }
        outcome.on_victim += 1;
        match tally.recovered_at {
            Some(at) => {
                let after = at - t0;
                outcome.back += 1;
                outcome.first_back = Some(outcome.first_back.map_or(after, |d| d.min(after)));
                outcome.last_back = Some(outcome.last_back.map_or(after, |d| d.max(after)));
            }
            None if await_recovery => eprintln!(
                "a writer on the lost shard did not recover: {} failures after the kill, last error {:?}",
                tally.failures_after_kill, tally.last_error
            ),
            None => {}
        }
    }
    if await_recovery {
        for ((lost_shard, second), (ok, failed)) in &timeline {
            eprintln!("  lost shard: {lost_shard}, second {second} after the kill: {ok} writes ok, {failed} failed");
        }
    }
    outcome
}
