//! The commit engine: after the handler, a request's changes are saved in one store
//! operation (insert, rename, compare-and-set merged with concurrent writers, or a
//! throttled touch), and the layer learns which cookie to send.

use std::time::Duration;

use http::StatusCode;
use time::OffsetDateTime;

use super::info::Finish;
use super::manager::Backend;
use super::state::{Origin, Slot, Status, View};
use super::Session;
use crate::change::ChangeSet;
use crate::codec;
use crate::config::{Limits, MAX_CAP_REVOCATIONS_PER_LOGIN};
use crate::error::SessionError;
use crate::group_commit::{RideOutcome, Taken};
use crate::id::{IdFormat, SessionId, StoreKey};
use crate::record::{now, ClientMeta, Record};
use crate::store::{InsertError, RenameError, SessionStore, StoreError, TouchError, UpdateError};
use crate::telemetry::{self, names};

/// What one attempt with a fresh ID came to.
enum Attempt<T> {
    Done(T),
    /// The ID was taken: try another.
    Collided,
}

impl Session {
    /// Commits the session for a response with `status` and says what the response needs.
    /// Layers call it once; later calls return an empty [`Finish`].
    pub async fn finish(&self, status: StatusCode) -> Finish {
        let mut slot = self.inner.slot.lock().await;
        let (mut finish, view) = match self.start_finish(&mut slot) {
            Ok(started) => started,
            Err(done) => return done,
        };
        if self.commits_for(status) {
            if let Err(error) = self.traced(self.commit(view)).await {
                finish.error = Some(error);
            }
        }
        self.end_finish(view, finish)
    }

    /// [`finish`](Self::finish) without waiting, when nothing needs to: a client-side
    /// session (its commit writes no store), or a server-side one whose commit would call
    /// no store (see [`saves_nothing`](Self::saves_nothing): a read with no idle refresh
    /// due, a logout, a response that saves nothing), when its lock is free. `None`
    /// when `finish` must run. [`CommitFuture`](crate::integration::CommitFuture) then
    /// answers without boxing a commit future: for a cookie session that was a 1,280-byte
    /// allocation on every request that touched it, and for a read of a stored session a
    /// boxed future and a turn on its commit lock, for a commit that writes nothing.
    pub(crate) fn finish_now(&self, status: StatusCode) -> Option<Finish> {
        let mut slot = self.inner.slot.try_lock().ok()?;
        let cookie = matches!(self.inner.manager.backend, Backend::Cookie(_));
        if !cookie && self.commits_for(status) {
            if let Some(view) = slot.view() {
                if !self.saves_nothing(view) {
                    return None;
                }
            }
        }
        let (finish, view) = match self.start_finish(&mut slot) {
            Ok(started) => started,
            Err(done) => return Some(done),
        };
        if cookie && self.commits_for(status) && !view.degraded {
            // As `commit` would, inside the request's span.
            let _entered = self.span().enter();
            self.commit_cookie(view, now());
        }
        Some(self.end_finish(view, finish))
    }

    /// Whether committing a server-side session's `view` now calls no store: it is
    /// degraded, or it has no changes, rotation or login pending and is either a stored
    /// session whose idle refresh is not due yet or a visitor with nothing worth a record.
    /// The clock is read only for a read of a stored session: a write pays nothing here.
    fn saves_nothing(&self, view: &View) -> bool {
        if view.degraded {
            return true;
        }
        if !view.pending.is_empty() || view.pending.logging_in {
            return false;
        }
        match view.origin {
            Origin::Stored { .. } => self
                .config()
                .expiry
                .touch_due(&view.record, now())
                .is_none(),
            Origin::New => view.record.data.is_empty() && view.record.user_id.is_none(),
            Origin::Sealed { .. } => false,
        }
    }

    /// Whether a response with `status` saves the request's changes.
    fn commits_for(&self, status: StatusCode) -> bool {
        !status.is_server_error() || self.config().save_on_server_error
    }

