//! The stored value: the session dict in MessagePack, sealed with a fingerprint of its own
//! bytes, so a value Flask rewrote is told from one cloakroom wrote.

use std::time::Duration;

use cloakroom::record::{from_unix_ms, saturating_add, saturating_sub, to_unix_ms};
use cloakroom::{Record, StoreError};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use time::OffsetDateTime;

use super::msgpack::{from_msgpack, to_msgpack_entries};
use super::FlaskRedisStore;
use crate::dict;

/// The high bit marks a version read from bytes Flask wrote: their fingerprint, never a
/// counter cloakroom started.
pub(super) const FLASK_WRITTEN: u64 = 1 << 63;
/// Hex digits of the self-fingerprint closing every value cloakroom writes.
const TAIL: usize = 15;
/// A TTL this much later than the deadline cloakroom wrote was refreshed by Flask.
const REFRESH_SLACK: Duration = Duration::from_secs(2);

impl FlaskRedisStore {
    /// The session dict in MessagePack, `_cloakroom` last with the activity time, the idle
    /// deadline and, closing the value, a fingerprint of every byte before it: bytes that
    /// still match it are exactly as cloakroom wrote them (or as Flask wrote back an
    /// unchanged dict), so the version counter in `_cloakroom` is current.
    pub(super) fn encode(&self, record: &Record) -> Result<Vec<u8>, StoreError> {
        let mut session = dict::to_dict(None, record, &self.user_key)
            .map_err(|error| StoreError::backend(error.to_string()))?;
        let meta = session.remove(dict::META_KEY);
        let mut entries = to_msgpack_entries(&session);
        let mut meta = match meta {
            Some(Value::Object(meta)) => to_msgpack_entries(&meta),
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
    pub(super) fn decode(
        &self,
        bytes: &[u8],
        pttl: i64,
        time: OffsetDateTime,
    ) -> Result<Record, StoreError> {
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
        let ttl_deadline =
            (pttl >= 0).then(|| saturating_add(time, Duration::from_millis(pttl.unsigned_abs())));
        // Flask-Session re-sets the TTL to the lifetime on every write: the last activity
        // is that far before the deadline.
        let from_ttl = |deadline: OffsetDateTime| saturating_sub(deadline, self.lifetime).min(time);
        let (last_active, idle_deadline) = match (sealed, last) {
            (true, Some(last)) => {
                let written = match (idle, absolute) {
                    (Some(i), Some(a)) => Some(i.min(a)),
                    (i, a) => i.or(a),
                };
                match (ttl_deadline, written) {
                    // Flask saved the unchanged dict again and moved the TTL on.
                    (Some(ttl), Some(written)) if ttl > saturating_add(written, REFRESH_SLACK) => {
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
}

/// The version of stored bytes: the first 15 hex digits of their SHA-1, which the update
/// script computes the same way with `redis.sha1hex`.
pub(super) fn fingerprint(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head) >> 4
}

/// SHA-1 in hex, as `redis.sha1hex` writes it.
pub(super) fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn fingerprint_hex(version: u64) -> String {
    format!("{version:015x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_redis_sha1hex() {
        // sha1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d
        assert_eq!(fingerprint_hex(fingerprint(b"abc")), "a9993e364706816");
    }
}
