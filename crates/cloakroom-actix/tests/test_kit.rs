//! The test kit on actix-web: `TestClient` over an `ActixApp`, seeded sessions and
//! inspection, on a store and on client-side cookies.

use std::sync::Arc;

use actix_web::{web, App, HttpResponse};
use cloakroom::testing::{inspect, value, SessionSeed, TestClient};
use cloakroom::{
    generate_key, CookieSessions, KeyRing, MemoryStore, SessionConfig, SessionManager,
};
use cloakroom_actix::testing::ActixApp;
use cloakroom_actix::{Session, SessionError, SessionMiddleware};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

async fn state(s: Session) -> Result<web::Json<Value>, SessionError> {
    Ok(web::Json(json!({
        "user": s.user().await?,
        "cart": s.get::<Value>("cart").await?,
    })))
}

async fn visit(s: Session) -> Result<web::Json<u64>, SessionError> {
    Ok(web::Json(
        s.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await?,
    ))
}

async fn logout(s: Session) -> Result<HttpResponse, SessionError> {
    s.logout().await?;
    Ok(HttpResponse::NoContent().finish())
}

fn client(manager: &Arc<SessionManager>) -> TestClient {
    let middleware = SessionMiddleware::from_manager(Arc::clone(manager));
    TestClient::new(ActixApp::new(move || {
        App::new()
            .wrap(middleware)
            .route("/state", web::get().to(state))
            .route("/visit", web::post().to(visit))
            .route("/logout", web::post().to(logout))
    }))
}

fn managers() -> Vec<(&'static str, Arc<SessionManager>)> {
    let ring = || KeyRing::parse(&generate_key()).unwrap();
    vec![
        (
            "memory",
            Arc::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap()),
        ),
        (
            "encrypted cookie",
            Arc::new(
                SessionManager::cookie(CookieSessions::encrypted(ring()), SessionConfig::default())
                    .unwrap(),
            ),
        ),
    ]
}

/// Each seed with the state the handler must see, on every manager: a live seed is what
/// the handler reads, an expired one is anonymous.
#[tokio::test]
async fn a_seeded_session_is_what_the_actix_handler_sees() {
    let past = OffsetDateTime::now_utc() - Duration::seconds(1);
    let alice = || SessionSeed::new().user("alice");
    let cases = [
        (
            "live",
            alice().with("cart", ["book"]),
            json!({"user": "alice", "cart": ["book"]}),
        ),
        (
            "expired",
            alice().absolute_deadline(Some(past)),
            json!({"user": null, "cart": null}),
        ),
    ];
    for (name, manager) in managers() {
        for (seed_name, seed, expected) in &cases {
            let seeded = seed.clone().create(&manager).await.unwrap();
            let mut browser = client(&manager).with_cookie(seeded.cookie_value());
            let state = browser.get("/state").await.json::<Value>();
            assert_eq!(&state, expected, "{name}, {seed_name} seed");
        }
    }
}

#[tokio::test]
async fn the_client_keeps_and_drops_the_cookie_as_a_browser_does() {
    let (_, manager) = managers().remove(0);
    let mut browser = client(&manager);
    assert_eq!(browser.post("/visit").await.json::<u64>(), 1);
    let response = browser.post("/visit").await;
    assert_eq!(response.json::<u64>(), 2, "the cookie went back");
    let state = inspect(&manager, browser.cookie().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value::<u64>(&state, "visits"), Some(2));

    let old = browser.cookie().unwrap().to_owned();
    let response = browser.post("/logout").await;
    assert!(
        response.removes_session_cookie("id"),
        "{:?}",
        response.set_cookies()
    );
    assert_eq!(browser.cookie(), None, "the removal cookie is obeyed");
    assert!(
        inspect(&manager, &old).await.unwrap().is_none(),
        "and the session is gone"
    );
}
