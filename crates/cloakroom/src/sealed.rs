//! Client-side sessions: the whole record sealed into the cookie, signed (HMAC-SHA256) or
//! encrypted and authenticated (XChaCha20-Poly1305, the default).
//!
//! Layout of a cookie value, base64url without padding:
//!
//! ```text
//! version (1) | flags (1: encrypted, compressed) | key id (4) | body
//! encrypted body: nonce (24) | ciphertext with its 16-byte tag
//! signed body:    payload | HMAC-SHA256 tag (32)
//! ```
//!
//! The header and the cookie name are authenticated, so a cookie cannot be moved to another
//! cookie name or have its flags changed. The payload is the record as JSON. Anything that
//! does not verify is an anonymous request.
//!
//! # No compression by default
//!
//! Compressing before sealing makes the cookie's length depend on its contents. When
//! data an attacker chooses (a search term, a name) shares a cookie with a secret (a CSRF
//! token, an internal flag), a network attacker who can make the browser send requests and
//! sees only encrypted lengths can guess the secret piece by piece: a right guess
//! compresses better (CRIME, BREACH). So neither mode compresses unless asked
//! ([`CookieSessions::with_compression`]): encryption hides the contents, and compression
//! must not give them back through the length. That holds for the signed mode too: the
//! browser can read a signed cookie, but a network attacker cannot, since TLS hides it
//! and only its length shows. The cost is size: without compression less data fits in the
//! 4096-byte cookie. Cookies sealed compressed (by an earlier version, or with the opt-in)
//! still open: the flag is read whatever the setting.
//!
//! What a server-less session cannot do: revoke one cookie (a copy stays valid until its
//! deadlines pass) or list a user's sessions. Epochs
//! ([`EpochSource`](crate::EpochSource)) replace both: bump a user's epoch and every
//! cookie issued before is logged out on its next request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::id::StoreKey;
use crate::keys::KeyRing;
use crate::record::Record;

const FORMAT_VERSION: u8 = 1;
const ENCRYPTED: u8 = 0b01;
const COMPRESSED: u8 = 0b10;
const HEADER: usize = 6;
const NONCE: usize = 24;
const AEAD_TAG: usize = 16;
const MAC_TAG: usize = 32;
/// Payloads larger than this are tried compressed. Below it deflate saves a few hundred
/// bytes at most, at the cost of its 300 KB working state on every write.
const COMPRESS_ABOVE: usize = 1024;
/// No cookie value longer than this is even decoded.
const MAX_VALUE_CHARS: usize = 4096;
/// A deflated payload may not inflate past this (no decompression bombs).
const MAX_PAYLOAD: usize = 64 * 1024;

/// How client-side sessions protect the cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CookieMode {
    /// Encrypted and authenticated (XChaCha20-Poly1305): the client can neither read nor
    /// change the session. The default.
    #[default]
    Encrypted,
    /// Signed (HMAC-SHA256): the client can read the session (base64 JSON) but not change it.
    Signed,
}

/// Client-side sessions: the record lives in the cookie, sealed with a [`KeyRing`].
///
/// ```
/// use cloakroom::keys::{generate_key, KeyRing};
/// use cloakroom::sealed::CookieSessions;
/// let sessions = CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap());
/// ```
#[derive(Clone, Debug)]
pub struct CookieSessions {
    ring: KeyRing,
    mode: CookieMode,
    compress: bool,
}

/// What a cookie carries: a random key naming the session (for its handle) and the record.
#[derive(Serialize)]
struct SealedRef<'a> {
    k: String,
    r: &'a Record,
}

#[derive(Deserialize)]
struct SealedOwned {
    k: String,
    r: Record,
}

/// A decoded cookie: the session's key and record, and whether it was sealed under a
/// fallback key (so it must be re-issued under the current one).
#[derive(Debug)]
pub struct OpenedCookie {
    /// A key naming the session: only its [`handle`](StoreKey::handle) is ever shown.
    pub key: StoreKey,
    /// The session.
    pub record: Record,
    /// Whether a fallback key opened it: the engine then re-issues it under the current key.
    pub under_fallback: bool,
}

pub(crate) type Opened = OpenedCookie;

