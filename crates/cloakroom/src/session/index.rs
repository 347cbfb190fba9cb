//! The per-user index through the handle: list the logged-in user's sessions, revoke one
//! or all the others.

use super::info::SessionSummary;
use super::Session;
use crate::error::SessionError;
use crate::id::{SessionHandle, StoreKey};
use crate::telemetry;

impl Session {
    /// The live sessions of the logged-in user; empty when anonymous. A store error when
    /// the session could not be loaded (under
    /// [`OnStoreError::Anonymous`](crate::OnStoreError::Anonymous)), as for the
    /// revocations below.
    pub async fn list_user_sessions(&self) -> Result<Vec<SessionSummary>, SessionError> {
        let store = self.store("listing a user's sessions")?;
        let (user, current) = self.user_and_key().await?;
        let Some(user) = user else {
            return Ok(Vec::new());
        };
        let mut entries = self.traced(store.list_for_user(&user)).await?;
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.record.last_active_at));
        Ok(entries
            .into_iter()
            .map(|entry| SessionSummary {
                handle: entry.key.handle(),
                created_at: entry.record.created_at,
                last_active_at: entry.record.last_active_at,
                expires_at: entry.record.expires_at(),
                ip: entry.record.client.ip,
                user_agent: entry.record.client.user_agent,
                current: Some(entry.key) == current,
            })
            .collect())
    }

    /// Revokes one of the logged-in user's sessions by handle. `Ok(false)` if the handle is
    /// not one of theirs. Revoking the current session is a [`logout`](Self::logout).
    pub async fn revoke_user_session(&self, handle: &SessionHandle) -> Result<bool, SessionError> {
        let store = self.store("revoking one session")?;
        let (user, current) = self.user_and_key().await?;
        let Some(user) = user else {
            return Ok(false);
        };
        if current.is_some_and(|key| handle.matches(&key)) {
            self.logout().await?;
            return Ok(true);
        }
        let entries = self.traced(store.list_for_user(&user)).await?;
        match entries.iter().find(|entry| handle.matches(&entry.key)) {
            Some(entry) => {
                let deleted = self.traced(store.delete(&entry.key)).await?;
                telemetry::revoked("user", u64::from(deleted));
                Ok(deleted)
            }
            None => Ok(false),
        }
    }

    /// Revokes every session of the logged-in user but this one ("log out other devices");
    /// returns how many.
    pub async fn revoke_other_sessions(&self) -> Result<u64, SessionError> {
        let store = self.store("revoking other sessions")?;
        let (user, current) = self.user_and_key().await?;
        match user {
            Some(user) => {
                let revoked = self
                    .traced(store.delete_for_user(&user, current.as_ref()))
                    .await?;
                telemetry::revoked("user", revoked);
                Ok(revoked)
            }
            None => Ok(0),
        }
    }

    /// The saved user and the key of the stored session. The index knows only saved
    /// users: a login in this request is not in it yet.
    ///
    /// A session that could not be loaded (served as anonymous under
    /// [`OnStoreError::Anonymous`](crate::OnStoreError::Anonymous)) is an error here, as
    /// for a logout: "no sessions" or "none revoked" would be a false answer.
    async fn user_and_key(&self) -> Result<(Option<String>, Option<StoreKey>), SessionError> {
        let view = self.loaded().await?;
        if view.degraded {
            return Err(Self::load_failure());
        }
        Ok(match view.id() {
            Some(id) => (view.record.user_id.clone(), Some(id.store_key())),
            None => (None, None),
        })
    }
}
