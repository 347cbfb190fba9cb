//! The session cookie through the layer, with a real (in-process) store: one bad byte
//! elsewhere in the `Cookie` header does not cost the session, a cookie with an unknown ID
//! tossed in front of ours from a sibling subdomain does not hide it, and an ID the store
//! does not know is still never adopted. (A tossed ID of a live session, the attacker's
//! own, does win: only the `__Host-` prefix stops sibling subdomains setting the cookie.)

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::testing::TestClient;
use cloakroom::{
    CookieConfig, MemoryStore, Session, SessionConfig, SessionError, SessionId, SessionLayer,
};
use serde_json::Value;

fn app() -> Router {
    app_with(SessionConfig::default())
}

fn app_with(config: SessionConfig) -> Router {
    Router::new()
        .route(
            "/as/{who}",
            post(|s: Session, Path(who): Path<String>| async move {
                s.insert("who", who).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/put",
            post(|s: Session| async move {
                s.insert("who", "alice").await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/get",
            get(|s: Session| async move { s.get::<String>("who").await.map(Json) }),
        )
        .layer(SessionLayer::try_new(MemoryStore::new(), config).unwrap())
}

struct Reply {
    status: StatusCode,
    set_cookie: Option<String>,
    body: Value,
}

/// Sends `cookies` as one `Cookie` header line each (raw bytes: not necessarily text).
async fn call(app: &Router, method: &str, path: &str, cookies: &[&[u8]]) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for line in cookies {
        request = request.header(header::COOKIE, HeaderValue::from_bytes(line).unwrap());
    }
    let response = TestClient::new(app.clone())
        .send(request.body(Body::empty()))
        .await;
    Reply {
        status: response.status(),
        set_cookie: response.set_cookie("id").map(str::to_owned),
        body: serde_json::from_slice(response.bytes()).unwrap_or(Value::Null),
    }
}

/// A stored session's ID, in cookie form.
async fn stored_session(app: &Router) -> String {
    let reply = call(app, "POST", "/put", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let set = reply.set_cookie.expect("a new session sends its cookie");
    set.strip_prefix("id=")
        .and_then(|c| c.split(';').next())
        .expect("id=<value>; ...")
        .to_owned()
}

async fn who(app: &Router, cookies: &[&[u8]]) -> Value {
    let reply = call(app, "GET", "/get", cookies).await;
    assert_eq!(reply.status, StatusCode::OK, "a bad cookie is never a 5xx");
    reply.body
}

#[tokio::test]
async fn a_tossed_unknown_id_in_front_does_not_hide_the_real_session() {
    let app = app();
    let valid = stored_session(&app).await;
    let unknown = SessionId::generate().to_cookie_value();
    let header = format!("id={unknown}; id={valid}");
    assert_eq!(
        who(&app, &[header.as_bytes()]).await,
        "alice",
        "the later, known ID is the session"
    );
    let across_lines = format!("id={valid}");
    assert_eq!(
        who(
            &app,
            &[format!("id={unknown}").as_bytes(), across_lines.as_bytes()]
        )
        .await,
        "alice",
        "also when the cookies come on separate header lines"
    );
    let three = format!(
        "id={}; id={unknown}; id=\"{valid}\"",
        SessionId::generate().to_cookie_value()
    );
    assert_eq!(who(&app, &[three.as_bytes()]).await, "alice");
}

#[tokio::test]
async fn junk_bytes_in_other_cookies_do_not_cost_the_session() {
    let app = app();
    let valid = stored_session(&app).await;
    let cases: Vec<Vec<u8>> = vec![
        // Another cookie's value with bytes that are not UTF-8.
        [&b"theme=\xff\xfe; id="[..], valid.as_bytes()].concat(),
        [&b"id="[..], valid.as_bytes(), b"; tracker=caf\xe9"].concat(),
        // UTF-8, but not visible ASCII.
        [
            "name=Zo\u{eb}; id=".as_bytes(),
            valid.as_bytes(),
            "; emoji=\u{1f36a}".as_bytes(),
        ]
        .concat(),
        // Malformed pairs and malformed session cookies before the valid one.
        [
            &b"=; ;;garbage; id=; id=short; id=\"; id="[..],
            valid.as_bytes(),
        ]
        .concat(),
    ];
    for case in &cases {
        assert_eq!(
            who(&app, &[case]).await,
            "alice",
            "{}",
            String::from_utf8_lossy(case)
        );
    }
}

#[tokio::test]
async fn unknown_ids_are_never_adopted_wherever_they_stand() {
    let app = app();
    let valid = stored_session(&app).await;
    let unknown = SessionId::generate().to_cookie_value();
    for header in [
        format!("id={unknown}"),
        format!(
            "id={unknown}; id={}",
            SessionId::generate().to_cookie_value()
        ),
        format!("x=\u{e9}; id={unknown}"),
    ] {
        assert_eq!(who(&app, &[header.as_bytes()]).await, Value::Null);
        let reply = call(&app, "POST", "/put", &[header.as_bytes()]).await;
        let set = reply.set_cookie.expect("a write mints a new session");
        assert!(
            !set.contains(&unknown),
            "{header}: the unknown ID is adopted"
        );
        assert!(!set.contains(&valid));
    }
    // With the known ID after an unknown one, a write keeps the known session.
    let header = format!("id={unknown}; id={valid}");
    let reply = call(&app, "POST", "/put", &[header.as_bytes()]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .set_cookie
            .as_deref()
            .is_none_or(|c| !c.contains(&unknown)),
        "the unknown ID is never sent back"
    );
}

#[tokio::test]
async fn only_the_first_few_distinct_candidates_are_tried() {
    let app = app();
    let valid = stored_session(&app).await;
    let unknown = SessionId::generate().to_cookie_value();
    // Repeats of one ID count once.
    let repeated = format!("{}id={valid}", format!("id={unknown}; ").repeat(100));
    assert_eq!(who(&app, &[repeated.as_bytes()]).await, "alice");
    // Within the bound, the known ID is found.
    let within: String = (1..cloakroom::codec::MAX_CANDIDATES)
        .map(|_| format!("id={}; ", SessionId::generate().to_cookie_value()))
        .collect();
    let header = format!("{within}id={valid}");
    assert_eq!(who(&app, &[header.as_bytes()]).await, "alice");
    // Past it, the request is anonymous: a defined result, and bounded store work.
    let past: String = (0..100)
        .map(|_| format!("id={}; ", SessionId::generate().to_cookie_value()))
        .collect();
    let header = format!("{past}id={valid}");
    assert_eq!(who(&app, &[header.as_bytes()]).await, Value::Null);
}

/// What duplicates cannot defend against: a sibling subdomain that plants the attacker's
/// own live session ID in front of ours gets it used (the victim acts in the attacker's
/// session). Only the `__Host-` prefix stops that: browsers refuse a `__Host-` cookie set
/// with a `Domain`, so a sibling can plant only a cookie of another name, which is ignored.
#[tokio::test]
async fn a_tossed_live_id_in_front_wins_unless_the_host_prefix_is_on() {
    async fn session_as(app: &Router, who: &str, name: &str) -> String {
        let response = TestClient::new(app.clone())
            .post(&format!("/as/{who}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response
            .session_cookie(name)
            .expect("a new session sends its cookie")
            .to_owned()
    }

    let host_prefix =
        SessionConfig::default().with_cookie(CookieConfig::default().with_host_prefix(true));
    // (app, its session cookie's name, who the tossed header is read as, why).
    let cases = [
        (
            app(),
            "id",
            "mallory",
            "without the prefix a planted live ID wins (documented)",
        ),
        (
            app_with(host_prefix),
            "__Host-id",
            "victim",
            "with __Host-, a cookie a sibling can plant is not the session cookie",
        ),
    ];
    for (app, name, winner, why) in cases {
        let victim = session_as(&app, "victim", name).await;
        let attacker = session_as(&app, "mallory", name).await;
        // The attacker's plain `id` cookie in front of the victim's own.
        let tossed = format!("id={attacker}; {name}={victim}");
        assert_eq!(who(&app, &[tossed.as_bytes()]).await, winner, "{why}");
    }
}
