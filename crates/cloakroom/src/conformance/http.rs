//! Cases through HTTP, on every framework: cookies, data and identity, expiry, same-session
//! concurrency and the per-user index.

use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, StatusCode};
use serde_json::{json, Value};

use super::{unique_user, Case, CountingStore, Framework, Run, Target};
use crate::config::SessionConfig;
use crate::expiry::ExpiryPolicy;
use crate::id::SessionId;
use crate::session::SessionManager;
use crate::store::SessionStore;
use crate::testing::AppUnderTest;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$(Case { name: concat!("http::", stringify!($name)), run: Run::Http(|target, framework| Box::pin($name(target, framework))) }),*]
    };
}

pub(super) fn cases() -> Vec<Case> {
    cases![
        no_cookie_no_set_cookie,
        write_sets_a_secure_cookie,
        bogus_cookies_are_anonymous,
        duplicate_cookies_use_the_first_valid,
        data_round_trip,
        cycle_id_keeps_data_and_kills_old_id,
        login_rotates_and_kills_old_id,
        logout_deletes_and_removes_cookie,
        untouched_requests_do_no_store_io,
        read_only_traffic_is_throttled,
        idle_timeout,
        absolute_timeout,
        server_error_discards_changes,
        oversized_value_is_413,
        persistent_cookie_has_max_age,
        concurrent_writers_keep_every_key,
        concurrent_increments_are_exact,
        logout_racing_a_slow_writer_does_not_resurrect,
        user_index_list_and_revoke,
        epoch_revocation_logs_out_everywhere,
        login_as_another_user_clears_the_data,
        deeply_nested_values_round_trip_or_are_refused,
        login_beyond_the_per_user_cap_revokes_the_least_recently_active,
    ]
}

/// The app under test, whatever framework serves it.
type App = Arc<dyn AppUnderTest>;

fn app(framework: &Arc<dyn Framework>, target: Target, config: SessionConfig) -> App {
    let manager = match target {
        Target::Store(store) => SessionManager::from_arc(store, config),
        Target::Cookie(sessions) => SessionManager::cookie(sessions, config),
    }
    .expect("valid test configuration");
    framework.serve(Arc::new(manager))
}

/// A response as the cases look at it.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    set_cookie: Vec<String>,
    vary: Vec<String>,
    cache_control: Vec<String>,
    body: Value,
}

impl Reply {
    /// The session ID the response hands out, if any.
    fn new_id(&self) -> Option<String> {
        self.set_cookie.iter().find_map(|c| {
            let value = c.strip_prefix("id=")?.split(';').next()?;
            (!value.is_empty()).then(|| value.to_owned())
        })
    }

    fn removes_cookie(&self) -> bool {
        self.set_cookie
            .iter()
            .any(|c| c.starts_with("id=;") && c.contains("Max-Age=0"))
    }
}

/// A browser: a router and the session cookie it holds.
#[derive(Clone)]
struct Browser {
    app: App,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &App) -> Self {
        Self {
            app: app.clone(),
            cookie: None,
        }
    }

    fn with_cookie(app: &App, cookie: &str) -> Self {
        Self {
            app: app.clone(),
            cookie: Some(cookie.to_owned()),
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let cookie_header = self.cookie.as_ref().map(|id| format!("id={id}"));
        let reply = raw(&self.app, method, path, cookie_header.as_deref(), body).await;
        if let Some(id) = reply.new_id() {
            self.cookie = Some(id);
        } else if reply.removes_cookie() {
            self.cookie = None;
        }
        reply
    }

    async fn get(&mut self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(body)).await
    }

    /// Revokes the session whose handle is `handle` through this one: whether it was
    /// found.
    async fn revoke(&mut self, handle: &str) -> Value {
        self.post(&format!("/revoke/{handle}"), json!(null))
            .await
            .body
    }

    /// Asserts `GET path` answers `null` (no session, no user, no such value); `why`
    /// names the guarantee.
    async fn assert_null(&mut self, path: &str, why: &str) {
        assert_eq!(self.get(path).await.body, Value::Null, "{why}");
    }

    fn id(&self) -> String {
        self.cookie
            .clone()
            .expect("the browser holds a session cookie")
    }

    fn key(&self) -> crate::StoreKey {
        SessionId::parse(&self.id())
            .expect("a well-formed ID")
            .store_key()
    }
}

