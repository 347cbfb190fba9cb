//! Group commit: writers queued on one session share the compare-and-set of the writer
//! ahead of them, and every write still counts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use cloakroom::conformance::CountingStore;
use cloakroom::{MemoryStore, Session, SessionError, SessionLayer};
use tower::ServiceExt;

async fn increment(session: Session) -> Result<String, SessionError> {
    let n: u64 = session
        .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

async fn read(session: Session) -> Result<String, SessionError> {
    Ok(session.get::<u64>("n").await?.unwrap_or(0).to_string())
}

async fn call(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut request = Request::post(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let set_cookie = response.headers().get(header::SET_COOKIE).map(|value| {
        value
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    });
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    (
        status,
        String::from_utf8(body.to_vec()).unwrap(),
        set_cookie,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_writers_share_compare_and_sets_and_none_is_lost() {
    const WRITERS: u64 = 32;
    let counting = CountingStore::new(Arc::new(MemoryStore::new()))
        .with_update_delay(Duration::from_millis(50));
    let counts = counting.counts();
    let app = Router::new()
        .route("/incr", post(increment))
        .route("/read", post(read))
        .layer(SessionLayer::new(counting));
    let (_, _, cookie) = call(&app, "/incr", None).await;
    let cookie = cookie.expect("the first write creates the session");

    let (_, writes_before, _) = counts.snapshot();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move { call(&app, "/incr", Some(&cookie)).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().0, StatusCode::OK);
    }
    let (_, writes_after, _) = counts.snapshot();

    let (_, value, _) = call(&app, "/read", Some(&cookie)).await;
    assert_eq!(value, (WRITERS + 1).to_string(), "every increment counts");
    let updates = writes_after - writes_before;
    assert!(
        updates <= WRITERS / 4,
        "{WRITERS} queued writers took {updates} compare-and-sets; one each means no grouping"
    );
}
