//! A user's sessions, listed and revoked in batches: each batch is one bounded round trip
//! (one script on a single node; one slot-routed burst of commands in a cluster), and
//! what a batch did stays done, so these finish whatever the number of sessions and a
//! retry after a failure never starts over.

use std::collections::HashSet;

use cloakroom::record::{now, to_unix_ms};
use cloakroom::{SessionEntry, StoreError, StoreKey};
use futures_util::future::join_all;

use super::hash::{decode, decode_listed};
use super::{store_error, RedisStore};
use crate::connection::Connection;
use crate::scripts::{self, Call};

/// Index members handled per round trip: small enough that one batch never holds the
/// server (single-threaded) for long, large enough that 100,000 sessions take a few
/// hundred round trips.
const BATCH: usize = 500;

/// A revocation keeps going while members are left, but not forever: logins landing
/// faster than it revokes must not keep it running. Bound: twice the batches the first
/// batch saw left, plus some slack for concurrent rotations.
fn round_limit(left_after_first: u64) -> u64 {
    2 * left_after_first.div_ceil(BATCH as u64) + 16
}

/// A listing of one user's sessions in progress, across its batches.
struct Listing<'a> {
    user: &'a str,
    /// The user's index set.
    set: String,
    /// Members already listed: an `SSCAN` may return a member more than once.
    seen: HashSet<StoreKey>,
    live: Vec<SessionEntry>,
}

