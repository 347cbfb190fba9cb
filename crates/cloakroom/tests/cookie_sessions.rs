//! Client-side sessions through the layer: the conformance cases that apply, in both
//! modes; every kind of bad cookie is an anonymous request; key rotation; the size limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use cloakroom::testing::TestClient;
use cloakroom::{
    generate_key, CookieSessions, EpochSource, ExpiryPolicy, KeyRing, Session, SessionConfig,
    SessionError, SessionManager,
};
use serde_json::Value;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_cookie_sessions_pass_the_cases_that_apply() {
    cloakroom::conformance::run_client_side(CookieSessions::encrypted(
        KeyRing::parse(&generate_key()).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_cookie_sessions_pass_the_cases_that_apply() {
    cloakroom::conformance::run_client_side(CookieSessions::signed(
        KeyRing::parse(&generate_key()).unwrap(),
    ))
    .await;
}

#[test]
fn the_cases_that_cannot_apply_are_named_with_a_reason() {
    let all: Vec<&str> = cloakroom::conformance::cases()
        .iter()
        .map(|c| c.name)
        .collect();
    for (name, reason) in cloakroom::conformance::NOT_CLIENT_SIDE {
        assert!(all.contains(name), "{name} is a real case");
        assert!(reason.len() > 20, "{name} has a reason");
    }
}

#[derive(Clone, Default)]
struct Epochs(Arc<std::sync::Mutex<u64>>);

#[async_trait::async_trait]
impl EpochSource for Epochs {
    async fn current_epoch(&self, _user: &str) -> Result<Option<String>, cloakroom::BoxError> {
        Ok(Some(self.0.lock().unwrap().to_string()))
    }
}

fn app(sessions: CookieSessions, config: SessionConfig) -> Router {
    let manager = SessionManager::cookie(sessions, config).unwrap();
    Router::new()
        .route(
            "/who",
            get(|s: Session| async move { s.user().await.map(Json) }),
        )
        .route(
            "/login",
            post(|s: Session| async move { s.login("alice").await.map(|()| "ok") }),
        )
        .route("/put/{size}", post(support::fill))
        .route(
            "/get",
            get(|s: Session| async move { s.get::<String>("cart").await.map(Json) }),
        )
        .route(
            "/devices",
            get(|s: Session| async move { s.list_user_sessions().await.map(Json) }),
        )
        .layer(cloakroom::SessionLayer::from_manager(Arc::new(manager)))
}

struct Reply {
    status: StatusCode,
    cookie: Option<String>,
    set_cookie: Option<String>,
    body: Value,
}

async fn call(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> Reply {
    let mut client = TestClient::new(app.clone());
    if let Some(cookie) = cookie {
        client = client.with_cookie(cookie);
    }
    let response = client
        .send(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty()),
        )
        .await;
    Reply {
        status: response.status(),
        cookie: response.session_cookie("id").map(str::to_owned),
        set_cookie: response.set_cookie("id").map(str::to_owned),
        body: serde_json::from_slice(response.bytes()).unwrap_or(Value::Null),
    }
}

async fn logged_in(app: &Router) -> String {
    let reply = call(app, "POST", "/login", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.cookie.expect("a session cookie")
}

async fn assert_anonymous(app: &Router, cookie: &str, what: &str) {
    let reply = call(app, "GET", "/who", Some(cookie)).await;
    assert_eq!(reply.status, StatusCode::OK, "{what}: never a 5xx");
    assert_eq!(reply.body, Value::Null, "{what}: an anonymous session");
}

#[tokio::test]
async fn every_bad_cookie_is_an_anonymous_request() {
    for sessions in [
        CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap()),
        CookieSessions::signed(KeyRing::parse(&generate_key()).unwrap()),
    ] {
        let mode = format!("{:?}", sessions.mode());
        let app = app(sessions.clone(), SessionConfig::default());
        let cookie = logged_in(&app).await;
        assert_eq!(call(&app, "GET", "/who", Some(&cookie)).await.body, "alice");

        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&cookie)
            .unwrap();
        for bit in (0..bytes.len() * 8).step_by(7) {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let flipped = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(flipped);
            assert_anonymous(&app, &flipped, &format!("{mode}: bit {bit} flipped")).await;
        }
        for cut in [1, 10, cookie.len() / 2, cookie.len() - 1] {
            assert_anonymous(&app, &cookie[..cut], &format!("{mode}: truncated to {cut}")).await;
        }
        let stranger = app_with_new_key(&sessions);
        let foreign = logged_in(&stranger).await;
        assert_anonymous(
            &app,
            &foreign,
            &format!("{mode}: a cookie from another key"),
        )
        .await;
        assert_anonymous(&app, &"A".repeat(5000), &format!("{mode}: oversized")).await;
    }
}

fn app_with_new_key(like: &CookieSessions) -> Router {
    let ring = KeyRing::parse(&generate_key()).unwrap();
    let sessions = match like.mode() {
        cloakroom::CookieMode::Encrypted => CookieSessions::encrypted(ring),
        cloakroom::CookieMode::Signed => CookieSessions::signed(ring),
    };
    app(sessions, SessionConfig::default())
}

#[tokio::test]
async fn an_expired_cookie_is_anonymous_even_if_the_browser_keeps_it() {
    let config = SessionConfig::default().with_expiry(
        ExpiryPolicy::default()
            .with_idle_timeout(Some(Duration::from_millis(400)))
            .with_absolute_timeout(Some(Duration::from_secs(5))),
    );
    let app = app(
        CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap()),
        config,
    );
    let cookie = logged_in(&app).await;
    assert_eq!(call(&app, "GET", "/who", Some(&cookie)).await.body, "alice");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_anonymous(&app, &cookie, "an idle-expired cookie").await;
}

#[tokio::test]
async fn a_replayed_cookie_after_epoch_revocation_is_anonymous() {
    let epochs = Epochs::default();
    let app = app(
        CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap()),
        SessionConfig::default().with_epochs(epochs.clone()),
    );
    let cookie = logged_in(&app).await;
    assert_eq!(call(&app, "GET", "/who", Some(&cookie)).await.body, "alice");
    *epochs.0.lock().unwrap() += 1;
    let reply = call(&app, "GET", "/who", Some(&cookie)).await;
    assert!(
        reply.set_cookie.is_some_and(|c| c.contains("Max-Age=0")),
        "the cookie is removed"
    );
    assert_anonymous(&app, &cookie, "a replayed cookie after epoch revocation").await;
}

