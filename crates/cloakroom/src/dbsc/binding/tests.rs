//! The binding state machine's tests: offer, registration, refresh, the per-request
//! verdict, and the configuration checks.

use super::*;
use crate::dbsc::challenge::ChallengeError;
use crate::dbsc::test_signer::*;
use crate::dbsc::RETRY_CHALLENGE_LIFETIME;
use crate::keys::generate_key;

fn config() -> DeviceBindingConfig {
    DeviceBindingConfig::new(KeyRing::parse(&generate_key()).unwrap())
}

/// The value of `name="…"` in a header value.
fn param(header: &HeaderValue, name: &str) -> String {
    let text = header.to_str().unwrap();
    let start = text.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    text[start..][..text[start..].find('"').unwrap()].to_owned()
}

/// The first quoted string of a `Secure-Session-Challenge` value.
fn challenge_of(header: &HeaderValue) -> String {
    header
        .to_str()
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_owned()
}

/// The bound cookie's value in a `Set-Cookie`.
fn cookie_value(set_cookie: &HeaderValue) -> Vec<u8> {
    let text = set_cookie.to_str().unwrap();
    let pair = text.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.as_bytes().to_vec()
}

/// Login offer, registration by `device`, first challenge pre-sent.
fn registered(
    config: &DeviceBindingConfig,
    device: &SigningKey,
    now: OffsetDateTime,
) -> (DeviceBinding, HeaderValue) {
    let (mut binding, offer) = DeviceBinding::offer(config, now).unwrap();
    assert!(!binding.is_bound());
    let proof = registration_proof(
        device,
        &param(&offer, "challenge"),
        &param(&offer, "authorization"),
    );
    binding.register(proof.as_bytes(), now).unwrap();
    let next = binding
        .issue_challenge(now, config.bound_cookie_lifetime())
        .unwrap();
    (binding, next)
}

#[test]
fn registration_refresh_and_a_stolen_cookie() {
    let config = config();
    let cookie_config = CookieConfig::default();
    let device = new_key();
    let now = crate::record::now();
    let (mut binding, next) = registered(&config, &device, now);
    assert!(binding.is_bound());
    assert_eq!(param(&next, "id"), binding.id());
    let set_cookie = binding.bound_cookie(&config, &cookie_config, now);
    let text = set_cookie.to_str().unwrap();
    assert!(text.starts_with("cloakroom_bound=") && text.contains("Max-Age=300"));
    assert!(text.contains("HttpOnly") && text.contains("Secure"));
    let bound = cookie_value(&set_cookie);

    // With the bound cookie: bound. Without (a thief with the session cookie only):
    // not logged in. A copied bound cookie dies at its own expiry.
    assert_eq!(
        binding.status(&config, [&bound[..]], now),
        BindingStatus::Bound
    );
    // Right after registration the first bound cookie may still be on its way: the
    // registration grace covers that window, and only that window.
    assert_eq!(
        binding.status(&config, std::iter::empty(), now),
        BindingStatus::Bound
    );
    let after_grace = now + config.registration_grace();
    assert_eq!(
        binding.status(&config, std::iter::empty(), after_grace),
        BindingStatus::BoundCredentialMissing
    );
    assert_eq!(
        binding.status(&config, [&bound[..]], after_grace),
        BindingStatus::Bound
    );
    let later = now + config.bound_cookie_lifetime();
    assert_eq!(
        binding.status(&config, [&bound[..]], later),
        BindingStatus::BoundCredentialMissing
    );
    // A planted junk value in front does not hide the real one.
    assert_eq!(
        binding.status(&config, [&b"junk"[..], &bound[..]], now),
        BindingStatus::Bound
    );

    // The device refreshes with the pre-sent challenge and gets a new cookie.
    let refresh_at = now + Duration::from_secs(200);
    let proof = refresh_proof(&device, &challenge_of(&next));
    assert_eq!(binding.refresh(proof.as_bytes(), refresh_at), Ok(()));
    let renewed = cookie_value(&binding.bound_cookie(&config, &cookie_config, refresh_at));
    assert_eq!(
        binding.status(&config, [&renewed[..]], later),
        BindingStatus::Bound
    );
    // Replaying that proof fails, and is counted.
    assert_eq!(
        binding.refresh(proof.as_bytes(), refresh_at),
        Err(BindingError::Proof(ProofError::Challenge(
            ChallengeError::Unknown
        )))
    );
    // The thief's own key cannot refresh, even with a live challenge.
    let thief = new_key();
    let retry = binding
        .issue_challenge(refresh_at, RETRY_CHALLENGE_LIFETIME)
        .unwrap();
    let stolen = refresh_proof(&thief, &challenge_of(&retry));
    assert_eq!(
        binding.refresh(stolen.as_bytes(), refresh_at),
        Err(BindingError::Proof(ProofError::BadSignature))
    );
    assert_eq!(binding.refresh_counts(), (1, 2));
    // ... nor register a key of its own over the bound one.
    let offer_again = registration_proof(&thief, "x", "y");
    assert_eq!(
        binding.register(offer_again.as_bytes(), refresh_at),
        Err(BindingError::AlreadyBound)
    );
    // A 403 challenge expires quickly.
    let expired_at = refresh_at + RETRY_CHALLENGE_LIFETIME;
    let late = refresh_proof(&device, &challenge_of(&retry));
    assert_eq!(
        binding.refresh(late.as_bytes(), expired_at),
        Err(BindingError::Proof(ProofError::Challenge(
            ChallengeError::Expired
        )))
    );
}

