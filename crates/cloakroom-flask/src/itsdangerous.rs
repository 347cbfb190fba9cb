//! The parts of itsdangerous (2.2) that Flask and Flask-Session sign with: HMAC-SHA1 over
//! a key derived from the secret and a salt, base64url without padding, and the timestamp
//! of `TimestampSigner`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// A signer over a ring of secrets: signs with the current one only, accepts any. An empty
/// secret is no key: Flask has no sessions without a `SECRET_KEY`, and an empty fallback
/// is skipped, so nothing a client could sign without a secret is ever accepted.
#[derive(Clone)]
pub(crate) struct Signer {
    /// Derived keys, the current one first.
    keys: Vec<[u8; 20]>,
    /// Whether the current secret is empty: then nothing verifies.
    unkeyed: bool,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} key(s))", self.keys.len())
    }
}

/// itsdangerous' `key_derivation="hmac"`: HMAC(secret, salt).
fn derive(secret: &[u8], salt: &[u8]) -> [u8; 20] {
    let mut mac = <HmacSha1 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(salt);
    mac.finalize().into_bytes().into()
}

impl Signer {
    /// `current` signs; `fallbacks` are also accepted.
    pub(crate) fn new<'a>(
        salt: &str,
        current: &[u8],
        fallbacks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Self {
        let unkeyed = current.is_empty();
        if unkeyed {
            tracing::warn!(
                "the Flask secret key is empty: every signed Flask value is refused, as Flask does"
            );
        }
        let mut keys = vec![derive(current, salt.as_bytes())];
        keys.extend(
            fallbacks
                .into_iter()
                .filter(|secret| !secret.is_empty())
                .map(|secret| derive(secret, salt.as_bytes())),
        );
        Self { keys, unkeyed }
    }

    fn mac(key: &[u8; 20], value: &[u8]) -> HmacSha1 {
        let mut mac = <HmacSha1 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(value);
        mac
    }

    /// `value.signature` under the current key.
    pub(crate) fn sign(&self, value: &str) -> String {
        let tag = Self::mac(&self.keys[0], value.as_bytes())
            .finalize()
            .into_bytes();
        format!("{value}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The value a signed string carries, and whether a fallback key verified it; `None`
    /// when no key does. Comparisons are constant-time.
    pub(crate) fn unsign<'a>(&self, signed: &'a str) -> Option<(&'a str, bool)> {
        if self.unkeyed {
            return None;
        }
        let (value, signature) = signed.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let index = self
            .keys
            .iter()
            .position(|key| Self::mac(key, value.as_bytes()).verify_slice(&tag).is_ok())?;
        Some((value, index > 0))
    }
}

/// `TimestampSigner`'s timestamp: whole seconds, big-endian without leading zero bytes,
/// base64url.
pub(crate) fn encode_timestamp(seconds: i64) -> String {
    let bytes = seconds.max(0).to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    URL_SAFE_NO_PAD.encode(&bytes[first..])
}

/// The inverse of [`encode_timestamp`]; `None` for anything longer than 8 bytes.
pub(crate) fn decode_timestamp(text: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    if bytes.len() > 8 {
        return None;
    }
    let mut padded = [0u8; 8];
    padded[8 - bytes.len()..].copy_from_slice(&bytes);
    i64::try_from(u64::from_be_bytes(padded)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_minimally() {
        assert_eq!(encode_timestamp(1_767_225_600), "aVW5AA");
        assert_eq!(decode_timestamp("aVW5AA"), Some(1_767_225_600));
        assert_eq!(decode_timestamp("AAAAAAAAAAAA"), None);
        assert_eq!(decode_timestamp("!"), None);
    }

    #[test]
    fn signs_with_the_current_key_and_accepts_fallbacks() {
        let old = Signer::new("s", b"old", []);
        let ring = Signer::new("s", b"new", [&b"old"[..]]);
        let signed = old.sign("v");
        assert_eq!(ring.unsign(&signed), Some(("v", true)));
        assert_eq!(ring.unsign(&ring.sign("v")), Some(("v", false)));
        assert_eq!(
            old.unsign(&ring.sign("v")),
            None,
            "never signed with a fallback"
        );
        assert_eq!(ring.unsign("v"), None);
        assert_eq!(
            ring.unsign(&Signer::new("other salt", b"new", []).sign("v")),
            None
        );
    }
}
