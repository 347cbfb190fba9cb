//! The axum apps: cloakroom, tower-sessions and the bare app, all serving [`routes`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::env::Env;
use crate::scenario::routes::{self, COUNTER};
use crate::scenario::{Library, StoreKind, Target};

/// Any failure while building an app.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// The app for an axum-served target (every library but actix-session).
///
/// Its handlers are made into services once, here, as `axum::serve` does on startup
/// (`into_make_service` calls `with_state`). A router called as it is (in process, through
/// `oneshot`) would otherwise box each handler and apply each layer to it again on every
/// request: work no served app does, which cost a layered app about 470 instructions a
/// request more than the bare one.
pub async fn build(target: Target, env: &Env) -> Result<Router, BuildError> {
    let app = match target.library {
        Library::Cloakroom => cloakroom_app(target.store, env).await,
        Library::TowerSessions => tower_sessions_app(target.store, env).await,
        Library::Floor => crate::floor::build(target.store, env).await,
        Library::BareAxum => Ok(Router::new().route(routes::UNTOUCHED, get(untouched))),
        Library::ActixSession | Library::CloakroomActix => {
            Err(format!("{} is served by actix-web", target.library.name()).into())
        }
    };
    app.map(|router| router.with_state(()))
}

/// The S1 handler, shared by every axum app.
pub async fn untouched() -> &'static str {
    "ok"
}

/// The pool every SQLite target uses: what `cloakroom_sqlx::SqliteStore::open` builds.
pub async fn sqlite_pool(env: &Env, name: &str) -> Result<SqlitePool, BuildError> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(env.sqlite_path(name))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    Ok(SqlitePoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .connect_with(options)
        .await?)
}

/// The pool every PostgreSQL target uses: cloakroom-sqlx's default settings (idle
/// connections pinged before use), 8 connections.
pub async fn postgres_pool(env: &Env) -> Result<PgPool, BuildError> {
    Ok(cloakroom_sqlx::PostgresStore::pool_options()
        .max_connections(8)
        .connect(&env.postgres_url)
        .await?)
}

/// cloakroom's session manager on `store`, set up the same way for both frameworks: the
/// axum layer and the actix-web middleware are built from it, so their rows differ only in
/// the framework.
pub async fn cloakroom_manager(
    store: StoreKind,
    env: &Env,
) -> Result<Arc<cloakroom::SessionManager>, BuildError> {
    use cloakroom::{CookieSessions, KeyRing, SessionConfig, SessionManager};
    let config = SessionConfig::default();
    let manager = match store {
        StoreKind::Memory => SessionManager::new(cloakroom::MemoryStore::new(), config)?,
        StoreKind::Sqlite => {
            let store =
                cloakroom_sqlx::SqliteStore::from_pool(sqlite_pool(env, "cloakroom").await?);
            store.migrate().await?;
            SessionManager::new(store, config)?
        }
        StoreKind::Postgres => {
            let store = cloakroom_sqlx::PostgresStore::from_pool(postgres_pool(env).await?);
            store.migrate().await?;
            sqlx::query(&format!("TRUNCATE {}", store.table()))
                .execute(store.pool())
                .await?;
            SessionManager::new(store, config)?
        }
        StoreKind::Redis => SessionManager::new(
            cloakroom_redis::RedisStore::connect(&env.redis_url).await?,
            config,
        )?,
        StoreKind::Cookie => {
            let ring = KeyRing::parse(&cloakroom::generate_key())?;
            SessionManager::cookie(CookieSessions::encrypted(ring), config)?
        }
        StoreKind::None => return Err("cloakroom needs a store".into()),
    };
    Ok(Arc::new(manager))
}

async fn cloakroom_app(store: StoreKind, env: &Env) -> Result<Router, BuildError> {
    let layer = cloakroom::SessionLayer::from_manager(cloakroom_manager(store, env).await?);
    Ok(Router::new()
        .route(routes::UNTOUCHED, get(untouched))
        .route(routes::SEED, post(cloakroom_handlers::seed))
        .route(routes::READ, get(cloakroom_handlers::read))
        .route(routes::WRITE, post(cloakroom_handlers::write))
        .route(routes::ROTATE, post(cloakroom_handlers::rotate))
        .layer(layer))
}

