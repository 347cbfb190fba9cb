//! The cloakroom demo app: a JSON API and one HTML page over cloakroom sessions, on axum
//! ([`app`], [`app_with_manager`]) or on actix-web ([`routes_actix::app`]), both from the
//! same framework-free endpoint logic.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use tower::ServiceExt;
//! let app = cloakroom_demo::app(cloakroom::MemoryStore::new(), cloakroom_demo::Settings::default().session_config()).unwrap();
//! let response = app.oneshot(Request::get("/api/cart").body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! # });
//! ```

mod api;
pub mod exporter;
pub mod routes_actix;
mod routes_axum;

/// The page, served at `/` by both frameworks.
const PAGE: &str = include_str!("index.html");

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use cloakroom::dbsc::binding::DeviceBindingConfig;
use cloakroom::{
    BoxError, ConfigError, CookieConfig, EpochSource, ExpiryPolicy, KeyRing, SessionConfig,
    SessionManager, SessionStore,
};

/// The seeded users and their passwords.
pub const USERS: &[(&str, &str)] = &[("alice", "wonderland"), ("bob", "builder")];

/// The users' epochs, kept in memory: bumping one logs that user out everywhere, which
/// is how "log out other devices" works for client-side (`cookie://`) sessions.
#[derive(Clone, Debug, Default)]
pub struct DemoEpochs(Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>);

impl DemoEpochs {
    /// Moves `user` to a new epoch.
    pub fn bump(&self, user: &str) {
        let mut epochs = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *epochs.entry(user.to_owned()).or_default() += 1;
    }
}

#[async_trait::async_trait]
impl EpochSource for DemoEpochs {
    async fn current_epoch(&self, user: &str) -> Result<Option<String>, BoxError> {
        let epochs = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Some(epochs.get(user).copied().unwrap_or(0).to_string()))
    }
}

/// The demo's default cap on live sessions per user (see [`Settings::max_sessions_per_user`]).
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 10;

/// How the demo configures sessions; the command line fills it in.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Idle timeout (the library's default when `None`).
    pub idle_timeout: Option<Duration>,
    /// Absolute timeout (the library's default when `None`).
    pub absolute_timeout: Option<Duration>,
    /// Mark the cookie `Secure` (the default). Browsers keep `Secure` cookies from
    /// `http://localhost` and `http://127.0.0.1`, so only plain HTTP on another address
    /// needs this off.
    pub secure_cookies: bool,
    /// How many live sessions one user may have: a login past it revokes the user's
    /// oldest session. `0` turns the cap off.
    pub max_sessions_per_user: usize,
    /// Device-bound sessions (DBSC), on by default: logins offer the browser a binding,
    /// with bound cookies MAC'd with this key ring. `None` turns it off (client-side
    /// sessions cannot have it). Browsers without DBSC work exactly as without it.
    pub device_binding: Option<KeyRing>,
    /// How long a bound cookie lives before the browser must prove its key again (the
    /// library's default, 5 minutes, when `None`). The configuration refuses lifetimes
    /// below [`cloakroom::dbsc::MIN_BOUND_COOKIE_LIFETIME`]; an end-to-end test shortens
    /// it to watch a copied cookie die within its run.
    pub bound_cookie_lifetime: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            idle_timeout: None,
            absolute_timeout: None,
            secure_cookies: true,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            // A fresh ring: bound cookies then last until the demo restarts, after which
            // bound sessions read as logged out (the binary takes CLOAKROOM_DEMO_KEY).
            device_binding: Some(
                KeyRing::parse(&cloakroom::generate_key()).expect("a generated key parses"),
            ),
            bound_cookie_lifetime: None,
        }
    }
}

impl Settings {
    /// The session configuration these settings describe.
    pub fn session_config(&self) -> SessionConfig {
        let defaults = ExpiryPolicy::default();
        let config = SessionConfig::default()
            .with_cookie(CookieConfig::default().with_secure(self.secure_cookies))
            .with_expiry(
                ExpiryPolicy::default()
                    .with_idle_timeout(self.idle_timeout.or(defaults.idle_timeout()))
                    .with_absolute_timeout(self.absolute_timeout.or(defaults.absolute_timeout())),
            );
        let config = match self.max_sessions_per_user {
            0 => config,
            cap => config.with_max_sessions_per_user(cap),
        };
        match &self.device_binding {
            Some(keys) => {
                let binding = DeviceBindingConfig::new(keys.clone());
                let binding = match self.bound_cookie_lifetime {
                    Some(lifetime) => binding.with_bound_cookie_lifetime(lifetime),
                    None => binding,
                };
                config.with_device_binding(binding)
            }
            None => config,
        }
    }
}

/// The demo's router over `store`.
pub fn app(store: impl SessionStore, config: SessionConfig) -> Result<Router, ConfigError> {
    let epochs = DemoEpochs::default();
    let manager = SessionManager::new(store, config.with_epochs(epochs.clone()))?;
    Ok(app_with_manager(Arc::new(manager), epochs))
}

/// The demo's axum router over a shared manager whose configuration uses `epochs` (so
/// "log out other devices" works for client-side sessions too).
pub fn app_with_manager(manager: Arc<SessionManager>, epochs: DemoEpochs) -> Router {
    // Installed before the first request, so that /metrics counts every session.
    exporter::prometheus();
    routes_axum::router(manager, epochs)
}
