//! The per-user operations: a user's index set, listing it, and revoking its sessions.

use cloakroom::{Record, SessionStore, StoreError, StoreKey};
use sha2::{Digest, Sha256};

use crate::index::Scan;
use crate::MemcachedStore;

/// Passes of revoke-all/revoke-others before it gives up rather than under-revoke.
const REVOKE_PASSES: usize = 16;

/// The hex SHA-256 of a user id: user ids never appear in item names.
fn hashed(user: &str) -> String {
    let hashed: [u8; 32] = Sha256::digest(user.as_bytes()).into();
    StoreKey::from_bytes(hashed).to_hex()
}

impl MemcachedStore {
    /// The user's index set.
    pub(crate) fn user_key(&self, user: &str) -> String {
        format!("{}ui:{}", self.prefix, hashed(user))
    }

    /// Where an earlier version kept a user's index (one item, a JSON array): read once,
    /// migrated and deleted by the next scan of the user.
    fn legacy_user_key(&self, user: &str) -> String {
        format!("{}u:{}", self.prefix, hashed(user))
    }

    /// A user's live sessions (and corrupt members), pruning the index as it goes.
    pub(crate) async fn scan_user(&self, user: &str) -> Result<Scan, StoreError> {
        let keep = |r: &Record| r.user_id.as_deref() == Some(user);
        self.scan(&self.user_key(user), &self.legacy_user_key(user), &keep)
            .await
    }

    /// `SessionStore::delete_for_user`: deletes the user's sessions (and corrupt members
    /// of the index), then looks again: a rename that completed meanwhile indexed its new
    /// key before deleting the original, so the next pass sees it. Done when a pass finds
    /// nothing left but `except` and the index gained no key while that pass read it.
    pub(crate) async fn revoke(
        &self,
        user: &str,
        except: Option<&StoreKey>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for _ in 0..REVOKE_PASSES {
            let scan = self.scan_user(user).await?;
            let doomed: Vec<StoreKey> = scan
                .live
                .iter()
                .map(|entry| entry.key)
                .filter(|key| Some(key) != except)
                .collect();
            let corrupt: Vec<StoreKey> = scan
                .corrupt
                .iter()
                .copied()
                .filter(|key| Some(key) != except)
                .collect();
            if doomed.is_empty() && corrupt.is_empty() {
                // A scan reads the index, then the records. A rename that indexed its copy
                // after the first read and deleted its original before the second is
                // invisible to this pass, but it added a key: look again if so.
                if self.gained_nothing(&self.user_key(user), &scan).await? {
                    return Ok(deleted);
                }
                continue;
            }
            for key in doomed {
                deleted += u64::from(self.delete(&key).await?);
            }
            // Unreadable, so dead already: removed, not counted as revoked.
            for key in corrupt {
                self.delete(&key).await?;
            }
        }
        Err(StoreError::backend(
            "the user's sessions kept being created or renamed during the revocation; try again",
        ))
    }
}
