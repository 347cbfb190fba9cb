//! A background task that purges expired sessions on an interval and survives errors.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::SessionStore;

/// Spawns a task that calls [`SessionStore::purge_expired`] every `every`, deleting
/// `batch` records at a time. Errors are logged and the task keeps going; abort the
/// returned handle to stop it.
///
/// Needs a Tokio runtime.
pub fn spawn_purge_task(
    store: Arc<dyn SessionStore>,
    every: Duration,
    batch: usize,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.purge_expired(batch).await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "purged expired sessions"),
                Err(error) => tracing::warn!(%error, "purging expired sessions failed; will retry"),
            }
        }
    })
}
