//! A Memcached session store for [cloakroom](https://docs.rs/cloakroom), on memcached's
//! meta protocol (memcached 1.6 or later).
//!
//! | operation | how | round trips |
//! |---|---|---|
//! | `load` | `mg` | 1 |
//! | `insert` | `ms` in add mode (`ME`): never overwrites | 1 (+1 for the user index) |
//! | `update` | `mg` with the CAS token, then `ms C<cas>` after checking the version | 2 |
//! | `touch` | the same, writing only the activity time and idle deadline | 2 |
//! | `rename` | copy with add mode, then `md C<cas>` on the original | 3 |
//! | `delete` | `md` | 1 |
//!
//! Expiry is memcached's own TTL at the session's earlier deadline (a TTL beyond 30 days is
//! sent as an absolute Unix time, as memcached requires), and `load` still checks the
//! deadline itself.
//!
//! Limits, honestly:
//! - The per-user index is one value per user, updated with CAS. Memcached may evict it
//!   under memory pressure like any item; the user's sessions then no longer appear in
//!   `list_for_user` and escape "log out everywhere". Give memcached room, or pair it with
//!   a durable store (`cached+`) where revocation must be certain.
//! - An evicted *session* is simply gone: every write is add-or-compare-and-set, so it is
//!   never brought back.
//! - Memcached cannot enumerate keys reliably (`lru_crawler metadump` is best effort), so
//!   every session key is also listed in one of 256 index shards (by its first byte),
//!   updated with CAS on insert and rename and pruned lazily. `find_by_handle` reads one
//!   shard; `list_sessions` reads all 256 (admin tools only). Shards can be evicted like
//!   any item, which hides sessions from admin listings, never from `load`.

use std::time::Duration;

use async_memcached::{Client, Error as McError, MetaProtocol, Status};
use async_trait::async_trait;
use cloakroom::record::now;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

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
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    fn session_key(&self, key: &StoreKey) -> String {
        format!("{}s:{}", self.prefix, key.to_hex())
    }

    fn user_key(&self, user: &str) -> String {
        let hashed: [u8; 32] = Sha256::digest(user.as_bytes()).into();
        format!("{}u:{}", self.prefix, StoreKey::from_bytes(hashed).to_hex())
    }

    /// Runs one command on a pooled connection, reconnecting a broken one, under the
    /// operation timeout (after which the connection is dropped: its state is unknown).
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
        let mut guard = self.connections[slot].lock().await;
        if guard.is_none() {
            let client =
                tokio::time::timeout(self.timeout, Client::new(format!("tcp://{}", self.address)))
                    .await
                    .map_err(|_| StoreError::Timeout(self.timeout))?
                    .map_err(unavailable)?;
            *guard = Some(client);
        }
        let client = guard.as_mut().expect("connected above");
        match tokio::time::timeout(self.timeout, command(client)).await {
            Err(_) => {
                *guard = None;
                Err(StoreError::Timeout(self.timeout))
            }
            Ok(Ok(value)) => Ok(Outcome::Done(value)),
            Ok(Err(McError::Protocol(Status::NotStored))) => Ok(Outcome::NotStored),
            Ok(Err(McError::Protocol(Status::Exists))) => Ok(Outcome::Exists),
            Ok(Err(McError::Protocol(Status::NotFound))) => Ok(Outcome::NotFound),
            Ok(Err(error)) => {
                *guard = None;
                Err(unavailable(error))
            }
        }
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
            Outcome::Done(Some(value)) => value.data.zip(value.cas),
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
    /// Unix time beyond, 0 for none.
    ///
    /// Memcached's clock ticks once a second at its own phase, so an item given `T` seconds
    /// can vanish after only `T - 1`. Two seconds of slack on top of the whole seconds left
    /// keep an item at least until its deadline; `load` checks the deadline itself, so the
    /// slack never lets a dead session be read.
    fn ttl(record: &Record) -> i64 {
        let Some(deadline) = record.expires_at() else {
            return 0;
        };
        let seconds = (deadline - now()).whole_seconds() + 2;
        if seconds > RELATIVE_TTL_LIMIT {
            deadline.unix_timestamp() + 2
        } else {
            seconds.max(1)
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

    /// The members of an index item (a user's, or a shard of all sessions), with its CAS token.
    async fn index(&self, item: &str) -> Result<Option<(Vec<String>, u64)>, StoreError> {
        let Some((bytes, cas)) = self.get(item).await? else {
            return Ok(None);
        };
        let members = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("user index: {e}")))?;
        Ok(Some((members, cas)))
    }

    /// Changes an index item with compare-and-set until it sticks.
    async fn edit_index(
        &self,
        item: &str,
        change: impl Fn(&mut Vec<String>),
    ) -> Result<(), StoreError> {
        for attempt in 0..50u64 {
            let (mut members, cas) = match self.index(item).await? {
                Some((members, cas)) => (members, Some(cas)),
                None => (Vec::new(), None),
            };
            change(&mut members);
            let data = serde_json::to_vec(&members).map_err(StoreError::backend)?;
            let mode = if cas.is_some() { "S" } else { "E" };
            match self.set(item, data, 0, mode, cas).await? {
                Outcome::Done(()) => return Ok(()),
                _ => tokio::time::sleep(Duration::from_micros(100 * attempt)).await,
            }
        }
        Err(StoreError::backend("the user index kept changing"))
    }

    async fn add_to_index(&self, item: &str, key: &StoreKey) -> Result<(), StoreError> {
        let member = key.to_hex();
        self.edit_index(item, |members| {
            if !members.contains(&member) {
                members.push(member.clone());
            }
        })
        .await
    }

    /// The shard of the all-sessions index that holds `key`: one of 256, by its first
    /// byte, so no single item grows past memcached's item size or draws every writer.
    fn shard(&self, first_byte: u8) -> String {
        format!("{}all:{first_byte:02x}", self.prefix)
    }

    /// The keys in one shard, dead members pruned.
    async fn shard_keys(&self, first_byte: u8) -> Result<Vec<(StoreKey, Record)>, StoreError> {
        let item = self.shard(first_byte);
        let Some((members, _)) = self.index(&item).await? else {
            return Ok(Vec::new());
        };
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for member in members {
            match StoreKey::from_hex(&member) {
                Some(key) => match self.read(&key).await? {
                    Some((record, _)) => live.push((key, record)),
                    None => dead.push(member),
                },
                None => dead.push(member),
            }
        }
        if !dead.is_empty() {
            self.edit_index(&item, |members| members.retain(|m| !dead.contains(m)))
                .await?;
        }
        Ok(live)
    }
}

