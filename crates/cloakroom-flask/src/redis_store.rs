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
//! A per-user index lives beside Flask's keys, one Redis set of session IDs per user under
//! a prefix Flask-Session never reads ([`FlaskRedisStore::with_index_prefix`]), so listing
//! and revoking a user's sessions read only that user's sessions, 500 at a time, pruning
//! members whose session is gone, expired or now another user's. cloakroom indexes the
//! sessions it writes; a login Flask makes is not indexed until cloakroom writes that
//! session. Flask has no absolute timeout: cloakroom keeps the one of sessions it creates,
//! in `_cloakroom`. A value Flask stored as a type
//! MessagePack cannot say in JSON (a `datetime`, an extension type, a map with non-text
//! keys) makes the session unreadable to cloakroom: it is logged and treated as absent.
//! `bytes` read as [`tagged::bytes`](crate::tagged::bytes) and write back as bytes.
//!
//! # Concurrent writes
//!
//! Flask-Session itself saves the whole dict, last write wins. cloakroom keeps its
//! guarantee against Flask's writes too. Its version counter, activity time and idle
//! deadline ride in `_cloakroom`, which Flask carries along untouched, and every value
//! cloakroom writes ends with a fingerprint of the bytes before it (the first 60 bits of
//! their SHA-1). While the bytes still match it, the counter is current; once Flask has
//! changed the dict they do not, and the record's version is the fingerprint of the bytes
//! themselves (high bit set), a version the session has not had before (barring a 60-bit
//! collision). An update reads the value, checks
//! the version, and writes in one Lua script only if the bytes are still those it read
//! (`redis.sha1hex`), moving the index entry in the same step: a Flask write in between is
//! a conflict, and cloakroom re-applies its changes to what Flask wrote. Touch, rename and
//! revocation are compare-and-sets on the bytes the same way; an update or touch costs two
//! round trips (a read and the script).

use std::time::Duration;

use async_trait::async_trait;
use cloakroom::record::{from_unix_ms, now, to_unix_ms};
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
    index_prefix: Option<String>,
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

/// A compare-and-set on the exact bytes read. KEYS: session. ARGV: SHA-1 of the value read,
/// new value ('' keeps the value and only moves the TTL), TTL in ms ('0': none), index
/// member, old user's set (''), new user's set (''). Returns 2 when written, 1 when the
/// value changed since it was read, 0 when it is gone.
const CAS: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if redis.sha1hex(current) ~= ARGV[1] then return 1 end
if ARGV[2] ~= '' then
  if ARGV[3] == '0' then
    redis.call('SET', KEYS[1], ARGV[2])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
elseif ARGV[3] == '0' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[5] ~= '' and ARGV[5] ~= ARGV[6] then redis.call('SREM', ARGV[5], ARGV[4]) end
if ARGV[6] ~= '' then redis.call('SADD', ARGV[6], ARGV[4]) end
return 2
";

/// KEYS: session. ARGV: value, TTL in ms ('0': none), member, user's set ('').
/// Returns 1 when created, 0 when the key exists.
const INSERT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if ARGV[4] ~= '' then redis.call('SADD', ARGV[4], ARGV[3]) end
return 1
";

/// KEYS: old, new. ARGV: SHA-1 of the old value read, old member, new member, user's set
/// (''). Returns 2 when renamed, 1 when the old value changed since it was read, 3 when the
/// new key is taken, 0 when the old one is gone.
const RENAME: &str = r"
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if redis.sha1hex(value) ~= ARGV[1] then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 3 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[2], value, 'PX', ttl)
else
  redis.call('SET', KEYS[2], value)
end
redis.call('DEL', KEYS[1])
if ARGV[4] ~= '' then
  redis.call('SREM', ARGV[4], ARGV[2])
  redis.call('SADD', ARGV[4], ARGV[3])
end
return 2
";

/// KEYS: session. ARGV: member, user's set (''). Returns the number of keys deleted.
const DELETE: &str = r"
local n = redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then redis.call('SREM', ARGV[2], ARGV[1]) end
return n
";

