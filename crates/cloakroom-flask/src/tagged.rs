//! Flask's tagged JSON (`flask.json.tag`): how a Flask session keeps values JSON has no
//! type for, as one-key objects whose key is a tag.
//!
//! | Python | tagged JSON |
//! |---|---|
//! | `tuple` | `{" t": [...]}` |
//! | `bytes` | `{" b": "base64"}` |
//! | `Markup` | `{" m": "<b>html</b>"}` |
//! | `UUID` | `{" u": "32 hex digits"}` |
//! | `datetime` | `{" d": "Fri, 02 Jan 2026 03:04:05 GMT"}` |
//! | a one-key `dict` whose key is a tag | `{" di": {"KEY__": value}}` |
//!
//! cloakroom keeps session values **in this tagged form**, exactly as Flask wrote them, so
//! a value the Rust side never touches reads back in Flask with its Python type. Build
//! tagged values with the functions here, and read them as plain JSON with [`untag`].
//! A one-key object whose key is one of these tags is that tagged value: one with a
//! payload Flask could not read (`{" t": 5}`) is refused on write (and a cookie carrying one
//! is an anonymous request), so nothing cloakroom writes can make Flask fail.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Flask's tags.
pub const TAGS: [&str; 6] = [" t", " b", " m", " u", " d", " di"];

/// The tag of a one-key object whose key is a tag, and its payload.
fn as_tagged(map: &Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() != 1 {
        return None;
    }
    let (key, value) = map.iter().next()?;
    TAGS.contains(&key.as_str())
        .then_some((key.as_str(), value))
}

/// Whether Flask can read `value` back: every tagged object carries a payload its tag
/// accepts.
pub fn is_valid(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(is_valid),
        Value::Object(map) => match as_tagged(map) {
            Some((tag, payload)) => valid_payload(tag, payload),
            None => map.values().all(is_valid),
        },
        _ => true,
    }
}

fn valid_payload(tag: &str, payload: &Value) -> bool {
    match (tag, payload) {
        (" t", Value::Array(items)) => items.iter().all(is_valid),
        (" b", Value::String(text)) => STANDARD.decode(text).is_ok(),
        (" m", Value::String(_)) => true,
        (" u", Value::String(text)) => uuid_hex(text).is_some(),
        // Werkzeug's parse_date gives None for text it cannot read: never an error.
        (" d", Value::String(_)) => true,
        (" di", Value::Object(map)) => !map.is_empty() && map.values().all(is_valid),
        _ => false,
    }
}

/// The 32 hex digits of a UUID in any form Python's `UUID()` reads.
fn uuid_hex(text: &str) -> Option<String> {
    let text = text.trim_start_matches("urn:").trim_start_matches("uuid:");
    let text = text.trim_matches(|c| c == '{' || c == '}');
    let hex: String = text.chars().filter(|&c| c != '-').collect();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// A Python tuple.
pub fn tuple(items: impl IntoIterator<Item = Value>) -> Value {
    tag(" t", Value::Array(items.into_iter().collect()))
}

/// Python `bytes`.
pub fn bytes(data: &[u8]) -> Value {
    tag(" b", Value::String(STANDARD.encode(data)))
}

/// A `markupsafe.Markup` (HTML Flask trusts as safe: only put HTML you escaped yourself).
pub fn markup(html: &str) -> Value {
    tag(" m", Value::String(html.to_owned()))
}

/// A Python `UUID`.
pub fn uuid(value: u128) -> Value {
    tag(" u", Value::String(format!("{value:032x}")))
}

/// A Python `datetime` (Flask keeps whole seconds, in UTC).
pub fn datetime(at: OffsetDateTime) -> Value {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    tag(" d", Value::String(at.format(&format).unwrap_or_default()))
}

fn tag(tag: &str, payload: Value) -> Value {
    let mut map = Map::new();
    map.insert(tag.to_owned(), payload);
    Value::Object(map)
}

/// The value as plain JSON: tuples become arrays, bytes standard base64 text, a UUID its
/// hyphenated form, Markup and dates their text, escaped dicts the dict.
///
/// ```
/// use serde_json::json;
/// use cloakroom_flask::tagged;
/// let value = json!({"point": tagged::tuple([json!(1), json!(2)]), "id": tagged::uuid(0x12)});
/// assert_eq!(tagged::untag(&value), json!({"point": [1, 2], "id": "00000000-0000-0000-0000-000000000012"}));
/// ```
pub fn untag(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(untag).collect()),
        Value::Object(map) => match as_tagged(map) {
            Some((" t", Value::Array(items))) => Value::Array(items.iter().map(untag).collect()),
            Some((" u", Value::String(text))) => match uuid_hex(text) {
                Some(hex) => Value::String(format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )),
                None => value.clone(),
            },
            Some((" b" | " m" | " d", text @ Value::String(_))) => text.clone(),
            Some((" di", Value::Object(inner))) => Value::Object(
                inner
                    .iter()
                    .map(|(k, v)| (k.strip_suffix("__").unwrap_or(k).to_owned(), untag(v)))
                    .collect(),
            ),
            _ => Value::Object(map.iter().map(|(k, v)| (k.clone(), untag(v))).collect()),
        },
        other => other.clone(),
    }
}