    /// Marks the slot finished; the loaded view to commit, or (`Err`) the whole answer
    /// when there is nothing to commit: finished already, untouched, or failed to load.
    fn start_finish<'s>(&self, slot: &'s mut Slot) -> Result<(Finish, &'s mut View), Finish> {
        if slot.finished {
            return Err(Finish::default());
        }
        slot.finished = true;
        let mut finish = Finish {
            vary_cookie: slot.touched(),
            ..Finish::default()
        };
        match &mut slot.status {
            Status::Untouched => {
                self.span().record("outcome", "untouched");
                Err(finish)
            }
            Status::LoadFailed => {
                let span = self.span();
                span.record("outcome", "failed");
                finish.error = Some(Self::load_failure());
                Err(finish)
            }
            Status::Loaded(view) => Ok((finish, view)),
        }
    }

    /// After the commit (or none): the span's record and the response's cookies.
    fn end_finish(&self, view: &mut View, mut finish: Finish) -> Finish {
        let span = self.span();
        // A binding offer is only worth sending once the login that made it is saved.
        #[cfg(feature = "dbsc")]
        if finish.error.is_none() && view.pending.is_empty() && !view.degraded {
            finish.headers = std::mem::take(&mut view.headers);
        }
        let handle = view.key().map(|key| key.handle()).or(view.loaded_handle);
        if let Some(handle) = handle {
            span.record("handle", tracing::field::display(handle));
        }
        let failed = finish
            .error
            .as_ref()
            .is_some_and(SessionError::is_unavailable);
        span.record("outcome", if failed { "failed" } else { view.outcome() });
        let config = &self.config().cookie;
        let record = &view.record;
        let max_age = codec::max_age(record);
        // Changes no commit saved (a 5xx response, or a commit that failed) must not
        // reach the browser in a cookie: a stored session's cookie stays as the browser
        // has it, unless its ID is one the browser lacks (made or rotated, and saved, in
        // this request); a client-side session's cookie is its state, so none goes out.
        let unsaved = !view.pending.is_empty();
        let new_to_browser = || view.key().map(|key| key.handle()) != view.loaded_handle;
        match (&self.inner.manager.backend, &view.origin) {
            (Backend::Store(_), Origin::Stored { id, .. })
                if view.send_cookie && (!unsaved || new_to_browser()) =>
            {
                let format = self.inner.manager.id_format();
                finish.set_cookie = Some(codec::session_cookie_with(config, id, format, max_age));
            }
            (Backend::Cookie(sessions), Origin::Sealed { key, .. })
                if view.send_cookie && !unsaved =>
            {
                match self.sealed_cookie(&**sessions, key, record, max_age) {
                    Ok(cookie) => finish.set_cookie = Some(cookie),
                    Err(error) => finish.error = Some(error),
                }
            }
            _ if view.destroyed && self.cookie_present() => {
                finish.set_cookie = Some(codec::removal_cookie(config));
            }
            _ => {}
        }
        // A logout also clears the bound cookie (feature `dbsc`): it names a binding
        // whose record is gone.
        #[cfg(feature = "dbsc")]
        if let (true, Some(binding)) = (view.destroyed, &self.config().device_binding) {
            let lines = self.inner.cookies.iter();
            if !codec::cookie_values(lines, &binding.bound_cookie_name(config)).is_empty() {
                let bound = binding.bound_cookie_config(config);
                finish
                    .headers
                    .push((http::header::SET_COOKIE, codec::removal_cookie(&bound)));
            }
        }
        finish
    }

    /// Saves the pending changes: insert, rename, compare-and-set with merge on conflict,
    /// or a throttled touch; then, after a login, enforces the per-user cap.
    pub(super) async fn commit(&self, view: &mut View) -> Result<(), SessionError> {
        if view.degraded {
            return Ok(());
        }
        let time = now();
        let store = match &self.inner.manager.backend {
            Backend::Store(store) => &**store,
            Backend::Cookie(_) => {
                self.commit_cookie(view, time);
                return Ok(());
            }
        };
        match view.id().cloned() {
            None => self.commit_new(store, view, time).await?,
            Some(id) => self.commit_existing(store, view, id, time).await?,
        }
        if std::mem::take(&mut view.pending.logging_in) {
            self.enforce_session_cap(store, view).await;
        }
        Ok(())
    }

    async fn commit_new(
        &self,
        store: &dyn SessionStore,
        view: &mut View,
        time: OffsetDateTime,
    ) -> Result<(), SessionError> {
        if view.record.data.is_empty() && view.record.user_id.is_none() {
            // Nothing worth a record: visitors who never write get none.
            view.pending.changes.clear();
            return Ok(());
        }
        let mut record = view.record.clone();
        self.start_record(&mut record, time);
        record.last_active_at = time;
        record.version = 1;
        let inserted = &record;
        let id = with_fresh_id(self.inner.manager.id_format(), |id| async move {
            match store.insert(&id.store_key(), inserted).await {
                Ok(()) => Ok(Attempt::Done(id)),
                Err(InsertError::Duplicate) => Ok(Attempt::Collided),
                Err(InsertError::Store(error)) => Err(error.into()),
            }
        })
        .await?;
        telemetry::count(names::SESSIONS_CREATED);
        view.wrote = true;
        view.origin = Origin::Stored { id, version: 1 };
        view.record = record;
        view.pending.changes.clear();
        view.pending.rotate = false;
        view.send_cookie = true;
        Ok(())
    }

    async fn commit_existing(
        &self,
        store: &dyn SessionStore,
        view: &mut View,
        mut id: SessionId,
        time: OffsetDateTime,
    ) -> Result<(), SessionError> {
        // A read whose idle refresh is not due has nothing to save: it takes no turn.
        if self.saves_nothing(view) {
            return Ok(());
        }
        let expiry = &self.config().expiry;
        let stripe = self.inner.manager.commit_lock(&id.store_key());
        // A plain write that has to wait offers its changes to the writers ahead of it,
        // one of which may commit them with its own; a rotation or a touch commits alone.
        let plain_write = !view.pending.rotate && !view.pending.changes.is_empty();
        let offer = plain_write.then_some(&view.pending.changes);
        let mut turn = match stripe.take(id.store_key(), offer).await {
            Taken::Settled(outcome) => return self.rode(view, outcome),
            Taken::Turn(turn) => turn,
        };
        if view.pending.rotate {
            let old = id.store_key();
            let renamed = with_fresh_id(self.inner.manager.id_format(), |new_id| async move {
                match store.rename(&old, &new_id.store_key()).await {
                    Ok(()) => Ok(Attempt::Done(Some(new_id))),
                    Err(RenameError::Duplicate) => Ok(Attempt::Collided),
                    Err(RenameError::Missing) => Ok(Attempt::Done(None)),
                    Err(RenameError::Store(error)) => Err(error.into()),
                }
            })
            .await?;
            let Some(new_id) = renamed else {
                return self.gone(view);
            };
            telemetry::count(names::SESSIONS_ROTATED);
            view.rotated = true;
            id = new_id;
            view.origin = Origin::Stored {
                id: id.clone(),
                version: view.stored_version(),
            };
            view.send_cookie = true;
            view.pending.rotate = false;
        }
        let key = id.store_key();
        if view.pending.changes.is_empty() {
            if let Some(touch) = expiry.touch_due(&view.record, time) {
                match store.touch(&key, &touch).await {
                    Ok(()) => {
                        view.record.apply_touch(&touch);
                        view.send_cookie |= view.record.persistent;
                    }
                    Err(TouchError::Missing) => return self.gone(view),
                    // An idle refresh is best effort: the request itself succeeded.
                    Err(TouchError::Store(error)) => {
                        tracing::warn!(handle = %key.handle(), %error, "idle refresh failed");
                    }
                }
            }
            return Ok(());
        }
        // What to compare-and-set: this request's view, rebased on what a writer that held
        // the turn before us committed if that is newer, plus the riders' changes. If this
        // request's own changes no longer apply to a fresher record, the riders' are still
        // committed and this request gets the error.
        let limits = &self.config().limits;
        let changes = &view.pending.changes;
        let mut own_error = None;
        // The size of the candidate's data: this request's own when it is the candidate.
        let mut total = view.pending.data_size;
        // The candidate carries the version it was read at: `update` compares that with
        // the stored one, and it moves on only once a write has succeeded.
        let mut candidate = match turn.committed_since(&key, view.stored_version()) {
            Some(committed) => {
                total = None;
                rebased(
                    committed.clone(),
                    changes,
                    limits,
                    &mut total,
                    &mut own_error,
                )
            }
            None => Record {
                version: view.stored_version(),
                ..view.record.clone()
            },
        };
        turn.board(&mut candidate, limits, &mut total);
        let max_attempts = self.config().max_commit_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !turn.has_riders() {
                if let Some(error) = own_error {
                    return Err(error);
                }
            }
            candidate.last_active_at = time;
            candidate.idle_deadline = expiry.idle_deadline(time);
            let error = match store.update(&key, &candidate).await {
                Ok(()) => {
                    candidate.version = candidate.version.wrapping_add(1);
                    turn.committed(key, &candidate);
                    if let Some(error) = own_error {
                        return Err(error);
                    }
                    return self.rode(view, RideOutcome::Committed(candidate));
                }
                Err(UpdateError::Conflict) if attempt >= max_attempts => {
                    telemetry::count(names::COMMIT_CONFLICTS_EXHAUSTED);
                    SessionError::TooManyConflicts { attempts: attempt }
                }
                Err(UpdateError::Conflict) => {
                    telemetry::count(names::COMMIT_CONFLICTS);
                    // The first conflict is the expected one: this request loaded before
                    // the writers queued ahead of it on the commit lock committed. They are
                    // done, and the rest of this process queues behind us, so retry at
                    // once; only a writer in another process can make it conflict again.
                    if attempt > 1 {
                        backoff(attempt - 1).await;
                    }
                    match store.load(&key).await {
                        Ok(Some(fresh)) => {
                            total = None;
                            candidate = rebased(fresh, changes, limits, &mut total, &mut own_error);
                            turn.board(&mut candidate, limits, &mut total);
                            continue;
                        }
                        Ok(None) => {
                            turn.gone();
                            return self.gone(view);
                        }
                        Err(error) => error.into(),
                    }
                }
                Err(UpdateError::Missing) => {
                    turn.gone();
                    return self.gone(view);
                }
                Err(UpdateError::Store(error)) => error.into(),
            };
            turn.failed(&error);
            return Err(error);
        }
    }

    /// Makes `record` the first record of a new session at `time`, stored or sealed:
    /// created now, deadlines from the expiry policy, and this request's client unless the
    /// handler set one.
    pub(super) fn start_record(&self, record: &mut Record, time: OffsetDateTime) {
        let fresh = self.config().expiry.new_record(time);
        record.created_at = time;
        record.idle_deadline = fresh.idle_deadline;
        record.absolute_deadline = fresh.absolute_deadline;
        self.fill_client(record);
    }

    /// Gives a new session's `record` this request's client, unless the handler set one.
    pub(super) fn fill_client(&self, record: &mut Record) {
        if record.client == ClientMeta::default() {
            record.client = self.inner.client.to_meta();
        }
    }

    /// Takes in the outcome of a commit: this request's own, or the one its changes rode on.
    fn rode(&self, view: &mut View, outcome: RideOutcome) -> Result<(), SessionError> {
        match outcome {
            RideOutcome::Committed(record) => {
                view.wrote = true;
                if let Origin::Stored { version, .. } = &mut view.origin {
                    *version = record.version;
                }
                view.send_cookie |= record.persistent;
                view.record = record;
                view.pending.changes.clear();
                view.pending.data_size = None;
                Ok(())
            }
            RideOutcome::Gone => self.gone(view),
            RideOutcome::Failed(error) => Err(error),
        }
    }

    /// The record was deleted (logout, revoke, expiry) while this request ran. Its writes
    /// are dropped rather than resurrect it. No removal cookie is sent: the deletion may
    /// have been a concurrent rotation whose new cookie must not be overwritten, and the
    /// dead ID is anonymous on its next use anyway.
    fn gone(&self, view: &mut View) -> Result<(), SessionError> {
        tracing::debug!("session deleted concurrently; its pending writes were dropped");
        self.reset_to_anonymous(view);
        Ok(())
    }

    /// After a login is saved: revokes the user's least recently active sessions beyond
    /// [`SessionConfig::max_sessions_per_user`](crate::SessionConfig::max_sessions_per_user).
    ///
    /// Only sessions strictly older than this one, by `(last_active_at, created_at, key)`,
    /// are revoked. That is a total order every login agrees on, so concurrent logins of
    /// one user never revoke each other: the newest always survives. At most
    /// [`MAX_CAP_REVOCATIONS_PER_LOGIN`] go per login, so a login does not wait on an
    /// unbounded number of round trips; the next login continues. Best effort: the login
    /// itself succeeded, so a store failure here is logged and the next login tries again.
    async fn enforce_session_cap(&self, store: &dyn SessionStore, view: &View) {
        let Some(cap) = self.config().max_sessions_per_user else {
            return;
        };
        let (Some(id), Some(user)) = (view.id(), &view.record.user_id) else {
            return;
        };
        let entries = match store.list_for_user(user).await {
            Ok(entries) if entries.len() > cap => entries,
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, "could not list the user's sessions to enforce the cap");
                return;
            }
        };
        let current = id.store_key();
        let order =
            |record: &Record, key: StoreKey| (record.last_active_at, record.created_at, key);
        // This session as the store lists it, so that it compares at the store's precision.
        let this = entries
            .iter()
            .find(|entry| entry.key == current)
            .map_or_else(
                || order(&view.record, current),
                |entry| order(&entry.record, current),
            );
        let total = entries.len() + usize::from(!entries.iter().any(|entry| entry.key == current));
        let excess = total.saturating_sub(cap).min(MAX_CAP_REVOCATIONS_PER_LOGIN);
        let mut older: Vec<_> = entries
            .iter()
            .map(|entry| (order(&entry.record, entry.key), entry))
            .filter(|(rank, _)| *rank < this)
            .collect();
        older.sort_by_key(|(rank, _)| *rank);
        for (_, entry) in older.into_iter().take(excess) {
            match store.delete(&entry.key).await {
                Ok(deleted) => {
                    telemetry::revoked("cap", u64::from(deleted));
                    tracing::debug!(handle = %entry.key.handle(), "session revoked: over the per-user cap");
                }
                Err(error) => {
                    tracing::warn!(%error, "could not revoke a session over the per-user cap");
                    return;
                }
            }
        }
    }
}

