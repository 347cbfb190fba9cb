//! The demo's JSON API as a client sees it, in-process on the memory store.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

fn app() -> Router {
    cloakroom_demo::app(
        cloakroom::MemoryStore::new(),
        cloakroom_demo::Settings::default().session_config(),
    )
    .unwrap()
}

struct Reply {
    status: StatusCode,
    cookie: Option<String>,
    removes_cookie: bool,
    body: Value,
}

async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("id={cookie}"));
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    let cookie = set_cookie
        .as_deref()
        .and_then(|c| c.strip_prefix("id="))
        .and_then(|c| c.split(';').next())
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let removes_cookie =
        set_cookie.is_some_and(|c| c.starts_with("id=;") && c.contains("Max-Age=0"));
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        cookie,
        removes_cookie,
        body,
    }
}

async fn login(app: &Router, cookie: Option<&str>) -> String {
    let reply = send(
        app,
        "POST",
        "/api/login",
        cookie,
        Some(r#"{"username":"alice","password":"wonderland"}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"user": "alice"}));
    reply.cookie.expect("login sets a cookie")
}

#[tokio::test]
async fn login_rotates_the_id_and_me_reports_rfc3339_times() {
    let app = app();
    let anonymous = send(&app, "POST", "/api/cart", None, Some(r#"{"item":"tea"}"#))
        .await
        .cookie
        .unwrap();
    let cookie = login(&app, Some(&anonymous)).await;
    assert_ne!(cookie, anonymous, "login rotates the session ID");
    assert_eq!(
        send(&app, "GET", "/api/me", Some(&anonymous), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let me = send(&app, "GET", "/api/me", Some(&cookie), None).await;
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
        send(&app, "GET", "/api/cart", Some(&cookie), None)
            .await
            .body,
        json!({"items": ["tea"]})
    );
}

#[tokio::test]
async fn bad_credentials_and_bad_bodies_are_4xx() {
    let app = app();
    let wrong = send(
        &app,
        "POST",
        "/api/login",
        None,
        Some(r#"{"username":"alice","password":"nope"}"#),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body["error"].is_string());
    for body in [
        r#"{"username":"alice""#,
        r#"{"username":"alice"}"#,
        "[]",
        "",
        "null",
    ] {
        let reply = send(&app, "POST", "/api/login", None, Some(body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "body {body:?}");
        assert!(reply.body["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        send(&app, "POST", "/api/cart", None, Some(r#"{"thing":1}"#))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&app, "PUT", "/api/prefs/theme", None, Some("{}"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn oversized_items_and_preferences_are_413() {
    let app = app();
    let big = "x".repeat(1025);
    let reply = send(
        &app,
        "POST",
        "/api/cart",
        None,
        Some(&json!({"item": big}).to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = send(
        &app,
        "PUT",
        "/api/prefs/theme",
        None,
        Some(&json!({"value": big}).to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = send(
        &app,
        "PUT",
        &format!("/api/prefs/{}", "n".repeat(2000)),
        None,
        Some(r#"{"value":1}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let exact = "y".repeat(1024); // exactly 1 KiB is allowed
    assert_eq!(
        send(
            &app,
            "POST",
            "/api/cart",
            None,
            Some(&json!({"item": exact}).to_string())
        )
        .await
        .status,
        StatusCode::OK
    );
    let reply = send(
        &app,
        "PUT",
        "/api/prefs/theme",
        None,
        Some(&json!({"value": exact}).to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn cart_counter_and_prefs_work_anonymously() {
    let app = app();
    assert_eq!(
        send(&app, "GET", "/api/cart", None, None).await.body,
        json!({"items": []})
    );
    let first = send(&app, "POST", "/api/cart", None, Some(r#"{"item":"apple"}"#)).await;
    let cookie = first.cookie.unwrap();
    assert_eq!(first.body, json!({"items": ["apple"]}));
    let second = send(
        &app,
        "POST",
        "/api/cart",
        Some(&cookie),
        Some(r#"{"item":"pear"}"#),
    )
    .await;
    assert_eq!(second.body, json!({"items": ["apple", "pear"]}));
    for n in 1..=3 {
        assert_eq!(
            send(&app, "POST", "/api/counter", Some(&cookie), None)
                .await
                .body,
            json!({"value": n})
        );
    }
    assert_eq!(
        send(
            &app,
            "PUT",
            "/api/prefs/theme",
            Some(&cookie),
            Some(r#"{"value":"dark"}"#)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(
            &app,
            "PUT",
            "/api/prefs/size",
            Some(&cookie),
            Some(r#"{"value":12}"#)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "GET", "/api/prefs", Some(&cookie), None)
            .await
            .body,
        json!({"theme": "dark", "size": 12})
    );
}

#[tokio::test]
async fn concurrent_counter_increments_each_get_a_distinct_value() {
    let app = app();
    let cookie = send(&app, "POST", "/api/counter", None, None)
        .await
        .cookie
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move {
                send(&app, "POST", "/api/counter", Some(&cookie), None)
                    .await
                    .body["value"]
                    .as_u64()
                    .unwrap()
            })
        })
        .collect();
    let mut values = Vec::new();
    for task in tasks {
        values.push(task.await.unwrap());
    }
    values.sort_unstable();
    assert_eq!(
        values,
        (2..=51).collect::<Vec<u64>>(),
        "each answer is the committed value"
    );
}

#[tokio::test]
async fn sessions_list_revoke_and_revoke_others() {
    let app = app();
    assert_eq!(
        send(&app, "GET", "/api/sessions", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, "POST", "/api/sessions/revoke-others", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let devices = [
        login(&app, None).await,
        login(&app, None).await,
        login(&app, None).await,
    ];
    let list = send(&app, "GET", "/api/sessions", Some(&devices[0]), None)
        .await
        .body;
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
    let second = send(&app, "GET", "/api/me", Some(&devices[1]), None)
        .await
        .body["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        send(
            &app,
            "DELETE",
            "/api/sessions/AAAAAAAAAAAAAAAA",
            Some(&devices[0]),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(
            &app,
            "DELETE",
            "/api/sessions/not-a-handle",
            Some(&devices[0]),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let bob = send(
        &app,
        "POST",
        "/api/login",
        None,
        Some(r#"{"username":"bob","password":"builder"}"#),
    )
    .await
    .cookie
    .unwrap();
    assert_eq!(
        send(
            &app,
            "DELETE",
            &format!("/api/sessions/{second}"),
            Some(&bob),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND,
        "bob cannot revoke alice's session"
    );
    assert_eq!(
        send(
            &app,
            "DELETE",
            &format!("/api/sessions/{second}"),
            Some(&devices[0]),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "GET", "/api/me", Some(&devices[1]), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let reply = send(
        &app,
        "POST",
        "/api/sessions/revoke-others",
        Some(&devices[0]),
        None,
    )
    .await;
    assert_eq!(reply.body, json!({"revoked": 1}));
    assert_eq!(
        send(&app, "GET", "/api/me", Some(&devices[2]), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, "GET", "/api/me", Some(&devices[0]), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, "GET", "/api/me", Some(&bob), None).await.status,
        StatusCode::OK,
        "other users are untouched"
    );
}

#[tokio::test]
async fn logout_deletes_the_session_and_removes_the_cookie() {
    let app = app();
    let cookie = login(&app, None).await;
    let reply = send(&app, "POST", "/api/logout", Some(&cookie), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.removes_cookie);
    assert_eq!(
        send(&app, "GET", "/api/me", Some(&cookie), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn nothing_a_client_sends_is_a_5xx() {
    let app = app();
    let cookies = [
        "",
        "garbage",
        &"A".repeat(43),
        &"%".repeat(5000),
        ";;;=;id=\"\"; id",
    ];
    let bodies = [
        None,
        Some("{"),
        Some("\"\""),
        Some(r#"{"item":null}"#),
        Some(r#"{"value":{"deep":[1,2,3]}}"#),
    ];
    let routes = [
        ("POST", "/api/login"),
        ("POST", "/api/logout"),
        ("GET", "/api/me"),
        ("POST", "/api/cart"),
        ("GET", "/api/cart"),
        ("POST", "/api/counter"),
        ("PUT", "/api/prefs/x"),
        ("GET", "/api/prefs"),
        ("GET", "/api/sessions"),
        ("DELETE", "/api/sessions/x"),
        ("POST", "/api/sessions/revoke-others"),
        ("GET", "/nope"),
        ("PATCH", "/api/cart"),
    ];
    for cookie in cookies {
        for body in bodies {
            for (method, path) in routes {
                let mut request = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(header::COOKIE, format!("id={cookie}"));
                if let Some(body) = body {
                    request = request.header(header::CONTENT_TYPE, "application/json");
                    let response = app
                        .clone()
                        .oneshot(request.body(Body::from(body)).unwrap())
                        .await
                        .unwrap();
                    assert!(
                        !response.status().is_server_error(),
                        "{method} {path} {body:?} gave {}",
                        response.status()
                    );
                } else {
                    let response = app
                        .clone()
                        .oneshot(request.body(Body::empty()).unwrap())
                        .await
                        .unwrap();
                    assert!(
                        !response.status().is_server_error(),
                        "{method} {path} gave {}",
                        response.status()
                    );
                }
            }
        }
    }
    let huge = "x".repeat(100_000);
    let reply = send(&app, "POST", "/api/cart", None, Some(&huge)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A request with an explicit (or no) `Content-Type`, as a cross-site HTML form sends it.
async fn send_typed(
    app: &Router,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, bool, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let sets_cookie = response.headers().contains_key(header::SET_COOKIE);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        sets_cookie,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn json_endpoints_refuse_bodies_that_are_not_declared_json() {
    let app = app();
    let login = r#"{"username":"alice","password":"wonderland"}"#;
    let json_endpoints = [
        ("POST", "/api/login", login),
        ("POST", "/api/cart", r#"{"item":"tea"}"#),
        ("PUT", "/api/prefs/theme", r#"{"value":"dark"}"#),
    ];
    // What an HTML form can send cross-site without a CORS preflight, and no type at all.
    let not_json = [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("text/json"),
        None,
    ];
    for (method, path, body) in json_endpoints {
        for content_type in not_json {
            let (status, sets_cookie, reply) =
                send_typed(&app, method, path, content_type, body).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {path} as {content_type:?}"
            );
            assert!(
                !sets_cookie,
                "{method} {path} as {content_type:?} set a cookie"
            );
            assert!(reply["error"]
                .as_str()
                .is_some_and(|m| m.contains("application/json")));
        }
    }
    // Endpoints without a body: a form post to them is refused too.
    for path in ["/api/logout", "/api/counter", "/api/sessions/revoke-others"] {
        for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
            let (status, sets_cookie, _) =
                send_typed(&app, "POST", path, Some(content_type), "").await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST {path} as {content_type}"
            );
            assert!(!sets_cookie);
        }
    }
    for content_type in ["application/json", "Application/JSON; charset=utf-8"] {
        let (status, sets_cookie, _) =
            send_typed(&app, "POST", "/api/login", Some(content_type), login).await;
        assert_eq!(status, StatusCode::OK, "{content_type}");
        assert!(sets_cookie);
    }
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
    let list = send(&app, "GET", "/api/sessions", Some(newest), None).await;
    assert_eq!(list.body.as_array().unwrap().len(), cap, "{}", list.body);
    assert_eq!(
        send(&app, "GET", "/api/me", Some(&devices[0]), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "the oldest session was revoked"
    );
    for device in &devices[1..] {
        assert_eq!(
            send(&app, "GET", "/api/me", Some(device), None)
                .await
                .status,
            StatusCode::OK
        );
    }
}
