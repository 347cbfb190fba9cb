//! A cloakroom [`Record`] as a Flask session dict, and back.
//!
//! | record | Flask session dict |
//! |---|---|
//! | `data` | every other key, values in Flask's [tagged JSON](crate::tagged) |
//! | `user_id` | the user key (`_user_id`, as Flask-Login keeps it; configurable) |
//! | `persistent` | `_permanent` |
//! | creation time, absolute deadline, epoch, client, version | `_cloakroom`, which Flask keeps untouched |
//!
//! The activity time and the idle deadline are not in the dict: they are the cookie's
//! timestamp (client-side) or the Redis TTL (Flask-Session), as Flask reads them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use cloakroom::record::{from_unix_ms, to_unix_ms};
use cloakroom::{ClientMeta, Record, StoreKey};

use crate::tagged;

/// The key cloakroom's own fields live under in a Flask session.
pub const META_KEY: &str = "_cloakroom";
/// Flask's key for a permanent session.
pub const PERMANENT_KEY: &str = "_permanent";
/// Flask-Login's key for the logged-in user, the default user key.
pub const DEFAULT_USER_KEY: &str = "_user_id";

#[derive(Default, Serialize, Deserialize)]
struct Meta {
    /// A key naming a client-side session (its handle), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    /// Created, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<i64>,
    /// Absolute deadline, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<String>,
    /// The device binding (DBSC), as the record keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<Box<Value>>,
}

/// The session dict for `record` (`key` names a client-side session).
pub(crate) fn to_dict(
    key: Option<&StoreKey>,
    record: &Record,
    user_key: &str,
) -> Result<Map<String, Value>, serde_json::Error> {
    let mut dict = Map::new();
    for (name, value) in &record.data {
        if !tagged::is_valid(value) {
            return Err(serde::ser::Error::custom(format!(
                "session value {name:?} holds a tagged object Flask cannot read"
            )));
        }
        dict.insert(name.clone(), value.clone());
    }
    if record.persistent {
        dict.insert(PERMANENT_KEY.to_owned(), Value::Bool(true));
    } else {
        dict.remove(PERMANENT_KEY);
    }
    match &record.user_id {
        Some(user) => dict.insert(user_key.to_owned(), Value::String(user.clone())),
        None => dict.remove(user_key),
    };
    let meta = Meta {
        k: key.map(StoreKey::to_hex),
        c: Some(to_unix_ms(record.created_at)),
        a: record.absolute_deadline.map(to_unix_ms),
        v: Some(record.version),
        e: record.auth_epoch.clone(),
        ip: record.client.ip.clone(),
        ua: record.client.user_agent.clone(),
        b: record.device_binding.clone(),
    };
    dict.insert(META_KEY.to_owned(), serde_json::to_value(meta)?);
    Ok(dict)
}

/// The record a session dict holds, active at `last_active_at` and idle until
/// `idle_deadline`; `None` when a value is tagged in a way Flask could not read either.
pub(crate) fn from_dict(
    mut dict: Map<String, Value>,
    user_key: &str,
    last_active_at: OffsetDateTime,
    idle_deadline: Option<OffsetDateTime>,
) -> Option<(Option<StoreKey>, Record)> {
    // A `_cloakroom` Flask code changed into something else is ignored, not fatal: the
    // session is then read as one Flask made.
    let meta: Meta = dict
        .remove(META_KEY)
        .and_then(|meta| serde_json::from_value(meta).ok())
        .unwrap_or_default();
    let persistent = matches!(dict.remove(PERMANENT_KEY), Some(Value::Bool(true)));
    let user_id = match dict.get(user_key) {
        Some(Value::String(user)) => Some(user.clone()),
        Some(Value::Number(user)) => Some(user.to_string()),
        _ => None,
    };
    if user_id.is_some() {
        dict.remove(user_key);
    }
    if !dict.values().all(tagged::is_valid) {
        return None;
    }
    let created_at = meta
        .c
        .and_then(from_unix_ms)
        .filter(|created| *created <= last_active_at)
        .unwrap_or(last_active_at);
    let mut record = Record::new(created_at, idle_deadline, meta.a.and_then(from_unix_ms));
    record.last_active_at = last_active_at;
    record.data = dict;
    record.persistent = persistent;
    record.user_id = user_id;
    record.auth_epoch = meta.e;
    record.device_binding = meta.b;
    record.client = ClientMeta::new(meta.ip, meta.ua.as_deref());
    record.version = meta.v.unwrap_or(1);
    let key = meta.k.as_deref().and_then(StoreKey::from_hex);
    Some((key, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_survives_the_dict_and_flask_fields_map_to_it() {
        let at = cloakroom::record::now();
        let mut record = Record::new(
            at,
            Some(at + time::Duration::hours(1)),
            Some(at + time::Duration::days(2)),
        );
        record.data.insert("cart".into(), json!(["apple"]));
        record
            .data
            .insert("point".into(), tagged::tuple([json!(1)]));
        record.user_id = Some("alice".into());
        record.persistent = true;
        record.auth_epoch = Some("3".into());
        record.client = ClientMeta::new(Some("127.0.0.1".into()), Some("curl"));
        record.version = 7;
        let key = cloakroom::SessionId::generate().store_key();
        let dict = to_dict(Some(&key), &record, DEFAULT_USER_KEY).unwrap();
        assert_eq!(dict["_user_id"], json!("alice"));
        assert_eq!(dict["_permanent"], json!(true));
        let (back_key, back) = from_dict(dict, DEFAULT_USER_KEY, at, record.idle_deadline).unwrap();
        assert_eq!((back_key, back), (Some(key), record));
    }

    #[test]
    fn a_dict_flask_made_reads_with_its_timestamp() {
        let at = cloakroom::record::now();
        let dict = json!({"_user_id": 42, "_fresh": true, "n": 1, "_permanent": true});
        let Value::Object(dict) = dict else {
            unreachable!()
        };
        let (key, record) = from_dict(dict, DEFAULT_USER_KEY, at, None).unwrap();
        assert_eq!(key, None);
        assert_eq!(record.user_id.as_deref(), Some("42"));
        assert!(record.persistent);
        assert_eq!(record.created_at, at);
        assert_eq!(
            record.data,
            json!({"_fresh": true, "n": 1}).as_object().unwrap().clone()
        );
        let Value::Object(bad) = json!({"x": {" t": 1}}) else {
            unreachable!()
        };
        assert!(from_dict(bad, DEFAULT_USER_KEY, at, None).is_none());
    }

    #[test]
    fn writing_a_value_flask_could_not_read_is_refused() {
        let mut record = Record::new(cloakroom::record::now(), None, None);
        record.data.insert("x".into(), json!({" u": "nope"}));
        assert!(to_dict(None, &record, DEFAULT_USER_KEY).is_err());
    }
}
