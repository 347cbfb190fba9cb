//! The client IP recorded with a session behind a proxy is the one the proxy saw, not one
//! the client wrote into `X-Forwarded-For`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::testing::TestClient;
use cloakroom::{
    ClientIpSource, MemoryStore, Session, SessionConfig, SessionError, SessionLayer, SessionManager,
};
use serde_json::Value;

mod support;

fn app(hops: usize) -> Router {
    let config = SessionConfig::default()
        .with_client_ip(ClientIpSource::TrustedHeader(
            header::HeaderName::from_static("x-forwarded-for"),
        ))
        .with_trusted_proxy_hops(hops);
    let manager = SessionManager::new(MemoryStore::new(), config).unwrap();
    Router::new()
        .route("/put", post(support::put))
        .route(
            "/ip",
            get(|s: Session| async move {
                let meta = s.metadata().await?;
                Ok::<_, SessionError>(Json(meta.and_then(|m| m.client.ip)))
            }),
        )
        .layer(SessionLayer::from_manager(Arc::new(manager)))
}

/// The IP recorded for a session created with these `X-Forwarded-For` lines.
async fn recorded_ip(app: &Router, forwarded: &[&str]) -> Value {
    let mut browser = TestClient::new(app.clone());
    let mut request = Request::post("/put");
    for line in forwarded {
        request = request.header("x-forwarded-for", *line);
    }
    browser.send(request.body(Body::empty())).await;
    assert!(browser.cookie().is_some(), "the write created a session");
    browser.get("/ip").await.json()
}

#[tokio::test]
async fn a_spoofed_forwarded_for_entry_is_not_the_client_ip() {
    let one_proxy = app(1);
    assert_eq!(
        recorded_ip(&one_proxy, &["6.6.6.6, 203.0.113.7"]).await,
        "203.0.113.7"
    );
    assert_eq!(
        recorded_ip(&one_proxy, &["6.6.6.6", "[2001:db8::7]:443"]).await,
        "2001:db8::7"
    );
    let two_proxies = app(2);
    assert_eq!(
        recorded_ip(&two_proxies, &["6.6.6.6, 203.0.113.7, 10.0.0.2"]).await,
        "203.0.113.7"
    );
    assert_eq!(
        recorded_ip(&two_proxies, &["203.0.113.7"]).await,
        Value::Null,
        "a list shorter than the trusted proxies gives no IP"
    );
}