/// The cloakroom handlers over one integration crate's `Session` and `SessionError`:
/// `cloakroom` (axum) here, `cloakroom_actix` in the actix-web apps.
macro_rules! cloakroom_handlers_for {
    ($krate:ident) => {
        mod cloakroom_handlers {
            use super::COUNTER;
            use $krate::{Session, SessionError};

            pub async fn seed(session: Session) -> Result<&'static str, SessionError> {
                session.insert(COUNTER, 0_i64).await?;
                session.insert("user", "bench").await?;
                Ok("ok")
            }

            pub async fn read(session: Session) -> Result<String, SessionError> {
                Ok(session.get::<i64>(COUNTER).await?.unwrap_or(0).to_string())
            }

            /// The atomic read-modify-write: re-run on a concurrent change, so no increment is lost.
            pub async fn write(session: Session) -> Result<String, SessionError> {
                let value = session
                    .update(COUNTER, |n: Option<i64>| n.unwrap_or(0) + 1)
                    .await?;
                Ok(value.to_string())
            }

            pub async fn rotate(session: Session) -> Result<&'static str, SessionError> {
                session.cycle_id().await?;
                Ok("ok")
            }
        }
    };
}
pub(crate) use cloakroom_handlers_for;

cloakroom_handlers_for!(cloakroom);

/// The same handlers for both tower-sessions versions (their `Session` types differ).
macro_rules! tower_sessions_handlers {
    ($module:ident, $krate:ident) => {
        mod $module {
            use super::{StatusCode, COUNTER};
            use $krate::Session;

            fn internal<E: std::fmt::Display>(error: E) -> StatusCode {
                eprintln!("tower-sessions: {error}");
                StatusCode::INTERNAL_SERVER_ERROR
            }

            pub async fn seed(session: Session) -> Result<&'static str, StatusCode> {
                session.insert(COUNTER, 0_i64).await.map_err(internal)?;
                session.insert("user", "bench").await.map_err(internal)?;
                Ok("ok")
            }

            pub async fn read(session: Session) -> Result<String, StatusCode> {
                let value: Option<i64> = session.get(COUNTER).await.map_err(internal)?;
                Ok(value.unwrap_or(0).to_string())
            }

            pub async fn write(session: Session) -> Result<String, StatusCode> {
                let value: Option<i64> = session.get(COUNTER).await.map_err(internal)?;
                let value = value.unwrap_or(0) + 1;
                session.insert(COUNTER, value).await.map_err(internal)?;
                Ok(value.to_string())
            }

            pub async fn rotate(session: Session) -> Result<&'static str, StatusCode> {
                session.cycle_id().await.map_err(internal)?;
                Ok("ok")
            }
        }
    };
}

tower_sessions_handlers!(ts015_handlers, tower_sessions);
tower_sessions_handlers!(ts014_handlers, tower_sessions_014);

macro_rules! tower_sessions_router {
    ($module:ident, $layer:expr) => {
        Router::new()
            .route(routes::UNTOUCHED, get(untouched))
            .route(routes::SEED, post($module::seed))
            .route(routes::READ, get($module::read))
            .route(routes::WRITE, post($module::write))
            .route(routes::ROTATE, post($module::rotate))
            .layer($layer)
    };
}

async fn tower_sessions_app(store: StoreKind, env: &Env) -> Result<Router, BuildError> {
    use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};
    Ok(match store {
        StoreKind::Memory => tower_sessions_router!(
            ts015_handlers,
            tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default())
        ),
        StoreKind::Sqlite => {
            let store = SqliteStore::new(sqlite_pool(env, "tower-sessions").await?);
            store.migrate().await?;
            tower_sessions_router!(
                ts014_handlers,
                tower_sessions_014::SessionManagerLayer::new(store)
            )
        }
        StoreKind::Postgres => {
            let pool = postgres_pool(env).await?;
            let store = PostgresStore::new(pool.clone());
            store.migrate().await?;
            sqlx::query("TRUNCATE tower_sessions.session")
                .execute(&pool)
                .await?;
            tower_sessions_router!(
                ts014_handlers,
                tower_sessions_014::SessionManagerLayer::new(store)
            )
        }
        StoreKind::Redis => {
            use fred::prelude::{Builder, ClientLike, Config};
            let client = Builder::from_config(Config::from_url(&env.redis_url)?).build()?;
            client.init().await?;
            let store = tower_sessions_redis_store::RedisStore::new(client);
            tower_sessions_router!(
                ts014_handlers,
                tower_sessions_014::SessionManagerLayer::new(store)
            )
        }
        StoreKind::Cookie | StoreKind::None => {
            return Err("tower-sessions has no such store".into())
        }
    })
}
