//! The metrics an operator reads, counted exactly over scripted scenarios.
//!
//! Each scenario runs on a single-threaded runtime inside `metrics::with_local_recorder`,
//! so it sees only its own recorder however the test harness schedules the others.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom::conformance::{Axum, CountingStore, Framework, HookedStore, Operation, StoreHook};
use cloakroom::telemetry::names;
use cloakroom::testing::{AppUnderTest, TestClient};
use cloakroom::{
    BoxError, CookieSessions, EpochSource, ExpiryPolicy, KeyRing, ListQuery, MemoryStore,
    OnStoreError, Record, RenameError, SessionConfig, SessionEntry, SessionHandle, SessionManager,
    SessionStore, StoreError, StoreKey, Touch, TouchError, UpdateError,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// Every metric a scenario recorded: counters by `name{label=value,…}` (labels sorted),
/// and the values of each histogram.
#[derive(Debug, Default)]
struct Recorded {
    counters: BTreeMap<String, u64>,
    histograms: BTreeMap<String, Vec<f64>>,
}

impl Recorded {
    /// The session counters, leaving out the store's own (timed and counted per store).
    fn session_counters(&self) -> BTreeMap<String, u64> {
        self.counters
            .iter()
            .filter(|(name, count)| !name.starts_with(names::STORE_ERRORS) && **count > 0)
            .map(|(name, count)| (name.clone(), *count))
            .collect()
    }
}

fn record<F: Future<Output = ()>>(scenario: impl FnOnce() -> F) -> Recorded {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(scenario());
    });
    let mut recorded = Recorded::default();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        let name = if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        };
        match value {
            DebugValue::Counter(count) => {
                *recorded.counters.entry(name).or_default() += count;
            }
            DebugValue::Histogram(values) => recorded
                .histograms
                .entry(name)
                .or_default()
                .extend(values.into_iter().map(|value| value.into_inner())),
            DebugValue::Gauge(_) => {}
        }
    }
    recorded
}

fn expected(counts: &[(&str, u64)]) -> BTreeMap<String, u64> {
    counts
        .iter()
        .map(|(name, count)| ((*name).to_owned(), *count))
        .collect()
}

/// An app instance, as the shared test kit serves it.
type App = Arc<dyn AppUnderTest>;

/// The conformance suite's own app over `manager`: the routes these scenarios drive
/// (`/incr/n`, `/get/n`, `/login/{user}`, `/cycle`, `/logout`, `/sessions`,
/// `/revoke/{handle}`, `/revoke-others`) are the ones every store is already held to.
fn serve(manager: SessionManager) -> App {
    Axum.serve(Arc::new(manager))
}

/// [`serve`] with sessions in `store` under `config`.
fn app(store: impl SessionStore, config: SessionConfig) -> App {
    serve(SessionManager::new(store, config).unwrap())
}

