//! A Memcached session store for [cloakroom](https://docs.rs/cloakroom), on memcached's
//! meta protocol (memcached 1.6 or later).
//!
//! | operation | how | round trips |
//! |---|---|---|
//! | `load` | `mg` | 1 |
//! | `insert` | `ms` in add mode (`ME`): never overwrites; then the key is indexed | 1 (+3 or so per index) |
//! | `update` | `mg` with the CAS token, then `ms C<cas>` after checking the version | 2 |
//! | `touch` | the same, writing only the activity time and idle deadline | 2 |
//! | `rename` | copy with add mode, index the copy, then `md C<cas>` on the original | 3 (+ indexes) |
//! | `delete` | `md` | 1 |
//! | `list_for_user`, `delete_for_user` | read the user's index shards and records in pipelined batches | a few per 128 sessions |
//!
//! Expiry is memcached's own TTL at the session's earlier deadline (a TTL beyond 30 days is
//! sent as an absolute Unix time, as memcached requires), and `load` still checks the
//! deadline itself.
//!
//! The indexes (one per user, and 256 buckets of all sessions for the admin tools) are
//! sharded into small items, so they never outgrow memcached's item size (`-I`), however
//! many sessions a user has; see the `index` module. Revoke-others deletes, then looks
//! again until nothing but the kept session is left, so a concurrent ID rotation cannot
//! slip a session past it.
//!
//! Limits, honestly:
//! - Memcached may evict any item under memory pressure, an index shard included; the
//!   sessions it listed then no longer appear in `list_for_user` and escape "log out
//!   everywhere". Give memcached room (or run it with `-M`, which refuses writes instead
//!   of evicting), or pair it with a durable store (`cached+`) where revocation must be
//!   certain. (An evicted index *directory* is harmless: shards are found by probing.)
//! - An evicted *session* is simply gone: every write is add-or-compare-and-set, so it is
//!   never brought back.
//! - Memcached cannot enumerate keys reliably (`lru_crawler metadump` is best effort), so
//!   `find_by_handle` reads one all-sessions bucket and `list_sessions` all 256 (admin
//!   tools only). `purge_expired` prunes dead keys from those buckets; run it
//!   periodically so they stay as small as the live sessions.
//! - A record that does not decode is absent to `load` (the session layer logs it), skipped
//!   by `list_for_user` and deleted by `delete_for_user`.

use std::time::Duration;

use async_memcached::{Client, Error as McError, MetaProtocol, Status};
use async_trait::async_trait;
use cloakroom::record::now;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use tokio::sync::Mutex;

mod admin;
mod index;
mod per_user;
#[cfg(feature = "testing")]
pub mod testing;

/// Memcached reads an expiry above 30 days as an absolute Unix time.
const RELATIVE_TTL_LIMIT: i64 = 30 * 24 * 3600;

/// A failure to connect, with what to do.
#[derive(Debug, thiserror::Error)]
#[error("could not connect to memcached at {address} ({source}): check the address and that memcached is running")]
pub struct SetupError {
    address: String,
    #[source]
    source: McError,
}

/// The longest key prefix: memcached refuses keys over 250 bytes, and the store's longest
/// key (a user's index shard) adds about 90 to the prefix.
pub const MAX_PREFIX_BYTES: usize = 150;

/// A key prefix memcached could not take as part of a key, with what to do.
#[derive(Debug, thiserror::Error)]
#[error("memcached key prefix {0:?} is not allowed: use at most {MAX_PREFIX_BYTES} printable ASCII characters, with no spaces")]
pub struct InvalidPrefix(pub String);

/// A session store on memcached.
pub struct MemcachedStore {
    address: String,
    prefix: String,
    timeout: Duration,
    connections: Vec<Mutex<Option<Client>>>,
    next: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("address", &self.address)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// What one memcached command answered, reduced to what the store needs.
enum Outcome<T> {
    Done(T),
    NotStored,
    Exists,
    NotFound,
}

fn unavailable(error: McError) -> StoreError {
    StoreError::unavailable(error.to_string())
}

impl MemcachedStore {
    /// Connects to `host:port` (a `memcached://` prefix is accepted), with 8 connections.
    pub async fn connect(address: &str) -> Result<Self, SetupError> {
        let address = address.trim_start_matches("memcached://").to_owned();
        let first = Client::new(format!("tcp://{address}"))
            .await
            .map_err(|source| SetupError {
                address: address.clone(),
                source,
            })?;
        let mut connections = vec![Mutex::new(Some(first))];
        connections.extend((1..8).map(|_| Mutex::new(None)));
        Ok(Self {
            address,
            prefix: "cloakroom:".to_owned(),
            timeout: Duration::from_secs(2),
            connections,
            next: Default::default(),
        })
    }

