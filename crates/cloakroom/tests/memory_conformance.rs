//! The conformance suite against `MemoryStore`.

use std::sync::Arc;

use cloakroom::conformance::{HookedStore, Outage};
use cloakroom::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite() {
    cloakroom::conformance::run(|| async { MemoryStore::new() }).await;
}

/// The same-session concurrency cases, twenty rounds in a row: no flakiness allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_concurrency_twenty_rounds() {
    let cases = cloakroom::conformance::concurrency_cases();
    assert_eq!(cases.len(), 6, "{cases:?}");
    cloakroom::conformance::run_cases(&cases, 20, || async { MemoryStore::new() }).await;
}

/// A store that is down: every operation fails, and counts its calls.
fn down() -> HookedStore<Arc<Outage>> {
    let outage = Arc::new(Outage::default().started());
    HookedStore::with_hook(Arc::new(MemoryStore::new()), outage)
}

/// A handler that touches its session three times while the store is down asks the store
/// once, and the response is a 503 with Retry-After.
#[tokio::test]
async fn a_failed_load_is_not_retried_within_a_request() {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    let store = down();
    let outage = Arc::clone(store.hook());
    let app: axum::Router = axum::Router::new()
        .route(
            "/",
            get(|s: cloakroom::Session| async move {
                let _ = s.get::<u64>("a").await;
                let _ = s.get::<u64>("b").await;
                let _ = s.insert("c", 1).await;
                "handler ignored the errors"
            }),
        )
        .layer(cloakroom::SessionLayer::new(store));
    let cookie = format!("id={}", cloakroom::SessionId::generate().to_cookie_value());
    let request = Request::get("/")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(outage.refused(), 1, "one load, no retries");
}

/// The status and `Retry-After` of one anonymous POST to `/` through `app`.
async fn status_and_retry_after(app: axum::Router) -> (axum::http::StatusCode, Option<String>) {
    let response = cloakroom::testing::TestClient::new(app).post("/").await;
    let retry_after = response
        .headers()
        .get(axum::http::header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    (response.status(), retry_after)
}

/// Issue 12 #10: a 503 that a handler's own `save()?` raises carries Retry-After, even
/// where the layer's failure policy does not answer 503 itself (fail open).
#[tokio::test]
async fn a_handlers_own_store_error_503_has_retry_after() {
    use axum::routing::post;
    use cloakroom::{OnStoreError, Session, SessionConfig, SessionError, SessionLayer};

    let config = SessionConfig::default().with_on_store_error(OnStoreError::Anonymous);
    let app = axum::Router::new()
        .route(
            "/",
            post(|s: Session| async move {
                s.insert("a", 1).await?;
                s.save().await?;
                Ok::<_, SessionError>("saved")
            }),
        )
        .layer(SessionLayer::try_new(down(), config).unwrap());
    let (status, retry_after) = status_and_retry_after(app).await;
    assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("5"), "the default Retry-After");
}

/// The same, with the configured Retry-After, when the layer's own commit succeeds.
#[tokio::test]
async fn a_handlers_store_error_503_has_the_configured_retry_after() {
    use axum::routing::post;
    use cloakroom::{
        MemoryStore, OnStoreError, Session, SessionConfig, SessionError, SessionLayer, StoreError,
    };

    let config = SessionConfig::default().with_on_store_error(OnStoreError::ServiceUnavailable {
        retry_after: std::time::Duration::from_secs(17),
    });
    let app = axum::Router::new()
        .route(
            "/",
            post(|s: Session| async move {
                s.insert("a", 1).await?;
                Err::<&str, _>(SessionError::from(StoreError::unavailable("timed out")))
            }),
        )
        .layer(SessionLayer::try_new(MemoryStore::new(), config).unwrap());
    let (status, retry_after) = status_and_retry_after(app).await;
    assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("17"));
}

/// The same when the handler never touched its session (it failed on a store of its own,
/// say): the failure policy's Retry-After holds for every store-failure 503, on every
/// integration, not only for requests that committed.
#[tokio::test]
async fn an_untouched_sessions_store_error_503_has_the_configured_retry_after() {
    use axum::routing::post;
    use cloakroom::{
        MemoryStore, OnStoreError, SessionConfig, SessionError, SessionLayer, StoreError,
    };

    let config = SessionConfig::default().with_on_store_error(OnStoreError::ServiceUnavailable {
        retry_after: std::time::Duration::from_secs(17),
    });
    let app = axum::Router::new()
        .route(
            "/",
            post(|| async {
                Err::<&str, _>(SessionError::from(StoreError::unavailable("timed out")))
            }),
        )
        .layer(SessionLayer::try_new(MemoryStore::new(), config).unwrap());
    let (status, retry_after) = status_and_retry_after(app).await;
    assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("17"));
}

/// An app over `store` with `limits`: `POST /set/{key}` (JSON body) and
/// `POST /remove/{key}`.
fn limited_app(store: std::sync::Arc<MemoryStore>, limits: cloakroom::Limits) -> axum::Router {
    use axum::extract::Path;
    use axum::routing::post;
    use axum::Json;
    use cloakroom::{Session, SessionConfig, SessionLayer, SessionManager};
    use serde_json::Value;

    let config = SessionConfig::default().with_limits(limits);
    let manager = SessionManager::from_arc(store, config).unwrap();
    axum::Router::new()
        .route(
            "/set/{key}",
            post(
                |s: Session, Path(key): Path<String>, Json(v): Json<Value>| async move {
                    s.insert(&key, v).await.map(|()| "ok")
                },
            ),
        )
        .route(
            "/remove/{key}",
            post(|s: Session, Path(key): Path<String>| async move {
                s.remove::<Value>(&key).await.map(|_| "ok")
            }),
        )
        .layer(SessionLayer::from_manager(std::sync::Arc::new(manager)))
}