#[test]
fn a_scripted_day_of_sessions_is_counted_exactly() {
    let recorded = record(|| async {
        let app = app(
            MemoryStore::new(),
            SessionConfig::default().with_max_sessions_per_user(3),
        );
        let visit = |cookie: Option<&str>| {
            let client = TestClient::shared(app.clone());
            match cookie {
                Some(cookie) => client.with_cookie(cookie),
                None => client,
            }
        };
        // A visitor who never writes: no session, nothing counted but the request.
        assert_eq!(visit(None).get("/get/n").await.text(), "null");
        // Alice's laptop: a cart, then login (rotation), a read, a rotation.
        let mut laptop = visit(None);
        laptop.post("/incr/n").await; // created 1
        laptop.post("/login/alice").await; // loaded 1, rotated 1
        laptop.get("/get/n").await; // loaded 2
        laptop.post("/cycle").await; // loaded 3, rotated 2

        // Three more of Alice's devices log in with no session first: each is a created
        // session (no rotation: there was no ID to rotate). The third goes past the cap of
        // 3 and revokes her least recently active session: the laptop, last written at
        // its login (its rotation since wrote no activity time).
        // (Apart in time, so that "least recently active" is unambiguous.)
        let pause = || tokio::time::sleep(Duration::from_millis(5));
        pause().await;
        let mut phone = visit(None);
        phone.post("/login/alice").await; // created 2
        pause().await;
        let mut tablet = visit(None);
        tablet.post("/login/alice").await; // created 3
        pause().await;
        let mut desktop = visit(None);
        desktop.post("/login/alice").await; // created 4, revoked by cap 1
        assert_eq!(laptop.get("/get/n").await.text(), "null"); // bad cookie: unknown 1

        // The desktop revokes one other session, picked from its device list (a request
        // of its own, so one more load), then all the others.
        let listed: Vec<serde_json::Value> = desktop.get("/sessions").await.json(); // loaded 4
        let other = listed
            .iter()
            .find(|session| session["current"] == false)
            .expect("another session");
        let revoke_one = format!("/revoke/{}", other["handle"].as_str().unwrap());
        assert_eq!(desktop.post(&revoke_one).await.text(), "true"); // loaded 5, by user 1
        assert_eq!(desktop.post("/revoke-others").await.text(), "1"); // loaded 6, by user 2

        // Bob logs in on the desktop over Alice's session: hers ends as a logout would.
        desktop.post("/login/bob").await; // loaded 7, logged out 1, created 5
        desktop.post("/logout").await; // loaded 8, logged out 2

        // A cookie that is not an ID at all.
        assert_eq!(visit(Some("garbage")).get("/get/n").await.text(), "null"); // malformed 1
        let _ = (phone, tablet);
    });
    assert_eq!(
        recorded.session_counters(),
        expected(&[
            (names::SESSIONS_CREATED, 5),
            (names::SESSIONS_LOADED, 8),
            (names::SESSIONS_ROTATED, 2),
            (names::SESSIONS_LOGGED_OUT, 2),
            ("cloakroom_sessions_revoked_total{by=cap}", 1),
            ("cloakroom_sessions_revoked_total{by=user}", 2),
            ("cloakroom_bad_cookies_total{reason=malformed}", 1),
            ("cloakroom_bad_cookies_total{reason=unknown}", 1),
        ]),
    );
    // Every store operation was timed, under the memory store's kind.
    let loads = &recorded.histograms
        ["cloakroom_store_operation_duration_seconds{operation=load,store=memory}"];
    assert_eq!(loads.len(), 9, "one load per request with a cookie");
    assert!(recorded
        .histograms
        .keys()
        .filter(|name| name.starts_with(names::STORE_OPERATION_DURATION))
        .all(|name| name.contains("store=memory")));
    assert!(recorded
        .counters
        .keys()
        .all(|name| !name.starts_with(names::STORE_ERRORS)));
}

/// Another writer that, while `conflicts` lasts, saves the session just before each of
/// the app's `update`s reach the store: the app's compare-and-set then meets a real
/// version conflict in the memory store, as when another process wrote first.
struct Contender {
    store: Arc<MemoryStore>,
    conflicts: AtomicU32,
}

#[async_trait]
impl StoreHook for Contender {
    async fn before(&self, operation: Operation) -> Result<(), StoreError> {
        let left = self.conflicts.load(Ordering::SeqCst);
        if operation != Operation::Update || left == 0 {
            return Ok(());
        }
        self.conflicts.store(left - 1, Ordering::SeqCst);
        let everything = ListQuery {
            limit: usize::MAX,
            ..ListQuery::default()
        };
        for entry in self.store.list_sessions(&everything).await? {
            self.store
                .update(&entry.key, &entry.record)
                .await
                .expect("the other writer saves first");
        }
        Ok(())
    }
}

#[test]
fn conflicts_retried_and_commits_that_gave_up_are_counted() {
    let recorded = record(|| async {
        let memory = Arc::new(MemoryStore::new());
        let contender = Arc::new(Contender {
            store: Arc::clone(&memory),
            conflicts: AtomicU32::new(0),
        });
        let store = HookedStore::with_hook(memory, Arc::clone(&contender));
        let config = SessionConfig::default().with_max_commit_attempts(3);
        let mut browser = TestClient::shared(app(store, config));
        browser.post("/incr/n").await;
        // Two conflicts, then success: two retries.
        contender.conflicts.store(2, Ordering::SeqCst);
        assert!(browser.post("/incr/n").await.status().is_success());
        // Conflicts without end: two retries, then the third attempt gives up.
        contender.conflicts.store(u32::MAX, Ordering::SeqCst);
        assert_eq!(browser.post("/incr/n").await.status(), 503);
    });
    let counters = recorded.session_counters();
    assert_eq!(counters[names::COMMIT_CONFLICTS], 4);
    assert_eq!(counters[names::COMMIT_CONFLICTS_EXHAUSTED], 1);
    // A conflict is the store's answer, not its failure; the store is the memory store.
    assert!(recorded
        .counters
        .keys()
        .all(|name| !name.starts_with(names::STORE_ERRORS)));
    assert!(recorded
        .histograms
        .contains_key("cloakroom_store_operation_duration_seconds{operation=update,store=memory}"));
}

