//! Per-user operations at scale, under concurrent rotation, and over corrupt records, on
//! the shared Redis (each test under its own key prefix).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::record::{now, to_unix_ms};
use cloakroom::{Record, RenameError, SessionId, SessionStore, StoreError, StoreKey};
use cloakroom_redis::{RedisConfig, RedisStore};
use futures_util::StreamExt;

async fn store(prefix: &str) -> Option<RedisStore> {
    let url = support::reachable_redis().await?;
    let config = RedisConfig {
        prefix: prefix.to_owned(),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect_with(&url, config).await;
    Some(store.expect("connect to Redis"))
}

fn user_record(user: &str) -> Record {
    let t = now();
    let mut record = Record::new(
        t,
        Some(t + Duration::from_secs(600)),
        Some(t + Duration::from_secs(3600)),
    );
    record.user_id = Some(user.to_owned());
    record
}

/// Inserts `count` sessions of `user`, many at a time, and returns their keys.
async fn log_in_many(store: &RedisStore, user: &str, count: usize) -> Vec<StoreKey> {
    let record = user_record(user);
    futures_util::stream::iter(0..count)
        .map(|_| {
            let record = record.clone();
            async move {
                let key = SessionId::generate().store_key();
                store.insert(&key, &record).await.expect("insert");
                key
            }
        })
        .buffer_unordered(128)
        .collect()
        .await
}

async fn live_count(store: &RedisStore, keys: &[StoreKey]) -> usize {
    futures_util::stream::iter(keys)
        .map(|key| async move { store.load(key).await.expect("load").is_some() })
        .buffer_unordered(128)
        .filter(|live| std::future::ready(*live))
        .count()
        .await
}

/// Logs `crowd` in `count` times, then lists and revokes all but one session, timing both
/// (`label` names the deployment in the figures); one session is left, listed alone.
async fn revoke_others_at_scale(store: &RedisStore, label: &str, count: usize) {
    let keys = log_in_many(store, "crowd", count).await;
    let current = keys[0];

    let started = Instant::now();
    let listed = store.list_for_user("crowd").await.expect("list");
    assert_eq!(listed.len(), count);
    eprintln!(
        "{label}list_for_user, {count} sessions: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let revoked = store
        .delete_for_user("crowd", Some(&current))
        .await
        .expect("revoke others");
    eprintln!(
        "{label}delete_for_user(except), {count} sessions: {:?}",
        started.elapsed()
    );
    assert_eq!(revoked, count as u64 - 1);
    assert_eq!(live_count(store, &keys).await, 1);
    let listed = store.list_for_user("crowd").await.expect("list after");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, current);
}

/// One round of revoke-others while `renamed` of the user's `count` sessions keep being
/// rotated: no session survives under a new ID, and only the kept one is left.
async fn revoke_others_racing_renames(
    store: &RedisStore,
    round: usize,
    count: usize,
    renamed: usize,
) {
    let user = format!("racer{round}");
    let keep = log_in_many(store, &user, 1).await[0];
    let mut keys = log_in_many(store, &user, count).await;
    let chains = keys.split_off(count - renamed);
    let done = Arc::new(AtomicBool::new(false));
    let renamers: Vec<_> = chains
        .into_iter()
        .map(|mut key| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                loop {
                    let next = SessionId::generate().store_key();
                    match store.rename(&key, &next).await {
                        Ok(()) => key = next,
                        Err(RenameError::Missing) => return key,
                        Err(error) => panic!("rename: {error}"),
                    }
                    if done.load(Ordering::SeqCst) {
                        return key;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2)).await;
    store
        .delete_for_user(&user, Some(&keep))
        .await
        .expect("revoke");
    done.store(true, Ordering::SeqCst);
    for renamer in renamers {
        keys.push(renamer.await.unwrap());
    }
    assert_eq!(
        live_count(store, &keys).await,
        0,
        "round {round}: a session renamed during the revocation survived it"
    );
    assert!(store.load(&keep).await.unwrap().is_some());
    let listed = store.list_for_user(&user).await.unwrap();
    assert_eq!(listed.len(), 1, "round {round}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_others_finishes_for_twenty_thousand_sessions() {
    let prefix = support::unique_prefix();
    let Some(store) = store(&prefix).await else {
        return;
    };
    revoke_others_at_scale(&store, "", 20_000).await;
    support::clean(&support::redis_url(), &prefix).await;
}

/// A session rotated (renamed) while its user's other sessions are revoked must not
/// survive under its new ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_others_racing_rename_leaves_only_the_kept_session() {
    let prefix = support::unique_prefix();
    let Some(store) = store(&prefix).await else {
        return;
    };
    for round in 0..15 {
        revoke_others_racing_renames(&store, round, 300, 20).await;
    }
    support::clean(&support::redis_url(), &prefix).await;
}

/// Writes a raw session hash for `user` and indexes it, as a damaged or foreign writer
/// might have left it.
async fn plant(prefix: &str, user: &str, key: &StoreKey, fields: &[(&str, String)]) {
    let client = redis::Client::open(support::redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let session = format!("{prefix}s:{{{}}}", key.to_hex());
    let mut hset = redis::cmd("HSET");
    hset.arg(&session);
    for (name, value) in fields {
        hset.arg(*name).arg(value);
    }
    let _: () = hset.query_async(&mut connection).await.unwrap();
    let _: () = redis::cmd("SADD")
        .arg(format!("{prefix}u:{{{user}}}"))
        .arg(key.to_hex())
        .query_async(&mut connection)
        .await
        .unwrap();
}

async fn exists(prefix: &str, key: &StoreKey) -> bool {
    let session = format!("{prefix}s:{{{}}}", key.to_hex());
    support::command::<i64>(&support::redis_url(), &["EXISTS", &session]).await == 1
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_records_are_skipped_by_list_and_removed_by_revoke() {
    let prefix = support::unique_prefix();
    let Some(store) = store(&prefix).await else {
        return;
    };
    let good = log_in_many(&store, "mallory", 3).await;
    let later = (to_unix_ms(now()) + 600_000).to_string();
    let t = to_unix_ms(now()).to_string();
    let valid = serde_json::to_string(&user_record("mallory")).unwrap();
    let deep = valid.replacen(
        "\"data\":{}",
        &format!("\"data\":{{\"k\":{}}}", nested(126)),
        1,
    );
    assert_ne!(deep, valid);
    let damaged: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("not JSON", vec![("r", "{not json".into())]),
        ("126 levels deep", vec![("r", deep)]),
        (
            "bad version",
            vec![("r", valid.clone()), ("v", "one".into())],
        ),
        (
            "bad deadline",
            vec![
                ("r", valid.clone()),
                ("x", "soon".into()),
                ("i", "soon".into()),
            ],
        ),
        (
            "missing fields",
            vec![("u", "mallory".into()), ("x", later.clone())],
        ),
    ];
    let mut corrupt = Vec::new();
    let mut cookies = Vec::new();
    for (_, overrides) in &damaged {
        let id = SessionId::generate();
        let key = id.store_key();
        cookies.push(id.to_cookie_value());
        let mut fields: Vec<(&str, String)> = vec![
            ("v", "1".into()),
            ("r", valid.clone()),
            ("la", t.clone()),
            ("i", later.clone()),
            ("a", later.clone()),
            ("x", later.clone()),
            ("u", "mallory".into()),
        ];
        if overrides.iter().any(|(name, _)| *name == "u") {
            fields.clear();
        }
        for (name, value) in overrides {
            fields.retain(|(n, _)| n != name);
            fields.push((name, value.clone()));
        }
        plant(&prefix, "mallory", &key, &fields).await;
        corrupt.push(key);
    }

    for (key, (what, _)) in corrupt.iter().zip(&damaged) {
        match store.load(key).await {
            Ok(None) | Err(StoreError::Corrupt(_)) => {}
            other => panic!("{what}: load gave {other:?}, not absent or Corrupt"),
        }
    }
    // Through the session layer, a request carrying such a session's cookie is anonymous.
    let app = cloakroom::testing::counter_app(store.clone());
    for (cookie, (what, _)) in cookies.iter().zip(&damaged) {
        let response = cloakroom::testing::request_once(&app, "GET", "/n", Some(cookie)).await;
        assert_eq!(response.status(), 200, "{what}: not an anonymous request");
        assert_eq!(
            response.json::<Option<u64>>(),
            None,
            "{what}: data was read"
        );
    }
    let mut expected = good.clone();
    expected.sort();
    let listed = cloakroom::testing::user_keys(&store, "mallory").await;
    assert_eq!(listed, expected, "list shows exactly the sound sessions");
    let all = cloakroom::testing::all_keys(&store, 100).await;
    assert_eq!(all.len(), 3);
    store.purge_expired(100).await.expect("purge");

    let revoked = store
        .delete_for_user("mallory", Some(&good[0]))
        .await
        .expect("revoke over corrupt records");
    // The sound two, and perhaps damaged ones that still looked live to the server.
    assert!(
        (2..=2 + corrupt.len() as u64).contains(&revoked),
        "{revoked}"
    );
    for (key, (what, _)) in corrupt.iter().zip(&damaged) {
        assert!(!exists(&prefix, key).await, "{what}: revoke left it");
    }
    assert!(store.load(&good[0]).await.unwrap().is_some());
    assert_eq!(store.delete_for_user("mallory", None).await.unwrap(), 1);
    support::clean(&support::redis_url(), &prefix).await;
}

/// Figures for RELIABILITY.md: one user with 100,000 sessions.
/// `cargo test -p cloakroom-redis --test scale -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check: about a minute"]
async fn measure_one_hundred_thousand_sessions_of_one_user() {
    let prefix = support::unique_prefix();
    let Some(store) = store(&prefix).await else {
        return;
    };
    let started = Instant::now();
    let keys = log_in_many(&store, "whale", 100_000).await;
    eprintln!("insert 100,000 (128 in flight): {:?}", started.elapsed());

    let started = Instant::now();
    let listed = store.list_for_user("whale").await.expect("list");
    eprintln!("list_for_user, 100,000 live: {:?}", started.elapsed());
    assert_eq!(listed.len(), 100_000);

    let started = Instant::now();
    let revoked = store
        .delete_for_user("whale", Some(&keys[0]))
        .await
        .expect("revoke others");
    eprintln!(
        "delete_for_user(except one), 100,000: {:?}",
        started.elapsed()
    );
    assert_eq!(revoked, 99_999);

    let keys = log_in_many(&store, "whale", 100_000).await;
    let started = Instant::now();
    let revoked = store
        .delete_for_user("whale", None)
        .await
        .expect("revoke all");
    eprintln!("delete_for_user(all), 100,001: {:?}", started.elapsed());
    assert_eq!(revoked, 100_001);
    drop(keys);

    let started = Instant::now();
    store.purge_expired(1000).await.expect("purge");
    eprintln!("purge_expired: {:?}", started.elapsed());
    support::clean(&support::redis_url(), &prefix).await;
}

/// A store on a new Redis Cluster, which lives as long as the handle returned with it; or
/// `None` after a loud skip.
async fn cluster_store() -> Option<(support::Cluster, Arc<RedisStore>)> {
    let cluster = support::Cluster::start_if_installed().await?;
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&urls, RedisConfig::default())
        .await
        .expect("connect to the cluster");
    Some((cluster, Arc::new(store)))
}

/// The cluster path (index and sessions in different slots): batched listing and
/// revocation at scale, and revocation racing renames.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_revoke_others_at_scale_and_racing_rename() {
    let Some((_cluster, store)) = cluster_store().await else {
        return;
    };

    revoke_others_at_scale(&store, "cluster ", 3_000).await;
    for round in 0..5 {
        revoke_others_racing_renames(&store, round, 200, 20).await;
    }
}

/// In a cluster, a rename whose original changed under it deletes its copy and makes it
/// again under the same index member. A listing or revocation that read the member's
/// session in that gap, and dropped the member after the copy was back, left a live
/// session out of its user's index for good: no later listing showed it and no later
/// revocation reached it. Here a session flickers the same way (deleted with its member
/// kept, then inserted again) while the user's sessions are listed or revoked: once both
/// are done, if it is live, it is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_index_keeps_a_session_that_flickers_during_a_listing() {
    let Some((_cluster, store)) = cluster_store().await else {
        return;
    };
    let mut unindexed = Vec::new();
    for round in 0..400u64 {
        let user = format!("flicker{round}");
        let record = user_record(&user);
        let kept = log_in_many(&store, &user, 3).await;
        let flickering = SessionId::generate().store_key();
        store.insert(&flickering, &record).await.unwrap();
        let toggler = tokio::spawn({
            let (store, record) = (Arc::clone(&store), record.clone());
            async move {
                tokio::time::sleep(Duration::from_micros(40 * (round % 13))).await;
                store.delete(&flickering).await.unwrap();
                tokio::time::sleep(Duration::from_micros(30 * (round % 7))).await;
                store.insert(&flickering, &record).await.unwrap();
            }
        });
        if round % 2 == 0 {
            store.list_for_user(&user).await.unwrap();
        } else {
            store.delete_for_user(&user, Some(&kept[0])).await.unwrap();
        }
        toggler.await.unwrap();
        let live = store.load(&flickering).await.unwrap().is_some();
        let listed = store.list_for_user(&user).await.unwrap();
        if live && !listed.iter().any(|entry| entry.key == flickering) {
            unindexed.push(round);
        }
    }
    assert!(
        unindexed.is_empty(),
        "rounds whose live session was left out of its user's index: {unindexed:?}"
    );
}

