//! Replication and failover: the opt-in `WAIT` on a primary with a replica, and a Redis
//! Cluster (three primaries, a replica each, started by `scripts/redis-cluster.sh`) losing
//! a primary under load. Every server here is private to the test, on spare ports.

mod support;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::record::now;
use cloakroom::{InsertError, Record, SessionId, SessionStore, StoreError, StoreKey};
use cloakroom_redis::{NotReplicated, RedisConfig, RedisStore};

fn record() -> Record {
    let t = now();
    Record::new(
        t,
        Some(t + Duration::from_secs(600)),
        Some(t + Duration::from_secs(3600)),
    )
}

async fn query<T: redis::FromRedisValue>(url: &str, command: &redis::Cmd) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    command.query_async(&mut connection).await.unwrap()
}

async fn info_replication(url: &str) -> String {
    query(url, redis::cmd("INFO").arg("replication")).await
}

fn not_replicated(error: &StoreError) -> Option<&NotReplicated> {
    match error {
        StoreError::Unavailable(source) => source.downcast_ref::<NotReplicated>(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_reports_unacknowledged_writes_as_a_typed_error() {
    if !support::redis_server_installed() {
        return support::skip("redis-server is not installed: run scripts/services.sh");
    }
    let (primary_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = support::Server::start(support::free_port_pair(), primary_dir.path(), &[]).await;
    let primary_port = primary.port.to_string();
    let mut replica = support::Server::start(
        support::free_port_pair(),
        replica_dir.path(),
        &["--replicaof", "127.0.0.1", &primary_port],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !info_replication(&replica.url())
        .await
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica did not sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let store = RedisStore::connect(&primary.url()).await.unwrap();
    let durable = store
        .clone()
        .with_wait_for_replicas(1, Duration::from_millis(500));
    let key = SessionId::generate().store_key();
    durable
        .insert(&key, &record())
        .await
        .expect("one replica acknowledges");
    let on_replica: i64 = query(
        &replica.url(),
        redis::cmd("EXISTS").arg(format!("cloakroom:s:{{{}}}", key.to_hex())),
    )
    .await;
    assert_eq!(on_replica, 1, "acknowledged means on the replica");

    let greedy = store.with_wait_for_replicas(2, Duration::from_millis(200));
    match greedy
        .insert(&SessionId::generate().store_key(), &record())
        .await
    {
        Err(InsertError::Store(error)) => {
            let detail = not_replicated(&error).expect("a NotReplicated source");
            assert_eq!((detail.acknowledged, detail.required), (1, 2));
        }
        other => panic!("two replicas required, one exists: {other:?}"),
    }

    replica.stop();
    let started = Instant::now();
    match durable.delete(&key).await {
        Err(error) => {
            let detail = not_replicated(&error).expect("a NotReplicated source");
            assert_eq!(detail.acknowledged, 0);
        }
        Ok(_) => panic!("a delete with its replica gone was reported durable"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Six free loopback ports in a row whose cluster bus ports (+10000) are free too.
fn free_port_run() -> u16 {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    loop {
        let first = support::free_port_pair();
        if !(20000..=40000).contains(&first) {
            continue;
        }
        if (first..first + 6).all(|p| free(p) && free(p + 10000)) {
            return first;
        }
    }
}

fn cluster_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-cluster.sh")
}

/// The cluster started by the script, stopped when dropped.
struct ScriptedCluster {
    dir: tempfile::TempDir,
    urls: Vec<String>,
}

impl ScriptedCluster {
    fn start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new(cluster_script())
            .arg("start")
            .arg(dir.path())
            .arg(free_port_run().to_string())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", cluster_script().display()))?;
        let cluster = Self {
            urls: String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect(),
            dir,
        };
        if !output.status.success() || cluster.urls.len() != 6 {
            return Err(format!(
                "scripts/redis-cluster.sh start failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(cluster)
    }

    /// Kills a node outright (no shutdown, no last save), like a crashed machine.
    fn kill(&self, port: u16) {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("{port}.pid"))).unwrap();
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Starts a killed node again; it rejoins as a replica of the primary that replaced it.
    async fn restart(&self, port: u16) {
        let output = Command::new(cluster_script())
            .arg("restart")
            .arg(self.dir.path())
            .arg(port.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "scripts/redis-cluster.sh restart failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Back when it replicates its new primary and every node sees the cluster whole.
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let replication = info_replication(&url).await;
            let mut ready =
                replication.contains("role:slave") && replication.contains("master_link_status:up");
            for node in &self.urls {
                let info: String = query(node, redis::cmd("CLUSTER").arg("INFO")).await;
                ready &= info.contains("cluster_state:ok");
            }
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {port} did not rejoin as a replica"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Primary port -> its slot ranges, as the first live node sees it.
    async fn primaries(&self, alive: &str) -> HashMap<u16, Vec<(u16, u16)>> {
        let nodes: String = query(alive, redis::cmd("CLUSTER").arg("NODES")).await;
        let mut primaries = HashMap::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
            let ranges = fields[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (r.parse().unwrap(), r.parse().unwrap()),
                })
                .collect();
            primaries.insert(port, ranges);
        }
        primaries
    }
}

impl Drop for ScriptedCluster {
    fn drop(&mut self) {
        let _ = Command::new(cluster_script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

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
}

/// Writes `n = 1, 2, 3...` into one session as fast as it can. After any failure it
/// reloads: a value below the last acknowledged one is a lost acknowledged write.
async fn writer(
    store: RedisStore,
    key: StoreKey,
    stop: Arc<AtomicBool>,
    killed_at: Arc<std::sync::Mutex<Option<Instant>>>,
    recovered: Arc<AtomicUsize>,
) -> Tally {
    let mut tally = Tally::default();
    let mut current = store.load(&key).await.unwrap().unwrap();
    let mut acked: u64 = 0;
    let mut failed_after_kill = false;
    while !stop.load(Ordering::SeqCst) {
        let next = acked + 1;
        let mut record = current.clone();
        record.data.insert("n".into(), next.into());
        let outcome = store.update(&key, &record, current.version).await;
        // Judged when the answer comes: a write in flight at the kill belongs to after it.
        let killed = *killed_at.lock().unwrap();
        match outcome {
            Ok(()) => {
                acked = next;
                tally.acknowledged += 1;
                tally.events.push((Instant::now(), true));
                record.version += 1;
                current = record;
                if killed.is_some() {
                    tally.successes_after_kill += 1;
                    if failed_after_kill && tally.recovered_at.is_none() {
                        tally.recovered_at = Some(Instant::now());
                        recovered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            Err(error) => {
                tally.events.push((Instant::now(), false));
                tally.last_error = Some(error.to_string());
                if tally.events.iter().filter(|e| !e.1).count() == 1 {
                    eprintln!("first write error: {error}");
                }
                if killed.is_some() {
                    tally.failures_after_kill += 1;
                    failed_after_kill = true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                // The write may or may not have landed; what the store holds now decides.
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return tally;
                    }
                    match store.load(&key).await {
                        Ok(Some(found)) => {
                            let n = found.data.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
                            tally.lost += acked.saturating_sub(n);
                            acked = n;
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
            }
        }
    }
    // A last read after the dust settles: nothing acknowledged may be missing.
    if let Ok(Some(found)) = store.load(&key).await {
        let n = found.data.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
        tally.lost += acked.saturating_sub(n);
    }
    tally
}

struct Outcome {
    /// When the first and the last session on the lost shard wrote again.
    first_back: Option<Duration>,
    last_back: Option<Duration>,
    /// Sessions on the lost shard that wrote again, of all there.
    back: usize,
    on_victim: usize,
    lost: u64,
    acknowledged: u64,
    other_failures: u64,
    other_successes: u64,
}

/// Kills the primary `victim` while writers hammer sessions on every shard.
async fn kill_under_load(
    cluster: &ScriptedCluster,
    store: &RedisStore,
    sessions: &[(StoreKey, u16)],
    victim: u16,
    await_recovery: bool,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at = Arc::new(std::sync::Mutex::new(None));
    let recovered = Arc::new(AtomicUsize::new(0));
    let on_victim = if await_recovery {
        sessions.iter().filter(|(_, p)| *p == victim).count()
    } else {
        0
    };
    let writers: Vec<_> = sessions
        .iter()
        .map(|(key, primary)| {
            let task = tokio::spawn(writer(
                store.clone(),
                *key,
                stop.clone(),
                killed_at.clone(),
                recovered.clone(),
            ));
            (*primary, task)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Marked first: a write failing because of the kill must count as after it.
    let t0 = Instant::now();
    *killed_at.lock().unwrap() = Some(t0);
    cluster.kill(victim);
    // Run until every writer on the lost shard has written again (or 20 s), then a little
    // more.
    while recovered.load(Ordering::SeqCst) < on_victim && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(if await_recovery {
        1000
    } else {
        5000
    }))
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut outcome = Outcome {
        first_back: None,
        last_back: None,
        back: 0,
        on_victim: 0,
        lost: 0,
        acknowledged: 0,
        other_failures: 0,
        other_successes: 0,
    };
    let mut timeline = std::collections::BTreeMap::new();
    for (primary, task) in writers {
        let tally = task.await.unwrap();
        outcome.lost += tally.lost;
        for (at, ok) in &tally.events {
            let second =
                at.saturating_duration_since(t0).as_secs() as usize + if *at < t0 { 0 } else { 1 };
            let row = timeline
                .entry((primary == victim, second))
                .or_insert((0u32, 0u32));
            if *ok {
                row.0 += 1
            } else {
                row.1 += 1
            }
        }
        outcome.acknowledged += tally.acknowledged;
        if await_recovery && primary == victim && tally.recovered_at.is_none() {
            eprintln!(
                "a writer on the lost shard did not recover: {} failures after the kill, last error {:?}",
                tally.failures_after_kill, tally.last_error
            );
        }
        if primary == victim {
            outcome.on_victim += 1;
            if let Some(at) = tally.recovered_at {
                let after = at - t0;
                outcome.back += 1;
                outcome.first_back = Some(outcome.first_back.map_or(after, |d| d.min(after)));
                outcome.last_back = Some(outcome.last_back.map_or(after, |d| d.max(after)));
            }
        } else {
            outcome.other_failures += tally.failures_after_kill;
            outcome.other_successes += tally.successes_after_kill;
        }
    }
    if await_recovery {
        for ((on_victim, second), (ok, failed)) in &timeline {
            eprintln!("  lost shard: {on_victim}, second {second} after the kill: {ok} writes ok, {failed} failed");
        }
    }
    outcome
}

/// The cluster tests take turns: each runs six nodes and thirty writers, and a kill's
/// recovery window is measured, so two at once on a small machine would skew it.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the failover test asserts when the lost shard never writes again.
const NOT_BACK: &str = "every session on the lost shard works again";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_primary_failover_under_load() {
    // redis-rs's cluster client still stalls now and then after a primary dies, the
    // connection rebuild notwithstanding (reliability/FINDINGS.md, finding 8, open): the
    // lost shard never writes again. That case alone gets one more run on a fresh cluster,
    // said loudly; any other failure, and a second stall, fail the test.
    let Err(failure) = tokio::spawn(failover_once()).await else {
        return;
    };
    let message = failure.into_panic();
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| message.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(message.contains(NOT_BACK), "{message}");
    eprintln!(
        "\n*****\nRETRYING the failover once: the cluster client stalled (finding 8)\n*****\n"
    );
    failover_once().await;
}

async fn failover_once() {
    if !support::redis_server_installed() {
        return support::skip("redis-server is not installed: run scripts/services.sh");
    }
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = match ScriptedCluster::start() {
        Ok(cluster) => cluster,
        Err(error) => return support::skip(&error),
    };
    let urls: Vec<&str> = cluster.urls.iter().map(String::as_str).collect();
    let config = RedisConfig {
        operation_timeout: Duration::from_millis(1000),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect_cluster(&urls, config).await.unwrap();
    let primaries = cluster.primaries(urls[0]).await;
    assert_eq!(primaries.len(), 3);

    let mut sessions = Vec::new();
    for _ in 0..30 {
        let key = SessionId::generate().store_key();
        store.insert(&key, &record()).await.unwrap();
        let slot: u16 = query(
            urls[0],
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(format!("cloakroom:s:{{{}}}", key.to_hex())),
        )
        .await;
        let primary = primaries
            .iter()
            .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(port, _)| *port)
            .unwrap();
        sessions.push((key, primary));
    }
    let mut ports: Vec<u16> = primaries.keys().copied().collect();
    ports.sort_unstable();

    let plain = kill_under_load(&cluster, &store, &sessions, ports[0], true).await;
    eprintln!(
        "without WAIT: lost shard writing again after {:?} (first session) .. {:?} (last; {} of {} back), \
         {} of {} acknowledged writes lost, other shards {} ok / {} failed after the kill",
        plain.first_back, plain.last_back, plain.back, plain.on_victim,
        plain.lost, plain.acknowledged, plain.other_successes, plain.other_failures
    );
    assert_eq!(plain.back, plain.on_victim, "{NOT_BACK}");
    let failover = plain.last_back.unwrap();
    assert!(failover < Duration::from_secs(10), "{failover:?}");
    assert!(plain.other_successes > 100, "other shards kept working");

    // Another primary, which still has its replica; writes wait for it. Once its replica
    // is promoted, no replica is left to acknowledge, so that shard refuses writes (typed
    // NotReplicated) rather than acknowledging what a second failure would lose.
    let durable = store.with_wait_for_replicas(1, Duration::from_millis(300));
    let alive: Vec<(StoreKey, u16)> = sessions
        .iter()
        .copied()
        .filter(|(_, primary)| *primary != ports[0])
        .collect();
    let waited = kill_under_load(&cluster, &durable, &alive, ports[1], false).await;
    eprintln!(
        "with WAIT 1: {} of {} acknowledged writes lost, other shards {} ok / {} failed after the kill",
        waited.lost, waited.acknowledged, waited.other_successes, waited.other_failures
    );
    assert_eq!(
        waited.lost, 0,
        "a write a replica acknowledged survives its primary"
    );
    assert!(
        waited.other_successes > 100,
        "the untouched shard kept working"
    );
}

/// Where each session lives now: its primary's port, from its slot and `primaries`.
fn by_primary(
    sessions: &[(StoreKey, u16)],
    primaries: &HashMap<u16, Vec<(u16, u16)>>,
) -> Vec<(StoreKey, u16)> {
    sessions
        .iter()
        .map(|(key, slot)| {
            let primary = primaries
                .iter()
                .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(slot)))
                .map(|(port, _)| *port)
                .expect("every slot has a primary");
            (*key, primary)
        })
        .collect()
}

/// Finding 8: redis-rs's cluster client once stalled for good after a primary died, every
/// shard timing out. Primaries die one after another under load, each coming back as a
/// replica before the next kill, so each kill is another chance for the stall; every
/// session must write again within the window after each one, on one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "finding 8 is open: this fails about one run in ten; run it with --ignored"]
async fn cluster_recovers_from_repeated_primary_kills() {
    if !support::redis_server_installed() {
        return support::skip("redis-server is not installed: run scripts/services.sh");
    }
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // The store's and redis-rs's warnings (a rebuild started, failed or done; a node not
    // reached), with times, in the test's output (shown when it fails).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let cluster = match ScriptedCluster::start() {
        Ok(cluster) => cluster,
        Err(error) => return support::skip(&error),
    };
    let urls: Vec<&str> = cluster.urls.iter().map(String::as_str).collect();
    let config = RedisConfig {
        operation_timeout: Duration::from_millis(1000),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect_cluster(&urls, config).await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..30 {
        let key = SessionId::generate().store_key();
        store.insert(&key, &record()).await.unwrap();
        let slot: u16 = query(
            urls[0],
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(format!("cloakroom:s:{{{}}}", key.to_hex())),
        )
        .await;
        sessions.push((key, slot));
    }

    let kills = std::env::var("CLOAKROOM_FAILOVER_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4usize);
    for round in 0..kills {
        let primaries = cluster.primaries(urls[0]).await;
        assert_eq!(primaries.len(), 3, "round {round}: three primaries");
        let mut ports: Vec<u16> = primaries.keys().copied().collect();
        ports.sort_unstable();
        let victim = ports[round % ports.len()];
        let placed = by_primary(&sessions, &primaries);
        let outcome = kill_under_load(&cluster, &store, &placed, victim, true).await;
        if outcome.back < outcome.on_victim {
            diagnose(&cluster, &store, &urls, &placed).await;
        }
        eprintln!(
            "kill {} of {kills} ({victim}): lost shard writing again after {:?} .. {:?} ({} of {} back), \
             other shards {} ok / {} failed after the kill, {} acknowledged writes lost; \
             cluster connection rebuilt {} times so far",
            round + 1,
            outcome.first_back,
            outcome.last_back,
            outcome.back,
            outcome.on_victim,
            outcome.other_successes,
            outcome.other_failures,
            outcome.lost,
            store.cluster_rebuilds()
        );
        assert_eq!(
            outcome.back,
            outcome.on_victim,
            "kill {}: every session on the lost shard works again",
            round + 1
        );
        let last_back = outcome.last_back.unwrap_or_default();
        assert!(
            last_back < Duration::from_secs(10),
            "kill {}: the lost shard took {last_back:?}",
            round + 1
        );
        assert!(
            outcome.other_successes > 100,
            "kill {}: the other shards kept working",
            round + 1
        );
        cluster.restart(victim).await;
    }
}

/// Says, when sessions did not come back, whether the nodes answer, whether this store and
/// a fresh one can load every session, and how busy this process is.
async fn diagnose(
    cluster: &ScriptedCluster,
    store: &RedisStore,
    urls: &[&str],
    sessions: &[(StoreKey, u16)],
) {
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // utime and stime, in clock ticks (fields 14 and 15 of the file).
        fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0)
    };
    let before = cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "diagnosis: this process used {} clock ticks of CPU in 1 s",
        cpu() - before
    );
    for url in &cluster.urls {
        let answer = tokio::time::timeout(Duration::from_secs(1), async {
            let client = redis::Client::open(url.as_str()).ok()?;
            let mut connection = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async::<String>(&mut connection)
                .await
                .ok()
        })
        .await;
        let state = match answer {
            Ok(Some(info)) => info.lines().next().unwrap_or_default().to_owned(),
            Ok(None) => "no connection".to_owned(),
            Err(_) => "no answer within 1 s".to_owned(),
        };
        eprintln!("diagnosis: node {url}: {state}");
    }
    let fresh = RedisStore::connect_cluster(
        urls,
        RedisConfig {
            operation_timeout: Duration::from_millis(1000),
            ..RedisConfig::default()
        },
    )
    .await;
    for (name, store) in [("this store", Ok(store.clone())), ("a fresh store", fresh)] {
        let Ok(store) = store else {
            eprintln!("diagnosis: {name} could not connect");
            continue;
        };
        let mut loaded = 0;
        let mut errors = Vec::new();
        for (key, _) in sessions {
            match store.load(key).await {
                Ok(_) => loaded += 1,
                Err(error) => errors.push(error.to_string()),
            }
        }
        errors.dedup();
        eprintln!(
            "diagnosis: {name} loaded {loaded} of {} sessions; errors {errors:?}; rebuilt {} times",
            sessions.len(),
            store.cluster_rebuilds()
        );
    }
}
