//! Testing handlers that use sessions, in process (feature `testing`).
//!
//! [`TestClient`] is a browser in miniature for an axum [`Router`] (or an
//! actix-web `App`, with `cloakroom_actix::testing`): it sends requests through the app
//! without a network, keeps the session cookie the app hands out, sends
//! it back on the next request and forgets it when the app removes it. [`TestResponse`]
//! shows what the app answered, cookie and all.
//!
//! Tests that need a server (PostgreSQL, Redis...) report one that cannot be reached with
//! [`skip`]: a loud skip, or a failure when [`require_services`] says CI needs every
//! server.
//!
//! ```
//! use axum::{routing::post, Json, Router};
//! use cloakroom::testing::TestClient;
//! use cloakroom::{MemoryStore, Session, SessionError, SessionLayer};
//!
//! async fn visit(session: Session) -> Result<Json<u64>, SessionError> {
//!     let visits = session.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
//!     Ok(Json(visits))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/visit", post(visit))
//!     .layer(SessionLayer::new(MemoryStore::new()));
//! let mut browser = TestClient::new(app);
//!
//! let first = browser.post("/visit").await;
//! assert_eq!(first.json::<u64>(), 1);
//! assert!(first.session_cookie("id").is_some(), "the first write sets the cookie");
//!
//! let second = browser.post("/visit").await;
//! assert_eq!(second.json::<u64>(), 2, "the browser sent its cookie back");
//! # }
//! ```

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

mod app;
mod handlers;
mod id_format;
mod seed;
#[cfg(feature = "conformance")]
mod stores;

use app::MAX_BODY;
pub use app::{AppUnderTest, BoxFuture};
pub use handlers::increment;
pub use id_format::PrefixedIds;
pub use seed::{inspect, value, SeededSession, SessionSeed};
#[cfg(feature = "conformance")]
pub use stores::{
    all_keys, counter_app, user_keys, NumberedStores, SuitePart, CONCURRENCY_ROUNDS, COUNTER_KEY,
};

/// An in-process client for a web app (an axum [`Router`], or an actix-web
/// `App` through `cloakroom_actix::testing::ActixApp`) that keeps one session cookie, the
/// way a browser would.
///
/// Requests go straight into the app, without a network. After each response the client
/// adopts a new session cookie from `Set-Cookie`, and drops its cookie when the response
/// removes it (`Max-Age=0`). Clones share the app, not the cookie.
#[derive(Clone)]
pub struct TestClient {
    app: Arc<dyn AppUnderTest>,
    cookie_name: String,
    cookie: Option<String>,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("cookie_name", &self.cookie_name)
            .field("has_cookie", &self.cookie.is_some())
            .finish_non_exhaustive()
    }
}

impl TestClient {
    /// A client of `app` with no cookie, for the default cookie name `id`.
    pub fn new(app: impl AppUnderTest) -> Self {
        Self::shared(Arc::new(app))
    }

    /// A client of an app other clients share, such as a second browser on one server.
    pub fn shared(app: Arc<dyn AppUnderTest>) -> Self {
        Self {
            app,
            cookie_name: "id".to_owned(),
            cookie: None,
        }
    }

    /// The app this client talks to, for another client of the same app.
    pub fn app(&self) -> &Arc<dyn AppUnderTest> {
        &self.app
    }

