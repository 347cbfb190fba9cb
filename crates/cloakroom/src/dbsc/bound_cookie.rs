//! The bound cookie: the short-lived credential a device earns with each verified proof.
//!
//! Its value is `base64url(version ‖ key id ‖ expiry ‖ MAC)`, the MAC an HMAC-SHA256 over
//! the binding's identifier and the expiry, keyed by a subkey of a key in the app's
//! [`KeyRing`]. So the server can check it from the record it loads anyway (no extra store
//! read, no write), a copied value dies at its embedded expiry whatever the thief's HTTP
//! client does with `Max-Age`, and it names the binding, not the session ID, so rotating
//! the session ID (`cycle_id`) leaves it valid. It is never the session ID.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::keys::{Key, KeyRing};

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
/// The purpose string the bound-cookie subkey is derived with, so the MAC can never be
/// confused with the signature of a signed session cookie made with the same ring.
const PURPOSE: &[u8] = b"cloakroom dbsc bound cookie v1";
const RAW_LEN: usize = 1 + 4 + 8 + 32;
/// The length of every bound cookie value (base64url of 45 bytes).
pub const VALUE_LEN: usize = 60;

/// Why a bound cookie was refused. Every variant means the same to the request: the
/// session is treated as not logged in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoundCookieError {
    /// Not a bound cookie value of this format.
    #[error("malformed bound cookie")]
    Malformed,
    /// Made with a key the ring no longer holds.
    #[error("bound cookie made with an unknown key")]
    UnknownKey,
    /// The MAC does not match: forged, or made for another binding.
    #[error("bound cookie does not authenticate")]
    BadMac,
    /// Authentic but past its embedded expiry.
    #[error("bound cookie expired")]
    Expired,
}

fn mac(key: &Key, binding_id: &str, header: &[u8; 13]) -> [u8; 32] {
    let subkey: [u8; 32] = {
        let mut derive = <HmacSha256 as Mac>::new_from_slice(key.signing_key())
            .expect("HMAC takes any key length");
        derive.update(PURPOSE);
        derive.finalize().into_bytes().into()
    };
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&subkey).expect("HMAC takes any key length");
    mac.update(header);
    mac.update(binding_id.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A bound cookie value for the binding `binding_id`, valid until `expires_at`, made with
/// the ring's current key.
pub fn issue(ring: &KeyRing, binding_id: &str, expires_at: OffsetDateTime) -> String {
    let key = ring.current();
    let expiry_ms = (expires_at.unix_timestamp_nanos() / 1_000_000) as i64;
    let mut raw = [0u8; RAW_LEN];
    raw[0] = VERSION;
    raw[1..5].copy_from_slice(&key.id());
    raw[5..13].copy_from_slice(&expiry_ms.to_be_bytes());
    let header: [u8; 13] = raw[..13].try_into().expect("13 bytes");
    raw[13..].copy_from_slice(&mac(key, binding_id, &header));
    URL_SAFE_NO_PAD.encode(raw)
}

/// Checks a bound cookie value against the binding `binding_id` at `now`: it must have
/// been made by a key of the ring for this binding and not be past its expiry. Returns
/// the expiry.
pub fn verify(
    ring: &KeyRing,
    value: &[u8],
    binding_id: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, BoundCookieError> {
    if value.len() != VALUE_LEN {
        return Err(BoundCookieError::Malformed);
    }
    let mut raw = [0u8; RAW_LEN];
    match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
        Ok(RAW_LEN) => {}
        _ => return Err(BoundCookieError::Malformed),
    }
    if raw[0] != VERSION {
        return Err(BoundCookieError::Malformed);
    }
    let key_id: [u8; 4] = raw[1..5].try_into().expect("4 bytes");
    let (_, key) = ring.find(key_id).ok_or(BoundCookieError::UnknownKey)?;
    let header: [u8; 13] = raw[..13].try_into().expect("13 bytes");
    let expected = mac(key, binding_id, &header);
    if !bool::from(expected.ct_eq(&raw[13..])) {
        return Err(BoundCookieError::BadMac);
    }
    let expiry_ms = i64::from_be_bytes(raw[5..13].try_into().expect("8 bytes"));
    let expires_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(expiry_ms) * 1_000_000)
        .map_err(|_| BoundCookieError::Malformed)?;
    if now >= expires_at {
        return Err(BoundCookieError::Expired);
    }
    Ok(expires_at)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keys::generate_key;

    fn ring() -> KeyRing {
        KeyRing::parse(&generate_key()).unwrap()
    }

    #[test]
    fn a_fresh_cookie_verifies_until_its_expiry() {
        let ring = ring();
        let now = crate::record::now();
        let expires = now + Duration::from_secs(300);
        let value = issue(&ring, "b1", expires);
        assert_eq!(value.len(), VALUE_LEN);
        assert_eq!(verify(&ring, value.as_bytes(), "b1", now), Ok(expires));
        assert_eq!(
            verify(&ring, value.as_bytes(), "b1", expires),
            Err(BoundCookieError::Expired)
        );
    }

    #[test]
    fn another_binding_key_or_expiry_is_refused() {
        let (ring, other) = (ring(), ring());
        let now = crate::record::now();
        let value = issue(&ring, "b1", now + Duration::from_secs(1));
        // The embedded expiry pushed later: the MAC no longer fits.
        let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        raw[12] = raw[12].wrapping_add(100);
        let extended = URL_SAFE_NO_PAD.encode(&raw);
        for (keys, value, id, error) in [
            (&ring, &value, "b2", BoundCookieError::BadMac),
            (&other, &value, "b1", BoundCookieError::UnknownKey),
            (&ring, &extended, "b1", BoundCookieError::BadMac),
        ] {
            assert_eq!(verify(keys, value.as_bytes(), id, now), Err(error), "{id}");
        }
    }

    #[test]
    fn a_fallback_key_still_verifies() {
        let old = ring();
        let now = crate::record::now();
        let value = issue(&old, "b1", now + Duration::from_secs(300));
        let rotated = KeyRing::new(ring().current().clone(), [old.current().clone()]);
        assert!(verify(&rotated, value.as_bytes(), "b1", now).is_ok());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let ring = ring();
        let now = crate::record::now();
        for value in [
            &b""[..],
            b"x",
            &[b'A'; VALUE_LEN],
            &[b'!'; VALUE_LEN],
            &[0xff; VALUE_LEN],
            &[b'A'; 10_000],
        ] {
            assert!(verify(&ring, value, "b1", now).is_err());
        }
    }
}
