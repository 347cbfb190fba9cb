//! Loading a request's session the first time its handler touches it, with the failure
//! policy and revocation by epoch.

use time::OffsetDateTime;
use tokio::sync::{MappedMutexGuard, MutexGuard};

use super::manager::{Backend, Incoming};
use super::state::{Origin, Slot, Status, View};
use super::Session;
use crate::config::OnStoreError;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::record::now;
use crate::store::{SessionStore, StoreError};
use crate::telemetry::{self, names, BadCookie};

impl Session {
    /// The session, loaded on first use.
    pub(super) async fn loaded(&self) -> Result<MappedMutexGuard<'_, View>, SessionError> {
        let slot = self.load_once().await?;
        MutexGuard::try_map(slot, Slot::view).map_err(|_| Self::load_failure())
    }

    /// The same, for a write: refused once the session was committed for the response.
    pub(super) async fn writable(&self) -> Result<MappedMutexGuard<'_, View>, SessionError> {
        let slot = self.load_once().await?;
        if slot.finished {
            return Err(SessionError::Finished);
        }
        MutexGuard::try_map(slot, Slot::view).map_err(|_| Self::load_failure())
    }

    /// Locks the slot, loading the session if nothing did yet.
    async fn load_once(&self) -> Result<MutexGuard<'_, Slot>, SessionError> {
        let finished_untouched = self.mark_touched();
        let mut slot = self.inner.slot.lock().await;
        slot.finished |= finished_untouched;
        match slot.status {
            Status::Loaded(_) => {}
            // The response is already a 503: asking a down store again would only wait
            // out another timeout per call.
            Status::LoadFailed => return Err(Self::load_failure()),
            Status::Untouched => match self.traced(self.load()).await {
                Ok(view) => slot.status = Status::Loaded(view),
                Err(error) => match self.config().on_store_error {
                    OnStoreError::ServiceUnavailable { .. } => {
                        slot.status = Status::LoadFailed;
                        return Err(error);
                    }
                    OnStoreError::Anonymous => {
                        tracing::warn!(%error, "sessions unavailable; serving this request anonymously");
                        let mut view = View::new(self.config().expiry.new_record(now()));
                        view.degraded = true;
                        slot.status = Status::Loaded(view);
                    }
                },
            },
        }
        Ok(slot)
    }

    pub(super) fn load_failure() -> SessionError {
        SessionError::Store(StoreError::Unavailable(
            "the session could not be loaded".into(),
        ))
    }

    /// The session the request's cookie names, or a new anonymous one; an error only when
    /// the store (or the epoch source) failed.
    ///
    /// Every handler that touches its session awaits this future inside its own, and
    /// frameworks box the handler's: so no `View` (360 bytes) is held across an await
    /// here. Holding two or three made the future 1,300 bytes and every boxed handler
    /// future too big for the allocator's per-thread cache (1,032 bytes).
    async fn load(&self) -> Result<View, SessionError> {
        let time = now();
        let found = match (&self.inner.manager.backend, self.incoming()) {
            (Backend::Store(store), Incoming::Ids(ids)) => {
                Some(find_stored(&**store, ids.iter(), time).await?)
            }
            (
                Backend::Cookie(sessions),
                sealed @ (Incoming::Sealed(_) | Incoming::SealedInLines),
            ) => self.open_cookie(&**sessions, sealed, time),
            (Backend::Store(_), Incoming::Malformed) => Some(Err(BadCookie::Malformed)),
            _ => None,
        };
        let view = self.adopt(found, time);
        if self.config().epochs.is_none() || view.record.user_id.is_none() {
            return Ok(view);
        }
        // Boxed, so that only sessions with an epoch to check carry the view across the
        // epoch source's await.
        Box::pin(async move {
            let mut view = view;
            self.check_epoch(&mut view).await?;
            Ok(view)
        })
        .await
    }

    /// The view for what the request's cookie brought: the session found, or a fresh
    /// anonymous one (after counting why there was none).
    fn adopt(&self, found: Option<Result<View, BadCookie>>, time: OffsetDateTime) -> View {
        let fresh = || View::new(self.config().expiry.new_record(time));
        match found {
            // A session bound to a device key, on a request without a valid bound cookie
            // (a copied session cookie, say): the request starts as a new anonymous
            // session, and the stored one is left exactly as it is.
            #[cfg(feature = "dbsc")]
            Some(Ok(view))
                if crate::dbsc::engine::lacks_bound_cookie(
                    self.config(),
                    &view.record,
                    self.inner.cookies.iter(),
                ) =>
            {
                fresh()
            }
            Some(Ok(mut view)) => {
                telemetry::count(names::SESSIONS_LOADED);
                view.loaded_handle = view.key().map(|key| key.handle());
                view
            }
            Some(Err(reason)) => {
                telemetry::bad_cookie(reason);
                fresh()
            }
            None => fresh(),
        }
    }

    /// Revocation by epoch: a logged-in session whose epoch is no longer the user's
    /// current one is logged out here, before the handler sees it.
    async fn check_epoch(&self, view: &mut View) -> Result<(), SessionError> {
        let Some(epochs) = &self.config().epochs else {
            return Ok(());
        };
        let Some(user) = view
            .record
            .user_id
            .as_ref()
            .filter(|_| view.key().is_some())
        else {
            return Ok(());
        };
        let current = epochs
            .0
            .current_epoch(user)
            .await
            .map_err(SessionError::Epoch)?;
        if crate::epoch::matches(view.record.auth_epoch.as_deref(), current.as_deref()) {
            return Ok(());
        }
        tracing::debug!("session logged out: its epoch was revoked");
        telemetry::count(names::SESSIONS_REVOKED_BY_EPOCH);
        if let (Some(id), Backend::Store(store)) = (view.id(), &self.inner.manager.backend) {
            self.traced(store.delete(&id.store_key())).await?;
        }
        self.reset_to_anonymous(view);
        view.destroyed = true;
        Ok(())
    }
}

