//! `cloakroom-demo`: a small web app on cloakroom sessions.
//!
//! `cargo run --release -p cloakroom-demo` serves it on <http://127.0.0.1:3000> with the
//! SQLite default store (`cloakroom-demo.db` in the working directory).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use cloakroom::{
    CookieConfig, ExpiryPolicy, MemoryStore, Session, SessionConfig, SessionError, SessionLayer,
    SessionManager,
};
use cloakroom_sqlx::SqliteStore;
use serde::Deserialize;
use serde_json::{json, Value};

/// The cloakroom demo app.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Session store URL: `sqlite://PATH` or `memory://`.
    #[arg(long, default_value = "sqlite://cloakroom-demo.db")]
    store: String,
    /// Idle timeout, such as `30m` or `2s`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    idle_timeout: Duration,
    /// Absolute timeout, such as `8h`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "8h")]
    absolute_timeout: Duration,
}

const USERS: &[(&str, &str)] = &[("alice", "wonderland"), ("bob", "builder")];
const MAX_ITEM_BYTES: usize = 1024;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(message) = run(Args::parse()).await {
        eprintln!("cloakroom-demo: {message}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = SessionConfig::default()
        // The demo serves plain HTTP on loopback; behind TLS keep the default (Secure).
        .with_cookie(CookieConfig::default().with_secure(false))
        .with_expiry(
            ExpiryPolicy::default()
                .with_idle_timeout(Some(args.idle_timeout))
                .with_absolute_timeout(Some(args.absolute_timeout)),
        );
    let manager = if args.store == "memory://" {
        SessionManager::new(MemoryStore::new(), config)
    } else if let Some(path) = args.store.strip_prefix("sqlite://") {
        let store = SqliteStore::open(path).await.map_err(|e| e.to_string())?;
        cloakroom::spawn_purge_task(
            std::sync::Arc::new(store.clone()),
            Duration::from_secs(60),
            1000,
        );
        SessionManager::new(store, config)
    } else {
        return Err(format!(
            "unknown store URL {:?}: use sqlite://PATH or memory://",
            args.store
        ));
    }
    .map_err(|e| e.to_string())?;

    let app = app().layer(SessionLayer::from_manager(std::sync::Arc::new(manager)));
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}: {e} (is another server using it? try --addr)",
                args.addr
            )
        })?;
    tracing::info!(
        "cloakroom demo on http://{} with store {}",
        args.addr,
        args.store
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| e.to_string())
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("index.html")) }))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/cart", get(cart).post(add_to_cart))
        .route("/api/counter", post(counter))
}

/// An API error: a status and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        let message = error.to_string();
        let status = error.into_response().status();
        if status.is_server_error() {
            ApiError(status, "sessions are unavailable, try again shortly".into())
        } else {
            ApiError(status, message)
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(
    session: Session,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(credentials) = body?;
    let known = USERS
        .iter()
        .any(|(user, password)| *user == credentials.username && *password == credentials.password);
    if !known {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong username or password".into(),
        ));
    }
    session.login(&credentials.username).await?;
    Ok(Json(json!({ "user": credentials.username })))
}

async fn logout(session: Session) -> Result<Json<Value>, ApiError> {
    session.logout().await?;
    Ok(Json(json!({ "ok": true })))
}

fn rfc3339(at: Option<time::OffsetDateTime>) -> Value {
    at.and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(Value::Null, Value::String)
}

async fn me(session: Session) -> Result<Json<Value>, ApiError> {
    match session.metadata().await? {
        Some(meta) if meta.user.is_some() => Ok(Json(json!({
            "user": meta.user,
            "handle": meta.handle,
            "created_at": rfc3339(Some(meta.created_at)),
            "last_active_at": rfc3339(Some(meta.last_active_at)),
            "idle_expires_at": rfc3339(meta.idle_deadline),
            "absolute_expires_at": rfc3339(meta.absolute_deadline),
        }))),
        _ => Err(ApiError(StatusCode::UNAUTHORIZED, "not logged in".into())),
    }
}

#[derive(Deserialize)]
struct Item {
    item: String,
}

async fn cart(session: Session) -> Result<Json<Value>, ApiError> {
    let items: Vec<String> = session.get("cart").await?.unwrap_or_default();
    Ok(Json(json!({ "items": items })))
}

async fn add_to_cart(
    session: Session,
    body: Result<Json<Item>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(Item { item }) = body?;
    if item.len() > MAX_ITEM_BYTES {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            "an item is at most 1 KiB".into(),
        ));
    }
    session
        .update("cart", move |cart: Option<Vec<String>>| {
            let mut cart = cart.unwrap_or_default();
            cart.push(item.clone());
            cart
        })
        .await?;
    // Save now so the answer shows the cart as committed, concurrent appends included.
    session.save().await?;
    cart(session).await
}

async fn counter(session: Session) -> Result<Json<Value>, ApiError> {
    session
        .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    session.save().await?;
    let value: u64 = session.get("counter").await?.unwrap_or(0);
    Ok(Json(json!({ "value": value })))
}
