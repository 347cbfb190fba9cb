//! The conformance suite against `MemoryStore`.

use cloakroom::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite() {
    cloakroom::conformance::run(|| async { MemoryStore::new() }).await;
}

/// The same-session concurrency cases, twenty rounds in a row: no flakiness allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_concurrency_twenty_rounds() {
    let cases: Vec<_> = cloakroom::conformance::cases()
        .into_iter()
        .filter(|case| case.name.contains("concurrent") || case.name.contains("racing"))
        .collect();
    assert_eq!(cases.len(), 6, "{cases:?}");
    cloakroom::conformance::run_cases(&cases, 20, || async { MemoryStore::new() }).await;
}

/// A store that is down: every operation fails, and counts its calls.
mod down {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use cloakroom::*;

    #[derive(Clone, Default)]
    pub struct Down(pub Arc<AtomicU64>);

    impl Down {
        fn fail(&self) -> StoreError {
            self.0.fetch_add(1, Ordering::SeqCst);
            StoreError::unavailable("connection refused")
        }
    }

    #[async_trait::async_trait]
    impl SessionStore for Down {
        async fn load(&self, _: &StoreKey) -> Result<Option<Record>, StoreError> {
            Err(self.fail())
        }
        async fn insert(&self, _: &StoreKey, _: &Record) -> Result<(), InsertError> {
            Err(self.fail().into())
        }
        async fn update(&self, _: &StoreKey, _: &Record, _: u64) -> Result<(), UpdateError> {
            Err(self.fail().into())
        }
        async fn touch(&self, _: &StoreKey, _: &Touch) -> Result<(), TouchError> {
            Err(self.fail().into())
        }
        async fn rename(&self, _: &StoreKey, _: &StoreKey) -> Result<(), RenameError> {
            Err(self.fail().into())
        }
        async fn delete(&self, _: &StoreKey) -> Result<bool, StoreError> {
            Err(self.fail())
        }
        async fn list_for_user(&self, _: &str) -> Result<Vec<SessionEntry>, StoreError> {
            Err(self.fail())
        }
        async fn delete_for_user(&self, _: &str, _: Option<&StoreKey>) -> Result<u64, StoreError> {
            Err(self.fail())
        }
        async fn purge_expired(&self, _: usize) -> Result<u64, StoreError> {
            Err(self.fail())
        }
        async fn find_by_handle(
            &self,
            _: &SessionHandle,
        ) -> Result<Option<SessionEntry>, StoreError> {
            Err(self.fail())
        }
        async fn list_sessions(&self, _: &ListQuery) -> Result<Vec<SessionEntry>, StoreError> {
            Err(self.fail())
        }
    }
}

/// A handler that touches its session three times while the store is down asks the store
/// once, and the response is a 503 with Retry-After.
#[tokio::test]
async fn a_failed_load_is_not_retried_within_a_request() {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    let store = down::Down::default();
    let calls = std::sync::Arc::clone(&store.0);
    let app: axum::Router = axum::Router::new()
        .route(
            "/",
            get(|s: cloakroom::Session| async move {
                let _ = s.get::<u64>("a").await;
                let _ = s.get::<u64>("b").await;
                let _ = s.insert("c", 1).await;
                "handler ignored the errors"
            }),
        )
        .layer(cloakroom::SessionLayer::new(store));
    let cookie = format!("id={}", cloakroom::SessionId::generate().to_cookie_value());
    let request = Request::get("/")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one load, no retries"
    );
}

/// The status and `Retry-After` of one anonymous POST to `/` through `app`.
async fn status_and_retry_after(app: axum::Router) -> (axum::http::StatusCode, Option<String>) {
    use axum::body::Body;
    use axum::http::{header, Request};
    use tower::ServiceExt;

    let request = Request::post("/").body(Body::empty()).unwrap();
    let response = app.oneshot(request).await.unwrap();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    (response.status(), retry_after)
}

/// Issue 12 #10: a 503 that a handler's own `save()?` raises carries Retry-After, even
/// where the layer's failure policy does not answer 503 itself (fail open).
#[tokio::test]
async fn a_handlers_own_store_error_503_has_retry_after() {
    use axum::routing::post;
    use cloakroom::{OnStoreError, Session, SessionConfig, SessionError, SessionLayer};

    let config = SessionConfig::default().with_on_store_error(OnStoreError::Anonymous);
    let app = axum::Router::new()
        .route(
            "/",
            post(|s: Session| async move {
                s.insert("a", 1).await?;
                s.save().await?;
                Ok::<_, SessionError>("saved")
            }),
        )
        .layer(SessionLayer::try_new(down::Down::default(), config).unwrap());
    let (status, retry_after) = status_and_retry_after(app).await;
    assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("5"), "the default Retry-After");
}

/// The same, with the configured Retry-After, when the layer's own commit succeeds.
#[tokio::test]
async fn a_handlers_store_error_503_has_the_configured_retry_after() {
    use axum::routing::post;
    use cloakroom::{
        MemoryStore, OnStoreError, Session, SessionConfig, SessionError, SessionLayer, StoreError,
    };

    let config = SessionConfig::default().with_on_store_error(OnStoreError::ServiceUnavailable {
        retry_after: std::time::Duration::from_secs(17),
    });
    let app = axum::Router::new()
        .route(
            "/",
            post(|s: Session| async move {
                s.insert("a", 1).await?;
                Err::<&str, _>(SessionError::from(StoreError::unavailable("timed out")))
            }),
        )
        .layer(SessionLayer::try_new(MemoryStore::new(), config).unwrap());
    let (status, retry_after) = status_and_retry_after(app).await;
    assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("17"));
}
