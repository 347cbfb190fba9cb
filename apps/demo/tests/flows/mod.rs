//! The demo driven through every route of its API, as the observability tests use it: a
//! user on two devices and an attacker, with every session ID seen along the way kept.

#![allow(dead_code)] // Each test file uses its own part.

use std::sync::Arc;

use axum::http::{header, Request, StatusCode};
use cloakroom::testing::AppUnderTest;
use cloakroom_actix::testing::ActixApp;
use cloakroom_demo::{DemoEpochs, Settings};
use serde_json::Value;

/// A client that keeps its cookie, and remembers every session ID it ever held or sent.
pub struct Browser {
    app: App,
    /// The session ID it sends, if any.
    pub cookie: Option<String>,
    agent: &'static str,
}

/// A response, read.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

/// Every session ID a response set or a request sent.
#[derive(Default)]
pub struct Ids(pub Vec<String>);

impl Browser {
    pub fn new(app: &App, agent: &'static str) -> Self {
        Self {
            app: app.clone(),
            cookie: None,
            agent,
        }
    }

    pub async fn send(
        &mut self,
        ids: &mut Ids,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::USER_AGENT, self.agent);
        if let Some(cookie) = &self.cookie {
            ids.0.push(cookie.clone());
            request = request.header(header::COOKIE, format!("id={cookie}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.unwrap_or_default().as_bytes().to_vec())
            .unwrap();
        let response = self.app.call(request).await;
        let status = response.status();
        for set in response.headers().get_all(header::SET_COOKIE) {
            let value = set.to_str().unwrap();
            let id = value
                .strip_prefix("id=")
                .and_then(|rest| rest.split(';').next())
                .unwrap_or_default();
            if id.is_empty() {
                self.cookie = None;
            } else {
                ids.0.push(id.to_owned());
                self.cookie = Some(id.to_owned());
            }
        }
        let text = String::from_utf8_lossy(response.body()).into_owned();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }
}

/// The demo on either framework.
pub type App = Arc<dyn AppUnderTest>;

/// The demo on a fresh memory store, on axum, or on actix-web when `actix`.
pub fn demo(actix: bool) -> App {
    let epochs = DemoEpochs::default();
    let config = Settings::default()
        .session_config()
        .with_epochs(epochs.clone());
    let manager =
        Arc::new(cloakroom::SessionManager::new(cloakroom::MemoryStore::new(), config).unwrap());
    if actix {
        Arc::new(ActixApp::new(move || {
            cloakroom_demo::routes_actix::app(manager, epochs)
        }))
    } else {
        Arc::new(cloakroom_demo::app_with_manager(manager, epochs))
    }
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

const ALICE: &str = r#"{"username":"alice","password":"wonderland"}"#;

/// Every route of the API, as a user on two devices and an attacker would use them.
pub async fn every_api_flow(app: &App, ids: &mut Ids) {
    let mut laptop = Browser::new(app, FIREFOX);
    let mut phone = Browser::new(app, IPHONE);
    assert_eq!(
        laptop.send(ids, "GET", "/", None).await.status,
        StatusCode::OK
    );
    // Anonymous use, then login keeping the cart.
    laptop
        .send(ids, "POST", "/api/cart", Some(r#"{"item":"apple"}"#))
        .await;
    laptop.send(ids, "POST", "/api/counter", None).await;
    let wrong = r#"{"username":"alice","password":"nope"}"#;
    let refused = laptop.send(ids, "POST", "/api/login", Some(wrong)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    laptop.send(ids, "POST", "/api/login", Some(ALICE)).await;
    assert_eq!(
        laptop.send(ids, "GET", "/api/me", None).await.status,
        StatusCode::OK
    );
    laptop.send(ids, "GET", "/api/cart", None).await;
    laptop
        .send(ids, "PUT", "/api/prefs/theme", Some(r#"{"value":"dark"}"#))
        .await;
    laptop.send(ids, "GET", "/api/prefs", None).await;
    // Bad requests.
    laptop
        .send(ids, "POST", "/api/cart", Some("{not json"))
        .await;
    laptop.send(ids, "GET", "/nowhere", None).await;
    // A second device; the device list names both as people would.
    phone.send(ids, "POST", "/api/login", Some(ALICE)).await;
    let devices = phone.send(ids, "GET", "/api/sessions", None).await.body;
    let named: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert!(named.contains(&"Firefox 133 on Linux"), "{devices}");
    assert!(named.contains(&"Safari 18 on iPhone"), "{devices}");
    assert!(devices
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["user_agent"] == IPHONE));
    // The phone revokes the laptop by handle; the laptop's cookie is dead.
    let laptop_handle = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["current"] == false)
        .unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/sessions/{laptop_handle}");
    assert_eq!(
        phone.send(ids, "DELETE", &path, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        laptop.send(ids, "GET", "/api/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The laptop logs in again; the phone logs out the others, then itself.
    laptop.send(ids, "POST", "/api/login", Some(ALICE)).await;
    phone
        .send(ids, "POST", "/api/sessions/revoke-others", None)
        .await;
    phone.send(ids, "POST", "/api/logout", None).await;
    // An attacker: a forged ID, a stolen-then-revoked one, junk.
    let mut forged = Browser::new(app, "curl/8.5");
    forged.cookie = Some(cloakroom::SessionId::generate().to_cookie_value());
    forged.send(ids, "GET", "/api/me", None).await;
    let mut junk = Browser::new(app, "curl/8.5");
    junk.cookie = Some("not-an-id".into());
    junk.send(ids, "POST", "/api/counter", None).await;
}
