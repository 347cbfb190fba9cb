//! The key ring: the current secret key and fallbacks, for signing and encrypting cookies.
//!
//! Cookies are always produced with the **current** key; any key in the ring is accepted,
//! and a cookie accepted under a fallback is re-issued under the current key on that
//! response. So rotating a key is: add the new key in front, deploy, wait one session
//! lifetime, drop the old key (see the README's "Rotating a key").
//!
//! Keys are written as base64 (standard or URL-safe, padding optional) of at least
//! [`MIN_KEY_BYTES`] random bytes. A ring is several keys separated by commas, spaces or
//! newlines, the current one first. [`generate_key`] makes one (so does
//! `openssl rand -base64 32`). Keys that are plainly not random (a base64-encoded
//! passphrase, all zeros, a counting sequence) are refused: see [`Weakness`]. A passphrase
//! typed in as the key itself is not caught when it happens to be 43 or more base64
//! characters (`my-app-production-session-secret-key-2024-v1`): those decode to bytes no test
//! can tell from random ones, so never make a key up; generate it.

use std::fmt;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest key accepted, in bytes (256 bits).
pub const MIN_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// One secret key, with the subkeys derived from it. Never printed.
#[derive(Clone)]
pub struct Key {
    id: [u8; 4],
    signing: [u8; 32],
    encryption: [u8; 32],
    /// The subkey sealed cookies' nonces are derived under (see [`Key::nonce_for`]).
    nonces: [u8; 32],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {})", URL_SAFE_NO_PAD.encode(self.id))
    }
}

fn derive(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

impl Key {
    /// A key from raw secret bytes: at least [`MIN_KEY_BYTES`] of them, and random (a key
    /// that shows a [`Weakness`] is refused).
    pub fn from_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                position: 1,
                bytes: secret.len(),
            });
        }
        if let Some(weakness) = weakness(secret) {
            return Err(KeyError::Weak {
                position: 1,
                weakness,
            });
        }
        let id_material = derive(secret, b"cloakroom key id v1");
        Ok(Self {
            id: [
                id_material[0],
                id_material[1],
                id_material[2],
                id_material[3],
            ],
            signing: derive(secret, b"cloakroom signing v1"),
            encryption: derive(secret, b"cloakroom encryption v1"),
            nonces: derive(secret, b"cloakroom nonce v1"),
        })
    }

    /// A key from its base64 text form.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim().trim_end_matches('=');
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .or_else(|_| STANDARD_NO_PAD.decode(text))
            .map_err(|_| KeyError::NotBase64 { position: 1 })?;
        Self::from_bytes(&bytes)
    }

    /// A public 4-byte identifier, carried in cookies to pick the key for decoding.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    pub(crate) fn signing_key(&self) -> &[u8; 32] {
        &self.signing
    }

    pub(crate) fn encryption_key(&self) -> &[u8; 32] {
        &self.encryption
    }

    /// The nonce to encrypt `plaintext` under, with `aad`: keyed BLAKE3 of `aad`'s length,
    /// `aad` and `plaintext` under the nonce subkey. The length first keeps the input
    /// unambiguous whatever the cookie name's length (the header's own name length stops at
    /// `u16::MAX`). Why a derived nonce, and what it shows: the `sealed` module's docs.
    /// BLAKE3 rather than HMAC-SHA256: about 15% slower where the CPU has SHA extensions
    /// (240 ns against 210 for a cookie's 150 bytes here), several times faster where it
    /// has not.
    pub(crate) fn nonce_for<const N: usize>(&self, aad: &[u8], plaintext: &[u8]) -> [u8; N] {
        let mut prf = blake3::Hasher::new_keyed(&self.nonces);
        prf.update(&(aad.len() as u64).to_le_bytes());
        prf.update(aad);
        prf.update(plaintext);
        let mut nonce = [0; N];
        prf.finalize_xof().fill(&mut nonce);
        nonce
    }
}

