//! Cases on the store contract itself: every operation and typed error.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use time::Duration as Span;

use super::{unique_user, Case, Run};
use crate::id::{SessionId, StoreKey};
use crate::record::{now, ClientMeta, Record, Touch, MAX_EPOCH_BYTES, MAX_USER_ID_BYTES};
use crate::store::{InsertError, ListQuery, RenameError, SessionStore, TouchError, UpdateError};

type Store = Arc<dyn SessionStore>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$(Case { name: concat!("store::", stringify!($name)), run: Run::Store(|target| Box::pin($name(target.store()))) }),*]
    };
}

pub(super) fn cases() -> Vec<Case> {
    cases![
        insert_load_round_trip,
        load_absent_is_none,
        insert_duplicate_never_overwrites,
        update_compare_and_set,
        update_missing_never_recreates,
        expired_record_is_dead_everywhere,
        touch_moves_idle_deadline_only,
        touch_cannot_pass_absolute_deadline,
        rename_keeps_everything,
        delete_removes_record_and_index,
        per_user_index,
        user_change_moves_index,
        user_ids_are_case_sensitive,
        user_ids_and_epochs_at_their_limits_are_kept,
        a_user_id_no_login_takes_owns_nothing,
        purge_expired_keeps_live,
        find_by_handle,
        list_sessions_pages_in_key_order,
        concurrent_updates_have_one_winner,
        concurrent_inserts_have_one_winner,
        concurrent_renames_have_one_winner,
    ]
}

fn key() -> StoreKey {
    SessionId::generate().store_key()
}

fn record(user: Option<&str>, ttl: Span) -> Record {
    let t = now();
    let mut record = Record::new(t, Some(t + ttl), Some(t + ttl + ttl));
    record.user_id = user.map(str::to_owned);
    record
}

fn live(user: Option<&str>) -> Record {
    record(user, Span::hours(1))
}

async fn insert_load_round_trip(store: Store) {
    let k = key();
    let mut r = live(Some(&unique_user("u")));
    r.data
        .insert("s".into(), json!("text with \"quotes\" and ünïcode"));
    r.data.insert("n".into(), json!(-12.5));
    r.data.insert(
        "o".into(),
        json!({"nested": [1, null, true, {"deep": "x"}]}),
    );
    r.persistent = true;
    r.client = ClientMeta::new(Some("2001:db8::1".into()), Some("Agent/1.0"));
    r.auth_epoch = Some("epoch-7".into());
    // A device binding (DBSC) as the engine stores it: opaque JSON every store keeps.
    r.device_binding = Some(Box::new(
        json!({"id": "b-1", "state": "bound", "key": {"alg": "ES256", "kty": "EC"}}),
    ));
    r.version = 7;
    store.insert(&k, &r).await.expect("insert");
    assert_eq!(
        store.load(&k).await.expect("load"),
        Some(r),
        "a record must load exactly as inserted"
    );
}

async fn load_absent_is_none(store: Store) {
    assert_eq!(store.load(&key()).await.expect("load"), None);
}

async fn insert_duplicate_never_overwrites(store: Store) {
    let k = key();
    let mut first = live(None);
    first.data.insert("who".into(), json!("first"));
    store.insert(&k, &first).await.expect("insert");
    let mut second = live(None);
    second.data.insert("who".into(), json!("second"));
    assert!(
        matches!(store.insert(&k, &second).await, Err(InsertError::Duplicate)),
        "a second insert must be Duplicate"
    );
    assert_eq!(
        store.load(&k).await.unwrap(),
        Some(first),
        "a duplicate insert must not overwrite"
    );
}

async fn update_compare_and_set(store: Store) {
    let k = key();
    let r = live(None);
    store.insert(&k, &r).await.unwrap();
    let mut next = r.clone();
    next.data.insert("a".into(), json!(1));
    store
        .update(&k, &next)
        .await
        .expect("update at the right version");
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(
        loaded.version, 2,
        "update must bump the version to the record's + 1"
    );
    assert_eq!(loaded.data.get("a"), Some(&json!(1)));

    let mut stale = r.clone();
    stale.data.insert("a".into(), json!("stale"));
    assert!(
        matches!(store.update(&k, &stale).await, Err(UpdateError::Conflict)),
        "a stale version must be Conflict"
    );
    assert_eq!(
        store.load(&k).await.unwrap().unwrap().data.get("a"),
        Some(&json!(1)),
        "a conflicting update must not write"
    );

    let mut third = loaded.clone();
    third.data.insert("b".into(), json!(2));
    third.absolute_deadline = third.absolute_deadline.map(|at| at + Span::days(365));
    // Only the exact stored version writes: a store comparing with `<=` or not at all
    // would take this one.
    let mut ahead = third.clone();
    ahead.version = 999;
    assert!(
        matches!(store.update(&k, &ahead).await, Err(UpdateError::Conflict)),
        "a version ahead of the stored one must be Conflict"
    );
    assert_eq!(
        store.load(&k).await.unwrap().unwrap(),
        loaded,
        "a conflicting update must not write"
    );
    store.update(&k, &third).await.expect("update at version 2");
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(loaded.version, 3);
    assert_eq!(
        loaded.absolute_deadline, r.absolute_deadline,
        "no update may move the absolute deadline"
    );
}

