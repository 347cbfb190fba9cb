//! What the login and per-user cap tests share: one request through the app.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cloakroom::testing::TestClient;

/// Sends `method path` with `cookie` as the whole `Cookie` header: the status, the first
/// `Set-Cookie` header and the body as JSON (`null` if it is not JSON).
pub async fn call(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = TestClient::new(app.clone())
        .send(request.body(Body::empty()))
        .await;
    let set_cookie = response.set_cookies().first().map(|c| (*c).to_owned());
    let body = serde_json::from_slice(response.bytes()).unwrap_or_default();
    (response.status(), set_cookie, body)
}

/// The `name=value` pair of a `Set-Cookie` header, to send back as a `Cookie` header.
pub fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}
