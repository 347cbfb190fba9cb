//! The table of store URL schemes: the one place a new store is added.
//!
//! A row names the scheme, says how its URLs are written, opens the store (and, through
//! [`Backend::with_schema`], says how to create its schema), and whether it needs a
//! background purge. The help texts and the "unknown scheme" message are made from it.

use std::sync::Arc;

use cloakroom::MemoryStore;
use cloakroom_cached::CachedStore;
use cloakroom_flask::{FlaskCookie, FlaskRedisStore, FlaskSessionIds};
use cloakroom_fs::FileStore;
use cloakroom_memcached::MemcachedStore;
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_sqlx::{MySqlStore, PostgresStore, SqliteStore};

use crate::backend::Backend;
use crate::error::OpenError;
use crate::target::Target;
use crate::BoxFuture;

/// One store URL scheme.
#[derive(Clone, Copy, Debug)]
pub struct Scheme {
    /// The names before `://` (or, for a wrapper, before `+`); the first is the main one.
    pub names: &'static [&'static str],
    /// How its URLs are written, as help texts show it.
    pub usage: &'static str,
    /// What it is, in a few words, for help texts.
    pub about: &'static str,
    /// How a URL of this scheme opens.
    pub open: Open,
    /// Whether the store keeps expired records until purged, so an app runs
    /// `cloakroom::spawn_purge_task` beside it (a wrapper adds to its inner store's need).
    pub needs_purge_task: bool,
    /// The query parameters its URLs take; any other is refused, not ignored.
    pub query: Query,
}

/// The query parameters a scheme's URLs take.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    /// Which of this crate's own parameters it reads: `table` (the SQL stores' table) and
    /// `prefix` (a key prefix).
    pub own: &'static [&'static str],
    /// Whether any other parameter goes to the store's driver, which reads its own
    /// (PostgreSQL's `sslmode=`, say): where none does, another parameter is an error.
    pub driver: bool,
}

impl Query {
    /// No parameters at all.
    pub const NONE: Self = Self {
        own: &[],
        driver: false,
    };
}

/// How a scheme's URLs open.
#[derive(Clone, Copy, Debug)]
pub enum Open {
    /// Opens the store `scheme://…` names.
    Store(for<'a> fn(&'a Target) -> BoxFuture<'a, Result<Backend, OpenError>>),
    /// Puts something in front of the store the rest of the URL names (`cached+URL`).
    Wrap(fn(Backend) -> Backend),
}

/// Every store URL scheme, in the order help texts list them.
pub const SCHEMES: &[Scheme] = &[
    Scheme {
        names: &["memory"],
        usage: "memory://",
        about: "in this process only",
        open: Open::Store(memory),
        needs_purge_task: false,
        query: Query::NONE,
    },
    Scheme {
        names: &["sqlite"],
        usage: "sqlite://PATH",
        about: "a SQLite file (?table=NAME)",
        open: Open::Store(sqlite),
        needs_purge_task: true,
        query: Query { own: &["table"], driver: false },
    },
    Scheme {
        names: &["postgres", "postgresql"],
        usage: "postgres://USER@HOST/DB",
        about: "PostgreSQL (?table=NAME)",
        open: Open::Store(postgres),
        needs_purge_task: true,
        query: Query { own: &["table"], driver: true },
    },
    Scheme {
        names: &["mysql", "mariadb"],
        usage: "mysql://USER@HOST/DB",
        about: "MySQL or MariaDB (also mariadb://; ?table=NAME)",
        open: Open::Store(mysql),
        needs_purge_task: true,
        query: Query { own: &["table"], driver: true },
    },
    Scheme {
        names: &["redis", "rediss"],
        usage: "redis://HOST:PORT/DB",
        about: "one Redis node (rediss:// for TLS; ?prefix=PREFIX)",
        open: Open::Store(redis),
        needs_purge_task: false,
        query: Query { own: &["prefix"], driver: true },
    },
    Scheme {
        names: &["redis-cluster"],
        usage: "redis-cluster://HOST:PORT,HOST:PORT,...",
        about: "a Redis Cluster (?prefix=PREFIX)",
        open: Open::Store(redis_cluster),
        needs_purge_task: false,
        query: Query { own: &["prefix"], driver: false },
    },
    Scheme {
        names: &["file"],
        usage: "file://DIR",
        about: "one file per session in DIR",
        open: Open::Store(file),
        needs_purge_task: true,
        query: Query::NONE,
    },
    Scheme {
        names: &["memcached"],
        usage: "memcached://HOST:PORT",
        about: "Memcached (?prefix=PREFIX)",
        open: Open::Store(memcached),
        needs_purge_task: false,
        query: Query { own: &["prefix"], driver: false },
    },
    Scheme {
        names: &["cached"],
        usage: "cached+ANY-OF-THE-ABOVE",
        about: "an in-process cache in front of that store",
        open: Open::Wrap(cached),
        needs_purge_task: false,
        query: Query::NONE,
    },
    Scheme {
        names: &["cookie"],
        usage: "cookie://",
        about: "client-side sessions, in the cookie itself: nothing kept on a server",
        open: Open::Store(client_side),
        needs_purge_task: false,
        query: Query::NONE,
    },
    Scheme {
        names: &["flask-redis"],
        usage: "flask-redis://HOST:PORT/DB",
        about: "a Flask app's Flask-Session sessions in Redis (?prefix=, default session:; FLASK_SECRET_KEY if FLASK_SESSION_USE_SIGNER=1)",
        open: Open::Store(flask_redis),
        needs_purge_task: false,
        query: Query { own: &["prefix"], driver: true },
    },
    Scheme {
        names: &["flask-cookie"],
        usage: "flask-cookie://",
        about: "a Flask app's own signed cookie sessions, key in FLASK_SECRET_KEY (and FLASK_SECRET_KEY_FALLBACKS)",
        open: Open::Store(client_side),
        needs_purge_task: false,
        query: Query::NONE,
    },
];

