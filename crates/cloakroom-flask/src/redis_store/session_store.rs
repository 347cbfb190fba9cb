//! The store contract over Flask-Session's layout: each write a compare-and-set on the
//! bytes read, retried while Flask or another writer changes them.

use async_trait::async_trait;
use cloakroom::record::now;
use cloakroom::{
    InsertError, ListQuery, Record, RenameError, SessionEntry, SessionHandle, SessionStore,
    StoreError, StoreKey, Touch, TouchError, UpdateError,
};

use super::cas::{Read, ATTEMPTS};
use super::scripts::{DELETE, INSERT, RENAME};
use super::value::FLASK_WRITTEN;
use super::FlaskRedisStore;

#[async_trait]
impl SessionStore for FlaskRedisStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        let Some((bytes, pttl)) = self.fetch(key).await? else {
            return Ok(None);
        };
        let time = now();
        let record = self.decode(&bytes, pttl, time)?;
        Ok(record.is_live_at(time).then_some(record))
    }

    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        let time = now();
        let bytes = self.encode(record)?;
        let script = redis::Script::new(INSERT);
        let mut invocation = script.key(self.redis_key(key));
        invocation
            .arg(bytes)
            .arg(Self::ttl_ms(record, time).unwrap_or(0))
            .arg(Self::member(key))
            .arg(self.user_set_of(record));
        let created: i64 = self.invoke(&invocation).await?;
        if created == 1 {
            Ok(())
        } else {
            Err(InsertError::Duplicate)
        }
    }

    async fn update(&self, key: &StoreKey, record: &Record) -> Result<(), UpdateError> {
        // Read, check the version, then write only if the bytes are still the ones read:
        // the value holds the version and the absolute deadline, so the decision is made
        // on them, and a touch in between only costs another round.
        for _ in 0..ATTEMPTS {
            let time = now();
            let Some((sha, stored)) = self.read_live(key, time).await? else {
                return Err(UpdateError::Missing);
            };
            if stored.version != record.version {
                return Err(UpdateError::Conflict);
            }
            let mut next = record.clone();
            next.absolute_deadline = stored.absolute_deadline;
            next.version = record.version.wrapping_add(1);
            let bytes = self.encode(&next)?;
            let old_set = self.user_set_of(&stored);
            let new_set = self.user_set_of(&next);
            let ttl = Self::ttl_ms(&next, time);
            match self.cas(key, &sha, &bytes, ttl, &old_set, &new_set).await? {
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
            let Some((sha, mut record)) = self.read_live(key, time).await? else {
                return Err(TouchError::Missing);
            };
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
            match self.cas(key, &sha, &bytes, ttl, &set, &set).await? {
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
            let Some((sha, record)) = self.read_live(old, time).await? else {
                return Err(RenameError::Missing);
            };
            let script = redis::Script::new(RENAME);
            let mut invocation = script.key(self.redis_key(old));
            invocation
                .key(self.redis_key(new))
                .arg(&sha)
                .arg(Self::member(old))
                .arg(Self::member(new))
                .arg(self.user_set_of(&record));
            let outcome: i64 = self.invoke(&invocation).await?;
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
        let script = redis::Script::new(DELETE);
        let mut invocation = script.key(self.redis_key(key));
        invocation.arg(Self::member(key)).arg(set);
        let deleted: i64 = self.invoke(&invocation).await?;
        Ok(deleted > 0)
    }

    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        let mut entries = Vec::new();
        self.user_pass(user, None, |entry| entries.push(entry))
            .await?;
        // `SSCAN` may return a member twice when the set is resized during it.
        entries.sort_by_key(|entry| entry.key);
        entries.dedup_by_key(|entry| entry.key);
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
        // Sessions that changed under every pass are still live: saying the user is logged
        // out everywhere would be false.
        Err(StoreError::backend(format!(
            "the user's sessions kept changing during the revocation ({total} revoked); try again"
        )))
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
