//! The sealed format's promises: round trips, exact lengths, tampering, key rotation,
//! and lengths that say nothing of the contents.

use super::*;
use crate::keys::{generate_key, Key};
use crate::record::now;
use crate::SessionId;
use proptest::prelude::*;

fn ring() -> KeyRing {
    KeyRing::parse(&generate_key()).unwrap()
}

/// An empty session sealed for the cookie `id`.
fn seal_empty(sessions: &CookieSessions) -> String {
    let (key, record) = sample(Default::default());
    sessions.seal("id", &key, &record).unwrap()
}

fn sample(data: serde_json::Map<String, serde_json::Value>) -> (StoreKey, Record) {
    let mut record = Record::new(now(), Some(now() + time::Duration::hours(1)), None);
    record.data = data;
    (SessionId::generate().store_key(), record)
}

#[test]
fn every_mode_round_trips_and_length_is_exact() {
    for sessions in [
        CookieSessions::encrypted(ring()),
        CookieSessions::signed(ring()),
        CookieSessions::encrypted(ring()).with_compression(true),
        CookieSessions::signed(ring()).with_compression(true),
    ] {
        let mut data = serde_json::Map::new();
        // Past the compression threshold, so the opt-in's compressed path is exercised.
        data.insert("cart".into(), serde_json::Value::from(vec!["apple"; 200]));
        let (key, record) = sample(data);
        let value = sessions.seal("id", &key, &record).unwrap();
        // A budget too small for the plain value asks for the exact length.
        assert_eq!(value.len(), sessions.sealed_len(&key, &record, 0).unwrap());
        // Within budget, the plain length bounds the sealed one.
        assert!(sessions.sealed_len(&key, &record, usize::MAX).unwrap() >= value.len());
        let opened = sessions.open("id", &value).expect("opens");
        assert_eq!((opened.key, opened.record), (key, record));
        assert!(!opened.under_fallback);
        assert!(
            sessions.open("other-name", &value).is_none(),
            "bound to the cookie name"
        );
    }
}

#[test]
fn seal_with_hands_over_what_seal_returns_at_every_size() {
    // Either side of the stack buffers (768 sealed bytes, 1,024 characters): the value
    // handed over opens, has the counted length, and the trait's default agrees.
    for sessions in [
        CookieSessions::encrypted(ring()),
        CookieSessions::signed(ring()),
    ] {
        for len in [0, 600, 650, 700, 760, 800, 2500] {
            let mut data = serde_json::Map::new();
            data.insert("note".into(), serde_json::Value::from("x".repeat(len)));
            let (key, record) = sample(data);
            let value = sessions
                .seal_with("id", &key, &record, str::to_owned)
                .unwrap();
            assert_eq!(value.len(), sessions.sealed_len(&key, &record, 0).unwrap());
            let opened = sessions.open("id", &value).expect("opens");
            assert_eq!((opened.key, opened.record), (key, record.clone()));
            let mut through_trait = String::new();
            CookieCodec::seal_with(&sessions, "id", &key, &record, &mut |value| {
                through_trait = value.to_owned();
            })
            .unwrap();
            assert!(sessions.open("id", &through_trait).is_some());
            assert_eq!(through_trait.len(), value.len());
        }
    }
}

#[test]
fn long_cookie_names_are_bound_like_short_ones() {
    // Past the inline associated data (64 bytes of name), the heap path must bind the
    // name the same way: the same bytes, and a cookie moved to another name refused.
    for len in [INLINE_NAME - 1, INLINE_NAME, INLINE_NAME + 1, 300] {
        let name = "n".repeat(len);
        let header = [FORMAT_VERSION, ENCRYPTED, 1, 2, 3, 4];
        let mut expected = header.to_vec();
        expected.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        expected.extend_from_slice(name.as_bytes());
        assert_eq!(&*associated_data(&header, &name), &expected[..], "{len}");
        for sessions in [
            CookieSessions::encrypted(ring()),
            CookieSessions::signed(ring()),
        ] {
            let (key, record) = sample(Default::default());
            let value = sessions.seal(&name, &key, &record).unwrap();
            assert!(sessions.open(&name, &value).is_some(), "{len}");
            let other = format!("{}m", &name[1..]);
            assert!(sessions.open(&other, &value).is_none(), "{len}");
        }
    }
}