async fn raw(
    app: &App,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::USER_AGENT, "conformance/1");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            v.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let response = app.call(request.body(body).unwrap()).await;
    let (parts, bytes) = response.into_parts();
    let strings = |name| {
        parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (status, set_cookie, vary, cache_control) = (
        parts.status,
        strings(header::SET_COOKIE),
        strings(header::VARY),
        strings(header::CACHE_CONTROL),
    );
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        set_cookie,
        vary,
        cache_control,
        body,
    }
}

fn default_app(framework: &Arc<dyn Framework>, target: Target) -> App {
    app(framework, target, SessionConfig::default())
}

async fn no_cookie_no_set_cookie(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let r = raw(&app, "GET", "/untouched", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.set_cookie.is_empty() && r.vary.is_empty(),
        "an untouched session sets nothing: {r:?}"
    );
    let r = raw(&app, "GET", "/get/x", None, None).await;
    assert_eq!(r.body, Value::Null);
    assert!(
        r.set_cookie.is_empty(),
        "reading an anonymous session must not create one: {r:?}"
    );
    assert!(
        r.vary.iter().any(|v| v.eq_ignore_ascii_case("cookie")),
        "a response whose session was read varies by Cookie"
    );
}

async fn write_sets_a_secure_cookie(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target.clone());
    let mut b = Browser::new(&app);
    let r = b.post("/set/a", json!(1)).await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = &r.set_cookie[0];
    for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "a browser-session cookie by default"
    );
    assert_eq!(
        r.cache_control,
        ["private"],
        "a response setting the session cookie stays out of shared caches"
    );
    let read = b.get("/get/a").await;
    assert!(
        read.set_cookie.is_empty() && read.cache_control.is_empty(),
        "a read sets neither: {read:?}"
    );
    if let Target::Store(store) = target {
        assert_eq!(b.id().len(), 43);
        let record = store
            .load(&b.key())
            .await
            .unwrap()
            .expect("stored under SHA-256 of the ID");
        assert_eq!(record.data.get("a"), Some(&json!(1)));
        assert_eq!(record.client.user_agent.as_deref(), Some("conformance/1"));
    }
}

async fn bogus_cookies_are_anonymous(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let unknown = SessionId::generate().to_cookie_value();
    let huge = "A".repeat(8000);
    let non_canonical = format!("{}B", "A".repeat(42));
    let bogus = [
        "garbage",
        "",
        "%00%ff",
        &unknown[..42],
        &format!("{unknown}A"),
        &non_canonical,
        &huge,
        &unknown,
        "\"\"",
    ];
    for value in bogus {
        let cookie = format!("id={value}");
        let r = raw(&app, "GET", "/get/a", Some(&cookie), None).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "cookie {value:.50} must give an anonymous session"
        );
        assert_eq!(r.body, Value::Null);
        let r = raw(&app, "POST", "/set/a", Some(&cookie), Some(json!(1))).await;
        assert_eq!(r.status, StatusCode::OK);
        let id = r.new_id().expect("a write mints a fresh ID");
        assert_ne!(
            id, value,
            "strict mode: a client-chosen ID is never adopted"
        );
    }
}

async fn duplicate_cookies_use_the_first_valid(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    b.post("/set/who", json!("me")).await;
    let header = format!(
        "id=broken; other=1; id={}; id={}",
        b.id(),
        SessionId::generate().to_cookie_value()
    );
    let r = raw(&app, "GET", "/get/who", Some(&header), None).await;
    assert_eq!(
        r.body,
        json!("me"),
        "the first known duplicate is used (well-formed but unknown ones are passed over)"
    );
}

