//! Known vectors made by the real Flask 3.1 and Flask-Session 0.8
//! (tests/fixtures/generate.py, run in the venv of scripts/flask.sh).

use cloakroom::{CookieCodec, SessionId};
use cloakroom_flask::{tagged, FlaskCookie, FlaskSessionIds};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/vectors.json")).unwrap()
}

fn cookie(v: &Value, name: &str) -> String {
    v["cookies"][name]["value"].as_str().unwrap().to_owned()
}

fn at(v: &Value, offset: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(v["stamp"].as_i64().unwrap() + offset).unwrap()
}

fn flask(v: &Value) -> FlaskCookie {
    FlaskCookie::new(v["secret_key"].as_str().unwrap())
}

fn object(value: Value) -> Map<String, Value> {
    let Value::Object(map) = value else {
        panic!("not an object")
    };
    map
}

#[test]
fn flask_cookies_open_compressed_or_not_with_every_tag() {
    let v = vectors();
    let codec = flask(&v);
    let (session, stamp, fallback) = codec.decode_at(&cookie(&v, "plain"), at(&v, 10)).unwrap();
    assert_eq!(Value::Object(session), v["cookies"]["plain"]["json"]);
    assert_eq!((stamp, fallback), (at(&v, 0), false));

    let (session, ..) = codec
        .decode_at(&cookie(&v, "compressed"), at(&v, 0))
        .unwrap();
    assert_eq!(session["cart"], json!(vec!["apple"; 300]));

    let (session, ..) = codec.decode_at(&cookie(&v, "tagged"), at(&v, 0)).unwrap();
    let expected: Value = serde_json::from_str(v["tagged_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        Value::Object(session.clone()),
        expected,
        "kept in Flask's tagged form"
    );
    assert_eq!(
        session["tuple"],
        tagged::tuple([json!(1), json!("two"), tagged::tuple([json!(3)])])
    );
    assert_eq!(session["bytes"], tagged::bytes(b"\x00\xffraw"));
    assert_eq!(session["markup"], tagged::markup("<b>bold</b>"));
    assert_eq!(
        session["uuid"],
        tagged::uuid(0x12345678_1234_5678_1234_567812345678)
    );
    assert_eq!(
        session["when"],
        tagged::datetime(time::macros::datetime!(2026-01-02 03:04:05 UTC))
    );
    assert_eq!(
        tagged::untag(&session["escaped"]),
        json!({" t": "not a tuple"})
    );
    assert_eq!(
        tagged::untag(&session["nested"]),
        json!({"list": ["eA==", {" di": 1}]})
    );

    let (session, ..) = codec
        .decode_at(&cookie(&v, "escaped_top"), at(&v, 0))
        .unwrap();
    assert_eq!(Value::Object(session), json!({" t": "x"}));
    let (session, ..) = codec.decode_at(&cookie(&v, "empty"), at(&v, 0)).unwrap();
    assert!(session.is_empty());
}

#[test]
fn cloakroom_signs_byte_for_byte_as_flask_does() {
    let v = vectors();
    let codec = flask(&v);
    let small = object(json!({"_user_id": "alice", "note": "caf\u{e9} \u{2603}", "n": 1}));
    assert_eq!(
        codec.encode_at(&small, at(&v, 0)).unwrap(),
        cookie(&v, "small")
    );
    let top = object(json!({" t": "x"}));
    assert_eq!(
        codec.encode_at(&top, at(&v, 0)).unwrap(),
        cookie(&v, "escaped_top")
    );
    assert_eq!(
        codec.encode_at(&Map::new(), at(&v, 0)).unwrap(),
        cookie(&v, "empty")
    );
}

#[test]
fn expiry_matches_flask_to_the_second() {
    let v = vectors();
    let codec = flask(&v);
    let lifetime = v["lifetime_seconds"].as_i64().unwrap();
    assert_eq!(
        codec.lifetime().as_secs(),
        lifetime as u64,
        "Flask's default lifetime"
    );
    let plain = cookie(&v, "plain");
    assert_eq!(v["checks"]["at_lifetime"], json!(true));
    assert!(codec.decode_at(&plain, at(&v, lifetime)).is_some());
    assert_eq!(v["checks"]["past_lifetime"], json!("SignatureExpired"));
    assert!(codec.decode_at(&plain, at(&v, lifetime + 1)).is_none());
    assert_eq!(v["checks"]["from_the_future"], json!("SignatureExpired"));
    assert!(codec.decode_at(&plain, at(&v, -1)).is_none());
}

#[test]
fn fallback_keys_are_accepted_never_used_to_sign() {
    let v = vectors();
    let old = v["retired_key"].as_str().unwrap();
    let old_cookie = cookie(&v, "fallback");
    assert_eq!(v["checks"]["fallback_accepted"], json!(true));
    let ring = flask(&v).with_fallbacks([old]);
    let (_, _, under_fallback) = ring.decode_at(&old_cookie, at(&v, 10)).unwrap();
    assert!(under_fallback, "to be re-issued under the current key");
    assert_eq!(
        v["checks"]["fallback_without_ring"],
        json!("BadTimeSignature")
    );
    assert!(flask(&v).decode_at(&old_cookie, at(&v, 10)).is_none());
    // What the ring signs opens under the current key alone: never under the fallback.
    let small = object(json!({"n": 1}));
    let signed = ring.encode_at(&small, at(&v, 0)).unwrap();
    assert!(flask(&v).decode_at(&signed, at(&v, 1)).is_some());
    assert!(FlaskCookie::new(old)
        .decode_at(&signed, at(&v, 1))
        .is_none());
}

#[test]
fn tampering_truncation_and_foreign_keys_are_refused() {
    let v = vectors();
    let codec = flask(&v);
    let value = cookie(&v, "small");
    for i in 0..value.len() {
        let mut bytes = value.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(
            codec.decode_at(&tampered, at(&v, 0)).is_none(),
            "byte {i} changed"
        );
        assert!(
            codec.decode_at(&value[..i], at(&v, 0)).is_none(),
            "cut at {i}"
        );
    }
    assert!(FlaskCookie::new("another key")
        .decode_at(&value, at(&v, 0))
        .is_none());
    assert!(codec.open("session", "").is_none());
    assert!(codec.open("session", &"A".repeat(5000)).is_none());
}

#[test]
fn flask_session_ids_and_values_read_as_flask_session_wrote_them() {
    use cloakroom::IdFormat;
    let v = vectors();
    let fs = &v["flask_session"];
    assert_eq!(
        fs["key_prefix"],
        json!(cloakroom_flask::redis_store::DEFAULT_PREFIX)
    );
    assert_eq!(fs["sid_length"], json!(32));
    let sid = fs["sid"].as_str().unwrap();
    assert!(
        SessionId::parse(sid).is_some(),
        "token_urlsafe(32) is a cloakroom ID"
    );
    let signed = FlaskSessionIds::signed(v["secret_key"].as_str().unwrap());
    assert_eq!(signed.encode(sid), fs["signed_sid"].as_str().unwrap());
    assert_eq!(
        signed.decode(fs["signed_sid"].as_str().unwrap()).as_deref(),
        Some(sid)
    );
    assert!(FlaskSessionIds::signed("another key")
        .decode(fs["signed_sid"].as_str().unwrap())
        .is_none());
    assert!(
        signed.decode(sid).is_none(),
        "an unsigned ID is refused when signing is on"
    );
    assert_eq!(
        FlaskSessionIds::unsigned().decode(sid).as_deref(),
        Some(sid)
    );
}
