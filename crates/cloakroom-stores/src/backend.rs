//! An opened store, with what managing it needs beyond the session contract.

use std::sync::Arc;

use cloakroom::{BoxError, ConfigError, IdFormat, SessionConfig, SessionManager, SessionStore};

use crate::error::OpenError;
use crate::schemes::{scheme_named, Open};
use crate::target::Target;
use crate::BoxFuture;

/// Creates a store's schema if missing (idempotent).
pub type Migrate = Arc<dyn Fn() -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// Adjusts an app's session configuration to what a store needs (the cookie name and
/// timeouts of an app it shares sessions with, say).
pub type Configure = Arc<dyn Fn(SessionConfig) -> SessionConfig + Send + Sync>;

/// An opened store of any kind.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn SessionStore>,
    migrate: Option<Migrate>,
    needs_purge_task: bool,
    shown: String,
    /// How its IDs are written in the cookie, for a store shared with another app.
    id_format: Option<Arc<dyn IdFormat>>,
    configure: Option<Configure>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("url", &self.shown)
            .field("has_schema", &self.migrate.is_some())
            .field("needs_purge_task", &self.needs_purge_task)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend over `store`; `migrate` creates its schema (`None`: it has none).
    pub fn new(store: Arc<dyn SessionStore>, migrate: Option<Migrate>) -> Self {
        Self {
            store,
            migrate,
            needs_purge_task: false,
            shown: String::new(),
            id_format: None,
            configure: None,
        }
    }

    /// The same store, shared with another app that writes its ID cookie as `format` says
    /// and needs `configure` applied to the session configuration (see
    /// [`manager`](Self::manager)).
    pub fn shared_with(mut self, format: Arc<dyn IdFormat>, configure: Configure) -> Self {
        self.id_format = Some(format);
        self.configure = Some(configure);
        self
    }

    /// A session manager over this store: `config` as the store needs it, and its ID
    /// format. Apps should build their manager here rather than from [`shared`](Self::shared)
    /// alone, so a store shared with another app (`flask-redis://`) works.
    pub fn manager(&self, config: SessionConfig) -> Result<SessionManager, ConfigError> {
        let config = match &self.configure {
            Some(configure) => configure(config),
            None => config,
        };
        let manager = SessionManager::from_arc(self.shared(), config)?;
        Ok(match &self.id_format {
            Some(format) => manager.with_id_format(Arc::clone(format)),
            None => manager,
        })
    }

    /// A backend whose `migrate` calls `create` on a clone of `store`.
    pub fn with_schema<S, F, Fut, E>(store: S, create: F) -> Self
    where
        S: SessionStore + Clone,
        F: Fn(S) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let shared: Arc<dyn SessionStore> = Arc::new(store.clone());
        let migrate: Migrate = Arc::new(move || {
            let created = create(store.clone());
            Box::pin(async move { created.await.map_err(Into::into) })
        });
        Self::new(shared, Some(migrate))
    }

    /// Opens the store a URL names, as the table ([`SCHEMES`](crate::SCHEMES)) says.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let unknown = || OpenError::UnknownScheme {
            url: crate::redact(url),
        };
        // A wrapper is a prefix ending in '+' before another URL: `cached+postgres://…`.
        if let Some((prefix, inner)) = url.split_once('+') {
            let prefix = prefix.to_ascii_lowercase();
            let wrapper = scheme_named(&prefix).and_then(|scheme| match scheme.open {
                Open::Wrap(wrap) => Some((wrap, scheme.needs_purge_task)),
                Open::Store(_) => None,
            });
            if let Some((wrap, needs_purge_task)) = wrapper {
                let inner = Box::pin(Self::open(inner)).await?;
                let mut wrapped = wrap(inner.clone());
                wrapped.needs_purge_task = needs_purge_task || inner.needs_purge_task;
                wrapped.id_format = inner.id_format.clone();
                wrapped.configure = inner.configure.clone();
                wrapped.shown = crate::redact(url);
                return Ok(wrapped);
            }
        }
        let target = Target::parse(url)?.ok_or_else(unknown)?;
        let scheme = scheme_named(&target.scheme).ok_or_else(unknown)?;
        let Open::Store(open) = scheme.open else {
            return Err(unknown());
        };
        target.check_query(scheme.query)?;
        let mut backend = open(&target).await?;
        backend.needs_purge_task = scheme.needs_purge_task;
        backend.shown = target.shown;
        Ok(backend)
    }

    /// The store, shared.
    pub fn shared(&self) -> Arc<dyn SessionStore> {
        Arc::clone(&self.store)
    }

    /// The schema maker, for a wrapper that keeps its inner store's schema.
    pub fn migrator(&self) -> Option<Migrate> {
        self.migrate.clone()
    }

    /// Creates the schema if missing (idempotent); `false` for stores without one.
    pub async fn migrate(&self) -> Result<bool, OpenError> {
        let Some(migrate) = &self.migrate else {
            return Ok(false);
        };
        migrate().await.map_err(|error| OpenError::Migrate {
            url: self.shown.clone(),
            reason: crate::redact::scrub_urls(&error.to_string()),
        })?;
        Ok(true)
    }

    /// Whether this store needs a background purge (`cloakroom::spawn_purge_task`): it
    /// keeps expired records until purged, where others evict them.
    pub fn needs_purge_task(&self) -> bool {
        self.needs_purge_task
    }
}
