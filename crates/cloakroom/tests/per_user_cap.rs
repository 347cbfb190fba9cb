//! Regression tests for the per-user session cap
//! ([`SessionConfig::with_max_sessions_per_user`]).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::{
    InsertError, ListQuery, MemoryStore, Record, RenameError, Session, SessionConfig, SessionEntry,
    SessionError, SessionHandle, SessionLayer, SessionStore, StoreError, StoreKey, Touch,
    TouchError, UpdateError,
};
use tokio::sync::Barrier;

mod support;
use support::{call, pair};

/// MemoryStore whose list_for_user waits until two callers are listing.
#[derive(Clone)]
struct Rendezvous {
    inner: Arc<MemoryStore>,
    barrier: Arc<Barrier>,
}

#[async_trait]
impl SessionStore for Rendezvous {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.inner.load(key).await
    }
    async fn insert(&self, key: &StoreKey, record: &Record) -> Result<(), InsertError> {
        self.inner.insert(key, record).await
    }
    async fn update(&self, key: &StoreKey, record: &Record, v: u64) -> Result<(), UpdateError> {
        self.inner.update(key, record, v).await
    }
    async fn touch(&self, key: &StoreKey, touch: &Touch) -> Result<(), TouchError> {
        self.inner.touch(key, touch).await
    }
    async fn rename(&self, old: &StoreKey, new: &StoreKey) -> Result<(), RenameError> {
        self.inner.rename(old, new).await
    }
    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let d = self.inner.delete(key).await;
        eprintln!("deleted {d:?}");
        d
    }
    async fn list_for_user(&self, user: &str) -> Result<Vec<SessionEntry>, StoreError> {
        // Both logins have committed before either lists.
        self.barrier.wait().await;
        let l = self.inner.list_for_user(user).await;
        eprintln!("listed {:?}", l.as_ref().map(|v| v.len()));
        // ...and both have listed before either revokes.
        self.barrier.wait().await;
        l
    }
    async fn delete_for_user(&self, u: &str, e: Option<&StoreKey>) -> Result<u64, StoreError> {
        self.inner.delete_for_user(u, e).await
    }
    async fn purge_expired(&self, batch: usize) -> Result<u64, StoreError> {
        self.inner.purge_expired(batch).await
    }
    async fn find_by_handle(&self, h: &SessionHandle) -> Result<Option<SessionEntry>, StoreError> {
        self.inner.find_by_handle(h).await
    }
    async fn list_sessions(&self, q: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
        self.inner.list_sessions(q).await
    }
}

fn app(store: impl SessionStore, config: SessionConfig) -> Router {
    Router::new()
        .route(
            "/put",
            post(|s: Session| async move {
                s.insert("cart", 1).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/login/{user}",
            post(
                |s: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                    s.login(user).await?;
                    Ok::<_, SessionError>("ok")
                },
            ),
        )
        .route(
            "/remember",
            post(|s: Session| async move {
                s.set_persistent(true).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/meta",
            get(|s: Session| async move {
                let m = s.metadata().await?.unwrap();
                Ok::<_, SessionError>(Json(serde_json::json!({
                    "user": m.user, "persistent": m.persistent,
                    "created": m.created_at.unix_timestamp_nanos().to_string(),
                })))
            }),
        )
        .layer(SessionLayer::try_new(store, config).unwrap())
}

/// Two devices of one user log in at once with a cap of 1: one of them should stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_under_the_cap_leave_the_newest() {
    let memory = Arc::new(MemoryStore::new());
    let store = Rendezvous {
        inner: Arc::clone(&memory),
        barrier: Arc::new(Barrier::new(2)),
    };
    let app = app(
        store,
        SessionConfig::default().with_max_sessions_per_user(1),
    );
    let a = pair(&call(&app, "POST", "/put", None).await.1.unwrap());
    let b = pair(&call(&app, "POST", "/put", None).await.1.unwrap());
    let (ra, rb) = tokio::join!(
        call(&app, "POST", "/login/u", Some(&a)),
        call(&app, "POST", "/login/u", Some(&b))
    );
    assert_eq!(ra.0, StatusCode::OK);
    assert_eq!(rb.0, StatusCode::OK);
    let live = memory.list_for_user("u").await.unwrap().len();
    assert_eq!(
        live, 1,
        "both logins succeeded but {live} sessions of the user survive"
    );
}

/// Enabling the cap for a user who already has many sessions: the first login revokes at
/// most [`MAX_CAP_REVOCATIONS_PER_LOGIN`] of them (not one round trip per excess session
/// while the login waits), and the next logins continue until the user is within the cap.
#[tokio::test]
async fn a_login_revokes_a_bounded_number_of_sessions() {
    use cloakroom::conformance::CountingStore;
    use cloakroom::MAX_CAP_REVOCATIONS_PER_LOGIN as BOUND;
    let memory: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let uncapped = app(CountingStore::new(memory.clone()), SessionConfig::default());
    let existing = BOUND + 8;
    for _ in 0..existing {
        let (status, _, _) = call(&uncapped, "POST", "/login/many", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let counting = CountingStore::new(memory.clone());
    let counts = counting.counts();
    let capped = app(
        counting,
        SessionConfig::default().with_max_sessions_per_user(1),
    );
    let live = || async { memory.list_for_user("many").await.unwrap().len() };

    // Timestamps have millisecond precision: each login below is strictly the newest.
    let tick = || tokio::time::sleep(std::time::Duration::from_millis(3));
    tick().await;
    let before = counts.snapshot().1;
    let (status, _, _) = call(&capped, "POST", "/login/many", None).await;
    assert_eq!(status, StatusCode::OK);
    let writes = counts.snapshot().1 - before;
    // One insert for the new session, then at most BOUND deletes.
    assert_eq!(writes, 1 + BOUND as u64, "store writes of one capped login");
    assert_eq!(live().await, existing + 1 - BOUND);
    tick().await;

    let (status, set, _) = call(&capped, "POST", "/login/many", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(live().await, 1, "the next login finishes the job");
    let newest = pair(&set.unwrap());
    let seen = call(&capped, "GET", "/meta", Some(&newest)).await.2;
    assert_eq!(seen["user"], "many", "the session logging in survives");
}
