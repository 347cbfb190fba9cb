//! The browser's proof of possession: a compact JWS in `Secure-Session-Response`, parsed
//! and verified here, and the public key a session is bound to ([`BoundKey`]).
//!
//! The token's shape is fixed and small (header `alg`, `typ: "dbsc+jwt"`, `jwk` at
//! registration only; claims `jti` and, at registration, `authorization`), so it is read
//! by hand rather than by a general JWT library: nothing here negotiates an algorithm
//! from the token or applies claim defaults that do not belong to this protocol. The
//! signatures themselves are checked by RustCrypto's `p256` (ECDSA) and `rsa` (PKCS#1
//! v1.5) crates.
//!
//! Order of checks: size and shape, `typ`, `alg` (must be one the server offered, or the
//! one the key was bound with), the key (`jwk` required at registration, refused at
//! refresh), the signature, and only then the claims, so a challenge is never consumed by
//! someone who cannot sign.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::challenge::{Challenge, ChallengeError, Challenges};
use super::Algorithm;

/// The longest `Secure-Session-Response` value read, in bytes. A registration proof with
/// a 4096-bit RSA key is about 1.5 KiB.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// The `typ` every proof carries.
pub const PROOF_TYPE: &str = "dbsc+jwt";

/// The smallest RSA modulus accepted, in bits (Chrome's software keys are 2048 bits).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits: bounds the work one proof can cause.
pub const MAX_RSA_BITS: usize = 4096;

/// Why a proof was refused.
///
/// The variants are for logs and metrics; the browser only ever learns "refused".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// Longer than [`MAX_PROOF_LEN`].
    #[error("the proof is longer than {MAX_PROOF_LEN} bytes")]
    TooLong,
    /// Not a compact JWS of the expected shape; says which part.
    #[error("the proof is malformed: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dbsc+jwt`.
    #[error("the proof's typ is not dbsc+jwt")]
    WrongType,
    /// `alg` is not one the server offered (at registration) or the bound key's (at
    /// refresh): `none`, `HS256` and any unknown name always end here.
    #[error("the proof's algorithm is not allowed here")]
    AlgorithmNotAllowed,
    /// A registration proof without `jwk`.
    #[error("the registration proof carries no key")]
    KeyMissing,
    /// A refresh proof with a `jwk`: the key is the one bound at registration.
    #[error("a refresh proof must not carry a key")]
    KeyNotAllowed,
    /// The key is unusable or does not fit `alg`; says why.
    #[error("the proof's key is unusable: {0}")]
    BadKey(&'static str),
    /// The signature does not verify with the key.
    #[error("the proof's signature does not verify")]
    BadSignature,
    /// The signed `jti` is not an outstanding, live challenge.
    #[error("{0}")]
    Challenge(ChallengeError),
    /// The signed `authorization` is not the value the server issued.
    #[error("the proof's authorization does not match the one issued")]
    AuthorizationMismatch,
}

impl From<ChallengeError> for ProofError {
    fn from(error: ChallengeError) -> Self {
        Self::Challenge(error)
    }
}

/// The public key a session is bound to, in the canonical form kept in the record: an EC
/// key as its uncompressed SEC1 point, an RSA key as its modulus and exponent (base64url,
/// no leading zeros), with the algorithm and the RFC 7638 JWK thumbprint (for logs and
/// audit; the thumbprint is not secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundKey {
    alg: Algorithm,
    #[serde(flatten)]
    public: PublicForm,
    thumbprint: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
enum PublicForm {
    #[serde(rename = "EC")]
    Ec { point: String },
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
}

/// A key ready to verify with.
enum PublicKey {
    Es256(p256::ecdsa::VerifyingKey),
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
}

