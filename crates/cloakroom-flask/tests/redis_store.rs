//! FlaskRedisStore against the real Redis: Flask-Session's layout, and a write by Flask
//! between a load and an update is a conflict, never silently overwritten.

mod support;

use std::time::Duration;

use cloakroom::conformance::listed_keys;
use cloakroom::{record, ExpiryPolicy, Record, SessionId, SessionStore, StoreKey, UpdateError};
use redis::aio::MultiplexedConnection;
use support::redis_url;

/// Flask-Session's write of a session dict: `value` as MessagePack, as [`flask_set`].
async fn flask_set_value(
    connection: &mut MultiplexedConnection,
    redis_key: &str,
    value: &rmpv::Value,
    ttl: Duration,
) {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).unwrap();
    flask_set(connection, redis_key, &bytes, ttl).await;
}

/// Flask-Session's write: `bytes` under `redis_key`, with a TTL.
async fn flask_set(
    connection: &mut MultiplexedConnection,
    redis_key: &str,
    bytes: &[u8],
    ttl: Duration,
) {
    let _: () = redis::cmd("SET")
        .arg(redis_key)
        .arg(bytes)
        .arg("PX")
        .arg(u64::try_from(ttl.as_millis()).unwrap())
        .query_async(connection)
        .await
        .unwrap();
}

/// `value`, a Flask session dict, with `key` set to `new`, as Flask would save it.
fn with_entry(mut value: rmpv::Value, key: &str, new: rmpv::Value) -> rmpv::Value {
    if let rmpv::Value::Map(pairs) = &mut value {
        for (k, v) in pairs.iter_mut() {
            if k.as_str() == Some(key) {
                *v = new.clone();
            }
        }
    }
    value
}

/// A new session keyed reversibly, as Flask-Session keys sessions by their raw ID: the ID,
/// its key and a fresh record idle for at most `idle`.
fn new_session(idle: Duration) -> (SessionId, StoreKey, Record) {
    let id = SessionId::generate().with_reversible_key();
    let key = id.store_key();
    let record = ExpiryPolicy::default()
        .with_idle_timeout(Some(idle))
        .new_record(record::now());
    (id, key, record)
}

#[tokio::test]
async fn flask_writes_are_conflicts_and_keys_are_flask_sessions() {
    let Some(store) = support::connect().await else {
        return;
    };
    let prefix = format!("ct-flask-store:{}:", std::process::id());
    let store = store
        .with_prefix(&prefix)
        .with_lifetime(Duration::from_secs(600));
    let (id, key, mut record) = new_session(Duration::from_secs(600));
    record.data.insert("n".into(), 1.into());
    store.insert(&key, &record).await.unwrap();

    // Flask-Session's key: the prefix and the raw ID, with the lifetime as TTL.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let redis_key = format!("{prefix}{}", id.to_cookie_value());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&redis_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((590_000..=600_000).contains(&ttl), "TTL {ttl} ms");

    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data["n"], 1);
    // Flask rewrites the session (same dict, another value) between our load and update.
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    let flask_value = with_entry(
        rmpv::decode::read_value(&mut &bytes[..]).unwrap(),
        "n",
        5.into(),
    );
    flask_set_value(
        &mut connection,
        &redis_key,
        &flask_value,
        Duration::from_secs(600),
    )
    .await;

    let mut ours = loaded.clone();
    ours.data.insert("n".into(), 2.into());
    assert!(matches!(
        store.update(&key, &ours).await,
        Err(UpdateError::Conflict)
    ));
    let fresh = store.load(&key).await.unwrap().unwrap();
    assert_eq!(fresh.data["n"], 5, "Flask's write is kept");
    ours.version = fresh.version;
    store.update(&key, &ours).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap().unwrap().data["n"], 2);

    // Rotation and deletion act on Flask-Session's keys.
    let new = SessionId::generate().with_reversible_key();
    store.rename(&key, &new.store_key()).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}{}", new.to_cookie_value()))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(exists, 1);
    assert!(store.delete(&new.store_key()).await.unwrap());
    assert!(store.load(&new.store_key()).await.unwrap().is_none());
}