#[tokio::test]
async fn rotation_accepts_the_old_key_and_reissues_under_the_new() {
    let (old, new) = (generate_key(), generate_key());
    let before = app(
        CookieSessions::encrypted(KeyRing::parse(&old).unwrap()),
        SessionConfig::default(),
    );
    let cookie = logged_in(&before).await;

    let during = app(
        CookieSessions::encrypted(KeyRing::parse(&format!("{new},{old}")).unwrap()),
        SessionConfig::default(),
    );
    let reply = call(&during, "GET", "/who", Some(&cookie)).await;
    assert_eq!(
        reply.body, "alice",
        "a cookie under the fallback key is accepted"
    );
    let reissued = reply.cookie.expect("and re-issued on that response");
    assert_ne!(reissued, cookie);

    let after = app(
        CookieSessions::encrypted(KeyRing::parse(&new).unwrap()),
        SessionConfig::default(),
    );
    assert_eq!(
        call(&after, "GET", "/who", Some(&reissued)).await.body,
        "alice",
        "re-issued under the current key"
    );
    assert_anonymous(
        &after,
        &cookie,
        "the old cookie once the old key is dropped",
    )
    .await;
    let unchanged = call(&during, "GET", "/who", Some(&reissued)).await;
    assert!(
        unchanged.set_cookie.is_none(),
        "a cookie under the current key is not re-issued on a read"
    );
}

