//! What the session tests share: the app, its write handlers, and one request through it.
//! Each test crate uses part of it.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::testing::TestClient;
use cloakroom::{Session, SessionConfig, SessionError, SessionLayer, SessionStore};

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

/// `POST /put`: writes `cart = 1`, enough to create a session.
pub async fn put(s: Session) -> Result<&'static str, SessionError> {
    s.insert("cart", 1).await?;
    Ok("ok")
}

/// `POST /fill/{n}`: writes `n` bytes under `cart`, to bring a session to a size limit.
pub async fn fill(s: Session, Path(n): Path<usize>) -> Result<&'static str, SessionError> {
    s.insert("cart", "x".repeat(n)).await?;
    Ok("ok")
}

/// The app the login and per-user cap tests drive: `/put` writes, `/login/{user}`,
/// `/login/{user}/remember/{bool}` chooses remember-me then logs in, `/remember` makes the
/// session persistent, `/meta` shows the user, the persistent flag and the creation time.
pub fn app(store: impl SessionStore, config: SessionConfig) -> Router {
    Router::new()
        .route("/put", post(put))
        .route(
            "/login/{user}",
            post(
                |s: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                    s.login(user).await?;
                    Ok::<_, SessionError>("ok")
                },
            ),
        )
        .route(
            "/login/{user}/remember/{persistent}",
            post(
                |s: Session, Path((user, persistent)): Path<(String, bool)>| async move {
                    s.set_persistent(persistent).await?;
                    s.login(user).await?;
                    Ok::<_, SessionError>("ok")
                },
            ),
        )
        .route(
            "/remember",
            post(|s: Session| async move {
                s.set_persistent(true).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/meta",
            get(|s: Session| async move {
                let Some(m) = s.metadata().await? else {
                    return Ok(Json(serde_json::json!({ "user": null })));
                };
                Ok::<_, SessionError>(Json(serde_json::json!({
                    "user": m.user, "persistent": m.persistent,
                    "created": m.created_at.unix_timestamp_nanos().to_string(),
                })))
            }),
        )
        .layer(SessionLayer::try_new(store, config).unwrap())
}
