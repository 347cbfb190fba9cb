//! Accounts and devices: login, `/api/me`, the device list and its revocations, logout,
//! and the per-user cap.

use axum::http::StatusCode;
use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn login_rotates_the_id_and_me_reports_rfc3339_times() {
    let app = app();
    let anonymous = post(&app, "/api/cart", None, Some(r#"{"item":"tea"}"#))
        .await
        .cookie
        .unwrap();
    let cookie = login(&app, Some(&anonymous)).await;
    assert_ne!(cookie, anonymous, "login rotates the session ID");
    assert_eq!(
        get(&app, "/api/me", Some(&anonymous)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let me = get(&app, "/api/me", Some(&cookie)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"], "alice");
    assert_eq!(me.body["handle"].as_str().unwrap().len(), 16);
    for field in [
        "created_at",
        "last_active_at",
        "idle_expires_at",
        "absolute_expires_at",
    ] {
        let text = me.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing"));
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{field} is not RFC 3339: {text} ({e})"));
    }
    assert_eq!(
        get(&app, "/api/cart", Some(&cookie)).await.body,
        json!({"items": ["tea"]})
    );
}

#[tokio::test]
async fn sessions_list_revoke_and_revoke_others() {
    let app = app();
    assert_eq!(
        get(&app, "/api/sessions", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&app, "/api/sessions/revoke-others", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let devices = [
        login(&app, None).await,
        login(&app, None).await,
        login(&app, None).await,
    ];
    let list = get(&app, "/api/sessions", Some(&devices[0])).await.body;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    for entry in list {
        for field in [
            "handle",
            "created_at",
            "last_active_at",
            "ip",
            "user_agent",
            "current",
        ] {
            assert!(entry.get(field).is_some(), "{field} missing in {entry}");
        }
    }
    let second = get(&app, "/api/me", Some(&devices[1])).await.body["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        delete(&app, "/api/sessions/AAAAAAAAAAAAAAAA", Some(&devices[0]))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&app, "/api/sessions/not-a-handle", Some(&devices[0]))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let bob = post(
        &app,
        "/api/login",
        None,
        Some(r#"{"username":"bob","password":"builder"}"#),
    )
    .await
    .cookie
    .unwrap();
    assert_eq!(
        delete(&app, &format!("/api/sessions/{second}"), Some(&bob))
            .await
            .status,
        StatusCode::NOT_FOUND,
        "bob cannot revoke alice's session"
    );
    assert_eq!(
        delete(&app, &format!("/api/sessions/{second}"), Some(&devices[0]))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/api/me", Some(&devices[1])).await.status,
        StatusCode::UNAUTHORIZED
    );
    let reply = post(&app, "/api/sessions/revoke-others", Some(&devices[0]), None).await;
    assert_eq!(reply.body, json!({"revoked": 1}));
    assert_eq!(
        get(&app, "/api/me", Some(&devices[2])).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/api/me", Some(&devices[0])).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/api/me", Some(&bob)).await.status,
        StatusCode::OK,
        "other users are untouched"
    );
}

#[tokio::test]
async fn logout_deletes_the_session_and_removes_the_cookie() {
    let app = app();
    let cookie = login(&app, None).await;
    let reply = post(&app, "/api/logout", Some(&cookie), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.removes_cookie);
    assert_eq!(
        get(&app, "/api/me", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_demo_caps_live_sessions_per_user_revoking_the_oldest() {
    let cap = cloakroom_demo::DEFAULT_MAX_SESSIONS_PER_USER;
    let app = app();
    // Each login from its own cookie jar: a new device.
    let mut devices = Vec::new();
    for _ in 0..=cap {
        devices.push(login(&app, None).await);
        // Activity times have millisecond resolution: keep "oldest" well defined.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let newest = devices.last().unwrap();
    let list = get(&app, "/api/sessions", Some(newest)).await;
    assert_eq!(list.body.as_array().unwrap().len(), cap, "{}", list.body);
    assert_eq!(
        get(&app, "/api/me", Some(&devices[0])).await.status,
        StatusCode::UNAUTHORIZED,
        "the oldest session was revoked"
    );
    for device in &devices[1..] {
        assert_eq!(
            get(&app, "/api/me", Some(device)).await.status,
            StatusCode::OK
        );
    }
}

/// A store failure is a 503 with `Retry-After` and the JSON error body, during the load
/// or after it (the handler's own save, a logout's delete, a listing). The demo turned a
/// failure after the load into its own error and answered a bare 503; the layer replaced
/// the one during the load with an empty body.
#[tokio::test]
async fn a_store_failure_is_503_with_retry_after_and_the_json_error() {
    use cloakroom::conformance::{HookedStore, Operation, Outage};
    for (outage, method, path) in [
        (Outage::default(), "GET", "/api/cart"),
        (Outage::only(Operation::Update), "POST", "/api/counter"),
        (Outage::only(Operation::Delete), "POST", "/api/logout"),
        (Outage::only(Operation::ListForUser), "GET", "/api/sessions"),
    ] {
        let outage = std::sync::Arc::new(outage);
        let store = HookedStore::with_hook(
            std::sync::Arc::new(cloakroom::MemoryStore::new()),
            std::sync::Arc::clone(&outage),
        );
        let app = app_on(store);
        let cookie = login(&app, None).await;
        outage.start();
        let cookie_header = format!("id={cookie}");
        let response = send_headers(
            &app,
            method,
            path,
            &[("cookie", cookie_header.as_str())],
            "",
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}"
        );
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("5"),
            "{method} {path}"
        );
        let body: serde_json::Value = serde_json::from_slice(response.bytes()).unwrap();
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
}

/// The value of `name="…"` in a DBSC header.
fn param(value: &str, name: &str) -> String {
    let start = value.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    value[start..][..value[start..].find('"').unwrap()].to_owned()
}

/// Device-bound sessions are on by default: a client without DBSC gets the offer header on
/// login and `device_bound: false`, and otherwise works as before; a browser that registers
/// a key sees `device_bound: true`, and its session cookie copied alone is not logged in.
#[tokio::test]
async fn me_says_whether_the_device_is_bound() {
    use cloakroom::dbsc::test_signer::{new_key, registration_proof};

    let app = app();
    let json = ("content-type", "application/json");
    let credentials = r#"{"username":"alice","password":"wonderland"}"#;
    let login = send_headers(&app, "POST", "/api/login", &[json], credentials).await;
    assert_eq!(login.status(), StatusCode::OK);
    let offer = login.headers()["secure-session-registration"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(offer.starts_with("(ES256 RS256);path=\"/.cloakroom/dbsc/register\""));
    let session = login.session_cookie("id").unwrap().to_owned();
    let me = get(&app, "/api/me", Some(&session)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["device_bound"], false);

    // The browser registers a key: it gets the bound cookie, and `/api/me` says so.
    let device = new_key();
    let proof = registration_proof(
        &device,
        &param(&offer, "challenge"),
        &param(&offer, "authorization"),
    );
    let session_cookie = format!("id={session}");
    let registered = send_headers(
        &app,
        "POST",
        "/.cloakroom/dbsc/register",
        &[
            ("cookie", &session_cookie),
            ("secure-session-response", &proof),
        ],
        "",
    )
    .await;
    assert_eq!(registered.status(), StatusCode::OK, "{}", registered.text());
    let bound = registered
        .session_cookie("cloakroom_bound")
        .expect("a bound cookie")
        .to_owned();
    let both = format!("id={session}; cloakroom_bound={bound}");
    let me = send_headers(&app, "GET", "/api/me", &[("cookie", &both)], "").await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: serde_json::Value = me.json();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["device_bound"], true);
    // The session cookie alone (a copy) is no longer logged in.
    assert_eq!(
        get(&app, "/api/me", Some(&session)).await.status,
        StatusCode::UNAUTHORIZED
    );
}
