//! The least any session layer can cost on S1: bare axum with a tower layer that does
//! nothing but put one cheap value (a shared pointer) in the request's extensions, the
//! way a session layer hands its handlers their session. Run under callgrind like
//! `bench profile` (`bench-layer-floor bare|layer REQUESTS`) to tell what a layer costs in
//! itself from what cloakroom's layer adds to it.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::Request;
use axum::routing::get;
use axum::Router;
use cloakroom_benches::axum_apps::untouched;
use cloakroom_benches::inprocess::{AxumDriver, Driver};
use cloakroom_benches::scenario::routes::UNTOUCHED;
use tower::{Layer, Service};

/// Puts a clone of its `Arc` in every request's extensions and does nothing else.
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

fn main() {
    let mut args = std::env::args().skip(1);
    let layered = match args.next().as_deref() {
        Some("bare") => false,
        Some("layer") => true,
        _ => {
            eprintln!("usage: bench-layer-floor bare|layer REQUESTS");
            std::process::exit(2);
        }
    };
    let requests: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let mut router = Router::new().route(UNTOUCHED, get(untouched));
    if layered {
        router = router.layer(TokenLayer(Arc::new(0)));
    }
    // As `axum::serve` does, and as the benchmark's apps are built.
    let driver = AxumDriver(router.with_state(()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for _ in 0..requests {
            let reply = driver.call(false, UNTOUCHED, None).await;
            assert_eq!(reply.body.as_ref(), b"ok");
        }
    });
}
