//! [`AppUnderTest`]: what a test needs of a web app, whatever framework serves it.

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::Router;
use http::{Request, Response};
use tower::ServiceExt;

/// The largest response body a test reads.
pub(crate) const MAX_BODY: usize = 16 << 20;

/// A boxed, sendable future, as [`AppUnderTest::call`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A web app a test sends requests to, in process: an axum [`Router`] here, an actix-web
/// `App` through `cloakroom_actix::testing::ActixApp`.
///
/// Requests and responses are plain [`http`] types with the whole body in memory, so one
/// test (and the [conformance suite](crate::conformance)) runs unchanged on every
/// framework. Implementations answer every request, errors included, with a response:
/// a framework error becomes its status, never a panic in the caller.
pub trait AppUnderTest: Send + Sync + 'static {
    /// Sends `request` through the app and returns its whole response.
    fn call(&self, request: Request<Vec<u8>>) -> BoxFuture<Response<Vec<u8>>>;
}

impl AppUnderTest for Router {
    fn call(&self, request: Request<Vec<u8>>) -> BoxFuture<Response<Vec<u8>>> {
        let app = self.clone();
        Box::pin(async move {
            let response = match app.oneshot(request.map(Body::from)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, MAX_BODY)
                .await
                .expect("the response body is readable and under 16 MiB");
            Response::from_parts(parts, body.to_vec())
        })
    }
}