/// Encrypted and signed cookie sessions under new keys, without compression.
fn both_modes_uncompressed() -> [CookieSessions; 2] {
    [
        CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap()).with_compression(false),
        CookieSessions::signed(KeyRing::parse(&generate_key()).unwrap()).with_compression(false),
    ]
}

#[tokio::test]
async fn a_write_that_would_overflow_the_cookie_fails_with_a_typed_error() {
    for sessions in both_modes_uncompressed() {
        let app = app(sessions, SessionConfig::default());
        let small = call(&app, "POST", "/put/100", None).await;
        let cookie = small.cookie.expect("a cookie");
        let reply = call(&app, "POST", "/put/4000", Some(&cookie)).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            reply.set_cookie.is_none(),
            "the cookie is never silently dropped or truncated"
        );
        assert_eq!(
            call(&app, "GET", "/get", Some(&cookie)).await.body,
            "x".repeat(100),
            "the session is unchanged"
        );
        let mut largest = 0;
        for size in (2000..3000).step_by(50) {
            let reply = call(&app, "POST", &format!("/put/{size}"), Some(&cookie)).await;
            if let Some(set) = reply.set_cookie {
                assert!(
                    set.len() <= 4096,
                    "every Set-Cookie fits in 4096 bytes ({})",
                    set.len()
                );
                largest = largest.max(set.len());
            } else {
                assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
        assert!(
            largest > 2500,
            "values up to the limit still fit ({largest})"
        );
    }
}

/// A new session's first write is measured with what its cookie will carry: the commit
/// adds the request's client (IP and User-Agent, up to 512 bytes) to the sealed record, and
/// the write was checked without it, so a write that just fitted went out as a
/// `Set-Cookie` over 4096 bytes, which browsers drop, losing it.
#[tokio::test]
async fn a_new_sessions_first_write_counts_the_client_it_will_carry() {
    for sessions in both_modes_uncompressed() {
        let app = app(sessions, SessionConfig::default());
        let mut largest = 0;
        for size in (1800..2800).step_by(10) {
            let response = TestClient::new(app.clone())
                .send(
                    Request::builder()
                        .method("POST")
                        .uri(format!("/put/{size}"))
                        .header(header::USER_AGENT, "u".repeat(400))
                        .body(Body::empty()),
                )
                .await;
            match response.set_cookie("id") {
                Some(_) => {
                    let set = response.headers()[header::SET_COOKIE].len();
                    assert!(set <= 4096, "a {size}-byte write set a {set}-byte cookie");
                    largest = largest.max(set);
                }
                None => assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{size}"),
            }
        }
        assert!(
            largest > 3500,
            "writes up to the limit still fit ({largest})"
        );
    }
}

/// A persistent session whose deadline is centuries away (no absolute timeout, an idle
/// timeout as long as it goes) gets the `Max-Age` browsers keep at most, 400 days; its
/// twelve digits made the cookie two bytes longer than its size was checked at.
#[tokio::test]
async fn a_cookie_for_a_session_that_never_ends_fits() {
    let expiry = ExpiryPolicy::default()
        .with_idle_timeout(Some(Duration::MAX))
        .with_absolute_timeout(None)
        .with_persistent_by_default(true);
    for sessions in both_modes_uncompressed() {
        let app = app(
            sessions,
            SessionConfig::default().with_expiry(expiry.clone()),
        );
        let reply = call(&app, "POST", "/put/1", None).await;
        let set = reply.set_cookie.unwrap();
        assert!(set.ends_with("; Max-Age=34560000"), "{set}");
        assert_every_write_fits(&app, None, 2900..3200).await;
    }
}

/// Writes of every size in `sizes` from `cookie`: each either fits in a 4096-byte
/// `Set-Cookie` or fails with a 413; the larger ones that fit come close to the limit.
async fn assert_every_write_fits(
    app: &Router,
    cookie: Option<&str>,
    sizes: std::ops::Range<usize>,
) {
    let mut largest = 0;
    for size in sizes {
        let reply = call(app, "POST", &format!("/put/{size}"), cookie).await;
        match reply.set_cookie {
            Some(set) => {
                assert!(
                    set.len() <= 4096,
                    "a {size}-byte write set a {}-byte cookie",
                    set.len()
                );
                largest = largest.max(set.len());
            }
            None => assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{size}"),
        }
    }
    assert!(
        largest > 4080,
        "writes up to the limit still fit ({largest})"
    );
}

#[tokio::test]
async fn operations_that_need_a_server_say_so() {
    let app = app(
        CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap()),
        SessionConfig::default(),
    );
    let cookie = logged_in(&app).await;
    let reply = call(&app, "GET", "/devices", Some(&cookie)).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a programming error, not a client's"
    );
}

