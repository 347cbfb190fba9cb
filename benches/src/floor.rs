//! The floor: bare axum handlers doing the store operations a session needs, directly,
//! with no session library. The same routes and bodies as every library; no expiry
//! bookkeeping beyond a deadline column, no rotation safety, no concurrency control — the
//! least work the store allows, which is what "cloakroom/floor" divides by.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use redis::aio::ConnectionManager;
use serde_json::{json, Map, Value};
use sqlx::postgres::PgQueryResult;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Postgres, Sqlite, Type};

use crate::axum_apps::{postgres_pool, sqlite_pool, untouched, BuildError};
use crate::env::Env;
use crate::scenario::routes::{self, COUNTER};
use crate::scenario::StoreKind;

const COOKIE: &str = "id";
const TTL_SECONDS: i64 = 24 * 3600;

type Data = Map<String, Value>;

/// Where the floor keeps sessions.
#[derive(Clone)]
enum Backend {
    Memory(Arc<Mutex<HashMap<String, Data>>>),
    Sqlite(SqlTable<Sqlite>),
    Postgres(SqlTable<Postgres>),
    Redis(ConnectionManager),
    Cookie(Arc<XChaCha20Poly1305>),
}

/// The floor app for `store`.
pub async fn build(store: StoreKind, env: &Env) -> Result<Router, BuildError> {
    let backend = match store {
        StoreKind::Memory => Backend::Memory(Arc::default()),
        StoreKind::Sqlite => {
            let pool = sqlite_pool(env, "floor").await?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_floor \
                 (id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL, expires_at INTEGER NOT NULL)",
            )
            .execute(&pool)
            .await?;
            Backend::Sqlite(SqlTable(pool))
        }
        StoreKind::Postgres => {
            let pool = postgres_pool(env).await?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_floor \
                 (id TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL, expires_at BIGINT NOT NULL)",
            )
            .execute(&pool)
            .await?;
            sqlx::query("TRUNCATE bench_floor").execute(&pool).await?;
            Backend::Postgres(SqlTable(pool))
        }
        StoreKind::Redis => {
            let client = redis::Client::open(env.redis_url.as_str())?;
            Backend::Redis(ConnectionManager::new(client).await?)
        }
        StoreKind::Cookie => {
            let mut key = [0_u8; 32];
            rand::rng().fill_bytes(&mut key);
            Backend::Cookie(Arc::new(XChaCha20Poly1305::new(&key.into())))
        }
        StoreKind::None => return Err("the floor needs a store".into()),
    };
    Ok(Router::new()
        .route(routes::UNTOUCHED, get(untouched))
        .route(routes::SEED, post(seed))
        .route(routes::READ, get(read))
        .route(routes::WRITE, post(write))
        .route(routes::ROTATE, post(rotate))
        .with_state(backend))
}

type Failure = (StatusCode, String);

fn failed<E: std::fmt::Display>(error: E) -> Failure {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn new_id() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("id="))
}

fn with_cookie(value: &str, body: String) -> Response {
    let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Lax");
    ([(header::SET_COOKIE, cookie)], body).into_response()
}

fn counter(data: &Data) -> i64 {
    data.get(COUNTER).and_then(Value::as_i64).unwrap_or(0)
}

impl Backend {
    /// The session's data, or `None` when there is no live session.
    async fn load(&self, id: &str) -> Result<Option<Data>, Failure> {
        let text: Option<String> = match self {
            Backend::Memory(map) => return Ok(map.lock().unwrap().get(id).cloned()),
            Backend::Sqlite(table) => table.load(id).await?,
            Backend::Postgres(table) => table.load(id).await?,
            Backend::Redis(connection) => redis::cmd("GET")
                .arg(format!("floor:{id}"))
                .query_async(&mut connection.clone())
                .await
                .map_err(failed)?,
            Backend::Cookie(cipher) => {
                let Ok(sealed) = URL_SAFE_NO_PAD.decode(id) else {
                    return Ok(None);
                };
                if sealed.len() < 24 {
                    return Ok(None);
                }
                let (nonce, ciphertext) = sealed.split_at(24);
                return Ok(cipher
                    .decrypt(XNonce::from_slice(nonce), ciphertext)
                    .ok()
                    .and_then(|plain| serde_json::from_slice(&plain).ok()));
            }
        };
        text.map(|text| serde_json::from_str(&text).map_err(failed))
            .transpose()
    }

    /// Stores `data` under `id` (a new or an existing session). Returns the cookie value
    /// when the client must get a new one.
    async fn save(&self, id: &str, data: &Data) -> Result<Option<String>, Failure> {
        let text = serde_json::to_string(data).map_err(failed)?;
        match self {
            Backend::Memory(map) => {
                map.lock().unwrap().insert(id.to_owned(), data.clone());
            }
            Backend::Sqlite(table) => table.save(id, text).await?,
            Backend::Postgres(table) => table.save(id, text).await?,
            Backend::Redis(connection) => {
                redis::cmd("SET")
                    .arg(format!("floor:{id}"))
                    .arg(text)
                    .arg("EX")
                    .arg(TTL_SECONDS)
                    .query_async::<()>(&mut connection.clone())
                    .await
                    .map_err(failed)?;
            }
            Backend::Cookie(cipher) => {
                let mut nonce = [0_u8; 24];
                rand::rng().fill_bytes(&mut nonce);
                let mut sealed = nonce.to_vec();
                sealed.extend(
                    cipher
                        .encrypt(XNonce::from_slice(&nonce), text.as_bytes())
                        .map_err(failed)?,
                );
                return Ok(Some(URL_SAFE_NO_PAD.encode(sealed)));
            }
        }
        Ok(None)
    }

