//! Device-bound sessions through actix-web (feature `dbsc`): the same protocol as the
//! tower layer, checked end to end with a real ES256 key.
#![cfg(feature = "dbsc")]

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use cloakroom::dbsc::binding::DeviceBindingConfig;
use cloakroom::dbsc::test_signer::{new_key, refresh_proof, registration_proof};
use cloakroom::{generate_key, KeyRing, MemoryStore, SessionConfig};
use cloakroom_actix::{Session, SessionMiddleware};

/// The value of `name="…"` in a header value.
fn param(text: &str, name: &str) -> String {
    let start = text.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    text[start..][..text[start..].find('"').unwrap()].to_owned()
}

/// The `name=value` pair a response sets for cookie `name`.
fn cookie_pair<B>(response: &actix_web::dev::ServiceResponse<B>, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .unwrap()
}

#[actix_web::test]
async fn registration_refresh_and_the_bound_cookie_through_actix() {
    let keys = KeyRing::parse(&generate_key()).unwrap();
    // No registration grace: the session cookie alone is refused as soon as the key is
    // stored (the grace is the core's, tested through the tower layer).
    let binding = DeviceBindingConfig::new(keys).with_registration_grace(Duration::ZERO);
    let config = SessionConfig::default().with_device_binding(binding);
    let sessions = SessionMiddleware::try_new(MemoryStore::new(), config).unwrap();
    let app = test::init_service(
        App::new()
            .wrap(sessions)
            .route(
                "/login",
                web::post().to(|session: Session| async move {
                    session.login("alice").await.unwrap();
                    ""
                }),
            )
            .route(
                "/whoami",
                web::get().to(|session: Session| async move {
                    session.user().await.unwrap().unwrap_or("anonymous".into())
                }),
            ),
    )
    .await;
    let login =
        test::call_service(&app, test::TestRequest::post().uri("/login").to_request()).await;
    let offer = login.headers().get("secure-session-registration").unwrap();
    let offer = offer.to_str().unwrap().to_owned();
    let session = cookie_pair(&login, "id");
    let device = new_key();
    let proof = registration_proof(
        &device,
        &param(&offer, "challenge"),
        &param(&offer, "authorization"),
    );
    let register = test::TestRequest::post()
        .uri("/.cloakroom/dbsc/register")
        .insert_header(("cookie", session.clone()))
        .insert_header(("secure-session-response", proof))
        .to_request();
    let registered = test::call_service(&app, register).await;
    assert_eq!(registered.status(), StatusCode::OK);
    let bound = cookie_pair(&registered, "cloakroom_bound");
    let challenge = registered
        .headers()
        .get("secure-session-challenge")
        .unwrap();
    let challenge = challenge
        .to_str()
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_owned();
    let config: serde_json::Value = test::read_body_json(registered).await;
    let id = config["session_identifier"].as_str().unwrap().to_owned();

    let whoami = |cookies: String| {
        test::TestRequest::get()
            .uri("/whoami")
            .insert_header(("cookie", cookies))
            .to_request()
    };
    let both = format!("{session}; {bound}");
    let body = test::call_and_read_body(&app, whoami(both.clone())).await;
    assert_eq!(body, "alice");
    let body = test::call_and_read_body(&app, whoami(session.clone())).await;
    assert_eq!(body, "anonymous", "the session cookie alone is not enough");

    let refresh = |proof: String| {
        test::TestRequest::post()
            .uri("/.cloakroom/dbsc/refresh")
            .insert_header(("cookie", both.clone()))
            .insert_header(("sec-secure-session-id", id.clone()))
            .insert_header(("secure-session-response", proof))
            .to_request()
    };
    let proof = refresh_proof(&device, &challenge);
    let refreshed = test::call_service(&app, refresh(proof.clone())).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let replayed = test::call_service(&app, refresh(proof)).await;
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
}