/// Flask saving the unchanged dict again (SESSION_REFRESH_EACH_REQUEST) keeps cloakroom's
/// version and moves the idle deadline to Flask's TTL; Flask adding a key or logging in
/// another user is a write cloakroom sees: a conflict, and the index no longer lists the
/// session under the old user.
#[tokio::test]
async fn flask_refreshes_keep_the_version_and_flask_changes_are_seen() {
    let Some(store) = support::connect().await else {
        return;
    };
    let prefix = format!(
        "ct-flask-refresh:{}:",
        &SessionId::generate().store_key().to_hex()[..12]
    );
    let store = store
        .with_prefix(&prefix)
        .with_index_prefix(format!("{prefix}~user:"))
        .with_lifetime(Duration::from_secs(3600));
    let (id, key, mut record) = new_session(Duration::from_secs(60));
    record.user_id = Some("alice".into());
    store.insert(&key, &record).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.version, record.version);

    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let redis_key = format!("{prefix}{}", id.to_cookie_value());
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    // Flask writes the same dict back with its own TTL, the lifetime.
    flask_set(
        &mut connection,
        &redis_key,
        &bytes,
        Duration::from_secs(3600),
    )
    .await;
    let refreshed = store.load(&key).await.unwrap().unwrap();
    assert_eq!(refreshed.version, loaded.version, "nothing changed");
    assert!(
        refreshed.idle_deadline.unwrap()
            > loaded.idle_deadline.unwrap() + time::Duration::minutes(30),
        "the idle deadline follows Flask's refreshed TTL"
    );

    // Flask logs bob in on the same session and adds a key.
    let mut value = with_entry(
        rmpv::decode::read_value(&mut &bytes[..]).unwrap(),
        "_user_id",
        "bob".into(),
    );
    if let rmpv::Value::Map(pairs) = &mut value {
        pairs.push(("_fresh".into(), true.into()));
    }
    flask_set_value(
        &mut connection,
        &redis_key,
        &value,
        Duration::from_secs(3600),
    )
    .await;
    assert!(matches!(
        store.update(&key, &refreshed).await,
        Err(UpdateError::Conflict)
    ));
    let flasks = store.load(&key).await.unwrap().unwrap();
    assert_ne!(flasks.version, refreshed.version);
    assert_eq!(flasks.user_id.as_deref(), Some("bob"));
    assert!(
        store.list_for_user("alice").await.unwrap().is_empty(),
        "alice's index no longer lists bob's session"
    );
    assert_eq!(store.delete_for_user("alice", None).await.unwrap(), 0);
    assert!(store.load(&key).await.unwrap().is_some(), "bob stays");
    // cloakroom's next write indexes the session under bob, counting on from there.
    store.update(&key, &flasks).await.unwrap();
    assert_eq!(store.list_for_user("bob").await.unwrap().len(), 1);
    assert_eq!(store.delete_for_user("bob", None).await.unwrap(), 1);
}

/// Times past the year 9999 saturate instead of panicking: a key Redis gives a TTL of
/// thousands of years (any client may set one), and a store whose lifetime is huge, whose
/// saved deadlines reach the last instant a timestamp holds. Each overflowed a date sum
/// in `load` (and in the listings and revocations that read the same way) and panicked.
#[tokio::test]
async fn extreme_ttls_and_lifetimes_load_without_panicking() {
    let Some(store) = support::connect().await else {
        return;
    };
    let prefix = format!("{}:", support::unique_prefix());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();

    // Flask's own write, then a TTL of 9,500 years.
    let store = store.with_prefix(&prefix);
    let (id, key, _) = new_session(Duration::from_secs(600));
    let dict = rmpv::Value::Map(vec![("_user_id".into(), "alice".into())]);
    let redis_key = format!("{prefix}{}", id.to_cookie_value());
    flask_set_value(&mut connection, &redis_key, &dict, Duration::from_secs(600)).await;
    let _: () = redis::cmd("PEXPIRE")
        .arg(&redis_key)
        .arg(300_000_000_000_000_u64)
        .query_async(&mut connection)
        .await
        .unwrap();
    let loaded = store.load(&key).await.unwrap().expect("still live");
    assert_eq!(loaded.user_id.as_deref(), Some("alice"));
    let alice = key;

    // A lifetime as long as a `Duration` holds: cloakroom saves deadlines at the end of
    // the year 9999, and reads them back.
    let forever = store.with_lifetime(Duration::MAX);
    let (_, key, mut record) = new_session(Duration::MAX);
    record.user_id = Some("bob".into());
    forever.insert(&key, &record).await.unwrap();
    let loaded = forever.load(&key).await.unwrap().expect("still live");
    assert_eq!(loaded.user_id.as_deref(), Some("bob"));
    assert_eq!(forever.delete_for_user("bob", None).await.unwrap(), 1);
    // Flask's session under that lifetime: its last activity is taken as the lifetime
    // before the TTL's deadline.
    let loaded = forever.load(&alice).await.unwrap().expect("still live");
    assert_eq!(loaded.user_id.as_deref(), Some("alice"));
}

