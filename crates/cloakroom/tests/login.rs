//! Regression tests for `Session::login`: a failed login changes nothing, and a login as
//! another user starts a fresh session instead of inheriting the previous user's; and for
//! a failed commit, which sends the browser nothing it did not save.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::conformance::{HookedStore, Operation, Outage};
use cloakroom::testing::TestClient;
use cloakroom::{MemoryStore, Session, SessionConfig, SessionError, SessionLayer, SessionStore};

mod support;
use support::{app, call, pair};

/// Bob logging in over Alice's remembered session gets a fresh session: not her
/// remember-me cookie, not her creation time.
#[tokio::test]
async fn login_as_another_user_starts_a_fresh_session() {
    let app = app(MemoryStore::new(), SessionConfig::default());
    let c = pair(&call(&app, "POST", "/put", None).await.1.unwrap());
    let c = pair(
        &call(&app, "POST", "/login/alice", Some(&c))
            .await
            .1
            .unwrap(),
    );
    let set = call(&app, "POST", "/remember", Some(&c)).await.1;
    let c = set.map(|s| pair(&s)).unwrap_or(c);
    let alice = call(&app, "GET", "/meta", Some(&c)).await.2;
    assert_eq!(alice["persistent"], true, "setup: {alice}");
    // Timestamps have millisecond precision: a fresh session is created strictly later.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let (status, set, _) = call(&app, "POST", "/login/bob", Some(&c)).await;
    assert_eq!(status, StatusCode::OK);
    let set = set.unwrap();
    assert!(
        !set.contains("Max-Age"),
        "Bob's cookie is not remembered: {set}"
    );
    let bob = call(&app, "GET", "/meta", Some(&pair(&set))).await.2;
    assert_eq!(bob["user"], "bob");
    assert!(
        bob["persistent"] == false && bob["created"] != alice["created"],
        "Bob's fresh login inherited Alice's session: {bob}"
    );
    let old = call(&app, "GET", "/meta", Some(&c)).await;
    assert_eq!(
        old.2["user"],
        serde_json::Value::Null,
        "Alice's ID is dead: {:?}",
        old.2
    );
}

/// A remember-me choice made before logging in as another user is this login's own, and
/// stays: only the previous user's goes. The fresh session took the configured default,
/// so Bob ticking "remember me" got a browser-session cookie, and, where sessions are
/// remembered by default, Bob unticking it on a shared computer stayed remembered.
#[tokio::test]
async fn a_remember_me_choice_made_before_switching_users_stays() {
    // (remembered by default, Alice remembered, Bob's choice): Bob choosing what Alice's
    // session already had counts too.
    for (by_default, alice, chosen) in [
        (false, false, true),
        (false, true, true),
        (true, true, false),
        (true, false, false),
    ] {
        let expiry = cloakroom::ExpiryPolicy::default().with_persistent_by_default(by_default);
        let app = app(
            MemoryStore::new(),
            SessionConfig::default().with_expiry(expiry),
        );
        let path = format!("/login/alice/remember/{alice}");
        let c = pair(&call(&app, "POST", &path, None).await.1.unwrap());
        let path = format!("/login/bob/remember/{chosen}");
        let (status, set, _) = call(&app, "POST", &path, Some(&c)).await;
        assert_eq!(status, StatusCode::OK);
        let set = set.unwrap();
        assert_eq!(set.contains("Max-Age"), chosen, "{path}: {set}");
        let bob = call(&app, "GET", "/meta", Some(&pair(&set))).await.2;
        assert_eq!(bob["user"], "bob");
        assert_eq!(bob["persistent"], chosen, "{path}: {bob}");
    }
}