/// The current key and the fallbacks still accepted.
///
/// ```
/// use cloakroom::keys::{generate_key, KeyRing};
/// let (new, old) = (generate_key(), generate_key());
/// let ring = KeyRing::parse(&format!("{new}\n{old}")).unwrap();
/// assert_eq!(ring.current().id(), cloakroom::keys::Key::parse(&new).unwrap().id());
/// assert_eq!(ring.len(), 2);
/// assert!(KeyRing::parse("too-short").is_err());
/// ```
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// A ring of `current` and the `fallbacks` still accepted.
    pub fn new(current: Key, fallbacks: impl IntoIterator<Item = Key>) -> Self {
        let mut keys = vec![current];
        keys.extend(fallbacks);
        Self { keys }
    }

    /// Parses keys separated by commas, spaces or newlines; the first is current.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (index, part) in text
            .split([',', ' ', '\n', '\r', '\t'])
            .filter(|p| !p.is_empty())
            .enumerate()
        {
            let key = Key::parse(part).map_err(|error| error.at(index + 1))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys })
    }

    /// Reads the ring from an environment variable.
    pub fn from_env(variable: &str) -> Result<Self, KeyError> {
        let text =
            std::env::var(variable).map_err(|_| KeyError::MissingVariable(variable.to_owned()))?;
        Self::parse(&text)
    }

    /// Reads the ring from a file (one key per line, the current one first).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|error| KeyError::File(path.display().to_string(), error.to_string()))?;
        Self::parse(&text)
    }

    /// The key new cookies are produced with.
    pub fn current(&self) -> &Key {
        &self.keys[0]
    }

    /// The key with this id, if the ring has it.
    pub fn find(&self, id: [u8; 4]) -> Option<(usize, &Key)> {
        self.keys.iter().enumerate().find(|(_, key)| key.id == id)
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring is empty (never true for a constructed ring).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The fewest distinct byte values, and distinct steps between neighbouring bytes, a key
/// may have.
///
/// 32 random bytes have about 30 of each; fewer than 16 happens by chance with a
/// probability below 2^-50, so only made-up keys are refused.
pub const MIN_DISTINCT_BYTES: usize = 16;

/// Why a key of the right length was refused as not random.
///
/// A key must be random bytes. These are the documented tests, each of which random bytes
/// fail with a probability below 2^-44 (and [`generate_key`] draws again if they ever do):
///
/// - [`FewDistinctBytes`](Self::FewDistinctBytes): fewer than [`MIN_DISTINCT_BYTES`]
///   distinct byte values (all zeros, one byte repeated, a short pattern repeated);
/// - [`Text`](Self::Text): every byte is printable ASCII or a tab or newline, as in a
///   passphrase or a password (base64 of text decodes back to that text);
/// - [`Pattern`](Self::Pattern): fewer than [`MIN_DISTINCT_BYTES`] distinct steps between
///   neighbouring bytes (counting up or down, or in strides).
///
/// Passing them does not make a key random; failing one shows it is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Weakness {
    /// Too few distinct byte values.
    FewDistinctBytes,
    /// Text, such as a passphrase.
    Text,
    /// Neighbouring bytes step in too few ways (a counting or striding sequence).
    Pattern,
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FewDistinctBytes => "it repeats a few byte values",
            Self::Text => "it is text, like a passphrase",
            Self::Pattern => "its bytes follow a pattern",
        })
    }
}

/// The first [`Weakness`] `secret` shows, if any.
fn weakness(secret: &[u8]) -> Option<Weakness> {
    fn distinct(bytes: impl Iterator<Item = u8>) -> usize {
        let mut seen = [false; 256];
        bytes.for_each(|byte| seen[usize::from(byte)] = true);
        seen.iter().filter(|&&seen| seen).count()
    }
    if distinct(secret.iter().copied()) < MIN_DISTINCT_BYTES {
        return Some(Weakness::FewDistinctBytes);
    }
    if secret
        .iter()
        .all(|&byte| byte.is_ascii_graphic() || matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Some(Weakness::Text);
    }
    let steps = secret.windows(2).map(|pair| pair[1].wrapping_sub(pair[0]));
    if distinct(steps) < MIN_DISTINCT_BYTES {
        return Some(Weakness::Pattern);
    }
    None
}

/// A new random key in the documented encoding (base64url of 32 bytes from the OS CSPRNG).
pub fn generate_key() -> String {
    let mut bytes = [0u8; MIN_KEY_BYTES];
    // Random bytes fail the weakness tests with a probability below 2^-44; drawing again
    // then keeps every generated key acceptable.
    loop {
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        if weakness(&bytes).is_none() {
            return URL_SAFE_NO_PAD.encode(bytes);
        }
    }
}

/// A key or ring that cannot be used, with what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// A key is shorter than [`MIN_KEY_BYTES`].
    #[error("key {position} is {bytes} bytes; keys must be at least {MIN_KEY_BYTES} random bytes: use a key from cloakroom::generate_key(), `cloakroom keygen` or `openssl rand -base64 32`")]
    TooShort {
        /// Which key in the ring (from 1).
        position: usize,
        /// Its length.
        bytes: usize,
    },
    /// A key is long enough but not random: see [`Weakness`].
    #[error("key {position} is not random ({weakness}): use a key from cloakroom::generate_key(), `cloakroom keygen` or `openssl rand -base64 32`")]
    Weak {
        /// Which key in the ring (from 1).
        position: usize,
        /// What gives it away.
        weakness: Weakness,
    },
    /// A key is not base64.
    #[error("key {position} is not base64: use a key from cloakroom::generate_key(), `cloakroom keygen` or `openssl rand -base64 32`")]
    NotBase64 {
        /// Which key in the ring (from 1).
        position: usize,
    },
    /// No key at all.
    #[error("no key given: set at least one key (generate one with `cloakroom keygen`)")]
    Empty,
    /// The environment variable is not set.
    #[error("environment variable {0} is not set: put the key ring there (generate a key with `cloakroom keygen`)")]
    MissingVariable(String),
    /// The key file could not be read.
    #[error("cannot read the key file {0}: {1}")]
    File(String, String),
}