/// The first live session among `ids` the store knows, or why there is none.
///
/// Duplicates (a cookie planted from a sibling domain, say): the first ID the store knows
/// wins; unknown ones are never adopted. A planted live ID (the attacker's own session)
/// wins too: only `__Host-` prevents that.
async fn find_stored<'a>(
    store: &dyn SessionStore,
    ids: impl Iterator<Item = &'a SessionId>,
    time: OffsetDateTime,
) -> Result<Result<View, BadCookie>, SessionError> {
    let mut reason = BadCookie::Unknown;
    for id in ids {
        // The view is returned as soon as it is found, never kept across the next await.
        match load_stored(store, id, time).await? {
            Ok(view) => return Ok(Ok(view)),
            Err(BadCookie::Expired) => reason = BadCookie::Expired,
            Err(_) => {}
        }
    }
    Ok(Err(reason))
}

/// The live session stored under `id`, or why there is none; a corrupt record is logged
/// and treated as absent.
async fn load_stored(
    store: &dyn SessionStore,
    id: &SessionId,
    time: OffsetDateTime,
) -> Result<Result<View, BadCookie>, SessionError> {
    let key = id.store_key();
    match store.load(&key).await {
        Ok(Some(record)) if record.is_live_at(time) => {
            let version = record.version;
            let mut view = View::new(record);
            view.origin = Origin::Stored {
                id: id.clone(),
                version,
            };
            Ok(Ok(view))
        }
        // The store judged it live by its own clock; by ours it is past its deadline.
        Ok(Some(_)) => Ok(Err(BadCookie::Expired)),
        Ok(None) => Ok(Err(BadCookie::Unknown)),
        Err(StoreError::Corrupt(reason)) => {
            tracing::warn!(handle = %key.handle(), %reason, "corrupt session record treated as absent");
            Ok(Err(BadCookie::Unknown))
        }
        Err(error) => Err(error.into()),
    }
}
