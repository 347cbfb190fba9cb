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
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::super::test_signer::*;
    use super::*;

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    struct Offer {
        challenge: Challenge,
        now: OffsetDateTime,
    }

    impl Offer {
        fn new() -> Self {
            let now = crate::record::now();
            Self {
                challenge: Challenge::generate(now, FIVE_MINUTES),
                now,
            }
        }

        fn registration(&self) -> Registration<'_> {
            Registration {
                algorithms: &Algorithm::ALL,
                challenge: &self.challenge,
                authorization: Some("auth-1"),
            }
        }

        fn verify(&self, proof: &str) -> Result<BoundKey, ProofError> {
            verify_registration(proof.as_bytes(), &self.registration(), self.now)
        }
    }

    /// A key bound through a good registration, and outstanding refresh challenges.
    fn bound(key: &SigningKey) -> (BoundKey, Challenges, Challenge, OffsetDateTime) {
        let offer = Offer::new();
        let bound = offer
            .verify(&registration_proof(key, offer.challenge.value(), "auth-1"))
            .unwrap();
        let challenge = Challenge::generate(offer.now, FIVE_MINUTES);
        let mut challenges = Challenges::new();
        challenges.push(challenge.clone());
        (bound, challenges, challenge, offer.now)
    }

    #[test]
    fn good_registration_and_refresh() {
        let key = new_key();
        let (bound, mut challenges, challenge, now) = bound(&key);
        assert_eq!(bound.alg(), Algorithm::Es256);
        let proof = refresh_proof(&key, challenge.value());
        assert_eq!(
            verify_refresh(proof.as_bytes(), &bound, &mut challenges, now),
            Ok(())
        );
        // Quoted as a structured-field string works the same (with a new challenge).
        let next = Challenge::generate(now, FIVE_MINUTES);
        challenges.push(next.clone());
        let quoted = format!("\"{}\"", refresh_proof(&key, next.value()));
        assert_eq!(
            verify_refresh(quoted.as_bytes(), &bound, &mut challenges, now),
            Ok(())
        );
    }

    #[test]
    fn the_bound_key_survives_a_store_round_trip() {
        let key = new_key();
        let (bound, mut challenges, challenge, now) = bound(&key);
        let stored = serde_json::to_string(&bound).unwrap();
        assert!(stored.contains(r#""kty":"EC""#) && stored.contains(r#""alg":"ES256""#));
        let loaded: BoundKey = serde_json::from_str(&stored).unwrap();
        assert_eq!(loaded, bound);
        let proof = refresh_proof(&key, challenge.value());
        assert_eq!(
            verify_refresh(proof.as_bytes(), &loaded, &mut challenges, now),
            Ok(())
        );
    }

    #[test]
    fn thumbprint_follows_rfc_7638() {
        // The example key of RFC 7638 §3.1 is RSA; this checks the EC form against a
        // thumbprint computed from the canonical JSON by hand.
        let key = new_key();
        let jwk = jwk(&key);
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let (bound, ..) = bound(&key);
        assert_eq!(bound.thumbprint(), b64(Sha256::digest(canonical)));
    }

    #[test]
    fn bad_signature_is_refused() {
        let key = new_key();
        let offer = Offer::new();
        let proof = registration_proof(&key, offer.challenge.value(), "auth-1");
        // Flip one bit of the signature, then of the signed payload.
        let mut bytes = proof.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(offer.verify(&tampered), Err(ProofError::BadSignature));
        let (header, rest) = proof.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other_payload = b64(json!({"authorization": "auth-1", "jti": "other"}).to_string());
        assert_eq!(
            offer.verify(&format!("{header}.{other_payload}.{signature}")),
            Err(ProofError::BadSignature)
        );
    }

    #[test]
    fn a_key_that_did_not_sign_is_refused() {
        // Registration: the jwk names one key, another signed.
        let (key, thief) = (new_key(), new_key());
        let offer = Offer::new();
        let proof = sign(
            &thief,
            &json!({"alg": "ES256", "jwk": jwk(&key), "typ": "dbsc+jwt"}),
            &json!({"authorization": "auth-1", "jti": offer.challenge.value()}),
        );
        assert_eq!(offer.verify(&proof), Err(ProofError::BadSignature));
        // Refresh: signed with a key other than the bound one.
        let (bound, mut challenges, challenge, now) = bound(&key);
        let proof = refresh_proof(&thief, challenge.value());
        assert_eq!(
            verify_refresh(proof.as_bytes(), &bound, &mut challenges, now),
            Err(ProofError::BadSignature)
        );
        // ... and the challenge was not burnt by the failed attempt.
        let proof = refresh_proof(&key, challenge.value());
        assert_eq!(
            verify_refresh(proof.as_bytes(), &bound, &mut challenges, now),
            Ok(())
        );
    }

    #[test]
    fn replayed_challenge_is_refused() {
        let key = new_key();
        let (bound, mut challenges, challenge, now) = bound(&key);
        let proof = refresh_proof(&key, challenge.value());
        assert_eq!(
            verify_refresh(proof.as_bytes(), &bound, &mut challenges, now),
            Ok(())
        );
        assert_eq!(
            verify_refresh(proof.as_bytes(), &bound, &mut challenges, now),
            Err(ProofError::Challenge(ChallengeError::Unknown))
        );
        // A challenge never issued is refused the same way.
        let proof = refresh_proof(&key, "made-up");
        assert_eq!(
            verify_refresh(proof.as_bytes(), &bound, &mut challenges, now),
            Err(ProofError::Challenge(ChallengeError::Unknown))
        );
    }

    #[test]
    fn expired_challenge_is_refused() {
        let key = new_key();
        let offer = Offer::new();
        let proof = registration_proof(&key, offer.challenge.value(), "auth-1");
        let late = offer.challenge.expires_at();
        assert_eq!(
            verify_registration(proof.as_bytes(), &offer.registration(), late),
            Err(ProofError::Challenge(ChallengeError::Expired))
        );
        let (bound, mut challenges, challenge, _) = bound(&key);
        let proof = refresh_proof(&key, challenge.value());
        assert_eq!(
            verify_refresh(
                proof.as_bytes(),
                &bound,
                &mut challenges,
                challenge.expires_at()
            ),
            Err(ProofError::Challenge(ChallengeError::Expired))
        );
    }

    #[test]
    fn registration_checks_challenge_and_authorization() {
        let key = new_key();
        let offer = Offer::new();
        assert_eq!(
            offer.verify(&registration_proof(&key, "another challenge", "auth-1")),
            Err(ProofError::Challenge(ChallengeError::Unknown))
        );
        assert_eq!(
            offer.verify(&registration_proof(&key, offer.challenge.value(), "auth-2")),
            Err(ProofError::AuthorizationMismatch)
        );
        let without = sign(
            &key,
            &json!({"alg": "ES256", "jwk": jwk(&key), "typ": "dbsc+jwt"}),
            &json!({"jti": offer.challenge.value()}),
        );
        assert_eq!(
            offer.verify(&without),
            Err(ProofError::AuthorizationMismatch)
        );
        // An aud claim (some Chrome versions add one) and unknown claims are ignored.
        let with_aud = sign(
            &key,
            &json!({"alg": "ES256", "jwk": jwk(&key), "typ": "dbsc+jwt"}),
            &json!({"aud": "https://example.com/r", "authorization": "auth-1",
                    "jti": offer.challenge.value(), "iat": 1, "future": {"x": [1]}}),
        );
        assert!(offer.verify(&with_aud).is_ok());
    }

    #[test]
    fn alg_confusion_is_refused() {
        let key = new_key();
        let offer = Offer::new();
        let jti = offer.challenge.value();
        let payload = b64(json!({"authorization": "auth-1", "jti": jti}).to_string());
        // alg none, with and without a signature part.
        let none = b64(json!({"alg": "none", "jwk": jwk(&key), "typ": "dbsc+jwt"}).to_string());
        assert_eq!(
            offer.verify(&format!("{none}.{payload}.")),
            Err(ProofError::AlgorithmNotAllowed)
        );
        // HS256 "signed" with the public key's bytes as the HMAC secret.
        let hs = json!({"alg": "HS256", "jwk": jwk(&key), "typ": "dbsc+jwt"});
        let input = format!("{}.{payload}", b64(hs.to_string()));
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(
            key.verifying_key().to_encoded_point(false).as_bytes(),
        )
        .unwrap();
        hmac::Mac::update(&mut mac, input.as_bytes());
        let tag = hmac::Mac::finalize(mac).into_bytes();
        assert_eq!(
            offer.verify(&format!("{input}.{}", b64(tag))),
            Err(ProofError::AlgorithmNotAllowed)
        );
        // Lower case, or an algorithm not offered.
        let lower = sign(
            &key,
            &json!({"alg": "es256", "jwk": jwk(&key), "typ": "dbsc+jwt"}),
            &json!({"authorization": "auth-1", "jti": jti}),
        );
        assert_eq!(offer.verify(&lower), Err(ProofError::AlgorithmNotAllowed));
        let es_only = Registration {
            algorithms: &[Algorithm::Rs256],
            ..offer.registration()
        };
        let proof = registration_proof(&key, jti, "auth-1");
        assert_eq!(
            verify_registration(proof.as_bytes(), &es_only, offer.now),
            Err(ProofError::AlgorithmNotAllowed)
        );
        // RS256 claimed with an EC key (signed with ECDSA).
        let rs_claim = sign(
            &key,
            &json!({"alg": "RS256", "jwk": jwk(&key), "typ": "dbsc+jwt"}),
            &json!({"authorization": "auth-1", "jti": jti}),
        );
        assert_eq!(
            offer.verify(&rs_claim),
            Err(ProofError::BadKey("RS256 needs an RSA key"))
        );
        // At refresh, an algorithm other than the bound one.
        let (bound, mut challenges, challenge, now) = bound(&key);
        let rs_refresh = sign(
            &key,
            &json!({"alg": "RS256", "typ": "dbsc+jwt"}),
            &json!({"jti": challenge.value()}),
        );
        assert_eq!(
            verify_refresh(rs_refresh.as_bytes(), &bound, &mut challenges, now),
            Err(ProofError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn typ_and_key_rules() {
        let key = new_key();
        let offer = Offer::new();
        let jti = offer.challenge.value();
        let claims = json!({"authorization": "auth-1", "jti": jti});
        for header in [
            json!({"alg": "ES256", "jwk": jwk(&key)}),
            json!({"alg": "ES256", "jwk": jwk(&key), "typ": "JWT"}),
        ] {
            assert_eq!(
                offer.verify(&sign(&key, &header, &claims)),
                Err(ProofError::WrongType)
            );
        }
        let no_key = sign(&key, &json!({"alg": "ES256", "typ": "dbsc+jwt"}), &claims);
        assert_eq!(offer.verify(&no_key), Err(ProofError::KeyMissing));
        let mut private = jwk(&key);
        private["d"] = json!(b64(key.to_bytes()));
        let leaked = sign(
            &key,
            &json!({"alg": "ES256", "jwk": private, "typ": "dbsc+jwt"}),
            &claims,
        );
        assert_eq!(
            offer.verify(&leaked),
            Err(ProofError::BadKey("private key material"))
        );
        let mut other_curve = jwk(&key);
        other_curve["crv"] = json!("P-384");
        let proof = sign(
            &key,
            &json!({"alg": "ES256", "jwk": other_curve, "typ": "dbsc+jwt"}),
            &claims,
        );
        assert!(matches!(offer.verify(&proof), Err(ProofError::BadKey(_))));
        let mut off_curve = jwk(&key);
        off_curve["y"] = off_curve["x"].clone();
        let proof = sign(
            &key,
            &json!({"alg": "ES256", "jwk": off_curve, "typ": "dbsc+jwt"}),
            &claims,
        );
        assert_eq!(
            offer.verify(&proof),
            Err(ProofError::BadKey("not a point on P-256"))
        );
        let critical = sign(
            &key,
            &json!({"alg": "ES256", "jwk": jwk(&key), "typ": "dbsc+jwt", "crit": ["exp"]}),
            &claims,
        );
        assert!(matches!(
            offer.verify(&critical),
            Err(ProofError::Malformed(_))
        ));
    }

    #[test]
    fn a_key_in_a_refresh_is_refused() {
        let key = new_key();
        let (bound, mut challenges, challenge, now) = bound(&key);
        let proof = sign(
            &key,
            &json!({"alg": "ES256", "jwk": jwk(&key), "typ": "dbsc+jwt"}),
            &json!({"jti": challenge.value()}),
        );
        assert_eq!(
            verify_refresh(proof.as_bytes(), &bound, &mut challenges, now),
            Err(ProofError::KeyNotAllowed)
        );
    }

    #[test]
    fn high_s_signatures_verify() {
        // Chrome's (BoringSSL's) ECDSA signatures are not normalised to low S.
        let key = new_key();
        let (bound, mut challenges, challenge, now) = bound(&key);
        let proof = refresh_proof(&key, challenge.value());
        let (input, signature) = proof.rsplit_once('.').unwrap();
        let signature =
            p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap())
                .unwrap();
        let (r, s) = signature.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert_ne!(flipped, signature);
        let high = format!("{input}.{}", b64(flipped.to_bytes()));
        assert_eq!(
            verify_refresh(high.as_bytes(), &bound, &mut challenges, now),
            Ok(())
        );
    }

    #[test]
    fn rs256_registration_and_refresh() {
        let fixture: Value = serde_json::from_str(include_str!("testdata/rs256.json")).unwrap();
        let field = |name: &str| fixture[name].as_str().unwrap().to_owned();
        let now = crate::record::now();
        let challenge = Challenge::fixed(&field("registration_challenge"), now + FIVE_MINUTES);
        let offer = Registration {
            algorithms: &Algorithm::ALL,
            challenge: &challenge,
            authorization: Some(&field("authorization")),
        };
        let bound = verify_registration(field("registration").as_bytes(), &offer, now).unwrap();
        assert_eq!(bound.alg(), Algorithm::Rs256);
        let loaded: BoundKey =
            serde_json::from_str(&serde_json::to_string(&bound).unwrap()).unwrap();
        let mut challenges = Challenges::new();
        challenges.push(Challenge::fixed(
            &field("refresh_challenge"),
            now + FIVE_MINUTES,
        ));
        let refresh = field("refresh");
        assert_eq!(
            verify_refresh(refresh.as_bytes(), &loaded, &mut challenges, now),
            Ok(())
        );
        assert_eq!(
            verify_refresh(refresh.as_bytes(), &loaded, &mut challenges, now),
            Err(ProofError::Challenge(ChallengeError::Unknown))
        );
        // Tampered RSA signature; and an ES256-only offer refuses the RSA proof.
        challenges.push(Challenge::fixed(
            &field("refresh_challenge"),
            now + FIVE_MINUTES,
        ));
        let mut tampered = refresh.clone().into_bytes();
        let at = tampered.len() - 3;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            verify_refresh(&tampered, &loaded, &mut challenges, now),
            Err(ProofError::BadSignature)
        );
        let es_only = Registration {
            algorithms: &[Algorithm::Es256],
            ..offer
        };
        assert_eq!(
            verify_registration(field("registration").as_bytes(), &es_only, now),
            Err(ProofError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn malformed_and_oversized_proofs_are_errors_not_panics() {
        let offer = Offer::new();
        let key = new_key();
        let (bound, mut challenges, _, now) = bound(&key);
        let long = "a".repeat(MAX_PROOF_LEN + 1);
        let header = b64(json!({"alg": "ES256", "typ": "dbsc+jwt"}).to_string());
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\"".to_vec(),
            b"\"\"".to_vec(),
            b"...".to_vec(),
            b"a.b".to_vec(),
            b"a.b.c.d".to_vec(),
            b"!!!.!!!.!!!".to_vec(),
            vec![0xff; 100],
            long.into_bytes(),
            format!("{header}.{header}.").into_bytes(),
            format!("{header}.e30.AAAA").into_bytes(),
            format!("{header}.{}.AAAA", b64(r#"{"jti":5}"#)).into_bytes(),
            format!("{}.e30.", b64("[]")).into_bytes(),
            format!("{}.e30.", b64("{\"alg\":\"ES256\",\"alg\":\"none\",\"typ\":\"dbsc+jwt\"}")).into_bytes(),
            format!("{}.e30.", b64(r#"{"alg":"ES256","typ":"dbsc+jwt","jwk":"x"}"#)).into_bytes(),
            format!("{}.e30.", b64(r#"{"alg":"RS256","typ":"dbsc+jwt","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}"#)).into_bytes(),
            format!("{}.e30.", b64(r#"{"alg":"RS256","typ":"dbsc+jwt","jwk":{"kty":"RSA","n":"","e":""}}"#)).into_bytes(),
            format!("{}.e30.", b64(r#"{"alg":"ES256","typ":"dbsc+jwt","jwk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}"#)).into_bytes(),
            format!("{}.{}.{}", header, b64(r#"{"jti":"x"}"#), b64([0u8; 64])).into_bytes(),
            format!("{}.{}.{}", header, b64(r#"{"jti":"x"}"#), b64([0xffu8; 64])).into_bytes(),
            format!("{}.{}.{}", header, b64(r#"{"jti":"x"}"#), b64([1u8; 200])).into_bytes(),
        ];
        for case in &cases {
            assert!(
                verify_registration(case, &offer.registration(), offer.now).is_err(),
                "{case:?}"
            );
            assert!(
                verify_refresh(case, &bound, &mut challenges, now).is_err(),
                "{case:?}"
            );
        }
        assert_eq!(
            verify_registration(&cases[8], &offer.registration(), offer.now),
            Err(ProofError::TooLong)
        );
        // A corrupt stored key is an error too.
        let corrupt: BoundKey = serde_json::from_value(
            json!({"alg": "ES256", "kty": "EC", "point": "AAAA", "thumbprint": ""}),
        )
        .unwrap();
        let proof = refresh_proof(&key, "x");
        assert!(matches!(
            verify_refresh(proof.as_bytes(), &corrupt, &mut challenges, now),
            Err(ProofError::BadKey(_))
        ));
        let mismatched: BoundKey = serde_json::from_value(
            json!({"alg": "ES256", "kty": "RSA", "n": "AQAB", "e": "AQAB", "thumbprint": ""}),
        )
        .unwrap();
        assert!(matches!(
            verify_refresh(proof.as_bytes(), &mismatched, &mut challenges, now),
            Err(ProofError::BadKey(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn no_input_makes_verification_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let offer = Offer::new();
            let _ = offer.verify(&String::from_utf8_lossy(&bytes));
            let _ = verify_registration(&bytes, &offer.registration(), offer.now);
            let mut challenges = Challenges::new();
            let stored: BoundKey = serde_json::from_value(json!({
                "alg": "RS256", "kty": "RSA", "n": b64(&bytes), "e": "AQAB", "thumbprint": ""
            })).unwrap();
            let _ = verify_refresh(&bytes, &stored, &mut challenges, offer.now);
        }

        #[test]
        fn no_input_with_a_valid_header_makes_verification_panic(
            header in proptest::sample::select(vec![
                json!({"alg": "ES256", "typ": "dbsc+jwt"}),
                json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": {"kty": "EC", "crv": "P-256", "x": "", "y": ""}}),
                json!({"alg": "RS256", "typ": "dbsc+jwt", "jwk": {"kty": "RSA", "n": "", "e": ""}}),
            ]),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
            signature in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let offer = Offer::new();
            let token = format!("{}.{}.{}", b64(header.to_string()), b64(&payload), b64(&signature));
            proptest::prop_assert!(offer.verify(&token).is_err());
        }

        #[test]
        fn no_single_byte_change_to_a_good_proof_is_accepted(at in 0usize..10_000, to in proptest::prelude::any::<u8>()) {
            let key = new_key();
            let offer = Offer::new();
            let proof = registration_proof(&key, offer.challenge.value(), "auth-1");
            let mut bytes = proof.into_bytes();
            let at = at % bytes.len();
            proptest::prop_assume!(bytes[at] != to);
            bytes[at] = to;
            proptest::prop_assert!(verify_registration(&bytes, &offer.registration(), offer.now).is_err());
        }
    }
}