async fn data_round_trip(target: Target, framework: Arc<dyn Framework>) {
    let server_side = matches!(target, Target::Store(_));
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    b.post("/set/a", json!({"x": [1, 2]})).await;
    let first = b.id();
    let second = b.post("/set/b", json!("two")).await;
    if server_side {
        assert_eq!(
            second.set_cookie,
            Vec::<String>::new(),
            "no new cookie for a known session"
        );
    }
    assert_eq!(b.get("/get/a").await.body, json!({"x": [1, 2]}));
    assert_eq!(
        b.post("/remove/a", json!(null)).await.body,
        json!({"x": [1, 2]})
    );
    assert_eq!(b.get("/get/a").await.body, Value::Null);
    assert_eq!(b.get("/get/b").await.body, json!("two"));
    if server_side {
        assert_eq!(b.id(), first);
    }
}

async fn cycle_id_keeps_data_and_kills_old_id(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    b.post("/set/a", json!(1)).await;
    let old = b.id();
    let r = b.post("/cycle", json!(null)).await;
    let new = r.new_id().expect("cycle_id sends a new cookie");
    assert_ne!(new, old);
    assert_eq!(
        b.get("/get/a").await.body,
        json!(1),
        "data survives rotation"
    );
    let mut stale = Browser::with_cookie(&app, &old);
    stale.assert_null("/get/a", "the old ID is dead").await;
}

async fn login_rotates_and_kills_old_id(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let user = unique_user("login");
    let mut b = Browser::new(&app);
    b.post("/set/cart", json!(["book"])).await;
    let old = b.id();
    let r = b.post(&format!("/login/{user}"), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(b.id(), old, "login rotates the ID");
    assert_eq!(b.get("/whoami").await.body, json!(user));
    assert_eq!(
        b.get("/get/cart").await.body,
        json!(["book"]),
        "login keeps the data"
    );
    let mut attacker = Browser::with_cookie(&app, &old);
    attacker
        .assert_null("/whoami", "the pre-login ID is dead at once")
        .await;

    let mut fresh = Browser::new(&app);
    fresh.post(&format!("/login/{user}"), json!(null)).await;
    assert_eq!(
        fresh.get("/whoami").await.body,
        json!(user),
        "login on an anonymous visitor creates the session"
    );
}

async fn logout_deletes_and_removes_cookie(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target.clone());
    let mut b = Browser::new(&app);
    b.post(&format!("/login/{}", unique_user("bye")), json!(null))
        .await;
    let old = b.id();
    let r = b.post("/logout", json!(null)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.removes_cookie(), "logout sends a removal cookie: {r:?}");
    assert!(
        r.set_cookie
            .iter()
            .any(|c| c.contains("Path=/") && c.contains("HttpOnly") && c.contains("Secure")),
        "with the same path and flags"
    );
    assert_eq!(b.get("/whoami").await.body, Value::Null);
    if let Target::Store(store) = target {
        let key = SessionId::parse(&old)
            .expect("a well-formed ID")
            .store_key();
        assert_eq!(
            store.load(&key).await.unwrap(),
            None,
            "logout deletes the record"
        );
        let mut replay = Browser::with_cookie(&app, &old);
        replay
            .assert_null("/whoami", "the logged-out ID is dead")
            .await;
    }
}

/// The default app over `target`'s store, counting the store's operations.
fn counted_app(
    framework: &Arc<dyn Framework>,
    target: &Target,
) -> (App, Arc<super::counting::OperationCounts>) {
    let counting = CountingStore::new(target.store());
    let counts = counting.counts();
    let target = Target::Store(Arc::new(counting));
    (default_app(framework, target), counts)
}

