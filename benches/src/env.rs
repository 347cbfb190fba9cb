//! Where the store servers are, and resetting them before a store's apps start.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The store servers and scratch space a run uses.
#[derive(Clone, Debug)]
pub struct Env {
    /// PostgreSQL (`CLOAKROOM_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
    pub postgres_url: String,
    /// Redis (`CLOAKROOM_BENCH_REDIS_URL`, default database 15 of `127.0.0.1:6379`, flushed
    /// before the apps of a measurement start, never while one runs).
    pub redis_url: String,
    /// Where SQLite files go.
    pub scratch: PathBuf,
    /// This process's claim on the Redis database, taken at the first flush and held
    /// until the process ends (shared by clones of this `Env`).
    redis_claim: Arc<OnceLock<File>>,
}

impl Env {
    /// Reads the environment; `scratch` holds the SQLite files.
    pub fn from_env(scratch: PathBuf) -> Self {
        Self {
            postgres_url: std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
            redis_url: std::env::var("CLOAKROOM_BENCH_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379/15".to_owned()),
            scratch,
            redis_claim: Arc::default(),
        }
    }

    /// The same environment with the servers reached through `proxy`'s ports (for
    /// counting round trips).
    pub fn through(&self, postgres_port: u16, redis_port: u16) -> Self {
        Self {
            postgres_url: replace_port(&self.postgres_url, postgres_port),
            redis_url: replace_port(&self.redis_url, redis_port),
            scratch: self.scratch.clone(),
            redis_claim: Arc::clone(&self.redis_claim),
        }
    }

    /// A fresh SQLite file for `name`.
    pub fn sqlite_path(&self, name: &str) -> PathBuf {
        let path = self.scratch.join(format!("{name}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        path
    }

    /// `host:port` of the PostgreSQL server.
    pub fn postgres_addr(&self) -> String {
        host_port(&self.postgres_url, 5432)
    }

    /// `host:port` of the Redis server.
    pub fn redis_addr(&self) -> String {
        host_port(&self.redis_url, 6379)
    }

    /// Empties the benchmark's Redis database, first claiming it for this process.
    ///
    /// # Errors
    /// When another bench process holds the database (its flushes would empty this run's
    /// sessions in mid-measurement, and make reads look cheap), or Redis fails.
    pub async fn flush_redis(&self) -> Result<(), String> {
        if self.redis_claim.get().is_none() {
            let lock = std::env::temp_dir().join(lock_file_name(&self.redis_url));
            // A race between clones of one Env only opens the file twice; the loser's
            // handle is dropped and the winner's lock holds.
            let _ = self.redis_claim.set(claim(&lock)?);
        }
        redis::cmd("FLUSHDB")
            .query_async::<()>(&mut self.redis_connection().await?)
            .await
            .map_err(|error| error.to_string())
    }

    /// A connection to the benchmark's Redis database, for the harness's own commands.
    ///
    /// # Errors
    /// When the URL is not a Redis URL or the server does not answer.
    pub async fn redis_connection(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let client =
            redis::Client::open(self.redis_url.as_str()).map_err(|error| error.to_string())?;
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|error| error.to_string())
    }
}

/// One lock file per Redis database: the URL past any credentials, with everything but
/// letters and digits turned into `_`.
fn lock_file_name(redis_url: &str) -> String {
    let rest = redis_url
        .split_once("://")
        .map_or(redis_url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let name: String = rest
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("cloakroom-bench-redis-{name}.lock")
}

/// Takes the exclusive lock on `path`, held while the returned file is open. The
/// operating system drops it when the process ends, however it ends.
fn claim(path: &Path) -> Result<File, String> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|error| format!("opening {}: {error}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(format!(
            "another bench process is using this Redis database (lock {}); wait for it to \
             finish, or give this one its own database: \
             CLOAKROOM_BENCH_REDIS_URL=redis://127.0.0.1:6379/4",
            path.display()
        )),
        Err(TryLockError::Error(error)) => Err(format!("locking {}: {error}", path.display())),
    }
}

/// The `host:port` part of a URL (after `@` or `//`, before `/`).
fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    }
}

fn replace_port(url: &str, port: u16) -> String {
    let addr = host_port(url, 0);
    let host = addr
        .rsplit_once(':')
        .map_or(addr.as_str(), |(host, _)| host);
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (userinfo, after) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => (format!("{userinfo}@"), after),
        None => (String::new(), rest),
    };
    let tail = after.find(['/', '?']).map_or("", |i| &after[i..]);
    format!("{scheme}://{userinfo}{host}:{port}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_database_is_claimed_by_one_process_at_a_time() {
        let dir = tempfile::tempdir().expect("a scratch dir");
        let path = dir.path().join(lock_file_name("redis://127.0.0.1:6379/15"));
        let first = claim(&path).expect("the first claim");
        // A second open file description stands for a second process: flock-style locks
        // belong to the open file, not the process.
        let second = claim(&path).expect_err("a second claim while the first is held");
        assert!(second.contains("CLOAKROOM_BENCH_REDIS_URL"), "{second}");
        drop(first);
        claim(&path).expect("a claim after the first is released");
    }

    #[test]
    fn every_redis_database_has_its_own_lock() {
        assert_ne!(
            lock_file_name("redis://127.0.0.1:6379/15"),
            lock_file_name("redis://127.0.0.1:6379/4")
        );
        assert_eq!(
            lock_file_name("redis://user:secret@localhost:6379/4"),
            "cloakroom-bench-redis-localhost_6379_4.lock"
        );
    }

    #[test]
    fn ports_are_found_and_replaced() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/test", 1),
            "127.0.0.1:5432"
        );
        assert_eq!(host_port("redis://localhost/15", 6379), "localhost:6379");
        assert_eq!(
            replace_port("postgres://postgres@127.0.0.1:5432/test?x=1", 7000),
            "postgres://postgres@127.0.0.1:7000/test?x=1"
        );
        assert_eq!(
            replace_port("redis://127.0.0.1/15", 7001),
            "redis://127.0.0.1:7001/15"
        );
    }
}
