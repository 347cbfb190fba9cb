//! Device-bound sessions (DBSC) through the tower layer, in process: a real MemoryStore,
//! real ES256 keys, and requests shaped like the ones Chrome 156 sends
//! (`docs/dbsc-chromium-probe.md`). Each failure the issue lists has its test.
#![cfg(feature = "dbsc")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use cloakroom::conformance::{HookedStore, Operation, StoreHook};
use cloakroom::dbsc::binding::DeviceBindingConfig;
use cloakroom::dbsc::bound_cookie;
use cloakroom::dbsc::test_signer::{new_key, refresh_proof, registration_proof, SigningKey};
use cloakroom::testing::TestClient;
use cloakroom::{
    generate_key, CookieConfig, KeyRing, MemoryStore, Session, SessionConfig, SessionLayer,
    SessionManager, SessionStore,
};
use serde_json::Value;

const REGISTER: &str = "/.cloakroom/dbsc/register";
const REFRESH: &str = "/.cloakroom/dbsc/refresh";
const SESSION_COOKIE: &str = "id";
const BOUND_COOKIE: &str = "cloakroom_bound";

/// The app, its store, and the key ring bound cookies are MAC'd with.
struct Site {
    app: Router,
    store: Arc<dyn SessionStore>,
    keys: KeyRing,
}

fn site_with(binding: bool) -> Site {
    // No registration grace, so a request right after registration already needs the
    // bound cookie; `the_first_bound_cookie_gets_a_grace_after_registration` covers it.
    site_with_grace(binding, Duration::ZERO)
}

fn site_with_grace(binding: bool, grace: Duration) -> Site {
    site_with_cookie(binding, grace, CookieConfig::default())
}

fn site_with_cookie(binding: bool, grace: Duration, cookie: CookieConfig) -> Site {
    site_over(Arc::new(MemoryStore::new()), binding, grace, cookie)
}

fn site_over(
    store: Arc<dyn SessionStore>,
    binding: bool,
    grace: Duration,
    cookie: CookieConfig,
) -> Site {
    let keys = KeyRing::parse(&generate_key()).unwrap();
    let mut config = SessionConfig::default().with_cookie(cookie);
    if binding {
        config = config.with_device_binding(
            DeviceBindingConfig::new(keys.clone()).with_registration_grace(grace),
        );
    }
    let manager = SessionManager::from_arc(store.clone(), config).unwrap();
    let app = Router::new()
        .route(
            "/login/{user}",
            post(
                |session: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                    session.login(user).await.unwrap();
                },
            ),
        )
        .route(
            "/whoami",
            get(|session: Session| async move {
                session
                    .user()
                    .await
                    .unwrap()
                    .unwrap_or_else(|| "anonymous".into())
            }),
        )
        .route(
            "/binding",
            get(|session: Session| async move {
                match session.device_binding().await.unwrap() {
                    Some(state) => state.to_string(),
                    None => "none".into(),
                }
            }),
        )
        .route(
            "/cycle",
            post(|session: Session| async move { session.cycle_id().await.unwrap() }),
        )
        .route(
            "/logout",
            post(|session: Session| async move { session.logout().await.unwrap() }),
        )
        .layer(SessionLayer::from_manager(Arc::new(manager)));
    Site { app, store, keys }
}

