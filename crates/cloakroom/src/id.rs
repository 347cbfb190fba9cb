//! Session identifiers: the secret [`SessionId`] the browser holds, the [`StoreKey`] a store
//! sees, and the public [`SessionHandle`] shown in lists and logs.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Number of random bytes in a [`SessionId`] (256 bits).
pub const SESSION_ID_BYTES: usize = 32;
/// Length of a [`SessionId`] in its cookie form: base64url without padding.
pub const SESSION_ID_ENCODED_LEN: usize = 43;
/// Number of [`StoreKey`] bytes a [`SessionHandle`] carries.
pub const HANDLE_BYTES: usize = 12;
/// Length of a [`SessionHandle`] in its text form.
pub const HANDLE_ENCODED_LEN: usize = 16;

/// The secret session identifier carried by the cookie: 32 bytes from the OS CSPRNG.
///
/// It is never printed: `Debug` is redacted and there is no `Display`. Stores never see it,
/// only its [`StoreKey`].
///
/// ```
/// use cloakroom::SessionId;
/// let id = SessionId::generate();
/// let text = id.to_cookie_value();
/// assert_eq!(text.len(), 43);
/// assert_eq!(SessionId::parse(&text), Some(id.clone()));
/// assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
/// assert_eq!(SessionId::parse("not-an-id"), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId {
    secret: [u8; SESSION_ID_BYTES],
    /// SHA-256 of `secret`, computed once: a request asks for it several times.
    key: StoreKey,
}

impl SessionId {
    /// Draws a new ID from the operating system's CSPRNG.
    ///
    /// # Panics
    /// Only if the operating system cannot provide randomness at all, where no secure
    /// session can be issued.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SESSION_ID_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self::from_secret(bytes)
    }

    fn from_secret(secret: [u8; SESSION_ID_BYTES]) -> Self {
        Self {
            key: StoreKey(Sha256::digest(secret).into()),
            secret,
        }
    }

    /// Parses the cookie form: exactly 43 characters of canonical base64url without padding.
    /// Anything else is `None`, which callers treat as an anonymous request.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != SESSION_ID_ENCODED_LEN {
            return None;
        }
        let mut bytes = [0u8; SESSION_ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(SESSION_ID_BYTES) => Some(Self::from_secret(bytes)),
            _ => None,
        }
    }

    /// The cookie form of this ID. Handle with care: this is the bearer secret.
    pub fn to_cookie_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret)
    }

    /// The key under which stores keep this session: SHA-256 of the ID, or, for an ID
    /// made by [`with_reversible_key`](Self::with_reversible_key), its reversible key.
    pub fn store_key(&self) -> StoreKey {
        self.key
    }

    /// The same ID with a *reversible* store key: a fixed, unkeyed permutation of the ID's
    /// bytes that [`from_reversible_key`](Self::from_reversible_key) undoes. Only for a store
    /// that must find the raw ID, because another application keys the shared store by it
    /// (see [`IdFormat::reversible_store_keys`]); it gives up hashing at rest. Every output
    /// byte depends on every input byte, so the public [`SessionHandle`] (the key's first 12
    /// bytes) still reveals no byte of the ID.
    ///
    /// ```
    /// use cloakroom::SessionId;
    /// let id = SessionId::generate().with_reversible_key();
    /// assert_ne!(id.store_key(), SessionId::parse(&id.to_cookie_value()).unwrap().store_key());
    /// assert_eq!(SessionId::from_reversible_key(&id.store_key()), id);
    /// ```
    pub fn with_reversible_key(mut self) -> Self {
        self.key = StoreKey(permute(self.secret, false));
        self
    }

    /// The ID whose reversible store key is `key` (the inverse of
    /// [`with_reversible_key`](Self::with_reversible_key)). On a hashed key it returns an
    /// unrelated ID that no session has.
    pub fn from_reversible_key(key: &StoreKey) -> Self {
        Self {
            secret: permute(key.0, true),
            key: *key,
        }
    }
}

