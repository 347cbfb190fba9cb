//! The session indexes: a sharded set of store keys per user, and 256 more (by a key's
//! first byte) listing every session for the admin tools.
//!
//! Memcached refuses an item larger than its item size (`-I`, 1 MB by default) and drops
//! the old value when a write would exceed it, so no index may live in one growing item.
//! A set is a directory item `SET` holding `N OPEN` (shards `SET:0` … `SET:N-1` exist;
//! new members go to shard `OPEN`) and shards of at most [`SHARD_MEMBERS`] keys each,
//! small enough for the smallest item size memcached allows (1 KB). Every change is a
//! compare-and-set on one small item.
//!
//! Invariants, so revocation never misses a live session:
//! - A new session's key (insert, or a rename's copy) joins its sets *after* its record
//!   is written and before anyone can reach it (insert returns; a rename deletes the
//!   original). A prune only drops a key whose record it read as dead after seeing the
//!   key, so it never drops such a key while it is live. (Joining first and checking
//!   afterwards was not enough: a prune that read the key before its record existed could
//!   remove it after the check, and a revocation read the index in that window.)
//! - A session gaining an owner (an update naming a new user) joins the new owner's set
//!   before its record names that owner, and the writer checks afterwards that it is
//!   still there, adding it again if not.
//! - A prune removes a key only if its record is absent, past its deadline or belongs to
//!   another user, and loads the removed keys once more after the removal, adding back
//!   any that came alive meanwhile.
//! - Shards are never deleted, so a set whose directory was evicted is found again by
//!   probing shards upward from 0.
//! - An index an earlier version kept in one item (`u:HASH`, `all:XX`) is read by the
//!   next scan of its set, its members moved in and the old item deleted, so sessions
//!   from before an upgrade are still revoked. The sets are `ui:HASH` and `ai:XX`.
//!
//! A full shard is pruned before a new one is started, and every scan (list, revoke,
//! admin listing, purge) prunes the shards it reads and moves `OPEN` back to the first
//! shard with room, so a set stays about as large as its live sessions.

use std::collections::{HashMap, HashSet};

use cloakroom::record::now;
use cloakroom::{Record, SessionEntry, StoreError, StoreKey};

use crate::{MemcachedStore, Outcome};

/// Keys per shard: 12 × 64 hex digits = 768 bytes, within memcached's smallest item size.
pub(crate) const SHARD_MEMBERS: usize = 12;
/// The most shards a directory is believed to count: a million members and more, far past
/// any user's sessions.
const MAX_SHARDS: u64 = 1 << 17;
/// Items per pipelined multi-get.
const BATCH: usize = 128;
/// Compare-and-set attempts before an index write gives up with a typed error.
const ATTEMPTS: u64 = 64;

/// Which records a set keeps: a user's set keeps that user's sessions only.
pub(crate) type Keep<'a> = &'a (dyn Fn(&Record) -> bool + Send + Sync);

/// What a scan of a set found.
#[derive(Default)]
pub(crate) struct Scan {
    /// Live members the set keeps, with their records.
    pub live: Vec<SessionEntry>,
    /// Members whose record does not decode: absent for `load`, removed by revocation.
    pub corrupt: Vec<StoreKey>,
    /// Every member the scan read, before it read their records.
    pub members: HashSet<StoreKey>,
    /// How many shards it read (`0..shards`; shard `shards` was absent).
    pub shards: u64,
}

/// A directory item: shards `0..shards` exist, new members go to `open`.
#[derive(Clone, Copy, Default)]
struct Directory {
    shards: u64,
    open: u64,
}

impl Directory {
    /// The directory an item holds; one holding more than [`MAX_SHARDS`] shards (corrupt, or
    /// planted) reads as absent, which a scan mends by probing the shards that exist.
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let mut numbers = text.split_whitespace().map(|n| n.parse().unwrap_or(0));
        let shards = numbers.next().unwrap_or(0);
        if shards > MAX_SHARDS {
            return Self::default();
        }
        let open = numbers.next().unwrap_or(0).min(shards);
        Self { shards, open }
    }

    fn encode(self) -> Vec<u8> {
        format!("{} {}", self.shards, self.open).into_bytes()
    }
}

