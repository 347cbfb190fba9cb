//! The app the HTTP cases drive, and the [`Framework`]s that serve it.
//!
//! The cases speak to an [`AppUnderTest`]; a [`Framework`] builds one over a
//! [`SessionManager`] by routing every request to [`respond`] through its own session
//! middleware, extractor and error responses. The routes are the core's, so every
//! framework is held to exactly the same cases.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::Router;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::id::SessionHandle;
use crate::layer::SessionLayer;
use crate::session::{Session, SessionManager};
use crate::testing::AppUnderTest;
use crate::SessionError;

/// A web framework the HTTP cases run through: it serves [`respond`] behind its session
/// integration.
///
/// The core provides [`Axum`]; `cloakroom_actix::testing::Actix` serves actix-web.
pub trait Framework: Send + Sync + 'static {
    /// Its name, as the suite reports it (`axum`, `actix-web`).
    fn name(&self) -> &'static str;

    /// An app with sessions from `manager` whose every request is answered by
    /// [`respond`], errors turned into responses the way the framework's users get them.
    fn serve(&self, manager: Arc<SessionManager>) -> Arc<dyn AppUnderTest>;
}

/// axum, through [`SessionLayer`] and the [`Session`] extractor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Axum;

impl Framework for Axum {
    fn name(&self) -> &'static str {
        "axum"
    }

    fn serve(&self, manager: Arc<SessionManager>) -> Arc<dyn AppUnderTest> {
        let router = Router::new()
            .fallback(|session: Session, request: Request| async move {
                let (parts, body) = request.into_parts();
                let body = match axum::body::to_bytes(body, 1 << 20).await {
                    Ok(body) => body,
                    Err(_) => return StatusCode::BAD_REQUEST.into_response(),
                };
                let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                match respond(&session, &parts.method, path, &body).await {
                    Ok(reply) => reply.into_response(),
                    Err(error) => error.into_response(),
                }
            })
            .layer(SessionLayer::from_manager(manager));
        Arc::new(router)
    }
}

/// What a route answered: a status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> axum::response::Response {
        let mut response = axum::response::Response::new(Body::from(self.body.to_string()));
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Answers one request of the HTTP cases on `session`: `path` is the path and query,
/// `body` the raw request body (JSON where a route takes a value).
///
/// The routes, each answering JSON: `GET /untouched` (never touches the session),
/// `GET /get/{key}`, `POST /set/{key}[?delay_ms=N]` (reads the key, waits, writes the
/// body), `POST /remove/{key}`, `POST /incr/{key}[?delay_ms=N]`, `POST /fail/{key}[?persistent]`
/// (writes, makes the session persistent if asked, then answers 500), `POST /cycle`, `POST /login/{user}`, `POST /logout`,
/// `POST /persistent`, `GET /whoami`, `GET /created`, `GET /handle`, `GET /sessions`,
/// `POST /revoke/{handle}`, `POST /revoke-others`. Anything else is 404, a body that is
/// not JSON 400.
///
/// # Errors
/// The session's error, for the framework to answer with its own error response.
pub async fn respond(
    session: &Session,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Reply, SessionError> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let delay = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay_ms="))
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis);
    let pause = || async move {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    };
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let route = segments.next().unwrap_or_default();
    let argument = segments.next().unwrap_or_default().to_owned();
    let ok = || Ok(Reply::ok(json!("ok")));
    match (method.as_str(), route) {
        ("GET", "untouched") => ok(),
        ("GET", "get") => Ok(Reply::ok(session.get::<Value>(&argument).await?.into())),
        ("POST", "set") => {
            let Ok(value) = serde_json::from_slice::<Value>(body) else {
                return Ok(Reply {
                    status: StatusCode::BAD_REQUEST,
                    body: json!("the body is not JSON"),
                });
            };
            session.get::<Value>(&argument).await?;
            pause().await;
            session.insert(&argument, value).await?;
            ok()
        }
        ("POST", "remove") => Ok(Reply::ok(session.remove::<Value>(&argument).await?.into())),
        ("POST", "incr") => {
            let n = session
                .update(&argument, |n: Option<u64>| n.unwrap_or(0) + 1)
                .await?;
            pause().await;
            Ok(Reply::ok(json!(n)))
        }
        ("POST", "fail") => {
            session.insert(&argument, true).await?;
            if query.split('&').any(|pair| pair == "persistent") {
                session.set_persistent(true).await?;
            }
            Ok(Reply {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: json!("failed on purpose"),
            })
        }
        ("POST", "cycle") => {
            session.cycle_id().await?;
            ok()
        }
        ("POST", "login") => {
            session.login(argument).await?;
            ok()
        }
        ("POST", "logout") => {
            session.logout().await?;
            ok()
        }
        ("POST", "persistent") => {
            session.set_persistent(true).await?;
            session.insert("remember", true).await?;
            ok()
        }
        ("GET", "whoami") => Ok(Reply::ok(json!(session.user().await?))),
        ("GET", "created") => {
            let metadata = session.metadata().await?;
            Ok(Reply::ok(json!(
                metadata.map(|m| m.created_at.unix_timestamp_nanos().to_string())
            )))
        }
        ("GET", "handle") => Ok(Reply::ok(json!(session
            .handle()
            .await?
            .map(|h| h.to_string())))),
        ("GET", "sessions") => Ok(Reply::ok(json!(session.list_user_sessions().await?))),
        ("POST", "revoke") => match SessionHandle::parse(&argument) {
            Some(handle) => Ok(Reply::ok(json!(
                session.revoke_user_session(&handle).await?
            ))),
            None => Ok(Reply {
                status: StatusCode::NOT_FOUND,
                body: json!("no such handle"),
            }),
        },
        ("POST", "revoke-others") => Ok(Reply::ok(json!(session.revoke_other_sessions().await?))),
        _ => Ok(Reply {
            status: StatusCode::NOT_FOUND,
            body: json!("no such route"),
        }),
    }
}