#[test]
fn queued_writers_are_one_group_commit_batch() {
    const WRITERS: usize = 8;
    let recorded = record(|| async {
        let store = CountingStore::new(Arc::new(MemoryStore::new()))
            .with_update_delay(Duration::from_millis(100));
        let app = app(store, SessionConfig::default());
        let mut first = TestClient::shared(app.clone());
        first.post("/incr/n").await;
        let cookie = first.cookie().unwrap().to_owned();
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let mut client = TestClient::shared(app.clone()).with_cookie(cookie.clone());
                tokio::spawn(async move { client.post("/incr/n").await.status() })
            })
            .collect();
        for writer in writers {
            assert!(writer.await.unwrap().is_success());
        }
        assert_eq!(first.get("/get/n").await.text(), (WRITERS + 1).to_string());
    });
    // The first writer commits alone while the other seven queue; the next whose turn
    // comes commits all seven in one compare-and-set.
    assert_eq!(recorded.session_counters()[names::GROUP_COMMIT_BATCHES], 1);
    assert_eq!(
        recorded.histograms[names::GROUP_COMMIT_WRITERS],
        [(WRITERS - 1) as f64]
    );
}

/// Fails every operation: the store is down.
struct Down;

#[async_trait]
impl SessionStore for Down {
    async fn load(&self, _: &StoreKey) -> Result<Option<Record>, StoreError> {
        Err(StoreError::unavailable("down"))
    }
    async fn insert(&self, _: &StoreKey, _: &Record) -> Result<(), cloakroom::InsertError> {
        Err(StoreError::Timeout(Duration::from_secs(5)).into())
    }
    async fn update(&self, _: &StoreKey, _: &Record) -> Result<(), UpdateError> {
        Err(StoreError::unavailable("down").into())
    }
    async fn touch(&self, _: &StoreKey, _: &Touch) -> Result<(), TouchError> {
        Err(StoreError::unavailable("down").into())
    }
    async fn rename(&self, _: &StoreKey, _: &StoreKey) -> Result<(), RenameError> {
        Err(StoreError::unavailable("down").into())
    }
    async fn delete(&self, _: &StoreKey) -> Result<bool, StoreError> {
        Err(StoreError::unavailable("down"))
    }
    async fn list_for_user(&self, _: &str) -> Result<Vec<SessionEntry>, StoreError> {
        Err(StoreError::unavailable("down"))
    }
    async fn delete_for_user(&self, _: &str, _: Option<&StoreKey>) -> Result<u64, StoreError> {
        Err(StoreError::unavailable("down"))
    }
    async fn purge_expired(&self, _: usize) -> Result<u64, StoreError> {
        Err(StoreError::unavailable("down"))
    }
    async fn find_by_handle(&self, _: &SessionHandle) -> Result<Option<SessionEntry>, StoreError> {
        Err(StoreError::unavailable("down"))
    }
    async fn list_sessions(&self, _: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        Err(StoreError::unavailable("down"))
    }
    fn kind(&self) -> &'static str {
        "down"
    }
}

#[test]
fn store_failures_are_counted_by_store_operation_and_kind() {
    let recorded = record(|| async {
        let down = app(Down, SessionConfig::default());
        let id = cloakroom::SessionId::generate().to_cookie_value();
        let mut known = TestClient::shared(down.clone()).with_cookie(id);
        assert_eq!(known.get("/get/n").await.status(), 503);
        assert_eq!(known.get("/get/n").await.status(), 503);
        assert_eq!(TestClient::shared(down).post("/incr/n").await.status(), 503);
        // Anonymous on failure: the load fails, and nothing is written.
        let config = SessionConfig::default().with_on_store_error(OnStoreError::Anonymous);
        let anonymous = app(Down, config);
        let id = cloakroom::SessionId::generate().to_cookie_value();
        TestClient::shared(anonymous)
            .with_cookie(id)
            .post("/incr/n")
            .await;
    });
    assert_eq!(
        recorded.counters,
        expected(&[
            (
                "cloakroom_store_errors_total{kind=unavailable,operation=load,store=down}",
                3
            ),
            (
                "cloakroom_store_errors_total{kind=timeout,operation=insert,store=down}",
                1
            ),
        ]),
        "no session counter moves when the store is down"
    );
}