/// The session dict as Flask tags it: a one-key dict whose key is a tag is escaped.
pub(crate) fn escape_top(map: Map<String, Value>) -> Value {
    match map.iter().next() {
        Some((key, _)) if map.len() == 1 && TAGS.contains(&key.as_str()) => {
            let (key, value) = map.into_iter().next().expect("one entry");
            let mut inner = Map::new();
            inner.insert(format!("{key}__"), value);
            tag(" di", Value::Object(inner))
        }
        _ => Value::Object(map),
    }
}

/// The session dict from Flask's JSON; `None` when it is not a dict.
pub(crate) fn unescape_top(value: Value) -> Option<Map<String, Value>> {
    let Value::Object(map) = value else {
        return None;
    };
    match as_tagged(&map).map(|(tag, _)| tag) {
        None => Some(map),
        Some(" di") => {
            let Some(Value::Object(inner)) = map.into_iter().next().map(|(_, v)| v) else {
                return None;
            };
            let (key, value) = inner.into_iter().next()?;
            let mut out = Map::new();
            out.insert(key.strip_suffix("__").unwrap_or(&key).to_owned(), value);
            Some(out)
        }
        Some(_) => None,
    }
}

/// Compact JSON as Flask writes it in a request (`sort_keys=True`, `ensure_ascii=True`):
/// keys sorted, every character past ASCII escaped as `\uXXXX` (surrogate pairs beyond
/// the BMP).
pub(crate) fn to_flask_json(value: &Value) -> Result<String, serde_json::Error> {
    // serde_json's map is ordered by key (no `preserve_order` in this workspace), which is
    // Python's sort of str keys: both order by code point.
    let text = serde_json::to_string(value)?;
    if text.is_ascii() {
        return Ok(text);
    }
    // Outside strings, JSON is ASCII: every other character sits in a string literal.
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validity_follows_what_flask_can_read() {
        assert!(is_valid(&json!({"a": {" t": [1, {" b": "AP8="}]}})));
        assert!(!is_valid(&json!({" t": 5})));
        assert!(!is_valid(&json!([{" b": "not base64!"}])));
        assert!(!is_valid(&json!({" u": "xyz"})));
        assert!(is_valid(
            &json!({" u": "{12345678-1234-5678-1234-567812345678}"})
        ));
        assert!(!is_valid(&json!({" di": {}})));
        assert!(
            is_valid(&json!({" t": 5, "other": 1})),
            "two keys: a plain dict"
        );
    }

    #[test]
    fn ascii_only_output_escapes_like_python() {
        assert_eq!(
            to_flask_json(&json!({"b": "caf\u{e9} \u{1F600}", "a": 1})).unwrap(),
            r#"{"a":1,"b":"caf\u00e9 \ud83d\ude00"}"#
        );
    }

    #[test]
    fn the_session_dict_is_escaped_when_its_only_key_is_a_tag() {
        let map: Map<String, Value> = [(" t".to_owned(), json!(1))].into_iter().collect();
        let escaped = escape_top(map.clone());
        assert_eq!(escaped, json!({" di": {" t__": 1}}));
        assert_eq!(unescape_top(escaped), Some(map));
        assert_eq!(unescape_top(json!({" t": [1]})), None);
        assert_eq!(unescape_top(json!([1])), None);
    }

    #[test]
    fn dates_are_http_dates() {
        let at = time::macros::datetime!(2026-01-02 03:04:05 UTC);
        assert_eq!(datetime(at), json!({" d": "Fri, 02 Jan 2026 03:04:05 GMT"}));
    }
}
