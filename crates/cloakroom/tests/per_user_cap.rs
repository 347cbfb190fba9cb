//! Regression tests for the per-user session cap
//! ([`SessionConfig::with_max_sessions_per_user`]).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use cloakroom::conformance::{HookedStore, Operation, StoreHook};
use cloakroom::{MemoryStore, SessionConfig, SessionStore, StoreError};
use tokio::sync::Barrier;

mod support;
use support::{app, call, pair};

/// Makes `list_for_user` wait until two callers are listing.
struct Rendezvous(Barrier);

#[async_trait]
impl StoreHook for Rendezvous {
    async fn before(&self, operation: Operation) -> Result<(), StoreError> {
        if operation == Operation::ListForUser {
            // Both logins have committed before either lists.
            self.0.wait().await;
        }
        Ok(())
    }

    async fn after(&self, operation: Operation) {
        if operation == Operation::ListForUser {
            // ...and both have listed before either revokes.
            self.0.wait().await;
        }
    }
}

/// Two devices of one user log in at once with a cap of 1: one of them should stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_under_the_cap_leave_the_newest() {
    let memory = Arc::new(MemoryStore::new());
    let store = HookedStore::with_hook(memory.clone(), Rendezvous(Barrier::new(2)));
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
