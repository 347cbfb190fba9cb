//! [`RedisStore`]: the store contract on Redis or Redis Cluster.

use std::time::Duration;

use async_trait::async_trait;
use cloakroom::record::{now, to_unix_ms};
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use redis::{AsyncCommands, ConnectionInfo, RedisError};
use time::OffsetDateTime;

use crate::connection::Connection;
use crate::scripts::{self, Call};

mod admin;
mod hash;
mod per_user;
mod replication;
mod setup;

#[cfg(feature = "testing")]
pub(crate) use admin::literal_pattern;
use hash::{decode, encode, ms, FIELDS};
pub use replication::NotReplicated;
use replication::WaitForReplicas;
pub use setup::{RedisConfig, SetupError};

/// A session store on Redis (single node) or Redis Cluster.
///
/// Guarantees:
/// - Every atomic operation (insert-if-absent, compare-and-set update, touch, rename on a
///   single node, delete with its index entry on a single node) is one server-side script:
///   one round trip. `load` is one `HMGET`.
/// - A session is one key (hashed: `PREFIX s:{HEX}`), expiring natively at its earlier
///   deadline; `load` still checks the deadline itself.
/// - The per-user index is a set per user (`PREFIX u:{USER}`); dead members are removed
///   lazily, and listings never return a dead session.
/// - Listing and revoking a user's sessions go in batches of a few hundred index members,
///   each batch one round trip (one script on a single node) under its own timeout, and
///   each batch's work stays done (revoked sessions and pruned members leave the index
///   with it): they finish whatever the number of sessions, and a retry resumes.
/// - On a single node, revoking and renaming are each atomic scripts over the index, so a
///   session renamed during "revoke others" is revoked under its new key.
/// - A damaged record (undecodable fields) is skipped by listings (logged), removed by
///   revocation, and fails `load` with [`StoreError::Corrupt`], which the session layer
///   treats as absent.
///
/// In a cluster, a session's key and its user's set live in different slots, so:
/// - the index entry is added *after* the session is written, and a revocation deletes
///   the session key itself (`DEL`, immediate) before it touches the index: a revoked
///   session can never be loaded again;
/// - a session being logged in at the very moment its user is revoked everywhere may
///   survive that revocation (exactly as with a login that lands just after it), and is
///   in the index when the login returns, so the next revocation finds it;
/// - `rename` copies the session to the new key and indexes it, then deletes the old key
///   only at the version it copied (retrying if a concurrent write moved it), and removes
///   the copy if the old session was deleted meanwhile: no session is lost and none is
///   resurrected, and a revocation that has already passed the old key still finds the
///   new one (it runs until the index holds nothing but the kept session).
///
/// Replication and failover (Redis Cluster, or a primary with replicas):
/// - Redis replicates asynchronously: a write the primary acknowledged can be missing on
///   the replica promoted after a crash (a logout or revocation undone, a login gone).
///   [`with_wait_for_replicas`](RedisStore::with_wait_for_replicas) makes every write wait
///   for replicas and fail with [`NotReplicated`] instead of acknowledging what a failover
///   would lose.
/// - When a primary dies, its shard's sessions fail (503) until a replica takes over, in
///   about `cluster-node-timeout` plus an election; sessions on other shards keep working.
///   Measured on loopback (`tests/failover/`, node timeout 1 s, a primary killed with
///   `SIGKILL` under load): its sessions wrote again after 3.2 to 3.4 s, the other shards
///   served thousands of writes meanwhile with about 20 failed (during the client's
///   topology refresh), and no acknowledged write was lost, with or without `WAIT`
///   (replication on loopback outruns a kill; over a network the window is real).
/// - redis-rs 0.32's cluster client has been seen to stop answering for good after a
///   primary died, on every shard, or on the lost shard only; while a shard's calls keep
///   failing past a failover's length the store builds fresh cluster connections and swaps
///   them in until it answers (see [`connect_cluster`](RedisStore::connect_cluster)).
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    config: RedisConfig,
    /// For listing a cluster: how to reach each node, credentials included.
    seed: ConnectionInfo,
    /// Opt-in: replicas that must acknowledge each write.
    wait: Option<WaitForReplicas>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.connection {
            Connection::Single(_) => "single",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("mode", &mode)
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

fn store_error(error: RedisError) -> StoreError {
    use redis::ErrorKind::{BusyLoadingError, ClusterDown, MasterDown, ReadOnly, TryAgain};
    if error.is_timeout() {
        StoreError::Timeout(Duration::ZERO)
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_cluster_error()
        // A server loading its data, a replica not yet promoted after a failover, a
        // cluster shard without its primary: passing states, which a retry gets past.
        || matches!(
            error.kind(),
            BusyLoadingError | ReadOnly | MasterDown | TryAgain | ClusterDown
        )
    {
        StoreError::unavailable(error)
    } else {
        StoreError::backend(error)
    }
}

/// `PREFIX s:{HEX}`, the key of a session's hash. Written from the key's hex digits rather
/// than with `format!` and [`StoreKey::to_hex`]: every operation builds one, and the
/// formatting machinery (and the intermediate hex string) cost about 1,800 instructions a
/// key.
fn session_key(prefix: &str, key: &StoreKey) -> String {
    let mut text = Vec::with_capacity(prefix.len() + 3 + 64 + 1);
    text.extend_from_slice(prefix.as_bytes());
    text.extend_from_slice(b"s:{");
    text.extend_from_slice(&key.hex_digits());
    text.push(b'}');
    // The prefix is a string and the rest ASCII, so this never fails.
    String::from_utf8(text).unwrap_or_default()
}

impl RedisStore {
    /// Makes every write (insert, update, rename, delete, each batch of a revocation) wait
    /// until at least `replicas` replicas of the primary that took it acknowledge it, for
    /// at most `timeout`, with Redis `WAIT`. Without it, Redis replicates asynchronously
    /// and a failover can lose writes the primary acknowledged: a revoked session alive
    /// again, a login or a logout undone.
    ///
    /// A write not acknowledged in time fails with [`StoreError::Unavailable`] whose
    /// source is a [`NotReplicated`] (a 503 from the session layer); the write stands on
    /// the primary. Keep `timeout` well below [`RedisConfig::operation_timeout`], which
    /// bounds the write and its wait together. Idle refreshes (`touch`) do not wait: losing
    /// one only shortens a session.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), cloakroom_redis::SetupError> {
    /// use std::time::Duration;
    /// use cloakroom_redis::RedisStore;
    /// let store = RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_wait_for_replicas(1, Duration::from_millis(500));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = Some(WaitForReplicas { replicas, timeout });
        self
    }

    /// How many times this store replaced its Redis Cluster connection with a fresh one
    /// while a shard stayed unreachable (see
    /// [`connect_cluster`](RedisStore::connect_cluster)); always 0 on a single node. Worth
    /// a metric: a few per failover are expected, a count rising outside failovers means
    /// a shard stays unreachable.
    pub fn cluster_rebuilds(&self) -> u64 {
        match &self.connection {
            Connection::Single(_) => 0,
            Connection::Cluster(cluster) => cluster.rebuilds(),
        }
    }

    /// Whether this store talks to a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
    }

    fn session_key(&self, key: &StoreKey) -> String {
        session_key(&self.config.prefix, key)
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}u:{{{user}}}", self.config.prefix)
    }

    async fn bounded<T, E: From<StoreError>>(
        &self,
        operation: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match tokio::time::timeout(self.config.operation_timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.config.operation_timeout).into()),
        }
    }

    /// [`replicated`](Self::replicated) for a write to these sessions and `user`'s index.
    async fn replicated_keys(
        &self,
        sessions: &[&StoreKey],
        user: Option<&str>,
    ) -> Result<(), StoreError> {
        // Without `WAIT` nothing is sent, so the keys are not worth building: this runs
        // after every write.
        if self.wait.is_none() {
            return Ok(());
        }
        let mut keys: Vec<String> = sessions.iter().map(|key| self.session_key(key)).collect();
        keys.extend(user.map(|user| self.user_key(user)));
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.replicated(Some(&keys)).await
    }

    async fn read(&self, key: &StoreKey) -> Result<Vec<Option<String>>, StoreError> {
        let mut connection = self.connection.clone();
        let session = self.session_key(key);
        // Sized up front: grown argument by argument, the command's buffers were
        // reallocated several times on every read.
        let mut command = redis::Cmd::with_capacity(1 + 1 + FIELDS.len(), 16 + session.len());
        command
            .arg("HMGET")
            .arg(session)
            .arg(&FIELDS)
            .query_async(&mut connection)
            .await
            .map_err(store_error)
    }

    async fn index(
        &self,
        user: &str,
        key: &StoreKey,
        absolute: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let mut call = Call::new(&scripts::INDEX_ADD, &[&self.user_key(user)]);
        call.arg(key.to_hex()).arg(ms(absolute));
        call.invoke::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(store_error)
    }

    /// A call of a writing script (insert or update) on the session of `key`, and on its
    /// user's index set when `with_index` and the record has a user (a script reaches the
    /// set only on a single node, where both keys share the node), with the arguments
    /// every writing script starts with: the time now and the record's version.
    fn write_call(
        &self,
        script: &'static redis::Script,
        key: &StoreKey,
        record: &Record,
        with_index: bool,
    ) -> Call {
        let session = self.session_key(key);
        let user = record.user_id.as_deref().unwrap_or_default();
        let set = (with_index && !user.is_empty()).then(|| self.user_key(user));
        let mut call = match &set {
            Some(set) => Call::new(script, &[&session, set]),
            None => Call::new(script, &[&session]),
        };
        call.arg(to_unix_ms(now())).arg(record.version);
        call
    }

    async fn insert_script(
        &self,
        key: &StoreKey,
        record: &Record,
        with_index: bool,
    ) -> Result<bool, StoreError> {
        let mut call = self.write_call(&scripts::INSERT, key, record, with_index);
        call.arg(encode(record)?)
            .arg(to_unix_ms(record.last_active_at))
            .arg(ms(record.idle_deadline))
            .arg(ms(record.absolute_deadline))
            .arg(ms(record.expires_at()))
            .arg(record.user_id.as_deref().unwrap_or_default())
            .arg(key.to_hex());
        let mut connection = self.connection.clone();
        let created: i64 = call.invoke(&mut connection).await.map_err(store_error)?;
        Ok(created == 1)
    }

    async fn delete_key(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let mut call = Call::new(&scripts::DELETE, &[&self.session_key(key)]);
        call.arg(&self.config.prefix)
            .arg(key.to_hex())
            .arg(if self.is_cluster() { "0" } else { "1" });
        let deleted: i64 = call.invoke(&mut connection).await.map_err(store_error)?;
        Ok(deleted > 0)
    }

    /// Moves a session between slots in a cluster: copy, then delete the original as it
    /// was copied (at that version, last activity and idle deadline).
    async fn rename_across_slots(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        for _ in 0..8 {
            let Some(record) = decode(self.read(old).await?)? else {
                return Err(RenameError::Missing);
            };
            if !self.insert_script(new, &record, false).await? {
                return Err(RenameError::Duplicate);
            }
            // Indexed before the old key goes, so a revocation running now that has
            // already passed the old member still finds the new one.
            if let Some(user) = &record.user_id {
                self.index(user, new, record.absolute_deadline).await?;
            }
            let mut connection = self.connection.clone();
            let mut call = Call::new(&scripts::DELETE_AT_VERSION, &[&self.session_key(old)]);
            call.arg(record.version)
                .arg(to_unix_ms(record.last_active_at))
                .arg(ms(record.idle_deadline));
            let outcome: i64 = call.invoke(&mut connection).await.map_err(store_error)?;
            if outcome == 1 {
                self.replicated_keys(&[new, old], record.user_id.as_deref())
                    .await?;
                return Ok(());
            }
            // Nobody knows the new ID yet, so removing the copy is safe.
            connection
                .del::<_, ()>(self.session_key(new))
                .await
                .map_err(store_error)?;
            if outcome == -1 {
                return Err(RenameError::Missing);
            }
        }
        Err(StoreError::backend("the session kept changing while it was being renamed").into())
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.bounded(async { decode(self.read(key).await?) }).await
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        self.bounded(async {
            let single = !self.is_cluster();
            if !self.insert_script(key, record, single).await? {
                return Err(InsertError::Duplicate);
            }
            if let (false, Some(user)) = (single, &record.user_id) {
                self.index(user, key, record.absolute_deadline).await?;
            }
            self.replicated_keys(&[key], record.user_id.as_deref())
                .await?;
            Ok(())
        })
        .await
    }

    async fn update(&self, key: &StoreKey, record: &Record) -> Result<(), UpdateError> {
        self.bounded(async {
            let single = !self.is_cluster();
            let user = record.user_id.as_deref().unwrap_or_default();
            let mut call = self.write_call(&scripts::UPDATE, key, record, single);
            call.arg(record.version.wrapping_add(1))
                .arg(encode(record).map_err(UpdateError::Store)?)
                .arg(to_unix_ms(record.last_active_at))
                .arg(ms(record.idle_deadline))
                .arg(user);
            let mut connection = self.connection.clone();
            let status: i64 = call.invoke(&mut connection).await.map_err(store_error)?;
            match status {
                1 | 2 => {
                    // 2: the user changed, so (in a cluster, where the script cannot reach
                    // the user's set) the session joins its new user's index here.
                    if !single && !user.is_empty() && status == 2 {
                        self.index(user, key, record.absolute_deadline).await?;
                    }
                    let user = Some(user).filter(|user| !user.is_empty());
                    self.replicated_keys(&[key], user).await?;
                    Ok(())
                }
                0 => Err(UpdateError::Conflict),
                _ => Err(UpdateError::Missing),
            }
        })
        .await
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        self.bounded(async {
            let mut connection = self.connection.clone();
            let touched: i64 = Call::new(&scripts::TOUCH, &[&self.session_key(key)])
                .arg(to_unix_ms(now()))
                .arg(to_unix_ms(touch.last_active_at))
                .arg(ms(touch.idle_deadline))
                .invoke(&mut connection)
                .await
                .map_err(store_error)?;
            if touched == 1 {
                Ok(())
            } else {
                Err(TouchError::Missing)
            }
        })
        .await
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        self.bounded(async {
            if self.is_cluster() {
                return self.rename_across_slots(old, new).await;
            }
            let mut connection = self.connection.clone();
            let keys = [self.session_key(old), self.session_key(new)];
            let mut call = Call::new(&scripts::RENAME, &[&keys[0], &keys[1]]);
            call.arg(to_unix_ms(now()))
                .arg(&self.config.prefix)
                .arg(new.to_hex())
                .arg(old.to_hex());
            let outcome: i64 = call.invoke(&mut connection).await.map_err(store_error)?;
            match outcome {
                1 => Ok(self.replicated(None).await?),
                2 => Err(RenameError::Duplicate),
                _ => Err(RenameError::Missing),
            }
        })
        .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        self.bounded(async {
            let deleted = self.delete_key(key).await?;
            self.replicated_keys(&[key], None).await?;
            Ok(deleted)
        })
        .await
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        self.list_user(user).await
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        if self.is_cluster() {
            self.revoke_user_across_slots(user, except).await
        } else {
            self.revoke_user_scripted(user, except).await
        }
    }

    /// Redis expires sessions natively: nothing to purge.
    async fn purge_expired(&self, _batch: usize) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        self.find(handle).await
    }

    /// Scans every node: meant for admin tools, not for request handling.
    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        self.list(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key must stay exactly what earlier versions wrote, or live sessions would be
    /// lost on upgrade (and the hash tag would move them to another cluster slot).
    #[test]
    fn session_keys_keep_their_layout() {
        let bytes: [u8; 32] = std::array::from_fn(|i| u8::try_from(i * 37 % 256).unwrap());
        for key in [
            StoreKey::from_bytes([0; 32]),
            StoreKey::from_bytes([0xff; 32]),
            StoreKey::from_bytes(bytes),
        ] {
            for prefix in ["cloakroom:", "", "app-\u{e9}:"] {
                assert_eq!(
                    session_key(prefix, &key),
                    format!("{prefix}s:{{{}}}", key.to_hex())
                );
            }
        }
    }
}
