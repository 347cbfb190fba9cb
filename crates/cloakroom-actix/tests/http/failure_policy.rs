//! The failure policy: store outages at load and at commit (503 with Retry-After, or
//! served anonymously), size limits (413), and server errors that discard the changes.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use cloakroom::{Limits, SessionConfig, StoreError};
use cloakroom_actix::SessionError;
use serde_json::{json, Value};

use crate::support::*;

/// The answer to a store outage under the default policy: 503, retry in 5 seconds.
fn assert_store_unavailable(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.retry_after.as_deref(), Some("5"));
}

#[actix_web::test]
async fn a_store_outage_is_503_with_retry_after() {
    let outage = outage();
    let app = app!(manager(outage.clone(), SessionConfig::default()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    outage.hook().start();
    for reply in [
        send(&app, get("/get/k", Some(&cookie))).await,
        send(&app, post("/set/k", Some(&cookie), json!(2))).await,
        send(&app, post("/set/k", None, json!(2))).await,
    ] {
        assert_store_unavailable(&reply);
        assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
    }
    // Requests that never touch the session do not depend on the store.
    assert_eq!(
        send(&app, get("/untouched", Some(&cookie))).await.status,
        StatusCode::OK
    );
    outage.hook().end();
    assert_eq!(read(&app, "/get/k", &cookie).await, json!(1));
}

#[actix_web::test]
async fn a_store_failing_at_commit_is_503_with_retry_after() {
    let outage = outage();
    let app = app!(manager(outage.clone(), SessionConfig::default()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    // The handler loads while the store is up; the store fails before the commit.
    let (reply, ()) = futures_util::future::join(
        send(&app, post("/set/k?delay_ms=200", Some(&cookie), json!(2))),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            outage.hook().start();
        },
    )
    .await;
    assert_store_unavailable(&reply);
    outage.hook().end();
    assert_eq!(read(&app, "/get/k", &cookie).await, json!(1));
}

/// A handler's own 503 (maintenance, an upstream of its own) is not a store failure: it
/// keeps the Retry-After it set. Only a 503 built from a `SessionError` gets the
/// configured delay. It got 17 here, taken for a store failure because it had a
/// Retry-After at all.
#[actix_web::test]
async fn a_handlers_own_503_keeps_its_retry_after() {
    use actix_web::{web, HttpResponse};
    let config =
        SessionConfig::default().with_on_store_error(cloakroom::OnStoreError::ServiceUnavailable {
            retry_after: Duration::from_secs(17),
        });
    let app = actix_web::test::init_service(
        actix_web::App::new()
            .wrap(cloakroom_actix::SessionMiddleware::from_manager(manager(
                memory(),
                config,
            )))
            .route(
                "/maintenance",
                web::get().to(|| async {
                    HttpResponse::ServiceUnavailable()
                        .insert_header(("Retry-After", "3600"))
                        .body("down for maintenance")
                }),
            ),
    )
    .await;
    let reply = send(&app, get("/maintenance", None)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.retry_after.as_deref(), Some("3600"));
    assert_eq!(reply.body, "down for maintenance");
}

/// A store-failure 503 gets the configured Retry-After, whether the session's own load
/// failed or the handler answered a `SessionError` of its own without touching the session.
#[actix_web::test]
async fn a_store_failure_503_gets_the_configured_retry_after() {
    use actix_web::web;
    let config = || {
        SessionConfig::default().with_on_store_error(cloakroom::OnStoreError::ServiceUnavailable {
            retry_after: Duration::from_secs(17),
        })
    };
    let outage = outage();
    let app = app!(manager(outage.clone(), config()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    outage.hook().start();
    let reply = send(&app, get("/get/k", Some(&cookie))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.retry_after.as_deref(), Some("17"));
    outage.hook().end();

    let app = actix_web::test::init_service(
        actix_web::App::new()
            .wrap(cloakroom_actix::SessionMiddleware::from_manager(manager(
                memory(),
                config(),
            )))
            .route(
                "/",
                web::get().to(|| async {
                    Err::<&str, _>(SessionError::from(cloakroom::SessionError::from(
                        StoreError::unavailable("timed out"),
                    )))
                }),
            ),
    )
    .await;
    let reply = send(&app, get("/", None)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.retry_after.as_deref(), Some("17"));
}

#[actix_web::test]
async fn the_fail_open_policy_serves_an_outage_anonymously_and_keeps_the_cookie() {
    let outage = outage();
    let config = SessionConfig::default().with_on_store_error(cloakroom::OnStoreError::Anonymous);
    let app = app!(manager(outage.clone(), config));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    outage.hook().start();
    let reply = send(&app, get("/get/k", Some(&cookie))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json(), Value::Null);
    assert!(
        reply.set_cookie.is_empty(),
        "the cookie is kept: {:?}",
        reply.set_cookie
    );
    assert_eq!(reply.retry_after, None);
    outage.hook().end();
    assert_eq!(read(&app, "/get/k", &cookie).await, json!(1));
}

#[actix_web::test]
async fn an_oversized_value_is_413_and_nothing_is_saved() {
    let limits = Limits {
        max_value_bytes: 64,
        ..Limits::default()
    };
    let store = memory();
    let app = app!(manager(
        Arc::clone(&store),
        SessionConfig::default().with_limits(limits)
    ));
    let reply = send(&app, post("/set/big", None, json!("x".repeat(100)))).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply.body.contains("max_value_bytes"),
        "the reason says the fix: {}",
        reply.body
    );
    assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
    assert_eq!(live_sessions(&store).await, 0);
}

/// A value nested past `cloakroom::MAX_VALUE_DEPTH` is a 413 like the other limits,
/// as through axum (it was a 500 here).
#[actix_web::test]
async fn a_too_deeply_nested_value_is_413() {
    let store = memory();
    let app = app!(manager(Arc::clone(&store), SessionConfig::default()));
    let mut deep = json!(1);
    for _ in 0..cloakroom::MAX_VALUE_DEPTH + 1 {
        deep = json!([deep]);
    }
    let reply = send(&app, post("/set/deep", None, deep)).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    assert_eq!(live_sessions(&store).await, 0);
}

#[actix_web::test]
async fn a_server_error_response_discards_the_changes() {
    let app = app!(manager(memory(), SessionConfig::default()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    let failed = send(&app, post("/fail/k", Some(&cookie), Value::Null)).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(read(&app, "/get/k", &cookie).await, json!(1));
}

#[actix_web::test]
async fn session_errors_answer_with_the_axum_statuses() {
    use actix_web::ResponseError;
    let status = |error: cloakroom::SessionError| SessionError::from(error).status_code();
    assert_eq!(
        status(StoreError::unavailable("down").into()),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status(cloakroom::SessionError::TooManyConflicts { attempts: 64 }),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status(cloakroom::SessionError::SessionTooLarge { size: 2, limit: 1 }),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        status(cloakroom::SessionError::CookieTooLarge { size: 2, limit: 1 }),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        status(cloakroom::SessionError::Finished),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // A server error's body is the bare status text, never the error's details.
    let response = SessionError::from(cloakroom::SessionError::from(StoreError::unavailable(
        "secret detail",
    )))
    .error_response();
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap();
    assert_eq!(body, "Service Unavailable");
}
