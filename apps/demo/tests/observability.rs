//! What the demo tells operators: every log line and span field it emits across its whole
//! API, captured at every level, holds no raw session ID; and `/metrics` counts sessions.
//! Both on axum and on actix-web.

use std::fs::File;
use std::io::{Read, Seek};
use std::sync::Arc;

use axum::http::{header, Request, StatusCode};
use cloakroom::testing::AppUnderTest;
use cloakroom_actix::testing::ActixApp;
use cloakroom_demo::{DemoEpochs, Settings};
use serde_json::Value;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything the subscriber writes, kept in a scratch file: `tracing_subscriber` writes to
/// a `File` as it is, and the handle it gets shares this one's file offset.
struct Captured(File);

impl Captured {
    fn new() -> Self {
        Self(tempfile::tempfile().unwrap())
    }

    /// A handle for the subscriber.
    fn writer(&self) -> File {
        self.0.try_clone().unwrap()
    }

    /// Forgets what was written so far.
    fn clear(&self) {
        self.0.set_len(0).unwrap();
        (&self.0).rewind().unwrap();
    }

    fn text(&self) -> String {
        let mut bytes = Vec::new();
        (&self.0).rewind().unwrap();
        (&self.0).read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A client that keeps its cookie, and remembers every session ID it ever held or sent.
struct Browser {
    app: App,
    cookie: Option<String>,
    agent: &'static str,
}

struct Reply {
    status: StatusCode,
    body: Value,
    text: String,
}

/// Every session ID a response set or a request sent.
#[derive(Default)]
struct Ids(Vec<String>);

impl Browser {
    fn new(app: &App, agent: &'static str) -> Self {
        Self {
            app: app.clone(),
            cookie: None,
            agent,
        }
    }

    async fn send(&mut self, ids: &mut Ids, method: &str, path: &str, body: Option<&str>) -> Reply {
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
type App = Arc<dyn AppUnderTest>;

/// The demo on a fresh memory store, on axum, or on actix-web when `actix`; `on_app_thread`
/// runs first on the thread that will serve the requests (the test's, for axum).
fn demo(actix: bool, on_app_thread: impl FnOnce() + Send + 'static) -> App {
    let epochs = DemoEpochs::default();
    let config = Settings::default()
        .session_config()
        .with_epochs(epochs.clone());
    let manager =
        Arc::new(cloakroom::SessionManager::new(cloakroom::MemoryStore::new(), config).unwrap());
    if actix {
        Arc::new(ActixApp::new(move || {
            on_app_thread();
            cloakroom_demo::routes_actix::app(manager, epochs)
        }))
    } else {
        on_app_thread();
        Arc::new(cloakroom_demo::app_with_manager(manager, epochs))
    }
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

const ALICE: &str = r#"{"username":"alice","password":"wonderland"}"#;

/// Every route of the API, as a user on two devices and an attacker would use them.
async fn every_api_flow(app: &App, ids: &mut Ids) {
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

#[tokio::test]
async fn no_log_line_or_span_field_holds_a_session_id() {
    no_session_id_in_the_logs(false).await;
}

#[tokio::test]
async fn no_log_line_or_span_field_holds_a_session_id_on_actix() {
    no_session_id_in_the_logs(true).await;
}

async fn no_session_id_in_the_logs(actix: bool) {
    let captured = Captured::new();
    let writer = captured.writer();
    // On the thread that serves the requests: a thread's default subscriber sees only
    // that thread's events, and actix-web serves on a thread of its own.
    let app = demo(actix, move || {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::FULL)
            .with_ansi(false)
            .finish();
        // Kept for the thread's life; the axum test's thread ends with the test.
        std::mem::forget(tracing::subscriber::set_default(subscriber));
    });
    // tracing caches each callsite's interest the first time it is hit. Another test's
    // thread, with no subscriber, can hit a callsite first and cache "never" just after this
    // thread's subscriber was set, so this capture missed the first flows now and then. One
    // warm-up pass registers every callsite; the cache is then rebuilt with this subscriber
    // in place, and only the second pass is captured.
    every_api_flow(&app, &mut Ids::default()).await;
    tracing::callsite::rebuild_interest_cache();
    captured.clear();
    let mut ids = Ids::default();
    every_api_flow(&app, &mut ids).await;

    let text = captured.text();
    assert!(
        ids.0.len() > 10,
        "the flows saw session IDs: {}",
        ids.0.len()
    );
    // The capture is not empty: the session and store spans are in it, with their fields.
    for expected in [
        "cloakroom.session",
        "cloakroom.store",
        "outcome=\"rotated\"",
        "outcome=\"destroyed\"",
        "outcome=\"written\"",
        "outcome=\"read\"",
        "handle=",
        "operation=\"load\"",
    ] {
        assert!(
            text.contains(expected),
            "no {expected} in the capture:\n{text}"
        );
    }
    for id in &ids.0 {
        assert!(
            !text.contains(id.as_str()),
            "a session ID appears in the logs:\n{text}"
        );
    }
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_format() {
    metrics_in_the_prometheus_format(false).await;
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_format_on_actix() {
    metrics_in_the_prometheus_format(true).await;
}

async fn metrics_in_the_prometheus_format(actix: bool) {
    let app = demo(actix, || {});
    let mut ids = Ids::default();
    every_api_flow(&app, &mut ids).await;
    let metrics = Browser::new(&app, "prometheus")
        .send(&mut ids, "GET", "/metrics", None)
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text;
    for expected in [
        "# TYPE cloakroom_sessions_created_total counter",
        "cloakroom_sessions_loaded_total",
        "cloakroom_sessions_rotated_total",
        "cloakroom_sessions_logged_out_total",
        "cloakroom_sessions_revoked_total{by=\"user\"}",
        "cloakroom_bad_cookies_total{reason=\"unknown\"}",
        "cloakroom_bad_cookies_total{reason=\"malformed\"}",
        "cloakroom_store_operation_duration_seconds_bucket{store=\"memory\",operation=\"load\"",
    ] {
        assert!(
            text.contains(expected),
            "no {expected} in /metrics:\n{text}"
        );
    }
    for id in &ids.0 {
        assert!(!text.contains(id.as_str()), "a session ID in /metrics");
    }
}