#[async_trait]
impl SessionStore for MemcachedStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        Ok(self.read(key).await?.map(|(record, _)| record))
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
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
        self.add_to_index(&self.shard(key.as_bytes()[0]), key)
            .await?;
        if let Some(user) = &record.user_id {
            self.add_to_index(&self.user_key(user), key).await?;
        }
        Ok(())
    }

    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected_version: u64,
    ) -> Result<(), UpdateError> {
        let (stored, cas) = self.read(key).await?.ok_or(UpdateError::Missing)?;
        if stored.version != expected_version {
            return Err(UpdateError::Conflict);
        }
        let mut next = record.clone();
        next.version = expected_version + 1;
        next.absolute_deadline = stored.absolute_deadline;
        match self.write(key, &next, "S", Some(cas)).await? {
            Outcome::Done(()) => {}
            Outcome::NotFound => return Err(UpdateError::Missing),
            _ => return Err(UpdateError::Conflict),
        }
        if let Some(user) = next
            .user_id
            .as_ref()
            .filter(|user| stored.user_id.as_ref() != Some(*user))
        {
            self.add_to_index(&self.user_key(user), key).await?;
        }
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
            if !matches!(
                self.write(new, &record, "E", None).await?,
                Outcome::Done(())
            ) {
                return Err(RenameError::Duplicate);
            }
            match self.delete_item(&self.session_key(old), Some(cas)).await? {
                Outcome::Done(()) => {
                    self.add_to_index(&self.shard(new.as_bytes()[0]), new)
                        .await?;
                    if let Some(user) = &record.user_id {
                        self.add_to_index(&self.user_key(user), new).await?;
                    }
                    return Ok(());
                }
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
        let Some((members, _)) = self.index(&self.user_key(user)).await? else {
            return Ok(Vec::new());
        };
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for member in members {
            match StoreKey::from_hex(&member) {
                Some(key) => match self.read(&key).await? {
                    Some((record, _)) if record.user_id.as_deref() == Some(user) => {
                        live.push(SessionEntry { key, record })
                    }
                    _ => dead.push(member),
                },
                None => dead.push(member),
            }
        }
        if !dead.is_empty() {
            self.edit_index(&self.user_key(user), |members| {
                members.retain(|m| !dead.contains(m))
            })
            .await?;
        }
        Ok(live)
    }

    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let mut gone = Vec::new();
        for entry in self.list_for_user(user).await? {
            if Some(&entry.key) == except {
                continue;
            }
            if self.delete(&entry.key).await? {
                deleted += 1;
            }
            gone.push(entry.key.to_hex());
        }
        if !gone.is_empty() {
            self.edit_index(&self.user_key(user), |members| {
                members.retain(|m| !gone.contains(m))
            })
            .await?;
        }
        Ok(deleted)
    }

    /// Memcached expires sessions natively: nothing to purge.
    async fn purge_expired(&self, _batch: usize) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        let entries = self.shard_keys(handle.as_bytes()[0]).await?;
        Ok(entries
            .into_iter()
            .find(|(key, _)| handle.matches(key))
            .map(|(key, record)| SessionEntry { key, record }))
    }

    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        let mut keys: Vec<StoreKey> = match &query.user {
            Some(user) => self
                .list_for_user(user)
                .await?
                .into_iter()
                .map(|e| e.key)
                .collect(),
            None => {
                let mut keys = Vec::new();
                for first_byte in 0..=u8::MAX {
                    keys.extend(
                        self.shard_keys(first_byte)
                            .await?
                            .into_iter()
                            .map(|(k, _)| k),
                    );
                }
                keys
            }
        };
        keys.sort();
        keys.dedup();
        keys.retain(|k| query.after.is_none_or(|after| *k > after));
        let mut entries = Vec::new();
        for key in keys {
            if entries.len() >= query.limit {
                break;
            }
            if let Some((record, _)) = self.read(&key).await? {
                entries.push(SessionEntry { key, record });
            }
        }
        Ok(entries)
    }
}