/// Epochs that move when told to.
#[derive(Clone, Default)]
struct Epochs(Arc<AtomicU64>);

#[async_trait]
impl EpochSource for Epochs {
    async fn current_epoch(&self, _user: &str) -> Result<Option<String>, BoxError> {
        Ok(Some(self.0.load(Ordering::SeqCst).to_string()))
    }
}

#[test]
fn client_side_cookies_tampered_expired_and_revoked_by_epoch_are_counted() {
    let recorded = record(|| async {
        let epochs = Epochs::default();
        let ring = KeyRing::parse(&cloakroom::generate_key()).unwrap();
        let expiry = ExpiryPolicy::default().with_idle_timeout(Some(Duration::from_secs(1)));
        let config = SessionConfig::default()
            .with_expiry(expiry)
            .with_epochs(epochs.clone());
        let manager = SessionManager::cookie(CookieSessions::encrypted(ring), config).unwrap();
        let app = serve(manager);
        let mut browser = TestClient::shared(app.clone());
        browser.post("/login/alice").await; // created 1
        let sealed = browser.cookie().unwrap().to_owned();
        // One character changed in the ciphertext: it no longer verifies.
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 5;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        TestClient::shared(app.clone())
            .with_cookie(tampered)
            .get("/get/n")
            .await; // tampered 1
        TestClient::shared(app.clone())
            .with_cookie("not-base64!")
            .get("/get/n")
            .await; // malformed 1
        browser.get("/get/n").await; // loaded 1
        epochs.0.fetch_add(1, Ordering::SeqCst);
        browser.get("/get/n").await; // loaded 2, revoked by epoch 1

        // The sealed cookie from before, after its idle timeout.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        TestClient::shared(app)
            .with_cookie(sealed)
            .get("/get/n")
            .await; // expired 1
    });
    assert_eq!(
        recorded.session_counters(),
        expected(&[
            (names::SESSIONS_CREATED, 1),
            (names::SESSIONS_LOADED, 2),
            (names::SESSIONS_REVOKED_BY_EPOCH, 1),
            (names::SESSIONS_EXPIRED_ON_LOAD, 1),
            ("cloakroom_bad_cookies_total{reason=expired}", 1),
            ("cloakroom_bad_cookies_total{reason=malformed}", 1),
            ("cloakroom_bad_cookies_total{reason=tampered}", 1),
        ]),
    );
    assert!(
        recorded.histograms.is_empty(),
        "client-side sessions touch no store"
    );
}

#[test]
fn client_side_requests_without_our_cookie_count_no_bad_cookie_and_remove_nothing() {
    let recorded = record(|| async {
        let ring = KeyRing::parse(&cloakroom::generate_key()).unwrap();
        let manager =
            SessionManager::cookie(CookieSessions::encrypted(ring), SessionConfig::default())
                .unwrap();
        let app = serve(manager);
        // Only another cookie: the session's cookie is looked for in the header and not
        // found, which is no bad cookie, and a logout has nothing to remove.
        let mut other = TestClient::shared(app.clone())
            .with_cookie_name("theme")
            .with_cookie("dark");
        assert_eq!(other.get("/get/n").await.text(), "null");
        let logout = other.post("/logout").await;
        assert_eq!(logout.set_cookie("id"), None);
        // Junk under our name: a malformed cookie, which a logout does remove.
        let mut junk = TestClient::shared(app).with_cookie("junk");
        assert_eq!(junk.get("/get/n").await.text(), "null");
        let logout = junk.post("/logout").await;
        assert!(logout
            .set_cookie("id")
            .is_some_and(|cookie| cookie.contains("Max-Age=0")));
    });
    assert_eq!(
        recorded.session_counters(),
        expected(&[("cloakroom_bad_cookies_total{reason=malformed}", 2)]),
    );
}
