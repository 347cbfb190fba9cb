//! A corrupt record at rest (a damaged file, a hand-edited row or item) is absent to
//! `load` and skipped or removed by listings, revocation and purge, never the cause of a
//! failed call (DESIGN.md, failure policy). Only a store's own test can plant such a
//! record, so these checks take one it planted.

use serde_json::Value;

use super::fixtures::live_record;
use super::populate::listed_keys;
use crate::id::StoreKey;
use crate::store::{ListQuery, SessionStore};

/// The stored form of a live record of `user` whose data holds a value nested 126 arrays
/// deep: valid JSON, but deeper than the record decoder accepts, so it no longer decodes
/// (the shape of corruption that once got past a store's checks).
///
/// ```
/// let bytes = cloakroom::conformance::too_deep_record("mallory");
/// assert!(serde_json::from_slice::<cloakroom::Record>(&bytes).is_err());
/// ```
pub fn too_deep_record(user: &str) -> Vec<u8> {
    let mut deep = Value::Array(Vec::new());
    for _ in 1..126 {
        deep = Value::Array(vec![deep]);
    }
    let mut record =
        serde_json::to_value(live_record(Some(user))).expect("a record serialises as JSON");
    record["data"]["deep"] = deep;
    serde_json::to_vec(&record).expect("a JSON value serialises")
}

/// Checks the reads past the corrupt record `bad` of `user`, next to its live session
/// `good`: `load` finds nothing (or reports `Corrupt`), the user's listing holds exactly
/// `good`, and the admin listing holds `good` and not `bad`. Changes nothing.
///
/// # Panics
/// On a failed check.
pub async fn listings_skip_a_corrupt_record(
    store: &dyn SessionStore,
    user: &str,
    good: StoreKey,
    bad: StoreKey,
) {
    assert!(
        !matches!(store.load(&bad).await, Ok(Some(_))),
        "a corrupt record loaded"
    );
    assert_eq!(listed_keys(store, user).await, vec![good]);
    let all = store
        .list_sessions(&ListQuery {
            limit: 100,
            ..ListQuery::default()
        })
        .await
        .expect("list_sessions fails on a corrupt record");
    let all: Vec<StoreKey> = all.iter().map(|e| e.key).collect();
    assert!(
        all.contains(&good),
        "the admin listing lost the good session"
    );
    assert!(
        !all.contains(&bad),
        "the admin listing holds a corrupt record"
    );
}

/// [`listings_skip_a_corrupt_record`], then purge and revoke-all past it: neither fails,
/// and `good` is revoked, leaving the user with no session.
///
/// # Panics
/// On a failed check.
pub async fn a_corrupt_record_is_skipped(
    store: &dyn SessionStore,
    user: &str,
    good: StoreKey,
    bad: StoreKey,
) {
    listings_skip_a_corrupt_record(store, user, good, bad).await;
    store
        .purge_expired(100)
        .await
        .expect("purge_expired fails on a corrupt record");
    let revoked = store
        .delete_for_user(user, None)
        .await
        .expect("delete_for_user fails on a corrupt record");
    assert!(revoked >= 1, "the good session was not revoked");
    assert!(store.load(&good).await.unwrap().is_none());
    assert!(store.list_for_user(user).await.unwrap().is_empty());
}