/// A browser's cookie jar and the last response.
#[derive(Clone, Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    }

    /// The value of `name="…"` in a header.
    fn param(&self, header: &str, name: &str) -> String {
        let text = self.header(header).unwrap();
        let start = text.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        text[start..][..text[start..].find('"').unwrap()].to_owned()
    }

    /// The challenge of a `Secure-Session-Challenge`.
    fn challenge(&self) -> String {
        let text = self.header("secure-session-challenge").unwrap();
        text.split('"').nth(1).unwrap().to_owned()
    }

    /// A registration proof by `device` answering this login's offer.
    fn registration_proof(&self, device: &SigningKey) -> String {
        registration_proof(
            device,
            &self.param("secure-session-registration", "challenge"),
            &self.param("secure-session-registration", "authorization"),
        )
    }

    /// The `session_identifier` of a registration's configuration.
    fn binding_id(&self) -> String {
        self.json()["session_identifier"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

impl Browser {
    async fn send(
        &mut self,
        site: &Site,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let line: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header("cookie", line.join("; "));
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        // The jar is this test's own (a session and a bound cookie), so the shared client
        // is used without a session cookie of its own.
        let response = TestClient::new(site.app.clone())
            .send(request.body(Body::empty()))
            .await;
        for set in response.set_cookies() {
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text(),
        }
    }

    /// A refresh as Chrome sends it: the identifier, and a proof when it has one.
    async fn refresh(&mut self, site: &Site, id: &str, proof: Option<&str>) -> Reply {
        let mut headers = vec![("sec-secure-session-id", id)];
        headers.extend(proof.map(|proof| ("secure-session-response", proof)));
        self.send(site, "POST", REFRESH, &headers).await
    }

    /// A registration carrying `proof`.
    async fn register(&mut self, site: &Site, proof: &str) -> Reply {
        self.send(
            site,
            "POST",
            REGISTER,
            &[("secure-session-response", proof)],
        )
        .await
    }

    async fn whoami(&mut self, site: &Site) -> String {
        self.send(site, "GET", "/whoami", &[]).await.body
    }

    /// Logs in and registers `device` as Chrome would; returns the registration reply.
    async fn login_and_register(&mut self, site: &Site, device: &SigningKey) -> Reply {
        let login = self.login(site, "alice").await;
        self.register(site, &login.registration_proof(device)).await
    }

    /// A new browser logged in as alice, and the login's reply (which offers a binding
    /// when the site has it on).
    async fn logged_in(site: &Site) -> (Browser, Reply) {
        let mut browser = Browser::default();
        let login = browser.login(site, "alice").await;
        (browser, login)
    }

    /// A new browser logged in with `device` registered: the registration reply and the
    /// binding's identifier, which most tests start from.
    async fn registered(site: &Site, device: &SigningKey) -> (Browser, Reply, String) {
        let mut browser = Browser::default();
        let reply = browser.login_and_register(site, device).await;
        let id = reply.binding_id();
        (browser, reply, id)
    }

    async fn login(&mut self, site: &Site, user: &str) -> Reply {
        let login = self
            .send(site, "POST", &format!("/login/{user}"), &[])
            .await;
        assert_eq!(login.status, StatusCode::OK);
        login
    }

    /// A copy of this browser holding only the session cookie (a thief's HTTP client).
    fn session_cookie_only(&self) -> Browser {
        let mut thief = self.clone();
        thief.cookies.retain(|name, _| name == SESSION_COOKIE);
        thief
    }
}

/// The stored record of the browser's session, as JSON.
async fn stored(site: &Site, browser: &Browser) -> Option<cloakroom::record::Record> {
    let id = cloakroom::SessionId::parse(&browser.cookies[SESSION_COOKIE]).unwrap();
    site.store.load(&id.store_key()).await.unwrap()
}

/// Rewrites the stored binding (to age a challenge, say), as a store would hold it.
async fn edit_binding(site: &Site, browser: &Browser, edit: impl FnOnce(&mut Value)) {
    let id = cloakroom::SessionId::parse(&browser.cookies[SESSION_COOKIE]).unwrap();
    let mut record = site.store.load(&id.store_key()).await.unwrap().unwrap();
    edit(record.device_binding.as_deref_mut().unwrap());
    site.store.update(&id.store_key(), &record).await.unwrap();
}

fn past_ms() -> i64 {
    cloakroom::record::to_unix_ms(cloakroom::record::now()) - 1_000
}

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
async fn refresh_without_a_proof_gets_a_challenge_then_a_cookie() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, _, id) = Browser::registered(&site, &device).await;
    let asked = browser.refresh(&site, &id, None).await;
    assert_eq!(asked.status, StatusCode::FORBIDDEN);
    let proof = refresh_proof(&device, &asked.challenge());
    let refreshed = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    assert!(refreshed
        .header("set-cookie")
        .unwrap()
        .starts_with(BOUND_COOKIE));
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
async fn a_replayed_or_foreign_refresh_proof_is_refused() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, reply, id) = Browser::registered(&site, &device).await;
    let proof = refresh_proof(&device, &reply.challenge());
    let first = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(first.status, StatusCode::OK);
    // The same proof again: its challenge was used.
    let replayed = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert!(replayed.header("set-cookie").is_none());

    // Another key (a thief's device) signing a live challenge.
    let asked = browser.refresh(&site, &id, None).await;
    let stolen = refresh_proof(&new_key(), &asked.challenge());
    let refused = browser.refresh(&site, &id, Some(&stolen)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.header("set-cookie").is_none());
    // A registration over the bound key is refused too.
    let again = registration_proof(&new_key(), &asked.challenge(), "x");
    let rebind = browser.register(&site, &again).await;
    assert_eq!(rebind.status, StatusCode::BAD_REQUEST);
}

