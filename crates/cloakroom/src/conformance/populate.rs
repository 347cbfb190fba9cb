//! Filling a store with sessions, and reading back whose they are, for a store's own
//! tests (scale, crash and revocation tests need many sessions of one user).

use std::sync::Arc;
use std::time::Instant;

use super::fixtures::live_record;
use crate::id::{SessionId, StoreKey};
use crate::record::now;
use crate::store::SessionStore;

/// Inserts `n` new live sessions of `user`, one after another; returns their keys in
/// insertion order.
///
/// # Panics
/// If an insert fails.
pub async fn insert_live(store: &dyn SessionStore, user: &str, n: usize) -> Vec<StoreKey> {
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        let key = SessionId::generate().store_key();
        store
            .insert(&key, &live_record(Some(user)))
            .await
            .expect("insert a live session");
        keys.push(key);
    }
    keys
}

/// The keys `list_for_user` lists for `user`, in its order.
///
/// # Panics
/// If the listing fails.
pub async fn listed_keys(store: &dyn SessionStore, user: &str) -> Vec<StoreKey> {
    let listed = store
        .list_for_user(user)
        .await
        .expect("list the user's sessions");
    listed.into_iter().map(|entry| entry.key).collect()
}

/// Inserts `n` new sessions of `user`, each live for `idle` of idleness, four writers at
/// a time; returns their keys.
///
/// # Panics
/// If an insert fails.
pub async fn insert_concurrently(
    store: &Arc<dyn SessionStore>,
    user: &str,
    n: usize,
    idle: time::Duration,
) -> Vec<StoreKey> {
    let keys: Vec<StoreKey> = (0..n).map(|_| SessionId::generate().store_key()).collect();
    let writers: Vec<_> = keys
        .chunks(n.div_ceil(4).max(1))
        .map(|chunk| {
            let (store, chunk, user) = (Arc::clone(store), chunk.to_vec(), user.to_owned());
            tokio::spawn(async move {
                for key in chunk {
                    let mut record = live_record(Some(&user));
                    record.idle_deadline = Some(now() + idle);
                    store.insert(&key, &record).await.expect("insert a session");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer task");
    }
    keys
}

/// The adversarial-scale measurement of one user with `n` live sessions, for a store's
/// RELIABILITY.md figures: insert them, list them, revoke all but one, insert again and
/// revoke all, printing each step's time after `label`. Leaves the user with none.
///
/// # Panics
/// If a step fails or miscounts.
pub async fn one_user_with_many_sessions(store: &Arc<dyn SessionStore>, label: &str, n: usize) {
    const USER: &str = "whale";
    let hour = time::Duration::hours(1);
    let started = Instant::now();
    let keys = insert_concurrently(store, USER, n, hour).await;
    println!(
        "{label}: insert {n} sessions for one user: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(listed_keys(&**store, USER).await.len(), n);
    println!("{label}: list_for_user ({n}): {:?}", started.elapsed());
    let started = Instant::now();
    let revoked = store
        .delete_for_user(USER, Some(&keys[0]))
        .await
        .expect("revoke the others");
    println!("{label}: revoke-others ({n}): {:?}", started.elapsed());
    assert_eq!(revoked as usize, n - 1);
    assert_eq!(listed_keys(&**store, USER).await, vec![keys[0]]);
    insert_concurrently(store, USER, n - 1, hour).await;
    let started = Instant::now();
    let revoked = store.delete_for_user(USER, None).await.expect("revoke all");
    println!("{label}: revoke-all ({n}): {:?}", started.elapsed());
    assert_eq!(revoked as usize, n);
}