#[test]
fn tampering_truncation_and_foreign_keys_are_rejected() {
    let sessions = CookieSessions::encrypted(ring());
    let value = seal_empty(&sessions);
    let bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            sessions
                .open("id", &URL_SAFE_NO_PAD.encode(&flipped))
                .is_none(),
            "bit {bit} flipped"
        );
    }
    for cut in 0..value.len() {
        assert!(
            sessions.open("id", &value[..cut]).is_none(),
            "truncated at {cut}"
        );
    }
    assert!(
        CookieSessions::encrypted(ring())
            .open("id", &value)
            .is_none(),
        "another key"
    );
    assert!(
        CookieSessions::signed(sessions.ring().clone())
            .open("id", &value)
            .is_none(),
        "another mode"
    );
}

/// The nonce bytes of an encrypted cookie value (after the 6-byte header).
fn nonce_of(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value).unwrap()[HEADER..HEADER + NONCE].to_vec()
}

/// Nonces are a keyed function of everything sealed, not drawn from the OS: a change
/// anywhere in the cookie (its data, its timestamps, its name, its key) gives another
/// nonce, and the same cookie sealed again is the same value.
#[test]
fn nonces_are_derived_from_what_is_sealed() {
    let sessions = CookieSessions::encrypted(ring());
    let (key, mut record) = sample(Default::default());
    let first = sessions.seal("id", &key, &record).unwrap();
    assert_eq!(
        first,
        sessions.seal("id", &key, &record).unwrap(),
        "the same content seals to the same value"
    );
    let mut nonces = vec![nonce_of(&first)];
    nonces.push(nonce_of(&sessions.seal("sid", &key, &record).unwrap()));
    nonces.push(nonce_of(
        &CookieSessions::encrypted(ring())
            .seal("id", &key, &record)
            .unwrap(),
    ));
    nonces.push(nonce_of(
        &sessions
            .seal("id", &SessionId::generate().store_key(), &record)
            .unwrap(),
    ));
    record.last_active_at += time::Duration::milliseconds(1);
    nonces.push(nonce_of(&sessions.seal("id", &key, &record).unwrap()));
    record.data.insert("n".into(), 1.into());
    nonces.push(nonce_of(&sessions.seal("id", &key, &record).unwrap()));
    for (i, a) in nonces.iter().enumerate() {
        for b in &nonces[i + 1..] {
            assert_ne!(a, b, "a change in what is sealed changes the nonce");
        }
    }
    let value = sessions.seal("id", &key, &record).unwrap();
    assert_eq!(sessions.open("id", &value).unwrap().record, record);
}

/// The nonce's input starts with the associated data's length, so a long cookie name
/// cannot trade bytes with the plaintext: the header's own name length stops at
/// `u16::MAX`, and without the prefix these two would share a nonce.
#[test]
fn the_nonce_input_is_unambiguous_whatever_the_name_length() {
    let key = Key::parse(&generate_key()).unwrap();
    let aad = vec![b'a'; 70_000];
    let mut longer = aad.clone();
    longer.push(b'p');
    let split_one_way: [u8; NONCE] = key.nonce_for(&aad, b"plaintext");
    let split_the_other: [u8; NONCE] = key.nonce_for(&longer, b"laintext");
    assert_ne!(split_one_way, split_the_other);
}