/// The row of the scheme called `name` (lower case), if any.
pub(crate) fn scheme_named(name: &str) -> Option<&'static Scheme> {
    SCHEMES.iter().find(|scheme| scheme.names.contains(&name))
}

/// The Flask app's settings, read from environment variables named after its own
/// configuration: `FLASK_SECRET_KEY` (and `FLASK_SECRET_KEY_FALLBACKS`, comma-separated),
/// `FLASK_PERMANENT_SESSION_LIFETIME` (seconds, default 31 days), and, for Flask-Session,
/// `FLASK_SESSION_USE_SIGNER=1`.
pub const FLASK_SECRET_KEY: &str = "FLASK_SECRET_KEY";

fn flask_lifetime() -> Result<std::time::Duration, String> {
    match std::env::var("FLASK_PERMANENT_SESSION_LIFETIME") {
        Ok(seconds) => seconds
            .trim()
            .parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|_| {
                format!("FLASK_PERMANENT_SESSION_LIFETIME={seconds:?} is not a number of seconds")
            }),
        Err(_) => Ok(cloakroom_flask::cookie::DEFAULT_LIFETIME),
    }
}

fn flask_redis(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        let lifetime = flask_lifetime().map_err(|e| target.invalid(e))?;
        let ids = if std::env::var("FLASK_SESSION_USE_SIGNER").is_ok_and(|v| v == "1") {
            let key = std::env::var(FLASK_SECRET_KEY)
                .ok()
                .filter(|key| !key.is_empty())
                .ok_or_else(|| {
                    target.invalid("FLASK_SESSION_USE_SIGNER=1 needs FLASK_SECRET_KEY")
                })?;
            FlaskSessionIds::signed(key)
        } else {
            FlaskSessionIds::unsigned()
        };
        let url = format!("redis://{}", target.rest());
        let store = FlaskRedisStore::connect(&url)
            .await
            .map_err(|e| target.setup(e))?
            .with_prefix(
                target
                    .prefix
                    .clone()
                    .unwrap_or(cloakroom_flask::redis_store::DEFAULT_PREFIX.to_owned()),
            )
            .with_lifetime(lifetime);
        let configure = {
            let store = store.clone();
            Arc::new(move |config| store.session_config(config))
        };
        Ok(Backend::new(Arc::new(store), None).shared_with(Arc::new(ids), configure))
    })
}

