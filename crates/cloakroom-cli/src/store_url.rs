//! Store URLs: one scheme per store, shared by the demo app and the `cloakroom` command.
//!
//! | URL | store |
//! |---|---|
//! | `memory://` | [`MemoryStore`] (this process only) |
//! | `sqlite://PATH` | [`SqliteStore`] in the file `PATH` |
//! | `postgres://…` (or `postgresql://…`) | [`PostgresStore`] |
//! | `mysql://…` (or `mariadb://…`) | [`MySqlStore`] |
//! | `redis://…` (or `rediss://…`) | [`RedisStore`] on one node |
//! | `redis-cluster://HOST:PORT,HOST:PORT,…` | [`RedisStore`] on a Redis Cluster |
//! | `file://DIR` | [`FileStore`] in the directory `DIR` |
//! | `memcached://HOST:PORT` | [`MemcachedStore`] |
//! | `cached+URL` | an in-process cache ([`CachedStore`]) in front of the store `URL` names |
//!
//! SQL URLs take an optional `table=NAME` query parameter (default `cloakroom_sessions`),
//! Redis URLs an optional `prefix=PREFIX` (default `cloakroom:`).

use std::sync::Arc;

use cloakroom::{MemoryStore, SessionStore};
use cloakroom_cached::CachedStore;
use cloakroom_fs::FileStore;
use cloakroom_memcached::MemcachedStore;
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_sqlx::{MySqlStore, PostgresStore, SetupError, SqliteStore};

/// The URL forms this build knows, for error messages and `--help`.
pub const KNOWN_SCHEMES: &[&str] = &[
    "memory://",
    "sqlite://PATH",
    "postgres://USER@HOST/DB",
    "mysql://USER@HOST/DB",
    "redis://HOST:PORT/DB",
    "redis-cluster://HOST:PORT,HOST:PORT,...",
    "file://DIR",
    "memcached://HOST:PORT",
    "cached+ANY-OF-THE-ABOVE",
];

/// Why a store URL could not be opened, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The scheme names no store.
    #[error("unknown store URL scheme in {url:?}: use one of {}", KNOWN_SCHEMES.join(", "))]
    UnknownScheme {
        /// The URL, password removed.
        url: String,
    },
    /// The URL is malformed.
    #[error("store URL {url:?} is not valid: {reason}")]
    Invalid {
        /// The URL, password removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be set up (unreachable, no rights...).
    #[error("cannot open {url}: {source}")]
    Setup {
        /// The URL, password removed.
        url: String,
        /// The store's error.
        #[source]
        source: SetupError,
    },
    /// Client-side sessions keep nothing on a server to manage.
    #[error("{url} sessions live in browsers' cookies: there is nothing on a server to list or revoke (bump a user's epoch to log them out)")]
    ClientSide {
        /// The URL.
        url: String,
    },
    /// Redis could not be reached.
    #[error("cannot open {url}: {source}")]
    Redis {
        /// The URL, password removed.
        url: String,
        /// The store's error.
        #[source]
        source: cloakroom_redis::SetupError,
    },
}

/// An opened store of any kind.
#[derive(Clone, Debug)]
pub enum Backend {
    /// `memory://`
    Memory(MemoryStore),
    /// `sqlite://`
    Sqlite(SqliteStore),
    /// `postgres://`
    Postgres(PostgresStore),
    /// `mysql://`
    MySql(MySqlStore),
    /// `redis://` or `redis-cluster://`
    Redis(RedisStore),
    /// `file://DIR`
    File(FileStore),
    /// `memcached://HOST:PORT`
    Memcached(Arc<MemcachedStore>),
    /// `cached+URL`: a cache in front of another backend.
    Cached(Box<Backend>, Arc<CachedStore<Arc<dyn SessionStore>>>),
}

