//! The per-user index: one Redis set of session IDs per user, beside Flask's keys.

use cloakroom::record::now;
use cloakroom::{Record, SessionEntry, SessionId, StoreError, StoreKey};

use super::scripts::PRUNE;
use super::store::SCAN_BATCH;
use super::value::sha1_hex;
use super::FlaskRedisStore;

impl FlaskRedisStore {
    /// The Redis set indexing `user`'s sessions.
    pub(super) fn user_set(&self, user: &str) -> String {
        match &self.index_prefix {
            Some(prefix) => format!("{prefix}{user}"),
            None => format!("cloakroom:{}user:{user}", self.prefix),
        }
    }

    /// The index set of `record`'s user; empty (the scripts' "none") without a user.
    pub(super) fn user_set_of(&self, record: &Record) -> String {
        record
            .user_id
            .as_deref()
            .map(|user| self.user_set(user))
            .unwrap_or_default()
    }

    /// One pass over `user`'s index set, a batch of members at a time (one `SSCAN`, one
    /// read of the batch and at most one upkeep script each): calls `each` with every live
    /// session of the user, deletes the user's dead ones, and prunes members naming a
    /// session that is gone or another user's. With `revoke`, deletes the user's sessions
    /// but `except` (an unreadable one too: the index says it was the user's) instead of
    /// listing them.
    /// Returns (sessions deleted, members that changed under the pass).
    pub(super) async fn user_pass(
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
                    // A listing deletes the user's dead sessions as a revocation does, and
                    // only leaves an unreadable one for a revocation to judge: Flask keeps
                    // serving a key while its TTL runs, past the absolute deadline it does
                    // not know, and a member dropped here left that session out of every
                    // later revocation.
                    let verdict = match (revoke.is_some(), mine, live, record.is_ok()) {
                        (true, true, true, _) => Some("1"),
                        (true, true, false, _) => Some("2"),
                        (false, true, true, _) => None,
                        (false, true, false, true) => Some("2"),
                        (false, true, false, false) => None,
                        (_, false, _, _) => Some("0"),
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
