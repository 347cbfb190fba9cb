//! The client side of the API tests: the demo app on the memory store, on the framework
//! the test binary names (`crate::FRAMEWORK`), and requests sent through
//! `cloakroom::testing::TestClient` that read back status, cookie and JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use cloakroom::dbsc::binding::DeviceBindingConfig;
use cloakroom::testing::{AppUnderTest, TestClient, TestResponse};
use cloakroom_demo::{DemoEpochs, Settings};
use serde_json::{json, Value};

/// The app under test, on either framework.
pub type App = Arc<dyn AppUnderTest>;

/// The web frameworks the demo runs on.
#[allow(dead_code)] // Each test binary names one.
pub enum Framework {
    Axum,
    Actix,
}

/// The demo app with its default settings, on a fresh memory store.
pub fn app() -> App {
    app_on(cloakroom::MemoryStore::new())
}

/// The demo app with its default settings, on `store`.
pub fn app_on(store: impl cloakroom::SessionStore) -> App {
    let epochs = DemoEpochs::default();
    let settings = Settings::default();
    let keys = settings
        .device_binding
        .clone()
        .expect("binding is on by default");
    // The demo's settings with no registration grace, so a copied session cookie is
    // refused the moment a key is stored (the grace itself is the core's, tested there).
    let binding = DeviceBindingConfig::new(keys).with_registration_grace(Duration::ZERO);
    let config = settings
        .session_config()
        .with_device_binding(binding)
        .with_epochs(epochs.clone());
    let manager = Arc::new(cloakroom::SessionManager::new(store, config).unwrap());
    match crate::FRAMEWORK {
        Framework::Axum => Arc::new(cloakroom_demo::app_with_manager(manager, epochs)),
        Framework::Actix => Arc::new(cloakroom_actix::testing::ActixApp::new(move || {
            cloakroom_demo::routes_actix::app(manager, epochs)
        })),
    }
}

/// What came back.
pub struct Reply {
    pub status: StatusCode,
    /// The new session ID (the `id` cookie's value), if one was set.
    pub cookie: Option<String>,
    pub removes_cookie: bool,
    /// The body as JSON, `null` if it is not JSON.
    pub body: Value,
}

/// `method path` with `cookie` as the session ID and an optional JSON `body`.
pub async fn send(
    app: &App,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let content_type = body.map(|_| "application/json");
    let response = request(app, method, path, cookie, content_type, body.unwrap_or("")).await;
    Reply {
        status: response.status(),
        cookie: response.session_cookie("id").map(str::to_owned),
        removes_cookie: response.removes_session_cookie("id"),
        body: serde_json::from_slice(response.bytes()).unwrap_or(Value::Null),
    }
}

/// `GET path` with `cookie` as the session ID.
pub async fn get(app: &App, path: &str, cookie: Option<&str>) -> Reply {
    send(app, "GET", path, cookie, None).await
}

/// `POST path` with `cookie` as the session ID and an optional JSON `body`.
pub async fn post(app: &App, path: &str, cookie: Option<&str>, body: Option<&str>) -> Reply {
    send(app, "POST", path, cookie, body).await
}

/// `PUT path` with `cookie` as the session ID and an optional JSON `body`.
pub async fn put(app: &App, path: &str, cookie: Option<&str>, body: Option<&str>) -> Reply {
    send(app, "PUT", path, cookie, body).await
}

/// `DELETE path` with `cookie` as the session ID.
pub async fn delete(app: &App, path: &str, cookie: Option<&str>) -> Reply {
    send(app, "DELETE", path, cookie, None).await
}

/// A request with an explicit (or no) `Content-Type`, as a cross-site HTML form sends it:
/// the status, whether it set a cookie, and the body as JSON.
pub async fn send_typed(
    app: &App,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, bool, Value) {
    let response = request(app, method, path, None, content_type, body).await;
    (
        response.status(),
        !response.set_cookies().is_empty(),
        serde_json::from_slice(response.bytes()).unwrap_or(Value::Null),
    )
}

/// `method path` with exactly these headers (cookies included): the whole response.
pub async fn send_headers(
    app: &App,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> TestResponse {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    TestClient::shared(Arc::clone(app))
        .send(request.body(Body::from(body.to_owned())))
        .await
}

async fn request(
    app: &App,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> TestResponse {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("id={cookie}"));
    }
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    TestClient::shared(Arc::clone(app))
        .send(request.body(Body::from(body.to_owned())))
        .await
}

/// Logs in as alice (from `cookie`'s session, if any): the new session ID.
pub async fn login(app: &App, cookie: Option<&str>) -> String {
    let reply = post(
        app,
        "/api/login",
        cookie,
        Some(r#"{"username":"alice","password":"wonderland"}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"user": "alice"}));
    reply.cookie.expect("login sets a cookie")
}
