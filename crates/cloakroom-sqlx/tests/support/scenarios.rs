//! Scenarios every server-backed SQL store runs, each against a real server.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use cloakroom::testing::{all_keys, counter_app, request_once, user_keys};
use cloakroom::{record, Record, SessionId, SessionStore, StoreError, StoreKey};

/// Two app instances with separate pools share one table: concurrent increments through
/// both are all counted.
pub async fn two_instances_lose_no_updates(a: impl SessionStore, b: impl SessionStore) {
    let (app_a, app_b) = (counter_app(a), counter_app(b));
    let first = request_once(&app_a, "POST", "/incr", None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let id = first.session_cookie("id").expect("a session").to_owned();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let app = if i % 2 == 0 {
                app_a.clone()
            } else {
                app_b.clone()
            };
            let id = id.clone();
            tokio::spawn(async move {
                request_once(&app, "POST", "/incr", Some(&id))
                    .await
                    .status()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let response = request_once(&app_b, "GET", "/n", Some(&id)).await;
    assert_eq!(
        response.json::<u64>(),
        101,
        "every increment through either instance counts"
    );
}

/// While the database is unreachable: typed errors from the store, 503 with Retry-After
/// from the layer, nothing hangs; afterwards it recovers by itself.
pub async fn outage_and_recovery(store: impl SessionStore + Clone, proxy: &super::Proxy) {
    let app = counter_app(store.clone());
    let first = request_once(&app, "POST", "/set", None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let id = first.session_cookie("id").unwrap().to_owned();

    proxy.cut();
    let started = Instant::now();
    let key = SessionId::parse(&id).unwrap().store_key();
    match store.load(&key).await {
        Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => {}
        other => {
            panic!("expected a typed unavailable error while the database is down, got {other:?}")
        }
    }
    let down = request_once(&app, "GET", "/n", Some(&id)).await;
    assert_eq!(
        down.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the layer answers 503 while the store is down"
    );
    assert!(down.headers().contains_key(header::RETRY_AFTER));
    let fresh = request_once(&app, "POST", "/set", None).await;
    assert_eq!(fresh.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "nothing hangs: {:?}",
        started.elapsed()
    );

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if request_once(&app, "GET", "/n", Some(&id)).await.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store recovers once the database is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = request_once(&app, "POST", "/incr", Some(&id)).await;
    assert_eq!(
        after.status(),
        StatusCode::OK,
        "the session written before the outage is intact"
    );
}

/// Purges `expected` expired rows in batches of `batch` and keeps a live one.
pub async fn purge_in_batches(store: &impl SessionStore, expected: u64, batch: usize) {
    let live = SessionId::generate().store_key();
    let t = record::now();
    store
        .insert(
            &live,
            &Record::new(t, Some(t + time::Duration::hours(1)), None),
        )
        .await
        .unwrap();
    let mut batches = Vec::new();
    let started = Instant::now();
    let purged = store
        .purge_expired_with_progress(batch, &mut |n| batches.push(n))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(purged, expected);
    assert!(
        batches.iter().all(|&n| n as usize <= batch),
        "no batch exceeds {batch}: {batches:?}"
    );
    let full = batches.iter().filter(|&&n| n as usize == batch).count();
    assert_eq!(
        full as u64,
        expected / batch as u64,
        "deleted in full batches of {batch}: {batches:?}"
    );
    eprintln!(
        "purged {purged} rows in {} batches of at most {batch} in {took:?}",
        batches.len()
    );
    assert!(
        store.load(&live).await.unwrap().is_some(),
        "purge keeps live sessions"
    );
    assert_eq!(store.purge_expired(batch).await.unwrap(), 0);
}

/// An app whose clock runs an hour fast cannot keep a session past its absolute deadline
/// as the database measures it.
pub async fn fast_app_clock_cannot_extend_a_session(store: &impl SessionStore) {
    let fast = record::now() + time::Duration::hours(1);
    let record = Record::new(
        fast,
        Some(fast + time::Duration::minutes(30)),
        Some(fast + time::Duration::milliseconds(1500)),
    );
    let key = SessionId::generate().store_key();
    store.insert(&key, &record).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "the session died 1.5 s after creation on the database clock, whatever the app's clock said"
    );
}

pub async fn race_two_migrations<S: Send + 'static>(
    a: impl std::future::Future<Output = S> + Send + 'static,
    b: impl std::future::Future<Output = S> + Send + 'static,
) -> (S, S) {
    let (a, b) = tokio::join!(tokio::spawn(a), tokio::spawn(b));
    (a.unwrap(), b.unwrap())
}

pub fn shared(store: impl SessionStore) -> Arc<dyn SessionStore> {
    Arc::new(store)
}

/// A live record for `user`, with `ip` as a tag tests can find the row by in raw SQL.
pub fn user_record(user: &str, ip: &str, life: time::Duration) -> Record {
    let t = record::now();
    let mut record = Record::new(t, Some(t + life), None);
    record.user_id = Some(user.to_owned());
    record.client.ip = Some(ip.to_owned());
    record
}

/// User ids compare byte for byte: "alice " (trailing space) and "ALICE" are other users
/// than "alice", so their sessions neither show in her device list nor fall to her revoke.
pub async fn user_ids_compare_exactly(store: &impl SessionStore) {
    let hour = time::Duration::hours(1);
    let alice = SessionId::generate().store_key();
    store
        .insert(&alice, &user_record("alice", "a", hour))
        .await
        .unwrap();
    for other in ["alice ", "alice  ", "ALICE", " alice"] {
        store
            .insert(
                &SessionId::generate().store_key(),
                &user_record(other, "o", hour),
            )
            .await
            .unwrap();
    }
    let listed = store.list_for_user("alice").await.unwrap();
    assert_eq!(listed.len(), 1, "only alice's own session is listed");
    assert_eq!(listed[0].key, alice);
    let query = cloakroom::ListQuery {
        user: Some("alice".into()),
        after: None,
        limit: 100,
    };
    assert_eq!(store.list_sessions(&query).await.unwrap().len(), 1);
    assert_eq!(
        store.delete_for_user("alice", None).await.unwrap(),
        1,
        "revoking alice's sessions revokes only hers"
    );
    let spaced = store.list_for_user("alice ").await.unwrap();
    assert_eq!(spaced.len(), 1, "\"alice \" keeps her session");
    assert_eq!(spaced[0].record.user_id.as_deref(), Some("alice "));
}

/// JSON nested `depth` arrays deep inside a session value.
pub fn deeply_nested(depth: usize) -> String {
    format!("{{\"v\":{}1{}}}", "[".repeat(depth), "]".repeat(depth))
}

/// Corrupt rows written straight into the table (`set_data(ip_tag, data)` sets the data
/// column of the row tagged `ip_tag` to `data` and answers how many rows it changed) load
/// as absent, and the per-user and admin listings, revoke and purge skip or remove them
/// instead of failing.
pub async fn corrupt_rows_are_absent_and_skipped<F, Fut>(store: &impl SessionStore, set_data: F)
where
    F: Fn(&'static str, String) -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let corrupt = |tag, data| {
        let changed = set_data(tag, data);
        async move { assert_eq!(changed.await, 1, "one row is tagged {tag}") }
    };
    let (hour, short) = (time::Duration::hours(1), time::Duration::milliseconds(300));
    let mut keys = Vec::new();
    for (tag, life) in [
        ("good", hour),
        ("bad-text", hour),
        ("bad-deep", hour),
        ("nested", hour),
        ("bad-dying", short),
    ] {
        // The corrupt rows come first in key order, where a page of the listing meets them.
        let key = match tag {
            "bad-text" => StoreKey::from_bytes([0; 32]),
            "bad-deep" => StoreKey::from_bytes([1; 32]),
            _ => SessionId::generate().store_key(),
        };
        store
            .insert(&key, &user_record("carol", tag, life))
            .await
            .unwrap();
        keys.push(key);
    }
    let [good, text, deep, nested, _dying] = keys[..] else {
        unreachable!()
    };
    corrupt("bad-text", "not json".into()).await;
    // Past the JSON parser's nesting limit: undecodable.
    corrupt("bad-deep", deeply_nested(200)).await;
    corrupt("bad-dying", deeply_nested(200)).await;
    // 126 levels is still within it: a valid record, if an odd one.
    corrupt("nested", deeply_nested(126)).await;

    for key in [&text, &deep] {
        assert!(
            matches!(store.load(key).await, Ok(None)),
            "a corrupt record loads as absent"
        );
    }
    assert!(store.load(&good).await.unwrap().is_some());
    assert!(store.load(&nested).await.unwrap().is_some());
    let mut readable = vec![good, nested];
    readable.sort();
    let listed = user_keys(store, "carol").await;
    assert_eq!(listed, readable, "only the readable sessions are listed");
    let all = all_keys(store, 100).await;
    assert_eq!(all, readable, "the admin listing skips corrupt rows");
    // In pages of one, too: a page whose rows were corrupt read on rather than came back
    // empty, which ended the admin command's listing there.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let query = cloakroom::ListQuery {
            after,
            limit: 1,
            ..Default::default()
        };
        let page = store.list_sessions(&query).await.unwrap();
        let Some(entry) = page.first() else { break };
        paged.push(entry.key);
        after = Some(entry.key);
    }
    assert_eq!(paged, readable, "pages of one skip corrupt rows and go on");
    assert!(matches!(
        store.find_by_handle(&deep.handle()).await,
        Ok(None)
    ));

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store
            .purge_expired(10)
            .await
            .expect("purge removes corrupt rows too"),
        1
    );
    assert_eq!(
        store
            .delete_for_user("carol", Some(&good))
            .await
            .expect("revoke-others removes corrupt rows too"),
        3
    );
    assert_eq!(store.delete_for_user("carol", None).await.unwrap(), 1);
    assert!(store.list_for_user("carol").await.unwrap().is_empty());
}