/// Client-side sessions: a login whose cookie would not fit (a long user agent) fails
/// as a whole; the layer must not commit a half-done login with the user in it.
#[tokio::test]
async fn a_failed_login_changes_nothing_client_side() {
    use cloakroom::{generate_key, CookieSessions, KeyRing, SessionManager};
    let sessions = CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap());
    let manager = Arc::new(SessionManager::cookie(sessions, SessionConfig::default()).unwrap());
    let app = Router::new()
        .route("/fill/{n}", post(support::fill))
        .route(
            "/login",
            post(|s: Session| async move {
                let result = s.login("bob").await;
                let failed = result.is_err();
                result?;
                // An app's next step, skipped when login fails.
                s.insert("mfa_pending", true).await?;
                Ok::<_, SessionError>(format!("{failed}"))
            }),
        )
        .route(
            "/who",
            get(|s: Session| async move {
                Ok::<_, SessionError>(Json(serde_json::json!({
                    "user": s.user().await?, "mfa": s.get::<bool>("mfa_pending").await?
                })))
            }),
        )
        .layer(SessionLayer::from_manager(manager));
    let long_ua = "U".repeat(4000);
    // Find the largest cart that still fits, so that the login's SetClient tips it over.
    let mut found = None;
    for n in (2000..3200).rev().step_by(16) {
        let (status, set, _) = call(&app, "POST", &format!("/fill/{n}"), None).await;
        if status == StatusCode::OK {
            drop(set);
            // Room for SetUser and SetEpoch, not for a 512-byte user agent.
            let (_, set, _) = call(&app, "POST", &format!("/fill/{}", n - 200), None).await;
            found = Some(pair(&set.unwrap()));
            break;
        }
    }
    let cookie = found.expect("some cart fits");
    let request = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::COOKIE, &cookie)
        .header(header::USER_AGENT, &long_ua)
        .body(Body::empty());
    let response = TestClient::new(app.clone()).send(request).await;
    let status = response.status();
    let set = response.set_cookies().first().map(|v| pair(v));
    eprintln!("login status {status}, set-cookie sent: {}", set.is_some());
    assert_ne!(status, StatusCode::OK, "setup: the login must fail");
    let after = call(&app, "GET", "/who", Some(&set.unwrap_or(cookie)))
        .await
        .2;
    assert_eq!(
        after["user"],
        serde_json::Value::Null,
        "a failed login left the session logged in: {after}"
    );
}

/// The test app over a memory store whose `operation` fails while the outage is on, and a
/// visitor's session on it (its cookie); the outage is not on yet.
async fn a_visitor_before_an_outage(
    operation: Operation,
) -> (Router, Arc<Outage>, Arc<MemoryStore>, String) {
    let outage = Arc::new(Outage::only(operation));
    let memory = Arc::new(MemoryStore::new());
    let store = HookedStore::with_hook(memory.clone(), Arc::clone(&outage));
    let app = app(store, SessionConfig::default());
    let visitor = pair(&call(&app, "POST", "/put", None).await.1.unwrap());
    (app, outage, memory, visitor)
}

/// `POST path` with `cookie` while the outage is on, which must answer 503 with no cookie;
/// then what `/meta` shows of the session once the outage is over.
async fn refused_during_the_outage(
    app: &Router,
    outage: &Outage,
    path: &str,
    cookie: &str,
) -> serde_json::Value {
    outage.start();
    let (status, set, _) = call(app, "POST", path, Some(cookie)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    assert_eq!(
        set, None,
        "{path}: no cookie for what the store did not save"
    );
    outage.end();
    call(app, "GET", "/meta", Some(cookie)).await.2
}

/// Server-side: Bob's login over Alice's session fails when her record cannot be deleted;
/// her session is then exactly as it was (still hers, her data, her ID live).
#[tokio::test]
async fn a_failed_login_over_another_users_session_changes_nothing() {
    // A store outage at the moment Bob's login ends Alice's session.
    let (app, outage, memory, c) = a_visitor_before_an_outage(Operation::Delete).await;
    let alice = pair(
        &call(&app, "POST", "/login/alice", Some(&c))
            .await
            .1
            .unwrap(),
    );
    let seen = refused_during_the_outage(&app, &outage, "/login/bob", &alice).await;
    assert_eq!(seen["user"], "alice", "{seen}");
    assert_eq!(memory.list_for_user("bob").await.unwrap().len(), 0);
}

/// An epoch source giving the same epoch to everyone.
struct FixedEpoch(String);

#[async_trait::async_trait]
impl cloakroom::EpochSource for FixedEpoch {
    async fn current_epoch(&self, _user: &str) -> Result<Option<String>, cloakroom::BoxError> {
        Ok(Some(self.0.clone()))
    }
}

/// A user id or epoch that some store cannot keep is refused by `login` itself, with a
/// typed error and nothing changed. Before, PostgreSQL refused a NUL and MySQL an id over
/// 1,020 bytes, and each answered every login of that user with a 503 (a store error);
/// Redis took an empty id for no user and left the session out of the index, so that
/// revoking the user missed it.
#[tokio::test]
async fn logins_no_store_could_keep_are_refused() {
    let login_as = |config: SessionConfig| {
        Router::new()
            .route("/put", post(support::put))
            .route(
                "/login",
                post(|s: Session, user: String| async move {
                    match s.login(user).await {
                        Ok(()) => Ok(String::from("ok")),
                        Err(error @ SessionError::InvalidUserId { .. })
                        | Err(error @ SessionError::InvalidEpoch { .. }) => {
                            Ok(format!("refused: {error}"))
                        }
                        Err(error) => Err(error),
                    }
                }),
            )
            .route(
                "/who",
                get(|s: Session| async move { s.user().await.map(Json) }),
            )
            .layer(SessionLayer::try_new(MemoryStore::new(), config).unwrap())
    };
    let login = |app: Router, cookie: String, user: String| async move {
        let request = Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::COOKIE, &cookie)
            .body(Body::from(user));
        let response = TestClient::new(app.clone()).send(request).await;
        let set = response.set_cookies().first().map(|v| pair(v));
        let who = call(&app, "GET", "/who", Some(set.as_deref().unwrap_or(&cookie)))
            .await
            .2;
        (response.text(), set, who)
    };

    let app = login_as(SessionConfig::default());
    let visitor = pair(&call(&app, "POST", "/put", None).await.1.unwrap());
    let longest = "x".repeat(cloakroom::record::MAX_USER_ID_BYTES);
    for user in [
        String::new(),
        "a\0b".to_owned(),
        format!("{longest}y"),
        "é".repeat(cloakroom::record::MAX_USER_ID_BYTES / 2 + 1),
    ] {
        let (body, set, who) = login(app.clone(), visitor.clone(), user.clone()).await;
        assert!(
            body.starts_with("refused: the user id cannot be stored"),
            "{user:?}: {body}"
        );
        assert_eq!(set, None, "{user:?}: no new cookie");
        assert_eq!(who, serde_json::Value::Null, "{user:?}: still a visitor");
    }
    let (body, set, who) = login(app.clone(), visitor.clone(), longest.clone()).await;
    assert_eq!(body, "ok");
    assert!(set.is_some(), "the login rotated the ID");
    assert_eq!(
        who,
        serde_json::Value::String(longest),
        "the longest id logs in"
    );

    let epoch = |epoch: String| SessionConfig::default().with_epochs(FixedEpoch(epoch));
    let too_long = login_as(epoch("7".repeat(cloakroom::record::MAX_EPOCH_BYTES + 1)));
    let visitor = pair(&call(&too_long, "POST", "/put", None).await.1.unwrap());
    let (body, set, who) = login(too_long, visitor, "alice".into()).await;
    assert!(
        body.starts_with("refused: the user's epoch cannot be stored"),
        "{body}"
    );
    assert_eq!((set, who), (None, serde_json::Value::Null));
    let longest = login_as(epoch("7".repeat(cloakroom::record::MAX_EPOCH_BYTES)));
    let visitor = pair(&call(&longest, "POST", "/put", None).await.1.unwrap());
    let (body, _, who) = login(longest, visitor, "alice".into()).await;
    assert_eq!((body.as_str(), who), ("ok", serde_json::json!("alice")));
}

