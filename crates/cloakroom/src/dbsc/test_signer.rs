//! A browser's side of the protocol for tests (feature `testing`, or the crate's own
//! tests): real P-256 keys and proofs signed the way Chrome signs them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer as _;
pub use p256::ecdsa::SigningKey;
use serde_json::{json, Value};

/// Base64url without padding, as JOSE writes it.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh P-256 key from the OS random generator (a scalar outside the group order
/// is practically impossible; draw again if it ever happens).
pub fn new_key() -> SigningKey {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// The public key as the JWK Chrome puts in a registration's header.
pub fn jwk(key: &SigningKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"crv": "P-256", "kty": "EC", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
}

/// A compact JWS over `header` and `payload`, ES256-signed with `key`, as Chrome
/// makes it.
pub fn sign(key: &SigningKey, header: &Value, payload: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(signature.to_bytes()))
}

/// A registration proof: the key in the header, `jti` and `authorization` in the payload.
pub fn registration_proof(key: &SigningKey, jti: &str, authorization: &str) -> String {
    sign(
        key,
        &json!({"alg": "ES256", "jwk": jwk(key), "typ": "dbsc+jwt"}),
        &json!({"authorization": authorization, "jti": jti}),
    )
}

/// A refresh proof: no key, only `jti`.
pub fn refresh_proof(key: &SigningKey, jti: &str) -> String {
    sign(
        key,
        &json!({"alg": "ES256", "typ": "dbsc+jwt"}),
        &json!({"jti": jti}),
    )
}
