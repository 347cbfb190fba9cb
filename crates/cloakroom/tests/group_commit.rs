//! Group commit: writers queued on one session share the compare-and-set of the writer
//! ahead of them, and every write still counts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use cloakroom::conformance::{CountingStore, OperationCounts};
use cloakroom::testing::TestClient;
use cloakroom::{MemoryStore, Session, SessionError, SessionLayer};

async fn increment(session: Session) -> Result<String, SessionError> {
    let n: u64 = session
        .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, SessionError> {
    Ok(session.get::<u64>("n").await?.unwrap_or(0).to_string())
}

/// POSTs `path` with `cookie` as the whole `Cookie` header: the status, the body and the
/// `name=value` pair of any cookie set.
async fn call(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut request = Request::post(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = TestClient::new(app.clone())
        .send(request.body(Body::empty()))
        .await;
    let set_cookie = response
        .session_cookie("id")
        .map(|value| format!("id={value}"));
    (response.status(), response.text(), set_cookie)
}

/// `/incr` and `/read` over a memory store whose updates each take `update_delay`, with
/// one session written (`n = 1`): the app, the store's counters and the session's cookie.
async fn app_with_a_session(update_delay: Duration) -> (Router, Arc<OperationCounts>, String) {
    let counting = CountingStore::new(Arc::new(MemoryStore::new())).with_update_delay(update_delay);
    let counts = counting.counts();
    let app = Router::new()
        .route("/incr", post(increment))
        .route("/read", post(read))
        .layer(SessionLayer::new(counting));
    let (_, _, cookie) = call(&app, "/incr", None).await;
    let cookie = cookie.expect("the first write creates the session");
    (app, counts, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_writers_share_compare_and_sets_and_none_is_lost() {
    const WRITERS: u64 = 32;
    let (app, counts, cookie) = app_with_a_session(Duration::from_millis(50)).await;

    let (_, writes_before, _) = counts.snapshot();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move { call(&app, "/incr", Some(&cookie)).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().0, StatusCode::OK);
    }
    let (_, writes_after, _) = counts.snapshot();

    let (_, value, _) = call(&app, "/read", Some(&cookie)).await;
    assert_eq!(value, (WRITERS + 1).to_string(), "every increment counts");
    let updates = writes_after - writes_before;
    assert!(
        updates <= WRITERS / 4,
        "{WRITERS} queued writers took {updates} compare-and-sets; one each means no grouping"
    );
}

/// Two "processes" (managers) over one store, with `limits`: `POST /pref/{key}` sets a
/// 1 KiB value, `POST /append` appends 100 bytes to the `cart` list, `POST /size` answers
/// the stored data's size and the cart's length.
fn limited_apps(limits: cloakroom::Limits) -> [Router; 2] {
    use axum::extract::Path;
    use cloakroom::{SessionConfig, SessionManager};

    let store = Arc::new(
        CountingStore::new(Arc::new(MemoryStore::new()))
            .with_update_delay(Duration::from_millis(20)),
    );
    [0, 1].map(|_| {
        let config = SessionConfig::default().with_limits(limits.clone());
        let manager = SessionManager::from_arc(store.clone(), config).unwrap();
        Router::new()
            .route(
                "/pref/{key}",
                post(|s: Session, Path(key): Path<String>| async move {
                    s.insert(&key, "p".repeat(1024))
                        .await
                        .map(|()| "ok".to_owned())
                }),
            )
            .route(
                "/append",
                post(|s: Session| async move {
                    s.update("cart", |cart: Option<Vec<String>>| {
                        let mut cart = cart.unwrap_or_default();
                        cart.push("c".repeat(100));
                        cart
                    })
                    .await
                    .map(|_| "ok".to_owned())
                }),
            )
            .route(
                "/size",
                post(|s: Session| async move {
                    let mut size = 0;
                    for key in s.keys().await? {
                        let value: serde_json::Value = s.get(&key).await?.unwrap();
                        size += key.len() + value.to_string().len() + 4;
                    }
                    let cart = s.get::<Vec<String>>("cart").await?.map_or(0, |c| c.len());
                    let keys = s.keys().await?.len();
                    Ok::<_, SessionError>(format!("{size} {cart} {keys}"))
                }),
            )
            .layer(SessionLayer::from_manager(Arc::new(manager)))
    })
}

/// Runs `count` concurrent POSTs to `path(i)` on the session, alternating between the two
/// apps; returns how many got 200 and how many 413.
async fn concurrent_posts(
    apps: &[Router; 2],
    cookie: &str,
    count: usize,
    path: impl Fn(usize) -> String,
) -> (usize, usize) {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (app, cookie, path) = (apps[i % 2].clone(), cookie.to_owned(), path(i));
            tokio::spawn(async move { call(&app, &path, Some(&cookie)).await.0 })
        })
        .collect();
    let (mut ok, mut too_large) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PAYLOAD_TOO_LARGE => too_large += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, too_large)
}

