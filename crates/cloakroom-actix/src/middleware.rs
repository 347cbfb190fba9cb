//! [`SessionMiddleware`]: parses the cookie, hands a lazy session to the handler through
//! request extensions, and commits it when the response is ready.

use std::future::{ready, Future, Ready};
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderValue, CACHE_CONTROL, COOKIE, RETRY_AFTER, SET_COOKIE, VARY};
use actix_web::{HttpMessage, HttpResponse};
use cloakroom::integration::{CommitFuture, Finish, Integration};
use cloakroom::{Session, SessionConfig, SessionManager};

use crate::client::request_client;

/// Adds sessions to an actix-web `App`, `Scope` or `Resource` (`.wrap(...)`).
///
/// It is built from the same [`SessionManager`] as cloakroom's tower layer, so stores,
/// configuration, client-side cookie sessions, the failure policy and every guarantee
/// (lazy, strict, no lost updates, no resurrection, rotation on login) are the same.
///
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use cloakroom::MemoryStore;
/// use cloakroom_actix::{Session, SessionError, SessionMiddleware};
///
/// async fn hello(session: Session) -> Result<String, SessionError> {
///     let name: Option<String> = session.get("name").await?;
///     Ok(format!("hello {}", name.as_deref().unwrap_or("stranger")))
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     // Build it once, outside the factory, and clone it in: every worker then shares one
///     // store and one commit queue. Built inside, each worker would get its own.
///     let sessions = SessionMiddleware::new(MemoryStore::new());
///     HttpServer::new(move || {
///         App::new()
///             .wrap(sessions.clone())
///             .route("/", web::get().to(hello))
///     })
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// }
/// ```
///
/// After the handler, the middleware commits the session and adds its `Set-Cookie` and
/// `Vary: Cookie`, and keeps a response that sets the cookie out of shared caches
/// ([`private_cache_control`](cloakroom::integration::private_cache_control)). When the store fails and the policy is
/// [`OnStoreError::ServiceUnavailable`](cloakroom::OnStoreError::ServiceUnavailable) (the default), the response becomes
/// `503 Service Unavailable` with `Retry-After`. A response from the wrapped service that
/// is an `Err` (which actix-web's handlers never produce: their errors are responses) is
/// passed on and its session is not committed, as with the tower layer.
#[derive(Clone, Debug)]
pub struct SessionMiddleware {
    manager: Arc<SessionManager>,
}

cloakroom::integration_constructors!(SessionMiddleware);

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            manager: Arc::clone(&self.manager),
        }))
    }
}

/// The service [`SessionMiddleware`] wraps around the app's.
pub struct SessionService<S> {
    service: Rc<S>,
    manager: Arc<SessionManager>,
}

impl<S> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = SessionFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        #[cfg(feature = "dbsc")]
        if let Some(answer) = dbsc::answer(&self.manager, &request) {
            return CommitFuture::answered(answer);
        }
        let client = request_client(&request, self.manager.config());
        let session = self.manager.session(
            request.headers().get_all(COOKIE).map(HeaderValue::as_bytes),
            client,
        );
        request.extensions_mut().insert(session.clone());
        CommitFuture::new(self.service.call(request), session)
    }
}

/// The future [`SessionService`] returns: the wrapped service's response, then the
/// session's commit (see [`CommitFuture`]).
pub type SessionFuture<F, B> = CommitFuture<F, ActixWeb<B>>;

/// A response still to come: a commit that waits, or a device-binding endpoint's answer.
type Boxed<B> = Pin<Box<dyn Future<Output = ServiceResponse<EitherBody<B>>>>>;

/// actix-web's side of [`CommitFuture`]: service responses, whose body becomes an
/// [`EitherBody`] (the app's, or the empty one of a `503` or `413` the failure policy
/// answers), and commits boxed without `Send`, as actix-web runs them on one thread.
pub struct ActixWeb<B>(PhantomData<fn() -> B>);

impl<B> std::fmt::Debug for ActixWeb<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActixWeb")
    }
}

impl<B: MessageBody + 'static> Integration for ActixWeb<B> {
    type Response = ServiceResponse<B>;
    type Output = ServiceResponse<EitherBody<B>>;
    type Deferred = Boxed<B>;

    fn status(response: &ServiceResponse<B>) -> http::StatusCode {
        // actix-web and cloakroom speak different versions of the `http` crate; every
        // actix status is a valid `http` 1 status.
        http::StatusCode::from_u16(response.status().as_u16())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn store_unavailable(response: &ServiceResponse<B>) -> bool {
        store_unavailable(response)
    }

    fn untouched(response: ServiceResponse<B>) -> Self::Output {
        response.map_into_left_body()
    }

    fn committed(response: ServiceResponse<B>, finish: Finish, session: &Session) -> Self::Output {
        apply(finish, response.map_into_left_body(), session.config())
    }

    fn defer(
        response: ServiceResponse<B>,
        session: Session,
        status: http::StatusCode,
    ) -> Self::Deferred {
        Box::pin(async move {
            let finish = session.finish(status).await;
            apply(finish, response.map_into_left_body(), session.config())
        })
    }
}

