//! The tiered store: the conformance suite over SQLite, and two instances (each with its
//! own cache and pool) over one durable store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::{Session, SessionLayer, SessionStore};
use cloakroom_cached::CachedStore;
use cloakroom_sqlx::SqliteStore;
use tower::ServiceExt;

async fn sqlite(dir: &tempfile::TempDir, name: &str) -> SqliteStore {
    SqliteStore::open(dir.path().join(name)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = AtomicUsize::new(0);
    cloakroom::conformance::run(|| {
        let name = format!("case-{}.db", counter.fetch_add(1, Ordering::SeqCst));
        let dir = &dir;
        async move { CachedStore::new(sqlite(dir, &name).await) }
    })
    .await;
}

fn app(store: impl SessionStore) -> Router {
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
            "/set/{key}",
            post(
                |s: Session, axum::extract::Path(key): axum::extract::Path<String>| async move {
                    s.get::<u64>("n").await?;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    s.insert(&key, true).await.map(|()| "ok")
                },
            ),
        )
        .route(
            "/get/{key}",
            get(
                |s: Session, axum::extract::Path(key): axum::extract::Path<String>| async move {
                    s.get::<serde_json::Value>(&key).await.map(Json)
                },
            ),
        )
        .route(
            "/login",
            post(|s: Session| async move { s.login("alice").await.map(|()| "ok") }),
        )
        .route(
            "/who",
            get(|s: Session| async move { s.user().await.map(Json) }),
        )
        .route(
            "/revoke-others",
            post(|s: Session| async move { s.revoke_other_sessions().await.map(Json) }),
        )
        .layer(SessionLayer::new(store))
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("id={cookie}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("id="))
        .and_then(|v| v.split(';').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, cookie, String::from_utf8_lossy(&body).into_owned())
}

/// Two app instances, each with its own cache and its own pool on one database.
async fn two_instances(dir: &tempfile::TempDir) -> (Router, Router) {
    let a = CachedStore::new(sqlite(dir, "shared.db").await);
    let b = CachedStore::new(sqlite(dir, "shared.db").await);
    (app(a), app(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_across_instances_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&dir).await;
    let (_, cookie, _) = call(&a, "POST", "/incr", None).await;
    let cookie = cookie.unwrap();
    // Warm both caches with the same version, so every instance starts stale.
    call(&a, "GET", "/get/n", Some(&cookie)).await;
    call(&b, "GET", "/get/n", Some(&cookie)).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (app, cookie) = (
                if i % 2 == 0 { a.clone() } else { b.clone() },
                cookie.clone(),
            );
            tokio::spawn(async move { call(&app, "POST", "/incr", Some(&cookie)).await.0 })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let (app, cookie) = (
                if i % 2 == 0 { a.clone() } else { b.clone() },
                cookie.clone(),
            );
            tokio::spawn(async move {
                call(&app, "POST", &format!("/set/k{i}"), Some(&cookie))
                    .await
                    .0
            })
        })
        .collect();
    for task in writers {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    tokio::time::sleep(cloakroom_cached::DEFAULT_TTL).await;
    for app in [&a, &b] {
        assert_eq!(
            call(app, "GET", "/get/n", Some(&cookie)).await.2,
            "201",
            "no increment lost across instances"
        );
        for i in 0..64 {
            assert_eq!(
                call(app, "GET", &format!("/get/k{i}"), Some(&cookie))
                    .await
                    .2,
                "true",
                "key k{i} lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_through_another_instance_shows_within_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&dir).await;
    let (_, phone, _) = call(&a, "POST", "/login", None).await;
    let phone = phone.unwrap();
    let (_, laptop, _) = call(&b, "POST", "/login", None).await;
    let laptop = laptop.unwrap();
    assert_eq!(
        call(&a, "GET", "/who", Some(&phone)).await.2,
        "\"alice\"",
        "cached on instance a"
    );

    let revoked_at = Instant::now();
    assert_eq!(
        call(&b, "POST", "/revoke-others", Some(&laptop)).await.2,
        "1"
    );
    loop {
        let (status, _, who) = call(&a, "GET", "/who", Some(&phone)).await;
        assert_eq!(status, StatusCode::OK);
        if who == "null" {
            break;
        }
        assert!(
            revoked_at.elapsed() < cloakroom_cached::DEFAULT_TTL,
            "instance a served the revoked session past the TTL bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "instance a saw the revocation after {:?}",
        revoked_at.elapsed()
    );
    let (_, again, _) = call(&a, "POST", "/incr", Some(&phone)).await;
    assert_ne!(
        again.as_deref(),
        Some(phone.as_str()),
        "the revoked session is never written back"
    );
}