/// Issue 12 #3: merged change sets (group commit, and re-applying on a conflict) are held
/// to the size limits like a single write: the writers that would break them get 413, the
/// others commit, and the stored session keeps within the limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merged_writes_keep_within_the_size_limits() {
    let limits = cloakroom::Limits {
        max_value_bytes: 2 * 1024,
        max_session_bytes: 16 * 1024,
    };
    let apps = limited_apps(limits.clone());
    let (_, _, cookie) = call(&apps[0], "/pref/seed", None).await;
    let cookie = cookie.unwrap();

    let sizes = |cookie: String| {
        let app = apps[0].clone();
        async move {
            let (_, sizes, _) = call(&app, "/size", Some(&cookie)).await;
            let sizes: Vec<usize> = sizes.split(' ').map(|n| n.parse().unwrap()).collect();
            (sizes[0], sizes[1], sizes[2])
        }
    };

    let (ok, too_large) = concurrent_posts(&apps, &cookie, 40, |i| format!("/pref/k{i}")).await;
    let (size, _, keys) = sizes(cookie.clone()).await;
    assert!(
        size <= limits.max_session_bytes,
        "the session grew to {size} bytes"
    );
    assert!(
        too_large > 0 && ok > 0,
        "{ok} committed, {too_large} refused"
    );
    assert_eq!(
        keys,
        ok + 1,
        "every committed write is kept, no refused one"
    );

    let (_, _, cookie) = call(&apps[1], "/append", None).await;
    let cookie = cookie.unwrap();
    let (ok, too_large) = concurrent_posts(&apps, &cookie, 40, |_| "/append".to_owned()).await;
    let (_, cart, _) = sizes(cookie).await;
    let ok = ok + 1;
    assert_eq!(cart, ok, "every committed append is kept, no refused one");
    assert!(
        too_large > 0,
        "the cart value outgrew its limit by {too_large} appends"
    );
    assert!(
        cart * 103 < limits.max_value_bytes,
        "the cart grew to {cart} items"
    );
}

/// A read whose idle refresh is not due has nothing to commit, so it takes no turn on the
/// session's commit lock: it answers while a writer of the same session is still waiting
/// on the store, instead of queueing behind that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_does_not_queue_behind_a_slow_write() {
    const WRITE: Duration = Duration::from_secs(3);
    let (app, counts, cookie) = app_with_a_session(WRITE).await;
    let (_, writes_before, _) = counts.snapshot();

    let writer = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { call(&app, "/incr", Some(&cookie)).await })
    };
    // The update is counted before its delay: from then on the writer holds its turn.
    while counts.snapshot().1 == writes_before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let (status, value, set_cookie) = call(&app, "/read", Some(&cookie)).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value, "1", "the slow write is not saved yet");
    assert_eq!(set_cookie, None, "a read sends no cookie");
    assert!(
        took < WRITE / 3,
        "the read took {took:?}, as if it waited for the write's turn"
    );
    assert!(!writer.is_finished(), "the write is still in the store");
    assert_eq!(writer.await.unwrap().1, "2");
}