/// In a cluster, a rename copies the session and then deletes the original if its version
/// is still the one copied. A touch does not move the version, so one landing between the
/// copy and the delete was lost: the renamed session kept the idle deadline from before
/// it, and could expire up to a touch interval early. Both succeeded, so the renamed
/// session must carry the touch. Every other touch lands in the millisecond the session
/// was written, as a request right after a login can: comparing the last activity alone
/// missed those (CI caught 6 of 400 rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_rename_keeps_a_touch_that_lands_during_it() {
    let Some((_cluster, store)) = cluster_store().await else {
        return;
    };
    let mut lost = Vec::new();
    for round in 0..400u64 {
        let old = SessionId::generate().store_key();
        let new = SessionId::generate().store_key();
        let record = user_record("toucher");
        store.insert(&old, &record).await.unwrap();
        let touched = record.idle_deadline.unwrap() + Duration::from_secs(60);
        let written = record.last_active_at;
        let touch = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                tokio::time::sleep(Duration::from_micros(25 * (round % 17))).await;
                let touch = cloakroom::Touch {
                    last_active_at: if round % 2 == 0 { written } else { now() },
                    idle_deadline: Some(touched),
                };
                store.touch(&old, &touch).await.is_ok()
            }
        });
        let renamed = store.rename(&old, &new).await;
        let touch_landed = touch.await.unwrap();
        if renamed.is_ok() && touch_landed {
            let record = store
                .load(&new)
                .await
                .unwrap()
                .expect("the renamed session");
            if record.idle_deadline.map(to_unix_ms) != Some(to_unix_ms(touched)) {
                lost.push(round);
            }
        }
    }
    assert!(
        lost.is_empty(),
        "rounds whose touch the rename lost: {lost:?}"
    );
}