/// Whether the handler answered a store failure: a `503` that actix-web built from a
/// [`SessionError`](crate::SessionError), as the tower layer recognises its own by a
/// marker. A handler's own `503` keeps the `Retry-After` it chose. The status is compared
/// first: every request pays this check.
fn store_unavailable<B>(response: &ServiceResponse<B>) -> bool {
    response.status() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE
        && response
            .response()
            .error()
            .and_then(|error| error.as_error::<crate::SessionError>())
            .is_some()
}

/// Maps the failure policy's [`ResponseChanges`](cloakroom::integration::ResponseChanges)
/// onto an actix-web response.
fn apply<B>(
    finish: Finish,
    mut response: ServiceResponse<EitherBody<B>>,
    config: &SessionConfig,
) -> ServiceResponse<EitherBody<B>> {
    let changes = finish.response_changes(config, store_unavailable(&response));
    if let Some(status) = changes.replace_with {
        // actix-web and cloakroom speak different versions of the `http` crate.
        let status = actix_web::http::StatusCode::from_u16(status.as_u16())
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
        let (request, _) = response.into_parts();
        let replaced = HttpResponse::new(status).map_into_right_body();
        response = ServiceResponse::new(request, replaced);
    }
    let headers = response.headers_mut();
    if let Some(seconds) = changes.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(cookie) = changes.set_cookie {
        // The codec builds cookies from visible ASCII only, so this always converts.
        match HeaderValue::from_bytes(cookie.as_bytes()) {
            Ok(cookie) => headers.append(SET_COOKIE, cookie),
            Err(_) => tracing::error!("the session cookie is not a valid header value"),
        }
        let lines = headers.get_all(CACHE_CONTROL).map(HeaderValue::as_bytes);
        if let Some(value) = cloakroom::integration::private_cache_control(lines) {
            // Built from header bytes, so it converts; were it not to, the response must
            // still not go out cacheable.
            let value = HeaderValue::from_bytes(value.as_bytes())
                .unwrap_or_else(|_| HeaderValue::from_static("private"));
            headers.insert(CACHE_CONTROL, value);
        }
        for name in cloakroom::integration::CDN_CACHE_HEADERS {
            headers.remove(name);
        }
    }
    if changes.vary_cookie {
        headers.append(VARY, HeaderValue::from_static("cookie"));
    }
    #[cfg(feature = "dbsc")]
    for (name, value) in changes.headers {
        dbsc::append(headers, &name, &value);
    }
    response
}

/// Device-bound sessions (feature `dbsc`): the endpoints answered before the app, as the
/// tower layer does. actix-web speaks another version of the `http` crate, so names and
/// values cross as bytes.
#[cfg(feature = "dbsc")]
mod dbsc {
    use std::sync::Arc;

    use actix_web::dev::{ServiceRequest, ServiceResponse};
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use actix_web::HttpResponse;
    use cloakroom::integration::{dbsc_endpoint, serve_dbsc};
    use cloakroom::SessionManager;

    /// The answer to a request for one of the endpoints; `None` for any other request.
    pub(super) fn answer<B: 'static>(
        manager: &Arc<SessionManager>,
        request: &ServiceRequest,
    ) -> Option<super::Boxed<B>> {
        let method = http::Method::from_bytes(request.method().as_str().as_bytes()).ok()?;
        let endpoint = dbsc_endpoint(manager.config(), &method, request.path())?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in request.headers() {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_str().as_bytes()),
                http::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                headers.append(name, value);
            }
        }
        let manager = Arc::clone(manager);
        let request = request.request().clone();
        Some(Box::pin(async move {
            let reply = serve_dbsc(&manager, endpoint, &headers).await;
            let status = actix_web::http::StatusCode::from_u16(reply.status.as_u16())
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = HttpResponse::build(status).body(reply.body);
            for (name, value) in &reply.headers {
                append(response.headers_mut(), name, value);
            }
            ServiceResponse::new(request, response.map_into_right_body())
        }))
    }

    /// Appends a header given in cloakroom's `http` types.
    pub(super) fn append(
        headers: &mut HeaderMap,
        name: &http::HeaderName,
        value: &http::HeaderValue,
    ) {
        match (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            (Ok(name), Ok(value)) => headers.append(name, value),
            _ => tracing::error!("a device-binding header could not be converted"),
        }
    }
}
