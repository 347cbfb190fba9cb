//! Cookies, data and identity: laziness, strictness, login rotation, logout, the per-user
//! index, bad cookies, the client IP and the configured cookie attributes.

use std::sync::Arc;

use actix_web::http::header::{HeaderValue, COOKIE};
use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use cloakroom::conformance::CountingStore;
use cloakroom::{ClientIpSource, SessionConfig, SessionStore};
use cloakroom_actix::Session;
use serde_json::{json, Value};

use crate::support::*;

#[actix_web::test]
async fn data_round_trips_with_secure_cookie_attributes() {
    on_memory_and_sqlite(memory(), data_round_trip).await;
}

async fn data_round_trip(store: Arc<dyn SessionStore>) {
    let app = app!(manager(store, SessionConfig::default()));
    let set = send(&app, post("/set/name", None, json!("alice"))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let attributes = set.set_cookie[0].to_ascii_lowercase();
    for attribute in ["httponly", "secure", "samesite=lax", "path=/"] {
        assert!(
            attributes.contains(attribute),
            "{attribute} in {attributes}"
        );
    }
    assert_eq!(set.vary, ["cookie"]);
    let cookie = set.cookie();
    let read = send(&app, get("/get/name", Some(&cookie))).await;
    assert_eq!(read.json(), json!("alice"));
    assert_eq!(read.vary, ["cookie"]);
    assert!(
        read.set_cookie.is_empty(),
        "a read re-sends no cookie: {:?}",
        read.set_cookie
    );
}

/// A response that sets the session cookie stays out of shared caches, even where its
/// handler called it public: a CDN that stored this login would log every later visitor
/// in as its user.
#[actix_web::test]
async fn a_response_setting_the_session_cookie_is_private() {
    let app = app!(manager(memory(), SessionConfig::default()));
    let login = send(&app, post("/public-login/alice", None, Value::Null)).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.set_cookie.len(), 1);
    assert_eq!(login.cache_control, ["max-age=600, private"]);
    assert!(
        login.cdn_cache_control.is_empty(),
        "{:?}",
        login.cdn_cache_control
    );
    let set = send(&app, post("/set/k", None, json!(1))).await;
    assert_eq!(set.cache_control, ["private"]);
    let read = send(&app, get("/get/k", Some(&set.cookie()))).await;
    assert!(read.cache_control.is_empty(), "{:?}", read.cache_control);
}

