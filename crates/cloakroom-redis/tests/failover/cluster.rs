//! The cluster fixture: a Redis Cluster started by `scripts/redis-cluster.sh` on spare
//! ports, a store on it holding sessions, and what to print when they do not come back.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cloakroom::{SessionId, SessionStore, StoreKey};
use cloakroom_redis::{RedisConfig, RedisStore};

use super::{info_replication, query, record, support};

/// How many sessions the fixture writes: about ten on each primary.
const SESSIONS: usize = 30;

/// The cluster tests take turns: each runs six nodes and thirty writers, and a kill's
/// recovery window is measured, so two at once on a small machine would skew it.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The store's settings in these tests: a 1-s operation timeout, so a failover's lost
/// shard fails fast and recovery is measured in seconds.
pub fn config() -> RedisConfig {
    RedisConfig {
        operation_timeout: Duration::from_millis(1000),
        ..RedisConfig::default()
    }
}

/// A started cluster, a store connected to it, and sessions written through it, each with
/// its slot. Holds the turn of the cluster tests until dropped (the cluster stops first).
pub struct Fixture {
    pub cluster: ScriptedCluster,
    pub store: RedisStore,
    pub sessions: Vec<(StoreKey, u16)>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Fixture {
    /// Starts it, or says why not and gives `None` (a skip, which fails the test when
    /// `CLOAKROOM_REQUIRE_SERVICES` is set).
    pub async fn start() -> Option<Self> {
        if !support::redis_server_installed() {
            support::skip("redis-server is not installed: run scripts/services.sh");
            return None;
        }
        let turn = ONE_CLUSTER_AT_A_TIME.lock().await;
        let cluster = match ScriptedCluster::start() {
            Ok(cluster) => cluster,
            Err(error) => {
                support::skip(&error);
                return None;
            }
        };
        let urls = cluster.urls();
        let store = RedisStore::connect_cluster(&urls, config()).await.unwrap();
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
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
        Some(Self {
            cluster,
            store,
            sessions,
            _turn: turn,
        })
    }

    /// The primaries' ports, in order, and each session with the port of the primary
    /// that holds it now.
    pub async fn placed(&self) -> (Vec<u16>, Vec<(StoreKey, u16)>) {
        let primaries = self.cluster.primaries().await;
        let mut ports: Vec<u16> = primaries.keys().copied().collect();
        ports.sort_unstable();
        let placed = self
            .sessions
            .iter()
            .map(|(key, slot)| {
                let primary = primaries
                    .iter()
                    .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(slot)))
                    .map(|(port, _)| *port)
                    .expect("every slot has a primary");
                (*key, primary)
            })
            .collect();
        (ports, placed)
    }
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
pub struct ScriptedCluster {
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

    /// The URLs of its six nodes.
    pub fn urls(&self) -> Vec<&str> {
        self.urls.iter().map(String::as_str).collect()
    }

    /// Kills a node outright (no shutdown, no last save), like a crashed machine.
    pub fn kill(&self, port: u16) {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("{port}.pid"))).unwrap();
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Starts a killed node again; it rejoins as a replica of the primary that replaced it.
    pub async fn restart(&self, port: u16) {
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

    /// Primary port -> its slot ranges, as the first node sees it (alive: every killed
    /// node is restarted before this is asked again).
    pub async fn primaries(&self) -> HashMap<u16, Vec<(u16, u16)>> {
        let nodes: String = query(&self.urls[0], redis::cmd("CLUSTER").arg("NODES")).await;
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

    /// Says, when sessions did not come back, whether the nodes answer (and how each sees
    /// the cluster), whether `store` and a fresh store can load every session, and how
    /// busy this process is.
    pub async fn diagnose(&self, store: &RedisStore, sessions: &[(StoreKey, u16)]) {
        let before = cpu_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        eprintln!(
            "diagnosis: this process used {} clock ticks of CPU in 1 s",
            cpu_ticks() - before
        );
        for url in &self.urls {
            let answer = tokio::time::timeout(Duration::from_secs(1), async {
                let client = redis::Client::open(url.as_str()).ok()?;
                let mut connection = client.get_multiplexed_async_connection().await.ok()?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                Some((info, nodes))
            })
            .await;
            match answer {
                Ok(Some((info, nodes))) => eprintln!(
                    "diagnosis: node {url}: {}; CLUSTER NODES:\n{nodes}",
                    info.lines().next().unwrap_or_default()
                ),
                Ok(None) => eprintln!("diagnosis: node {url}: no connection"),
                Err(_) => eprintln!("diagnosis: node {url}: no answer within 1 s"),
            }
        }
        let fresh = RedisStore::connect_cluster(&self.urls(), config()).await;
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
}

impl Drop for ScriptedCluster {
    fn drop(&mut self) {
        let _ = Command::new(cluster_script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// CPU time this process used so far, in clock ticks (utime + stime, fields 14 and 15 of
/// `/proc/self/stat`).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0)
}
