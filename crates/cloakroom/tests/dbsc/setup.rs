//! Configuration, and what works as before: clients without DBSC, cookie sessions, ID
//! changes, older records, cookie prefixes and paths.

use std::time::Duration;

use axum::http::StatusCode;
use cloakroom::dbsc::binding::DeviceBindingConfig;
use cloakroom::dbsc::test_signer::new_key;
use cloakroom::{generate_key, CookieConfig, KeyRing, MemoryStore, SessionConfig, SessionManager};

use crate::site::*;

#[tokio::test]
async fn clients_without_dbsc_work_as_before() {
    // Binding on, the browser never registers: the session cookie is enough.
    let site = site_with(true);
    let (mut browser, login) = Browser::logged_in(&site).await;
    assert!(login
        .header("secure-session-registration")
        .unwrap()
        .starts_with("(ES256 RS256);path=\"/.cloakroom/dbsc/register\""));
    assert_eq!(browser.whoami(&site).await, "alice");
    let binding = browser.send(&site, "GET", "/binding", &[]).await.body;
    assert_eq!(binding, "pending");
    browser.send(&site, "POST", "/cycle", &[]).await;
    assert_eq!(browser.whoami(&site).await, "alice");
    // Binding off: no offer, and the endpoints are the app's (here: none).
    let site = site_with(false);
    let (mut browser, login) = Browser::logged_in(&site).await;
    assert!(login.header("secure-session-registration").is_none());
    let binding = browser.send(&site, "GET", "/binding", &[]).await.body;
    assert_eq!(binding, "none");
    let reply = browser.send(&site, "POST", REGISTER, &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cycle_id_keeps_the_binding_and_login_drops_it() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, _, _) = Browser::registered(&site, &device).await;
    let before = browser.cookies[SESSION_COOKIE].clone();
    browser.send(&site, "POST", "/cycle", &[]).await;
    assert_ne!(browser.cookies[SESSION_COOKIE], before, "the ID rotated");
    assert_eq!(browser.whoami(&site).await, "alice");
    assert_eq!(
        browser.session_cookie_only().whoami(&site).await,
        "anonymous",
        "still bound after cycle_id"
    );
    // A new login offers a new binding and drops the old key: until the browser
    // registers again, the session cookie alone works.
    let login = browser.login(&site, "alice").await;
    assert!(login.header("secure-session-registration").is_some());
    assert_eq!(browser.session_cookie_only().whoami(&site).await, "alice");
    let binding = stored(&site, &browser)
        .await
        .unwrap()
        .device_binding
        .unwrap();
    assert_eq!(binding["state"], "pending");
}

#[test]
fn records_written_before_device_binding_still_load() {
    let old = r#"{"data":{"a":1},"created_at":0,"last_active_at":0,"version":3}"#;
    let record: cloakroom::record::Record = serde_json::from_str(old).unwrap();
    assert_eq!(record.device_binding, None);
    assert!(!serde_json::to_string(&record)
        .unwrap()
        .contains("device_binding"));
}

#[tokio::test]
async fn cookie_sessions_refuse_device_binding() {
    let keys = KeyRing::parse(&generate_key()).unwrap();
    let config =
        SessionConfig::default().with_device_binding(DeviceBindingConfig::new(keys.clone()));
    let sessions = cloakroom::sealed::CookieSessions::encrypted(keys);
    assert_eq!(
        SessionManager::cookie(sessions, config).unwrap_err(),
        cloakroom::ConfigError::DeviceBindingNeedsStore
    );
}

/// Under the `__Host-` prefix the bound cookie is set as `__Host-cloakroom_bound` (it takes
/// the session cookie's attributes), and must be read, and removed at logout, under that
/// name. It was read under the bare name: every request after a registration lacked the
/// bound cookie and was anonymous, so every browser that bound a key was logged out, on
/// every login.
#[tokio::test]
async fn device_binding_works_under_the_host_prefix() {
    let cookie = CookieConfig::default().with_host_prefix(true);
    let site = site_with_cookie(true, Duration::ZERO, cookie.clone());
    let device = new_key();
    let mut browser = Browser::default();
    let registration = browser.login_and_register(&site, &device).await;
    assert_eq!(registration.status, StatusCode::OK, "{}", registration.body);
    let bound = format!("__Host-{BOUND_COOKIE}");
    assert!(
        browser.cookies.contains_key(&bound),
        "{:?}",
        browser.cookies
    );
    assert_eq!(browser.whoami(&site).await, "alice");
    browser.send(&site, "POST", "/logout", &[]).await;
    assert!(
        !browser.cookies.contains_key(&bound),
        "{:?}",
        browser.cookies
    );

    // A bound cookie named as the session cookie is refused under the prefix too, where
    // both were written as `__Host-id`, each overwriting the other.
    let same_name = DeviceBindingConfig::new(site_keys()).with_cookie_name(SESSION_COOKIE);
    let config = SessionConfig::default()
        .with_cookie(cookie)
        .with_device_binding(same_name);
    assert!(SessionManager::new(MemoryStore::new(), config).is_err());
}

/// The endpoints must be where the browser sends the session cookie: under a cookie `Path`
/// of `/app`, the default `/.cloakroom/dbsc/…` endpoints never got it, so every
/// registration was refused and binding was silently off. It is a configuration error.
#[test]
fn endpoints_outside_the_session_cookies_path_are_refused() {
    let scoped = CookieConfig::default().with_path("/app");
    let config = |binding: DeviceBindingConfig| {
        SessionConfig::default()
            .with_cookie(scoped.clone())
            .with_device_binding(binding)
    };
    let default = DeviceBindingConfig::new(site_keys());
    assert!(SessionManager::new(MemoryStore::new(), config(default)).is_err());
    let sibling = DeviceBindingConfig::new(site_keys())
        .with_registration_path("/application/dbsc/register")
        .with_refresh_path("/app/dbsc/refresh");
    assert!(SessionManager::new(MemoryStore::new(), config(sibling)).is_err());
    let under = DeviceBindingConfig::new(site_keys())
        .with_registration_path("/app/.dbsc/register")
        .with_refresh_path("/app/.dbsc/refresh");
    assert!(SessionManager::new(MemoryStore::new(), config(under)).is_ok());
}