/// The format of a client-side session's cookie. [`CookieSessions`] is cloakroom's own;
/// another implementation lets cloakroom read and write a cookie another application
/// issues, with the same [`Session`](crate::Session) API and layer
/// ([`SessionManager::cookie_codec`](crate::SessionManager::cookie_codec)).
///
/// The engine checks what it gets back: a record past its deadlines is an anonymous
/// request, and so is anything `open` refuses. `open` must never panic, whatever the value.
pub trait CookieCodec: Send + Sync + 'static {
    /// Seals the session into the value of the cookie called `name`, under the current key.
    fn seal(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error>;

    /// Opens a cookie value; `None` for anything that does not verify.
    fn open(&self, name: &str, value: &str) -> Option<OpenedCookie>;

    /// The length [`seal`](Self::seal) would produce, or a bound no shorter than it when that
    /// bound is within `budget` (writes check their cookie's size on every call). The
    /// default seals and measures.
    fn sealed_len(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
        budget: usize,
    ) -> Result<usize, serde_json::Error> {
        let _ = budget;
        Ok(self.seal(name, key, record)?.len())
    }
}

impl CookieCodec for CookieSessions {
    fn seal(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error> {
        CookieSessions::seal(self, name, key, record)
    }

    fn open(&self, name: &str, value: &str) -> Option<OpenedCookie> {
        CookieSessions::open(self, name, value)
    }

    fn sealed_len(
        &self,
        _name: &str,
        key: &StoreKey,
        record: &Record,
        budget: usize,
    ) -> Result<usize, serde_json::Error> {
        CookieSessions::sealed_len(self, key, record, budget)
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CookieSessions {
    /// Encrypted client-side sessions (the recommended mode).
    pub fn encrypted(ring: KeyRing) -> Self {
        Self {
            ring,
            mode: CookieMode::Encrypted,
            compress: false,
        }
    }

    /// Signed client-side sessions: readable by the client, not changeable.
    pub fn signed(ring: KeyRing) -> Self {
        Self {
            ring,
            mode: CookieMode::Signed,
            compress: false,
        }
    }

    /// Turns compression of larger payloads (over 1 KiB) on or off. Default **off**, in both
    /// modes: compressed, the cookie's length reveals how well its contents compress, which
    /// leaks a secret to an attacker who can put chosen text next to it and watch the
    /// length (see [the module docs](self#no-compression-by-default)). Turn it on only when
    /// no session holds both a secret and data a client can influence. Compressed cookies
    /// open whatever this setting.
    pub fn with_compression(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// The mode.
    pub fn mode(&self) -> CookieMode {
        self.mode
    }

    /// The key ring.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    fn contents<'a>(key: &StoreKey, record: &'a Record) -> SealedRef<'a> {
        SealedRef {
            k: key.to_hex(),
            r: record,
        }
    }

    fn json(key: &StoreKey, record: &Record) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Self::contents(key, record))
    }

    fn payload(&self, key: &StoreKey, record: &Record) -> Result<(u8, Vec<u8>), serde_json::Error> {
        Ok(self.compressed(Self::json(key, record)?))
    }

    fn compressed(&self, json: Vec<u8>) -> (u8, Vec<u8>) {
        if self.compress && json.len() > COMPRESS_ABOVE {
            let deflated = miniz_oxide::deflate::compress_to_vec(&json, 6);
            if deflated.len() < json.len() {
                return (COMPRESSED, deflated);
            }
        }
        (0, json)
    }

    /// The length of the cookie value for a payload of `payload` bytes.
    fn value_len(&self, payload: usize) -> usize {
        let body = match self.mode {
            CookieMode::Encrypted => NONCE + payload + AEAD_TAG,
            CookieMode::Signed => payload + MAC_TAG,
        };
        ((HEADER + body) * 4).div_ceil(3)
    }

    /// The length of the cookie value `seal` would produce, without sealing it; when the
    /// uncompressed value is within `budget` that bound is returned without compressing
    /// (a write checks its size on every call, and deflate is the dear part of sealing).
    pub(crate) fn sealed_len(
        &self,
        key: &StoreKey,
        record: &Record,
        budget: usize,
    ) -> Result<usize, serde_json::Error> {
        let plain = self.value_len(crate::record::json_len(&Self::contents(key, record))?);
        if plain <= budget {
            return Ok(plain);
        }
        let (_, payload) = self.compressed(Self::json(key, record)?);
        Ok(self.value_len(payload.len()))
    }

    /// Seals the session under the current key for the cookie called `name`.
    pub(crate) fn seal(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error> {
        let (compressed, payload) = self.payload(key, record)?;
        let key = self.ring.current();
        let encrypted = if self.mode == CookieMode::Encrypted {
            ENCRYPTED
        } else {
            0
        };
        let mut out = Vec::with_capacity(HEADER + NONCE + payload.len() + MAC_TAG);
        out.push(FORMAT_VERSION);
        out.push(encrypted | compressed);
        out.extend_from_slice(&key.id());
        match self.mode {
            CookieMode::Encrypted => {
                let mut nonce = [0u8; NONCE];
                getrandom::fill(&mut nonce).expect("the OS random number generator failed");
                let aad = associated_data(&out, name);
                let cipher = XChaCha20Poly1305::new(key.encryption_key().into());
                // Encryption with a valid key and nonce cannot fail.
                let ciphertext = cipher
                    .encrypt(
                        XNonce::from_slice(&nonce),
                        Payload {
                            msg: &payload,
                            aad: &aad,
                        },
                    )
                    .expect("XChaCha20-Poly1305 encryption");
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ciphertext);
            }
            CookieMode::Signed => {
                let tag = mac(key.signing_key(), &out, name, &payload);
                out.extend_from_slice(&payload);
                out.extend_from_slice(&tag);
            }
        }
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a cookie value; `None` for anything that does not verify under a key of the
    /// ring in this mode. Never panics, whatever the input.
    pub(crate) fn open(&self, name: &str, value: &str) -> Option<Opened> {
        if value.len() > MAX_VALUE_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        if bytes.len() < HEADER || bytes[0] != FORMAT_VERSION {
            return None;
        }
        let flags = bytes[1];
        let wants_encrypted = self.mode == CookieMode::Encrypted;
        if (flags & ENCRYPTED != 0) != wants_encrypted || flags & !(ENCRYPTED | COMPRESSED) != 0 {
            return None;
        }
        let (index, key) = self.ring.find([bytes[2], bytes[3], bytes[4], bytes[5]])?;
        let (header, body) = bytes.split_at(HEADER);
        let payload = if wants_encrypted {
            if body.len() < NONCE + AEAD_TAG {
                return None;
            }
            let (nonce, ciphertext) = body.split_at(NONCE);
            let aad = associated_data(header, name);
            XChaCha20Poly1305::new(key.encryption_key().into())
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .ok()?
        } else {
            let split = body.len().checked_sub(MAC_TAG)?;
            let (payload, tag) = body.split_at(split);
            let mut verifier = <HmacSha256 as Mac>::new_from_slice(key.signing_key()).ok()?;
            verifier.update(&associated_data(header, name));
            verifier.update(payload);
            verifier.verify_slice(tag).ok()?;
            payload.to_vec()
        };
        let json = if flags & COMPRESSED != 0 {
            miniz_oxide::inflate::decompress_to_vec_with_limit(&payload, MAX_PAYLOAD).ok()?
        } else {
            payload
        };
        let sealed: SealedOwned = serde_json::from_slice(&json).ok()?;
        Some(Opened {
            key: StoreKey::from_hex(&sealed.k)?,
            record: sealed.r,
            under_fallback: index > 0,
        })
    }
}

/// Entry points for fuzz targets (`cargo fuzz`), which build outside the crate. Not part
/// of the API: they may change without notice.
#[doc(hidden)]
impl CookieSessions {
    /// [`open`](Self::open): the session key, the record and whether a fallback key
    /// opened it, or `None`. Must never panic, whatever `value` is.
    pub fn fuzz_open(&self, name: &str, value: &str) -> Option<(StoreKey, Record, bool)> {
        self.open(name, value)
            .map(|opened| (opened.key, opened.record, opened.under_fallback))
    }

    /// [`seal`](Self::seal), so a target can check that what opens seals and opens again.
    pub fn fuzz_seal(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error> {
        self.seal(name, key, record)
    }
}

fn associated_data(header: &[u8], name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 2 + name.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn mac(key: &[u8; 32], header: &[u8], name: &str, payload: &[u8]) -> [u8; MAC_TAG] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&associated_data(header, name));
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate_key, Key};
    use crate::record::now;
    use crate::SessionId;
    use proptest::prelude::*;

    fn ring() -> KeyRing {
        KeyRing::parse(&generate_key()).unwrap()
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
    fn tampering_truncation_and_foreign_keys_are_rejected() {
        let sessions = CookieSessions::encrypted(ring());
        let value = sessions
            .seal(
                "id",
                &sample(Default::default()).0,
                &sample(Default::default()).1,
            )
            .unwrap();
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

    #[test]
    fn new_cookies_use_the_current_key_whatever_the_order_given() {
        let keys: Vec<String> = (0..3).map(|_| generate_key()).collect();
        for current in 0..3 {
            let mut order = keys.clone();
            order.swap(0, current);
            let ring = KeyRing::parse(&order.join(",")).unwrap();
            let sessions = CookieSessions::encrypted(ring);
            let value = sessions
                .seal(
                    "id",
                    &sample(Default::default()).0,
                    &sample(Default::default()).1,
                )
                .unwrap();
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
        let value = before
            .seal(
                "id",
                &sample(Default::default()).0,
                &sample(Default::default()).1,
            )
            .unwrap();
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
}
