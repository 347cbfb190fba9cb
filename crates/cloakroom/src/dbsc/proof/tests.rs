//! The proof module's tests: real P-256 keys signing the way Chrome signs, and every
//! refusal the design lists.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::dbsc::test_signer::*;

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

/// A key bound through a good registration, and its outstanding refresh challenges:
/// what most refresh tests start from.
struct Bound {
    key: BoundKey,
    challenges: Challenges,
    /// The one challenge issued with the binding.
    challenge: Challenge,
    now: OffsetDateTime,
}

impl Bound {
    fn new(key: &SigningKey) -> Self {
        let offer = Offer::new();
        let bound = offer
            .verify(&registration_proof(key, offer.challenge.value(), "auth-1"))
            .unwrap();
        let challenge = Challenge::generate(offer.now, FIVE_MINUTES);
        let mut challenges = Challenges::new();
        challenges.push(challenge.clone());
        Self {
            key: bound,
            challenges,
            challenge,
            now: offer.now,
        }
    }

    /// `proof` checked as a refresh of this binding.
    fn verify(&mut self, proof: &[u8]) -> Result<(), ProofError> {
        verify_refresh(proof, &self.key, &mut self.challenges, self.now)
    }

    /// A refresh proof by `signer` over `jti`, checked as a refresh of this binding.
    fn refresh(&mut self, signer: &SigningKey, jti: &str) -> Result<(), ProofError> {
        self.verify(refresh_proof(signer, jti).as_bytes())
    }

    /// A refresh proof by `signer` answering the challenge issued with the binding.
    fn answer(&mut self, signer: &SigningKey) -> Result<(), ProofError> {
        let jti = self.challenge.value().to_owned();
        self.refresh(signer, &jti)
    }

    /// A refresh answering the binding's challenge, signed by `signer` under `header`
    /// (to break the header's rules).
    fn answer_signed(&mut self, signer: &SigningKey, header: &Value) -> Result<(), ProofError> {
        let proof = sign(signer, header, &json!({"jti": self.challenge.value()}));
        self.verify(proof.as_bytes())
    }
}

#[test]
fn good_registration_and_refresh() {
    let key = new_key();
    let mut bound = Bound::new(&key);
    assert_eq!(bound.key.alg(), Algorithm::Es256);
    assert_eq!(bound.answer(&key), Ok(()));
    // Quoted as a structured-field string works the same (with a new challenge).
    let next = Challenge::generate(bound.now, FIVE_MINUTES);
    bound.challenges.push(next.clone());
    let quoted = format!("\"{}\"", refresh_proof(&key, next.value()));
    assert_eq!(bound.verify(quoted.as_bytes()), Ok(()));
}

#[test]
fn the_bound_key_survives_a_store_round_trip() {
    let key = new_key();
    let mut bound = Bound::new(&key);
    let stored = serde_json::to_string(&bound.key).unwrap();
    assert!(stored.contains(r#""kty":"EC""#) && stored.contains(r#""alg":"ES256""#));
    let loaded: BoundKey = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded, bound.key);
    // The refresh is checked against the loaded key, not the original.
    bound.key = loaded;
    assert_eq!(bound.answer(&key), Ok(()));
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
    assert_eq!(
        Bound::new(&key).key.thumbprint(),
        b64(Sha256::digest(canonical))
    );
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
    let mut bound = Bound::new(&key);
    assert_eq!(bound.answer(&thief), Err(ProofError::BadSignature));
    // ... and the challenge was not burnt by the failed attempt.
    assert_eq!(bound.answer(&key), Ok(()));
}

#[test]
fn replayed_challenge_is_refused() {
    let key = new_key();
    let mut bound = Bound::new(&key);
    // The very same bytes, sent twice.
    let proof = refresh_proof(&key, bound.challenge.value());
    let twice: Vec<_> = (0..2).map(|_| bound.verify(proof.as_bytes())).collect();
    let unknown = Err(ProofError::Challenge(ChallengeError::Unknown));
    assert_eq!(twice, [Ok(()), unknown]);
    // A challenge never issued is refused the same way.
    assert_eq!(
        bound.refresh(&key, "made-up"),
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
    let mut bound = Bound::new(&key);
    bound.now = bound.challenge.expires_at();
    assert_eq!(
        bound.answer(&key),
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
    let mut bound = Bound::new(&key);
    assert_eq!(
        bound.answer_signed(&key, &json!({"alg": "RS256", "typ": "dbsc+jwt"})),
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
    // A registration by the key whose jwk was edited as `edit` does.
    let edited_jwk = |edit: &dyn Fn(&mut Value)| {
        let mut edited = jwk(&key);
        edit(&mut edited);
        let header = json!({"alg": "ES256", "jwk": edited, "typ": "dbsc+jwt"});
        offer.verify(&sign(&key, &header, &claims))
    };
    assert_eq!(
        edited_jwk(&|private| private["d"] = json!(b64(key.to_bytes()))),
        Err(ProofError::BadKey("private key material"))
    );
    assert!(matches!(
        edited_jwk(&|other_curve| other_curve["crv"] = json!("P-384")),
        Err(ProofError::BadKey(_))
    ));
    assert_eq!(
        edited_jwk(&|off_curve| off_curve["y"] = off_curve["x"].clone()),
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
    let mut bound = Bound::new(&key);
    let header = json!({"alg": "ES256", "jwk": jwk(&key), "typ": "dbsc+jwt"});
    assert_eq!(
        bound.answer_signed(&key, &header),
        Err(ProofError::KeyNotAllowed)
    );
}

#[test]
fn high_s_signatures_verify() {
    // Chrome's (BoringSSL's) ECDSA signatures are not normalised to low S.
    let key = new_key();
    let mut bound = Bound::new(&key);
    let proof = refresh_proof(&key, bound.challenge.value());
    let (input, signature) = proof.rsplit_once('.').unwrap();
    let signature =
        p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    let (r, s) = signature.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    assert_ne!(flipped, signature);
    let high = format!("{input}.{}", b64(flipped.to_bytes()));
    assert_eq!(bound.verify(high.as_bytes()), Ok(()));
}

#[test]
fn rs256_registration_and_refresh() {
    let fixture: Value = serde_json::from_str(include_str!("../testdata/rs256.json")).unwrap();
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
    let loaded: BoundKey = serde_json::from_str(&serde_json::to_string(&bound).unwrap()).unwrap();
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
    let mut bound = Bound::new(&key);
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
        assert!(bound.verify(case).is_err(), "{case:?}");
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
        verify_refresh(proof.as_bytes(), &corrupt, &mut bound.challenges, bound.now),
        Err(ProofError::BadKey(_))
    ));
    let mismatched: BoundKey = serde_json::from_value(
        json!({"alg": "ES256", "kty": "RSA", "n": "AQAB", "e": "AQAB", "thumbprint": ""}),
    )
    .unwrap();
    assert!(matches!(
        verify_refresh(
            proof.as_bytes(),
            &mismatched,
            &mut bound.challenges,
            bound.now
        ),
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