/// A store under a key prefix of its own with a 600 s lifetime, the prefix, and a
/// connection to its Redis for what Flask (or an operator) does there; `None` after a loud
/// skip.
async fn private_store() -> Option<(
    cloakroom_flask::FlaskRedisStore,
    String,
    MultiplexedConnection,
)> {
    let store = support::connect().await?;
    let prefix = support::unique_prefix();
    let store = store
        .with_prefix(&prefix)
        .with_lifetime(Duration::from_secs(600));
    let client = redis::Client::open(redis_url()).unwrap();
    let connection = client.get_multiplexed_async_connection().await.unwrap();
    Some((store, prefix, connection))
}

/// A user's index set expires with the last of its sessions. It had no expiry: Redis
/// expired each session by its TTL and the set kept every member ever added, one per
/// login, for good, unless something listed the user's sessions.
#[tokio::test]
async fn a_users_index_set_expires_with_its_sessions() {
    let Some((store, prefix, mut connection)) = private_store().await else {
        return;
    };
    let set = format!("cloakroom:{prefix}user:alice");
    let set_ttl = |mut connection: MultiplexedConnection| {
        let set = set.clone();
        async move {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&set)
                .query_async(&mut connection)
                .await
                .unwrap();
            ttl
        }
    };

    let (_, first, mut record) = new_session(Duration::from_secs(600));
    record.user_id = Some("alice".into());
    store.insert(&first, &record).await.unwrap();
    let ttl = set_ttl(connection.clone()).await;
    assert!(
        (590_000..=600_000).contains(&ttl),
        "the set's TTL is {ttl} ms"
    );

    // A longer-lived session of the user, made by a renamed one, keeps the set longer.
    let longer = store.with_lifetime(Duration::from_secs(3_600));
    let (_, second, mut record) = new_session(Duration::from_secs(3_600));
    record.user_id = Some("alice".into());
    longer.insert(&second, &record).await.unwrap();
    let renamed = SessionId::generate().with_reversible_key().store_key();
    longer.rename(&second, &renamed).await.unwrap();
    let ttl = set_ttl(connection.clone()).await;
    assert!(
        (3_590_000..=3_600_000).contains(&ttl),
        "the set's TTL is {ttl} ms"
    );
    let mut expected = vec![first, renamed];
    expected.sort();
    assert_eq!(listed_keys(&longer, "alice").await, expected);
    let _: () = redis::cmd("DEL")
        .arg(&set)
        .query_async(&mut connection)
        .await
        .unwrap();
}

