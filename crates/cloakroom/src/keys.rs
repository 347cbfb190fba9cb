//! The key ring: the current secret key and fallbacks, for signing and encrypting cookies.
//!
//! Cookies are always produced with the **current** key; any key in the ring is accepted,
//! and a cookie accepted under a fallback is re-issued under the current key on that
//! response. So rotating a key is: add the new key in front, deploy, wait one session
//! lifetime, drop the old key (see the README's "Rotating a key").
//!
//! Keys are written as base64 (standard or URL-safe, padding optional) of at least
//! [`MIN_KEY_BYTES`] random bytes. A ring is several keys separated by commas, spaces or
//! newlines, the current one first. [`generate_key`] makes one.

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
    /// A key from raw secret bytes; at least [`MIN_KEY_BYTES`].
    pub fn from_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                position: 1,
                bytes: secret.len(),
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

/// A new random key in the documented encoding (base64url of 32 bytes from the OS CSPRNG).
pub fn generate_key() -> String {
    let mut bytes = [0u8; MIN_KEY_BYTES];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A key or ring that cannot be used, with what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// A key is shorter than [`MIN_KEY_BYTES`].
    #[error("key {position} is {bytes} bytes; keys must be at least {MIN_KEY_BYTES} random bytes: generate one with `cloakroom keygen`")]
    TooShort {
        /// Which key in the ring (from 1).
        position: usize,
        /// Its length.
        bytes: usize,
    },
    /// A key is not base64.
    #[error("key {position} is not base64: generate one with `cloakroom keygen`")]
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
        let standard = base64::engine::general_purpose::STANDARD.encode([7u8; 40]);
        assert!(
            Key::parse(&standard).is_ok(),
            "standard base64 with padding is accepted"
        );
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