async fn untouched_requests_do_no_store_io(target: Target, framework: Arc<dyn Framework>) {
    let (app, counts) = counted_app(&framework, &target);
    let mut b = Browser::new(&app);
    b.post("/set/a", json!(1)).await;
    let before = counts.snapshot();
    for _ in 0..10 {
        assert_eq!(b.get("/untouched").await.status, StatusCode::OK);
    }
    assert_eq!(
        counts.snapshot(),
        before,
        "a handler that never touches the session costs no store I/O"
    );
}

async fn read_only_traffic_is_throttled(target: Target, framework: Arc<dyn Framework>) {
    let (app, counts) = counted_app(&framework, &target);
    let mut b = Browser::new(&app);
    b.post("/set/a", json!(1)).await;
    let (loads, writes, _) = counts.snapshot();
    for _ in 0..20 {
        assert_eq!(b.get("/get/a").await.body, json!(1));
    }
    let (loads_after, writes_after, _) = counts.snapshot();
    assert_eq!(loads_after - loads, 20, "one load per reading request");
    assert_eq!(
        writes_after, writes,
        "read-only requests within the touch interval write nothing"
    );
}

fn short(idle_ms: u64, absolute_ms: Option<u64>, touch_ms: u64) -> SessionConfig {
    SessionConfig::default().with_expiry(
        ExpiryPolicy::default()
            .with_idle_timeout(Some(Duration::from_millis(idle_ms)))
            .with_absolute_timeout(absolute_ms.map(Duration::from_millis))
            .with_touch_interval(Duration::from_millis(touch_ms)),
    )
}

async fn idle_timeout(target: Target, framework: Arc<dyn Framework>) {
    let app = app(&framework, target, short(1500, None, 100));
    let mut b = Browser::new(&app);
    b.post("/set/a", json!(1)).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            b.get("/get/a").await.body,
            json!(1),
            "activity within the idle timeout keeps the session"
        );
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    b.assert_null("/get/a", "an idle session dies").await;
}

async fn absolute_timeout(target: Target, framework: Arc<dyn Framework>) {
    let app = app(&framework, target, short(1500, Some(2500), 100));
    let mut b = Browser::new(&app);
    b.post("/set/a", json!(1)).await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(b.post("/set/a", json!(1)).await.status, StatusCode::OK);
        assert_eq!(b.get("/get/a").await.body, json!(1));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.get("/get/a").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    b.assert_null(
        "/get/a",
        "an active session still dies at its absolute deadline",
    )
    .await;
}

async fn server_error_discards_changes(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    let r = b.post("/fail/x", json!(null)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.set_cookie.is_empty(), "a 5xx response creates no session");
    b.post("/set/a", json!(1)).await;
    assert_eq!(
        b.post("/fail/x", json!(null)).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    b.assert_null("/get/x", "changes made while producing a 5xx are not saved")
        .await;
    // Nor do they reach the browser: a remember-me cookie for a session the store keeps
    // as a browser-session one, or a client-side session's cookie carrying them.
    let r = b.post("/fail/y?persistent", json!(null)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.set_cookie.is_empty(),
        "a 5xx response sends no cookie for changes it did not save: {:?}",
        r.set_cookie
    );
    b.assert_null("/get/y", "changes made while producing a 5xx are not saved")
        .await;
}

async fn oversized_value_is_413(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    b.post("/set/a", json!(1)).await;
    let r = b.post("/set/big", json!("x".repeat(100 * 1024))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(b.get("/get/big").await.body, Value::Null);
    assert_eq!(b.get("/get/a").await.body, json!(1));
}

async fn persistent_cookie_has_max_age(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    let r = b.post("/persistent", json!(null)).await;
    let cookie = &r.set_cookie[0];
    let max_age: u64 = cookie
        .split("; ")
        .find_map(|attr| attr.strip_prefix("Max-Age="))
        .expect("a persistent cookie has Max-Age")
        .parse()
        .unwrap();
    assert!(
        max_age > 23 * 3600 && max_age <= 24 * 3600,
        "Max-Age follows the session deadline ({max_age})"
    );
}

/// `count` POSTs at once on `b`'s session, the `i`th to `request(i)` (path and body); each
/// must answer 200.
async fn post_concurrently(
    app: &App,
    b: &Browser,
    count: usize,
    request: impl Fn(usize) -> (String, Option<Value>),
) {
    let cookie = format!("id={}", b.id());
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (app, cookie, (path, body)) = (app.clone(), cookie.clone(), request(i));
            tokio::spawn(async move { raw(&app, "POST", &path, Some(&cookie), body).await })
        })
        .collect();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
}