/// One batch of index upkeep. KEYS: user's set. ARGV: key prefix, then triples of member,
/// SHA-1 of the value read ('' when there was none), and whether to delete the session and
/// count it ('1'), delete it uncounted ('2': dead or unreadable) or only drop the member
/// ('0'), each only if the value is still the one read.
/// Returns {sessions deleted, members whose value changed or went since it was read}.
const PRUNE: &str = r"
local deleted, changed = 0, 0
for j = 2, #ARGV, 3 do
  local key = ARGV[1] .. ARGV[j]
  local current = redis.call('GET', key)
  if not current then
    redis.call('SREM', KEYS[1], ARGV[j])
    if ARGV[j + 1] ~= '' then changed = changed + 1 end
  elseif redis.sha1hex(current) == ARGV[j + 1] then
    if ARGV[j + 2] ~= '0' then redis.call('DEL', key) end
    if ARGV[j + 2] == '1' then deleted = deleted + 1 end
    redis.call('SREM', KEYS[1], ARGV[j])
  else
    changed = changed + 1
  end
end
return {deleted, changed}
";

/// The high bit marks a version read from bytes Flask wrote: their fingerprint, never a
/// counter cloakroom started.
const FLASK_WRITTEN: u64 = 1 << 63;
/// Hex digits of the self-fingerprint closing every value cloakroom writes.
const TAIL: usize = 15;
/// A TTL this much later than the deadline cloakroom wrote was refreshed by Flask.
const REFRESH_SLACK: Duration = Duration::from_secs(2);
/// Compare-and-set attempts before an operation gives up on a value that keeps changing.
const ATTEMPTS: usize = 16;