#[tokio::test]
async fn a_sealed_cookie_survives_junk_and_a_planted_cookie_in_front() {
    let sessions = CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap());
    let app = app(sessions.clone(), SessionConfig::default());
    let ours = logged_in(&app).await;
    let planted = logged_in(&app_with_new_key(&sessions)).await;
    let header = [
        b"id=".as_slice(),
        planted.as_bytes(),
        b"; theme=\xff\xfe; id=",
        ours.as_bytes(),
    ]
    .concat();
    let request = Request::builder()
        .uri("/who")
        .header(
            header::COOKIE,
            axum::http::HeaderValue::from_bytes(&header).unwrap(),
        )
        .body(Body::empty());
    let response = TestClient::new(app.clone()).send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>(),
        "alice",
        "the later cookie that opens is the session"
    );
}

/// Cookies sealed in format 1 (the record as JSON) by an earlier cloakroom, with what they
/// carry: cookies already in browsers keep working after an upgrade.
#[derive(serde::Deserialize)]
struct FormatOne {
    ring: String,
    cookie_name: String,
    session_key: String,
    encrypted: String,
    signed: String,
    record: cloakroom::Record,
}

fn format_one() -> FormatOne {
    serde_json::from_str(include_str!("fixtures/sealed_v1.json")).expect("the fixture parses")
}

/// Both fixture cookies, each with the sessions that opens it.
fn format_one_cookies(fixture: &FormatOne) -> [(CookieSessions, &str); 2] {
    let ring = KeyRing::parse(&fixture.ring).unwrap();
    [
        (CookieSessions::encrypted(ring.clone()), &fixture.encrypted),
        (CookieSessions::signed(ring), &fixture.signed),
    ]
}

#[test]
fn a_cookie_sealed_in_format_one_opens_with_its_record() {
    use cloakroom::CookieCodec;
    let fixture = format_one();
    for (sessions, value) in format_one_cookies(&fixture) {
        let mode = sessions.mode();
        let opened = sessions
            .open(&fixture.cookie_name, value)
            .unwrap_or_else(|| panic!("{mode:?}: a format 1 cookie opens"));
        assert_eq!(opened.key.to_hex(), fixture.session_key, "{mode:?}");
        assert_eq!(opened.record, fixture.record, "{mode:?}");
    }
}