impl BoundKey {
    /// The algorithm the key was bound with; every refresh proof must use it.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The RFC 7638 JWK thumbprint (base64url of a SHA-256).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    fn from_ec(key: p256::ecdsa::VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        let (x, y) = match (point.x(), point.y()) {
            (Some(x), Some(y)) => (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
            // An uncompressed point of a valid key always has both coordinates.
            _ => (String::new(), String::new()),
        };
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        Self {
            alg: Algorithm::Es256,
            public: PublicForm::Ec {
                point: URL_SAFE_NO_PAD.encode(point.as_bytes()),
            },
            thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical)),
        }
    }

    fn from_rsa(key: &rsa::RsaPublicKey) -> Self {
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        Self {
            alg: Algorithm::Rs256,
            public: PublicForm::Rsa { n, e },
            thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical)),
        }
    }

    /// The verifying key, rebuilt (and so re-validated) from the stored form: a record
    /// is data from a store, not trusted to hold a valid key.
    fn public_key(&self) -> Result<PublicKey, ProofError> {
        match (&self.public, self.alg) {
            (PublicForm::Ec { point }, Algorithm::Es256) => {
                let bytes =
                    decode(point, "stored key").map_err(|_| ProofError::BadKey("stored key"))?;
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                    .map(PublicKey::Es256)
                    .map_err(|_| ProofError::BadKey("stored key"))
            }
            (PublicForm::Rsa { n, e }, Algorithm::Rs256) => rsa_key(n, e)
                .map(|key| PublicKey::Rs256(rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key))),
            _ => Err(ProofError::BadKey("stored key does not fit its algorithm")),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    jwk: Option<Jwk>,
    /// Extensions the verifier must understand (RFC 7515 §4.1.11): none are, so any is
    /// refused.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    /// A private part: never belongs in a proof.
    #[serde(default)]
    d: Option<serde_json::Value>,
}

/// The claims cloakroom reads; others (an `aud` some Chrome versions add) are ignored.
#[derive(Deserialize)]
struct Claims {
    jti: String,
    #[serde(default)]
    authorization: Option<String>,
}

struct Parsed<'a> {
    alg: Algorithm,
    jwk: Option<Jwk>,
    claims: Claims,
    signing_input: &'a [u8],
    signature: Vec<u8>,
}

fn decode(part: &str, what: &'static str) -> Result<Vec<u8>, ProofError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ProofError::Malformed(what))
}

/// Splits and decodes the token, and checks `typ` and `alg` against `allowed`.
fn parse<'a>(value: &'a [u8], allowed: &[Algorithm]) -> Result<Parsed<'a>, ProofError> {
    if value.len() > MAX_PROOF_LEN {
        return Err(ProofError::TooLong);
    }
    // Chrome sends the token bare; the draft describes a structured-field string.
    let value = match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    };
    let text = std::str::from_utf8(value).map_err(|_| ProofError::Malformed("not text"))?;
    let mut parts = text.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed("not three parts"));
    };
    let signing_input = &value[..header.len() + 1 + payload.len()];
    let header: Header = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|_| ProofError::Malformed("header"))?;
    if header.typ.as_deref() != Some(PROOF_TYPE) {
        return Err(ProofError::WrongType);
    }
    let alg = Algorithm::from_name(&header.alg)
        .filter(|alg| allowed.contains(alg))
        .ok_or(ProofError::AlgorithmNotAllowed)?;
    if header.crit.is_some() {
        return Err(ProofError::Malformed("critical header extension"));
    }
    let claims: Claims = serde_json::from_slice(&decode(payload, "payload")?)
        .map_err(|_| ProofError::Malformed("payload"))?;
    let signature = decode(signature, "signature")?;
    Ok(Parsed {
        alg,
        jwk: header.jwk,
        claims,
        signing_input,
        signature,
    })
}

fn rsa_key(n: &str, e: &str) -> Result<rsa::RsaPublicKey, ProofError> {
    let n = decode(n, "jwk n").map_err(|_| ProofError::BadKey("n is not base64url"))?;
    let e = decode(e, "jwk e").map_err(|_| ProofError::BadKey("e is not base64url"))?;
    if e.len() > 8 {
        return Err(ProofError::BadKey("e is too large"));
    }
    let n = rsa::BigUint::from_bytes_be(&n);
    let bits = n.bits();
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(ProofError::BadKey("RSA modulus size"));
    }
    rsa::RsaPublicKey::new_with_max_size(n, rsa::BigUint::from_bytes_be(&e), MAX_RSA_BITS)
        .map_err(|_| ProofError::BadKey("RSA key"))
}