fn parse_members(bytes: &[u8]) -> Vec<StoreKey> {
    bytes
        .chunks(64)
        .filter_map(|chunk| std::str::from_utf8(chunk).ok().and_then(StoreKey::from_hex))
        .collect()
}

fn encode_members(members: &[StoreKey]) -> Vec<u8> {
    members
        .iter()
        .flat_map(|k| k.to_hex().into_bytes())
        .collect()
}

/// How a member's record reads.
// Most members of a pass are `Kept`, so boxing the record would only add an allocation each.
#[allow(clippy::large_enum_variant)]
enum State {
    Kept(Record),
    Gone,
    Corrupt,
}

impl MemcachedStore {
    fn shard_item(set: &str, index: u64) -> String {
        format!("{set}:{index}")
    }

    async fn directory(&self, set: &str) -> Result<(Directory, Option<u64>), StoreError> {
        Ok(match self.get(set).await? {
            Some((bytes, cas)) => (Directory::parse(&bytes), Some(cas)),
            None => (Directory::default(), None),
        })
    }

    /// Writes the directory if it still has `cas` (or, with `None`, if it is absent).
    async fn put_directory(
        &self,
        set: &str,
        directory: Directory,
        cas: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mode = if cas.is_some() { "S" } else { "E" };
        Ok(matches!(
            self.set(set, directory.encode(), 0, mode, cas).await?,
            Outcome::Done(())
        ))
    }