#[test]
fn new_cookies_use_the_current_key_whatever_the_order_given() {
    let keys: Vec<String> = (0..3).map(|_| generate_key()).collect();
    for current in 0..3 {
        let mut order = keys.clone();
        order.swap(0, current);
        let ring = KeyRing::parse(&order.join(",")).unwrap();
        let sessions = CookieSessions::encrypted(ring);
        let value = seal_empty(&sessions);
        let only_current =
            CookieSessions::encrypted(KeyRing::new(Key::parse(&keys[current]).unwrap(), []));
        assert!(
            only_current.open("id", &value).is_some(),
            "sealed with the current key {current}"
        );
        for other in (0..3).filter(|&k| k != current) {
            let only_other =
                CookieSessions::encrypted(KeyRing::new(Key::parse(&keys[other]).unwrap(), []));
            assert!(
                only_other.open("id", &value).is_none(),
                "never with fallback {other}"
            );
        }
    }
}

#[test]
fn a_cookie_under_a_fallback_is_flagged_for_reissue() {
    let (old, new) = (generate_key(), generate_key());
    let before = CookieSessions::signed(KeyRing::parse(&old).unwrap());
    let value = seal_empty(&before);
    let after = CookieSessions::signed(KeyRing::parse(&format!("{new},{old}")).unwrap());
    assert!(after.open("id", &value).unwrap().under_fallback);
}

/// 2000 bytes of text drawn from 64 symbols: all but incompressible.
fn noise(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)[..len].to_owned()
}

fn sealed_len_of(sessions: &CookieSessions, pairs: &[(&str, String)]) -> usize {
    let data = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str())))
        .collect();
    let (key, record) = sample(data);
    sessions.seal("id", &key, &record).unwrap().len()
}

#[test]
fn by_default_the_cookie_length_says_nothing_about_its_contents() {
    for sessions in [
        CookieSessions::encrypted(ring()),
        CookieSessions::signed(ring()),
    ] {
        let mode = sessions.mode();
        assert_eq!(
            sealed_len_of(&sessions, &[("note", "a".repeat(2000))]),
            sealed_len_of(&sessions, &[("note", noise(2000))]),
            "{mode:?}: compressible and random data of one length seal to one length"
        );
        // CRIME: attacker-chosen text next to a secret. A right guess must not make the
        // cookie shorter than a wrong one.
        let secret = noise(32);
        let padding = noise(1500);
        let with_guess = |guess: String| {
            sealed_len_of(
                &sessions,
                &[
                    ("csrf", secret.clone()),
                    ("search", guess),
                    ("pad", padding.clone()),
                ],
            )
        };
        assert_eq!(
            with_guess(secret.clone()),
            with_guess(noise(32)),
            "{mode:?}: a right guess of the secret shows in the length"
        );
    }
    // The opt-in still compresses: the length then does depend on the contents.
    let compressing = CookieSessions::encrypted(ring()).with_compression(true);
    assert!(
        sealed_len_of(&compressing, &[("note", "a".repeat(2000))])
            < sealed_len_of(&compressing, &[("note", noise(2000))])
    );
}

#[test]
fn the_fuzzing_entry_points_are_seal_and_open() {
    let sessions = CookieSessions::encrypted(ring());
    let (key, record) = sample(Default::default());
    let value = sessions.fuzz_seal("id", &key, &record).unwrap();
    assert_eq!(sessions.fuzz_open("id", &value), Some((key, record, false)));
    assert_eq!(sessions.fuzz_open("id", &value[1..]), None);
}

