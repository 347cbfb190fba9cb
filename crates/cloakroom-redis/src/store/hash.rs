//! How a record is laid out in a Redis hash: one field per part the scripts compare or
//! expire on (version, deadlines, user), the rest of the record as JSON.

use cloakroom::record::{from_unix_ms, now, to_unix_ms};
use cloakroom::{Record, StoreError, StoreKey};
use time::OffsetDateTime;

/// A deadline as the scripts read it: milliseconds since the epoch, empty for none.
pub(super) fn ms(at: Option<OffsetDateTime>) -> String {
    at.map(|at| to_unix_ms(at).to_string()).unwrap_or_default()
}

fn parse_ms(text: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    if text.is_empty() {
        return Ok(None);
    }
    let value: i64 = text
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("bad timestamp {text:?}")))?;
    from_unix_ms(value)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {value} out of range")))
}

/// What `load` reads of a session hash. `x` (the earlier deadline, for the server's own
/// expiry) and `u` (for the index scripts) follow from the rest, and every field read is
/// one more bulk reply to parse on the hottest path.
pub(super) const FIELDS: [&str; 5] = ["v", "r", "la", "i", "a"];

/// A session hash as read back: the record, if present and live.
pub(super) fn decode(fields: Vec<Option<String>>) -> Result<Option<Record>, StoreError> {
    let [Some(v), Some(r), Some(la), Some(i), Some(a)] = <[Option<String>; 5]>::try_from(fields)
        .map_err(|_| StoreError::Corrupt("wrong number of fields".into()))?
    else {
        return Ok(None);
    };
    let mut record: Record = serde_json::from_str(&r)
        .map_err(|e| StoreError::Corrupt(format!("record is not valid JSON: {e}")))?;
    record.version = v
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("bad version {v:?}")))?;
    record.last_active_at =
        parse_ms(&la)?.ok_or_else(|| StoreError::Corrupt("no last activity".into()))?;
    record.idle_deadline = parse_ms(&i)?;
    record.absolute_deadline = parse_ms(&a)?;
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

pub(super) fn encode(record: &Record) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(StoreError::backend)
}