/// A write whose change cannot be merged onto what a concurrent writer saved (an `update`
/// reading the value as a number, after another request stored text there) is not saved,
/// with the rest of its request's writes; the response must not say they were. The layer
/// logged the error and sent the handler's `200`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_cannot_be_merged_are_not_answered_as_saved() {
    let handler_wrote = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let slow = {
        let (handler_wrote, release) = (handler_wrote.clone(), release.clone());
        move |session: Session| async move {
            session
                .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                .await?;
            session.insert("note", "kept").await?;
            handler_wrote.notify_one();
            release.notified().await;
            Ok::<_, SessionError>("done")
        }
    };
    let app = Router::new()
        .route("/incr", post(increment))
        .route("/incr-and-note", post(slow))
        .route(
            "/stringify",
            post(|session: Session| async move { session.insert("n", "seven").await }),
        )
        .route(
            "/note",
            post(|session: Session| async move {
                Ok::<_, SessionError>(session.get::<String>("note").await?.unwrap_or_default())
            }),
        )
        .layer(SessionLayer::new(MemoryStore::new()));
    let (_, _, cookie) = call(&app, "/incr", None).await;
    let cookie = cookie.expect("the first write creates the session");

    let request = tokio::spawn({
        let (app, cookie) = (app.clone(), cookie.clone());
        async move { call(&app, "/incr-and-note", Some(&cookie)).await }
    });
    handler_wrote.notified().await;
    assert_eq!(
        call(&app, "/stringify", Some(&cookie)).await.0,
        StatusCode::OK
    );
    release.notify_one();
    let (status, body, _) = request.await.unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(
        call(&app, "/note", Some(&cookie)).await.1,
        "",
        "none of it was saved"
    );
}

/// Holds the first store update after it is armed until released.
#[derive(Default)]
struct HoldFirstUpdate {
    armed: std::sync::atomic::AtomicBool,
    held: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl cloakroom::conformance::StoreHook for HoldFirstUpdate {
    async fn before(
        &self,
        operation: cloakroom::conformance::Operation,
    ) -> Result<(), cloakroom::StoreError> {
        if matches!(operation, cloakroom::conformance::Operation::Update)
            && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.held.notify_one();
            self.release.notified().await;
        }
        Ok(())
    }
}

/// An `update` function that panics on the value it is re-run on, in a writer that rode
/// on another request's commit, fails its own request only. It ran inside the request
/// that committed for both, whose task panicked: that request's own write was never saved
/// and its client got no response.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_riders_panicking_update_fails_only_its_own_request() {
    use cloakroom::conformance::HookedStore;

    let hook = Arc::new(HoldFirstUpdate::default());
    let store = HookedStore::with_hook(Arc::new(MemoryStore::new()), hook.clone());
    let app =
        Router::new()
            .route("/incr", post(increment))
            .route(
                "/remove",
                post(|session: Session| async move {
                    session.remove::<u64>("n").await.map(|_| "removed")
                }),
            )
            .route(
                "/x",
                post(|session: Session| async move { session.insert("x", 1).await.map(|()| "x") }),
            )
            .route(
                "/panicky",
                post(|session: Session| async move {
                    session
                        .update("n", |n: Option<u64>| n.expect("n is set") + 1)
                        .await
                        .map(|n| n.to_string())
                }),
            )
            .route(
                "/x-value",
                post(|session: Session| async move {
                    Ok::<_, SessionError>(session.get::<u64>("x").await?.unwrap_or(0).to_string())
                }),
            )
            .layer(SessionLayer::new(store));
    let (_, _, cookie) = call(&app, "/incr", None).await;
    let cookie = cookie.expect("the first write creates the session");
    let send = |path: &'static str| {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { call(&app, path, Some(&cookie)).await })
    };

    // The removal's update is held, with the session's commit turn.
    hook.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let removal = send("/remove");
    hook.held.notified().await;
    // Both load `n = 1` and queue: `/x` first, so it commits and `/panicky` rides.
    let writer = send("/x");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let panicky = send("/panicky");
    tokio::time::sleep(Duration::from_millis(50)).await;
    hook.release.notify_one();

    assert_eq!(removal.await.unwrap().0, StatusCode::OK);
    let (status, body, _) = writer.await.expect("the committing request did not panic");
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = panicky.await.expect("a rider's failure is an answer");
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        call(&app, "/x-value", Some(&cookie)).await.1,
        "1",
        "its write was saved"
    );
}