/// A 4-round Feistel network over the two 16-byte halves, with SHA-256 (domain-separated
/// per round) as the round function: a public bijection that mixes every byte into every
/// other, so a prefix of the output says nothing about any byte of the input.
fn permute(bytes: [u8; SESSION_ID_BYTES], inverse: bool) -> [u8; SESSION_ID_BYTES] {
    const ROUNDS: u8 = 4;
    let (mut left, mut right) = ([0u8; 16], [0u8; 16]);
    left.copy_from_slice(&bytes[..16]);
    right.copy_from_slice(&bytes[16..]);
    let round = |index: u8, half: &[u8; 16]| -> [u8; 16] {
        let digest = Sha256::new()
            .chain_update(b"cloakroom reversible store key")
            .chain_update([index])
            .chain_update(half)
            .finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    };
    let xor = |target: &mut [u8; 16], mask: [u8; 16]| {
        for (t, m) in target.iter_mut().zip(mask) {
            *t ^= m;
        }
    };
    if inverse {
        for index in (0..ROUNDS).rev() {
            if index % 2 == 0 {
                xor(&mut right, round(index, &left));
            } else {
                xor(&mut left, round(index, &right));
            }
        }
    } else {
        for index in 0..ROUNDS {
            if index % 2 == 0 {
                xor(&mut right, round(index, &left));
            } else {
                xor(&mut left, round(index, &right));
            }
        }
    }
    let mut out = [0u8; SESSION_ID_BYTES];
    out[..16].copy_from_slice(&left);
    out[16..].copy_from_slice(&right);
    out
}

/// How a server-side session's ID is written in its cookie, for sharing sessions with an
/// application that writes it differently (signed, say). The default writes the ID's 43
/// characters as they are and hashes it for the store. Set one with
/// [`SessionManager::with_id_format`](crate::SessionManager::with_id_format).
///
/// Whatever the format, the ID inside is a [`SessionId`]: 32 random bytes, 43 characters
/// of base64url. A value that does not decode to one is an anonymous request.
pub trait IdFormat: Send + Sync + 'static {
    /// The ID's 43-character text inside a cookie value; `None` when the value is not
    /// well-formed or does not verify. Must not panic, whatever the value.
    fn decode<'v>(&self, value: &'v str) -> Option<std::borrow::Cow<'v, str>>;

    /// The cookie value carrying the ID's 43-character text.
    fn encode(&self, id: &str) -> String;

    /// Whether stores get reversible keys ([`SessionId::with_reversible_key`]) instead of
    /// SHA-256 of the ID: only for a store shared with an application that keys it by the
    /// raw ID, which gives up hashing at rest. Default `false`.
    fn reversible_store_keys(&self) -> bool {
        false
    }
}

impl SessionId {
    /// Reads the ID from a cookie value through `format`, keyed as `format` says.
    pub(crate) fn decode_with(value: &str, format: Option<&dyn IdFormat>) -> Option<Self> {
        let Some(format) = format else {
            return Self::parse(value);
        };
        let id = Self::parse(&format.decode(value)?)?;
        Some(if format.reversible_store_keys() {
            id.with_reversible_key()
        } else {
            id
        })
    }

    /// A new ID, keyed as `format` says.
    pub(crate) fn generate_for(format: Option<&dyn IdFormat>) -> Self {
        let id = Self::generate();
        match format {
            Some(format) if format.reversible_store_keys() => id.with_reversible_key(),
            _ => id,
        }
    }

