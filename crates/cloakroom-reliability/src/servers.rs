//! Private database servers on spare loopback ports, for outages: started in a temporary
//! directory, killed (SIGKILL to the whole process group, as a crash) or frozen (SIGSTOP,
//! as a hung server), and brought back. The machine's shared servers are never touched.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `redis-server`, append-only file fsynced on every write (so acknowledged writes
    /// survive a crash of the server, and only the library is measured).
    Redis,
    /// PostgreSQL (`initdb` + `postgres`, run as the `postgres` user).
    Postgres,
    /// MariaDB (`mariadb-install-db` + `mariadbd`).
    Mysql,
    /// `memcached`. It keeps nothing across a restart, so its outage is a freeze.
    Memcached,
}

/// Why a server could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A program is missing or failed.
    #[error("{what}: {detail} (install it with scripts/services.sh)")]
    Start {
        /// What was being done.
        what: String,
        /// What went wrong.
        detail: String,
    },
}

fn start_error(what: impl Into<String>, detail: impl ToString) -> ServerError {
    ServerError::Start {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running private server.
pub struct Server {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    frozen: bool,
}

fn postgres_bin(program: &str) -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(program)))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn user_ids(user: &str) -> Result<(u32, u32), ServerError> {
    let id = |flag: &str| -> Result<u32, ServerError> {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .map_err(|e| start_error(format!("id {flag} {user}"), e))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| start_error(format!("id {flag} {user}"), "no such user"))
    };
    Ok((id("-u")?, id("-g")?))
}

fn run(command: &mut Command, what: &str) -> Result<(), ServerError> {
    let out = command.output().map_err(|e| start_error(what, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(start_error(what, String::from_utf8_lossy(&out.stderr)))
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), ServerError> {
    run(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(path),
        "chown",
    )
}

impl Server {
    /// Initialises and starts a server of `kind` in `dir` (a fresh directory).
    pub async fn start(kind: Kind, dir: &Path) -> Result<Self, ServerError> {
        let mut server = Self {
            kind,
            port: free_port(),
            dir: dir.to_owned(),
            child: None,
            frozen: false,
        };
        server.init()?;
        server.restart().await?;
        if kind == Kind::Mysql {
            let admin = format!("mysql://root@127.0.0.1:{}/mysql", server.port);
            let mut connection = <sqlx::MySqlConnection as sqlx::Connection>::connect(&admin)
                .await
                .map_err(|e| start_error("connect to the private MariaDB", e))?;
            sqlx::query("CREATE DATABASE IF NOT EXISTS test")
                .execute(&mut connection)
                .await
                .map_err(|e| start_error("create database test", e))?;
        }
        Ok(server)
    }

    /// The URL of the server for the store.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            Kind::Mysql => format!("mysql://root@127.0.0.1:{}/test", self.port),
            Kind::Memcached => format!("127.0.0.1:{}", self.port),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init(&self) -> Result<(), ServerError> {
        let data = self.data();
        match self.kind {
            Kind::Redis | Kind::Memcached => {
                std::fs::create_dir_all(&data).map_err(|e| start_error("mkdir", e))
            }
            Kind::Postgres => {
                let initdb = postgres_bin("initdb")
                    .ok_or_else(|| start_error("find initdb", "not installed"))?;
                let (uid, gid) = user_ids("postgres")?;
                chown_tree(&self.dir, uid, gid)?;
                run(
                    Command::new(initdb)
                        .uid(uid)
                        .gid(gid)
                        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                        .arg(&data),
                    "initdb",
                )
            }
            Kind::Mysql => run(
                Command::new("mariadb-install-db")
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .args([
                        "--user=root",
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db",
                    ]),
                "mariadb-install-db",
            ),
        }
    }

    fn command(&self) -> Result<Command, ServerError> {
        let port = self.port.to_string();
        let data = self.data();
        let mut command = match self.kind {
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "yes", "--appendfsync", "always"])
                    .arg("--dir")
                    .arg(&data);
                c
            }
            Kind::Memcached => {
                let mut c = Command::new("memcached");
                c.args(["-l", "127.0.0.1", "-p", &port, "-U", "0", "-u", "root"]);
                c
            }
            Kind::Postgres => {
                let postgres = postgres_bin("postgres")
                    .ok_or_else(|| start_error("find postgres", "not installed"))?;
                let (uid, gid) = user_ids("postgres")?;
                let mut c = Command::new(postgres);
                c.uid(uid)
                    .gid(gid)
                    .arg("-D")
                    .arg(&data)
                    .args(["-p", &port, "-c", "listen_addresses=127.0.0.1"])
                    .arg("-k")
                    .arg(&self.dir)
                    .args(["-c", "fsync=on", "-c", "max_connections=100"]);
                c
            }
            Kind::Mysql => {
                let mut c = Command::new("mariadbd");
                c.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!(
                        "--socket={}",
                        self.dir.join("mysqld.sock").display()
                    ))
                    .arg(format!("--port={port}"))
                    .args(["--bind-address=127.0.0.1", "--user=root", "--skip-log-bin"])
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.join("mysqld.pid").display()
                    ));
                c
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join(format!("{:?}.log", self.kind)))
                    .map_err(|e| start_error("server log", e))?,
            ))
            // Its own process group, so a kill takes every process of the server.
            .process_group(0);
        Ok(command)
    }

    /// (Re)starts the server and waits until it accepts connections.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        let child = self
            .command()?
            .spawn()
            .map_err(|e| start_error(format!("start {:?}", self.kind), e))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60)).await
    }

    /// Waits until the server answers a real request.
    async fn wait_ready(&mut self, limit: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + limit;
        loop {
            if self.answers().await {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(start_error(
                    format!("{:?} exited ({status})", self.kind),
                    format!("see {}", self.dir.display()),
                ));
            }
            if Instant::now() > deadline {
                return Err(start_error(format!("{:?}", self.kind), "not ready in time"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers(&self) -> bool {
        let attempt = async {
            match self.kind {
                Kind::Redis | Kind::Memcached => {
                    tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                        .await
                        .is_ok()
                }
                Kind::Postgres => <sqlx::PgConnection as sqlx::Connection>::connect(&self.url())
                    .await
                    .is_ok(),
                Kind::Mysql => {
                    let url = format!("mysql://root@127.0.0.1:{}/mysql", self.port);
                    <sqlx::MySqlConnection as sqlx::Connection>::connect(&url)
                        .await
                        .is_ok()
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .unwrap_or(false)
    }

    fn signal_group(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, "--", &format!("-{}", child.id())])
                .status();
        }
    }

    /// Crashes the server: SIGKILL to all its processes, then reaps it.
    pub fn kill(&mut self) {
        if self.frozen {
            self.thaw();
        }
        self.signal_group("-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        if self.kind == Kind::Postgres {
            // Backends of a killed postmaster exit on their own; wait for the lock file's
            // owner to be gone so the restart does not refuse to start.
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Hangs the server: SIGSTOP to all its processes (connections stay open, nothing
    /// answers).
    pub fn freeze(&mut self) {
        self.signal_group("-STOP");
        self.frozen = true;
    }

    /// Resumes a frozen server.
    pub fn thaw(&mut self) {
        self.signal_group("-CONT");
        self.frozen = false;
    }

    /// Resumes a frozen server or restarts a killed one; waits until it answers.
    pub async fn bring_back(&mut self) -> Result<(), ServerError> {
        if self.frozen {
            self.thaw();
            self.wait_ready(Duration::from_secs(30)).await
        } else {
            self.restart().await
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
