//! Redis-specific behaviour: outage and recovery, and round trips per request. Each test
//! runs its own `redis-server` on a spare port, so stopping it disturbs nobody.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use cloakroom::testing::counter_app;
use cloakroom::{SessionId, SessionStore, StoreError};
use cloakroom_redis::{RedisConfig, RedisStore};

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>) {
    let response = cloakroom::testing::request_once(app, method, path, cookie).await;
    let cookie = response.session_cookie("id").map(str::to_owned);
    (response.status(), cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_gives_503_then_recovers_within_two_seconds() {
    let Some((_dir, mut server)) = support::Server::private().await else {
        return;
    };
    let config = RedisConfig {
        operation_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect_with(&server.url(), config)
        .await
        .unwrap();
    let app = counter_app(store.clone());
    let (status, cookie) = call(&app, "POST", "/set", None).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.unwrap();

    // Requests keep running through the outage.
    let log: Arc<Mutex<Vec<(Instant, StatusCode, Duration)>>> = Arc::default();
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (app, log, running, cookie) = (
            app.clone(),
            Arc::clone(&log),
            Arc::clone(&running),
            cookie.clone(),
        );
        tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                let started = Instant::now();
                let (status, _) = call(&app, "GET", "/n", Some(&cookie)).await;
                log.lock()
                    .unwrap()
                    .push((Instant::now(), status, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let key = SessionId::parse(&cookie).unwrap().store_key();
    match store.load(&key).await {
        Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => {}
        other => panic!("expected a typed unavailable error while Redis is down, got {other:?}"),
    }
    let during = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(during > 0, "requests during the outage get 503");

    server.restart().await;
    let back = Instant::now();
    let recovered = loop {
        let recovered = log
            .lock()
            .unwrap()
            .iter()
            .find(|(at, s, _)| *at > back && *s == StatusCode::OK)
            .map(|(at, _, _)| *at);
        if let Some(at) = recovered {
            break at;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "no recovery after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = recovered - back;
    running.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(3), load)
        .await
        .expect("no task is stuck")
        .unwrap();
    let slowest = log
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, d)| *d)
        .max()
        .unwrap();
    eprintln!("recovered {took:?} after Redis came back; slowest request {slowest:?}; {during} requests got 503");
    assert!(took < Duration::from_secs(2), "recovery took {took:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "nothing hangs: slowest request took {slowest:?}"
    );
    let (status, _) = call(&app, "POST", "/set", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// A store on a `redis-server` of the test's own (see `support::Server::private`).
async fn private_store() -> Option<(tempfile::TempDir, support::Server, RedisStore)> {
    let (dir, server) = support::Server::private().await?;
    let store = RedisStore::connect(&server.url()).await.unwrap();
    Some((dir, server, store))
}

/// The counter app on a private server, and the cookie of a session it has counted once.
async fn counted_session() -> Option<(tempfile::TempDir, support::Server, Router, String)> {
    let (dir, server, store) = private_store().await?;
    let app = counter_app(store);
    let (_, cookie) = call(&app, "POST", "/incr", None).await;
    Some((dir, server, app, cookie.expect("a session cookie")))
}

/// The commands clients send while `run` runs, as MONITOR sees them: commands that
/// scripts run inside the server are marked `[0 lua]` and do not count as round trips.
async fn commands_sent(port: u16, run: impl std::future::Future<Output = ()>) -> Vec<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut monitor = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    monitor.write_all(b"MONITOR\r\n").await.unwrap();
    let mut lines = BufReader::new(monitor).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("+OK"));
    run.await;
    let mut sent = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await
    {
        if !line.contains("[0 lua]") {
            sent.push(
                line.split_whitespace()
                    .nth(3)
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
            );
        }
    }
    sent
}

/// A request (method, path, session cookie), the commands the server should see for it,
/// and why.
type Cost<'a> = (&'a str, &'a str, Option<&'a str>, &'a [&'a str], &'a str);

#[tokio::test]
async fn a_read_costs_one_round_trip_and_a_write_two() {
    let Some((_dir, server, app, cookie)) = counted_session().await else {
        return;
    };
    call(&app, "POST", "/incr", Some(&cookie)).await; // the scripts are now cached

    let costs: [Cost; 3] = [
        (
            "GET",
            "/n",
            Some(&cookie),
            &["HMGET"],
            "reading an existing session is one round trip",
        ),
        (
            "POST",
            "/incr",
            Some(&cookie),
            &["HMGET", "EVALSHA"],
            "a request that writes is two round trips: the read and one script",
        ),
        ("GET", "/n", None, &[], "an anonymous read costs nothing"),
    ];
    for (method, path, cookie, expected, why) in costs {
        let sent = commands_sent(server.port, async {
            let (status, _) = call(&app, method, path, cookie).await;
            assert_eq!(status, StatusCode::OK, "{method} {path}");
        })
        .await;
        assert_eq!(sent, expected, "{why}");
    }
}

#[tokio::test]
async fn a_flushed_script_cache_falls_back_to_loading() {
    let Some((_dir, server, app, cookie)) = counted_session().await else {
        return;
    };
    let () = support::command(&server.url(), &["SCRIPT", "FLUSH"]).await;
    let (status, _) = call(&app, "POST", "/incr", Some(&cookie)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "EVALSHA falls back when the script is not cached"
    );
}

#[tokio::test]
async fn index_sets_expire_with_their_sessions() {
    let Some((_dir, server, store)) = private_store().await else {
        return;
    };
    let t = cloakroom::record::now();
    let mut record = cloakroom::Record::new(
        t,
        Some(t + time::Duration::minutes(5)),
        Some(t + time::Duration::hours(2)),
    );
    record.user_id = Some("alice".into());
    store
        .insert(&SessionId::generate().store_key(), &record)
        .await
        .unwrap();
    let ttl: i64 = support::command(&server.url(), &["PTTL", "cloakroom:u:{alice}"]).await;
    assert!(
        ttl > 3_600_000 && ttl <= 7_200_000,
        "the user's set expires with the latest absolute deadline ({ttl} ms)"
    );
}

/// The update script takes the caller's expiry only when the caller's absolute deadline is
/// the stored one; a caller that moved it gets the expiry from the stored deadline.
#[tokio::test]
async fn an_update_expires_the_key_at_the_stored_deadlines() {
    let Some((_dir, server, store)) = private_store().await else {
        return;
    };
    let t = cloakroom::record::now();
    let hours = time::Duration::hours;
    let mut record = cloakroom::Record::new(t, Some(t + hours(1)), Some(t + hours(2)));
    let key = SessionId::generate().store_key();
    store.insert(&key, &record).await.unwrap();
    let session = format!("cloakroom:s:{{{}}}", key.to_hex());

    // (idle deadline, absolute deadline the caller sends, expected expiry in hours, why)
    let steps = [
        (3, 2, 2, "the absolute deadline comes first"),
        (1, 2, 1, "the idle deadline comes first"),
        (1, 500, 1, "a moved absolute deadline is ignored"),
        (3, 500, 2, "the stored absolute deadline still comes first"),
    ];
    for (idle, absolute, expected, why) in steps {
        record.idle_deadline = Some(t + hours(idle));
        record.absolute_deadline = Some(t + hours(absolute));
        store.update(&key, &record).await.unwrap();
        record.version += 1;
        let ttl: i64 = support::command(&server.url(), &["PTTL", &session]).await;
        let expected = expected * 3_600_000;
        assert!(
            ttl <= expected && ttl > expected - 60_000,
            "{why}: {ttl} ms, not {expected}"
        );
    }
}

/// The update script compares deadlines as strings when they have as many digits, but a
/// deadline that is not a number still counts as dead, whatever its length.
#[tokio::test]
async fn an_update_finds_no_session_behind_a_damaged_deadline() {
    let Some((_dir, server, store)) = private_store().await else {
        return;
    };
    let t = cloakroom::record::now();
    let record = cloakroom::Record::new(t, Some(t + time::Duration::hours(1)), None);
    // The second sorts after every 13-digit deadline.
    for x in ["soon", "zzzzzzzzzzzzz"] {
        let key = SessionId::generate().store_key();
        store.insert(&key, &record).await.unwrap();
        let session = format!("cloakroom:s:{{{}}}", key.to_hex());
        let () = support::command(&server.url(), &["HSET", &session, "x", x]).await;
        let outcome = store.update(&key, &record).await;
        assert!(
            matches!(outcome, Err(cloakroom::UpdateError::Missing)),
            "deadline {x:?}: {outcome:?}"
        );
    }
}

/// A session hash as earlier versions wrote it: the record's JSON carries the version, the
/// last activity and the deadlines too, stale ones after an update (it encodes the version
/// before the bump) or a touch (which rewrites only the hash fields). It still loads, is
/// listed, and takes an update, with the hash fields winning as they always did.
#[tokio::test]
async fn sessions_stored_in_the_earlier_layout_still_load() {
    let Some((_dir, server, store)) = private_store().await else {
        return;
    };
    let t = cloakroom::record::now();
    let minutes = time::Duration::minutes;
    let mut stale = cloakroom::Record::new(t - minutes(30), Some(t + minutes(1)), None);
    stale.version = 2;
    stale.user_id = Some("zoe".into());
    stale.persistent = true;
    stale.auth_epoch = Some("e7".into());
    stale.client = cloakroom::ClientMeta::new(Some("192.0.2.1".into()), Some("agent"));
    stale.device_binding = Some(Box::new(serde_json::json!({"id": "b", "state": "pending"})));
    stale
        .data
        .insert("n".into(), serde_json::json!([1, "two", {"x": null}]));
    // Exactly what `serde_json::to_string(&record)` wrote into `r` before.
    let old_json = serde_json::to_string(&stale).unwrap();
    assert!(old_json.contains("\"version\":2") && old_json.contains("\"last_active_at\""));

    let mut expected = stale.clone();
    expected.version = 3;
    expected.last_active_at = t;
    expected.idle_deadline = Some(t + minutes(20));
    expected.absolute_deadline = Some(t + minutes(60));
    let ms = |at: time::OffsetDateTime| cloakroom::record::to_unix_ms(at).to_string();
    let key = SessionId::generate().store_key();
    let session = format!("cloakroom:s:{{{}}}", key.to_hex());
    let (la, i, a) = (ms(t), ms(t + minutes(20)), ms(t + minutes(60)));
    let () = support::command(
        &server.url(),
        &[
            "HSET", &session, "v", "3", "r", &old_json, "la", &la, "i", &i, "a", &a, "x", &i, "u",
            "zoe",
        ],
    )
    .await;
    let () = support::command(&server.url(), &["PEXPIREAT", &session, &i]).await;
    let () = support::command(&server.url(), &["SADD", "cloakroom:u:{zoe}", &key.to_hex()]).await;

    assert_eq!(store.load(&key).await.unwrap(), Some(expected.clone()));
    let listed = store.list_for_user("zoe").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].record, expected);

    let mut next = expected.clone();
    next.data.insert("m".into(), serde_json::json!(1));
    store.update(&key, &next).await.unwrap();
    next.version = 4;
    assert_eq!(store.load(&key).await.unwrap(), Some(next));
}

/// Timeouts as long as they go (`Duration::MAX`, for "never give up") connect, where the
/// bounds derived from them overflowed with a panic before any I/O: a single node's
/// connection bound, and a cluster's bound and health patience.
#[tokio::test]
async fn endless_timeouts_are_not_a_panic() {
    let Some((_dir, server)) = support::Server::private().await else {
        return;
    };
    let config = RedisConfig {
        connect_timeout: Duration::MAX,
        operation_timeout: Duration::MAX,
        ..RedisConfig::default()
    };
    let store = RedisStore::connect_with(&server.url(), config.clone())
        .await
        .unwrap();
    let key = SessionId::generate().store_key();
    assert_eq!(store.load(&key).await.unwrap(), None);
    // This node is not a cluster: connecting as to one is an error, not a panic.
    let cluster = RedisStore::connect_cluster(&[server.url().as_str()], config).await;
    assert!(cluster.is_err());
}

/// A replica wait as long as it goes (`Duration::MAX`) is one Redis takes: `WAIT` refuses
/// a timeout that overflows its clock, so every write failed after it was made. (The wait
/// goes as at most the operation timeout, which bounds it anyway, and zero as 1 ms, since
/// `WAIT` takes 0 as "forever".)
#[tokio::test]
async fn replica_waits_of_any_length_are_sent_as_redis_takes_them() {
    let Some((_dir, server)) = support::Server::private().await else {
        return;
    };
    let config = RedisConfig {
        operation_timeout: Duration::from_secs(1),
        ..RedisConfig::default()
    };
    for timeout in [Duration::MAX, Duration::ZERO] {
        let store = RedisStore::connect_with(&server.url(), config.clone())
            .await
            .unwrap()
            .with_wait_for_replicas(0, timeout);
        let t = cloakroom::record::now();
        let record = cloakroom::Record::new(t, Some(t + time::Duration::hours(1)), None);
        let key = SessionId::generate().store_key();
        store.insert(&key, &record).await.unwrap();
        assert!(store.load(&key).await.unwrap().is_some(), "{timeout:?}");
    }
}

/// A write to a replica (a primary demoted in a failover, before the client follows)
/// fails as unavailable, a passing state that a retry gets past, as a server loading its
/// data does. It was a backend error, so metrics and logs blamed the store itself.
#[tokio::test]
async fn a_write_to_a_replica_is_unavailable() {
    let Some((_dir, server, store)) = private_store().await else {
        return;
    };
    // A replica of a primary that is not there: it refuses writes with READONLY.
    let () = support::command(&server.url(), &["REPLICAOF", "127.0.0.1", "1"]).await;
    let t = cloakroom::record::now();
    let record = cloakroom::Record::new(t, Some(t + time::Duration::hours(1)), None);
    let outcome = store
        .insert(&SessionId::generate().store_key(), &record)
        .await;
    assert!(
        matches!(
            outcome,
            Err(cloakroom::InsertError::Store(StoreError::Unavailable(_)))
        ),
        "{outcome:?}"
    );
}