impl RedisStore {
    /// The live sessions of `user`, pruning index members that name none: the index is
    /// walked a batch at a time with an `SSCAN` cursor, until it comes back to `"0"`.
    pub(super) async fn list_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let mut listing = Listing {
            user,
            set: self.user_key(user),
            seen: HashSet::new(),
            live: Vec::new(),
        };
        let mut cursor = "0".to_owned();
        loop {
            cursor = if self.is_cluster() {
                self.list_batch_across_slots(&mut listing, &cursor).await?
            } else {
                self.list_batch_scripted(&mut listing, &cursor).await?
            };
            if cursor == "0" {
                return Ok(listing.live);
            }
        }
    }

    /// One batch of the listing: one script, from `cursor`; returns the next cursor.
    async fn list_batch_scripted(
        &self,
        listing: &mut Listing<'_>,
        cursor: &str,
    ) -> Result<String, StoreError> {
        let mut connection = self.connection.clone();
        let reply: Vec<Option<String>> = self
            .bounded(async {
                let mut call = Call::new(&scripts::LIST_BATCH, &[&listing.set]);
                call.arg(to_unix_ms(now()))
                    .arg(listing.user)
                    .arg(&self.config.prefix)
                    .arg(cursor)
                    .arg(BATCH);
                call.invoke(&mut connection).await.map_err(store_error)
            })
            .await?;
        let mut reply = reply.into_iter();
        let next = reply
            .next()
            .flatten()
            .ok_or_else(|| StoreError::backend("the listing script returned no cursor"))?;
        let rest: Vec<Option<String>> = reply.collect();
        for session in rest.chunks_exact(6) {
            let Some(key) = session[0].as_deref().and_then(StoreKey::from_hex) else {
                continue;
            };
            if listing.seen.insert(key) {
                self.keep_live(listing.user, key, session[1..].to_vec(), &mut listing.live);
            }
        }
        Ok(next)
    }

    fn keep_live(
        &self,
        user: &str,
        key: StoreKey,
        fields: Vec<Option<String>>,
        live: &mut Vec<SessionEntry>,
    ) {
        if let Some(record) = decode_listed(&key, fields) {
            if record.user_id.as_deref() == Some(user) {
                live.push(SessionEntry { key, record });
            }
        }
    }

    /// Revokes `user`'s sessions but `except` on a single node, a batch per script;
    /// returns how many live ones it deleted.
    pub(super) async fn revoke_user_scripted(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let set = self.user_key(user);
        let kept = except.map(StoreKey::to_hex).unwrap_or_default();
        let mut deleted = 0;
        let mut limit = None;
        for round in 0.. {
            let mut connection = self.connection.clone();
            let (batch_deleted, left): (u64, u64) = self
                .bounded(async {
                    let mut call = Call::new(&scripts::REVOKE_BATCH, &[&set]);
                    call.arg(to_unix_ms(now()))
                        .arg(user)
                        .arg(&self.config.prefix)
                        .arg(BATCH)
                        .arg(&kept);
                    let outcome = call.invoke(&mut connection).await.map_err(store_error)?;
                    self.replicated(None).await?;
                    Ok(outcome)
                })
                .await?;
            deleted += batch_deleted;
            if left == 0 || round >= *limit.get_or_insert_with(|| round_limit(left)) {
                break;
            }
        }
        Ok(deleted)
    }

    /// One batch of the listing in a cluster, where the index and the sessions live in
    /// different slots: reads members from `cursor`, reads their sessions on their own
    /// nodes (all at once), then prunes; returns the next cursor.
    async fn list_batch_across_slots(
        &self,
        listing: &mut Listing<'_>,
        cursor: &str,
    ) -> Result<String, StoreError> {
        let (next, members): (String, Vec<String>) = self
            .query(
                redis::cmd("SSCAN")
                    .arg(&listing.set)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(BATCH),
            )
            .await?;
        let mut dead = Vec::new();
        let mut keys = Vec::new();
        for member in members {
            match StoreKey::from_hex(&member) {
                Some(key) if listing.seen.insert(key) => keys.push(key),
                Some(_) => {}
                None => dead.push(member),
            }
        }
        let reads = self.read_across_slots(&keys).await?;
        for (key, mut fields) in keys.into_iter().zip(reads) {
            let owner = fields.pop().flatten();
            match decode(fields) {
                Ok(Some(record)) if owner.as_deref() == Some(listing.user) => {
                    listing.live.push(SessionEntry { key, record })
                }
                // Gone, expired or someone else's now.
                Ok(_) => dead.push(key.to_hex()),
                // Left indexed, so that a revocation finds and removes it.
                Err(error) => {
                    tracing::warn!(handle = %key.handle(), %error, "corrupt session record skipped");
                }
            }
        }
        if !dead.is_empty() {
            self.remove_members_keeping_live(&listing.set, listing.user, &dead)
                .await?;
        }
        Ok(next)
    }

    /// Each session's listed fields and its owner (`u`, last), read on its own node, all
    /// at once under one time bound.
    async fn read_across_slots(
        &self,
        keys: &[StoreKey],
    ) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        self.bounded(async {
            let reads = join_all(keys.iter().map(|key| {
                let mut connection = self.connection.clone();
                let command = redis::cmd("HMGET")
                    .arg(self.session_key(key))
                    .arg(&["v", "r", "la", "i", "a", "u"])
                    .clone();
                async move {
                    command
                        .query_async::<Vec<Option<String>>>(&mut connection)
                        .await
                }
            }))
            .await;
            reads
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_error)
        })
        .await
    }

    /// Drops `members` from `user`'s index (in a cluster, where it lives in another slot
    /// than the sessions), then puts back each whose session is, by now, a live one of the
    /// user's. A rename across slots whose original changed under it deletes its copy and
    /// makes it again under the same member; a member dropped because its read fell
    /// between the two would leave the renamed session out of the index for good, missed
    /// by every later listing and revocation.
    async fn remove_members_keeping_live(
        &self,
        set: &str,
        user: &str,
        members: &[String],
    ) -> Result<(), StoreError> {
        self.remove_members(set, members).await?;
        let keys: Vec<StoreKey> = members
            .iter()
            .filter_map(|member| StoreKey::from_hex(member))
            .collect();
        let reads = self.read_across_slots(&keys).await?;
        for (key, mut fields) in keys.iter().zip(reads) {
            let owner = fields.pop().flatten();
            if let Ok(Some(record)) = decode(fields) {
                if owner.as_deref() == Some(user) {
                    self.bounded(self.index(user, key, record.absolute_deadline))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Samples members, deletes their sessions on their own nodes, then drops them from
    /// the index, until the index holds nothing but the kept session. A rename in a
    /// cluster indexes the new key before it deletes the old one, so a session renamed
    /// while this runs is sampled by a later batch.
    pub(super) async fn revoke_user_across_slots(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let set = self.user_key(user);
        let kept = except.map(StoreKey::to_hex);
        let members: u64 = self.query(redis::cmd("SCARD").arg(&set)).await?;
        let limit = round_limit(members);
        let mut deleted = 0;
        for round in 0.. {
            let sample: Vec<String> = self
                .query(redis::cmd("SRANDMEMBER").arg(&set).arg(BATCH + 1))
                .await?;
            let batch: Vec<String> = sample
                .into_iter()
                .filter(|member| Some(member) != kept.as_ref())
                .take(BATCH)
                .collect();
            if batch.is_empty() {
                break;
            }
            let at = to_unix_ms(now());
            deleted += self
                .bounded(async {
                    let outcomes = join_all(
                        batch
                            .iter()
                            .filter_map(|member| StoreKey::from_hex(member))
                            .map(|key| {
                                let mut connection: Connection = self.connection.clone();
                                let mut call =
                                    Call::new(&scripts::DELETE_IF_USER, &[&self.session_key(&key)]);
                                call.arg(at).arg(user);
                                async move { call.invoke::<u64>(&mut connection).await }
                            }),
                    )
                    .await;
                    outcomes
                        .into_iter()
                        .sum::<Result<u64, _>>()
                        .map_err(store_error)
                })
                .await?;
            // Whatever this batch found, a rename may have made the session again since
            // (its copy, deleted here or by the rename's own retry): such a member comes
            // back, for a later batch.
            self.remove_members_keeping_live(&set, user, &batch).await?;
            self.bounded(self.replicated(None)).await?;
            if round >= limit {
                break;
            }
        }
        Ok(deleted)
    }

    async fn remove_members(&self, set: &str, members: &[String]) -> Result<(), StoreError> {
        self.query(redis::cmd("SREM").arg(set).arg(members)).await
    }

    /// Runs one command under the operation timeout, each batch's bound.
    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        self.bounded(async {
            command
                .query_async(&mut connection)
                .await
                .map_err(store_error)
        })
        .await
    }
}