async fn concurrent_writers_keep_every_key(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    b.post("/set/seed", json!(0)).await;
    post_concurrently(&app, &b, 64, |i| {
        (format!("/set/k{i}?delay_ms=20"), Some(json!(i)))
    })
    .await;
    for i in 0..64 {
        assert_eq!(
            b.get(&format!("/get/k{i}")).await.body,
            json!(i),
            "key k{i} was lost"
        );
    }
}

async fn concurrent_increments_are_exact(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    b.post("/incr/n", json!(null)).await;
    post_concurrently(&app, &b, 200, |_| ("/incr/n?delay_ms=5".to_owned(), None)).await;
    assert_eq!(
        b.get("/get/n").await.body,
        json!(201),
        "every one of 200 concurrent increments counts"
    );
}

async fn logout_racing_a_slow_writer_does_not_resurrect(
    target: Target,
    framework: Arc<dyn Framework>,
) {
    let store = target.store();
    let (app, counts) = counted_app(&framework, &target);
    let mut b = Browser::new(&app);
    b.post(&format!("/login/{}", unique_user("racer")), json!(null))
        .await;
    let key = b.key();
    let cookie = format!("id={}", b.id());
    let answered = counts.loads_answered();
    let slow = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move {
            raw(
                &app,
                "POST",
                "/set/late?delay_ms=400",
                Some(&cookie),
                Some(json!(true)),
            )
            .await
        })
    };
    // The logout goes once the writer has read the session: a writer reading after it
    // finds no session and rightly starts a new one, which is not the race this case is
    // about (a fixed head start of 100 ms was not always enough on a loaded machine).
    counts.wait_for_loads_answered(answered + 1).await;
    assert!(b.post("/logout", json!(null)).await.removes_cookie());
    let r = slow.await.unwrap();
    assert!(
        !r.status.is_server_error(),
        "the slow writer gets no 5xx: {r:?}"
    );
    assert!(
        r.new_id().is_none(),
        "the slow writer must not hand out a session"
    );
    assert_eq!(
        store.load(&key).await.unwrap(),
        None,
        "the logged-out session stays deleted"
    );
    let r = raw(&app, "GET", "/get/late", Some(&cookie), None).await;
    assert_eq!(r.body, Value::Null);
}

