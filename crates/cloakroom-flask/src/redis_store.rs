//! Flask-Session's server-side sessions in Redis (`SESSION_TYPE = "redis"`, Flask-Session
//! 0.8), read and written in its own layout.
//!
//! - The cookie (`session` by default) carries the session ID: `secrets.token_urlsafe(32)`,
//!   43 characters, the same shape as a cloakroom ID. With `SESSION_USE_SIGNER` it is
//!   `ID.SIGNATURE`, itsdangerous' `Signer` with the salt `flask-session` over the app's
//!   `SECRET_KEY` ([`FlaskSessionIds::signed`]).
//! - Redis holds `session:ID` (`SESSION_KEY_PREFIX`): the session dict in MessagePack
//!   (`SESSION_SERIALIZATION_FORMAT = "msgpack"`, the default), with a TTL of
//!   `PERMANENT_SESSION_LIFETIME` from the last write.
//!
//! # What sharing costs
//!
//! **The raw session ID is the Redis key**, because that is where Flask-Session looks.
//! cloakroom's hashing at rest cannot apply while both apps share the sessions: a Redis
//! dump, replica or backup is a list of valid cookies. The store sees a reversible key
//! ([`SessionId::with_reversible_key`]), so handles and logs still never show an ID. Once
//! the Flask app is gone, move to cloakroom's own layout (README, *Migrating from Flask*).
//!
//! Also, as in Flask-Session: there is no per-user index, so listing or revoking a user's
//! sessions scans every `session:*` key (`SCAN`, 500 at a time): fine for an admin command,
//! slow on a request path with many sessions. Flask has no absolute timeout: cloakroom
//! keeps the one of sessions it creates, in `_cloakroom`. A value Flask stored as a type
//! MessagePack cannot say in JSON (a `datetime`, an extension type, a map with non-text
//! keys) makes the session unreadable to cloakroom: it is logged and treated as absent.
//! `bytes` read as [`tagged::bytes`](crate::tagged::bytes) and write back as bytes.
//!
//! # Concurrent writes
//!
//! Flask-Session itself saves the whole dict, last write wins. cloakroom keeps its
//! guarantee against Flask's writes too: a record's version is a fingerprint of the bytes
//! stored (the first 60 bits of their SHA-1, as Redis' `redis.sha1hex` computes it), and
//! an update is a compare-and-set on it in one Lua script; a Flask write between a load
//! and an update is a conflict, and cloakroom re-applies its changes to what Flask wrote.

use std::time::Duration;

use async_trait::async_trait;
use cloakroom::record::now;
use cloakroom::{
    IdFormat, InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionId,
    SessionStore, StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use redis::aio::ConnectionManager;
use serde_json::{Map, Number, Value};
use sha1::{Digest, Sha1};
use time::OffsetDateTime;

use crate::dict;
use crate::itsdangerous::Signer;
use crate::tagged;

/// Flask-Session's default `SESSION_KEY_PREFIX`.
pub const DEFAULT_PREFIX: &str = "session:";
/// Flask-Session's salt for signed session IDs.
pub const SIGNER_SALT: &str = "flask-session";
/// Keys a `SCAN` step asks for.
const SCAN_BATCH: usize = 500;

/// How Flask-Session writes the ID in its cookie: as it is, or signed
/// (`SESSION_USE_SIGNER`). Give it to
/// [`SessionManager::with_id_format`](cloakroom::SessionManager::with_id_format).
#[derive(Clone, Debug)]
pub struct FlaskSessionIds {
    signer: Option<Signer>,
}

impl FlaskSessionIds {
    /// IDs as they are (`SESSION_USE_SIGNER = False`, the default).
    pub fn unsigned() -> Self {
        Self { signer: None }
    }

    /// IDs signed with the app's `SECRET_KEY` (`SESSION_USE_SIGNER = True`). Flask-Session
    /// accepts no fallback keys here.
    pub fn signed(secret_key: impl AsRef<[u8]>) -> Self {
        Self {
            signer: Some(Signer::new(SIGNER_SALT, secret_key.as_ref(), [])),
        }
    }
}

impl IdFormat for FlaskSessionIds {
    fn decode<'v>(&self, value: &'v str) -> Option<std::borrow::Cow<'v, str>> {
        match &self.signer {
            None => Some(value.into()),
            Some(signer) => signer.unsign(value).map(|(id, _)| id.into()),
        }
    }

    fn encode(&self, id: &str) -> String {
        match &self.signer {
            None => id.to_owned(),
            Some(signer) => signer.sign(id),
        }
    }

    fn reversible_store_keys(&self) -> bool {
        true
    }
}

