//! The load the outage and soak harnesses put on a store: an in-process axum app with the
//! store behind [`SessionLayer`], driven by a fixed number of clients (no sockets: the
//! app is called as a tower service, so only the session layer and the store are measured).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use cloakroom::{Session, SessionError, SessionLayer, SessionManager, SessionStore};
use tower::ServiceExt;

/// The app: `POST /incr` bumps the session's counter and answers the committed value,
/// `GET /read` answers it, `POST /logout` destroys the session.
pub fn app(store: Arc<dyn SessionStore>) -> Router {
    let manager = SessionManager::from_arc(store, cloakroom::SessionConfig::default())
        .expect("the default configuration is valid");
    Router::new()
        .route(
            "/incr",
            post(|session: Session| async move {
                let n = session
                    .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                    .await?;
                // Committed before answering: a 200 is an acknowledged write.
                session.save().await?;
                Ok::<_, SessionError>(n.to_string())
            }),
        )
        .route(
            "/read",
            get(|session: Session| async move {
                let n: Option<u64> = session.get("n").await?;
                Ok::<_, SessionError>(n.map_or_else(|| "none".to_owned(), |n| n.to_string()))
            }),
        )
        .route(
            "/logout",
            post(|session: Session| async move {
                session.destroy().await?;
                Ok::<_, SessionError>("bye")
            }),
        )
        .layer(SessionLayer::from_manager(Arc::new(manager)))
}

/// One answered request.
#[derive(Clone, Debug)]
pub struct Answer {
    /// When it was sent.
    pub started: Instant,
    /// How long it took.
    pub latency: Duration,
    /// The status.
    pub status: StatusCode,
    /// Whether a `Retry-After` header came with it.
    pub retry_after: bool,
    /// The body.
    pub body: String,
}

/// A client: one browser with its cookie jar of one cookie.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// The session cookie (`name=value`), once the app set one.
    pub cookie: Option<String>,
}

impl Client {
    /// Sends one request and keeps any cookie the app sets (forgets a removed one).
    pub async fn call(&mut self, app: &Router, method: Method, path: &str) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let request = request.body(Body::empty()).expect("a well-formed request");
        let started = Instant::now();
        let response = app
            .clone()
            .oneshot(request)
            .await
            .expect("axum services are infallible");
        let status = response.status();
        let retry_after = response.headers().contains_key(header::RETRY_AFTER);
        if let Some(set) = response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
        {
            let pair = set.split(';').next().unwrap_or_default();
            self.cookie = (!pair.ends_with('=')).then(|| pair.to_owned());
        }
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        Answer {
            started,
            latency: started.elapsed(),
            status,
            retry_after,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// This process's resident memory in KiB (Linux; 0 elsewhere).
pub fn rss_kib() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:")
}

/// The anonymous part of this process's resident memory (heap, allocator arenas, thread
/// stacks, not mapped files such as its code) in KiB (Linux; 0 elsewhere).
pub fn anon_kib() -> u64 {
    proc_kib("/proc/self/smaps_rollup", "Anonymous:")
}

/// The `field` line of a `/proc` file, in kB.
fn proc_kib(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
