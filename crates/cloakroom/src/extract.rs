//! The axum extractor for [`Session`] and `IntoResponse` for [`SessionError`].

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::header::RETRY_AFTER;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use crate::error::{SessionError, StoreUnavailableResponse};
use crate::session::Session;

/// Returned when a handler asks for a [`Session`] but no [`SessionLayer`](crate::SessionLayer)
/// wraps the route: a server bug, answered with 500 and a message that says the fix.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no SessionLayer wraps this route: add .layer(SessionLayer::new(store)) to the Router")]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = match &self {
            error if error.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            error if error.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "session store failed; answering 503");
            let retry_after = match crate::config::OnStoreError::default() {
                crate::config::OnStoreError::ServiceUnavailable { retry_after } => retry_after,
                crate::config::OnStoreError::Anonymous => std::time::Duration::from_secs(5),
            };
            let mut response = (
                status,
                [(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)))],
                "Service Unavailable",
            )
                .into_response();
            // The layer, which knows the configured Retry-After, replaces the default.
            response.extensions_mut().insert(StoreUnavailableResponse);
            response
        } else if status.is_server_error() {
            tracing::error!(error = %self, "session error");
            let message = status.canonical_reason().unwrap_or("error");
            (status, message).into_response()
        } else {
            (status, self.to_string()).into_response()
        }
    }
}
