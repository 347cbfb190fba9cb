//! The tiered store: the conformance suite over SQLite, and two instances (each with its
//! own cache and pool) over one durable store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use cloakroom::conformance::{Axum, Framework, HookedStore, Operation, StoreHook};
use cloakroom::testing::{AppUnderTest, TestClient};
use cloakroom::{SessionConfig, SessionManager, SessionStore};
use cloakroom_cached::CachedStore;
use cloakroom_sqlx::SqliteStore;

/// An app instance, as the shared test kit serves it.
type App = Arc<dyn AppUnderTest>;

async fn sqlite(dir: &tempfile::TempDir, name: &str) -> SqliteStore {
    SqliteStore::open(dir.path().join(name)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = AtomicUsize::new(0);
    cloakroom::conformance::run_on(&cloakroom_actix::testing::frameworks(), || {
        let name = format!("case-{}.db", counter.fetch_add(1, Ordering::SeqCst));
        let dir = &dir;
        async move { CachedStore::new(sqlite(dir, &name).await) }
    })
    .await;
}

/// The conformance suite's own app over `store`: the routes these tests drive (`/incr/n`,
/// `/set/{key}?delay_ms=N`, `/get/{key}`, `/login/{user}`, `/whoami`, `/revoke-others`)
/// are the ones every store is already held to.
fn app(store: impl SessionStore) -> App {
    let manager = SessionManager::new(store, SessionConfig::default()).unwrap();
    Axum.serve(Arc::new(manager))
}

/// Two app instances, each with its own cache and its own pool on one database, and the
/// session cookie of a browser that called `path` on the first.
async fn two_instances(dir: &tempfile::TempDir, path: &str) -> (App, App, String) {
    let a = app(CachedStore::new(sqlite(dir, "shared.db").await));
    let b = app(CachedStore::new(sqlite(dir, "shared.db").await));
    let mut browser = TestClient::shared(a.clone());
    browser.post(path).await;
    let cookie = browser.cookie().expect("a session cookie").to_owned();
    (a, b, cookie)
}

/// A browser on `app` holding the session cookie `cookie`.
fn browser(app: &App, cookie: &str) -> TestClient {
    TestClient::shared(app.clone()).with_cookie(cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_across_instances_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, cookie) = two_instances(&dir, "/incr/n").await;
    // Warm both caches with the same version, so every instance starts stale.
    browser(&a, &cookie).get("/get/n").await;
    browser(&b, &cookie).get("/get/n").await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let mut client = browser(if i % 2 == 0 { &a } else { &b }, &cookie);
            tokio::spawn(async move { client.post("/incr/n").await.status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let mut client = browser(if i % 2 == 0 { &a } else { &b }, &cookie);
            tokio::spawn(async move {
                client
                    .post_json(&format!("/set/k{i}?delay_ms=10"), &true)
                    .await
                    .status()
            })
        })
        .collect();
    for task in writers {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    tokio::time::sleep(cloakroom_cached::DEFAULT_TTL).await;
    for app in [&a, &b] {
        let mut client = browser(app, &cookie);
        assert_eq!(
            client.get("/get/n").await.text(),
            "201",
            "no increment lost across instances"
        );
        for i in 0..64 {
            assert_eq!(
                client.get(&format!("/get/k{i}")).await.text(),
                "true",
                "key k{i} lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_through_another_instance_shows_within_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, phone) = two_instances(&dir, "/login/alice").await;
    let mut laptop = TestClient::shared(b.clone());
    laptop.post("/login/alice").await;
    assert_eq!(
        browser(&a, &phone).get("/whoami").await.text(),
        "\"alice\"",
        "cached on instance a"
    );

    let revoked_at = Instant::now();
    assert_eq!(laptop.post("/revoke-others").await.text(), "1");
    loop {
        let who = browser(&a, &phone).get("/whoami").await;
        assert_eq!(who.status(), StatusCode::OK);
        if who.text() == "null" {
            break;
        }
        assert!(
            revoked_at.elapsed() < cloakroom_cached::DEFAULT_TTL,
            "instance a served the revoked session past the TTL bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "instance a saw the revocation after {:?}",
        revoked_at.elapsed()
    );
    let again = browser(&a, &phone).post("/incr/n").await;
    assert_ne!(
        again.session_cookie("id"),
        Some(phone.as_str()),
        "the revoked session is never written back"
    );
}

/// When a held operation of [`Slow`] waits: before it reaches the durable store, or after
/// its work is done there and before its answer returns.
#[derive(Clone, Copy, PartialEq)]
enum When {
    Before,
    After,
}

/// Makes one operation of a real durable store, once armed with it, wait to be released at
/// the armed point: the slow reply of a loaded database.
#[derive(Default)]
struct Slow {
    armed: std::sync::Mutex<Option<(Operation, When)>>,
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Slow {
    async fn hold(&self, operation: Operation, when: When) {
        let held = {
            let mut armed = self.armed.lock().unwrap();
            *armed == Some((operation, when)) && armed.take().is_some()
        };
        if held {
            self.reached.notify_one();
            self.release.notified().await;
        }
    }
}

#[async_trait::async_trait]
impl StoreHook for Slow {
    async fn before(&self, operation: Operation) -> Result<(), cloakroom::StoreError> {
        self.hold(operation, When::Before).await;
        Ok(())
    }

    async fn after(&self, operation: Operation) {
        self.hold(operation, When::After).await;
    }
}

type SlowStore = CachedStore<HookedStore<Slow>>;

/// A cached store over [`Slow`] with one live session that is not cached yet.
async fn slow_store() -> (std::sync::Arc<SlowStore>, cloakroom::StoreKey) {
    let memory = std::sync::Arc::new(cloakroom::MemoryStore::new());
    let durable = HookedStore::with_hook(memory, Slow::default());
    let store = std::sync::Arc::new(CachedStore::new(durable));
    let key = cloakroom::SessionId::generate().store_key();
    let t = cloakroom::record::now();
    let record = cloakroom::Record::new(t, Some(t + time::Duration::hours(1)), None);
    store.durable().insert(&key, &record).await.unwrap();
    (store, key)
}

/// Runs `slow` until its `operation` reaches the durable store's point `when`, then runs
/// `meanwhile`, then lets `slow` finish; returns what `meanwhile` returned.
async fn during<T>(
    store: &std::sync::Arc<SlowStore>,
    (operation, when): (Operation, When),
    slow: impl std::future::Future<Output = ()> + Send + 'static,
    meanwhile: impl std::future::Future<Output = T>,
) -> T {
    *store.durable().hook().armed.lock().unwrap() = Some((operation, when));
    let task = tokio::spawn(slow);
    store.durable().hook().reached.notified().await;
    let result = meanwhile.await;
    store.durable().hook().release.notify_one();
    task.await.unwrap();
    result
}

/// Runs `write` while a load of `key` has read the durable record and waits to return it,
/// then lets the load finish; returns what `write` returned.
async fn during_a_load<T>(
    store: &std::sync::Arc<SlowStore>,
    key: cloakroom::StoreKey,
    write: impl std::future::Future<Output = T>,
) -> T {
    let loader = {
        let store = store.clone();
        async move {
            store.load(&key).await.unwrap();
        }
    };
    during(store, (Operation::Load, When::After), loader, write).await
}

/// Asserts that `key` loads as nothing: `what` did not come back from the cache.
async fn assert_gone(store: &SlowStore, key: &cloakroom::StoreKey, what: &str) {
    let loaded = store.load(key).await.unwrap();
    assert_eq!(loaded, None, "{what} came back from the cache");
}

/// A write that reached the durable store just before a logout of the same session, and
/// came back just after it, cached the record it wrote under a generation newer than the
/// logout's: the logged-out session was served from the cache for up to the TTL.
#[tokio::test]
async fn a_write_finishing_during_a_logout_never_re_caches_the_session() {
    let (store, key) = slow_store().await;
    let mut record = store.load(&key).await.unwrap().unwrap();
    record.data.insert("n".into(), serde_json::json!(1));
    let writer = {
        let store = store.clone();
        async move { store.update(&key, &record).await.unwrap() }
    };
    let logged_out = during(
        &store,
        (Operation::Update, When::After),
        writer,
        store.delete(&key),
    )
    .await;
    assert!(logged_out.unwrap(), "logged out");
    assert_gone(&store, &key, "the logged-out session").await;
}

/// A revocation of a user's sessions reaches one that was logged in while it ran: it was
/// deleted in the durable store, but the cache forgot only the sessions listed before.
#[tokio::test]
async fn a_user_revocation_reaches_a_session_cached_while_it_ran() {
    let (store, _) = slow_store().await;
    let revoker = {
        let store = store.clone();
        async move {
            store.delete_for_user("alice", None).await.unwrap();
        }
    };
    let key = cloakroom::SessionId::generate().store_key();
    let record = cloakroom::conformance::live_record(Some("alice"));
    let logged_in = during(
        &store,
        (Operation::DeleteForUser, When::Before),
        revoker,
        store.insert(&key, &record),
    )
    .await;
    logged_in.unwrap();
    assert!(
        store.durable().load(&key).await.unwrap().is_none(),
        "revoked"
    );
    assert_gone(&store, &key, "the revoked session").await;
}

/// Issue 12, item 8: a read racing a logout through the same instance put the deleted
/// session back in the cache, where it was served for up to the TTL.
#[tokio::test]
async fn a_load_in_flight_never_re_caches_a_session_deleted_meanwhile() {
    let (store, key) = slow_store().await;
    let deleted = during_a_load(&store, key, store.delete(&key)).await;
    assert!(deleted.unwrap(), "logged out");
    assert_gone(&store, &key, "the logged-out session").await;
}

/// The same race with an ID rotation: the old ID must stay dead.
#[tokio::test]
async fn a_load_in_flight_never_re_caches_a_session_renamed_meanwhile() {
    let (store, key) = slow_store().await;
    let new = cloakroom::SessionId::generate().store_key();
    let renamed = during_a_load(&store, key, store.rename(&key, &new)).await;
    renamed.unwrap();
    assert_gone(&store, &key, "the rotated-away ID").await;
    assert!(store.load(&new).await.unwrap().is_some());
}

/// And with a write: the loaded (older) version must not replace the newer one.
#[tokio::test]
async fn a_load_in_flight_never_re_caches_an_older_version() {
    let (store, key) = slow_store().await;
    let mut record = store.durable().load(&key).await.unwrap().unwrap();
    record.data.insert("n".into(), serde_json::json!(1));
    let updated = during_a_load(&store, key, store.update(&key, &record)).await;
    updated.unwrap();
    let seen = store.load(&key).await.unwrap().unwrap();
    assert_eq!(seen.version, 2, "an older version came back from the cache");
}

/// A TTL longer than the cache allows (`Duration::MAX`, say, for "as long as it lives") is
/// taken as the longest one; the cache refused it with a panic.
#[tokio::test]
async fn an_endless_ttl_is_the_longest_one() {
    let store = CachedStore::new(cloakroom::MemoryStore::new()).with_ttl(Duration::MAX);
    let t = cloakroom::record::now();
    let record = cloakroom::Record::new(t, Some(t + time::Duration::hours(1)), None);
    let key = cloakroom::SessionId::generate().store_key();
    store.insert(&key, &record).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(record));
}