/// Two refreshes racing with one proof: the compare-and-set lets exactly one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_refreshes_with_one_proof_get_one_cookie() {
    let site = Arc::new(site_with(true));
    let device = new_key();
    for _ in 0..10 {
        let (browser, reply, id) = Browser::registered(&site, &device).await;
        let proof = refresh_proof(&device, &reply.challenge());
        let racers = (0..4).map(|_| {
            let (site, mut browser) = (Arc::clone(&site), browser.clone());
            let (id, proof) = (id.clone(), proof.clone());
            tokio::spawn(async move { browser.refresh(&site, &id, Some(&proof)).await.status })
        });
        let mut statuses = Vec::new();
        for racer in racers.collect::<Vec<_>>() {
            statuses.push(racer.await.unwrap());
        }
        let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(won, 1, "{statuses:?}");
        assert!(statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED));
    }
}

#[tokio::test]
async fn expired_challenges_are_refused() {
    let site = site_with(true);
    let device = new_key();
    // Registration: the offer's challenge aged past its expiry in the store.
    let (mut browser, login) = Browser::logged_in(&site).await;
    edit_binding(&site, &browser, |binding| {
        binding["challenge"]["expires_at"] = past_ms().into();
    })
    .await;
    let proof = login.registration_proof(&device);
    let reply = browser.register(&site, &proof).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Refresh: the pre-sent challenge aged the same way.
    let (mut browser, reply, id) = Browser::registered(&site, &device).await;
    edit_binding(&site, &browser, |binding| {
        for challenge in binding["challenges"].as_array_mut().unwrap() {
            challenge["expires_at"] = past_ms().into();
        }
    })
    .await;
    let proof = refresh_proof(&device, &reply.challenge());
    let refused = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
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

fn site_keys() -> KeyRing {
    KeyRing::parse(&generate_key()).unwrap()
}

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

/// A thief with the session cookie (no device key, no bound cookie) asking for refresh
/// challenges neither pushes out the challenge the browser was sent nor costs the store a
/// write per request. Each proof-less refresh stored a new challenge, and a third pushed
/// out the oldest: two were enough to evict the one the browser held, whose next refresh
/// then got a 401 that ends Chrome's bound session, logging the user out.
#[tokio::test]
async fn a_thief_asking_for_challenges_cannot_evict_the_browsers() {
    let site = site_with(true);
    let device = new_key();
    let (mut browser, reply, id) = Browser::registered(&site, &device).await;
    let mut thief = browser.session_cookie_only();
    let first = thief.refresh(&site, &id, None).await;
    assert_eq!(first.status, StatusCode::FORBIDDEN);
    let version = stored(&site, &browser).await.unwrap().version;
    for _ in 0..3 {
        let again = thief.refresh(&site, &id, None).await;
        assert_eq!(again.status, StatusCode::FORBIDDEN);
        assert_eq!(
            again.challenge(),
            first.challenge(),
            "the outstanding one is sent again"
        );
    }
    assert_eq!(
        stored(&site, &browser).await.unwrap().version,
        version,
        "asking again writes nothing"
    );
    let proof = refresh_proof(&device, &reply.challenge());
    let refreshed = browser.refresh(&site, &id, Some(&proof)).await;
    assert_eq!(
        refreshed.status,
        StatusCode::OK,
        "the browser's pre-sent challenge still works"
    );
}

/// A refresh finds the session its identifier names among the request's session cookies.
/// It took the first live one, so a live session cookie planted in front of ours from a
/// sibling subdomain (the attacker's own session) answered `{"continue":false}`, which
/// ends the victim's bound session in Chrome.
#[tokio::test]
async fn a_refresh_passes_over_a_planted_session_cookie() {
    let site = site_with(true);
    let device = new_key();
    let (browser, reply, id) = Browser::registered(&site, &device).await;
    let (attacker, _) = Browser::logged_in(&site).await;
    let line = format!(
        "{SESSION_COOKIE}={}; {SESSION_COOKIE}={}",
        attacker.cookies[SESSION_COOKIE], browser.cookies[SESSION_COOKIE]
    );
    let proof = refresh_proof(&device, &reply.challenge());
    let refreshed = Browser::default()
        .send(
            &site,
            "POST",
            REFRESH,
            &[
                ("cookie", line.as_str()),
                ("sec-secure-session-id", id.as_str()),
                ("secure-session-response", proof.as_str()),
            ],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert!(
        refreshed
            .header("set-cookie")
            .is_some_and(|cookie| cookie.starts_with(BOUND_COOKIE)),
        "{:?} {}",
        refreshed.headers,
        refreshed.body
    );
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

/// A touch (another request's idle refresh) that lands while a refresh saves its binding
/// is kept. The refresh wrote back the whole record as it loaded it, and a touch does not
/// move the version its compare-and-set checks, so the session's idle deadline went back
/// to before the touch.
#[tokio::test]
async fn a_touch_landing_during_a_refresh_is_kept() {
    /// Touches `armed`'s session as the next update reaches the store.
    #[derive(Default)]
    struct TouchBeforeUpdate {
        store: MemoryStore,
        armed: std::sync::Mutex<Option<(cloakroom::StoreKey, cloakroom::Touch)>>,
    }
    #[async_trait::async_trait]
    impl StoreHook for TouchBeforeUpdate {
        async fn before(&self, operation: Operation) -> Result<(), cloakroom::StoreError> {
            let armed = self.armed.lock().unwrap().take();
            if let (Operation::Update, Some((key, touch))) = (operation, armed) {
                self.store.touch(&key, &touch).await.unwrap();
            }
            Ok(())
        }
    }

    let hook = Arc::new(TouchBeforeUpdate::default());
    let inner: Arc<dyn SessionStore> = Arc::new(HookedStore::with_hook(
        Arc::new(hook.store.clone()),
        Arc::clone(&hook),
    ));
    let site = site_over(inner, true, Duration::ZERO, CookieConfig::default());
    let device = new_key();
    let (mut browser, reply, id) = Browser::registered(&site, &device).await;
    // The session was last refreshed a while ago, within the touch interval.
    let expiry = SessionConfig::default().expiry;
    let key = cloakroom::SessionId::parse(&browser.cookies[SESSION_COOKIE])
        .unwrap()
        .store_key();
    let mut record = stored(&site, &browser).await.unwrap();
    record.last_active_at = cloakroom::record::now() - Duration::from_secs(50);
    record.idle_deadline = expiry.idle_deadline(record.last_active_at);
    site.store.update(&key, &record).await.unwrap();

    let t = cloakroom::record::now();
    let touch = cloakroom::Touch {
        last_active_at: t,
        idle_deadline: expiry.idle_deadline(t),
    };
    *hook.armed.lock().unwrap() = Some((key, touch));
    let proof = refresh_proof(&device, &reply.challenge());
    assert_eq!(
        browser.refresh(&site, &id, Some(&proof)).await.status,
        StatusCode::OK
    );
    assert!(hook.armed.lock().unwrap().is_none(), "the touch landed");
    let kept = stored(&site, &browser)
        .await
        .unwrap()
        .idle_deadline
        .unwrap();
    let touched = touch.idle_deadline.unwrap();
    assert!(
        kept >= touched - Duration::from_secs(1),
        "the refresh moved the idle deadline back by {}",
        touched - kept
    );
}
