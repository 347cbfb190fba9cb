//! The actix-web integration end to end, through `actix_web::test`, on real stores
//! (memory and SQLite): cookies, data and identity, laziness, strictness, concurrency,
//! the failure policy, size limits, and client-side cookie sessions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{HeaderValue, COOKIE, RETRY_AFTER, SET_COOKIE, VARY};
use actix_web::http::StatusCode;
use actix_web::{test, web, App, HttpResponse};
use async_trait::async_trait;
use cloakroom::conformance::CountingStore;
use cloakroom::{
    generate_key, BoxError, ClientIpSource, CookieSessions, EpochSource, InsertError, KeyRing,
    Limits, ListQuery, MemoryStore, Record, RenameError, SessionConfig, SessionEntry,
    SessionHandle, SessionManager, SessionStore, StoreError, StoreKey, Touch, TouchError,
    UpdateError,
};
use cloakroom_actix::{Session, SessionError, SessionMiddleware};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// The app under test: the same routes as the core's HTTP conformance cases.

#[derive(serde::Deserialize)]
struct Delay {
    delay_ms: Option<u64>,
}

async fn pause(delay: &Delay) {
    if let Some(ms) = delay.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/untouched", web::get().to(|| async { "ok" }))
        .route(
            "/get/{key}",
            web::get().to(|s: Session, key: web::Path<String>| async move {
                let value = s.get::<Value>(&key).await?;
                Ok::<_, SessionError>(web::Json(value))
            }),
        )
        .route(
            "/set/{key}",
            web::post().to(
                |s: Session, key: web::Path<String>, d: web::Query<Delay>, v: web::Json<Value>| async move {
                    s.get::<Value>(&key).await?;
                    pause(&d).await;
                    s.insert(&key, v.into_inner()).await?;
                    Ok::<_, SessionError>("ok")
                },
            ),
        )
        .route(
            "/incr/{key}",
            web::post().to(|s: Session, key: web::Path<String>, d: web::Query<Delay>| async move {
                let n = s.update(&key, |n: Option<u64>| n.unwrap_or(0) + 1).await?;
                pause(&d).await;
                Ok::<_, SessionError>(web::Json(n))
            }),
        )
        .route(
            "/fail/{key}",
            web::post().to(|s: Session, key: web::Path<String>| async move {
                s.insert(&key, true).await?;
                Ok::<_, SessionError>(HttpResponse::InternalServerError().finish())
            }),
        )
        .route(
            "/login/{user}",
            web::post().to(|s: Session, user: web::Path<String>| async move {
                s.login(user.into_inner()).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/logout",
            web::post().to(|s: Session| async move {
                s.logout().await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/whoami",
            web::get().to(|s: Session| async move { Ok::<_, SessionError>(web::Json(s.user().await?)) }),
        )
        .route(
            "/sessions",
            web::get().to(|s: Session| async move {
                Ok::<_, SessionError>(web::Json(s.list_user_sessions().await?))
            }),
        )
        .route(
            "/revoke-others",
            web::post().to(|s: Session| async move {
                Ok::<_, SessionError>(web::Json(s.revoke_other_sessions().await?))
            }),
        );
}

fn manager(store: Arc<dyn SessionStore>, config: SessionConfig) -> Arc<SessionManager> {
    Arc::new(SessionManager::from_arc(store, config).expect("valid test configuration"))
}

/// An app over `manager`, with every route.
macro_rules! app {
    ($manager:expr) => {
        test::init_service(
            App::new()
                .wrap(SessionMiddleware::from_manager($manager))
                .configure(routes),
        )
        .await
    };
}

// ---------------------------------------------------------------------------------------
// A client: send a request, read what came back.

struct Reply {
    status: StatusCode,
    set_cookie: Vec<String>,
    vary: Vec<String>,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    /// The `name=value` of the one session cookie this response set.
    fn cookie(&self) -> String {
        assert_eq!(
            self.set_cookie.len(),
            1,
            "one Set-Cookie: {:?}",
            self.set_cookie
        );
        self.set_cookie[0].split(';').next().unwrap().to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("JSON body: {:?}", self.body))
    }
}

async fn send<S, R, B>(app: &S, request: R) -> Reply
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let response = test::call_service(app, request).await;
    let headers = response.headers();
    let all = |name| {
        headers
            .get_all(name)
            .map(|value: &HeaderValue| value.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let set_cookie = all(SET_COOKIE);
    let vary = all(VARY);
    let retry_after = all(RETRY_AFTER).pop();
    let status = response.status();
    let body = test::read_body(response).await;
    Reply {
        status,
        set_cookie,
        vary,
        retry_after,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn get(uri: &str, cookie: Option<&str>) -> Request {
    with_cookie(test::TestRequest::get().uri(uri), cookie)
}

fn post(uri: &str, cookie: Option<&str>, body: Value) -> Request {
    with_cookie(test::TestRequest::post().uri(uri).set_json(body), cookie)
}

fn with_cookie(request: test::TestRequest, cookie: Option<&str>) -> Request {
    match cookie {
        Some(cookie) => request.insert_header((COOKIE, cookie)),
        None => request,
    }
    .to_request()
}

// ---------------------------------------------------------------------------------------
// Stores: memory, SQLite, and failure injection over a real store.

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn SessionStore> {
    Arc::new(
        cloakroom_sqlx::SqliteStore::open(dir.path().join("sessions.db"))
            .await
            .expect("open sqlite"),
    )
}

/// A real store that answers `StoreError::Unavailable` to everything while `down` is set,
/// as a store whose server went away does.
struct Outage {
    inner: Arc<dyn SessionStore>,
    down: AtomicBool,
}

impl Outage {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("injected outage"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SessionStore for Outage {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.check()?;
        self.inner.load(key).await
    }
    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        self.check()?;
        self.inner.insert(key, record).await
    }
    async fn update(
        &self,
        key: &StoreKey,
        record: &Record,
        expected: u64,
    ) -> Result<(), UpdateError> {
        self.check()?;
        self.inner.update(key, record, expected).await
    }
    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        self.check()?;
        self.inner.touch(key, touch).await
    }
    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        self.check()?;
        self.inner.rename(old, new).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(key).await
    }
    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        self.check()?;
        self.inner.list_for_user(user).await
    }
    async fn delete_for_user(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.delete_for_user(user, except).await
    }
    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.purge_expired(batch).await
    }
    async fn purge_expired_with_progress(
        &self,
        batch: usize,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, StoreError> {
        self.check()?;
        self.inner
            .purge_expired_with_progress(batch, progress)
            .await
    }
    async fn find_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionEntry>, StoreError> {
        self.check()?;
        self.inner.find_by_handle(handle).await
    }
    async fn list_sessions(&self, query: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        self.check()?;
        self.inner.list_sessions(query).await
    }
}

async fn live_sessions(store: &Arc<dyn SessionStore>) -> usize {
    let query = ListQuery {
        limit: 1000,
        ..ListQuery::default()
    };
    store.list_sessions(&query).await.expect("list").len()
}

// ---------------------------------------------------------------------------------------
// Cases, each run on every store where it says so.

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

#[actix_web::test]
async fn data_round_trip_memory() {
    data_round_trip(memory()).await;
}

#[actix_web::test]
async fn data_round_trip_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    data_round_trip(sqlite(&dir).await).await;
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
    assert_eq!(
        send(&app, get("/get/cart", Some(&before))).await.json(),
        Value::Null
    );
    assert_eq!(
        send(&app, get("/whoami", Some(&before))).await.json(),
        Value::Null
    );
    assert_eq!(
        send(&app, get("/get/cart", Some(&after))).await.json(),
        json!(["socks"])
    );
    assert_eq!(
        send(&app, get("/whoami", Some(&after))).await.json(),
        json!("alice")
    );
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
    assert_eq!(
        send(&app, get("/get/k", Some(&cookie))).await.json(),
        Value::Null
    );
}

async fn concurrent_increments_are_exact(store: Arc<dyn SessionStore>) {
    let app = app!(manager(store, SessionConfig::default()));
    let cookie = send(&app, post("/incr/n", None, Value::Null))
        .await
        .cookie();
    const WRITERS: u64 = 40;
    // Every writer reads the same version, then waits, so their commits collide.
    let replies = futures_util::future::join_all((0..WRITERS).map(|_| {
        send(
            &app,
            post("/incr/n?delay_ms=20", Some(&cookie), Value::Null),
        )
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(
        send(&app, get("/get/n", Some(&cookie))).await.json(),
        json!(WRITERS + 1)
    );
}

#[actix_web::test]
async fn concurrent_increments_are_exact_memory() {
    concurrent_increments_are_exact(Arc::new(
        CountingStore::new(memory()).with_update_delay(Duration::from_millis(2)),
    ))
    .await;
}

#[actix_web::test]
async fn concurrent_increments_are_exact_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_increments_are_exact(sqlite(&dir).await).await;
}

async fn logout_racing_a_slow_writer_does_not_resurrect(store: Arc<dyn SessionStore>) {
    let app = app!(manager(Arc::clone(&store), SessionConfig::default()));
    let cookie = send(&app, post("/set/a", None, json!(1))).await.cookie();
    // The writer loads the session, then the logout commits while it waits.
    let (write, logout) = futures_util::future::join(
        send(&app, post("/set/b?delay_ms=200", Some(&cookie), json!(2))),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            send(&app, post("/logout", Some(&cookie), Value::Null)).await
        },
    )
    .await;
    assert_eq!(logout.status, StatusCode::OK);
    assert!(
        write.set_cookie.is_empty(),
        "the late writer sends no cookie: {:?}",
        write.set_cookie
    );
    assert_eq!(live_sessions(&store).await, 0, "nothing came back");
    assert_eq!(
        send(&app, get("/get/a", Some(&cookie))).await.json(),
        Value::Null
    );
    assert_eq!(
        send(&app, get("/get/b", Some(&cookie))).await.json(),
        Value::Null
    );
}

#[actix_web::test]
async fn logout_racing_a_slow_writer_does_not_resurrect_memory() {
    logout_racing_a_slow_writer_does_not_resurrect(memory()).await;
}

#[actix_web::test]
async fn logout_racing_a_slow_writer_does_not_resurrect_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    logout_racing_a_slow_writer_does_not_resurrect(sqlite(&dir).await).await;
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
    let listed = send(&app, get("/sessions", Some(&devices[0]))).await.json();
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
    assert_eq!(
        send(&app, get("/whoami", Some(&devices[0]))).await.json(),
        json!("bob")
    );
    for other in &devices[1..] {
        assert_eq!(
            send(&app, get("/whoami", Some(other))).await.json(),
            Value::Null
        );
    }
}

#[actix_web::test]
async fn a_store_outage_is_503_with_retry_after() {
    let outage = Arc::new(Outage {
        inner: memory(),
        down: AtomicBool::new(false),
    });
    let app = app!(manager(outage.clone(), SessionConfig::default()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    outage.down.store(true, Ordering::SeqCst);
    for reply in [
        send(&app, get("/get/k", Some(&cookie))).await,
        send(&app, post("/set/k", Some(&cookie), json!(2))).await,
        send(&app, post("/set/k", None, json!(2))).await,
    ] {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.body
        );
        assert_eq!(reply.retry_after.as_deref(), Some("5"));
        assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
    }
    // Requests that never touch the session do not depend on the store.
    assert_eq!(
        send(&app, get("/untouched", Some(&cookie))).await.status,
        StatusCode::OK
    );
    outage.down.store(false, Ordering::SeqCst);
    assert_eq!(
        send(&app, get("/get/k", Some(&cookie))).await.json(),
        json!(1)
    );
}

#[actix_web::test]
async fn an_oversized_value_is_413_and_nothing_is_saved() {
    let limits = Limits {
        max_value_bytes: 64,
        ..Limits::default()
    };
    let store = memory();
    let app = app!(manager(
        Arc::clone(&store),
        SessionConfig::default().with_limits(limits)
    ));
    let reply = send(&app, post("/set/big", None, json!("x".repeat(100)))).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply.body.contains("max_value_bytes"),
        "the reason says the fix: {}",
        reply.body
    );
    assert!(reply.set_cookie.is_empty(), "{:?}", reply.set_cookie);
    assert_eq!(live_sessions(&store).await, 0);
}

/// A value nested past `cloakroom::MAX_VALUE_DEPTH` is a 413 like the other limits,
/// as through axum (it was a 500 here).
#[actix_web::test]
async fn a_too_deeply_nested_value_is_413() {
    let store = memory();
    let app = app!(manager(Arc::clone(&store), SessionConfig::default()));
    let mut deep = json!(1);
    for _ in 0..cloakroom::MAX_VALUE_DEPTH + 1 {
        deep = json!([deep]);
    }
    let reply = send(&app, post("/set/deep", None, deep)).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    assert_eq!(live_sessions(&store).await, 0);
}

#[actix_web::test]
async fn a_server_error_response_discards_the_changes() {
    let app = app!(manager(memory(), SessionConfig::default()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    let failed = send(&app, post("/fail/k", Some(&cookie), Value::Null)).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        send(&app, get("/get/k", Some(&cookie))).await.json(),
        json!(1)
    );
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
async fn client_side_cookie_sessions_round_trip_sealed() {
    let ring = KeyRing::parse(&generate_key()).unwrap();
    let manager = SessionManager::cookie(CookieSessions::encrypted(ring), SessionConfig::default())
        .expect("valid configuration");
    let app = app!(Arc::new(manager));
    let set = send(&app, post("/set/secret", None, json!("hunter2"))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let cookie = set.cookie();
    assert!(
        !cookie.contains("hunter2"),
        "the value is encrypted: {cookie}"
    );
    assert_eq!(
        send(&app, get("/get/secret", Some(&cookie))).await.json(),
        json!("hunter2")
    );

    // One flipped character: the seal fails and the request is anonymous.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let reply = send(&app, get("/get/secret", Some(&tampered))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), Value::Null);
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
async fn session_errors_answer_with_the_axum_statuses() {
    use actix_web::ResponseError;
    let status = |error: cloakroom::SessionError| SessionError::from(error).status_code();
    assert_eq!(
        status(StoreError::unavailable("down").into()),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status(cloakroom::SessionError::TooManyConflicts { attempts: 64 }),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status(cloakroom::SessionError::SessionTooLarge { size: 2, limit: 1 }),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        status(cloakroom::SessionError::CookieTooLarge { size: 2, limit: 1 }),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        status(cloakroom::SessionError::Finished),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // A server error's body is the bare status text, never the error's details.
    let response = SessionError::from(cloakroom::SessionError::from(StoreError::unavailable(
        "secret detail",
    )))
    .error_response();
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap();
    assert_eq!(body, "Service Unavailable");
}

/// An app-owned epoch per user, bumped to log the user out everywhere.
#[derive(Clone, Default)]
struct Epochs(Arc<Mutex<u64>>);

#[async_trait]
impl EpochSource for Epochs {
    async fn current_epoch(&self, user: &str) -> Result<Option<String>, BoxError> {
        Ok(Some(format!("{user}:{}", self.0.lock().unwrap())))
    }
}

#[actix_web::test]
async fn an_epoch_bump_revokes_client_side_sessions() {
    let epochs = Epochs::default();
    let ring = KeyRing::parse(&generate_key()).unwrap();
    let config = SessionConfig::default().with_epochs(epochs.clone());
    let manager = SessionManager::cookie(CookieSessions::encrypted(ring), config).unwrap();
    let app = app!(Arc::new(manager));
    let cookie = send(&app, post("/login/carol", None, Value::Null))
        .await
        .cookie();
    assert_eq!(
        send(&app, get("/whoami", Some(&cookie))).await.json(),
        json!("carol")
    );

    *epochs.0.lock().unwrap() += 1;
    let revoked = send(&app, get("/whoami", Some(&cookie))).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.json(), Value::Null, "an older epoch is logged out");
    assert!(
        revoked.set_cookie.len() == 1 && revoked.set_cookie[0].contains("Max-Age=0"),
        "and its cookie removed: {:?}",
        revoked.set_cookie
    );
    let replay = send(&app, get("/whoami", Some(&cookie))).await;
    assert_eq!(
        replay.json(),
        Value::Null,
        "a replayed cookie stays logged out"
    );
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

/// One HTTP/1.1 request over a fresh loopback connection: (status, Set-Cookie, body).
fn http_request(
    address: std::net::SocketAddr,
    request_line: &str,
    cookie: Option<&str>,
) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let cookie = cookie.map_or(String::new(), |c| format!("cookie: {c}\r\n"));
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nhost: test\r\n{cookie}content-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let status = head[9..12].parse().expect("a status");
    let set_cookie = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, value)| value.trim().split(';').next().unwrap().to_owned());
    (status, set_cookie, body.to_owned())
}

#[actix_web::test]
async fn increments_from_every_worker_thread_of_a_real_server_are_exact() {
    // Workers are separate threads, each with its own App: they must share one manager
    // (store and commit queue) through the cloned middleware.
    let sessions = SessionMiddleware::from_manager(manager(
        Arc::new(CountingStore::new(memory()).with_update_delay(Duration::from_millis(2))),
        SessionConfig::default(),
    ));
    let server =
        actix_web::HttpServer::new(move || App::new().wrap(sessions.clone()).configure(routes))
            .workers(4)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .expect("bind a loopback port");
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    const CLIENTS: usize = 8;
    const EACH: usize = 5;
    let total = actix_web::rt::task::spawn_blocking(move || {
        let (status, cookie, _) = http_request(address, "POST /incr/n", None);
        assert_eq!(status, 200);
        let cookie = cookie.expect("a session cookie");
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let cookie = cookie.clone();
                std::thread::spawn(move || {
                    for _ in 0..EACH {
                        let reply = http_request(address, "POST /incr/n?delay_ms=5", Some(&cookie));
                        assert_eq!(reply.0, 200, "{}", reply.2);
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client thread");
        }
        http_request(address, "GET /get/n", Some(&cookie)).2
    })
    .await
    .unwrap();
    handle.stop(true).await;
    assert_eq!(total, (CLIENTS * EACH + 1).to_string());
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
    assert_eq!(
        send(&app, get("/get/k", Some(&set.cookie()))).await.json(),
        json!(1)
    );
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
    assert_eq!(
        send(&app, get("/get/k", Some(&set.cookie()))).await.json(),
        json!(1)
    );
}

#[actix_web::test]
async fn a_store_failing_at_commit_is_503_with_retry_after() {
    let outage = Arc::new(Outage {
        inner: memory(),
        down: AtomicBool::new(false),
    });
    let app = app!(manager(outage.clone(), SessionConfig::default()));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    // The handler loads while the store is up; the store fails before the commit.
    let (reply, ()) = futures_util::future::join(
        send(&app, post("/set/k?delay_ms=200", Some(&cookie), json!(2))),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            outage.down.store(true, Ordering::SeqCst);
        },
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.retry_after.as_deref(), Some("5"));
    outage.down.store(false, Ordering::SeqCst);
    assert_eq!(
        send(&app, get("/get/k", Some(&cookie))).await.json(),
        json!(1)
    );
}

#[actix_web::test]
async fn the_fail_open_policy_serves_an_outage_anonymously_and_keeps_the_cookie() {
    let outage = Arc::new(Outage {
        inner: memory(),
        down: AtomicBool::new(false),
    });
    let config = SessionConfig::default().with_on_store_error(cloakroom::OnStoreError::Anonymous);
    let app = app!(manager(outage.clone(), config));
    let cookie = send(&app, post("/set/k", None, json!(1))).await.cookie();
    outage.down.store(true, Ordering::SeqCst);
    let reply = send(&app, get("/get/k", Some(&cookie))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json(), Value::Null);
    assert!(
        reply.set_cookie.is_empty(),
        "the cookie is kept: {:?}",
        reply.set_cookie
    );
    assert_eq!(reply.retry_after, None);
    outage.down.store(false, Ordering::SeqCst);
    assert_eq!(
        send(&app, get("/get/k", Some(&cookie))).await.json(),
        json!(1)
    );
}