async fn update_missing_never_recreates(store: Store) {
    let k = key();
    assert!(matches!(
        store.update(&k, &live(None)).await,
        Err(UpdateError::Missing)
    ));
    assert_absent(&store, &k, "update of a missing record must not create it").await;
    store.insert(&k, &live(None)).await.unwrap();
    assert!(store.delete(&k).await.unwrap());
    assert!(matches!(
        store.update(&k, &live(None)).await,
        Err(UpdateError::Missing)
    ));
    assert_absent(&store, &k, "update after delete must not resurrect").await;
}

async fn expired_record_is_dead_everywhere(store: Store) {
    let user = unique_user("expiring");
    let k = key();
    let short = record(Some(&user), Span::milliseconds(400));
    store.insert(&k, &short).await.unwrap();
    // On a loaded machine the insert alone can outlast the deadline.
    let loaded = store.load(&k).await.unwrap().is_some();
    assert!(
        loaded || now() >= short.expires_at().expect("a deadline"),
        "a record before its deadline loads"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_absent(&store, &k, "a record past its deadline must not load").await;
    assert!(
        matches!(
            store.update(&k, &live(Some(&user))).await,
            Err(UpdateError::Missing)
        ),
        "update of an expired record must be Missing"
    );
    let touch = Touch {
        last_active_at: now(),
        idle_deadline: Some(now() + Span::hours(1)),
    };
    assert!(
        matches!(store.touch(&k, &touch).await, Err(TouchError::Missing)),
        "touch of an expired record must be Missing"
    );
    assert!(
        matches!(store.rename(&k, &key()).await, Err(RenameError::Missing)),
        "rename of an expired record must be Missing"
    );
    assert_absent(&store, &k, "no operation may bring an expired record back").await;
    assert!(
        store.list_for_user(&user).await.unwrap().is_empty(),
        "expired sessions are not listed"
    );
    assert!(store.find_by_handle(&k.handle()).await.unwrap().is_none());
    assert_eq!(
        store.delete_for_user(&user, None).await.unwrap(),
        0,
        "expired sessions are not counted as revoked"
    );
}

async fn touch_moves_idle_deadline_only(store: Store) {
    let k = key();
    let mut r = record(None, Span::seconds(30));
    r.data.insert("keep".into(), json!("me"));
    store.insert(&k, &r).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = now();
    let touch = Touch {
        last_active_at: t,
        idle_deadline: Some(t + Span::seconds(45)),
    };
    store.touch(&k, &touch).await.expect("touch");
    let mut expected = r.clone();
    expected.apply_touch(&touch);
    assert_eq!(
        store.load(&k).await.unwrap(),
        Some(expected),
        "touch changes the activity time and idle deadline only"
    );
    store
        .update(&k, &r)
        .await
        .expect("touch must not change the version");
    // A touch under a configuration without an idle timeout clears the idle deadline; the
    // absolute one still holds.
    let cleared = Touch {
        last_active_at: now(),
        idle_deadline: None,
    };
    store.touch(&k, &cleared).await.expect("touch");
    let loaded = store.load(&k).await.unwrap().expect("live");
    assert_eq!(
        loaded.idle_deadline, None,
        "a touch can clear the idle deadline"
    );
    assert_eq!(loaded.expires_at(), r.absolute_deadline);
    let absent = key();
    assert!(matches!(
        store.touch(&absent, &touch).await,
        Err(TouchError::Missing)
    ));
    assert_absent(&store, &absent, "touch must not create a record").await;
}

async fn touch_cannot_pass_absolute_deadline(store: Store) {
    let k = key();
    let t = now();
    // Deadlines measured from `t` with wide margins: on a loaded machine one store
    // operation can take a few hundred milliseconds.
    let r = Record::new(t, Some(t + Span::seconds(1)), Some(t + Span::seconds(3)));
    store.insert(&k, &r).await.unwrap();
    let touch = Touch {
        last_active_at: now(),
        idle_deadline: Some(now() + Span::hours(1)),
    };
    store.touch(&k, &touch).await.unwrap();
    sleep_until(t + Span::milliseconds(1500)).await;
    let loaded = store.load(&k).await.unwrap();
    // Past the old idle deadline; before the absolute one unless the load itself was slow.
    if now() < t + Span::seconds(3) {
        assert!(loaded.is_some(), "the touch moved the idle deadline");
    }
    sleep_until(t + Span::milliseconds(3500)).await;
    assert_absent(&store, &k, "the absolute deadline wins over any touch").await;
}

/// Asserts no live record has `key`; `why` names the guarantee.
async fn assert_absent(store: &Store, key: &StoreKey, why: &str) {
    assert_eq!(store.load(key).await.unwrap(), None, "{why}");
}

/// The keys of `user`'s live sessions, in the order `list_for_user` gives them.
async fn listed_keys(store: &Store, user: &str) -> Vec<StoreKey> {
    let entries = store.list_for_user(user).await.unwrap();
    entries.into_iter().map(|entry| entry.key).collect()
}

/// Sleeps until `instant` (at once if it has passed).
async fn sleep_until(instant: time::OffsetDateTime) {
    let left = instant - now();
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
}

async fn rename_keeps_everything(store: Store) {
    let user = unique_user("renamer");
    let (old, new) = (key(), key());
    let mut r = live(Some(&user));
    r.data.insert("cart".into(), json!(["apple"]));
    store.insert(&old, &r).await.unwrap();
    store.update(&old, &r).await.unwrap();
    let before = store.load(&old).await.unwrap().unwrap();
    store.rename(&old, &new).await.expect("rename");
    assert_absent(&store, &old, "the old key must be dead after rename").await;
    assert_eq!(
        store.load(&new).await.unwrap(),
        Some(before),
        "rename keeps data, version and deadlines"
    );
    let listed = listed_keys(&store, &user).await;
    assert_eq!(listed, vec![new], "the user index follows the rename");
    assert!(matches!(
        store.rename(&old, &key()).await,
        Err(RenameError::Missing)
    ));

    let other = key();
    let mut o = live(None);
    o.data.insert("other".into(), json!(true));
    store.insert(&other, &o).await.unwrap();
    assert!(
        matches!(
            store.rename(&new, &other).await,
            Err(RenameError::Duplicate)
        ),
        "rename onto a live key must be Duplicate"
    );
    assert_eq!(
        store.load(&other).await.unwrap(),
        Some(o),
        "a failed rename changes nothing"
    );
    assert!(store.load(&new).await.unwrap().is_some());
}

async fn delete_removes_record_and_index(store: Store) {
    let user = unique_user("deleter");
    let k = key();
    store.insert(&k, &live(Some(&user))).await.unwrap();
    assert!(
        store.delete(&k).await.unwrap(),
        "delete reports a removed record"
    );
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert!(
        store.list_for_user(&user).await.unwrap().is_empty(),
        "delete removes the index entry"
    );
    assert!(
        !store.delete(&k).await.unwrap(),
        "a second delete reports nothing removed"
    );
}

async fn per_user_index(store: Store) {
    let user = unique_user("multi");
    let other = unique_user("other");
    let keys: Vec<StoreKey> = (0..3).map(|_| key()).collect();
    for k in &keys {
        store.insert(k, &live(Some(&user))).await.unwrap();
    }
    let theirs = key();
    store.insert(&theirs, &live(Some(&other))).await.unwrap();
    let dying = key();
    store
        .insert(&dying, &record(Some(&user), Span::milliseconds(300)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut listed = listed_keys(&store, &user).await;
    listed.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(
        listed, expected,
        "list_for_user returns exactly the user's live sessions"
    );

    assert_eq!(
        store.delete_for_user(&user, Some(&keys[0])).await.unwrap(),
        2,
        "revoke all but one counts the others"
    );
    let left = listed_keys(&store, &user).await;
    assert_eq!(left, vec![keys[0]], "exactly the kept session remains");
    assert!(
        store.load(&keys[1]).await.unwrap().is_none()
            && store.load(&keys[2]).await.unwrap().is_none()
    );
    assert!(
        store.load(&theirs).await.unwrap().is_some(),
        "other users are untouched"
    );
    assert_eq!(store.delete_for_user(&user, None).await.unwrap(), 1);
    assert!(store.load(&keys[0]).await.unwrap().is_none());
    assert_eq!(store.delete_for_user(&user, None).await.unwrap(), 0);
}

async fn user_change_moves_index(store: Store) {
    let (a, b) = (unique_user("a"), unique_user("b"));
    let k = key();
    let mut r = live(None);
    store.insert(&k, &r).await.unwrap();
    assert!(store.list_for_user(&a).await.unwrap().is_empty());
    // Anonymous, then a, then b: each update indexes the session under its user only.
    let mut previous: Option<&str> = None;
    for (version, user) in [(1, &a), (2, &b)] {
        r.user_id = Some(user.clone());
        r.version = version;
        store.update(&k, &r).await.unwrap();
        assert_eq!(
            listed_keys(&store, user).await,
            vec![k],
            "an update that sets the user indexes the session"
        );
        if let Some(previous) = previous {
            assert!(
                listed_keys(&store, previous).await.is_empty(),
                "the old user's index entry goes"
            );
        }
        previous = Some(user);
    }
}

async fn purge_expired_keeps_live(store: Store) {
    let expiring: Vec<StoreKey> = (0..25).map(|_| key()).collect();
    for k in &expiring {
        store
            .insert(k, &record(None, Span::milliseconds(300)))
            .await
            .unwrap();
    }
    let keep: Vec<StoreKey> = (0..3).map(|_| key()).collect();
    for k in &keep {
        store.insert(k, &live(None)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let purged = store.purge_expired(10).await.expect("purge");
    assert!(
        purged == 0 || purged >= 25,
        "purge either deletes every expired record or the backend expires natively (got {purged})"
    );
    for k in &keep {
        assert!(
            store.load(k).await.unwrap().is_some(),
            "purge must keep live sessions"
        );
    }
    for k in &expiring {
        assert!(store.load(k).await.unwrap().is_none());
    }
    assert_eq!(
        store.purge_expired(10).await.unwrap(),
        0,
        "a second purge finds nothing"
    );
}

async fn find_by_handle(store: Store) {
    let (a, b) = (key(), key());
    store.insert(&a, &live(None)).await.unwrap();
    store.insert(&b, &live(None)).await.unwrap();
    let found = store
        .find_by_handle(&a.handle())
        .await
        .unwrap()
        .expect("found by handle");
    assert_eq!(found.key, a);
    assert!(store
        .find_by_handle(&key().handle())
        .await
        .unwrap()
        .is_none());
    store.delete(&a).await.unwrap();
    assert!(store.find_by_handle(&a.handle()).await.unwrap().is_none());
}

async fn list_sessions_pages_in_key_order(store: Store) {
    let user = unique_user("pager");
    let mut mine: Vec<StoreKey> = (0..5).map(|_| key()).collect();
    for k in &mine {
        store.insert(k, &live(Some(&user))).await.unwrap();
    }
    for _ in 0..2 {
        store
            .insert(&key(), &live(Some(&unique_user("noise"))))
            .await
            .unwrap();
    }
    mine.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_sessions(&ListQuery {
                user: Some(user.clone()),
                after,
                limit: 2,
            })
            .await
            .unwrap();
        assert!(page.len() <= 2, "a page respects the limit");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|e| e.key);
        seen.extend(page.into_iter().map(|e| e.key));
    }
    assert_eq!(
        seen, mine,
        "paging by user returns the user's sessions once each, in key order"
    );
    let all = store
        .list_sessions(&ListQuery {
            user: None,
            after: None,
            limit: 1000,
        })
        .await
        .unwrap();
    let keys: Vec<StoreKey> = all.iter().map(|e| e.key).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "listing is in key order"
    );
    assert!(mine.iter().all(|k| keys.contains(k)));
}

/// How many of the racing `tasks` succeeded; every other must have lost the way `lost`
/// accepts (the error a losing racer gets), never failed otherwise.
async fn winners<E: std::fmt::Display>(
    tasks: Vec<tokio::task::JoinHandle<Result<(), E>>>,
    lost: fn(&E) -> bool,
) -> usize {
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => winners += 1,
            Err(error) if lost(&error) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    winners
}

async fn concurrent_updates_have_one_winner(store: Store) {
    let k = key();
    store.insert(&k, &live(None)).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut r = live(None);
                r.data.insert("winner".into(), json!(i));
                store.update(&k, &r).await
            })
        })
        .collect();
    let winners = winners(tasks, |error| matches!(error, UpdateError::Conflict)).await;
    assert_eq!(
        winners, 1,
        "exactly one compare-and-set at one version wins"
    );
    assert_eq!(store.load(&k).await.unwrap().unwrap().version, 2);
}

