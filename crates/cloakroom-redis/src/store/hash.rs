//! How a record is laid out in a Redis hash: one field per part the scripts compare or
//! expire on (version, deadlines, user), the rest of the record as JSON.

use cloakroom::record::{now, stored_unix_ms, to_unix_ms, unix_ms, ClientMeta, Data};
use cloakroom::{Record, StoreError, StoreKey};
use redis::{RedisWrite, ToRedisArgs};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// A deadline as the scripts read it: milliseconds since the epoch, empty for none.
pub(super) fn ms(at: Option<OffsetDateTime>) -> Ms {
    Ms(at)
}

/// [`ms`]'s value, written straight into a command: formatted on the stack, where a
/// `String` per deadline cost an allocation and the formatting machinery on every write.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ms(Option<OffsetDateTime>);

impl ToRedisArgs for Ms {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        match self.0 {
            Some(at) => to_unix_ms(at).write_redis_args(out),
            None => out.write_arg(b""),
        }
    }
}

fn parse_ms(text: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    if text.is_empty() {
        return Ok(None);
    }
    let value: i64 = text
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("bad timestamp {text:?}")))?;
    stored_unix_ms(value).map(Some)
}

/// What `load` reads of a session hash. `x` (the earlier deadline, for the server's own
/// expiry) and `u` (for the index scripts) follow from the rest, and every field read is
/// one more bulk reply to parse on the hottest path.
pub(super) const FIELDS: [&str; 5] = ["v", "r", "la", "i", "a"];

/// The JSON in `r`: the record but for what the hash's own fields carry (version, last
/// activity, deadlines). Writing those twice cost about 1,500 instructions a request to
/// encode and parse, and the copies in the JSON went stale anyway (a touch moves `la` and
/// `i` only, an update bumps `v` past the version it encodes).
#[derive(Serialize)]
struct Body<'a> {
    data: &'a Data,
    #[serde(with = "unix_ms")]
    created_at: OffsetDateTime,
    persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    client: &'a ClientMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_epoch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_binding: Option<&'a Value>,
    /// Placeholders for earlier versions, which require these two in the JSON and then
    /// put the hash fields' values over them: during a rolling deploy, or after a
    /// rollback, they still read every session this version writes. Constant, so they
    /// cost no formatting and cannot go stale.
    #[serde(rename = "last_active_at")]
    for_earlier_versions_last_active_at: u8,
    #[serde(rename = "version")]
    for_earlier_versions_version: u8,
}

/// [`Body`] as read back. Records written before it still carry `version`,
/// `last_active_at` and the deadlines in their JSON: unknown fields are skipped, and the
/// hash fields, which a touch or an update kept current, win as they always did.
#[derive(Deserialize)]
struct StoredBody {
    data: Data,
    #[serde(with = "unix_ms")]
    created_at: OffsetDateTime,
    #[serde(default)]
    persistent: bool,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    client: ClientMeta,
    #[serde(default)]
    auth_epoch: Option<String>,
    #[serde(default)]
    device_binding: Option<Box<Value>>,
}

/// A session hash as read back: the record, if present and live.
pub(super) fn decode(fields: Vec<Option<String>>) -> Result<Option<Record>, StoreError> {
    let [Some(v), Some(r), Some(la), Some(i), Some(a)] = <[Option<String>; 5]>::try_from(fields)
        .map_err(|_| StoreError::Corrupt("wrong number of fields".into()))?
    else {
        return Ok(None);
    };
    let body: StoredBody = serde_json::from_str(&r)
        .map_err(|e| StoreError::Corrupt(format!("record is not valid JSON: {e}")))?;
    let record = Record {
        data: body.data,
        created_at: body.created_at,
        last_active_at: parse_ms(&la)?
            .ok_or_else(|| StoreError::Corrupt("no last activity".into()))?,
        idle_deadline: parse_ms(&i)?,
        absolute_deadline: parse_ms(&a)?,
        persistent: body.persistent,
        user_id: body.user_id,
        client: body.client,
        auth_epoch: body.auth_epoch,
        device_binding: body.device_binding,
        version: v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("bad version {v:?}")))?,
    };
    // Redis expires the key natively; this catches the moments before it does.
    Ok(record.is_live_at(now()).then_some(record))
}