#[test]
fn a_cookie_sealed_compressed_by_an_earlier_version_still_opens() {
    // Sealed with compression on (the default before it went off), under this key.
    let key = "2rCzk8MUskeluwK5JUeiBnOM5fkEqWPSHEe1qFM-uyI";
    let value = concat!(
        "AQN463VMwx2KucM8AtpC4BEXylV0TEL29T2PzwUgdh-pmFL_NPZRaVq0S_mbGMCgD0IODtRYtR4_86Gg",
        "Tu-sB7xHix7UBNhzBcXKsw5MUqDNaxALB0tcJamAsJld8y4u-4YkGZ5PUNhoYqSgMraLCFJCJjE7WQXt",
        "g1V2QokQiVbkrRWymJBG692i6GgwJP-grDZa7v1_Fm-KUr4NvuNZiqSWUlHfBWKGoApG0ohAlTKbEvt4",
        "ou0FDBclT1MdGPu5T04T1Rv8b3-oDfdKwNqAPs37en8Ptu230EU4CzyDBzTkPndFjKf6OB_bcdQR6kwU",
    );
    let flags = URL_SAFE_NO_PAD.decode(value).unwrap()[1];
    assert_eq!(flags, ENCRYPTED | COMPRESSED);
    let sessions = CookieSessions::encrypted(KeyRing::parse(key).unwrap());
    let opened = sessions
        .open("id", value)
        .expect("the compressed flag is still read");
    assert_eq!(
        opened.key.to_hex(),
        "129ce3b9b778f19041bcb338c8cd5ddf2e421985a45767b8e1b69fae6f68a157"
    );
    assert_eq!(
        opened.record.data["cart"],
        serde_json::Value::from(vec!["apple"; 300])
    );
    // And one sealed compressed today opens in a ring that does not compress.
    let ring = ring();
    let (k, mut record) = sample(Default::default());
    record.data.insert("cart".into(), vec!["apple"; 300].into());
    let value = CookieSessions::signed(ring.clone())
        .with_compression(true)
        .seal("id", &k, &record)
        .unwrap();
    let opened = CookieSessions::signed(ring).open("id", &value).unwrap();
    assert_eq!(opened.record, record);
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn random_data_round_trips_in_both_modes(data in prop::collection::btree_map(".{0,12}", json_value(), 0..8)) {
        let (key, record) = sample(data.into_iter().collect());
        for sessions in [CookieSessions::encrypted(ring()), CookieSessions::signed(ring())] {
            let value = sessions.seal("id", &key, &record).unwrap();
            let opened = sessions.open("id", &value).unwrap();
            prop_assert_eq!(opened.key, key);
            prop_assert_eq!(&opened.record, &record);
        }
    }

    #[test]
    fn no_input_makes_decoding_panic(value in ".{0,600}", bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let sessions = [CookieSessions::encrypted(ring()), CookieSessions::signed(ring())];
        for s in &sessions {
            let _ = s.open("id", &value);
            let _ = s.open("id", &URL_SAFE_NO_PAD.encode(&bytes));
            let mut forged = vec![FORMAT_VERSION, ENCRYPTED | COMPRESSED];
            forged.extend_from_slice(&s.ring().current().id());
            forged.extend_from_slice(&bytes);
            prop_assert!(s.open("id", &URL_SAFE_NO_PAD.encode(&forged)).is_none());
        }
    }
}

/// What a write may seal, the next request can open: a payload that deflates into the
/// cookie but inflates past what `open` accepts (no decompression bombs) is refused as too
/// large when it is written. It was accepted, and its session lost on the next request.
#[test]
fn compressed_payloads_are_only_as_large_as_open_accepts() {
    for sessions in [
        CookieSessions::encrypted(ring()).with_compression(true),
        CookieSessions::signed(ring()).with_compression(true),
    ] {
        for len in [32 * 1024, MAX_PAYLOAD - 200, MAX_PAYLOAD + 1, 200 * 1024] {
            let data = [("x".to_owned(), serde_json::Value::from("a".repeat(len)))];
            let (key, record) = sample(data.into_iter().collect());
            let measured = sessions.sealed_len(&key, &record, 4000).unwrap();
            let sealed = sessions.seal("id", &key, &record).unwrap();
            let opens = sessions.open("id", &sealed).is_some();
            assert!(
                measured > 4000 || opens,
                "{len} bytes fit ({measured}) and do not open"
            );
            assert!(opens || len > MAX_PAYLOAD, "{len} bytes must open");
        }
    }
}
