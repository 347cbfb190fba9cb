//! Registration: binding a device key to a logged-in session, and the bound cookie it
//! then requires.

use std::time::Duration;

use axum::http::StatusCode;
use cloakroom::dbsc::binding::DeviceBindingConfig;
use cloakroom::dbsc::bound_cookie;
use cloakroom::dbsc::test_signer::{new_key, refresh_proof};
use cloakroom::{generate_key, KeyRing};

use crate::site::*;

#[tokio::test]
async fn registration_binds_and_the_bound_cookie_is_then_required() {
    let site = site_with(true);
    let device = new_key();
    let mut browser = Browser::default();
    let reply = browser.login_and_register(&site, &device).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    let config = reply.json();
    assert_eq!(config["refresh_url"], REFRESH);
    assert_eq!(config["credentials"][0]["name"], BOUND_COOKIE);
    let id = config["session_identifier"].as_str().unwrap().to_owned();
    assert_eq!(reply.param("secure-session-challenge", "id"), id);
    assert!(browser.cookies.contains_key(BOUND_COOKIE));
    assert_eq!(browser.whoami(&site).await, "alice");
    let binding = browser.send(&site, "GET", "/binding", &[]).await.body;
    assert_eq!(binding, "bound (ES256)");

    // The session cookie alone (copied by a thief) is not logged in, and the stored
    // session is left exactly as it was: not destroyed, not touched, not rotated.
    let before = stored(&site, &browser).await.unwrap();
    let mut thief = browser.session_cookie_only();
    let seen = thief.send(&site, "GET", "/whoami", &[]).await;
    assert_eq!(seen.body, "anonymous");
    assert!(seen.header("set-cookie").is_none(), "no cookie for a read");
    // Even a write by the thief (a login as someone else) leaves the bound session alone.
    thief.login(&site, "mallory").await;
    assert_eq!(stored(&site, &browser).await.unwrap(), before);
    assert_eq!(browser.whoami(&site).await, "alice");

    // Refresh with the pre-sent challenge: a new bound cookie and the next challenge.
    let old_bound = browser.cookies[BOUND_COOKIE].clone();
    let proof = refresh_proof(&device, &reply.challenge());
    let refreshed = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    assert_ne!(browser.cookies[BOUND_COOKIE], old_bound);
    assert_eq!(refreshed.param("secure-session-challenge", "id"), id);
    assert_eq!(browser.whoami(&site).await, "alice");
}

#[tokio::test]
async fn a_bad_signature_does_not_register() {
    let site = site_with(true);
    let (mut browser, login) = Browser::logged_in(&site).await;
    let proof = login.registration_proof(&new_key());
    // Flip a character of the signature.
    let mut bytes = proof.into_bytes();
    let at = bytes.len() - 2;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let reply = browser.register(&site, &tampered).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(!browser.cookies.contains_key(BOUND_COOKIE));
    // Still unbound: the session cookie alone keeps working, as without DBSC.
    assert_eq!(browser.session_cookie_only().whoami(&site).await, "alice");
}

#[tokio::test]
async fn a_session_that_is_gone_cannot_register_or_refresh() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, login) = Browser::logged_in(&site).await;
    let kept = browser.clone();
    browser.send(&site, "POST", "/logout", &[]).await;
    let mut gone = kept.clone();
    let proof = login.registration_proof(&device);
    let reply = gone.register(&site, &proof).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // A bound session that is then logged out: the refresh ends Chrome's session.
    let (mut browser, _, id) = Browser::registered(&site, &device).await;
    let before_logout = browser.clone();
    browser.send(&site, "POST", "/logout", &[]).await;
    assert!(
        !browser.cookies.contains_key(BOUND_COOKIE),
        "logout clears it"
    );
    let mut stale = before_logout;
    let ended = stale.refresh(&site, &id, None).await;
    assert_eq!(ended.status, StatusCode::OK);
    assert_eq!(ended.json(), serde_json::json!({"continue": false}));
    // So does an identifier that is not this session's.
    let (mut browser, _, _) = Browser::registered(&site, &device).await;
    let other = browser.refresh(&site, "someone-else", None).await;
    assert_eq!(other.json(), serde_json::json!({"continue": false}));
}

#[tokio::test]
async fn a_missing_forged_or_expired_bound_cookie_is_not_logged_in() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, _, id) = Browser::registered(&site, &device).await;
    let past = cloakroom::record::now() - Duration::from_secs(1);
    let expired = bound_cookie::issue(&site.keys, &id, past);
    let other_ring = KeyRing::parse(&generate_key()).unwrap();
    let forged = bound_cookie::issue(&other_ring, &id, past + Duration::from_secs(600));
    for value in [expired, forged, "junk".to_owned()] {
        let mut copy = browser.clone();
        copy.cookies.insert(BOUND_COOKIE.into(), value);
        assert_eq!(copy.whoami(&site).await, "anonymous");
    }
    assert_eq!(
        browser.session_cookie_only().whoami(&site).await,
        "anonymous"
    );
    assert_eq!(browser.whoami(&site).await, "alice");
}

#[tokio::test]
async fn the_first_bound_cookie_gets_a_grace_after_registration() {
    // Chrome registers in the background right after the login response, while the page
    // asks the server who is logged in: that request can land after the key is stored and
    // before the browser holds the first bound cookie. It must not read as logged out.
    let site = site_with_grace(
        true,
        DeviceBindingConfig::new(site_keys()).registration_grace(),
    );
    let device = new_key();
    let (browser, _, _) = Browser::registered(&site, &device).await;
    let mut in_flight = browser.session_cookie_only();
    assert_eq!(in_flight.whoami(&site).await, "alice");
    // Once the grace is over, the session cookie alone is anonymous again.
    edit_binding(&site, &browser, |binding| {
        binding["bound_at"] = serde_json::json!(past_ms() - 10_000);
    })
    .await;
    assert_eq!(in_flight.whoami(&site).await, "anonymous");
    let mut browser = browser;
    assert_eq!(browser.whoami(&site).await, "alice");
}

#[test]
fn the_registration_grace_is_bounded() {
    let config = DeviceBindingConfig::new(site_keys());
    assert_eq!(config.registration_grace(), Duration::from_secs(10));
    let long = config.with_registration_grace(Duration::from_secs(61));
    assert_eq!(
        long.validate(),
        Err(cloakroom::dbsc::binding::DeviceBindingConfigError::GraceTooLong)
    );
}