#[test]
fn pending_bindings_do_not_restrict_and_cannot_refresh() {
    let config = config();
    let now = crate::record::now();
    let (mut binding, offer) = DeviceBinding::offer(&config, now).unwrap();
    assert!(offer
        .to_str()
        .unwrap()
        .starts_with(r#"(ES256 RS256);path="/.cloakroom/dbsc/register";challenge=""#));
    assert_eq!(
        binding.status(&config, std::iter::empty(), now),
        BindingStatus::Unbound
    );
    assert_eq!(
        status(None, &config, std::iter::empty(), now),
        BindingStatus::Unbound
    );
    let device = new_key();
    let proof = refresh_proof(&device, "anything");
    assert_eq!(
        binding.refresh(proof.as_bytes(), now),
        Err(BindingError::NotBound)
    );
    // A registration over another offer's challenge fails and leaves it pending.
    let wrong = registration_proof(
        &device,
        "not the challenge",
        &param(&offer, "authorization"),
    );
    assert!(binding.register(wrong.as_bytes(), now).is_err());
    assert!(!binding.is_bound());
    // An expired offer cannot be registered.
    let good = registration_proof(
        &device,
        &param(&offer, "challenge"),
        &param(&offer, "authorization"),
    );
    let late = now + crate::dbsc::REGISTRATION_CHALLENGE_LIFETIME;
    assert_eq!(
        binding.register(good.as_bytes(), late),
        Err(BindingError::Proof(ProofError::Challenge(
            ChallengeError::Expired
        )))
    );
    assert_eq!(binding.register(good.as_bytes(), now), Ok(()));
}

/// A binding registered by a new device at `now`, its first challenge, and its JSON as a
/// record keeps it.
fn bound_and_stored(
    config: &DeviceBindingConfig,
    now: OffsetDateTime,
) -> (SigningKey, DeviceBinding, HeaderValue, serde_json::Value) {
    let device = new_key();
    let (binding, next) = registered(config, &device, now);
    let stored = serde_json::to_value(&binding).unwrap();
    (device, binding, next, stored)
}

#[test]
fn bindings_round_trip_through_json() {
    let config = config();
    let now = crate::record::now();
    let (device, binding, next, stored) = bound_and_stored(&config, now);
    assert_eq!(stored["state"], "bound");
    // The feature-independent reader (`cloakroom show`) sees the same state.
    let mut record = crate::Record::new(now, None, None);
    record.device_binding = Some(Box::new(stored.clone()));
    assert_eq!(
        record.device_binding_state(),
        Some(crate::record::DeviceBindingState::Bound {
            algorithm: "ES256".into()
        })
    );
    let mut loaded: DeviceBinding = serde_json::from_value(stored).unwrap();
    assert_eq!(loaded, binding);
    let proof = refresh_proof(&device, &challenge_of(&next));
    assert_eq!(loaded.refresh(proof.as_bytes(), now), Ok(()));
    let (pending, _) = DeviceBinding::offer(&config, now).unwrap();
    record.device_binding = Some(Box::new(serde_json::to_value(&pending).unwrap()));
    assert_eq!(
        record.device_binding_state(),
        Some(crate::record::DeviceBindingState::Pending)
    );
    let stored = serde_json::to_string(&pending).unwrap();
    assert_eq!(
        serde_json::from_str::<DeviceBinding>(&stored).unwrap(),
        pending
    );
}

#[test]
fn session_configuration_names_the_bound_cookie() {
    let config = config().with_refresh_path("/r").with_cookie_name("bound");
    let now = crate::record::now();
    let (binding, _) = DeviceBinding::offer(&config, now).unwrap();
    let cookie = CookieConfig::default().with_path("/app");
    let json: serde_json::Value =
        serde_json::from_str(&binding.session_configuration(&config, &cookie).to_json()).unwrap();
    assert_eq!(json["session_identifier"], binding.id());
    assert_eq!(json["refresh_url"], "/r");
    assert_eq!(json["credentials"][0]["name"], "bound");
    assert_eq!(
        json["credentials"][0]["attributes"],
        "Path=/app; Secure; HttpOnly; SameSite=Lax"
    );
}

#[test]
fn configuration_is_checked() {
    assert_eq!(config().validate(), Ok(()));
    let short = config().with_bound_cookie_lifetime(Duration::from_secs(45));
    assert!(matches!(
        short.validate(),
        Err(DeviceBindingConfigError::LifetimeTooShort(_))
    ));
    let none = config().with_algorithms([]);
    assert_eq!(none.validate(), Err(DeviceBindingConfigError::NoAlgorithm));
    for path in ["relative", "/a b", "/a\"b", "/a;b", "/a?b", ""] {
        assert!(
            config().with_registration_path(path).validate().is_err(),
            "{path}"
        );
        assert!(
            config().with_refresh_path(path).validate().is_err(),
            "{path}"
        );
    }
    for name in ["", "a b", "a=b", "a;b", "é"] {
        assert_eq!(
            config().with_cookie_name(name).validate(),
            Err(DeviceBindingConfigError::BadCookieName),
            "{name}"
        );
    }
    let rsa_only = config().with_algorithms([Algorithm::Rs256, Algorithm::Rs256]);
    assert_eq!(rsa_only.algorithms(), [Algorithm::Rs256]);
}

/// A stored binding whose `bound_at` is the last instant a timestamp holds (a corrupt or
/// edited record) is judged, not a panic: the grace period was added to it on every
/// request of the session, and overflowed.
#[test]
fn a_binding_bound_at_the_end_of_time_is_judged_without_panicking() {
    let config = config();
    let now = crate::record::now();
    let (_, _, _, mut stored) = bound_and_stored(&config, now);
    stored["bound_at"] = serde_json::json!(253_402_300_799_999_i64);
    let loaded: DeviceBinding = serde_json::from_value(stored).unwrap();
    assert_eq!(loaded.status(&config, [], now), BindingStatus::Bound);
}
