//! The tower [`SessionLayer`]: parses the cookie, hands a lazy [`Session`] to the handler
//! through request extensions, and commits it when the response is ready.

use std::future::Future;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, COOKIE, RETRY_AFTER, SET_COOKIE, USER_AGENT, VARY};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{ClientIpSource, SessionConfig};
use crate::integration::{CommitFuture, Integration};
use crate::session::{CookieHeaders, Finish, RequestClient, Session, SessionManager};

/// Adds sessions to a tower service (an axum `Router`, for example).
///
/// ```
/// use axum::{routing::get, Router};
/// use cloakroom::{MemoryStore, Session, SessionLayer};
///
/// async fn hello(session: Session) -> String {
///     let name: Option<String> = session.get("name").await.unwrap_or_default();
///     format!("hello {}", name.as_deref().unwrap_or("stranger"))
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(hello))
///     .layer(SessionLayer::new(MemoryStore::new()));
/// ```
#[derive(Clone, Debug)]
pub struct SessionLayer {
    manager: Arc<SessionManager>,
}

crate::integration_constructors!(SessionLayer);

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: Arc::clone(&self.manager),
        }
    }
}

/// The service [`SessionLayer`] produces.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    manager: Arc<SessionManager>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + EndpointBody + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        #[cfg(feature = "dbsc")]
        if let Some(endpoint) = crate::dbsc::engine::endpoint(
            self.manager.config(),
            request.method(),
            request.uri().path(),
        ) {
            // The device-binding endpoints are answered here; the app never sees them.
            let manager = Arc::clone(&self.manager);
            let headers = std::mem::take(request.headers_mut());
            let answer: Boxed<ResBody> = Box::pin(async move {
                let reply = crate::dbsc::engine::serve(&manager, endpoint, &headers).await;
                let mut response = Response::new(ResBody::from(reply.body));
                *response.status_mut() = reply.status;
                for (name, value) in reply.headers {
                    response.headers_mut().append(name, value);
                }
                response
            });
            return CommitFuture::answered(answer);
        }
        let client = request_client(&request, self.manager.config());
        // Lazy: the cookie is read when the handler first touches the session, so a
        // request that never does costs no parsing.
        let cookies = CookieHeaders::from_values(request.headers().get_all(COOKIE).iter());
        let session = self.manager.lazy_session(cookies, client);
        request.extensions_mut().insert(session.clone());
        CommitFuture::new(self.inner.call(request), session)
    }
}

/// Response bodies the layer can answer with itself. With the `dbsc` feature the layer
/// serves the device-binding endpoints, whose JSON body it builds from a `String` (as
/// axum's `Body` allows); without it, every body qualifies.
#[cfg(feature = "dbsc")]
pub trait EndpointBody: From<String> {}
#[cfg(feature = "dbsc")]
impl<T: From<String>> EndpointBody for T {}
/// Response bodies the layer can answer with itself: without the `dbsc` feature, every
/// body.
#[cfg(not(feature = "dbsc"))]
pub trait EndpointBody {}
#[cfg(not(feature = "dbsc"))]
impl<T> EndpointBody for T {}

/// The future [`SessionService`] returns: the inner service's response, then the
/// session's commit (see [`CommitFuture`]).
pub type ResponseFuture<F, B> = CommitFuture<F, Tower<B>>;

/// A response still to come: a commit that waits, or a device-binding endpoint's answer.
type Boxed<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

/// The tower layer's side of [`CommitFuture`]: `http` responses, and commits boxed as
/// `Send` futures, as tower services need.
pub struct Tower<B>(PhantomData<fn() -> B>);

impl<B> std::fmt::Debug for Tower<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tower")
    }
}

impl<B: Default + Send + 'static> Integration for Tower<B> {
    type Response = Response<B>;
    type Output = Response<B>;
    type Deferred = Boxed<B>;

    fn status(response: &Response<B>) -> StatusCode {
        response.status()
    }

    fn store_unavailable(response: &Response<B>) -> bool {
        store_unavailable(response)
    }

    fn untouched(response: Response<B>) -> Response<B> {
        response
    }

    fn committed(response: Response<B>, finish: Finish, session: &Session) -> Response<B> {
        apply(finish, response, session.config())
    }

    fn defer(response: Response<B>, session: Session, status: StatusCode) -> Self::Deferred {
        Box::pin(async move {
            let finish = session.finish(status).await;
            apply(finish, response, session.config())
        })
    }
}

fn request_client<B>(request: &Request<B>, config: &SessionConfig) -> RequestClient {
    let ip = match &config.client_ip {
        ClientIpSource::ConnectInfo => connect_info_ip(request),
        ClientIpSource::TrustedHeader(name) => crate::integration::forwarded_ip(
            request
                .headers()
                .get_all(name)
                .iter()
                .map(HeaderValue::as_bytes),
            config.trusted_proxy_hops,
        ),
        ClientIpSource::None => None,
    };
    RequestClient {
        ip,
        user_agent: request.headers().get(USER_AGENT).cloned(),
    }
}

