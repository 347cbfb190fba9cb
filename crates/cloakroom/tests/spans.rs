//! Every request's session work has one `cloakroom.session` span with its outcome, an
//! untouched request's included (its span opens only when the request ends).

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use cloakroom::testing::TestClient;
use cloakroom::{MemoryStore, Session, SessionError, SessionLayer};
use tracing_subscriber::fmt::format::FmtSpan;

/// What the subscriber printed, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines a request to `path` made the subscriber print as its spans closed.
async fn spans_of(app: &Router, path: &str) -> String {
    spans_of_client(TestClient::new(app.clone()), path).await
}

/// The same, sent by `client` (with its cookie, if any).
async fn spans_of_client(mut client: TestClient, path: &str) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let response = client.send(Request::get(path).body(Body::empty())).await;
    assert!(response.status().is_success(), "{}", response.status());
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    text
}

#[tokio::test(flavor = "current_thread")]
async fn untouched_and_read_requests_each_have_a_session_span_with_their_outcome() {
    let app = Router::new()
        .route("/untouched", get(|| async { "ok" }))
        .route(
            "/read",
            get(|session: Session| async move {
                session.get::<u64>("counter").await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .layer(SessionLayer::new(MemoryStore::new()));

    let untouched = spans_of(&app, "/untouched").await;
    assert_eq!(
        untouched.matches("cloakroom.session").count(),
        1,
        "{untouched}"
    );
    assert!(untouched.contains("outcome=\"untouched\""), "{untouched}");

    let read = spans_of(&app, "/read").await;
    assert_eq!(read.matches("cloakroom.session").count(), 1, "{read}");
    assert!(read.contains("outcome=\"read\""), "{read}");
}

/// Under the fail-open policy a request whose session could not be loaded is served
/// anonymously; its span says the store failed, as a failed commit's does. It said `read`.
#[tokio::test(flavor = "current_thread")]
async fn a_fail_open_request_whose_load_failed_is_traced_as_failed() {
    use cloakroom::conformance::{HookedStore, Outage};
    use cloakroom::{OnStoreError, SessionConfig};

    let down = HookedStore::with_hook(Arc::new(MemoryStore::new()), Outage::default().started());
    let config = SessionConfig::default().with_on_store_error(OnStoreError::Anonymous);
    let app = Router::new()
        .route(
            "/read",
            get(|session: Session| async move {
                session.get::<u64>("counter").await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .layer(SessionLayer::try_new(down, config).unwrap());
    let client =
        TestClient::new(app).with_cookie(cloakroom::SessionId::generate().to_cookie_value());
    let spans = spans_of_client(client, "/read").await;
    assert!(spans.contains("outcome=\"failed\""), "{spans}");
}