/// Runs `attempt` with fresh IDs until one does not collide. Three collisions of 256-bit
/// random IDs mean the store is broken, not unlucky.
async fn with_fresh_id<T, F>(
    format: Option<&dyn IdFormat>,
    mut attempt: impl FnMut(SessionId) -> F,
) -> Result<T, SessionError>
where
    F: std::future::Future<Output = Result<Attempt<T>, SessionError>>,
{
    for _ in 0..3 {
        if let Attempt::Done(done) = attempt(SessionId::generate_for(format)).await? {
            return Ok(done);
        }
    }
    Err(StoreError::backend("three fresh 256-bit IDs collided; the store is misbehaving").into())
}

/// `fresh` with this request's `changes` applied, within the size `limits`. If they no
/// longer apply (or already failed to), `fresh` as it is, with the reason in `error`: the
/// riders' changes are still committed on it.
fn rebased(
    mut fresh: Record,
    changes: &ChangeSet,
    limits: &Limits,
    total: &mut Option<usize>,
    error: &mut Option<SessionError>,
) -> Record {
    if error.is_none() {
        if let Err(reason) = changes.apply_within(&mut fresh, limits, total) {
            *error = Some(reason);
        }
    }
    fresh
}

/// Jittered exponential backoff between compare-and-set attempts, so contending writers
/// spread out instead of colliding again.
async fn backoff(attempt: u32) {
    let cap_micros = (250u64 << attempt.min(7)).min(20_000);
    let random = u64::from(getrandom::u32().unwrap_or(0x9e37_79b9));
    tokio::time::sleep(Duration::from_micros(random % cap_micros)).await;
}
