//! Reads that remember the exact bytes read, and the compare-and-set that writes only if
//! they are still there.

use cloakroom::{Record, StoreError, StoreKey};
use time::OffsetDateTime;

use super::scripts::CAS;
use super::value::sha1_hex;
use super::FlaskRedisStore;

/// Compare-and-set attempts before an operation gives up on a value that keeps changing.
pub(super) const ATTEMPTS: usize = 16;

/// A session value as read: its bytes, their SHA-1 (hex, as `redis.sha1hex` gives it) and
/// the record, if readable.
pub(super) struct Read {
    pub(super) sha: String,
    pub(super) record: Result<Record, StoreError>,
}

impl FlaskRedisStore {
    /// The bytes under `key` (`None`: absent) and the milliseconds its key has to live
    /// (negative: no TTL), read in one atomic step.
    pub(super) async fn fetch(&self, key: &StoreKey) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
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
        Ok(bytes.map(|bytes| (bytes, pttl)))
    }

    /// The session value under `key` (`None`: absent), decoded at `time`.
    pub(super) async fn read(
        &self,
        key: &StoreKey,
        time: OffsetDateTime,
    ) -> Result<Option<Read>, StoreError> {
        Ok(self.fetch(key).await?.map(|(bytes, pttl)| Read {
            sha: sha1_hex(&bytes),
            record: self.decode(&bytes, pttl, time),
        }))
    }

    /// The SHA-1 of the bytes under `key` and their record, if it is live at `time`
    /// (`None`: absent or dead); an unreadable record is an error.
    pub(super) async fn read_live(
        &self,
        key: &StoreKey,
        time: OffsetDateTime,
    ) -> Result<Option<(String, Record)>, StoreError> {
        let Some(read) = self.read(key, time).await? else {
            return Ok(None);
        };
        let record = read.record?;
        Ok(record.is_live_at(time).then_some((read.sha, record)))
    }

    /// Runs the compare-and-set script; `Ok(None)`: the value changed since it was read.
    pub(super) async fn cas(
        &self,
        key: &StoreKey,
        sha: &str,
        value: &[u8],
        ttl: Option<u64>,
        old_set: &str,
        new_set: &str,
    ) -> Result<Option<bool>, StoreError> {
        let script = redis::Script::new(CAS);
        let mut invocation = script.key(self.redis_key(key));
        invocation
            .arg(sha)
            .arg(value)
            .arg(ttl.unwrap_or(0))
            .arg(Self::member(key))
            .arg(old_set)
            .arg(new_set);
        let outcome: i64 = self.invoke(&invocation).await?;
        Ok(match outcome {
            2 => Some(true),
            1 => None,
            _ => Some(false),
        })
    }
}