async fn user_index_list_and_revoke(target: Target, framework: Arc<dyn Framework>) {
    let app = default_app(&framework, target);
    let user = unique_user("devices");
    let mut devices: Vec<Browser> = (0..3).map(|_| Browser::new(&app)).collect();
    for d in &mut devices {
        assert_eq!(
            d.post(&format!("/login/{user}"), json!(null)).await.status,
            StatusCode::OK
        );
    }
    let list = devices[0].get("/sessions").await.body;
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 3, "all three devices are listed: {list:?}");
    assert_eq!(
        list.iter().filter(|s| s["current"] == json!(true)).count(),
        1
    );
    let mine = devices[0].get("/handle").await.body;
    assert!(list
        .iter()
        .any(|s| s["current"] == json!(true) && s["handle"] == mine));

    let second = devices[1].get("/handle").await.body;
    let second = second.as_str().unwrap().to_owned();
    assert_eq!(devices[0].revoke(&second).await, json!(true));
    devices[1]
        .assert_null("/whoami", "a revoked device is logged out")
        .await;
    let stranger = SessionId::generate().store_key().handle();
    assert_eq!(devices[0].revoke(&stranger.to_string()).await, json!(false));

    assert_eq!(
        devices[0].post("/revoke-others", json!(null)).await.body,
        json!(1)
    );
    devices[2]
        .assert_null("/whoami", "other devices are logged out")
        .await;
    assert_eq!(
        devices[0].get("/whoami").await.body,
        json!(user),
        "the current device stays"
    );
    assert_eq!(
        devices[0]
            .get("/sessions")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// An epoch source the test controls: every user starts at epoch 0.
#[derive(Clone, Default)]
struct TestEpochs(Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>);

#[async_trait::async_trait]
impl crate::EpochSource for TestEpochs {
    async fn current_epoch(&self, user: &str) -> Result<Option<String>, crate::BoxError> {
        let epochs = self.0.lock().expect("test epochs");
        Ok(Some(epochs.get(user).copied().unwrap_or(0).to_string()))
    }
}

async fn epoch_revocation_logs_out_everywhere(target: Target, framework: Arc<dyn Framework>) {
    let epochs = TestEpochs::default();
    let app = app(
        &framework,
        target,
        SessionConfig::default().with_epochs(epochs.clone()),
    );
    let user = unique_user("epoch");
    let mut devices = [Browser::new(&app), Browser::new(&app)];
    for device in &mut devices {
        device.post(&format!("/login/{user}"), json!(null)).await;
        assert_eq!(device.get("/whoami").await.body, json!(user));
    }
    let stolen = devices[0].id();
    *epochs.0.lock().unwrap().entry(user.clone()).or_default() += 1;
    let r = devices[0].get("/whoami").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        Value::Null,
        "a session from an older epoch is logged out"
    );
    assert!(r.removes_cookie(), "and its cookie removed: {r:?}");
    devices[1].assert_null("/whoami", "on every device").await;
    let mut replay = Browser::with_cookie(&app, &stolen);
    let r = replay.get("/whoami").await;
    assert!(
        r.status == StatusCode::OK && r.body == Value::Null,
        "a replayed cookie stays logged out: {r:?}"
    );
    devices[0]
        .post(&format!("/login/{user}"), json!(null))
        .await;
    assert_eq!(
        devices[0].get("/whoami").await.body,
        json!(user),
        "logging in again works"
    );
}

/// Issue 12 #7: Bob logging in on the browser Alice left logged in does not see her data
/// and does not inherit her session: not her remember-me cookie, not her creation time,
/// and her old ID is dead. Alice logging in again keeps hers.
async fn login_as_another_user_clears_the_data(target: Target, framework: Arc<dyn Framework>) {
    let server_side = matches!(target, Target::Store(_));
    let app = default_app(&framework, target);
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    let mut b = Browser::new(&app);
    b.post(&format!("/login/{alice}"), json!(null)).await;
    b.post("/set/cart", json!(["alice's book"])).await;
    b.post(&format!("/login/{alice}"), json!(null)).await;
    assert_eq!(
        b.get("/get/cart").await.body,
        json!(["alice's book"]),
        "the same user logging in again keeps the data"
    );
    let r = b.post("/persistent", json!(null)).await;
    assert_eq!(r.status, StatusCode::OK);
    let alices_id = b.id();
    let alices_created = b.get("/created").await.body;
    // Timestamps have millisecond precision: Bob's session is created strictly later.
    tokio::time::sleep(Duration::from_millis(5)).await;

    let r = b.post(&format!("/login/{bob}"), json!(null)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.set_cookie
            .iter()
            .any(|c| c.starts_with("id=") && !c.contains("Max-Age")),
        "Bob gets a browser-session cookie, not Alice's remember-me one: {r:?}"
    );
    assert_eq!(b.get("/whoami").await.body, json!(bob));
    b.assert_null(
        "/get/cart",
        "the next user never sees the previous user's data",
    )
    .await;
    assert_eq!(b.get("/get/remember").await.body, Value::Null);
    let bobs_created = b.get("/created").await.body;
    assert!(bobs_created.is_string(), "{bobs_created:?}");
    assert_ne!(bobs_created, alices_created, "Bob's session is a new one");
    if server_side {
        let mut old = Browser::with_cookie(&app, &alices_id);
        old.assert_null("/whoami", "Alice's session ended when Bob logged in")
            .await;
    }
}