/// Flask-Session's Redis layout as a cloakroom [`SessionStore`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use cloakroom::{SessionConfig, SessionLayer, SessionManager};
/// use cloakroom_flask::{FlaskRedisStore, FlaskSessionIds};
///
/// let store = FlaskRedisStore::connect("redis://127.0.0.1:6379").await?;
/// let config = store.session_config(SessionConfig::default());
/// let manager = SessionManager::new(store, config)?
///     .with_id_format(Arc::new(FlaskSessionIds::signed("the Flask app's SECRET_KEY")));
/// let layer = SessionLayer::from_manager(Arc::new(manager));
/// # let _: axum::Router = axum::Router::new().layer(layer);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FlaskRedisStore {
    connection: ConnectionManager,
    prefix: String,
    user_key: String,
    lifetime: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for FlaskRedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlaskRedisStore")
            .field("prefix", &self.prefix)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

const UPDATE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if string.sub(redis.sha1hex(current), 1, 15) ~= ARGV[1] then return 1 end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 2
";

const RENAME: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[2], value, 'PX', ttl)
else
  redis.call('SET', KEYS[2], value)
end
redis.call('DEL', KEYS[1])
return 2
";

impl FlaskRedisStore {
    /// Connects to the Redis Flask-Session uses (`SESSION_REDIS`), with its defaults.
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            user_key: dict::DEFAULT_USER_KEY.to_owned(),
            lifetime: crate::cookie::DEFAULT_LIFETIME,
            timeout: Duration::from_secs(5),
        })
    }

    /// Flask-Session's `SESSION_KEY_PREFIX` (default `session:`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The session key holding the user id (default `_user_id`, as Flask-Login keeps it).
    pub fn with_user_key(mut self, key: impl Into<String>) -> Self {
        self.user_key = key.into();
        self
    }

    /// Flask's `PERMANENT_SESSION_LIFETIME` (default 31 days), Flask-Session's TTL.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// `base` with the cookie name `session` and an idle timeout equal to the lifetime,
    /// as Flask-Session sets its TTL.
    pub fn session_config(&self, base: cloakroom::SessionConfig) -> cloakroom::SessionConfig {
        let cookie = base
            .cookie
            .clone()
            .with_name(crate::cookie::DEFAULT_COOKIE_NAME);
        let expiry = base.expiry.clone().with_idle_timeout(Some(self.lifetime));
        base.with_cookie(cookie).with_expiry(expiry)
    }

    /// The Redis key of a session: the prefix and the raw ID, as Flask-Session names it.
    fn redis_key(&self, key: &StoreKey) -> String {
        format!(
            "{}{}",
            self.prefix,
            SessionId::from_reversible_key(key).to_cookie_value()
        )
    }

    /// The store key of a Redis key, if it names a session ID of the usual shape.
    fn store_key(&self, redis_key: &str) -> Option<StoreKey> {
        let id = redis_key.strip_prefix(&self.prefix)?;
        Some(SessionId::parse(id)?.with_reversible_key().store_key())
    }

    async fn run<T>(
        &self,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::unavailable(error)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    fn encode(&self, record: &Record) -> Result<Vec<u8>, StoreError> {
        let session = dict::to_dict(None, record, &self.user_key)
            .map_err(|error| StoreError::backend(error.to_string()))?;
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &to_msgpack(&Value::Object(session)))
            .map_err(StoreError::backend)?;
        Ok(out)
    }

    /// The record in `bytes`, whose key has `pttl` milliseconds to live.
    fn decode(&self, bytes: &[u8], pttl: i64, time: OffsetDateTime) -> Result<Record, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("Flask-Session value: {why}"));
        let value =
            rmpv::decode::read_value(&mut &bytes[..]).map_err(|_| corrupt("not MessagePack"))?;
        let Value::Object(session) =
            from_msgpack(&value).ok_or_else(|| corrupt("a type JSON has no form for"))?
        else {
            return Err(corrupt("not a dict"));
        };
        let idle_deadline = (pttl >= 0).then(|| time + Duration::from_millis(pttl.unsigned_abs()));
        // Flask-Session re-sets the TTL to the lifetime on every write: the last activity
        // is that far before the deadline.
        let last_active =
            idle_deadline.map_or(time, |deadline| (deadline - self.lifetime).min(time));
        let (_, mut record) = dict::from_dict(session, &self.user_key, last_active, idle_deadline)
            .ok_or_else(|| corrupt("a tagged value Flask cannot read"))?;
        record.created_at = record.created_at.min(last_active);
        record.version = fingerprint(bytes);
        Ok(record)
    }

    /// Milliseconds until `record` expires, at least 1; `None`: it does not expire.
    fn ttl_ms(record: &Record, time: OffsetDateTime) -> Option<u64> {
        record.expires_at().map(|deadline| {
            u64::try_from((deadline - time).whole_milliseconds())
                .unwrap_or(0)
                .max(1)
        })
    }

    /// Every session key under the prefix, in `SCAN` batches.
    async fn scan_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{}*", glob_escape(&self.prefix)))
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async(&mut connection),
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Every live, readable session, in key order.
    async fn all_sessions(&self) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = Vec::new();
        for redis_key in self.scan_keys().await? {
            let Some(key) = self.store_key(&redis_key) else {
                continue;
            };
            match self.load(&key).await {
                Ok(Some(record)) => entries.push(SessionEntry { key, record }),
                Ok(None) | Err(StoreError::Corrupt(_)) => {}
                Err(error) => return Err(error),
            }
        }
        entries.sort_by_key(|entry| entry.key);
        Ok(entries)
    }
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The version of stored bytes: the first 15 hex digits of their SHA-1, which the update
/// script computes the same way with `redis.sha1hex`.
fn fingerprint(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head) >> 4
}