async fn concurrent_inserts_have_one_winner(store: Store) {
    let k = key();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.insert(&k, &live(None)).await })
        })
        .collect();
    let winners = winners(tasks, |error| matches!(error, InsertError::Duplicate)).await;
    assert_eq!(winners, 1, "exactly one insert of a key wins");
}

async fn concurrent_renames_have_one_winner(store: Store) {
    let old = key();
    store.insert(&old, &live(None)).await.unwrap();
    let targets: Vec<StoreKey> = (0..8).map(|_| key()).collect();
    let tasks: Vec<_> = targets
        .iter()
        .map(|new| {
            let (store, new) = (Arc::clone(&store), *new);
            tokio::spawn(async move { store.rename(&old, &new).await })
        })
        .collect();
    let winners = winners(tasks, |error| matches!(error, RenameError::Missing)).await;
    assert_eq!(
        winners, 1,
        "one rename of a key wins; the rest find it Missing"
    );
    let mut alive = 0;
    for new in &targets {
        alive += usize::from(store.load(new).await.unwrap().is_some());
    }
    assert_eq!(alive, 1, "the session exists under exactly one new key");
}

async fn user_ids_are_case_sensitive(store: Store) {
    let lower = unique_user("casey");
    let upper = lower.to_uppercase();
    store.insert(&key(), &live(Some(&lower))).await.unwrap();
    let theirs = key();
    store.insert(&theirs, &live(Some(&upper))).await.unwrap();
    assert_eq!(
        store.list_for_user(&lower).await.unwrap().len(),
        1,
        "user IDs differing in case are different users"
    );
    assert_eq!(store.delete_for_user(&lower, None).await.unwrap(), 1);
    assert!(
        store.load(&theirs).await.unwrap().is_some(),
        "revoking one user never touches another"
    );
}

