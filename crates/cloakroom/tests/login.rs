//! Regression tests for `Session::login`: a failed login changes nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::{Session, SessionConfig, SessionError, SessionLayer};
use tower::ServiceExt;

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        set,
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Client-side sessions: a login whose cookie would not fit (a long user agent) fails
/// as a whole; the layer must not commit a half-done login with the user in it.
#[tokio::test]
async fn a_failed_login_changes_nothing_client_side() {
    use cloakroom::{generate_key, CookieSessions, KeyRing, SessionManager};
    let sessions = CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap());
    let manager = Arc::new(SessionManager::cookie(sessions, SessionConfig::default()).unwrap());
    let app = Router::new()
        .route(
            "/fill/{n}",
            post(
                |s: Session, axum::extract::Path(n): axum::extract::Path<usize>| async move {
                    s.insert("cart", "x".repeat(n)).await?;
                    Ok::<_, SessionError>("ok")
                },
            ),
        )
        .route(
            "/login",
            post(|s: Session| async move {
                let result = s.login("bob").await;
                let failed = result.is_err();
                result?;
                // An app's next step, skipped when login fails.
                s.insert("mfa_pending", true).await?;
                Ok::<_, SessionError>(format!("{failed}"))
            }),
        )
        .route(
            "/who",
            get(|s: Session| async move {
                Ok::<_, SessionError>(Json(serde_json::json!({
                    "user": s.user().await?, "mfa": s.get::<bool>("mfa_pending").await?
                })))
            }),
        )
        .layer(SessionLayer::from_manager(manager));
    let long_ua = "U".repeat(4000);
    // Find the largest cart that still fits, so that the login's SetClient tips it over.
    let mut found = None;
    for n in (2000..3200).rev().step_by(16) {
        let (status, set, _) = call(&app, "POST", &format!("/fill/{n}"), None).await;
        if status == StatusCode::OK {
            drop(set);
            // Room for SetUser and SetEpoch, not for a 512-byte user agent.
            let (_, set, _) = call(&app, "POST", &format!("/fill/{}", n - 200), None).await;
            found = Some(pair(&set.unwrap()));
            break;
        }
    }
    let cookie = found.expect("some cart fits");
    let request = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::COOKIE, &cookie)
        .header(header::USER_AGENT, &long_ua)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let set = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| pair(v.to_str().unwrap()));
    eprintln!("login status {status}, set-cookie sent: {}", set.is_some());
    assert_ne!(status, StatusCode::OK, "setup: the login must fail");
    let after = call(&app, "GET", "/who", Some(&set.unwrap_or(cookie)))
        .await
        .2;
    assert_eq!(
        after["user"],
        serde_json::Value::Null,
        "a failed login left the session logged in: {after}"
    );
}
