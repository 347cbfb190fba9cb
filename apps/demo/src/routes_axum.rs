//! The API and page on axum.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use cloakroom::{Session, SessionLayer, SessionManager};
use serde::de::DeserializeOwned;

use crate::api::{self, ApiError, ApiResult};
use crate::{exporter, DemoEpochs};

/// The demo's axum router over a shared manager whose configuration uses `epochs`.
pub fn router(manager: Arc<SessionManager>, epochs: DemoEpochs) -> Router {
    Router::new()
        .route("/", get(|| async { Html(crate::PAGE) }))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/cart", get(cart).post(add_to_cart))
        .route("/api/counter", post(counter))
        .route("/api/prefs", get(prefs))
        .route("/api/prefs/{name}", put(set_pref))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/revoke-others", post(revoke_others))
        .route("/api/sessions/{handle}", delete(revoke))
        .route("/metrics", get(metrics))
        .fallback(|| async { Answer(Err(api::not_found())) })
        .layer(middleware::from_fn(refuse_undeclared_bodies))
        .layer(DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .layer(Extension(epochs))
        .layer(SessionLayer::from_manager(manager))
}

/// An endpoint's answer as an axum response.
struct Answer(ApiResult);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(body) => Json(body).into_response(),
            Err(mut error) => {
                let body = Json(error.body());
                match error.take_store_failure() {
                    // Its status, `Retry-After` and the layer's marker, with the JSON body.
                    Some(failure) => {
                        let (mut parts, _) = failure.into_response().into_parts();
                        parts.headers.remove(header::CONTENT_TYPE);
                        (parts, body).into_response()
                    }
                    None => (error.status, body).into_response(),
                }
            }
        }
    }
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or_default())
}

/// A JSON body, parsed by [`api::parse_json`]; over the body limit it is 413.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Answer;

    async fn from_request(request: Request, state: &S) -> Result<Self, Answer> {
        let declared = content_type(request.headers()).map(str::to_owned);
        api::require_json(declared.as_deref()).map_err(|error| Answer(Err(error)))?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                Answer(Err(
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        api::body_too_large()
                    } else {
                        ApiError::new(rejection.status(), rejection.body_text())
                    },
                ))
            })?;
        api::parse_json(declared.as_deref(), &bytes)
            .map(JsonBody)
            .map_err(|error| Answer(Err(error)))
    }
}

async fn refuse_undeclared_bodies(request: Request, next: Next) -> Response {
    let (method, headers) = (request.method(), request.headers());
    let text = |name| {
        headers
            .get(name)
            .map(|value: &header::HeaderValue| value.to_str().unwrap_or_default())
    };
    let refusal = api::refuse_undeclared_body(method, content_type(headers)).or_else(|| {
        api::refuse_cross_origin(
            method,
            text(header::HeaderName::from_static("sec-fetch-site")),
            text(header::ORIGIN),
            // HTTP/2 names the host in the URI, not in a header.
            text(header::HOST).or_else(|| request.uri().authority().map(|a| a.as_str())),
        )
    });
    match refusal {
        Some(error) => Answer(Err(error)).into_response(),
        None => next.run(request).await,
    }
}

async fn login(session: Session, JsonBody(body): JsonBody<api::Credentials>) -> Answer {
    Answer(api::login(&session, body).await)
}

async fn add_to_cart(session: Session, JsonBody(body): JsonBody<api::Item>) -> Answer {
    Answer(api::add_to_cart(&session, body).await)
}

async fn set_pref(
    session: Session,
    LastSegment(name): LastSegment,
    JsonBody(body): JsonBody<api::PrefValue>,
) -> Answer {
    Answer(api::set_pref(&session, name, body).await)
}

async fn revoke(session: Session, LastSegment(handle): LastSegment) -> Answer {
    Answer(api::revoke(&session, handle).await)
}

/// The path's last segment, percent-decoded with bytes that are not UTF-8 replaced (U+FFFD)
/// as actix-web decodes it: a name or handle that is not text matches nothing, and the
/// endpoint answers so with the API's JSON error on both frameworks. (axum's `Path`
/// refuses it with a plain-text `400` before the handler runs.)
struct LastSegment(String);

impl<S: Send + Sync> FromRequestParts<S> for LastSegment {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.path().rsplit('/').next().unwrap_or_default();
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        Ok(Self(decoded.into_owned()))
    }
}

async fn revoke_others(session: Session, Extension(epochs): Extension<DemoEpochs>) -> Answer {
    Answer(api::revoke_others(&session, &epochs).await)
}

api::session_endpoints!(Session, Answer -> Answer: logout, me, cart, counter, prefs, sessions);

async fn metrics() -> Response {
    match exporter::render_text() {
        Ok(text) => ([(header::CONTENT_TYPE, exporter::CONTENT_TYPE)], text).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}