/// A commit that fails (a store outage: 503) sends no cookie for what it did not save.
/// Ticking "remember me" set the cookie's `Max-Age` before the commit, and the 503 carried
/// it: the browser kept a persistent cookie for a session the store holds as a
/// browser-session one.
#[tokio::test]
async fn a_failed_commit_sends_no_cookie_for_what_it_did_not_save() {
    let (app, outage, _, c) = a_visitor_before_an_outage(Operation::Update).await;
    let seen = refused_during_the_outage(&app, &outage, "/remember", &c).await;
    assert_eq!(seen["persistent"], false, "{seen}");
}

/// A response that sets the session cookie stays out of shared caches, even where its
/// handler called it public: a CDN that stored this login would log every later visitor
/// in as its user. A handler's own `private` or `no-store` is left as it is.
#[tokio::test]
async fn a_response_setting_the_session_cookie_is_private() {
    let cached = |directives: &'static str| {
        post(move |session: Session| async move {
            session.login("alice").await?;
            let headers = [
                (header::CACHE_CONTROL, directives),
                (
                    header::HeaderName::from_static("cdn-cache-control"),
                    "max-age=600",
                ),
            ];
            Ok::<_, SessionError>((headers, "ok"))
        })
    };
    let app = Router::new()
        .route("/public", cached("public, max-age=600, s-maxage=600"))
        .route("/no-store", cached("no-store"))
        .route(
            "/read",
            get(|session: Session| async move { session.user().await.map(|_| "read") }),
        )
        .layer(SessionLayer::new(MemoryStore::new()));
    let cache_control = |response: &cloakroom::testing::TestResponse| {
        response
            .headers()
            .get_all(header::CACHE_CONTROL)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let mut browser = TestClient::new(app);
    let login = browser.post("/public").await;
    assert_eq!(login.set_cookies().len(), 1);
    assert_eq!(cache_control(&login), ["max-age=600, private"]);
    assert!(login.headers().get("cdn-cache-control").is_none());
    let login = browser.post("/no-store").await;
    assert_eq!(login.set_cookies().len(), 1);
    assert_eq!(cache_control(&login), ["no-store"]);
    let read = browser.get("/read").await;
    assert_eq!(read.status(), StatusCode::OK);
    assert!(read.set_cookies().is_empty());
    assert!(cache_control(&read).is_empty());
}