/// A user id `login` refuses (one holding NUL) owns no session: looking its sessions up,
/// listing or revoking them, finds none rather than failing (a backend whose text type
/// refuses NUL must not pass the refusal on as a store error).
async fn a_user_id_no_login_takes_owns_nothing(store: Store) {
    let user = format!("{}\0nul", unique_user("nul"));
    assert!(store.list_for_user(&user).await.unwrap().is_empty());
    assert_eq!(store.delete_for_user(&user, Some(&key())).await.unwrap(), 0);
    let query = ListQuery {
        user: Some(user),
        after: None,
        limit: 10,
    };
    assert!(store.list_sessions(&query).await.unwrap().is_empty());
}

/// Every user id `login` takes (up to `MAX_USER_ID_BYTES`, any character but NUL) and
/// every epoch (up to `MAX_EPOCH_BYTES`) is kept as given, indexed, listed and revoked.
async fn user_ids_and_epochs_at_their_limits_are_kept(store: Store) {
    // Hex digits, which compress poorly: a store that compresses cannot hide a column too
    // short for them.
    let digits = |label: &str, length: usize| {
        let mut text = unique_user(label);
        while text.len() < length {
            text.push_str(&key().to_hex());
        }
        text.truncate(length);
        text
    };
    let mut wide = unique_user("wide");
    while wide.len() + 'é'.len_utf8() <= MAX_USER_ID_BYTES {
        wide.push('é');
    }
    let users = [
        digits("long", MAX_USER_ID_BYTES),
        wide,
        format!("{} \u{1}\t\u{7f}trailing ", unique_user("odd")),
    ];
    for user in &users {
        let k = key();
        let mut record = live(Some(user));
        record.auth_epoch = Some(digits("epoch", MAX_EPOCH_BYTES));
        store.insert(&k, &record).await.unwrap();
        assert_eq!(
            store.load(&k).await.unwrap(),
            Some(record),
            "{} bytes of user id come back as given",
            user.len()
        );
        assert_eq!(
            listed_keys(&store, user).await,
            vec![k],
            "{user:?} is indexed"
        );
        let shorter = &user[..user.char_indices().last().map_or(0, |(at, _)| at)];
        assert!(
            listed_keys(&store, shorter).await.is_empty(),
            "a user whose id is a prefix of another's is another user"
        );
        assert_eq!(store.delete_for_user(user, None).await.unwrap(), 1);
        assert_absent(&store, &k, "revoked").await;
    }
}