/// A session manager for a client-side store URL that needs no key of the app's own:
/// `flask-cookie://` (Flask's signed cookie, with the keys and lifetime of the
/// `FLASK_*` variables, see [`FLASK_SECRET_KEY`]). `None` for any other URL.
pub fn open_client_side(
    url: &str,
    config: cloakroom::SessionConfig,
) -> Option<Result<cloakroom::SessionManager, OpenError>> {
    let target = Target::parse(url).ok()??;
    if target.scheme != "flask-cookie" {
        return None;
    }
    let scheme = scheme_named(&target.scheme)?;
    let open = || {
        target.check_query(scheme.query)?;
        let lifetime = flask_lifetime().map_err(|e| target.invalid(e))?;
        let codec = FlaskCookie::from_env(FLASK_SECRET_KEY)
            .map_err(|e| target.invalid(e.to_string()))?
            .with_lifetime(lifetime);
        let config = codec.session_config(config);
        cloakroom::SessionManager::cookie_codec(Arc::new(codec), config)
            .map_err(|e| target.invalid(e.to_string()))
    };
    Some(open())
}

fn memory(_: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async { Ok(Backend::new(Arc::new(MemoryStore::new()), None)) })
}

fn sqlite(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        let path = target.rest();
        if path.is_empty() {
            return Err(target.invalid("give a file path: sqlite://sessions.db"));
        }
        // The table name is checked before anything is created, and only it is created.
        let store = match &target.table {
            Some(table) => SqliteStore::open_with_table(path, table).await,
            None => SqliteStore::open(path).await,
        };
        let store = store.map_err(|e| target.setup(e))?;
        Ok(Backend::with_schema(
            store,
            |store: SqliteStore| async move { store.migrate().await },
        ))
    })
}

fn postgres(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        let table = target
            .table
            .as_deref()
            .unwrap_or(cloakroom_sqlx::DEFAULT_TABLE);
        let store = PostgresStore::connect_with_table(&target.url, None, table)
            .await
            .map_err(|e| target.setup(e))?;
        Ok(Backend::with_schema(
            store,
            |store: PostgresStore| async move { store.migrate().await },
        ))
    })
}

fn mysql(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        // The driver knows only mysql://.
        let url = format!("mysql://{}", target.rest());
        let table = target
            .table
            .as_deref()
            .unwrap_or(cloakroom_sqlx::DEFAULT_TABLE);
        let store = MySqlStore::connect_with_table(&url, None, table)
            .await
            .map_err(|e| target.setup(e))?;
        Ok(Backend::with_schema(
            store,
            |store: MySqlStore| async move { store.migrate().await },
        ))
    })
}

fn redis_config(target: &Target) -> RedisConfig {
    let defaults = RedisConfig::default();
    RedisConfig {
        prefix: target.prefix.clone().unwrap_or(defaults.prefix.clone()),
        ..defaults
    }
}

fn redis(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        let store = RedisStore::connect_with(&target.url, redis_config(target))
            .await
            .map_err(|e| target.setup(e))?;
        Ok(Backend::new(Arc::new(store), None))
    })
}

fn redis_cluster(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        let nodes: Vec<String> = target
            .rest()
            .split(',')
            .filter(|node| !node.is_empty())
            .map(|node| format!("redis://{node}"))
            .collect();
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let store = RedisStore::connect_cluster(&nodes, redis_config(target))
            .await
            .map_err(|e| target.setup(e))?;
        Ok(Backend::new(Arc::new(store), None))
    })
}

fn file(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        let path = target.rest();
        if path.is_empty() {
            return Err(target.invalid("give a directory: file://sessions"));
        }
        let store = FileStore::open(path).map_err(|e| target.invalid(e.to_string()))?;
        // Opening created the directory layout, which is this store's schema.
        Ok(Backend::with_schema(store, |_: FileStore| async {
            Ok::<(), cloakroom::BoxError>(())
        }))
    })
}

fn memcached(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        let store = MemcachedStore::connect(&target.url)
            .await
            .map_err(|e| target.invalid(e.to_string()))?;
        let store = match &target.prefix {
            Some(prefix) => store
                .with_prefix(prefix)
                .map_err(|e| target.invalid(e.to_string()))?,
            None => store,
        };
        Ok(Backend::new(Arc::new(store), None))
    })
}

fn cached(inner: Backend) -> Backend {
    Backend::new(Arc::new(CachedStore::new(inner.shared())), inner.migrator())
}

fn client_side(target: &Target) -> BoxFuture<'_, Result<Backend, OpenError>> {
    Box::pin(async move {
        Err(OpenError::ClientSide {
            url: target.shown.clone(),
        })
    })
}
