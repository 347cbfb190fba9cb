//! [`SessionError`]: cloakroom's session error as an actix-web `ResponseError`.

use actix_web::body::BoxBody;
use actix_web::http::header::{ContentType, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// A [`cloakroom::SessionError`] that actix-web can answer with.
///
/// Handlers return it with `?` on any session call. The statuses are the axum
/// integration's: store failures and exhausted retries are `503 Service Unavailable`
/// with `Retry-After` (the middleware sets the configured delay), size and depth
/// limits are `413 Payload Too Large` with the reason, the rest `500`. Server errors are
/// logged and answered with the bare status text, never the error's details.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SessionError(#[from] pub cloakroom::SessionError);

impl SessionError {
    /// The cloakroom error inside.
    pub fn into_inner(self) -> cloakroom::SessionError {
        self.0
    }
}

impl ResponseError for SessionError {
    fn status_code(&self) -> StatusCode {
        match &self.0 {
            error if error.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            error if error.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let status = self.status_code();
        let body = if status.is_server_error() {
            tracing::error!(error = %self.0, "session error");
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            self.0.to_string()
        };
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Every store-caused 503 says when to retry: the default policy's delay (the
            // middleware replaces it with the configured one).
            if let cloakroom::OnStoreError::ServiceUnavailable { retry_after } =
                cloakroom::OnStoreError::default()
            {
                response.insert_header((RETRY_AFTER, retry_after.as_secs().max(1)));
            }
        }
        response.content_type(ContentType::plaintext()).body(body)
    }
}
