//! Where the store servers are, and resetting them between targets.

use std::path::PathBuf;

/// The store servers and scratch space a run uses.
#[derive(Clone, Debug)]
pub struct Env {
    /// PostgreSQL (`CLOAKROOM_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
    pub postgres_url: String,
    /// Redis (`CLOAKROOM_BENCH_REDIS_URL`, default database 15 of `127.0.0.1:6379`, flushed
    /// before each target so runs never see each other's keys).
    pub redis_url: String,
    /// Where SQLite files go.
    pub scratch: PathBuf,
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
        }
    }

    /// The same environment with the servers reached through `proxy`'s ports (for
    /// counting round trips).
    pub fn through(&self, postgres_port: u16, redis_port: u16) -> Self {
        Self {
            postgres_url: replace_port(&self.postgres_url, postgres_port),
            redis_url: replace_port(&self.redis_url, redis_port),
            scratch: self.scratch.clone(),
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

    /// Empties the benchmark's Redis database.
    pub async fn flush_redis(&self) -> Result<(), redis::RedisError> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHDB")
            .query_async::<()>(&mut connection)
            .await
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