    /// The cookie value for this ID through `format`.
    pub(crate) fn encode_with(&self, format: Option<&dyn IdFormat>) -> String {
        match format {
            Some(format) => format.encode(&self.to_cookie_value()),
            None => self.to_cookie_value(),
        }
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// SHA-256 of a [`SessionId`]: the only key a store ever sees.
///
/// A leaked store cannot be replayed as cookies, because the ID cannot be recovered from it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// Wraps 32 bytes read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads a key from a slice, as a database returns it; `None` unless it is 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, for stores that key by text (Redis, files).
    pub fn to_hex(&self) -> String {
        // Every byte is an ASCII hex digit.
        String::from_utf8(self.hex_digits().to_vec()).unwrap_or_default()
    }

    /// The 64 lowercase hex digits of [`to_hex`](Self::to_hex) as ASCII bytes, for a store
    /// that writes them into a longer key without an intermediate `String`.
    ///
    /// ```
    /// use cloakroom::StoreKey;
    ///
    /// let key = StoreKey::from_bytes([0xab; 32]);
    /// assert_eq!(&key.hex_digits()[..4], b"abab");
    /// assert_eq!(key.hex_digits().as_slice(), key.to_hex().as_bytes());
    /// ```
    pub fn hex_digits(&self) -> [u8; 64] {
        let mut digits = [0u8; 64];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        digits
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            bytes[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(Self(bytes))
    }

    /// The public handle of this session.
    pub fn handle(&self) -> SessionHandle {
        let mut bytes = [0u8; HANDLE_BYTES];
        bytes.copy_from_slice(&self.0[..HANDLE_BYTES]);
        SessionHandle(bytes)
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({})", self.handle())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// A short public name for a session: the first 12 bytes of its [`StoreKey`], base64url.
///
/// It identifies a session in lists, logs and admin commands. It grants nothing: neither the
/// session ID nor the full store key can be derived from it.
///
/// ```
/// use cloakroom::{SessionHandle, SessionId};
/// let key = SessionId::generate().store_key();
/// let handle = key.handle();
/// assert_eq!(handle.to_string().len(), 16);
/// assert!(handle.matches(&key));
/// assert_eq!(SessionHandle::parse(&handle.to_string()), Some(handle));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle([u8; HANDLE_BYTES]);

impl SessionHandle {
    /// Parses the 16-character text form; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != HANDLE_ENCODED_LEN {
            return None;
        }
        let mut bytes = [0u8; HANDLE_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(HANDLE_BYTES) => Some(Self(bytes)),
            _ => None,
        }
    }

    /// The 12 raw bytes: the prefix of the store key.
    pub const fn as_bytes(&self) -> &[u8; HANDLE_BYTES] {
        &self.0
    }

    /// Whether `key` is the key this handle names.
    pub fn matches(&self, key: &StoreKey) -> bool {
        key.0[..HANDLE_BYTES] == self.0
    }

    /// The smallest and largest store keys with this handle, for range lookups in
    /// ordered stores (`key BETWEEN low AND high`).
    pub fn key_range(&self) -> (StoreKey, StoreKey) {
        let mut low = [0u8; 32];
        let mut high = [0xffu8; 32];
        low[..HANDLE_BYTES].copy_from_slice(&self.0);
        high[..HANDLE_BYTES].copy_from_slice(&self.0);
        (StoreKey(low), StoreKey(high))
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; HANDLE_ENCODED_LEN];
        // Encoding 12 bytes always yields exactly 16 characters.
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..written]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({self})")
    }
}

