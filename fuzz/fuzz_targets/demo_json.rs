//! The demo app's JSON request bodies (`apps/demo/src/api.rs`: credentials, cart items,
//! preference values), sent through the whole app: router, body limit, session layer.
//!
//! Input: one byte choosing the endpoint, then the body (for preferences, the name, a
//! newline, then the body).
//!
//! Checked: never a panic, never a 5xx (the store is in memory and cannot fail); a request
//! that set a session cookie is followed by reads with that cookie, which succeed.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::Router;
use cloakroom::MemoryStore;
use http::{header, Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

fn app() -> &'static Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| {
        cloakroom_demo::app(
            MemoryStore::new(),
            cloakroom_demo::Settings::default().session_config(),
        )
        .unwrap()
    })
}

fn percent_encoded(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn send(request: Request<Body>) -> (StatusCode, Option<String>) {
    let response = app().clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    assert!(!status.is_server_error(), "the demo answered {status}");
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .filter(|pair| !pair.ends_with('='))
        .map(str::to_owned);
    (status, cookie)
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let (method, uri, body) = match choice % 4 {
        0 => (Method::POST, "/api/login".to_owned(), rest),
        1 => (Method::POST, "/api/cart".to_owned(), rest),
        2 => {
            let (name, body) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (&b"theme"[..], rest),
            };
            (
                Method::PUT,
                format!("/api/prefs/{}", percent_encoded(name)),
                body,
            )
        }
        _ => (Method::POST, "/api/counter".to_owned(), rest),
    };
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a well-formed request");
    cloakroom_fuzz::runtime().block_on(async {
        let (_, cookie) = send(request).await;
        if let Some(cookie) = cookie {
            for path in ["/api/me", "/api/cart", "/api/prefs", "/api/sessions"] {
                let follow = Request::get(path)
                    .header(header::COOKIE, &cookie)
                    .body(Body::empty())
                    .expect("a well-formed request");
                let (status, _) = send(follow).await;
                assert!(
                    status.is_success() || status == StatusCode::UNAUTHORIZED,
                    "{path} with the new session answered {status}"
                );
            }
        }
    });
});