#[cfg(feature = "axum")]
fn connect_info_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

#[cfg(not(feature = "axum"))]
fn connect_info_ip<B>(_request: &Request<B>) -> Option<IpAddr> {
    None
}

/// Whether the handler answered a store failure: [`SessionError`](crate::SessionError)'s
/// `503` marks itself so. The status is compared first: every request pays this check,
/// and an extension lookup hashes a type ID.
fn store_unavailable<B>(response: &Response<B>) -> bool {
    response.status() == StatusCode::SERVICE_UNAVAILABLE
        && response
            .extensions()
            .get::<crate::error::StoreUnavailableResponse>()
            .is_some()
}

/// Maps the failure policy's [`ResponseChanges`](crate::integration::ResponseChanges)
/// onto an `http` response.
fn apply<B: Default>(
    finish: Finish,
    mut response: Response<B>,
    config: &SessionConfig,
) -> Response<B> {
    let changes = finish.response_changes(config, store_unavailable(&response));
    if let Some(status) = changes.replace_with {
        response = Response::new(B::default());
        *response.status_mut() = status;
    }
    let headers = response.headers_mut();
    if let Some(seconds) = changes.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(cookie) = changes.set_cookie {
        headers.append(SET_COOKIE, cookie);
        let lines = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .map(HeaderValue::as_bytes);
        if let Some(value) = crate::integration::private_cache_control(lines) {
            headers.insert(CACHE_CONTROL, value);
        }
        for name in crate::integration::CDN_CACHE_HEADERS {
            headers.remove(name);
        }
    }
    if changes.vary_cookie {
        headers.append(VARY, HeaderValue::from_static("cookie"));
    }
    #[cfg(feature = "dbsc")]
    for (name, value) in changes.headers {
        headers.append(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip_of(lines: &[&[u8]], hops: usize) -> Option<IpAddr> {
        let mut request = Request::builder();
        for line in lines {
            request = request.header("x-forwarded-for", HeaderValue::from_bytes(line).unwrap());
        }
        let request = request.body(()).unwrap();
        let source =
            ClientIpSource::TrustedHeader(http::HeaderName::from_static("x-forwarded-for"));
        let config = SessionConfig::default()
            .with_client_ip(source)
            .with_trusted_proxy_hops(hops);
        request_client(&request, &config).ip
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_entry_the_trusted_proxy_added_wins_not_the_clients() {
        // The client sent "6.6.6.6"; the proxy appended the address it saw.
        assert_eq!(ip_of(&[b"6.6.6.6, 203.0.113.7"], 1), ip("203.0.113.7"));
        assert_eq!(ip_of(&[b"203.0.113.7"], 1), ip("203.0.113.7"));
        // Two proxies: the second appended the first's address.
        assert_eq!(
            ip_of(&[b"6.6.6.6, 203.0.113.7, 10.0.0.2"], 2),
            ip("203.0.113.7")
        );
        // Header lines are one list, in order.
        assert_eq!(ip_of(&[b"6.6.6.6", b"203.0.113.7"], 1), ip("203.0.113.7"));
        assert_eq!(
            ip_of(&[b"6.6.6.6, 203.0.113.7", b"10.0.0.2"], 2),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn entries_are_read_in_every_usual_form() {
        assert_eq!(
            ip_of(&[b"  6.6.6.6 ,\t203.0.113.7\t"], 1),
            ip("203.0.113.7")
        );
        assert_eq!(ip_of(&[b"203.0.113.7:51234"], 1), ip("203.0.113.7"));
        assert_eq!(ip_of(&[b"2001:db8::1"], 1), ip("2001:db8::1"));
        assert_eq!(ip_of(&[b"[2001:db8::1]"], 1), ip("2001:db8::1"));
        assert_eq!(ip_of(&[b"[2001:db8::1]:443"], 1), ip("2001:db8::1"));
        // Empty list elements are ignored (RFC 9110).
        assert_eq!(ip_of(&[b"203.0.113.7, , "], 1), ip("203.0.113.7"));
        // Junk the client put left of the proxy's entry changes nothing.
        assert_eq!(
            ip_of(&[b"\xff\xfe, evil", b"203.0.113.7"], 1),
            ip("203.0.113.7")
        );
        assert_eq!(ip_of(&[b"x\xff, 203.0.113.7"], 1), ip("203.0.113.7"));
    }

    #[test]
    fn a_malformed_or_missing_entry_gives_no_ip_never_another_entry() {
        assert_eq!(ip_of(&[b"6.6.6.6, unknown"], 1), None);
        assert_eq!(ip_of(&[b"6.6.6.6, 203.0.113.7:port"], 1), None);
        assert_eq!(ip_of(&[b"6.6.6.6, \xff"], 1), None);
        // Fewer entries than trusted proxies: the request did not come through them all.
        assert_eq!(ip_of(&[b"203.0.113.7"], 2), None);
        assert_eq!(ip_of(&[b""], 1), None);
        assert_eq!(ip_of(&[], 1), None);
    }
}
