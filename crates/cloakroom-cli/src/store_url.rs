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
                let mut store = SqliteStore::open(path).await.map_err(setup)?;
                if let Some(table) = table {
                    store = store.with_table_name(&table).map_err(setup)?;
                    store.migrate().await.map_err(setup)?;
                }
                Ok(Self::Sqlite(store))
            }
            Some("postgres" | "postgresql") => {
                let store = PostgresStore::connect(&base).await.map_err(setup)?;
                match table {
                    Some(table) => {
                        let store = store.with_table(None, &table).map_err(setup)?;
                        store.migrate().await.map_err(setup)?;
                        Ok(Self::Postgres(store))
                    }
                    None => Ok(Self::Postgres(store)),
                }
            }
            Some("mysql" | "mariadb") => {
                let base = base.replacen("mariadb://", "mysql://", 1);
                let store = MySqlStore::connect(&base).await.map_err(setup)?;
                match table {
                    Some(table) => {
                        let store = store.with_table(None, &table).map_err(setup)?;
                        store.migrate().await.map_err(setup)?;
                        Ok(Self::MySql(store))
                    }
                    None => Ok(Self::MySql(store)),
                }
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

/// Query parameters whose value is a secret: any name containing one of these, in any case.
const SECRET_PARAMETERS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
];

/// The URL with every secret replaced by `***`, for messages and logs: the password in the
/// authority (`user:***@host`) and the value of any query parameter whose name looks like
/// a secret (`?password=***`, `?auth_token=***`, percent-encoded names too).
///
/// It errs on the side of hiding: a password holding an unescaped `/`, `?` or `@` is still
/// hidden, at the price of hiding a little more of such a URL.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (&url[..scheme.len() + 3], rest),
        None => ("", url),
    };
    // Secret parameter values first, so an '@' inside one is not read as the end of the
    // user information below.
    let rest = redact_query(rest);
    // The last '@' ends the user information, even when the password holds '/' or '?'.
    match rest.rfind('@') {
        Some(at) => {
            let (userinfo, location) = (&rest[..at], &rest[at..]);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}{user}:***{location}"),
                None => format!("{scheme}{rest}"),
            }
        }
        None => format!("{scheme}{rest}"),
    }
}

/// `text` with the values of secret query parameters replaced by `***`.
fn redact_query(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _value)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}", pairs.join("&"))
}

fn is_secret_parameter(name: &str) -> bool {
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|secret| name.contains(secret))
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
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=pw&table=t"),
            "postgres://u@h/db?sslmode=disable&password=***&table=t"
        );
        assert_eq!(
            redact("cached+mysql://u:pw@h/db?Auth_Token=x&p%61ss=y"),
            "cached+mysql://u:***@h/db?Auth_Token=***&p%61ss=***"
        );
        // Unescaped characters in a password still leave nothing of it behind.
        assert_eq!(redact("postgres://u:p/w?d@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u:p@w@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("postgres://u@h/db?password=p@w"),
            "postgres://u@h/db?password=***"
        );
        assert_eq!(
            redact("redis-cluster://:pw@a:1,:pw@b:2"),
            "redis-cluster://:***@b:2"
        );
        assert_eq!(redact("nats:x?token=t"), "nats:x?token=***");
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
