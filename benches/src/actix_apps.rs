//! The actix-web apps, serving [`routes`]: actix-session on its Redis and cookie stores, and
//! cloakroom on actix-web (`cloakroom-actix`) with the handlers of the cloakroom axum app.
//!
//! An app is `App::new().wrap(middleware).configure(routes)`, with one of the middlewares
//! and the routes of its library from here: each caller builds its `App` itself, since the
//! type of an `App` with a middleware is one that only a caller's own expression can hold.

use actix_session::storage::{CookieSessionStore, RedisSessionStore, SessionStore};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::web;

use crate::axum_apps::BuildError;
use crate::env::Env;
use crate::scenario::routes::{self, COUNTER};
use crate::scenario::StoreKind;

/// actix-session's Redis store on the benchmark's Redis.
pub async fn redis_store(env: &Env) -> Result<RedisSessionStore, BuildError> {
    Ok(RedisSessionStore::new(env.redis_url.clone())
        .await
        .map_err(|error| error.to_string())?)
}

/// actix-session's cookie store (private: encrypted with AES-256-GCM, its default).
pub fn cookie_store() -> CookieSessionStore {
    CookieSessionStore::default()
}

/// The middleware with its defaults (cookie `id`, Secure, HttpOnly) and a fresh key.
pub fn middleware<S: SessionStore>(store: S, key: &Key) -> SessionMiddleware<S> {
    SessionMiddleware::new(store, key.clone())
}

/// The routes with actix-session's handlers, for an app wrapped in [`middleware`].
pub fn actix_session_routes(config: &mut web::ServiceConfig) {
    config
        .route(routes::UNTOUCHED, web::get().to(untouched))
        .route(routes::SEED, web::post().to(seed))
        .route(routes::READ, web::get().to(read))
        .route(routes::WRITE, web::post().to(write))
        .route(routes::ROTATE, web::post().to(rotate));
}

async fn untouched() -> &'static str {
    "ok"
}

async fn seed(session: Session) -> actix_web::Result<&'static str> {
    session.insert(COUNTER, 0_i64)?;
    session.insert("user", "bench")?;
    Ok("ok")
}

async fn read(session: Session) -> actix_web::Result<String> {
    Ok(session.get::<i64>(COUNTER)?.unwrap_or(0).to_string())
}

async fn write(session: Session) -> actix_web::Result<String> {
    let value = session.get::<i64>(COUNTER)?.unwrap_or(0) + 1;
    session.insert(COUNTER, value)?;
    Ok(value.to_string())
}

async fn rotate(session: Session) -> actix_web::Result<&'static str> {
    session.renew();
    Ok("ok")
}

/// cloakroom-actix's middleware on `store`: the same manager (store, configuration, cookie
/// key) as the cloakroom axum app. Build it once and clone it into every worker's `App`, as
/// its documentation says, so the workers share one store and one commit queue.
pub async fn cloakroom_middleware(
    store: StoreKind,
    env: &Env,
) -> Result<cloakroom_actix::SessionMiddleware, BuildError> {
    Ok(cloakroom_actix::SessionMiddleware::from_manager(
        crate::axum_apps::cloakroom_manager(store, env).await?,
    ))
}

/// The routes with the cloakroom handlers, for an app wrapped in
/// [`cloakroom_middleware`].
pub fn cloakroom_routes(config: &mut web::ServiceConfig) {
    config
        .route(routes::UNTOUCHED, web::get().to(untouched))
        .route(routes::SEED, web::post().to(cloakroom_handlers::seed))
        .route(routes::READ, web::get().to(cloakroom_handlers::read))
        .route(routes::WRITE, web::post().to(cloakroom_handlers::write))
        .route(routes::ROTATE, web::post().to(cloakroom_handlers::rotate));
}

crate::axum_apps::cloakroom_handlers_for!(cloakroom_actix);