impl Backend {
    /// Opens the store a URL names, creating its schema if missing.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        if let Some(durable) = url.strip_prefix("cached+") {
            let inner = Box::pin(Self::open(durable)).await?;
            let cached = Arc::new(CachedStore::new(inner.shared()));
            return Ok(Self::Cached(Box::new(inner), cached));
        }
        let shown = redact(url);
        let setup = |source| OpenError::Setup {
            url: shown.clone(),
            source,
        };
        let invalid = |reason| OpenError::Invalid {
            url: shown.clone(),
            reason,
        };
        let (base, table) = split_param(url, "table").map_err(invalid)?;
        let (base, prefix) = split_param(&base, "prefix").map_err(invalid)?;
        let redis_config = RedisConfig {
            prefix: prefix
                .clone()
                .unwrap_or_else(|| RedisConfig::default().prefix),
            ..RedisConfig::default()
        };
        let scheme = base
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("memory") => Ok(Self::Memory(MemoryStore::new())),
            Some("sqlite") => {
                let path = &base["sqlite://".len()..];
                if path.is_empty() {
                    return Err(OpenError::Invalid {
                        url: shown,
                        reason: "give a file path: sqlite://sessions.db".into(),
                    });
                }
                let store = match table {
                    Some(table) => SqliteStore::open_with_table(path, &table).await,
                    None => SqliteStore::open(path).await,
                };
                Ok(Self::Sqlite(store.map_err(setup)?))
            }
            Some("postgres" | "postgresql") => {
                let table = table.as_deref().unwrap_or(cloakroom_sqlx::DEFAULT_TABLE);
                let store = PostgresStore::connect_with_table(&base, None, table).await;
                Ok(Self::Postgres(store.map_err(setup)?))
            }
            Some("mysql" | "mariadb") => {
                let base = base.replacen("mariadb://", "mysql://", 1);
                let table = table.as_deref().unwrap_or(cloakroom_sqlx::DEFAULT_TABLE);
                let store = MySqlStore::connect_with_table(&base, None, table).await;
                Ok(Self::MySql(store.map_err(setup)?))
            }
            Some("redis" | "rediss") => RedisStore::connect_with(&base, redis_config)
                .await
                .map(Self::Redis)
                .map_err(|source| OpenError::Redis { url: shown, source }),
            Some("redis-cluster") => {
                let nodes: Vec<String> = base["redis-cluster://".len()..]
                    .split(',')
                    .filter(|node| !node.is_empty())
                    .map(|node| format!("redis://{node}"))
                    .collect();
                let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                RedisStore::connect_cluster(&nodes, redis_config)
                    .await
                    .map(Self::Redis)
                    .map_err(|source| OpenError::Redis { url: shown, source })
            }
            Some("file") => {
                let path = &base["file://".len()..];
                if path.is_empty() {
                    return Err(OpenError::Invalid {
                        url: shown,
                        reason: "give a directory: file://sessions".into(),
                    });
                }
                FileStore::open(path)
                    .map(Self::File)
                    .map_err(|error| OpenError::Invalid {
                        url: shown,
                        reason: error.to_string(),
                    })
            }
            Some("memcached") => {
                let store =
                    MemcachedStore::connect(&base)
                        .await
                        .map_err(|error| OpenError::Invalid {
                            url: shown.clone(),
                            reason: error.to_string(),
                        })?;
                let store = match &prefix {
                    Some(prefix) => store.with_prefix(prefix),
                    None => store,
                };
                Ok(Self::Memcached(Arc::new(store)))
            }
            Some("cookie") => Err(OpenError::ClientSide { url: shown }),
            _ => Err(OpenError::UnknownScheme { url: shown }),
        }
    }

    /// The store, shared.
    pub fn shared(&self) -> Arc<dyn SessionStore> {
        match self {
            Self::Memory(store) => Arc::new(store.clone()),
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
            Self::MySql(store) => Arc::new(store.clone()),
            Self::Redis(store) => Arc::new(store.clone()),
            Self::File(store) => Arc::new(store.clone()),
            Self::Memcached(store) => Arc::clone(store) as Arc<dyn SessionStore>,
            Self::Cached(_, store) => Arc::clone(store) as Arc<dyn SessionStore>,
        }
    }

    /// Creates the schema if missing (idempotent); `false` for stores without one.
    pub async fn migrate(&self) -> Result<bool, SetupError> {
        match self {
            Self::Memory(_) | Self::Redis(_) | Self::Memcached(_) => Ok(false),
            // Opening created the directory layout, which is this store's schema.
            Self::File(_) => Ok(true),
            Self::Sqlite(store) => store.migrate().await.map(|()| true),
            Self::Postgres(store) => store.migrate().await.map(|()| true),
            Self::MySql(store) => store.migrate().await.map(|()| true),
            Self::Cached(inner, _) => Box::pin(inner.migrate()).await,
        }
    }

    /// Whether this store needs a background purge (SQL stores do; others evict).
    pub fn needs_purge_task(&self) -> bool {
        match self {
            Self::Memory(_) | Self::Redis(_) | Self::Memcached(_) => false,
            Self::Cached(inner, _) => inner.needs_purge_task(),
            Self::Sqlite(_) | Self::Postgres(_) | Self::MySql(_) | Self::File(_) => true,
        }
    }
}

/// Splits off our own query parameter `name`, keeping the rest for the driver.
fn split_param(url: &str, name: &str) -> Result<(String, Option<String>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut found = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, value)) if key == name && !value.is_empty() => {
                found = Some(value.to_owned())
            }
            Some((key, _)) if key == name => return Err(format!("{name}= needs a value")),
            _ => rest.push(pair),
        }
    }
    let base = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, found))
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
    }

    #[test]
    fn our_parameters_are_split_off() {
        assert_eq!(
            split_param("postgres://h/db?table=t&sslmode=disable", "table").unwrap(),
            ("postgres://h/db?sslmode=disable".into(), Some("t".into()))
        );
        assert_eq!(
            split_param("sqlite://x.db", "table").unwrap(),
            ("sqlite://x.db".into(), None)
        );
        assert!(split_param("sqlite://x.db?table=", "table").is_err());
        assert_eq!(
            split_param("redis://h:1/2?prefix=app:", "prefix").unwrap(),
            ("redis://h:1/2".into(), Some("app:".into()))
        );
    }

    #[tokio::test]
    async fn unknown_schemes_list_the_known_ones() {
        let error = Backend::open("carrier-pigeon://coop").await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("sqlite://PATH") && message.contains("memory://"),
            "{message}"
        );
    }
}