#[actix_web::test]
async fn untouched_requests_set_no_cookie_and_do_no_store_io() {
    let counting = CountingStore::new(memory());
    let counts = counting.counts();
    let app = app!(manager(Arc::new(counting), SessionConfig::default()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    let before = counts.snapshot();
    for cookie in [None, Some(cookie.as_str())] {
        let reply = send(&app, get("/untouched", cookie)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
        assert!(reply.vary.is_empty(), "{:?}", reply.vary);
    }
    assert_eq!(
        counts.snapshot(),
        before,
        "(loads, writes, touches) unchanged"
    );
}

#[actix_web::test]
async fn an_unknown_id_is_never_adopted() {
    // A well-formed ID that this app's store does not know: minted by another store.
    let elsewhere = app!(manager(memory(), SessionConfig::default()));
    let foreign = send(&elsewhere, post("/set/k", None, json!(1)))
        .await
        .cookie();

    let app = app!(manager(memory(), SessionConfig::default()));
    let read = send(&app, get("/get/k", Some(&foreign))).await;
    assert_eq!(read.json(), Value::Null);
    let write = send(&app, post("/set/k", Some(&foreign), json!(2))).await;
    assert_eq!(write.status, StatusCode::OK);
    assert_ne!(write.cookie(), foreign, "a fresh ID is minted");
}

#[actix_web::test]
async fn login_rotates_the_id_kills_the_old_one_and_keeps_data() {
    let app = app!(manager(memory(), SessionConfig::default()));
    let before = send(&app, post("/set/cart", None, json!(["socks"])))
        .await
        .cookie();
    let login = send(&app, post("/login/alice", Some(&before), Value::Null)).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let after = login.cookie();
    assert_ne!(after, before);
    assert_eq!(read(&app, "/get/cart", &before).await, Value::Null);
    assert_eq!(read(&app, "/whoami", &before).await, Value::Null);
    assert_eq!(read(&app, "/get/cart", &after).await, json!(["socks"]));
    assert_eq!(read(&app, "/whoami", &after).await, json!("alice"));
}

#[actix_web::test]
async fn logout_deletes_the_session_and_removes_the_cookie() {
    let store = memory();
    let app = app!(manager(Arc::clone(&store), SessionConfig::default()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    let logout = send(&app, post("/logout", Some(&cookie), Value::Null)).await;
    assert_eq!(logout.status, StatusCode::OK);
    let removal = logout.set_cookie[0].to_ascii_lowercase();
    assert!(
        removal.contains("max-age=0") || removal.contains("expires=thu, 01 jan 1970"),
        "{removal}"
    );
    assert!(
        removal.contains("path=/") && removal.contains("secure") && removal.contains("httponly")
    );
    assert_eq!(live_sessions(&store).await, 0);
    assert_eq!(read(&app, "/get/k", &cookie).await, Value::Null);
}

#[actix_web::test]
async fn per_user_index_lists_and_revokes_other_devices() {
    let app = app!(manager(memory(), SessionConfig::default()));
    let mut devices = Vec::new();
    for _ in 0..3 {
        let anonymous = send(&app, post("/set/k", None, json!(1))).await.cookie();
        devices.push(
            send(&app, post("/login/bob", Some(&anonymous), Value::Null))
                .await
                .cookie(),
        );
    }
    let listed = read(&app, "/sessions", &devices[0]).await;
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed
            .iter()
            .filter(|s| s["current"] == json!(true))
            .count(),
        1
    );
    let revoked = send(&app, post("/revoke-others", Some(&devices[0]), Value::Null)).await;
    assert_eq!(revoked.json(), json!(2));
    assert_eq!(read(&app, "/whoami", &devices[0]).await, json!("bob"));
    for other in &devices[1..] {
        assert_eq!(read(&app, "/whoami", other).await, Value::Null);
    }
}

#[actix_web::test]
async fn bad_cookies_are_anonymous_requests() {
    let app = app!(manager(memory(), SessionConfig::default()));
    let long = format!("id={}", "A".repeat(8000));
    let junk: [&[u8]; 7] = [
        b"id=",
        b"id=not-a-session-id",
        b"id=AAAA; id=====",
        b"id=\xff\xfe\x80",
        b";;;==;id",
        b"other=1; id=%00%01",
        long.as_bytes(),
    ];
    for cookie in junk {
        let request = test::TestRequest::get()
            .uri("/get/k")
            .insert_header((COOKIE, HeaderValue::from_bytes(cookie).unwrap()))
            .to_request();
        let reply = send(&app, request).await;
        assert_eq!(reply.status, StatusCode::OK, "{cookie:?}: {}", reply.body);
        assert_eq!(reply.json(), Value::Null);
        assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
    }
}

#[actix_web::test]
async fn a_route_without_the_middleware_is_a_500_that_names_the_fix() {
    let app = test::init_service(App::new().route(
        "/",
        web::get().to(|s: Session| async move { format!("{s:?}") }),
    ))
    .await;
    let reply = send(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.contains("SessionMiddleware"), "{}", reply.body);
}

#[actix_web::test]
async fn the_client_ip_is_the_peer_or_the_trusted_proxys_entry() {
    let login = |peer: &str, forwarded: &str| {
        test::TestRequest::post()
            .uri("/login/dave")
            .peer_addr(peer.parse().unwrap())
            .insert_header(("x-forwarded-for", forwarded))
            .to_request()
    };
    let listed_ip = |reply: Reply| reply.json()[0]["ip"].clone();

    let app = app!(manager(memory(), SessionConfig::default()));
    let cookie = send(&app, login("192.0.2.1:4000", "6.6.6.6"))
        .await
        .cookie();
    let ip = listed_ip(send(&app, get("/sessions", Some(&cookie))).await);
    assert_eq!(ip, json!("192.0.2.1"), "the connection's peer by default");

    let behind_proxy = SessionConfig::default().with_client_ip(ClientIpSource::TrustedHeader(
        http::HeaderName::from_static("x-forwarded-for"),
    ));
    let app = app!(manager(memory(), behind_proxy));
    let cookie = send(&app, login("10.0.0.1:4000", "6.6.6.6, 203.0.113.7"))
        .await
        .cookie();
    let ip = listed_ip(send(&app, get("/sessions", Some(&cookie))).await);
    assert_eq!(
        ip,
        json!("203.0.113.7"),
        "the entry the proxy added, not the client's"
    );
}

#[actix_web::test]
async fn every_configured_cookie_attribute_reaches_the_response() {
    let cookie = cloakroom::CookieConfig::default()
        .with_name("sid")
        .with_path("/app")
        .with_domain(Some("example.com".to_owned()))
        .with_same_site(cloakroom::SameSite::Strict);
    let app = app!(manager(
        memory(),
        SessionConfig::default().with_cookie(cookie)
    ));
    let set = send(&app, post("/set/k", None, json!(1))).await;
    let header = &set.set_cookie[0];
    assert!(header.starts_with("sid="), "{header}");
    for attribute in [
        "Path=/app",
        "Domain=example.com",
        "SameSite=Strict",
        "HttpOnly",
        "Secure",
    ] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    assert_eq!(read(&app, "/get/k", &set.cookie()).await, json!(1));
    let logout = send(&app, post("/logout", Some(&set.cookie()), Value::Null)).await;
    let removal = &logout.set_cookie[0];
    for attribute in ["sid=;", "Path=/app", "Domain=example.com", "Max-Age=0"] {
        assert!(
            removal.contains(attribute),
            "the removal matches: {attribute} in {removal}"
        );
    }

    let host = cloakroom::CookieConfig::default().with_host_prefix(true);
    let app = app!(manager(
        memory(),
        SessionConfig::default().with_cookie(host)
    ));
    let set = send(&app, post("/set/k", None, json!(1))).await;
    assert!(
        set.set_cookie[0].starts_with("__Host-id="),
        "{:?}",
        set.set_cookie
    );
    assert_eq!(read(&app, "/get/k", &set.cookie()).await, json!(1));
}