    /// Uses `name` as the session cookie's name (prefix included, as in
    /// [`CookieConfig::full_name`](crate::CookieConfig::full_name)).
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Starts with this session cookie value, as if the app had set it earlier (for
    /// example a cookie from another client, or a forged one).
    pub fn with_cookie(mut self, value: impl Into<String>) -> Self {
        self.cookie = Some(value.into());
        self
    }

    /// The session cookie value the client holds, if any.
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// Forgets the session cookie, like a browser whose cookies were cleared.
    pub fn clear_cookie(&mut self) {
        self.cookie = None;
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> TestResponse {
        self.send(request(Method::GET, path).body(Body::empty()))
            .await
    }

    /// `POST path` with an empty body.
    pub async fn post(&mut self, path: &str) -> TestResponse {
        self.send(request(Method::POST, path).body(Body::empty()))
            .await
    }

    /// `POST path` with `body` as JSON.
    ///
    /// # Panics
    /// If `body` cannot be serialised as JSON.
    pub async fn post_json(&mut self, path: &str, body: &impl Serialize) -> TestResponse {
        let json = serde_json::to_vec(body).expect("the test body serialises as JSON");
        self.send(
            request(Method::POST, path)
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(json)),
        )
        .await
    }

    /// Sends a request built by the test, adding the session cookie the client holds.
    ///
    /// # Panics
    /// If the request cannot be built or its body read, or the app panics.
    pub async fn send(&mut self, request: http::Result<Request<Body>>) -> TestResponse {
        let mut request = request.expect("a well-formed test request");
        if let Some(cookie) = &self.cookie {
            let header = format!("{}={cookie}", self.cookie_name);
            request
                .headers_mut()
                .append(COOKIE, header.parse().expect("a cookie header"));
        }
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .expect("the request body is readable");
        let response = self
            .app
            .call(Request::from_parts(parts, body.to_vec()))
            .await;
        let (parts, body) = response.into_parts();
        let response = TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        if let Some(value) = response.session_cookie(&self.cookie_name) {
            self.cookie = Some(value.to_owned());
        } else if response.removes_session_cookie(&self.cookie_name) {
            self.cookie = None;
        }
        response
    }
}

/// Whether a test must fail, rather than skip, when a server it needs is unreachable:
/// `CLOAKROOM_REQUIRE_SERVICES=1`, as CI sets it.
pub fn require_services() -> bool {
    std::env::var("CLOAKROOM_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// Reports that a test cannot run (a server it needs is unreachable, `message` says which
/// and why): a loud note on standard error, after which the test returns; or, under
/// [`require_services`], a panic, so a missing server fails CI instead of passing quietly.
///
/// # Panics
/// When [`require_services`] is true.
pub fn skip(message: &str) {
    assert!(
        !require_services(),
        "{message} (CLOAKROOM_REQUIRE_SERVICES=1)"
    );
    eprintln!("\n********************************************************************");
    eprintln!("SKIPPING: {message}");
    eprintln!("********************************************************************\n");
}

/// `method path` with an empty body from a fresh [`TestClient`] that holds `cookie` as the
/// value of the session cookie `id`, if given: for tests that juggle the cookies of
/// several sessions themselves.
///
/// # Panics
/// If `method` is not a valid method, or as [`TestClient::send`].
///
/// ```
/// use axum::{routing::get, Router};
/// use cloakroom::{testing, MemoryStore, SessionLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = Router::new()
///     .route("/", get(|| async { "ok" }))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// let response = testing::request_once(&app, "GET", "/", Some("not-a-session")).await;
/// assert_eq!(response.text(), "ok");
/// assert!(response.set_cookies().is_empty(), "an unknown ID is never adopted");
/// # }
/// ```
pub async fn request_once(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> TestResponse {
    let mut client = TestClient::new(app.clone());
    client.cookie = cookie.map(str::to_owned);
    let method = Method::from_bytes(method.as_bytes()).expect("a valid HTTP method");
    client.send(request(method, path).body(Body::empty())).await
}

fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path)
}

/// A response as a test looks at it: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl TestResponse {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The raw body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// If the body is not JSON of type `T`; the message shows the body.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "the body is not the expected JSON ({error}): {}",
                self.text()
            )
        })
    }

    /// Every `Set-Cookie` header, as text.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    }

    /// The `Set-Cookie` header for the cookie `name`, attributes included.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies()
            .into_iter()
            .find(|cookie| cookie_value(cookie, name).is_some())
    }

    /// The new value this response gives the cookie `name` (not a removal).
    pub fn session_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies()
            .into_iter()
            .filter_map(|cookie| cookie_value(cookie, name))
            .find(|value| !value.is_empty())
    }

    /// Whether this response removes the cookie `name` (empty value, `Max-Age=0`).
    pub fn removes_session_cookie(&self, name: &str) -> bool {
        self.set_cookies().into_iter().any(|cookie| {
            cookie_value(cookie, name) == Some("")
                && cookie
                    .split(';')
                    .any(|attribute| attribute.trim().eq_ignore_ascii_case("Max-Age=0"))
        })
    }
}

/// The value in a `Set-Cookie` header if it sets the cookie `name`.
fn cookie_value<'a>(set_cookie: &'a str, name: &str) -> Option<&'a str> {
    let pair = set_cookie.split(';').next()?;
    let (key, value) = pair.split_once('=')?;
    (key.trim() == name).then(|| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_are_matched_by_exact_name() {
        let header = "id=abc; Path=/; HttpOnly";
        assert_eq!(cookie_value(header, "id"), Some("abc"));
        assert_eq!(cookie_value(header, "i"), None);
        assert_eq!(cookie_value("xid=abc", "id"), None);
        assert_eq!(cookie_value("id=; Max-Age=0", "id"), Some(""));
    }
}
