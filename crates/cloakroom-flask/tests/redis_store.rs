//! FlaskRedisStore against the real Redis: Flask-Session's layout, and a write by Flask
//! between a load and an update is a conflict, never silently overwritten.

use std::time::Duration;

use cloakroom::{record, ExpiryPolicy, SessionId, SessionStore, UpdateError};
use cloakroom_flask::FlaskRedisStore;

fn redis_url() -> String {
    std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[tokio::test]
async fn flask_writes_are_conflicts_and_keys_are_flask_sessions() {
    let store = match FlaskRedisStore::connect(&redis_url()).await {
        Ok(store) => store,
        Err(error) => {
            assert!(
                !std::env::var("CLOAKROOM_REQUIRE_SERVICES").is_ok_and(|v| v == "1"),
                "Redis is unreachable: {error}"
            );
            eprintln!(
                "\n*****\nSKIPPING: Redis at {} is unreachable ({error})\n*****\n",
                redis_url()
            );
            return;
        }
    };
    let prefix = format!("ct-flask-store:{}:", std::process::id());
    let store = store
        .with_prefix(&prefix)
        .with_lifetime(Duration::from_secs(600));
    let id = SessionId::generate().with_reversible_key();
    let key = id.store_key();
    let mut record = ExpiryPolicy::default()
        .with_idle_timeout(Some(Duration::from_secs(600)))
        .new_record(record::now());
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
    let mut flask_value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    if let rmpv::Value::Map(pairs) = &mut flask_value {
        for (k, v) in pairs.iter_mut() {
            if k.as_str() == Some("n") {
                *v = rmpv::Value::from(5);
            }
        }
    }
    let mut flask_bytes = Vec::new();
    rmpv::encode::write_value(&mut flask_bytes, &flask_value).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(flask_bytes)
        .arg("PX")
        .arg(600_000)
        .query_async(&mut connection)
        .await
        .unwrap();

    let mut ours = loaded.clone();
    ours.data.insert("n".into(), 2.into());
    assert!(matches!(
        store.update(&key, &ours, loaded.version).await,
        Err(UpdateError::Conflict)
    ));
    let fresh = store.load(&key).await.unwrap().unwrap();
    assert_eq!(fresh.data["n"], 5, "Flask's write is kept");
    store.update(&key, &ours, fresh.version).await.unwrap();
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
    let Ok(store) = FlaskRedisStore::connect(&redis_url()).await else {
        return cloakroom::testing::skip("Redis is unreachable");
    };
    let prefix = format!(
        "ct-flask-refresh:{}:",
        &SessionId::generate().store_key().to_hex()[..12]
    );
    let store = store
        .with_prefix(&prefix)
        .with_index_prefix(format!("{prefix}~user:"))
        .with_lifetime(Duration::from_secs(3600));
    let id = SessionId::generate().with_reversible_key();
    let key = id.store_key();
    let mut record = ExpiryPolicy::default()
        .with_idle_timeout(Some(Duration::from_secs(60)))
        .new_record(record::now());
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
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(&bytes)
        .arg("EX")
        .arg(3600)
        .query_async(&mut connection)
        .await
        .unwrap();
    let refreshed = store.load(&key).await.unwrap().unwrap();
    assert_eq!(refreshed.version, loaded.version, "nothing changed");
    assert!(
        refreshed.idle_deadline.unwrap()
            > loaded.idle_deadline.unwrap() + time::Duration::minutes(30),
        "the idle deadline follows Flask's refreshed TTL"
    );

    // Flask logs bob in on the same session and adds a key.
    let mut value = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    if let rmpv::Value::Map(pairs) = &mut value {
        for (k, v) in pairs.iter_mut() {
            if k.as_str() == Some("_user_id") {
                *v = rmpv::Value::from("bob");
            }
        }
        pairs.push(("_fresh".into(), true.into()));
    }
    let mut flask_bytes = Vec::new();
    rmpv::encode::write_value(&mut flask_bytes, &value).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(flask_bytes)
        .arg("EX")
        .arg(3600)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(matches!(
        store.update(&key, &refreshed, refreshed.version).await,
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
    store.update(&key, &flasks, flasks.version).await.unwrap();
    assert_eq!(store.list_for_user("bob").await.unwrap().len(), 1);
    assert_eq!(store.delete_for_user("bob", None).await.unwrap(), 1);
}
