//! The site under test (a router with a session layer over a store) and a browser that
//! keeps a cookie jar, as Chrome does for a bound session.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use cloakroom::dbsc::binding::DeviceBindingConfig;
use cloakroom::dbsc::test_signer::{registration_proof, SigningKey};
use cloakroom::testing::TestClient;
use cloakroom::{
    generate_key, CookieConfig, KeyRing, MemoryStore, Session, SessionConfig, SessionLayer,
    SessionManager, SessionStore,
};
use serde_json::Value;

pub(crate) const REGISTER: &str = "/.cloakroom/dbsc/register";
pub(crate) const REFRESH: &str = "/.cloakroom/dbsc/refresh";
pub(crate) const SESSION_COOKIE: &str = "id";
pub(crate) const BOUND_COOKIE: &str = "cloakroom_bound";

/// The app, its store, and the key ring bound cookies are MAC'd with.
pub(crate) struct Site {
    pub(crate) app: Router,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) keys: KeyRing,
}

pub(crate) fn site_with(binding: bool) -> Site {
    // No registration grace, so a request right after registration already needs the
    // bound cookie; `the_first_bound_cookie_gets_a_grace_after_registration` covers it.
    site_with_grace(binding, Duration::ZERO)
}

pub(crate) fn site_with_grace(binding: bool, grace: Duration) -> Site {
    site_with_cookie(binding, grace, CookieConfig::default())
}

pub(crate) fn site_with_cookie(binding: bool, grace: Duration, cookie: CookieConfig) -> Site {
    site_over(Arc::new(MemoryStore::new()), binding, grace, cookie)
}

pub(crate) fn site_over(
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
pub(crate) struct Browser {
    pub(crate) cookies: BTreeMap<String, String>,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    }

    /// The value of `name="…"` in a header.
    pub(crate) fn param(&self, header: &str, name: &str) -> String {
        let text = self.header(header).unwrap();
        let start = text.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        text[start..][..text[start..].find('"').unwrap()].to_owned()
    }

    /// The challenge of a `Secure-Session-Challenge`.
    pub(crate) fn challenge(&self) -> String {
        let text = self.header("secure-session-challenge").unwrap();
        text.split('"').nth(1).unwrap().to_owned()
    }

    /// A registration proof by `device` answering this login's offer.
    pub(crate) fn registration_proof(&self, device: &SigningKey) -> String {
        registration_proof(
            device,
            &self.param("secure-session-registration", "challenge"),
            &self.param("secure-session-registration", "authorization"),
        )
    }

    /// The `session_identifier` of a registration's configuration.
    pub(crate) fn binding_id(&self) -> String {
        self.json()["session_identifier"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

impl Browser {
    pub(crate) async fn send(
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
    pub(crate) async fn refresh(&mut self, site: &Site, id: &str, proof: Option<&str>) -> Reply {
        let mut headers = vec![("sec-secure-session-id", id)];
        headers.extend(proof.map(|proof| ("secure-session-response", proof)));
        self.send(site, "POST", REFRESH, &headers).await
    }

    /// A registration carrying `proof`.
    pub(crate) async fn register(&mut self, site: &Site, proof: &str) -> Reply {
        self.send(
            site,
            "POST",
            REGISTER,
            &[("secure-session-response", proof)],
        )
        .await
    }

    pub(crate) async fn whoami(&mut self, site: &Site) -> String {
        self.send(site, "GET", "/whoami", &[]).await.body
    }

    /// Logs in and registers `device` as Chrome would; returns the registration reply.
    pub(crate) async fn login_and_register(&mut self, site: &Site, device: &SigningKey) -> Reply {
        let login = self.login(site, "alice").await;
        self.register(site, &login.registration_proof(device)).await
    }

    /// A new browser logged in as alice, and the login's reply (which offers a binding
    /// when the site has it on).
    pub(crate) async fn logged_in(site: &Site) -> (Browser, Reply) {
        let mut browser = Browser::default();
        let login = browser.login(site, "alice").await;
        (browser, login)
    }

    /// A new browser logged in with `device` registered: the registration reply and the
    /// binding's identifier, which most tests start from.
    pub(crate) async fn registered(site: &Site, device: &SigningKey) -> (Browser, Reply, String) {
        let mut browser = Browser::default();
        let reply = browser.login_and_register(site, device).await;
        let id = reply.binding_id();
        (browser, reply, id)
    }

    pub(crate) async fn login(&mut self, site: &Site, user: &str) -> Reply {
        let login = self
            .send(site, "POST", &format!("/login/{user}"), &[])
            .await;
        assert_eq!(login.status, StatusCode::OK);
        login
    }

    /// A copy of this browser holding only the session cookie (a thief's HTTP client).
    pub(crate) fn session_cookie_only(&self) -> Browser {
        let mut thief = self.clone();
        thief.cookies.retain(|name, _| name == SESSION_COOKIE);
        thief
    }
}

/// The stored record of the browser's session, as JSON.
pub(crate) async fn stored(site: &Site, browser: &Browser) -> Option<cloakroom::record::Record> {
    let id = cloakroom::SessionId::parse(&browser.cookies[SESSION_COOKIE]).unwrap();
    site.store.load(&id.store_key()).await.unwrap()
}

/// Rewrites the stored binding (to age a challenge, say), as a store would hold it.
pub(crate) async fn edit_binding(site: &Site, browser: &Browser, edit: impl FnOnce(&mut Value)) {
    let id = cloakroom::SessionId::parse(&browser.cookies[SESSION_COOKIE]).unwrap();
    let mut record = site.store.load(&id.store_key()).await.unwrap().unwrap();
    edit(record.device_binding.as_deref_mut().unwrap());
    site.store.update(&id.store_key(), &record).await.unwrap();
}

pub(crate) fn past_ms() -> i64 {
    cloakroom::record::to_unix_ms(cloakroom::record::now()) - 1_000
}

pub(crate) fn site_keys() -> KeyRing {
    KeyRing::parse(&generate_key()).unwrap()
}
