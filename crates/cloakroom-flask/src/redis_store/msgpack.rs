//! MessagePack as Flask-Session's msgspec reads and writes it, to and from cloakroom's JSON.

use serde_json::{Map, Number, Value};

use crate::tagged;

/// MessagePack as msgspec decodes it, into cloakroom's JSON: `bytes` become
/// [`tagged::bytes`]; `None` for what JSON cannot hold.
pub(super) fn from_msgpack(value: &rmpv::Value) -> Option<Value> {
    Some(match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(*b),
        rmpv::Value::Integer(n) => match (n.as_i64(), n.as_u64()) {
            (Some(n), _) => Value::from(n),
            (None, Some(n)) => Value::from(n),
            _ => return None,
        },
        rmpv::Value::F32(f) => Value::Number(Number::from_f64(f64::from(*f))?),
        rmpv::Value::F64(f) => Value::Number(Number::from_f64(*f)?),
        rmpv::Value::String(text) => Value::String(text.as_str()?.to_owned()),
        rmpv::Value::Binary(data) => tagged::bytes(data),
        rmpv::Value::Array(items) => {
            Value::Array(items.iter().map(from_msgpack).collect::<Option<_>>()?)
        }
        rmpv::Value::Map(pairs) => {
            let mut map = Map::new();
            for (key, value) in pairs {
                map.insert(key.as_str()?.to_owned(), from_msgpack(value)?);
            }
            Value::Object(map)
        }
        rmpv::Value::Ext(..) => return None,
    })
}

/// cloakroom's JSON as MessagePack msgspec decodes to the same Python values: tagged
/// bytes as `bin`, tuples as arrays, the other tags as text (what msgspec makes of them).
pub(super) fn to_msgpack(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(n), _, _) => rmpv::Value::from(n),
            (None, Some(n), _) => rmpv::Value::from(n),
            (_, _, f) => rmpv::Value::F64(f.unwrap_or_default()),
        },
        Value::String(text) => rmpv::Value::from(text.as_str()),
        Value::Array(items) => rmpv::Value::Array(items.iter().map(to_msgpack).collect()),
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(text)) = map.get(" b") {
                    if let Ok(data) =
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
                    {
                        return rmpv::Value::Binary(data);
                    }
                }
                if map.keys().any(|key| tagged::TAGS.contains(&key.as_str())) {
                    return to_msgpack(&tagged::untag(value));
                }
            }
            rmpv::Value::Map(to_msgpack_entries(map))
        }
    }
}

/// The entries of a JSON object as MessagePack map entries, values through [`to_msgpack`].
pub(super) fn to_msgpack_entries(map: &Map<String, Value>) -> Vec<(rmpv::Value, rmpv::Value)> {
    map.iter()
        .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_round_trips_with_bytes_tagged() {
        let json = serde_json::json!({"a": [1, -2, 1.5, null, true, "t"], "b": tagged::bytes(b"\x00\x01")});
        let packed = to_msgpack(&json);
        assert!(
            matches!(&packed, rmpv::Value::Map(pairs) if pairs.iter().any(|(_, v)| matches!(v, rmpv::Value::Binary(_))))
        );
        assert_eq!(from_msgpack(&packed), Some(json));
        assert_eq!(from_msgpack(&rmpv::Value::Ext(-1, vec![0; 4])), None);
    }

    #[test]
    fn flask_sessions_msgpack_reads_and_writes_back_the_same_python_values() {
        use base64::Engine;
        let vectors: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/vectors.json")).unwrap();
        let packed = base64::engine::general_purpose::STANDARD
            .decode(vectors["flask_session"]["msgpack_b64"].as_str().unwrap())
            .unwrap();
        let value = rmpv::decode::read_value(&mut &packed[..]).unwrap();
        let json = from_msgpack(&value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"_permanent": true, "_user_id": "alice", "cart": ["apple"], "n": 3, "f": 1.5,
                "note": "caf\u{e9}", "raw": tagged::bytes(b"\x00\x01"), "tuple": [1, 2], "none": null})
        );
        // Written back, it is the same MessagePack value (keys in another order).
        let Some(rmpv::Value::Map(mut again)) = Some(to_msgpack(&json)) else {
            unreachable!()
        };
        let rmpv::Value::Map(mut original) = value else {
            unreachable!()
        };
        let by_key = |pairs: &mut Vec<(rmpv::Value, rmpv::Value)>| {
            pairs.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()))
        };
        by_key(&mut again);
        by_key(&mut original);
        assert_eq!(again, original);
    }
}
