//! How the harness calls an app in process: the [`Driver`] trait, its axum and actix-web
//! implementations, and [`AnyDriver`], which holds either so one store's apps are measured
//! side by side.

use std::future::Future;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use tower::ServiceExt;

use super::{contended, steps, Budget};
use crate::results::Throughput;
use crate::scenario::{Scenario, Target};

/// A response, reduced to what the harness looks at.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `name=value` of the first `Set-Cookie`, if any.
    pub cookie: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    pub(super) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Something that answers a request in process.
pub trait Driver {
    /// Sends `method path` with `cookie` (`name=value`) and reads the whole response.
    fn call(&self, post: bool, path: &str, cookie: Option<&str>) -> impl Future<Output = Reply>;
}

/// An axum app, called through `oneshot`.
pub struct AxumDriver(pub Router);

impl Driver for AxumDriver {
    async fn call(&self, post: bool, path: &str, cookie: Option<&str>) -> Reply {
        let mut request = Request::builder()
            .method(if post { Method::POST } else { Method::GET })
            .uri(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let request = request.body(Body::empty()).expect("a valid request");
        let response = self.0.clone().oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let cookie = set_cookie(response.headers().get(header::SET_COOKIE));
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        Reply {
            status,
            cookie,
            body,
        }
    }
}

/// An actix-web app, called through its test service.
pub struct ActixDriver<S>(pub S);

impl<S, B> Driver for ActixDriver<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    async fn call(&self, post: bool, path: &str, cookie: Option<&str>) -> Reply {
        let mut request = if post {
            test::TestRequest::post()
        } else {
            test::TestRequest::get()
        }
        .uri(path);
        if let Some(cookie) = cookie {
            request = request.insert_header((header::COOKIE.as_str(), cookie));
        }
        let response = test::call_service(&self.0, request.to_request()).await;
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get(header::SET_COOKIE.as_str())
            .and_then(|value| value.to_str().ok())
            .map(cookie_pair);
        let body = test::read_body(response).await;
        Reply {
            status,
            cookie,
            body,
        }
    }
}

/// A [`Driver`] of any type, so that one store's axum and actix-web apps can be held
/// together and measured side by side. Timed work goes through it a whole sample (or a
/// whole S5 run) at a time, compiled for the concrete app as before: one boxed future
/// per sample, not per request, so the type erasure costs no library anything measurable.
pub struct AnyDriver<'a>(pub(super) Box<dyn DynDriver + 'a>);

impl<'a> AnyDriver<'a> {
    /// Wraps `driver`.
    pub fn new<D: Driver + 'a>(driver: D) -> Self {
        Self(Box::new(driver))
    }
}

pub(super) trait DynDriver {
    fn call_boxed<'a>(
        &'a self,
        post: bool,
        path: &'a str,
        cookie: Option<&'a str>,
    ) -> LocalBoxFuture<'a, Reply>;

    fn steps_boxed<'a>(
        &'a self,
        scenario: Scenario,
        cookie: &'a mut Option<String>,
        requests: u32,
    ) -> LocalBoxFuture<'a, u64>;

    fn contended_boxed(
        &self,
        target: Target,
        budget: Budget,
    ) -> LocalBoxFuture<'_, Result<Throughput, String>>;
}

impl<D: Driver> DynDriver for D {
    fn call_boxed<'a>(
        &'a self,
        post: bool,
        path: &'a str,
        cookie: Option<&'a str>,
    ) -> LocalBoxFuture<'a, Reply> {
        Box::pin(self.call(post, path, cookie))
    }

    fn steps_boxed<'a>(
        &'a self,
        scenario: Scenario,
        cookie: &'a mut Option<String>,
        requests: u32,
    ) -> LocalBoxFuture<'a, u64> {
        Box::pin(steps(self, scenario, cookie, requests))
    }

    fn contended_boxed(
        &self,
        target: Target,
        budget: Budget,
    ) -> LocalBoxFuture<'_, Result<Throughput, String>> {
        Box::pin(contended(self, target, budget))
    }
}

/// Untimed calls only (seeding, reading a counter): timed ones go through a whole sample
/// at a time.
impl Driver for AnyDriver<'_> {
    async fn call(&self, post: bool, path: &str, cookie: Option<&str>) -> Reply {
        self.0.call_boxed(post, path, cookie).await
    }
}

impl<D: Driver> Driver for &D {
    async fn call(&self, post: bool, path: &str, cookie: Option<&str>) -> Reply {
        (**self).call(post, path, cookie).await
    }
}

fn set_cookie(value: Option<&axum::http::HeaderValue>) -> Option<String> {
    value.and_then(|value| value.to_str().ok()).map(cookie_pair)
}

/// The `name=value` part of a `Set-Cookie` value.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").trim().to_owned()
}
