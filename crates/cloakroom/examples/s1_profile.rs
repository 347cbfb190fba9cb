//! Repeats an untouched request (a handler that never asks for its session, no cookie) on
//! bare axum, on axum with a layer that only inserts one request extension, and on axum
//! with cloakroom's [`SessionLayer`], for a profiler such as callgrind:
//!
//! ```text
//! cargo build --release -p cloakroom --example s1_profile
//! valgrind --tool=callgrind target/release/examples/s1_profile cloakroom 12000
//! ```
//!
//! It lives here rather than in the benchmark crate because that crate also links
//! actix-web, whose dependencies turn on `tracing`'s `log` bridge: every span there, even
//! one no subscriber wants, is also formatted for `log`, which an axum app without
//! actix-web never pays.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use cloakroom::{MemoryStore, SessionLayer};
use tower::{Layer, Service, ServiceExt};

/// Puts a clone of its `Arc` in every request's extensions and does nothing else: the
/// least a layer that hands its handler something can do.
#[derive(Clone)]
struct TokenLayer(Arc<u64>);

/// The service [`TokenLayer`] makes.
#[derive(Clone)]
struct TokenService<S> {
    inner: S,
    token: Arc<u64>,
}

impl<S> Layer<S> for TokenLayer {
    type Service = TokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenService {
            inner,
            token: Arc::clone(&self.0),
        }
    }
}

impl<S, B> Service<Request<B>> for TokenService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(Arc::clone(&self.token));
        self.inner.call(request)
    }
}

async fn untouched() -> &'static str {
    "ok"
}

fn main() {
    let mut args = std::env::args().skip(1);
    let app = Router::new().route("/untouched", get(untouched));
    let app = match args.next().as_deref() {
        Some("bare") => app,
        Some("token") => app.layer(TokenLayer(Arc::new(0))),
        Some("cloakroom") => app.layer(SessionLayer::new(MemoryStore::new())),
        _ => {
            eprintln!("usage: s1_profile bare|token|cloakroom REQUESTS");
            std::process::exit(2);
        }
    };
    let requests: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    // As `axum::serve` does once on startup.
    let app = app.with_state(());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for _ in 0..requests {
            let request = Request::get("/untouched")
                .body(Body::empty())
                .expect("a valid request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("a body");
            assert_eq!(&body[..], b"ok");
        }
    });
}