impl KeyError {
    fn at(self, position: usize) -> Self {
        match self {
            Self::TooShort { bytes, .. } => Self::TooShort { position, bytes },
            Self::NotBase64 { .. } => Self::NotBase64 { position },
            Self::Weak { weakness, .. } => Self::Weak { position, weakness },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated_with_their_position() {
        let good = generate_key();
        assert_eq!(
            KeyRing::parse(&format!("{good},c2hvcnQ")).unwrap_err(),
            KeyError::TooShort {
                position: 2,
                bytes: 5
            }
        );
        assert_eq!(
            KeyRing::parse(&format!("{good} !!!")).unwrap_err(),
            KeyError::NotBase64 { position: 2 }
        );
        assert_eq!(KeyRing::parse(" \n").unwrap_err(), KeyError::Empty);
        let key = URL_SAFE_NO_PAD.decode(generate_key()).unwrap();
        let standard =
            base64::engine::general_purpose::STANDARD.encode([&key[..], &key[..8]].concat());
        assert!(
            Key::parse(&standard).is_ok(),
            "standard base64 with padding is accepted"
        );
    }

    fn weakness(bytes: &[u8]) -> Option<Weakness> {
        match Key::from_bytes(bytes) {
            Err(KeyError::Weak { weakness, .. }) => Some(weakness),
            Err(other) => panic!("{other}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn low_entropy_keys_are_refused() {
        assert_eq!(weakness(&[0; 32]), Some(Weakness::FewDistinctBytes));
        assert_eq!(weakness(&[7; 40]), Some(Weakness::FewDistinctBytes));
        let pattern: Vec<u8> = [1u8, 2, 3, 4].repeat(8);
        assert_eq!(weakness(&pattern), Some(Weakness::FewDistinctBytes));
        let counting: Vec<u8> = (0u8..32).collect();
        assert_eq!(weakness(&counting), Some(Weakness::Pattern));
        let stepping: Vec<u8> = (0u8..64).map(|n| n.wrapping_mul(5)).collect();
        assert_eq!(weakness(&stepping), Some(Weakness::Pattern));
        for passphrase in [
            &b"correct horse battery staple 123"[..],
            b"my-super-secret-session-key-2024!",
            b"0123456789abcdef0123456789abcdef",
            b"Tr0ub4dor&3 is not a key at all, sorry\n",
        ] {
            assert_eq!(
                weakness(passphrase),
                Some(Weakness::Text),
                "{}",
                String::from_utf8_lossy(passphrase)
            );
        }
    }

    #[test]
    fn a_weak_key_in_a_ring_is_named_with_what_to_do() {
        let passphrase =
            base64::engine::general_purpose::STANDARD.encode("correct horse battery staple 123");
        let error = KeyRing::parse(&format!("{},{passphrase}", generate_key())).unwrap_err();
        assert_eq!(
            error,
            KeyError::Weak {
                position: 2,
                weakness: Weakness::Text
            }
        );
        let message = error.to_string();
        for advice in [
            "key 2",
            "cloakroom::generate_key()",
            "openssl rand -base64 32",
        ] {
            assert!(message.contains(advice), "{message} lacks {advice}");
        }
        assert!(KeyRing::parse(&URL_SAFE_NO_PAD.encode([0u8; 32])).is_err());
    }

    proptest::proptest! {
        #[test]
        fn generated_keys_always_pass(_round in 0..512u32) {
            proptest::prop_assert!(KeyRing::parse(&generate_key()).is_ok());
        }

        #[test]
        fn random_bytes_pass(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 32..96)) {
            proptest::prop_assert_eq!(weakness(&bytes), None);
        }
    }

    #[test]
    fn subkeys_differ_per_purpose_and_key() {
        let a = Key::parse(&generate_key()).unwrap();
        let b = Key::parse(&generate_key()).unwrap();
        assert_ne!(a.signing_key(), a.encryption_key());
        assert_ne!(a.id(), b.id());
        assert!(!format!("{a:?}").contains(&URL_SAFE_NO_PAD.encode(a.signing_key())));
    }
}