/// Issue 12 #6: a value nested as deep as the documented limit
/// ([`MAX_VALUE_DEPTH`](crate::MAX_VALUE_DEPTH)) is stored and loads back; a deeper one is
/// refused with 413 when written, so it can never make the whole session unreadable.
async fn deeply_nested_values_round_trip_or_are_refused(
    target: Target,
    framework: Arc<dyn Framework>,
) {
    let nested = |depth: usize| (0..depth).fold(json!("core"), |inner, _| json!([inner]));
    let app = default_app(&framework, target);
    let mut b = Browser::new(&app);
    b.post("/set/a", json!(1)).await;
    let deepest = nested(crate::MAX_VALUE_DEPTH);
    let r = b.post("/set/deep", deepest.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "the deepest allowed value: {r:?}");
    assert_eq!(b.get("/get/deep").await.body, deepest, "it loads back");
    for depth in [crate::MAX_VALUE_DEPTH + 1, 126] {
        let r = b.post("/set/deeper", nested(depth)).await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "depth {depth}: {r:?}"
        );
    }
    assert_eq!(
        b.get("/get/a").await.body,
        json!(1),
        "the session still loads"
    );
    assert_eq!(b.get("/get/deeper").await.body, Value::Null);
}

/// The per-user cap ([`SessionConfig::with_max_sessions_per_user`]): a login beyond it
/// revokes the user's least recently active other sessions, never the one logging in.
async fn login_beyond_the_per_user_cap_revokes_the_least_recently_active(
    target: Target,
    framework: Arc<dyn Framework>,
) {
    let app = app(
        &framework,
        target,
        SessionConfig::default().with_max_sessions_per_user(2),
    );
    let user = unique_user("capped");
    let login = format!("/login/{user}");
    let mut devices: Vec<Browser> = (0..3).map(|_| Browser::new(&app)).collect();
    let pause = || tokio::time::sleep(Duration::from_millis(20));
    for device in &mut devices {
        assert_eq!(
            device.post(&login, json!(null)).await.status,
            StatusCode::OK
        );
        pause().await;
    }
    let who = |device: &Browser| {
        let mut device = device.clone();
        async move { device.get("/whoami").await.body }
    };
    assert_eq!(
        who(&devices[0]).await,
        Value::Null,
        "the oldest device is logged out"
    );
    assert_eq!(who(&devices[1]).await, json!(user));
    assert_eq!(
        who(&devices[2]).await,
        json!(user),
        "the device logging in stays"
    );
    let listed = devices[2].get("/sessions").await.body;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed:?}");

    // Device 1 is used, so device 2 is now the least recently active.
    assert_eq!(
        devices[1].post("/set/x", json!(1)).await.status,
        StatusCode::OK
    );
    pause().await;
    assert_eq!(
        devices[0].post(&login, json!(null)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        who(&devices[2]).await,
        Value::Null,
        "the least recently active goes"
    );
    assert_eq!(who(&devices[1]).await, json!(user), "a device in use stays");
    assert_eq!(who(&devices[0]).await, json!(user));

    // Logging in again on a device within the cap revokes nothing.
    assert_eq!(
        devices[0].post(&login, json!(null)).await.status,
        StatusCode::OK
    );
    assert_eq!(who(&devices[1]).await, json!(user));
    assert_eq!(who(&devices[0]).await, json!(user));
}