/// "Log out everywhere" never reports success while a session it was to end is live. A
/// session rewritten under every pass (Flask saving it on each request of a busy client)
/// was passed over each time, and the revocation returned `Ok` after its last pass with
/// the session still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_never_reports_success_over_a_live_session() {
    let Some((store, prefix, connection)) = private_store().await else {
        return;
    };
    let (id, key, mut record) = new_session(Duration::from_secs(600));
    record.user_id = Some("busy".into());
    record.data.insert("n".into(), 0.into());
    store.insert(&key, &record).await.unwrap();
    let redis_key = format!("{prefix}{}", id.to_cookie_value());
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut connection.clone())
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Flask rewriting the session as fast as it can, another `n` each time, so every write
    // changes the bytes; only while the session exists (`XX`), so that the writer never
    // makes again what the revocation deleted.
    let writer = tokio::spawn({
        let (stop, mut connection, redis_key) =
            (stop.clone(), connection.clone(), redis_key.clone());
        async move {
            let value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let value = with_entry(value.clone(), "n", n.into());
                let mut bytes = Vec::new();
                rmpv::encode::write_value(&mut bytes, &value).unwrap();
                let _: Option<String> = redis::cmd("SET")
                    .arg(&redis_key)
                    .arg(bytes)
                    .arg("XX")
                    .arg("KEEPTTL")
                    .query_async(&mut connection)
                    .await
                    .unwrap();
            }
        }
    });
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let revoked = store.delete_for_user("busy", None).await;
        let live = store.load(&key).await.unwrap().is_some();
        outcomes.push((revoked.is_ok(), live));
        if !live {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        outcomes.iter().all(|&(ok, live)| !(ok && live)),
        "a revocation said Ok with the session live: {outcomes:?}"
    );
}

/// A listing deletes a session of the user that is past its absolute deadline, as a
/// revocation does. It dropped the session from the user's index and left the key, which
/// Flask went on serving (its TTL knows no absolute deadline), so a later "log out
/// everywhere" no longer found it.
#[tokio::test]
async fn a_listing_leaves_no_session_out_of_reach_of_a_revocation() {
    let Some((store, prefix, mut connection)) = private_store().await else {
        return;
    };
    // Carol's other device keeps her index set alive.
    let (_, other, mut record) = new_session(Duration::from_secs(600));
    record.user_id = Some("carol".into());
    store.insert(&other, &record).await.unwrap();
    let (id, key, mut record) = new_session(Duration::from_secs(600));
    record.user_id = Some("carol".into());
    record.absolute_deadline = Some(record.created_at + Duration::from_secs(1));
    store.insert(&key, &record).await.unwrap();
    // Flask serves the session and pushes its TTL on, as it does on every request; then
    // the absolute deadline passes.
    let redis_key = format!("{prefix}{}", id.to_cookie_value());
    let pushed: i64 = redis::cmd("PEXPIRE")
        .arg(&redis_key)
        .arg(60_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pushed, 1, "the session's key is there");
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    assert_eq!(listed_keys(&store, "carol").await, [other]);
    store.delete_for_user("carol", None).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&redis_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(exists, 0, "Flask can still serve the session");
}

/// A rename in the last millisecond of the session's TTL does not make the session live
/// for good. A script still reads a key in that millisecond, with a `PTTL` of 0, and the
/// rename copied it without a TTL: Flask then served the copy forever, and a record Flask
/// wrote (so no idle deadline of cloakroom's) loaded as live forever too. Run many times,
/// each at a different point of a 3 ms TTL.
#[tokio::test]
async fn a_rename_at_the_end_of_the_ttl_never_makes_a_session_immortal() {
    let Some((store, prefix, mut connection)) = private_store().await else {
        return;
    };
    let dict = rmpv::Value::Map(vec![("n".into(), 1.into())]);
    let mut immortal = 0;
    for round in 0..600u32 {
        let (old_id, old, _) = new_session(Duration::from_secs(600));
        let new_id = SessionId::generate().with_reversible_key();
        let redis_key = format!("{prefix}{}", old_id.to_cookie_value());
        flask_set_value(&mut connection, &redis_key, &dict, Duration::from_millis(3)).await;
        let started = std::time::Instant::now();
        let wait = Duration::from_micros(u64::from(round % 30) * 100);
        while started.elapsed() < wait {
            std::hint::spin_loop();
        }
        if store.rename(&old, &new_id.store_key()).await.is_ok() {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(format!("{prefix}{}", new_id.to_cookie_value()))
                .query_async(&mut connection)
                .await
                .unwrap();
            if ttl == -1 {
                immortal += 1;
            }
        }
    }
    assert_eq!(immortal, 0, "renamed sessions with no TTL");
}