/// [`decode`] for listings: a damaged record is logged and skipped, so one bad record
/// never fails a whole list (the failure policy); revocation removes it.
pub(super) fn decode_listed(key: &StoreKey, fields: Vec<Option<String>>) -> Option<Record> {
    decode(fields).unwrap_or_else(|error| {
        tracing::warn!(handle = %key.handle(), %error, "corrupt session record skipped");
        None
    })
}

/// The JSON for `r`.
pub(super) fn encode(record: &Record) -> Result<String, StoreError> {
    // Destructured without `..`, so a field added to `Record` fails to compile here until
    // it is either written to `Body` or known to be in a hash field.
    let Record {
        data,
        created_at,
        last_active_at: _,
        idle_deadline: _,
        absolute_deadline: _,
        persistent,
        user_id,
        client,
        auth_epoch,
        device_binding,
        version: _,
    } = record;
    serde_json::to_string(&Body {
        data,
        created_at: *created_at,
        persistent: *persistent,
        user_id: user_id.as_deref(),
        client,
        auth_epoch: auth_epoch.as_deref(),
        device_binding: device_binding.as_deref(),
        for_earlier_versions_last_active_at: 0,
        for_earlier_versions_version: 0,
    })
    .map_err(StoreError::backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom::record::from_unix_ms;

    /// A deadline as [`Ms`] writes it into a command.
    fn text(at: Option<OffsetDateTime>) -> String {
        let mut args: Vec<Vec<u8>> = Vec::new();
        ms(at).write_redis_args(&mut args);
        let [arg] = <[Vec<u8>; 1]>::try_from(args).unwrap();
        String::from_utf8(arg).unwrap()
    }

    #[test]
    fn deadlines_are_unix_milliseconds_or_empty() {
        assert_eq!(text(None), "");
        assert_eq!(text(from_unix_ms(1_700_000_000_123)), "1700000000123");
        assert_eq!(text(from_unix_ms(-5)), "-5");
    }

    /// Every part of a record survives `r` and the hash fields; `r` does not repeat the
    /// deadlines the fields carry, and still parses as the whole `Record` that earlier
    /// versions read it as (they then take version, activity and deadlines from the hash).
    #[test]
    fn records_round_trip_through_the_hash_layout() {
        let t = now();
        let mut record = Record::new(
            t - time::Duration::minutes(5),
            Some(t + time::Duration::minutes(10)),
            Some(t + time::Duration::hours(1)),
        );
        record.last_active_at = t;
        record.version = 7;
        record.persistent = true;
        record.user_id = Some("ann".into());
        record.auth_epoch = Some("3".into());
        record.client = ClientMeta::new(Some("198.51.100.4".into()), Some("ua"));
        record.device_binding = Some(Box::new(serde_json::json!({"state": "bound"})));
        record
            .data
            .insert("k".into(), serde_json::json!({"a": [1.5, null]}));
        let r = encode(&record).unwrap();
        for repeated in ["idle_deadline", "absolute_deadline"] {
            assert!(!r.contains(repeated), "{repeated} in {r}");
        }
        let as_earlier_versions_read_it: Record =
            serde_json::from_str(&r).expect("r parses as a whole Record, as before");
        assert_eq!(as_earlier_versions_read_it.data, record.data);
        assert_eq!(as_earlier_versions_read_it.user_id, record.user_id);
        let fields = vec![
            Some(record.version.to_string()),
            Some(r),
            Some(to_unix_ms(record.last_active_at).to_string()),
            Some(text(record.idle_deadline)),
            Some(text(record.absolute_deadline)),
        ];
        assert_eq!(decode(fields).unwrap(), Some(record));
    }
}
