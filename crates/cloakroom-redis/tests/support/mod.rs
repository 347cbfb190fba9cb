//! Test support: the shared Redis, private `redis-server` instances on spare loopback ports
//! (for tests that stop a server), and a real 3-master Redis Cluster.
// Each test binary uses a part of this module.
#![allow(dead_code, unused_imports)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use cloakroom::testing::skip;

pub use cloakroom_redis::testing::{clean, reachable_redis, redis_url};

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    cloakroom_redis::testing::unique_prefix("ct")
}

/// Two free ports `p` and `p + 10000` (a cluster node needs its bus port too).
pub fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 50000 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// Runs one command (`args`, the name first) on the node at `url`, on a connection of its
/// own: for a test's look at a server behind the store's back.
pub async fn command<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let (name, args) = args.split_first().expect("a command name");
    redis::cmd(name)
        .arg(args)
        .query_async(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("{name} on {url}: {error}"))
}

/// Whether `redis-server` is installed, for the tests that start their own.
pub fn redis_server_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
}

/// A private `redis-server`, stopped when dropped.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    dir: std::path::PathBuf,
}

impl Server {
    /// A server of the test's own in a new directory (keep the directory as long as the
    /// server), or `None` (reported by [`skip`]) when `redis-server` is missing.
    pub async fn private() -> Option<(tempfile::TempDir, Self)> {
        if !redis_server_installed() {
            skip("redis-server is not installed: run scripts/services.sh");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = Self::start(free_port_pair(), dir.path(), &[]).await;
        Some((dir, server))
    }

    pub async fn start(port: u16, dir: &Path, extra: &[&str]) -> Self {
        let mut server = Self {
            port,
            child: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir: dir.to_owned(),
        };
        server.restart().await;
        server
    }

    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real 3-master Redis Cluster on loopback, stopped when dropped.
pub struct Cluster {
    pub nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A new cluster, or `None` (reported by [`skip`]) when `redis-server` is missing.
    pub async fn start_if_installed() -> Option<Self> {
        if !redis_server_installed() {
            skip("redis-server is not installed: run scripts/services.sh");
            return None;
        }
        Some(Self::start().await)
    }

    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port_pair();
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let conf = format!("nodes-{port}.conf");
            nodes.push(
                Server::start(
                    port,
                    &node_dir,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--cluster-node-timeout",
                        "2000",
                    ],
                )
                .await,
            );
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            output.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info: String = command(&node.url(), &["CLUSTER", "INFO"]).await;
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach state ok"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Self { nodes, _dir: dir }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }
}