fn fingerprint_hex(version: u64) -> String {
    format!("{version:015x}")
}

/// MessagePack as msgspec decodes it, into cloakroom's JSON: `bytes` become
/// [`tagged::bytes`]; `None` for what JSON cannot hold.
fn from_msgpack(value: &rmpv::Value) -> Option<Value> {
    Some(match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(*b),
        rmpv::Value::Integer(n) => match (n.as_i64(), n.as_u64()) {
            (Some(n), _) => Value::from(n),
            (None, Some(n)) => Value::from(n),
            _ => return None,
        },
        rmpv::Value::F32(f) => Value::Number(Number::from_f64(f64::from(*f))?),
        rmpv::Value::F64(f) => Value::Number(Number::from_f64(*f)?),
        rmpv::Value::String(text) => Value::String(text.as_str()?.to_owned()),
        rmpv::Value::Binary(data) => tagged::bytes(data),
        rmpv::Value::Array(items) => {
            Value::Array(items.iter().map(from_msgpack).collect::<Option<_>>()?)
        }
        rmpv::Value::Map(pairs) => {
            let mut map = Map::new();
            for (key, value) in pairs {
                map.insert(key.as_str()?.to_owned(), from_msgpack(value)?);
            }
            Value::Object(map)
        }
        rmpv::Value::Ext(..) => return None,
    })
}

/// cloakroom's JSON as MessagePack msgspec decodes to the same Python values: tagged
/// bytes as `bin`, tuples as arrays, the other tags as text (what msgspec makes of them).
fn to_msgpack(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(n), _, _) => rmpv::Value::from(n),
            (None, Some(n), _) => rmpv::Value::from(n),
            (_, _, f) => rmpv::Value::F64(f.unwrap_or_default()),
        },
        Value::String(text) => rmpv::Value::from(text.as_str()),
        Value::Array(items) => rmpv::Value::Array(items.iter().map(to_msgpack).collect()),
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(text)) = map.get(" b") {
                    if let Ok(data) =
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
                    {
                        return rmpv::Value::Binary(data);
                    }
                }
                if map.keys().any(|key| tagged::TAGS.contains(&key.as_str())) {
                    return to_msgpack(&tagged::untag(value));
                }
            }
            rmpv::Value::Map(
                map.iter()
                    .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v)))
                    .collect(),
            )
        }
    }
}

