//! Whatever a client sends: bad credentials and bodies are 4xx, nothing is a 5xx, and a
//! write not declared as JSON is refused.

use axum::http::StatusCode;

use crate::client::*;

#[tokio::test]
async fn bad_credentials_and_bad_bodies_are_4xx() {
    let app = app();
    let wrong = post(
        &app,
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
        let reply = post(&app, "/api/login", None, Some(body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "body {body:?}");
        assert!(reply.body["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        post(&app, "/api/cart", None, Some(r#"{"thing":1}"#))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(&app, "/api/prefs/theme", None, Some("{}")).await.status,
        StatusCode::BAD_REQUEST
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
                let reply = send(&app, method, path, Some(cookie), body).await;
                assert!(
                    !reply.status.is_server_error(),
                    "{method} {path} {body:?} gave {}",
                    reply.status
                );
            }
        }
    }
    let huge = "x".repeat(100_000);
    let reply = post(&app, "/api/cart", None, Some(&huge)).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
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
async fn a_wrong_method_is_405_and_head_answers_like_get() {
    let app = app();
    for (method, path) in [
        ("DELETE", "/api/cart"),
        ("GET", "/api/login"),
        ("DELETE", "/api/sessions/revoke-others"),
        ("GET", "/api/sessions/some-handle"),
        ("POST", "/metrics"),
    ] {
        let reply = send(&app, method, path, None, None).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
    }
    for path in ["/", "/api/cart", "/metrics"] {
        let reply = send(&app, "HEAD", path, None, None).await;
        assert_eq!(reply.status, StatusCode::OK, "HEAD {path}");
    }
    let reply = get(&app, "/api/cart/", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"], "no such page");
}

/// A path segment that is not UTF-8 once percent-decoded is a name or handle like any
/// other that matches nothing, answered with the API's JSON error, the same on both
/// frameworks. axum refused it with its own `400` in plain text, where actix-web decoded
/// it lossily and the handler answered (`404` for a handle that is not yours).
#[tokio::test]
async fn a_path_segment_that_is_not_utf8_gets_the_apis_answer() {
    let app = app();
    let cookie = login(&app, None).await;
    let revoked = delete(&app, "/api/sessions/%FF", Some(&cookie)).await;
    assert_eq!(revoked.status, StatusCode::NOT_FOUND, "{}", revoked.body);
    assert!(revoked.body["error"].is_string(), "{}", revoked.body);
    let anonymous = delete(&app, "/api/sessions/%FF", None).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.body
    );
    let pref = put(
        &app,
        "/api/prefs/%FF",
        Some(&cookie),
        Some(r#"{"value":"x"}"#),
    )
    .await;
    assert_eq!(pref.status, StatusCode::BAD_REQUEST, "{}", pref.body);
    assert!(pref.body["error"].is_string(), "{}", pref.body);
}

/// A write a browser sends for a page of another origin is refused. A page can send a
/// write with no body and no `Content-Type` (`fetch` in `no-cors` mode, `sendBeacon`)
/// without asking first, and `SameSite=Lax` sends the cookie along from any origin of the
/// same site (a sibling subdomain, another port of `127.0.0.1`): such a page logged the
/// visitor out, or revoked their other devices.
#[tokio::test]
async fn writes_from_pages_of_other_origins_are_refused() {
    let app = app();
    let cookie = login(&app, None).await;
    let cookie_header = format!("id={cookie}");
    let foreign: [&[(&str, &str)]; 3] = [
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "cross-site")],
        // A browser without Sec-Fetch-Site: the Origin is not this host.
        &[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:3000"),
        ],
    ];
    for path in ["/api/logout", "/api/sessions/revoke-others", "/api/counter"] {
        for extra in foreign {
            let mut headers = vec![("cookie", cookie_header.as_str())];
            headers.extend_from_slice(extra);
            let response = send_headers(&app, "POST", path, &headers, "").await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {extra:?}");
        }
    }
    assert_eq!(
        get(&app, "/api/me", Some(&cookie)).await.status,
        StatusCode::OK
    );
    // The app's own page, and clients that are not browsers, write as before.
    let own: [&[(&str, &str)]; 3] = [
        &[("sec-fetch-site", "same-origin")],
        &[
            ("origin", "http://127.0.0.1:3000"),
            ("host", "127.0.0.1:3000"),
        ],
        &[],
    ];
    for extra in own {
        let mut headers = vec![("cookie", cookie_header.as_str())];
        headers.extend_from_slice(extra);
        let response = send_headers(&app, "POST", "/api/counter", &headers, "").await;
        assert_eq!(response.status(), StatusCode::OK, "{extra:?}");
    }
    let mut headers = vec![("cookie", cookie_header.as_str())];
    headers.push(("sec-fetch-site", "same-origin"));
    let response = send_headers(&app, "POST", "/api/logout", &headers, "").await;
    assert_eq!(response.status(), StatusCode::OK);
}