impl serde::Serialize for SessionHandle {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SessionHandle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not a session handle"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversible_keys_invert_and_their_handles_reveal_no_byte_of_the_id() {
        for _ in 0..64 {
            let id = SessionId::generate();
            let reversible = id.clone().with_reversible_key();
            let key = reversible.store_key();
            assert_ne!(key, id.store_key());
            assert_eq!(SessionId::from_reversible_key(&key), reversible);
            assert_eq!(
                SessionId::from_reversible_key(&key).to_cookie_value(),
                id.to_cookie_value()
            );
            // Not the identity: the handle (the key's first 12 bytes) is not the ID's prefix.
            assert_ne!(&key.as_bytes()[..HANDLE_BYTES], &id.secret[..HANDLE_BYTES]);
        }
        // Flipping one bit of the ID changes about half the handle's bits.
        let id = SessionId::generate();
        let mut flipped = id.secret;
        flipped[31] ^= 1;
        let a = id.with_reversible_key().store_key();
        let b = SessionId::from_secret(flipped)
            .with_reversible_key()
            .store_key();
        let changed: u32 = a.as_bytes()[..HANDLE_BYTES]
            .iter()
            .zip(&b.as_bytes()[..HANDLE_BYTES])
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        assert!(changed > 20, "{changed} of 96 handle bits changed");
    }

    // The crate's own tests always build the `testing` module (the dev-dependency on
    // itself turns on `conformance`); the shared format keeps one copy of it.
    #[test]
    fn an_id_format_reads_and_writes_its_own_form_only() {
        use crate::testing::PrefixedIds as Prefixed;
        let id = SessionId::generate_for(Some(&Prefixed));
        let value = id.encode_with(Some(&Prefixed));
        assert!(value.starts_with("v1."));
        assert_eq!(
            SessionId::decode_with(&value, Some(&Prefixed)),
            Some(id.clone())
        );
        assert_eq!(
            SessionId::decode_with(&id.to_cookie_value(), Some(&Prefixed)),
            None
        );
        assert_eq!(SessionId::decode_with(&value, None), None);
        // Without a format nothing changes: hashed keys, plain values.
        let plain = SessionId::generate_for(None);
        assert_eq!(plain.encode_with(None), plain.to_cookie_value());
        assert_eq!(
            SessionId::decode_with(&plain.to_cookie_value(), None),
            Some(plain)
        );
    }

    #[test]
    fn ids_are_distinct_and_round_trip() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(&a.to_cookie_value()), Some(a.clone()));
        assert_ne!(a.store_key(), b.store_key());
    }

    #[test]
    fn parse_rejects_every_other_form() {
        let good = SessionId::generate().to_cookie_value();
        assert!(SessionId::parse(&good[..42]).is_none());
        assert!(SessionId::parse(&format!("{good}A")).is_none());
        assert!(SessionId::parse(&format!("{good}=")).is_none());
        let mut plus = good.clone().into_bytes();
        plus[0] = b'+';
        assert!(SessionId::parse(std::str::from_utf8(&plus).unwrap()).is_none());
        // The last character carries two padding bits; a non-canonical one is rejected.
        let canonical = SessionId::parse(&"A".repeat(43));
        assert!(canonical.is_some());
        assert!(SessionId::parse(&format!("{}B", "A".repeat(42))).is_none());
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse(&"é".repeat(21)).is_none());
    }

    #[test]
    fn store_key_is_sha256_of_the_raw_id() {
        let id = SessionId::from_secret([7u8; 32]);
        let expected: [u8; 32] = Sha256::digest([7u8; 32]).into();
        assert_eq!(id.store_key().as_bytes(), &expected);
        let hex = id.store_key().to_hex();
        assert_eq!(StoreKey::from_hex(&hex), Some(id.store_key()));
        assert_eq!(
            StoreKey::from_hex(&hex.to_uppercase()),
            Some(id.store_key())
        );
        assert!(StoreKey::from_hex(&hex[1..]).is_none());
        let mut bytes = [0u8; 32];
        bytes[0] = 0x0f;
        bytes[31] = 0xa9;
        let text = StoreKey::from_bytes(bytes).to_hex();
        assert_eq!(
            text,
            format!("0f{}a9", "0".repeat(60)),
            "lowercase, two digits a byte"
        );
        assert!(!format!("{:?}", id.store_key()).contains(&hex));
    }

    #[test]
    fn handle_range_brackets_exactly_its_keys() {
        let key = SessionId::generate().store_key();
        let (low, high) = key.handle().key_range();
        assert!(low <= key && key <= high);
        let other = SessionId::generate().store_key();
        assert_eq!(other.handle().matches(&key), other.handle() == key.handle());
        assert!(SessionHandle::parse("short").is_none());
    }
}
