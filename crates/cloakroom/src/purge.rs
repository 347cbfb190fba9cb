//! A background task that purges expired sessions on an interval and survives errors.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::SessionStore;

/// The shortest interval [`spawn_purge_task`] runs at: a shorter one (zero included) is
/// taken as this.
pub const MIN_PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// Spawns a task that calls [`SessionStore::purge_expired`] every `every` (at least
/// [`MIN_PURGE_INTERVAL`]), deleting `batch` records at a time. Errors are logged and the
/// task keeps going; abort the returned handle to stop it.
///
/// Needs a Tokio runtime.
pub fn spawn_purge_task(
    store: Arc<dyn SessionStore>,
    every: Duration,
    batch: usize,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Tokio's interval panics on zero, which ended the task before its first purge.
        let mut ticker = tokio::time::interval(every.max(MIN_PURGE_INTERVAL));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero interval purges (at the shortest interval) instead of ending the task with a
    /// panic before its first purge.
    #[tokio::test]
    async fn a_zero_interval_still_purges() {
        let store = Arc::new(crate::MemoryStore::new());
        let t = crate::record::now();
        let dying = crate::Record::new(t, Some(t + time::Duration::milliseconds(10)), None);
        store
            .insert(&crate::SessionId::generate().store_key(), &dying)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let task = spawn_purge_task(store.clone(), Duration::ZERO, 10);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished(), "the task is still running");
        assert_eq!(store.len(), 0, "the first tick purged the expired session");
        task.abort();
    }
}
