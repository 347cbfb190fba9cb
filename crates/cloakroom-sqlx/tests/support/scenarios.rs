//! Scenarios every server-backed SQL store runs, each against a real server.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::{
    record, Record, Session, SessionError, SessionId, SessionLayer, SessionStore, StoreError,
};
use tower::ServiceExt;

pub fn counter_app(store: impl SessionStore) -> Router {
    Router::new()
        .route(
            "/incr",
            post(|s: Session| async move {
                s.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                    .await
                    .map(Json)
            }),
        )
        .route(
            "/n",
            get(|s: Session| async move { s.get::<u64>("n").await.map(Json) }),
        )
        .route(
            "/set",
            post(|s: Session| async move {
                s.insert("x", 1).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .layer(SessionLayer::new(store))
}

pub async fn call(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, axum::http::HeaderMap) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("id={cookie}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let id = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("id="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (response.status(), id, response.headers().clone())
}

/// Two app instances with separate pools share one table: concurrent increments through
/// both are all counted.
pub async fn two_instances_lose_no_updates(a: impl SessionStore, b: impl SessionStore) {
    let (app_a, app_b) = (counter_app(a), counter_app(b));
    let (status, id, _) = call(&app_a, "POST", "/incr", None).await;
    assert_eq!(status, StatusCode::OK);
    let id = id.expect("a session");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let app = if i % 2 == 0 {
                app_a.clone()
            } else {
                app_b.clone()
            };
            let id = id.clone();
            tokio::spawn(async move { call(&app, "POST", "/incr", Some(&id)).await.0 })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let response = app_b.clone().oneshot(
        Request::get("/n")
            .header(header::COOKIE, format!("id={id}"))
            .body(Body::empty())
            .unwrap(),
    );
    let bytes = axum::body::to_bytes(response.await.unwrap().into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(
        &bytes[..],
        b"101",
        "every increment through either instance counts"
    );
}

/// While the database is unreachable: typed errors from the store, 503 with Retry-After
/// from the layer, nothing hangs; afterwards it recovers by itself.
pub async fn outage_and_recovery(store: impl SessionStore + Clone, proxy: &super::Proxy) {
    let app = counter_app(store.clone());
    let (status, id, _) = call(&app, "POST", "/set", None).await;
    assert_eq!(status, StatusCode::OK);
    let id = id.unwrap();

    proxy.cut();
    let started = Instant::now();
    let key = SessionId::parse(&id).unwrap().store_key();
    match store.load(&key).await {
        Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => {}
        other => {
            panic!("expected a typed unavailable error while the database is down, got {other:?}")
        }
    }
    let (status, _, headers) = call(&app, "GET", "/n", Some(&id)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the layer answers 503 while the store is down"
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
    let (status, _, _) = call(&app, "POST", "/set", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "nothing hangs: {:?}",
        started.elapsed()
    );

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = call(&app, "GET", "/n", Some(&id)).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store recovers once the database is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, _) = call(&app, "POST", "/incr", Some(&id)).await;
    assert_eq!(
        status,
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
