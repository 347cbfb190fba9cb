//! The table of store URL schemes: the one place a new store is added.
//!
//! A row names the scheme, says how its URLs are written, opens the store (and, through
//! [`Backend::with_schema`], says how to create its schema), and whether it needs a
//! background purge. The help texts and the "unknown scheme" message are made from it.

use std::sync::Arc;

use cloakroom::MemoryStore;
use cloakroom_cached::CachedStore;
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
    },
    Scheme {
        names: &["sqlite"],
        usage: "sqlite://PATH",
        about: "a SQLite file (?table=NAME)",
        open: Open::Store(sqlite),
        needs_purge_task: true,
    },
    Scheme {
        names: &["postgres", "postgresql"],
        usage: "postgres://USER@HOST/DB",
        about: "PostgreSQL (?table=NAME)",
        open: Open::Store(postgres),
        needs_purge_task: true,
    },
    Scheme {
        names: &["mysql", "mariadb"],
        usage: "mysql://USER@HOST/DB",
        about: "MySQL or MariaDB (also mariadb://; ?table=NAME)",
        open: Open::Store(mysql),
        needs_purge_task: true,
    },
    Scheme {
        names: &["redis", "rediss"],
        usage: "redis://HOST:PORT/DB",
        about: "one Redis node (rediss:// for TLS; ?prefix=PREFIX)",
        open: Open::Store(redis),
        needs_purge_task: false,
    },
    Scheme {
        names: &["redis-cluster"],
        usage: "redis-cluster://HOST:PORT,HOST:PORT,...",
        about: "a Redis Cluster (?prefix=PREFIX)",
        open: Open::Store(redis_cluster),
        needs_purge_task: false,
    },
    Scheme {
        names: &["file"],
        usage: "file://DIR",
        about: "one file per session in DIR",
        open: Open::Store(file),
        needs_purge_task: true,
    },
    Scheme {
        names: &["memcached"],
        usage: "memcached://HOST:PORT",
        about: "Memcached (?prefix=PREFIX)",
        open: Open::Store(memcached),
        needs_purge_task: false,
    },
    Scheme {
        names: &["cached"],
        usage: "cached+ANY-OF-THE-ABOVE",
        about: "an in-process cache in front of that store",
        open: Open::Wrap(cached),
        needs_purge_task: false,
    },
    Scheme {
        names: &["cookie"],
        usage: "cookie://",
        about: "client-side sessions, in the cookie itself: nothing kept on a server",
        open: Open::Store(client_side),
        needs_purge_task: false,
    },
];

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
            Some(prefix) => store.with_prefix(prefix),
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