/// A session value as read: its bytes, their SHA-1 (hex, as `redis.sha1hex` gives it) and
/// the record, if readable.
struct Read {
    sha: String,
    record: Result<Record, StoreError>,
}

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
            index_prefix: None,
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

    /// Where the per-user index sets live (default `cloakroom:` and the session prefix, then
    /// `user:`, a prefix Flask-Session never reads): one Redis set of session IDs per user.
    pub fn with_index_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.index_prefix = Some(prefix.into());
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

    /// The Redis set indexing `user`'s sessions.
    fn user_set(&self, user: &str) -> String {
        match &self.index_prefix {
            Some(prefix) => format!("{prefix}{user}"),
            None => format!("cloakroom:{}user:{user}", self.prefix),
        }
    }

    fn user_set_of(&self, record: &Record) -> String {
        record
            .user_id
            .as_deref()
            .map(|user| self.user_set(user))
            .unwrap_or_default()
    }

    /// The index member of a session: its ID, the tail of its Redis key.
    fn member(key: &StoreKey) -> String {
        SessionId::from_reversible_key(key).to_cookie_value()
    }

    /// The session dict in MessagePack, `_cloakroom` last with the activity time, the idle
    /// deadline and, closing the value, a fingerprint of every byte before it: bytes that
    /// still match it are exactly as cloakroom wrote them (or as Flask wrote back an
    /// unchanged dict), so the version counter in `_cloakroom` is current.
    fn encode(&self, record: &Record) -> Result<Vec<u8>, StoreError> {
        let mut session = dict::to_dict(None, record, &self.user_key)
            .map_err(|error| StoreError::backend(error.to_string()))?;
        let meta = session.remove(dict::META_KEY);
        let mut entries: Vec<(rmpv::Value, rmpv::Value)> = session
            .iter()
            .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v)))
            .collect();
        let mut meta: Vec<(rmpv::Value, rmpv::Value)> = match meta {
            Some(Value::Object(meta)) => meta
                .iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v)))
                .collect(),
            _ => Vec::new(),
        };
        meta.push(("l".into(), to_unix_ms(record.last_active_at).into()));
        if let Some(idle) = record.idle_deadline {
            meta.push(("i".into(), to_unix_ms(idle).into()));
        }
        meta.push(("h".into(), "0".repeat(TAIL).as_str().into()));
        entries.push((dict::META_KEY.into(), rmpv::Value::Map(meta)));
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &rmpv::Value::Map(entries))
            .map_err(StoreError::backend)?;
        // The placeholder is a 15-character string, the last thing written.
        let body = out.len() - TAIL;
        let seal = fingerprint_hex(fingerprint(&out[..body]));
        out[body..].copy_from_slice(seal.as_bytes());
        Ok(out)
    }

    /// The record in `bytes`, whose key has `pttl` milliseconds to live.
    fn decode(&self, bytes: &[u8], pttl: i64, time: OffsetDateTime) -> Result<Record, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("Flask-Session value: {why}"));
        let sealed = bytes.len() > TAIL
            && fingerprint_hex(fingerprint(&bytes[..bytes.len() - TAIL])).as_bytes()
                == &bytes[bytes.len() - TAIL..];
        let value =
            rmpv::decode::read_value(&mut &bytes[..]).map_err(|_| corrupt("not MessagePack"))?;
        let Value::Object(session) =
            from_msgpack(&value).ok_or_else(|| corrupt("a type JSON has no form for"))?
        else {
            return Err(corrupt("not a dict"));
        };
        let ms = |meta: &Map<String, Value>, field: &str| {
            meta.get(field)
                .and_then(Value::as_i64)
                .and_then(from_unix_ms)
        };
        let (last, idle, absolute) = match session.get(dict::META_KEY) {
            Some(Value::Object(meta)) => (ms(meta, "l"), ms(meta, "i"), ms(meta, "a")),
            _ => (None, None, None),
        };
        let ttl_deadline = (pttl >= 0).then(|| time + Duration::from_millis(pttl.unsigned_abs()));
        // Flask-Session re-sets the TTL to the lifetime on every write: the last activity
        // is that far before the deadline.
        let from_ttl = |deadline: OffsetDateTime| (deadline - self.lifetime).min(time);
        let (last_active, idle_deadline) = match (sealed, last) {
            (true, Some(last)) => {
                let written = match (idle, absolute) {
                    (Some(i), Some(a)) => Some(i.min(a)),
                    (i, a) => i.or(a),
                };
                match (ttl_deadline, written) {
                    // Flask saved the unchanged dict again and moved the TTL on.
                    (Some(ttl), Some(written)) if ttl > written + REFRESH_SLACK => {
                        (from_ttl(ttl).max(last), Some(ttl))
                    }
                    _ => (last, idle),
                }
            }
            _ => (ttl_deadline.map_or(time, from_ttl), ttl_deadline),
        };
        let (_, mut record) = dict::from_dict(session, &self.user_key, last_active, idle_deadline)
            .ok_or_else(|| corrupt("a tagged value Flask cannot read"))?;
        record.created_at = record.created_at.min(last_active);
        if !sealed || last.is_none() {
            // Flask changed the dict: the counter it carried along is stale, and the
            // fingerprint of these bytes is a version no other value has.
            record.version = FLASK_WRITTEN | fingerprint(bytes);
        }
        Ok(record)
    }

    /// The session value under `key` (`None`: absent), decoded at `time`.
    async fn read(&self, key: &StoreKey, time: OffsetDateTime) -> Result<Option<Read>, StoreError> {
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
        Ok(bytes.map(|bytes| Read {
            sha: sha1_hex(&bytes),
            record: self.decode(&bytes, pttl, time),
        }))
    }

    /// Runs the compare-and-set script; `Ok(None)`: the value changed since it was read.
    async fn cas(
        &self,
        key: &StoreKey,
        sha: &str,
        value: &[u8],
        ttl: Option<u64>,
        old_set: &str,
        new_set: &str,
    ) -> Result<Option<bool>, StoreError> {
        let mut connection = self.connection.clone();
        let script = redis::Script::new(CAS);
        let mut invocation = script.key(self.redis_key(key));
        invocation
            .arg(sha)
            .arg(value)
            .arg(ttl.unwrap_or(0))
            .arg(Self::member(key))
            .arg(old_set)
            .arg(new_set);
        let outcome: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
        Ok(match outcome {
            2 => Some(true),
            1 => None,
            _ => Some(false),
        })
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

impl FlaskRedisStore {
    /// One pass over `user`'s index set, a batch of members at a time (one `SSCAN`, one
    /// read of the batch and at most one upkeep script each): calls `each` with every live
    /// session of the user, and prunes members naming a session that is gone, dead or
    /// another user's. With `revoke`, deletes the user's sessions but `except` (an
    /// unreadable one too: the index says it was the user's) instead of listing them.
    /// Returns (sessions deleted, members that changed under the pass).
    async fn user_pass(
        &self,
        user: &str,
        revoke: Option<Option<&StoreKey>>,
        mut each: impl FnMut(SessionEntry),
    ) -> Result<(u64, u64), StoreError> {
        let set = self.user_set(user);
        let except = revoke.flatten().map(Self::member);
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        let (mut deleted, mut changed) = (0, 0);
        loop {
            let (next, members): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SSCAN")
                        .arg(&set)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(SCAN_BATCH)
                        .query_async(&mut connection),
                )
                .await?;
            let members: Vec<(String, StoreKey)> = members
                .into_iter()
                .filter(|member| Some(member) != except.as_ref())
                .filter_map(|member| {
                    let key = SessionId::parse(&member)?.with_reversible_key().store_key();
                    Some((member, key))
                })
                .collect();
            if !members.is_empty() {
                let mut pipe = redis::pipe();
                for (member, _) in &members {
                    let redis_key = format!("{}{member}", self.prefix);
                    pipe.get(&redis_key).cmd("PTTL").arg(&redis_key);
                }
                let values: Vec<(Option<Vec<u8>>, i64)> =
                    self.run(pipe.query_async(&mut connection)).await?;
                let time = now();
                let script = redis::Script::new(PRUNE);
                let mut prune = script.key(&set);
                prune.arg(&self.prefix);
                let mut pruning = false;
                for ((member, key), (bytes, pttl)) in members.into_iter().zip(values) {
                    let Some(bytes) = bytes else {
                        // Gone since the scan: perhaps renamed, its new member added
                        // where this scan may not look; another pass will.
                        changed += 1;
                        prune.arg(member).arg("").arg("0");
                        pruning = true;
                        continue;
                    };
                    let record = self.decode(&bytes, pttl, time);
                    let mine = match &record {
                        Ok(record) => record.user_id.as_deref() == Some(user),
                        Err(_) => true,
                    };
                    let live = record.as_ref().is_ok_and(|record| record.is_live_at(time));
                    let verdict = match (revoke.is_some(), mine, live) {
                        (true, true, true) => Some("1"),
                        (true, true, false) => Some("2"),
                        (false, true, true) => None,
                        (false, true, false) => Some("0"),
                        (_, false, _) => Some("0"),
                    };
                    match (verdict, record) {
                        (None, Ok(record)) => each(SessionEntry { key, record }),
                        (None, Err(_)) => {}
                        (Some(delete), _) => {
                            prune.arg(member).arg(sha1_hex(&bytes)).arg(delete);
                            pruning = true;
                        }
                    }
                }
                if pruning {
                    let (gone, moved): (u64, u64) =
                        self.run(prune.invoke_async(&mut connection)).await?;
                    deleted += gone;
                    changed += moved;
                }
            }
            if next == 0 {
                return Ok((deleted, changed));
            }
            cursor = next;
        }
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

/// SHA-1 in hex, as `redis.sha1hex` writes it.
fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
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
        let script = redis::Script::new(INSERT);
        let mut invocation = script.key(self.redis_key(key));
        invocation
            .arg(bytes)
            .arg(Self::ttl_ms(record, time).unwrap_or(0))
            .arg(Self::member(key))
            .arg(self.user_set_of(record));
        let created: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
        if created == 1 {
            Ok(())
        } else {
            Err(InsertError::Duplicate)
        }
    }

    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), UpdateError> {
        // Read, check the version, then write only if the bytes are still the ones read:
        // the value holds the version and the absolute deadline, so the decision is made
        // on them, and a touch in between only costs another round.
        for _ in 0..ATTEMPTS {
            let time = now();
            let Some(read) = self.read(key, time).await? else {
                return Err(UpdateError::Missing);
            };
            let stored = read.record?;
            if !stored.is_live_at(time) {
                return Err(UpdateError::Missing);
            }
            if stored.version != expected_version {
                return Err(UpdateError::Conflict);
            }
            let mut next = record.clone();
            next.absolute_deadline = stored.absolute_deadline;
            next.version = expected_version.wrapping_add(1);
            let bytes = self.encode(&next)?;
            let old_set = self.user_set_of(&stored);
            let new_set = self.user_set_of(&next);
            let ttl = Self::ttl_ms(&next, time);
            match self
                .cas(key, &read.sha, &bytes, ttl, &old_set, &new_set)
                .await?
            {
                Some(true) => return Ok(()),
                Some(false) => return Err(UpdateError::Missing),
                None => {}
            }
        }
        Err(UpdateError::Conflict)
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        for _ in 0..ATTEMPTS {
            let time = now();
            let Some(read) = self.read(key, time).await? else {
                return Err(TouchError::Missing);
            };
            let mut record = read.record?;
            if !record.is_live_at(time) {
                return Err(TouchError::Missing);
            }
            let flask_written = record.version & FLASK_WRITTEN != 0;
            record.apply_touch(touch);
            // Bytes Flask wrote keep their fingerprint, the version: only the TTL moves.
            let bytes = if flask_written {
                Vec::new()
            } else {
                self.encode(&record)?
            };
            let ttl = Self::ttl_ms(&record, time);
            let set = self.user_set_of(&record);
            match self.cas(key, &read.sha, &bytes, ttl, &set, &set).await? {
                Some(true) => return Ok(()),
                Some(false) => return Err(TouchError::Missing),
                None => {}
            }
        }
        Err(TouchError::Store(StoreError::backend(
            "the session kept changing during a touch",
        )))
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        for _ in 0..ATTEMPTS {
            let time = now();
            let Some(read) = self.read(old, time).await? else {
                return Err(RenameError::Missing);
            };
            let record = read.record?;
            if !record.is_live_at(time) {
                return Err(RenameError::Missing);
            }
            let mut connection = self.connection.clone();
            let script = redis::Script::new(RENAME);
            let mut invocation = script.key(self.redis_key(old));
            invocation
                .key(self.redis_key(new))
                .arg(&read.sha)
                .arg(Self::member(old))
                .arg(Self::member(new))
                .arg(self.user_set_of(&record));
            let outcome: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
            match outcome {
                2 => return Ok(()),
                3 => return Err(RenameError::Duplicate),
                0 => return Err(RenameError::Missing),
                _ => {}
            }
        }
        Err(RenameError::Store(StoreError::backend(
            "the session kept changing during a rename",
        )))
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let set = match self.read(key, now()).await? {
            Some(Read {
                record: Ok(record), ..
            }) => self.user_set_of(&record),
            _ => String::new(),
        };
        let mut connection = self.connection.clone();
        let script = redis::Script::new(DELETE);
        let mut invocation = script.key(self.redis_key(key));
        invocation.arg(Self::member(key)).arg(set);
        let deleted: i64 = self.run(invocation.invoke_async(&mut connection)).await?;
        Ok(deleted > 0)
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = Vec::new();
        self.user_pass(user, None, |entry| entries.push(entry))
            .await?;
        entries.sort_by_key(|entry| entry.key);
        Ok(entries)
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        // A rename moves its index entry in the same script as the session, so a session
        // renamed during a pass is found by the next one; passes go on until one finds
        // nothing to delete.
        let mut total = 0;
        for _ in 0..ATTEMPTS {
            let (deleted, changed) = self.user_pass(user, Some(except), |_| {}).await?;
            total += deleted;
            if deleted == 0 && changed == 0 {
                return Ok(total);
            }
        }
        Ok(total)
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