    /// Moves the session at `old` to a fresh ID; `None` when there was none.
    async fn rename(&self, old: &str) -> Result<Option<String>, Failure> {
        let new = new_id();
        let moved = match self {
            Backend::Memory(map) => {
                let mut map = map.lock().unwrap();
                match map.remove(old) {
                    Some(data) => map.insert(new.clone(), data).is_none(),
                    None => false,
                }
            }
            Backend::Sqlite(table) => table.rename(old, &new).await?,
            Backend::Postgres(table) => table.rename(old, &new).await?,
            Backend::Redis(connection) => redis::cmd("RENAMENX")
                .arg(format!("floor:{old}"))
                .arg(format!("floor:{new}"))
                .query_async::<bool>(&mut connection.clone())
                .await
                .unwrap_or(false),
            // A cookie session has no server-side ID; re-sealing gives the client a new
            // cookie, which is all rotation can mean there.
            Backend::Cookie(_) => {
                return match self.load(old).await? {
                    Some(data) => self.save(&new, &data).await,
                    None => Ok(None),
                }
            }
        };
        Ok(moved.then_some(new))
    }
}

/// The floor's table on SQLite or PostgreSQL. Both run the same statements (SQLite takes
/// `$N` placeholders too) through sqlx's generic API, which compiles to the same calls as
/// the driver's own types: nothing is measured that the floor did not do before.
struct SqlTable<DB: Database>(Pool<DB>);

// By hand: a derive would ask `DB: Clone`, which the database marker types are not.
impl<DB: Database> Clone for SqlTable<DB> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// How many rows a statement changed: each sqlx driver has it, but as an inherent method.
trait RowsAffected {
    fn rows(&self) -> u64;
}

impl RowsAffected for SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl<DB> SqlTable<DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    /// The live session's JSON.
    async fn load(&self, id: &str) -> Result<Option<String>, Failure> {
        sqlx::query_scalar("SELECT data FROM bench_floor WHERE id = $1 AND expires_at > $2")
            .bind(id)
            .bind(now())
            .fetch_optional(&self.0)
            .await
            .map_err(failed)
    }

    /// Writes the session's JSON, new or not, with a fresh deadline.
    async fn save(&self, id: &str, text: String) -> Result<(), Failure> {
        sqlx::query(
            "INSERT INTO bench_floor (id, data, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
        )
        .bind(id)
        .bind(text)
        .bind(now() + TTL_SECONDS)
        .execute(&self.0)
        .await
        .map_err(failed)?;
        Ok(())
    }

    /// Moves the live session at `old` to `new`: whether there was one.
    async fn rename(&self, old: &str, new: &str) -> Result<bool, Failure> {
        let renamed =
            sqlx::query("UPDATE bench_floor SET id = $1 WHERE id = $2 AND expires_at > $3")
                .bind(new)
                .bind(old)
                .bind(now())
                .execute(&self.0)
                .await
                .map_err(failed)?;
        Ok(renamed.rows() == 1)
    }
}

async fn seed(State(backend): State<Backend>) -> Result<Response, Failure> {
    let id = new_id();
    let data = json!({ COUNTER: 0, "user": "bench" });
    let Value::Object(data) = data else {
        unreachable!("a JSON object literal")
    };
    let cookie = backend.save(&id, &data).await?.unwrap_or(id);
    Ok(with_cookie(&cookie, "ok".to_owned()))
}

async fn read(State(backend): State<Backend>, headers: HeaderMap) -> Result<String, Failure> {
    let data = match cookie_value(&headers) {
        Some(id) => backend.load(id).await?,
        None => None,
    };
    Ok(data.as_ref().map_or(0, counter).to_string())
}

async fn write(State(backend): State<Backend>, headers: HeaderMap) -> Result<Response, Failure> {
    let existing = match cookie_value(&headers) {
        Some(id) => backend.load(id).await?.map(|data| (id.to_owned(), data)),
        None => None,
    };
    let fresh = existing.is_none();
    let (id, mut data) = existing.unwrap_or_else(|| (new_id(), Data::new()));
    let value = counter(&data) + 1;
    data.insert(COUNTER.to_owned(), value.into());
    Ok(match backend.save(&id, &data).await? {
        Some(cookie) => with_cookie(&cookie, value.to_string()),
        None if fresh => with_cookie(&id, value.to_string()),
        None => value.to_string().into_response(),
    })
}

async fn rotate(State(backend): State<Backend>, headers: HeaderMap) -> Result<Response, Failure> {
    let renamed = match cookie_value(&headers) {
        Some(id) => backend.rename(id).await?,
        None => None,
    };
    Ok(match renamed {
        Some(cookie) => with_cookie(&cookie, "ok".to_owned()),
        None => "ok".into_response(),
    })
}