/// The key a registration proof carries, checked against `alg`.
fn key_from_jwk(jwk: &Jwk, alg: Algorithm) -> Result<(PublicKey, BoundKey), ProofError> {
    if jwk.d.is_some() {
        return Err(ProofError::BadKey("private key material"));
    }
    match alg {
        Algorithm::Es256 => {
            if jwk.kty != "EC" || jwk.crv.as_deref() != Some("P-256") {
                return Err(ProofError::BadKey("ES256 needs an EC P-256 key"));
            }
            let (Some(x), Some(y)) = (&jwk.x, &jwk.y) else {
                return Err(ProofError::BadKey("EC key without x and y"));
            };
            let x = decode(x, "jwk x").map_err(|_| ProofError::BadKey("x is not base64url"))?;
            let y = decode(y, "jwk y").map_err(|_| ProofError::BadKey("y is not base64url"))?;
            if x.len() != 32 || y.len() != 32 {
                return Err(ProofError::BadKey("P-256 coordinates are 32 bytes"));
            }
            let point = p256::EncodedPoint::from_affine_coordinates(
                p256::FieldBytes::from_slice(&x),
                p256::FieldBytes::from_slice(&y),
                false,
            );
            // Refuses points that are not on the curve (and the identity).
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map_err(|_| ProofError::BadKey("not a point on P-256"))?;
            Ok((PublicKey::Es256(key), BoundKey::from_ec(key)))
        }
        Algorithm::Rs256 => {
            if jwk.kty != "RSA" {
                return Err(ProofError::BadKey("RS256 needs an RSA key"));
            }
            let (Some(n), Some(e)) = (&jwk.n, &jwk.e) else {
                return Err(ProofError::BadKey("RSA key without n and e"));
            };
            let key = rsa_key(n, e)?;
            let bound = BoundKey::from_rsa(&key);
            Ok((
                PublicKey::Rs256(rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)),
                bound,
            ))
        }
    }
}

fn check_signature(key: &PublicKey, parsed: &Parsed<'_>) -> Result<(), ProofError> {
    match key {
        PublicKey::Es256(key) => {
            // The raw 64-byte r‖s form, not DER. High-S values are accepted: Chrome's
            // signatures are not normalised.
            let signature = p256::ecdsa::Signature::from_slice(&parsed.signature)
                .map_err(|_| ProofError::BadSignature)?;
            key.verify(parsed.signing_input, &signature)
                .map_err(|_| ProofError::BadSignature)
        }
        PublicKey::Rs256(key) => {
            let signature = rsa::pkcs1v15::Signature::try_from(parsed.signature.as_slice())
                .map_err(|_| ProofError::BadSignature)?;
            rsa::signature::Verifier::verify(key, parsed.signing_input, &signature)
                .map_err(|_| ProofError::BadSignature)
        }
    }
}

/// What a registration proof must match: the offer made on the login response.
#[derive(Clone, Copy, Debug)]
pub struct Registration<'a> {
    /// The algorithms offered in `Secure-Session-Registration`.
    pub algorithms: &'a [Algorithm],
    /// The registration challenge.
    pub challenge: &'a Challenge,
    /// The `authorization` value offered, if any; the proof must carry the same.
    pub authorization: Option<&'a str>,
}

/// Verifies a registration proof (the `Secure-Session-Response` header's bytes) against
/// the offer, and returns the key to bind the session to.
///
/// The caller must also make sure the session exists, is logged in, still has this offer
/// pending and is not already bound, and must drop the offer when storing the key (so the
/// registration challenge is used once).
pub fn verify_registration(
    value: &[u8],
    offer: &Registration<'_>,
    now: OffsetDateTime,
) -> Result<BoundKey, ProofError> {
    let parsed = parse(value, offer.algorithms)?;
    let jwk = parsed.jwk.as_ref().ok_or(ProofError::KeyMissing)?;
    let (key, bound) = key_from_jwk(jwk, parsed.alg)?;
    check_signature(&key, &parsed)?;
    offer.challenge.check(&parsed.claims.jti, now)?;
    if let Some(expected) = offer.authorization {
        let given = parsed.claims.authorization.as_deref().unwrap_or("");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            given.as_bytes(),
        )) {
            return Err(ProofError::AuthorizationMismatch);
        }
    }
    Ok(bound)
}

/// Verifies a refresh proof with the session's bound key and consumes the challenge it
/// signed from `challenges`.
///
/// Persist `challenges` in the same compare-and-set update that records the refresh; a
/// conflict then means the challenge was used by a concurrent request.
pub fn verify_refresh(
    value: &[u8],
    key: &BoundKey,
    challenges: &mut Challenges,
    now: OffsetDateTime,
) -> Result<(), ProofError> {
    let parsed = parse(value, &[key.alg])?;
    if parsed.jwk.is_some() {
        return Err(ProofError::KeyNotAllowed);
    }
    check_signature(&key.public_key()?, &parsed)?;
    challenges.consume(&parsed.claims.jti, now)?;
    Ok(())
}

#[cfg(test)]
mod tests;