    /// Uses another key prefix (default `cloakroom:`), so several apps share a server.
    ///
    /// # Errors
    ///
    /// [`InvalidPrefix`] if memcached could not take it in a key: longer than
    /// [`MAX_PREFIX_BYTES`], or holding a space, a control character or a non-ASCII one
    /// (memcached's keys end at the first space, so every request would fail).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, InvalidPrefix> {
        if prefix.len() > MAX_PREFIX_BYTES || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidPrefix(prefix.to_owned()));
        }
        prefix.clone_into(&mut self.prefix);
        Ok(self)
    }

    fn session_key(&self, key: &StoreKey) -> String {
        format!("{}s:{}", self.prefix, key.to_hex())
    }

    /// Runs one command on a pooled connection, reconnecting a broken one, under the
    /// operation timeout, which bounds the wait for the connection too. The connection is
    /// out of its slot while the command runs and goes back only when it answered: one
    /// whose command timed out, failed or was cancelled (its request dropped) is in an
    /// unknown state, and the slot's next command connects afresh.
    async fn with<T>(
        &self,
        command: impl for<'c> FnOnce(
            &'c mut Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, McError>> + Send + 'c>,
        >,
    ) -> Result<Outcome<T>, StoreError> {
        let slot =
            self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.connections.len();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = |_| StoreError::Timeout(self.timeout);
        let mut guard = tokio::time::timeout_at(deadline, self.connections[slot].lock())
            .await
            .map_err(timed_out)?;
        let mut client = match guard.take() {
            Some(client) => client,
            None => {
                tokio::time::timeout_at(deadline, Client::new(format!("tcp://{}", self.address)))
                    .await
                    .map_err(timed_out)?
                    .map_err(unavailable)?
            }
        };
        let answered = tokio::time::timeout_at(deadline, command(&mut client))
            .await
            .map_err(timed_out)?;
        let outcome = match answered {
            Ok(value) => Outcome::Done(value),
            Err(McError::Protocol(Status::NotStored)) => Outcome::NotStored,
            Err(McError::Protocol(Status::Exists)) => Outcome::Exists,
            Err(McError::Protocol(Status::NotFound)) => Outcome::NotFound,
            Err(error) => {
                if error.to_string().contains("too large") {
                    // Not an outage: this value will never fit. (The index shards always
                    // do; a session record can outgrow a small `-I`.)
                    return Err(StoreError::backend(format!(
                        "memcached refused an item larger than its item size ({error}): \
                         raise memcached's -I or keep sessions smaller"
                    )));
                }
                return Err(unavailable(error));
            }
        };
        *guard = Some(client);
        Ok(outcome)
    }

    /// The stored value and its CAS token.
    async fn get(&self, item: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let item = item.to_owned();
        let outcome = self
            .with(move |c| {
                Box::pin(async move { c.meta_get(&item, false, None, Some(&["v", "c"])).await })
            })
            .await?;
        Ok(match outcome {
            // An empty value (an emptied index shard) may come back without data.
            Outcome::Done(Some(value)) => {
                value.cas.map(|cas| (value.data.unwrap_or_default(), cas))
            }
            _ => None,
        })
    }

    /// Writes `data`: `mode` "E" adds (fails if present), "S" sets; `cas` makes it
    /// conditional.
    async fn set(
        &self,
        item: &str,
        data: Vec<u8>,
        ttl: i64,
        mode: &str,
        cas: Option<u64>,
    ) -> Result<Outcome<()>, StoreError> {
        let item = item.to_owned();
        let mut flags = vec![format!("T{ttl}"), format!("M{mode}")];
        if let Some(cas) = cas {
            flags.push(format!("C{cas}"));
        }
        self.with(move |c| {
            Box::pin(async move {
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                c.meta_set(&item, data.as_slice(), false, None, Some(&flags))
                    .await
                    .map(drop)
            })
        })
        .await
    }

    async fn delete_item(&self, item: &str, cas: Option<u64>) -> Result<Outcome<()>, StoreError> {
        let item = item.to_owned();
        let flags: Vec<String> = cas.map(|cas| format!("C{cas}")).into_iter().collect();
        self.with(move |c| {
            Box::pin(async move {
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                c.meta_delete(&item, false, None, Some(&flags))
                    .await
                    .map(drop)
            })
        })
        .await
    }

    /// The record under `key` with its CAS token, if live.
    async fn read(&self, key: &StoreKey) -> Result<Option<(Record, u64)>, StoreError> {
        let Some((bytes, cas)) = self.get(&self.session_key(key)).await? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("record is not valid JSON: {e}")))?;
        Ok(record.is_live_at(now()).then_some((record, cas)))
    }

    /// The memcached expiry for a deadline: seconds from now up to 30 days, an absolute
    /// Unix time beyond, 0 (none) for no deadline or one past what memcached can hold.
    ///
    /// Memcached's clock ticks once a second at its own phase, so an item given `T` seconds
    /// can vanish after only `T - 1`. Two seconds of slack on top of the whole seconds left
    /// keep an item at least until its deadline; `load` checks the deadline itself, so the
    /// slack never lets a dead session be read, nor does leaving a deadline to `load`.
    fn ttl(record: &Record) -> i64 {
        let Some(deadline) = record.expires_at() else {
            return 0;
        };
        let seconds = (deadline - now()).whole_seconds() + 2;
        if seconds <= RELATIVE_TTL_LIMIT {
            return seconds.max(1);
        }
        let at = deadline.unix_timestamp() + 2;
        // Memcached keeps absolute times in 32 bits: one past 2038-01-19 expires the item
        // at once, and 2^32 wraps round to "never", both answering the write with success.
        if at > i64::from(i32::MAX) {
            0
        } else {
            at
        }
    }

    async fn write(
        &self,
        key: &StoreKey,
        record: &Record,
        mode: &str,
        cas: Option<u64>,
    ) -> Result<Outcome<()>, StoreError> {
        let data = serde_json::to_vec(record).map_err(StoreError::backend)?;
        self.set(&self.session_key(key), data, Self::ttl(record), mode, cas)
            .await
    }

    /// Adds `key` to its user's index (if any) and its all-sessions bucket; returns what
    /// [`Self::confirm_indexed`] checks once the record is written. Insert and rename call it
    /// after writing the record (see rename), a new owner's update before.
    async fn index_first(
        &self,
        key: &StoreKey,
        user: Option<&str>,
    ) -> Result<Vec<(String, u64, Option<String>)>, StoreError> {
        let mut placed = Vec::new();
        if let Some(user) = user {
            let set = self.user_key(user);
            let keep = |r: &Record| r.user_id.as_deref() == Some(user);
            let shard = self.add_member(&set, key, &keep).await?;
            placed.push((set, shard, Some(user.to_owned())));
        }
        let set = self.bucket(key.as_bytes()[0]);
        let shard = self.add_member(&set, key, &|_| true).await?;
        placed.push((set, shard, None));
        Ok(placed)
    }

    /// Indexes `key`, whose `record` was just written and is known to nobody yet; if that
    /// fails, deletes it again: unindexed, it would escape "log out everywhere".
    async fn index_or_discard(&self, key: &StoreKey, record: &Record) -> Result<(), StoreError> {
        if let Err(error) = self.index_first(key, record.user_id.as_deref()).await {
            self.delete_item(&self.session_key(key), None).await?;
            return Err(error);
        }
        Ok(())
    }

    /// Once the record of `key` is written: re-adds it where a concurrent prune, which saw
    /// the key before its record existed, took it out.
    async fn confirm_indexed(
        &self,
        key: &StoreKey,
        placed: Vec<(String, u64, Option<String>)>,
    ) -> Result<(), StoreError> {
        for (set, shard, user) in placed {
            let keep = |r: &Record| user.is_none() || r.user_id == user;
            self.confirm_member(&set, shard, key, &keep).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemcachedStore {
    fn kind(&self) -> &'static str {
        "memcached"
    }
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(self.read(key).await?.map(|(record, _)| record))
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        // Written, then indexed, as rename does: indexed first, the key could be dropped
        // from the index by a concurrent prune that read it before its record existed, so
        // a revocation in that window missed a session already handed out. Nobody knows
        // the ID until this returns, so the moment between the two steps is harmless.
        match self.write(key, record, "E", None).await? {
            Outcome::Done(()) => {}
            _ => match self.get(&self.session_key(key)).await? {
                // Present in memcached but past its deadline: replace it, conditionally.
                Some((_, cas)) if self.read(key).await?.is_none() => {
                    if !matches!(
                        self.write(key, record, "S", Some(cas)).await?,
                        Outcome::Done(())
                    ) {
                        return Err(InsertError::Duplicate);
                    }
                }
                _ => return Err(InsertError::Duplicate),
            },
        }
        Ok(self.index_or_discard(key, record).await?)
    }

    async fn update(&self, key: &StoreKey, record: &Record) -> Result<(), UpdateError> {
        let (stored, cas) = self.read(key).await?.ok_or(UpdateError::Missing)?;
        if stored.version != record.version {
            return Err(UpdateError::Conflict);
        }
        let mut next = record.clone();
        next.version = record.version.wrapping_add(1);
        next.absolute_deadline = stored.absolute_deadline;
        // A new owner's index gains the key before the record names that owner.
        let new_owner = next
            .user_id
            .as_deref()
            .filter(|user| stored.user_id.as_deref() != Some(*user));
        let placed = match new_owner {
            Some(user) => {
                let set = self.user_key(user);
                let keep = |r: &Record| r.user_id.as_deref() == Some(user);
                let shard = self.add_member(&set, key, &keep).await?;
                vec![(set, shard, Some(user.to_owned()))]
            }
            None => Vec::new(),
        };
        match self.write(key, &next, "S", Some(cas)).await? {
            Outcome::Done(()) => {}
            Outcome::NotFound => return Err(UpdateError::Missing),
            _ => return Err(UpdateError::Conflict),
        }
        self.confirm_indexed(key, placed).await?;
        Ok(())
    }

    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        for _ in 0..20 {
            let (mut record, cas) = self.read(key).await?.ok_or(TouchError::Missing)?;
            record.apply_touch(touch);
            match self.write(key, &record, "S", Some(cas)).await? {
                Outcome::Done(()) => return Ok(()),
                Outcome::NotFound => return Err(TouchError::Missing),
                _ => continue,
            }
        }
        Err(StoreError::backend("the session kept changing during a touch").into())
    }

    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        for _ in 0..8 {
            let (record, cas) = self.read(old).await?.ok_or(RenameError::Missing)?;
            // The copy is written, then indexed, and only then is the original deleted. Its
            // record exists before its key enters any index, so no concurrent prune can
            // judge the key dead and drop it from the index after this rename moves on
            // (indexing first let a prune that read the copy as absent remove it once the
            // rename had confirmed it, and a revocation reading the index then missed
            // it). Until the original is gone, a revocation sees the original and deletes
            // it, and then the rename fails and removes its copy.
            if !matches!(
                self.write(new, &record, "E", None).await?,
                Outcome::Done(())
            ) {
                return Err(RenameError::Duplicate);
            }
            self.index_or_discard(new, &record).await?;
            match self.delete_item(&self.session_key(old), Some(cas)).await? {
                Outcome::Done(()) => return Ok(()),
                outcome => {
                    // Nobody knows the new ID yet, so removing the copy is safe.
                    self.delete_item(&self.session_key(new), None).await?;
                    if matches!(outcome, Outcome::NotFound) {
                        return Err(RenameError::Missing);
                    }
                }
            }
        }
        Err(StoreError::backend("the session kept changing while it was being renamed").into())
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        Ok(matches!(
            self.delete_item(&self.session_key(key), None).await?,
            Outcome::Done(())
        ))
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        Ok(self.scan_user(user).await?.live)
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        self.revoke(user, except).await
    }

    async fn purge_expired(&self, _batch: usize) -> Result<u64, StoreError> {
        self.prune_buckets().await
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        // A bucket holds every key of one first byte: the handle's is the only one to read.
        let bucket = self.scan_bucket(handle.as_bytes()[0]).await?;
        Ok(bucket.into_iter().find(|entry| handle.matches(&entry.key)))
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        self.list(query).await
    }
}