/// A user with more sessions than one page of a listing reads gets them all, once each.
pub async fn lists_a_user_past_one_page(store: &impl SessionStore) {
    let mut written = Vec::new();
    for _ in 0..2_001 {
        let key = SessionId::generate().store_key();
        let record = user_record("paged", "p", time::Duration::hours(1));
        store.insert(&key, &record).await.unwrap();
        written.push(key);
    }
    written.sort();
    assert_eq!(user_keys(store, "paged").await, written);
}

/// Inserts `n` sessions for one user, then times listing them, revoking all but one,
/// revoking the rest and purging, each under the store's own timeout. Prints the figures.
pub async fn per_user_scale<S: SessionStore + Clone + 'static>(store: S, n: usize, what: &str) {
    let user = "scale-user";
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 16;
    for worker in 0..workers {
        let store = store.clone();
        tasks.spawn(async move {
            for _ in (worker..n).step_by(workers) {
                let record = user_record(user, "scale", time::Duration::hours(1));
                store
                    .insert(&SessionId::generate().store_key(), &record)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let insert = started.elapsed();
    let started = Instant::now();
    let listed = store.list_for_user(user).await.expect("list");
    let list = started.elapsed();
    assert_eq!(listed.len(), n);
    let keep = listed[0].key;
    drop(listed);
    let started = Instant::now();
    let revoked = store
        .delete_for_user(user, Some(&keep))
        .await
        .expect("revoke others");
    let others = started.elapsed();
    assert_eq!(revoked as usize, n - 1);
    let started = Instant::now();
    assert_eq!(
        store.delete_for_user(user, None).await.expect("revoke all"),
        1
    );
    let all = started.elapsed();
    let started = Instant::now();
    store.purge_expired(10_000).await.expect("purge");
    let purge = started.elapsed();
    eprintln!(
        "{what}: {n} sessions of one user: insert {insert:?}, list {list:?}, \
         revoke others {others:?}, revoke all {all:?}, purge {purge:?}"
    );
}

/// The table `name`, migrated (twice: it is idempotent), keeps sessions.
pub async fn table_migrates_and_works<D: cloakroom_sqlx::Dialect>(
    name: &str,
    store: &cloakroom_sqlx::SqlStore<D>,
) {
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("table {name}: {e}"));
    store.migrate().await.expect("migrate again");
    table_works(store).await;
}

/// Every kind of statement works on the store's table.
pub async fn table_works(store: &impl SessionStore) {
    let key = SessionId::generate().store_key();
    let record = user_record("u", "ip", time::Duration::hours(1));
    store.insert(&key, &record).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_some());
    let mut newer = record.clone();
    newer.data.insert("n".into(), 1.into());
    store.update(&key, &newer).await.unwrap();
    let renamed = SessionId::generate().store_key();
    store.rename(&key, &renamed).await.unwrap();
    assert_eq!(store.list_for_user("u").await.unwrap().len(), 1);
    assert!(store
        .find_by_handle(&renamed.handle())
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.purge_expired(10).await.unwrap(), 0);
    assert_eq!(store.delete_for_user("u", None).await.unwrap(), 1);
    assert!(!store.delete(&renamed).await.unwrap());
}

/// The purge-mark grid's step (`cloakroom_sqlx`'s `PURGE_STEP_MS`): five minutes.
pub const MARK_STEP_MS: i64 = 300_000;

/// Purge marks: a write whose deadline stays within the mark's step leaves the mark, the
/// one indexed column a write would otherwise move, as it was; a write past it moves it
/// to the next grid point; a stale mark (as an older version leaves it) makes its live
/// row a purge candidate that the purge keeps, then mends. `marks(key)` reads the row's
/// `(expires_at, purge_at)`; `make_stale(key)` sets its mark to 0 and answers how many
/// rows it changed.
pub async fn purge_marks<M, MF, S, SF>(store: &impl SessionStore, marks: M, make_stale: S)
where
    M: Fn(Vec<u8>) -> MF,
    MF: std::future::Future<Output = (Option<i64>, i64)>,
    S: Fn(Vec<u8>) -> SF,
    SF: std::future::Future<Output = u64>,
{
    let key = SessionId::generate().store_key();
    let raw = || key.as_bytes().to_vec();
    let at = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
    };
    // The mark for a deadline as stored (a server may clamp it a little to its clock).
    let mark_of = |stored: Option<i64>| {
        let stored = stored.expect("a deadline");
        stored / MARK_STEP_MS * MARK_STEP_MS + MARK_STEP_MS
    };
    // A deadline a minute past a grid point, an hour ahead.
    let now = record::now();
    let grid = (record::to_unix_ms(now) + 3_600_000) / MARK_STEP_MS * MARK_STEP_MS;
    let mut record = Record::new(now, Some(at(grid + 60_000)), None);
    store.insert(&key, &record).await.unwrap();
    let (stored, mark) = marks(raw()).await;
    assert_eq!(mark, mark_of(stored));
    for moved in 1..=5 {
        record.last_active_at = record::now();
        record.idle_deadline = Some(at(grid + 60_000 + moved * 1_000));
        store.update(&key, &record).await.unwrap();
        record.version += 1;
        let (now_stored, now_mark) = marks(raw()).await;
        assert!(now_stored > stored, "the write moved the deadline");
        assert_eq!(now_mark, mark, "a write within the step leaves the mark");
    }
    record.last_active_at = record::now();
    record.idle_deadline = Some(at(mark + 1_000));
    store.update(&key, &record).await.unwrap();
    let (stored, moved) = marks(raw()).await;
    assert_eq!(
        moved,
        mark + MARK_STEP_MS,
        "a deadline that reaches the mark moves it a step on"
    );
    assert_eq!(moved, mark_of(stored));
    assert_eq!(make_stale(raw()).await, 1);
    assert_eq!(store.purge_expired(10).await.unwrap(), 0);
    assert!(
        store.load(&key).await.unwrap().is_some(),
        "a live row with a stale mark is kept"
    );
    assert_eq!(
        marks(raw()).await,
        (stored, moved),
        "the purge mends the stale mark"
    );
}