#[tokio::test]
async fn a_cookie_sealed_in_format_one_is_a_live_session_through_the_layer() {
    let fixture = format_one();
    for (sessions, value) in format_one_cookies(&fixture) {
        let mode = sessions.mode();
        let app = app(sessions, SessionConfig::default());
        let reply = call(&app, "GET", "/who", Some(value)).await;
        assert_eq!(reply.status, StatusCode::OK, "{mode:?}");
        assert_eq!(reply.body, "alice", "{mode:?}: the user it was sealed with");
        let reissued = reply
            .cookie
            .unwrap_or_else(|| panic!("{mode:?}: re-issued on the first response"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&reissued)
            .unwrap();
        assert_eq!(bytes[0], 2, "{mode:?}: re-issued in format 2");
        let again = call(&app, "GET", "/who", Some(&reissued)).await;
        assert_eq!(again.body, "alice", "{mode:?}");
        assert!(again.set_cookie.is_none(), "{mode:?}: and not again");
    }
}

#[test]
fn a_cookie_sealed_in_format_one_reseals_in_format_two_with_the_same_contents() {
    use cloakroom::CookieCodec;
    let fixture = format_one();
    for (sessions, value) in format_one_cookies(&fixture) {
        let mode = sessions.mode();
        let name = &fixture.cookie_name;
        let old = sessions.open(name, value).unwrap();
        assert!(old.under_fallback, "{mode:?}: flagged for re-issue");
        let resealed = sessions.seal(name, &old.key, &old.record).unwrap();
        assert!(
            resealed.len() < value.len(),
            "{mode:?}: format 2 is the shorter ({} against {})",
            resealed.len(),
            value.len()
        );
        let new = sessions.open(name, &resealed).unwrap();
        assert!(!new.under_fallback, "{mode:?}: current");
        assert_eq!(new.key.to_hex(), fixture.session_key, "{mode:?}");
        assert_eq!(new.record, fixture.record, "{mode:?}");
    }
}

#[tokio::test]
async fn a_write_refused_for_the_cookie_size_leaves_the_session_size_as_it_was() {
    // The session limit is above what a cookie holds, so only a miscounted earlier write
    // could refuse the second one.
    let limits = cloakroom::Limits {
        max_value_bytes: 64 * 1024,
        max_session_bytes: 5000,
    };
    let manager = SessionManager::cookie(
        CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap()),
        SessionConfig::default().with_limits(limits),
    )
    .unwrap();
    let app = Router::new()
        .route(
            "/",
            post(|s: Session| async move {
                let refused = s.insert("big", "x".repeat(4000)).await;
                assert!(
                    matches!(refused, Err(SessionError::CookieTooLarge { .. })),
                    "{refused:?}"
                );
                assert_eq!(s.get::<String>("big").await.unwrap(), None, "not kept");
                s.insert("fits", "y".repeat(2000)).await.map(|()| "ok")
            }),
        )
        .layer(cloakroom::SessionLayer::from_manager(Arc::new(manager)));
    let reply = call(&app, "POST", "/", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert!(reply.cookie.is_some());
}

/// `SessionManager::session` (what integrations on other frameworks call) keeps a single
/// `Cookie` line and reads it when first touched, and parses several lines at once: the
/// session opens either way, behind junk and in any line.
#[tokio::test]
async fn integrations_open_the_cookie_from_one_line_or_several() {
    let sessions = CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap());
    let app = app(sessions.clone(), SessionConfig::default());
    let cookie = format!("id={}", logged_in(&app).await);
    let manager = Arc::new(SessionManager::cookie(sessions, SessionConfig::default()).unwrap());
    let junk_first = format!("theme=dark; id=junk; {cookie}");
    let cases: [(&str, Vec<&[u8]>); 4] = [
        ("one line", vec![cookie.as_bytes()]),
        ("one line, junk first", vec![junk_first.as_bytes()]),
        ("second of two lines", vec![b"id=junk", cookie.as_bytes()]),
        (
            "first of three lines",
            vec![cookie.as_bytes(), b"x=1", b"id=junk"],
        ),
    ];
    for (what, lines) in cases {
        let session = manager.session(lines, Default::default());
        assert_eq!(
            session.user().await.unwrap().as_deref(),
            Some("alice"),
            "{what}"
        );
    }
    let session = manager.session([&b"id=junk"[..]], Default::default());
    assert_eq!(
        session.user().await.unwrap(),
        None,
        "junk alone is anonymous"
    );
    let session = manager.session(std::iter::empty(), Default::default());
    assert_eq!(
        session.user().await.unwrap(),
        None,
        "no cookie is anonymous"
    );
}
