//! Revocation by epoch: log a user out everywhere (after a password change, say) by
//! bumping a value the app owns.
//!
//! At login the user's current epoch is stored in the session. Every later request that
//! loads a logged-in session asks the [`EpochSource`] again; if the epochs differ
//! (compared in constant time) the session is treated as logged out: it is destroyed and
//! its cookie removed. This works for server-side and client-side sessions alike, and is
//! the only way to revoke client-side sessions. The hook runs on every request that loads
//! a logged-in session, so keep it fast (an in-process cache in front of the database).

use std::sync::Arc;

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use crate::store::BoxError;

/// Where a user's current epoch comes from.
///
/// ```
/// use cloakroom::{BoxError, EpochSource};
/// struct PasswordVersion;
/// #[async_trait::async_trait]
/// impl EpochSource for PasswordVersion {
///     async fn current_epoch(&self, user: &str) -> Result<Option<String>, BoxError> {
///         Ok(Some(format!("{user}:1"))) // e.g. a counter bumped on password change
///     }
/// }
/// ```
#[async_trait]
pub trait EpochSource: Send + Sync + 'static {
    /// The user's current epoch; `None` if the user no longer exists (every session of
    /// theirs is then revoked). An error fails the request like a store outage.
    async fn current_epoch(&self, user: &str) -> Result<Option<String>, BoxError>;
}

/// A registered [`EpochSource`], as [`SessionConfig`](crate::SessionConfig) holds it.
#[derive(Clone)]
pub struct Epochs(pub Arc<dyn EpochSource>);

impl std::fmt::Debug for Epochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Epochs(..)")
    }
}

/// Whether a stored epoch matches the current one, in constant time for equal lengths.
pub(crate) fn matches(stored: Option<&str>, current: Option<&str>) -> bool {
    match (stored, current) {
        (Some(stored), Some(current)) => bool::from(stored.as_bytes().ct_eq(current.as_bytes())),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn missing_epochs_never_match() {
        assert!(super::matches(Some("3"), Some("3")));
        assert!(!super::matches(Some("3"), Some("4")));
        assert!(!super::matches(None, Some("4")));
        assert!(!super::matches(Some("3"), None));
        assert!(!super::matches(None, None));
    }
}