/// POSTs `body` to `path` with `cookie`; the status and the session cookie set, if any.
async fn post_json(
    app: &axum::Router,
    path: &str,
    cookie: Option<&str>,
    body: serde_json::Value,
) -> (axum::http::StatusCode, Option<String>) {
    let mut client = cloakroom::testing::TestClient::new(app.clone());
    if let Some(cookie) = cookie {
        client = client.with_cookie(cookie.strip_prefix("id=").unwrap_or(cookie));
    }
    let response = client.post_json(path, &body).await;
    let set_cookie = response
        .session_cookie("id")
        .map(|value| format!("id={value}"));
    (response.status(), set_cookie)
}

/// Issue 12 #4: a session over its limits (they were lowered since it was written) can
/// still shrink: removing a value, or replacing one with a smaller one, is allowed; a write
/// that grows it is refused.
#[tokio::test]
async fn an_over_limit_session_can_shrink() {
    use axum::http::StatusCode;
    use cloakroom::Limits;
    use serde_json::json;

    let store = std::sync::Arc::new(MemoryStore::new());
    let roomy = limited_app(std::sync::Arc::clone(&store), Limits::default());
    let (status, cookie) = post_json(&roomy, "/set/a", None, json!("a".repeat(3000))).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.unwrap();
    for key in ["b", "c"] {
        let path = format!("/set/{key}");
        let (status, _) = post_json(&roomy, &path, Some(&cookie), json!("b".repeat(3000))).await;
        assert_eq!(status, StatusCode::OK);
    }

    let tight = Limits {
        max_value_bytes: 1000,
        max_session_bytes: 2000,
    };
    let tight = limited_app(store, tight);
    let cookie = Some(cookie.as_str());
    let set = |key: &'static str, len: usize| {
        let tight = tight.clone();
        async move {
            let path = format!("/set/{key}");
            post_json(&tight, &path, cookie, json!("x".repeat(len)))
                .await
                .0
        }
    };
    assert_eq!(
        set("new", 10).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "growing is refused"
    );
    assert_eq!(
        set("a", 3001).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "growing a value too"
    );
    assert_eq!(
        set("a", 2000).await,
        StatusCode::OK,
        "shrinking a value is allowed"
    );
    let remove = post_json(&tight, "/remove/b", cookie, json!(null)).await.0;
    assert_eq!(remove, StatusCode::OK, "removing a value is allowed");
    assert_eq!(
        set("a", 2000).await,
        StatusCode::OK,
        "rewriting at the same size too"
    );
}

/// Under the fail-open policy, a request whose session could not be loaded runs as an
/// anonymous one; a logout from it must fail rather than remove the cookie and leave the
/// stored session live, where every other copy of the cookie (a stolen one) still works.
/// So must listing and revoking the user's sessions: they answered "no sessions" and
/// "none revoked", with a 200, while nothing had been looked at.
#[tokio::test]
async fn a_fail_open_logout_during_an_outage_fails_and_keeps_the_session() {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use cloakroom::{OnStoreError, Session, SessionConfig, SessionError, SessionLayer};

    let store = HookedStore::with_hook(Arc::new(MemoryStore::new()), Arc::new(Outage::default()));
    let outage = Arc::clone(store.hook());
    let config = SessionConfig::default().with_on_store_error(OnStoreError::Anonymous);
    let app =
        axum::Router::new()
            .route(
                "/login",
                post(|s: Session| async move { s.login("alice").await.map(|()| "in") }),
            )
            .route(
                "/logout",
                post(|s: Session| async move { s.logout().await.map(|()| "out") }),
            )
            .route(
                "/revoke-others",
                post(|s: Session| async move {
                    s.revoke_other_sessions().await.map(|n| n.to_string())
                }),
            )
            .route(
                "/devices",
                get(|s: Session| async move {
                    s.list_user_sessions().await.map(|list| list.len().to_string())
                }),
            )
            .route(
                "/user",
                get(|s: Session| async move {
                    Ok::<_, SessionError>(s.user().await?.unwrap_or_default())
                }),
            )
            .layer(SessionLayer::try_new(store, config).unwrap());
    let mut client = cloakroom::testing::TestClient::new(app);
    assert_eq!(client.post("/login").await.status(), StatusCode::OK);
    let cookie = client.cookie().expect("a session cookie").to_owned();

    outage.start();
    for path in ["/revoke-others", "/devices"] {
        let response = if path == "/devices" {
            client.get(path).await
        } else {
            client.post(path).await
        };
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            response.text()
        );
    }
    let response = client.post("/logout").await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.text()
    );
    assert!(
        response.set_cookies().is_empty(),
        "{:?}",
        response.set_cookies()
    );
    assert_eq!(client.cookie(), Some(cookie.as_str()));

    outage.end();
    assert_eq!(
        client.get("/user").await.text(),
        "alice",
        "the user was not logged out"
    );
    assert_eq!(client.post("/logout").await.status(), StatusCode::OK);
    assert_eq!(client.get("/user").await.text(), "");
}
