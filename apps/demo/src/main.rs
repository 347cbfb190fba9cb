//! `cloakroom-demo`: the demo web app.
//!
//! `cargo run --release -p cloakroom-demo` serves it on <http://127.0.0.1:3000> with the
//! SQLite default store (`cloakroom-demo.db` in the working directory).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use cloakroom::{CookieSessions, KeyRing, SessionManager};
use cloakroom_demo::{DemoEpochs, Settings};
use cloakroom_stores::Backend;

/// The cloakroom demo app.
#[derive(Debug, Parser)]
#[command(version, about, after_help = cloakroom_stores::help())]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Web framework serving the app: the same API, page and cookies on either.
    #[arg(long, value_enum, default_value_t = Framework::Axum)]
    framework: Framework,
    /// Session store URL: any of the list below. cookie:// keeps sessions client-side,
    /// encrypted with the key ring in CLOAKROOM_DEMO_KEY; flask-cookie:// shares a Flask
    /// app's signed cookie (FLASK_SECRET_KEY).
    #[arg(long, default_value = "sqlite://cloakroom-demo.db")]
    store: String,
    /// Idle timeout, such as `30m` or `2s` (default 24h).
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Absolute timeout, such as `8h` (default 14 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    absolute_timeout: Option<Duration>,
    /// Send the session cookie without `Secure`. Only for plain HTTP on an address other
    /// than loopback: browsers keep `Secure` cookies from http://localhost and
    /// http://127.0.0.1 already, and behind TLS the cookie must stay `Secure`.
    #[arg(long)]
    insecure_cookies: bool,
    /// How many live sessions one user may have; a login past it revokes that user's
    /// oldest session. 0 turns the cap off.
    #[arg(long, default_value_t = cloakroom_demo::DEFAULT_MAX_SESSIONS_PER_USER)]
    max_sessions_per_user: usize,
    /// Turn device-bound sessions (DBSC) off. They are on for server-side stores: a
    /// login offers the browser a binding, and a browser that registers a key must then
    /// refresh a short-lived bound cookie to stay logged in; browsers without DBSC are not
    /// affected. Bound cookies are MAC'd with CLOAKROOM_DEMO_KEY when set, otherwise with
    /// a key made at startup (bound sessions then read as logged out after a restart).
    #[arg(long)]
    no_device_binding: bool,
    /// How long a bound cookie lives, such as `5m` or `180s` (default 5m, at least 151s:
    /// Chrome refreshes once less than 120s are left). A copied session cookie stops
    /// working when the bound cookie copied with it expires.
    #[arg(long, value_parser = humantime::parse_duration)]
    bound_cookie_lifetime: Option<Duration>,
}

/// The web frameworks the demo runs on.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Framework {
    /// axum, through cloakroom's tower layer.
    Axum,
    /// actix-web, through cloakroom-actix's middleware.
    Actix,
}

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
    let epochs = DemoEpochs::default();
    if let Some(lifetime) = args.bound_cookie_lifetime {
        // Refused up front with the library's reason, before any store is opened.
        cloakroom::dbsc::check_bound_cookie_lifetime(lifetime).map_err(|e| e.to_string())?;
    }
    let device_binding = if args.no_device_binding {
        None
    } else if std::env::var_os("CLOAKROOM_DEMO_KEY").is_some() {
        Some(KeyRing::from_env("CLOAKROOM_DEMO_KEY").map_err(|e| e.to_string())?)
    } else {
        Settings::default().device_binding
    };
    let settings = Settings {
        idle_timeout: args.idle_timeout,
        absolute_timeout: args.absolute_timeout,
        secure_cookies: !args.insecure_cookies,
        max_sessions_per_user: args.max_sessions_per_user,
        device_binding,
        bound_cookie_lifetime: args.bound_cookie_lifetime,
    };
    if settings.secure_cookies && !args.addr.ip().is_loopback() {
        tracing::warn!(
            "cookies are Secure: browsers drop them over plain HTTP on {}; serve it behind \
             TLS, or pass --insecure-cookies",
            args.addr
        );
    }
    let config = settings.session_config().with_epochs(epochs.clone());
    // Client-side sessions cannot be device-bound (the key would ride in the very cookie
    // it guards, and the manager refuses the combination): they run without it.
    let client_side_config = Settings {
        device_binding: None,
        ..settings.clone()
    }
    .session_config()
    .with_epochs(epochs.clone());
    let manager = if args.store == "cookie://" {
        // Client-side sessions, encrypted with the key ring in CLOAKROOM_DEMO_KEY.
        let ring = KeyRing::from_env("CLOAKROOM_DEMO_KEY").map_err(|e| e.to_string())?;
        SessionManager::cookie(CookieSessions::encrypted(ring), client_side_config)
    } else if let Some(manager) =
        cloakroom_stores::open_client_side(&args.store, client_side_config)
    {
        // flask-cookie://: a Flask app's own cookie, keys in FLASK_SECRET_KEY.
        Ok(manager.map_err(|e| e.to_string())?)
    } else {
        let backend = Backend::open(&args.store)
            .await
            .map_err(|e| e.to_string())?;
        if backend.needs_purge_task() {
            cloakroom::spawn_purge_task(backend.shared(), Duration::from_secs(60), 1000);
        }
        // Through the backend, so a store shared with a Flask app gets its cookie format.
        backend.manager(config)
    }
    .map_err(|e| e.to_string())?;
    let manager = Arc::new(manager);
    let serving = format!(
        "cloakroom demo on http://{} ({:?}) with store {}",
        args.addr,
        args.framework,
        cloakroom_stores::redact(&args.store)
    );
    let cannot_listen = |e: std::io::Error| {
        format!(
            "cannot listen on {}: {e} (is another server using it? try --addr)",
            args.addr
        )
    };
    match args.framework {
        Framework::Axum => {
            let app = cloakroom_demo::app_with_manager(manager, epochs);
            let listener = tokio::net::TcpListener::bind(args.addr)
                .await
                .map_err(cannot_listen)?;
            tracing::info!("{serving}");
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
        Framework::Actix => {
            // Each worker builds its own App; all share the one manager (and so the
            // store's pool and the group commit) and the epochs. actix-web stops on
            // Ctrl-C by itself.
            let server = actix_web::HttpServer::new(move || {
                cloakroom_demo::routes_actix::app(Arc::clone(&manager), epochs.clone())
            })
            .bind(args.addr)
            .map_err(cannot_listen)?;
            tracing::info!("{serving}");
            server.run().await.map_err(|e| e.to_string())
        }
    }
}
