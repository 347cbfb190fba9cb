//! The test kit: seeded sessions are the sessions a request sees, on a store and in a
//! client-side cookie; inspection reads what a response left behind.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::testing::{inspect, value, PrefixedIds, SessionSeed, TestClient};
use cloakroom::{
    generate_key, CookieSessions, KeyRing, MemoryStore, Session, SessionConfig, SessionError,
    SessionLayer, SessionManager,
};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

fn app(manager: &Arc<SessionManager>) -> Router {
    Router::new()
        .route(
            "/state",
            get(|s: Session| async move {
                Ok::<_, SessionError>(Json(json!({
                    "user": s.user().await?,
                    "cart": s.get::<Value>("cart").await?,
                })))
            }),
        )
        .route(
            "/visit",
            post(|s: Session| async move {
                s.update("visits", |n: Option<u64>| n.unwrap_or(0) + 1)
                    .await
                    .map(Json)
            }),
        )
        .layer(SessionLayer::from_manager(Arc::clone(manager)))
}

fn managers() -> Vec<(&'static str, Arc<SessionManager>)> {
    let config = SessionConfig::default;
    let ring = || KeyRing::parse(&generate_key()).unwrap();
    vec![
        (
            "memory",
            Arc::new(SessionManager::new(MemoryStore::new(), config()).unwrap()),
        ),
        (
            "memory, prefixed IDs",
            Arc::new(
                SessionManager::new(MemoryStore::new(), config())
                    .unwrap()
                    .with_id_format(Arc::new(PrefixedIds)),
            ),
        ),
        (
            "encrypted cookie",
            Arc::new(SessionManager::cookie(CookieSessions::encrypted(ring()), config()).unwrap()),
        ),
        (
            "signed cookie",
            Arc::new(SessionManager::cookie(CookieSessions::signed(ring()), config()).unwrap()),
        ),
    ]
}

#[tokio::test]
async fn a_seeded_session_is_what_the_handler_sees() {
    for (name, manager) in managers() {
        let seeded = SessionSeed::new()
            .user("alice")
            .with("cart", ["book"])
            .create(&manager)
            .await
            .unwrap();
        let mut browser = TestClient::new(app(&manager)).with_cookie(seeded.cookie_value());
        let state = browser.get("/state").await.json::<Value>();
        assert_eq!(state, json!({"user": "alice", "cart": ["book"]}), "{name}");
    }
}

#[tokio::test]
async fn a_seeded_user_is_in_the_per_user_index() {
    let manager =
        Arc::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap());
    for _ in 0..2 {
        SessionSeed::new()
            .user("bob")
            .create(&manager)
            .await
            .unwrap();
    }
    let listed = manager.store().unwrap().list_for_user("bob").await.unwrap();
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
#[should_panic(expected = "neither data nor a user")]
async fn an_empty_seed_is_refused_as_cloakroom_never_stores_one() {
    let manager =
        Arc::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap());
    let _ = SessionSeed::new().persistent().create(&manager).await;
}

#[tokio::test]
async fn seeded_deadlines_are_kept_and_a_past_one_is_an_expired_session() {
    for (name, manager) in managers() {
        let soon = OffsetDateTime::now_utc() + Duration::minutes(5);
        let seeded = SessionSeed::new()
            .with("cart", ["book"])
            .persistent()
            .idle_deadline(Some(soon))
            .absolute_deadline(None)
            .create(&manager)
            .await
            .unwrap();
        let state = inspect(&manager, seeded.cookie_value())
            .await
            .unwrap()
            .unwrap();
        let idle = state.idle_deadline.expect("an idle deadline");
        assert!(
            (idle - soon).abs() < Duration::seconds(1),
            "{name}: {idle} vs {soon}"
        );
        assert_eq!(state.absolute_deadline, None, "{name}");
        assert!(state.persistent, "{name}");

        let expired = SessionSeed::new()
            .with("cart", ["book"])
            .idle_deadline(Some(OffsetDateTime::now_utc() - Duration::seconds(1)))
            .create(&manager)
            .await
            .unwrap();
        assert!(
            inspect(&manager, expired.cookie_value())
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        let mut browser = TestClient::new(app(&manager)).with_cookie(expired.cookie_value());
        let state = browser.get("/state").await.json::<Value>();
        assert_eq!(
            state,
            json!({"user": null, "cart": null}),
            "{name}: expired is anonymous"
        );
    }
}

#[tokio::test]
async fn inspect_reads_what_a_response_left_behind() {
    for (name, manager) in managers() {
        let mut browser = TestClient::new(app(&manager));
        let response = browser.post("/visit").await;
        let cookie = response
            .session_cookie("id")
            .expect("a new session's cookie");
        let state = inspect(&manager, cookie)
            .await
            .unwrap()
            .expect("a live session");
        assert_eq!(value::<u64>(&state, "visits"), Some(1), "{name}");
        browser.post("/visit").await;
        let state = inspect(&manager, browser.cookie().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(value::<u64>(&state, "visits"), Some(2), "{name}");
        assert_eq!(
            value::<String>(&state, "visits"),
            None,
            "{name}: not a string"
        );

        for bogus in ["", "garbage", &"A".repeat(43)] {
            assert!(
                inspect(&manager, bogus).await.unwrap().is_none(),
                "{name}: {bogus:?}"
            );
        }
    }
}