#[async_trait]
impl SessionStore for FlaskRedisStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let mut connection = self.connection.clone();
        let redis_key = self.redis_key(key);
        let (bytes, pttl): (Option<Vec<u8>>, i64) = self
            .run(
                redis::pipe()
                    .atomic()
                    .get(&redis_key)
                    .cmd("PTTL")
                    .arg(&redis_key)
                    .query_async(&mut connection),
            )
            .await?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let time = now();
        let record = self.decode(&bytes, pttl, time)?;
        Ok(record.is_live_at(time).then_some(record))
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        let time = now();
        let bytes = self.encode(record)?;
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command.arg(self.redis_key(key)).arg(bytes).arg("NX");
        if let Some(ttl) = Self::ttl_ms(record, time) {
            command.arg("PX").arg(ttl);
        }
        let set: Option<String> = self.run(command.query_async(&mut connection)).await?;
        set.map(|_| ()).ok_or(InsertError::Duplicate)
    }

    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), UpdateError> {
        let time = now();
        let bytes = self.encode(record)?;
        // 0: no expiry (ttl_ms is at least 1 otherwise).
        let ttl = Self::ttl_ms(record, time).unwrap_or(0);
        let mut connection = self.connection.clone();
        let script = redis::Script::new(UPDATE);
        let mut invocation = script.key(self.redis_key(key));
        invocation
            .arg(fingerprint_hex(expected_version))
            .arg(bytes)
            .arg(ttl);
        let outcome: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
        match outcome {
            2 => Ok(()),
            1 => Err(UpdateError::Conflict),
            _ => Err(UpdateError::Missing),
        }
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        // The absolute deadline lives inside the value: read it, then move the TTL (a
        // lost race only leaves the TTL a write just set).
        let Some(mut record) = self.load(key).await? else {
            return Err(TouchError::Missing);
        };
        record.apply_touch(touch);
        let time = now();
        let mut connection = self.connection.clone();
        let moved: i64 = match Self::ttl_ms(&record, time) {
            Some(ttl) => {
                self.run(
                    redis::cmd("PEXPIRE")
                        .arg(self.redis_key(key))
                        .arg(ttl)
                        .query_async(&mut connection),
                )
                .await?
            }
            None => self
                .run(
                    redis::cmd("PERSIST")
                        .arg(self.redis_key(key))
                        .query_async::<i64>(&mut connection),
                )
                .await
                .map(|_| 1)?,
        };
        if moved == 1 {
            Ok(())
        } else {
            Err(TouchError::Missing)
        }
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        let mut connection = self.connection.clone();
        let script = redis::Script::new(RENAME);
        let mut invocation = script.key(self.redis_key(old));
        invocation.key(self.redis_key(new));
        let outcome: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
        match outcome {
            2 => Ok(()),
            1 => Err(RenameError::Duplicate),
            _ => Err(RenameError::Missing),
        }
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let deleted: i64 = self
            .run(
                redis::cmd("DEL")
                    .arg(self.redis_key(key))
                    .query_async(&mut connection),
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = self.all_sessions().await?;
        entries.retain(|entry| entry.record.user_id.as_deref() == Some(user));
        Ok(entries)
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for entry in self.list_for_user(user).await? {
            if Some(&entry.key) != except && self.delete(&entry.key).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn purge_expired(&self, _batch: usize) -> Result<u64, StoreError> {
        // Redis expires keys itself.
        Ok(0)
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        Ok(self
            .all_sessions()
            .await?
            .into_iter()
            .find(|entry| handle.matches(&entry.key)))
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = self.all_sessions().await?;
        entries.retain(|entry| {
            query
                .user
                .as_ref()
                .is_none_or(|user| entry.record.user_id.as_ref() == Some(user))
                && query.after.is_none_or(|after| entry.key > after)
        });
        entries.truncate(query.limit);
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_redis_sha1hex() {
        // sha1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d
        assert_eq!(fingerprint_hex(fingerprint(b"abc")), "a9993e364706816");
    }

    #[test]
    fn msgpack_round_trips_with_bytes_tagged() {
        let json = serde_json::json!({"a": [1, -2, 1.5, null, true, "t"], "b": tagged::bytes(b"\x00\x01")});
        let packed = to_msgpack(&json);
        assert!(
            matches!(&packed, rmpv::Value::Map(pairs) if pairs.iter().any(|(_, v)| matches!(v, rmpv::Value::Binary(_))))
        );
        assert_eq!(from_msgpack(&packed), Some(json));
        assert_eq!(from_msgpack(&rmpv::Value::Ext(-1, vec![0; 4])), None);
    }

    #[test]
    fn flask_sessions_msgpack_reads_and_writes_back_the_same_python_values() {
        use base64::Engine;
        let vectors: Value =
            serde_json::from_str(include_str!("../tests/fixtures/vectors.json")).unwrap();
        let packed = base64::engine::general_purpose::STANDARD
            .decode(vectors["flask_session"]["msgpack_b64"].as_str().unwrap())
            .unwrap();
        let value = rmpv::decode::read_value(&mut &packed[..]).unwrap();
        let json = from_msgpack(&value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"_permanent": true, "_user_id": "alice", "cart": ["apple"], "n": 3, "f": 1.5,
                "note": "caf\u{e9}", "raw": tagged::bytes(b"\x00\x01"), "tuple": [1, 2], "none": null})
        );
        // Written back, it is the same MessagePack value (keys in another order).
        let Some(rmpv::Value::Map(mut again)) = Some(to_msgpack(&json)) else {
            unreachable!()
        };
        let rmpv::Value::Map(mut original) = value else {
            unreachable!()
        };
        let by_key = |pairs: &mut Vec<(rmpv::Value, rmpv::Value)>| {
            pairs.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()))
        };
        by_key(&mut again);
        by_key(&mut original);
        assert_eq!(again, original);
    }
}