    /// Makes the directory cover shard `index`.
    async fn cover(&self, set: &str, index: u64) -> Result<(), StoreError> {
        for attempt in 0..ATTEMPTS {
            let (mut directory, cas) = self.directory(set).await?;
            if directory.shards > index {
                return Ok(());
            }
            directory.shards = index + 1;
            if self.put_directory(set, directory, cas).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(busy())
    }

    /// Adds `key` to `set`; returns the shard it is in.
    pub(crate) async fn add_member(
        &self,
        set: &str,
        key: &StoreKey,
        keep: Keep<'_>,
    ) -> Result<u64, StoreError> {
        for attempt in 0..ATTEMPTS {
            let (directory, directory_cas) = self.directory(set).await?;
            let index = directory.open;
            let item = Self::shard_item(set, index);
            let placed = match self.get(&item).await? {
                None => matches!(
                    self.set(&item, encode_members(&[*key]), 0, "E", None)
                        .await?,
                    Outcome::Done(())
                ),
                Some((bytes, cas)) => {
                    let mut members = parse_members(&bytes);
                    if members.contains(key) {
                        true
                    } else if members.len() < SHARD_MEMBERS {
                        members.push(*key);
                        matches!(
                            self.set(&item, encode_members(&members), 0, "S", Some(cas))
                                .await?,
                            Outcome::Done(())
                        )
                    } else {
                        // Full: drop its dead members first; move on only if all are live.
                        let left = self.prune(set, &[index], keep).await?.1;
                        if left >= SHARD_MEMBERS {
                            let next = Directory {
                                shards: directory.shards.max(index + 1),
                                open: index + 1,
                            };
                            self.put_directory(set, next, directory_cas).await?;
                        }
                        continue;
                    }
                }
            };
            if placed {
                self.cover(set, index).await?;
                return Ok(index);
            }
            backoff(attempt).await;
        }
        Err(busy())
    }

    /// After the record of `key` is written: puts `key` back into `set` if a prune that
    /// ran before the record existed took it out.
    pub(crate) async fn confirm_member(
        &self,
        set: &str,
        shard: u64,
        key: &StoreKey,
        keep: Keep<'_>,
    ) -> Result<(), StoreError> {
        let present = self
            .get(&Self::shard_item(set, shard))
            .await?
            .is_some_and(|(bytes, _)| parse_members(&bytes).contains(key));
        if !present {
            self.add_member(set, key, keep).await?;
        }
        Ok(())
    }

    /// Reads every shard of `set`, pruning dead members, and moves `OPEN` back to the first
    /// shard with room.
    pub(crate) async fn scan(
        &self,
        set: &str,
        legacy: &str,
        keep: Keep<'_>,
    ) -> Result<Scan, StoreError> {
        self.migrate_legacy(set, legacy, keep).await?;
        let (directory, cas) = self.directory(set).await?;
        // Shards are never deleted: past the directory's count (or with the directory
        // evicted), probe upward until a shard is missing.
        let mut shards = directory.shards;
        while self.get(&Self::shard_item(set, shards)).await?.is_some() {
            shards += 1;
        }
        if shards == 0 {
            return Ok(Scan::default());
        }
        let indices: Vec<u64> = (0..shards).collect();
        let (mut scan, _, first_open) = self.prune(set, &indices, keep).await?;
        scan.shards = shards;
        let open = first_open.unwrap_or(shards);
        if open != directory.open || shards != directory.shards {
            let next = Directory { shards, open };
            // Best effort: a concurrent writer's directory is as good as ours.
            self.put_directory(set, next, cas).await?;
        }
        Ok(scan)
    }

    /// Whether `set` holds only members `scan` read (removals are fine): no key was added
    /// since, so no writer that indexes before it makes a session reachable (insert, and
    /// rename before it deletes the original) slipped between the scan's reads. A new
    /// shard counts as a change.
    pub(crate) async fn gained_nothing(&self, set: &str, scan: &Scan) -> Result<bool, StoreError> {
        let items: Vec<String> = (0..=scan.shards)
            .map(|index| Self::shard_item(set, index))
            .collect();
        let shards = self.get_many(&items).await?;
        if items
            .last()
            .is_some_and(|beyond| shards.contains_key(beyond))
        {
            return Ok(false);
        }
        Ok(shards.values().all(|(bytes, _)| {
            parse_members(bytes)
                .iter()
                .all(|k| scan.members.contains(k))
        }))
    }

    /// Moves the members of a one-item index written by an earlier version (a JSON array of
    /// hex keys) into `set` and deletes the old item, so sessions from before an upgrade
    /// are still listed and revoked.
    async fn migrate_legacy(
        &self,
        set: &str,
        legacy: &str,
        keep: Keep<'_>,
    ) -> Result<(), StoreError> {
        let Some((bytes, cas)) = self.get(legacy).await? else {
            return Ok(());
        };
        let members: Vec<StoreKey> = serde_json::from_slice::<Vec<String>>(&bytes)
            .unwrap_or_default()
            .iter()
            .filter_map(|member| StoreKey::from_hex(member))
            .collect();
        for (key, state) in self.states(&members, keep).await? {
            if !matches!(state, State::Gone) {
                self.add_member(set, &key, keep).await?;
            }
        }
        // An old writer that appended meanwhile makes this fail; the next scan migrates
        // again.
        self.delete_item(legacy, Some(cas)).await?;
        Ok(())
    }

    /// Prunes the shards `indices` of `set`: what survives, how many members the last
    /// shard kept, and the first of them with room.
    async fn prune(
        &self,
        set: &str,
        indices: &[u64],
        keep: Keep<'_>,
    ) -> Result<(Scan, usize, Option<u64>), StoreError> {
        let items: Vec<String> = indices.iter().map(|i| Self::shard_item(set, *i)).collect();
        let shards = self.get_many(&items).await?;
        let mut all = HashSet::new();
        for (bytes, _) in shards.values() {
            all.extend(parse_members(bytes));
        }
        let members = all;
        let all: Vec<StoreKey> = members.iter().copied().collect();
        let states = self.states(&all, keep).await?;
        let doomed: HashSet<StoreKey> = states
            .iter()
            .filter(|(_, state)| !matches!(state, State::Kept(_)))
            .map(|(key, _)| *key)
            .collect();
        let mut left = 0;
        let mut first_open = None;
        for (index, item) in indices.iter().zip(&items) {
            let Some((bytes, cas)) = shards.get(item) else {
                continue;
            };
            let members = parse_members(bytes);
            left = members.iter().filter(|k| !doomed.contains(k)).count();
            if left < members.len() {
                left = self.remove_members(item, &doomed, (members, *cas)).await?;
            }
            if left < SHARD_MEMBERS && first_open.is_none() {
                first_open = Some(*index);
            }
        }
        // A key may have come alive (a new owner's update adds it first, then writes)
        // between our load and the removal: look again and put those back.
        let removed: Vec<StoreKey> = doomed.iter().copied().collect();
        let mut revived = Vec::new();
        for (key, state) in self.states(&removed, keep).await? {
            if let State::Kept(record) = state {
                Box::pin(self.add_member(set, &key, keep)).await?;
                revived.push(SessionEntry { key, record });
            }
        }
        let mut scan = Scan {
            live: revived,
            corrupt: Vec::new(),
            members,
            shards: 0,
        };
        for (key, state) in states {
            match state {
                State::Kept(record) => scan.live.push(SessionEntry { key, record }),
                State::Corrupt => scan.corrupt.push(key),
                State::Gone => {}
            }
        }
        Ok((scan, left, first_open))
    }

    /// Removes `doomed` from one shard with compare-and-set, starting from the copy the
    /// caller read; returns how many members it keeps.
    async fn remove_members(
        &self,
        item: &str,
        doomed: &HashSet<StoreKey>,
        read: (Vec<StoreKey>, u64),
    ) -> Result<usize, StoreError> {
        let mut read = Some(read);
        for attempt in 0..ATTEMPTS {
            let (members, cas) = match read.take() {
                Some(read) => read,
                None => match self.get(item).await? {
                    Some((bytes, cas)) => (parse_members(&bytes), cas),
                    None => return Ok(0),
                },
            };
            let kept: Vec<StoreKey> = members
                .iter()
                .copied()
                .filter(|k| !doomed.contains(k))
                .collect();
            if kept.len() == members.len() {
                return Ok(kept.len());
            }
            match self
                .set(item, encode_members(&kept), 0, "S", Some(cas))
                .await?
            {
                Outcome::Done(()) => return Ok(kept.len()),
                Outcome::NotFound => return Ok(0),
                _ => backoff(attempt).await,
            }
        }
        Err(busy())
    }

    /// Loads the records of `keys` in pipelined batches.
    async fn states(
        &self,
        keys: &[StoreKey],
        keep: Keep<'_>,
    ) -> Result<Vec<(StoreKey, State)>, StoreError> {
        let items: Vec<String> = keys.iter().map(|k| self.session_key(k)).collect();
        let found = self.get_many(&items).await?;
        let at = now();
        Ok(keys
            .iter()
            .zip(&items)
            .map(|(key, item)| {
                let state = match found.get(item) {
                    None => State::Gone,
                    Some((bytes, _)) => match serde_json::from_slice::<Record>(bytes) {
                        Err(_) => State::Corrupt,
                        Ok(record) if record.is_live_at(at) && keep(&record) => State::Kept(record),
                        Ok(_) => State::Gone,
                    },
                };
                (*key, state)
            })
            .collect())
    }

    /// Values and CAS tokens of the `items` present, read in pipelined batches.
    pub(crate) async fn get_many(
        &self,
        items: &[String],
    ) -> Result<HashMap<String, (Vec<u8>, u64)>, StoreError> {
        let mut found = HashMap::new();
        for batch in items.chunks(BATCH) {
            let batch = batch.to_vec();
            let outcome = self
                .with(move |c| {
                    Box::pin(async move {
                        use async_memcached::MetaProtocol;
                        c.meta_get_multi(&batch, Some(&["v", "c"])).await
                    })
                })
                .await?;
            if let Outcome::Done(values) = outcome {
                for value in values {
                    // An emptied shard is a present item with no data.
                    if let (Some(key), Some(cas)) = (value.key, value.cas) {
                        let data = value.data.unwrap_or_default();
                        found.insert(String::from_utf8_lossy(&key).into_owned(), (data, cas));
                    }
                }
            }
        }
        Ok(found)
    }
}

fn busy() -> StoreError {
    StoreError::backend("a session index kept changing under concurrent writers; try again")
}

async fn backoff(attempt: u64) {
    tokio::time::sleep(std::time::Duration::from_micros(100 * attempt)).await;
}
