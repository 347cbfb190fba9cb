//! The app under test (the same routes as the core's HTTP conformance cases), a client
//! that reads what came back, and the stores the cases run on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, COOKIE, RETRY_AFTER, SET_COOKIE, VARY,
};
use actix_web::http::StatusCode;
use actix_web::{test, web, HttpResponse};
use cloakroom::conformance::{HookedStore, Outage};
use cloakroom::{ListQuery, MemoryStore, SessionConfig, SessionManager, SessionStore};
use cloakroom_actix::{Session, SessionError};
use serde_json::Value;

#[derive(serde::Deserialize)]
struct Delay {
    delay_ms: Option<u64>,
}

async fn pause(delay: &Delay) {
    if let Some(ms) = delay.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/untouched", web::get().to(|| async { "ok" }))
        .route(
            "/get/{key}",
            web::get().to(|s: Session, key: web::Path<String>| async move {
                let value = s.get::<Value>(&key).await?;
                Ok::<_, SessionError>(web::Json(value))
            }),
        )
        .route(
            "/set/{key}",
            web::post().to(
                |s: Session, key: web::Path<String>, d: web::Query<Delay>, v: web::Json<Value>| async move {
                    s.get::<Value>(&key).await?;
                    pause(&d).await;
                    s.insert(&key, v.into_inner()).await?;
                    Ok::<_, SessionError>("ok")
                },
            ),
        )
        .route(
            "/incr/{key}",
            web::post().to(|s: Session, key: web::Path<String>, d: web::Query<Delay>| async move {
                let n = s.update(&key, |n: Option<u64>| n.unwrap_or(0) + 1).await?;
                pause(&d).await;
                Ok::<_, SessionError>(web::Json(n))
            }),
        )
        .route(
            "/fail/{key}",
            web::post().to(|s: Session, key: web::Path<String>| async move {
                s.insert(&key, true).await?;
                Ok::<_, SessionError>(HttpResponse::InternalServerError().finish())
            }),
        )
        .route(
            "/login/{user}",
            web::post().to(|s: Session, user: web::Path<String>| async move {
                s.login(user.into_inner()).await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/public-login/{user}",
            web::post().to(|s: Session, user: web::Path<String>| async move {
                s.login(user.into_inner()).await?;
                Ok::<_, SessionError>(
                    HttpResponse::Ok()
                        .insert_header(("cache-control", "public, max-age=600"))
                        .insert_header(("cdn-cache-control", "max-age=600"))
                        .finish(),
                )
            }),
        )
        .route(
            "/logout",
            web::post().to(|s: Session| async move {
                s.logout().await?;
                Ok::<_, SessionError>("ok")
            }),
        )
        .route(
            "/whoami",
            web::get().to(|s: Session| async move { Ok::<_, SessionError>(web::Json(s.user().await?)) }),
        )
        .route(
            "/sessions",
            web::get().to(|s: Session| async move {
                Ok::<_, SessionError>(web::Json(s.list_user_sessions().await?))
            }),
        )
        .route(
            "/revoke-others",
            web::post().to(|s: Session| async move {
                Ok::<_, SessionError>(web::Json(s.revoke_other_sessions().await?))
            }),
        );
}

pub fn manager(store: Arc<dyn SessionStore>, config: SessionConfig) -> Arc<SessionManager> {
    Arc::new(SessionManager::from_arc(store, config).expect("valid test configuration"))
}

/// An app over `manager`, with every route.
macro_rules! app {
    ($manager:expr) => {
        actix_web::test::init_service(
            actix_web::App::new()
                .wrap(cloakroom_actix::SessionMiddleware::from_manager($manager))
                .configure($crate::support::routes),
        )
        .await
    };
}

/// What came back.
pub struct Reply {
    pub status: StatusCode,
    pub set_cookie: Vec<String>,
    pub vary: Vec<String>,
    pub cache_control: Vec<String>,
    pub cdn_cache_control: Vec<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    /// The `name=value` of the one session cookie this response set.
    pub fn cookie(&self) -> String {
        assert_eq!(
            self.set_cookie.len(),
            1,
            "one Set-Cookie: {:?}",
            self.set_cookie
        );
        self.set_cookie[0].split(';').next().unwrap().to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("JSON body: {:?}", self.body))
    }
}

pub async fn send<S, R, B>(app: &S, request: R) -> Reply
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let response = test::call_service(app, request).await;
    let headers = response.headers();
    let all = |name| {
        headers
            .get_all(name)
            .map(|value: &HeaderValue| value.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let set_cookie = all(SET_COOKIE);
    let vary = all(VARY);
    let cache_control = all(CACHE_CONTROL);
    let cdn_cache_control = all(HeaderName::from_static("cdn-cache-control"));
    let retry_after = all(RETRY_AFTER).pop();
    let status = response.status();
    let body = test::read_body(response).await;
    Reply {
        status,
        set_cookie,
        vary,
        cache_control,
        cdn_cache_control,
        retry_after,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// The JSON a `GET uri` answers with `cookie`: what the session shows at that point.
pub async fn read<S, B>(app: &S, uri: &str, cookie: &str) -> Value
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    send(app, get(uri, Some(cookie))).await.json()
}

pub fn get(uri: &str, cookie: Option<&str>) -> Request {
    with_cookie(test::TestRequest::get().uri(uri), cookie)
}

pub fn post(uri: &str, cookie: Option<&str>, body: Value) -> Request {
    with_cookie(test::TestRequest::post().uri(uri).set_json(body), cookie)
}

pub fn with_cookie(request: test::TestRequest, cookie: Option<&str>) -> Request {
    match cookie {
        Some(cookie) => request.insert_header((COOKIE, cookie)),
        None => request,
    }
    .to_request()
}

pub fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

pub async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn SessionStore> {
    Arc::new(
        cloakroom_sqlx::SqliteStore::open(dir.path().join("sessions.db"))
            .await
            .expect("open sqlite"),
    )
}

/// Runs `case` on `memory` and on a fresh SQLite store.
pub async fn on_memory_and_sqlite<F, Fut>(memory: Arc<dyn SessionStore>, case: F)
where
    F: Fn(Arc<dyn SessionStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    case(memory).await;
    let dir = tempfile::tempdir().unwrap();
    case(sqlite(&dir).await).await;
}

/// A real store that answers `StoreError::Unavailable` to everything while its outage is
/// started, as a store whose server went away does.
pub fn outage() -> Arc<HookedStore<Outage>> {
    Arc::new(HookedStore::with_hook(memory(), Outage::default()))
}

pub async fn live_sessions(store: &Arc<dyn SessionStore>) -> usize {
    let query = ListQuery {
        limit: 1000,
        ..ListQuery::default()
    };
    store.list_sessions(&query).await.expect("list").len()
}
