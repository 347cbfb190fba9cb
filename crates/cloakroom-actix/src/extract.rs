//! The [`Session`] extractor.

use std::future::{ready, Ready};
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};

/// The session of one request, in a handler's arguments: every [`cloakroom::Session`]
/// method is available through `Deref` (`get`, `insert`, `update`, `login`, `logout`...).
///
/// It needs a [`SessionMiddleware`](crate::SessionMiddleware) around the route; without
/// one the request fails with [`MissingSessionMiddleware`]. Cheap to clone; all clones
/// are the same session.
#[derive(Clone, Debug)]
pub struct Session(cloakroom::Session);

impl Session {
    /// The cloakroom session inside, for code written against the core crate.
    pub fn into_inner(self) -> cloakroom::Session {
        self.0
    }
}

impl Deref for Session {
    type Target = cloakroom::Session;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl FromRequest for Session {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            request
                .extensions()
                .get::<cloakroom::Session>()
                .cloned()
                .map(Session)
                .ok_or(MissingSessionMiddleware),
        )
    }
}

/// Returned when a handler asks for a [`Session`] but no
/// [`SessionMiddleware`](crate::SessionMiddleware) wraps the route: a server bug,
/// answered with 500 and a message that says the fix.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "no SessionMiddleware wraps this route: add .wrap(SessionMiddleware::new(store)) to the App"
)]
pub struct MissingSessionMiddleware;

impl ResponseError for MissingSessionMiddleware {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        tracing::error!("{self}");
        HttpResponse::InternalServerError().body(self.to_string())
    }
}
