//! The API and page on actix-web: the same routes, bodies and status codes as the axum
//! router, from the same framework-free endpoints.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use cloakroom::testing::TestClient;
//! use cloakroom_actix::testing::ActixApp;
//! use cloakroom_demo::{routes_actix, DemoEpochs, Settings};
//!
//! let epochs = DemoEpochs::default();
//! let config = Settings::default().session_config().with_epochs(epochs.clone());
//! let manager = Arc::new(cloakroom::SessionManager::new(cloakroom::MemoryStore::new(), config).unwrap());
//! let mut browser = TestClient::new(ActixApp::new(move || routes_actix::app(manager, epochs)));
//! assert_eq!(browser.post("/api/counter").await.text(), r#"{"value":1}"#);
//! assert_eq!(browser.post("/api/counter").await.text(), r#"{"value":2}"#, "the cookie came back");
//! # }
//! ```

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{guard, web, App, HttpRequest, HttpResponse};
use cloakroom::SessionManager;
use cloakroom_actix::{Session, SessionMiddleware};
use serde::de::DeserializeOwned;

use crate::api::{self, ApiError, ApiResult};
use crate::{exporter, DemoEpochs};

/// The demo's actix-web `App` over a shared manager whose configuration uses `epochs`;
/// build one per worker, from clones of the same manager and epochs.
pub fn app(
    manager: Arc<SessionManager>,
    epochs: DemoEpochs,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // Installed before the first request, so that /metrics counts every session.
    exporter::prometheus();
    App::new()
        .app_data(web::Data::new(epochs))
        .service(web::resource("/").route(get().to(page)))
        .service(web::resource("/api/login").route(web::post().to(login)))
        .service(web::resource("/api/logout").route(web::post().to(logout)))
        .service(web::resource("/api/me").route(get().to(me)))
        .service(
            web::resource("/api/cart")
                .route(get().to(cart))
                .route(web::post().to(add_to_cart)),
        )
        .service(web::resource("/api/counter").route(web::post().to(counter)))
        .service(web::resource("/api/prefs").route(get().to(prefs)))
        .service(web::resource("/api/prefs/{name}").route(web::put().to(set_pref)))
        .service(web::resource("/api/sessions").route(get().to(sessions)))
        // Before `{handle}`, which would match it too.
        .service(web::resource("/api/sessions/revoke-others").route(web::post().to(revoke_others)))
        .service(web::resource("/api/sessions/{handle}").route(web::delete().to(revoke)))
        .service(web::resource("/metrics").route(get().to(metrics)))
        .default_service(web::to(|| async { answer(Err(api::not_found())) }))
        // The last `wrap` is the outermost: sessions around the content-type check, as
        // on axum.
        .wrap(from_fn(refuse_undeclared_bodies))
        .wrap(SessionMiddleware::from_manager(manager))
}

/// A GET route that answers HEAD too, as axum's do.
///
/// Every route sits in a `web::resource` of its own path: `App::route` would turn the
/// method into a guard on the path, so a wrong method fell through to the next matching
/// path or the 404, where axum (and HTTP) say 405.
fn get() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

fn status(code: http::StatusCode) -> StatusCode {
    StatusCode::from_u16(code.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An endpoint's answer as an actix-web response.
fn answer(result: ApiResult) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(mut error) => match error.take_store_failure() {
            // The middleware recognises a 503 built from the session error, and puts the
            // configured `Retry-After` on it; the body is the JSON error.
            Some(failure) => {
                let mut response = HttpResponse::from_error(cloakroom_actix::SessionError(failure));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                response.set_body(BoxBody::new(error.body().to_string()))
            }
            None => HttpResponse::build(status(error.status)).json(error.body()),
        },
    }
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or_default())
}

fn method(request: &HttpRequest) -> http::Method {
    http::Method::from_bytes(request.method().as_str().as_bytes()).unwrap_or(http::Method::POST)
}

async fn refuse_undeclared_bodies(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (method, headers) = (method(request.request()), request.headers());
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap_or_default())
    };
    let refusal = api::refuse_undeclared_body(&method, content_type(headers)).or_else(|| {
        api::refuse_cross_origin(
            &method,
            text("sec-fetch-site"),
            text("origin"),
            text("host"),
        )
    });
    match refusal {
        Some(error) => Ok(request.into_response(answer(Err(error)))),
        None => Ok(next.call(request).await?.map_into_boxed_body()),
    }
}

/// The request's JSON body, parsed by [`api::parse_json`]; over the body limit it is 413,
/// and read no further.
async fn json_body<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let declared = content_type(request.headers());
    api::require_json(declared)?;
    let bytes = match payload.to_bytes_limited(api::MAX_BODY_BYTES).await {
        Ok(Ok(bytes)) => bytes,
        // The stream failed: a declared length over actix-web's own limit is 413 too.
        Ok(Err(error)) => {
            return Err(
                if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    api::body_too_large()
                } else {
                    ApiError::new(
                        http::StatusCode::BAD_REQUEST,
                        format!("the request body could not be read: {error}"),
                    )
                },
            )
        }
        Err(_over_the_limit) => return Err(api::body_too_large()),
    };
    api::parse_json(declared, &bytes)
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(crate::PAGE)
}

// login, add_to_cart and set_pref parse their JSON body first (the `?`): a refusal of the
// body (415, 400, 413) is the answer.

async fn login(session: Session, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    answer(async { api::login(&session, json_body(&request, payload).await?).await }.await)
}

async fn add_to_cart(
    session: Session,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    answer(async { api::add_to_cart(&session, json_body(&request, payload).await?).await }.await)
}

async fn set_pref(
    session: Session,
    name: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let name = name.into_inner();
    answer(async { api::set_pref(&session, name, json_body(&request, payload).await?).await }.await)
}

async fn revoke(session: Session, handle: web::Path<String>) -> HttpResponse {
    answer(api::revoke(&session, handle.into_inner()).await)
}

async fn revoke_others(session: Session, epochs: web::Data<DemoEpochs>) -> HttpResponse {
    answer(api::revoke_others(&session, &epochs).await)
}

api::session_endpoints!(Session, answer -> HttpResponse: logout, me, cart, counter, prefs, sessions);

async fn metrics() -> HttpResponse {
    match exporter::render_text() {
        Ok(text) => HttpResponse::Ok()
            .content_type(exporter::CONTENT_TYPE)
            .body(text),
        Err(reason) => HttpResponse::ServiceUnavailable().body(reason),
    }
}
